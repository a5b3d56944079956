"""Canary tokens and personal values sent through every route never reach a log line.

The app is served as `gateway serve` serves it (the same runner, a real socket, logging
set up by ``configure_logging``), so aiohttp's own parser, its error answers and its
loggers are in the path. Every route of the router is called (new routes are covered
without editing this test) with canaries in the URL path, the query string, headers,
the body, and as right and wrong bearer tokens. Then everything written to stdout and
stderr, and every stdlib log record as the production formatter renders it, is searched
for the canaries. Oversized request lines and headers go through a raw socket.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import re
import secrets
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from gateway.api import create_app
from gateway.api.parser_errors import GatewayAppRunner
from gateway.cli.serve import bind_http
from gateway.logs import configure_logging, install_loop_exception_handler
from gateway.schema import load_example
from gateway.settings import with_overrides

from testkit.gateway_pair import NIGERIA, gateway_pair
from .test_api_world import PSEUDONYM_SECRET, users_for

WRONG_TOKEN = "cAnArYwRoNgToKeN" + secrets.token_hex(8)
PERSON = "Cnryxqvalue" + secrets.token_hex(4)
PATH_VALUE = "cnrypathseg" + secrets.token_hex(4)
QUERY_VALUE = "cnryqueryval" + secrets.token_hex(4)
HEADER_VALUE = "cnryheaderval" + secrets.token_hex(4)


def _canaries(tokens: dict[str, str]) -> list[str]:
    return [WRONG_TOKEN, PERSON, PATH_VALUE, QUERY_VALUE, HEADER_VALUE, *tokens.values()]


class _Rendered(logging.Handler):
    """Keeps each stdlib record as the production formatter renders it."""

    def __init__(self, formatter: logging.Formatter) -> None:
        super().__init__(level=logging.DEBUG)
        self.setFormatter(formatter)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


def _referral_body() -> dict:
    payload = load_example("referral.request")
    payload["person"]["names"] = {"given": PERSON, "family": PERSON}
    return {"recipient": NIGERIA, "case_ref": "ne-ng-canary0000001", "payload": payload}


def _bodies() -> list[tuple[str, bytes]]:
    referral = _referral_body()
    return [
        ("application/json", json.dumps(referral).encode()),
        ("application/json", json.dumps({**referral, "local_case_id": PERSON}).encode()),
        ("application/json", json.dumps({**referral, "recipient": PERSON, PERSON: PERSON}).encode()),
        ("application/json", json.dumps({"decision": PERSON, "accepted_purposes": [PERSON], "reason": PERSON,
                                         "purpose": PERSON}).encode()),
        ("application/json", (json.dumps(referral)[:-5]).encode()),  # broken JSON that quotes the person
        ("text/plain; charset=latin-1", f"name={PERSON}".encode()),
    ]


def _fill(template: str) -> str:
    return re.sub(r"\{[^}]+\}", PATH_VALUE, template)


async def _raw(port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()


def _answer(raw: bytes) -> tuple[int, dict]:
    head, _, body = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, json.loads(body)


async def test_canaries_sent_through_every_route_are_in_no_log_line(tmp_path: Path, capfd) -> None:
    configure_logging("debug")
    root = logging.getLogger()
    rendered = _Rendered(root.handlers[0].formatter)  # the production formatter, as configured
    root.addHandler(rendered)
    install_loop_exception_handler(asyncio.get_running_loop())
    answers: list[tuple[str, int, str]] = []
    try:
        async with gateway_pair(tmp_path, pseudonym_secret_hex=PSEUDONYM_SECRET) as (ne, _ng):
            tokens, users = users_for(ne.agency_id)
            app = create_app(ne, with_overrides(ne.settings, users=users))
            sockets = bind_http("127.0.0.1", 0)
            port = sockets[0].getsockname()[1]
            runner = GatewayAppRunner(app, access_log=None)
            await runner.setup()
            for sock in sockets:
                await web.SockSite(runner, sock).start()
            routes = sorted({(r.method, r.resource.canonical) for r in app.router.routes() if r.resource})
            assert len(routes) >= 20  # the router is really listed
            try:
                async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as session:
                    answers += await _every_route(session, routes, tokens)
                    answers += await _failing_handler(session, ne, tokens)
                answers += await _oversized_requests(port, tokens)
                await _lost_task_exception()
            finally:
                await runner.cleanup()
    finally:
        root.removeHandler(rendered)
    captured = capfd.readouterr()
    output = {"stdout": captured.out, "stderr": captured.err, "stdlib records": "\n".join(rendered.lines)}
    assert "Traceback" not in captured.err
    for line in captured.err.splitlines():
        if line.strip():
            json.loads(line)  # one JSON object per line, library lines included
    assert any('"http.refused_by_parser"' in line for line in captured.err.splitlines())
    assert any('"http.request"' in line for line in captured.err.splitlines())
    for canary in _canaries(tokens):
        for where, text in output.items():
            assert canary.lower() not in text.lower(), f"canary found in {where}"
    # The parser's answers are JSON and quote nothing of the request (the API's own
    # answers are the subject of the API tests).
    for what, status, text in answers:
        if what.startswith("raw"):
            assert all(c.lower() not in text.lower() for c in _canaries(tokens)), what


async def _every_route(session: aiohttp.ClientSession, routes, tokens: dict[str, str]) -> list[tuple[str, int, str]]:
    answers = []
    auths = [{"Authorization": f"Bearer {WRONG_TOKEN}"}, {"Authorization": f"Basic {WRONG_TOKEN}"}, {}]
    auths += [{"Authorization": f"Bearer {token}"} for token in tokens.values()]
    extra = {"X-Canary": HEADER_VALUE, "Cookie": f"session={HEADER_VALUE}", "Referer": f"http://x/?q={HEADER_VALUE}",
             "User-Agent": HEADER_VALUE, "X-Forwarded-For": HEADER_VALUE}
    for method, template in routes:
        path = _fill(template)
        query = {"purpose": QUERY_VALUE, "limit": QUERY_VALUE, "local_case_id": PERSON, QUERY_VALUE: PERSON}
        for auth in auths:
            for target in (path, template):
                bodies = _bodies() if method in ("POST", "PUT", "PATCH") else [(None, b"")]
                methods = (method, "HEAD") if method == "GET" else (method,)
                for verb in methods:
                    for content_type, body in bodies:
                        headers = {**auth, **extra}
                        if content_type:
                            headers["Content-Type"] = content_type
                        async with session.request(verb, target, params=query, data=body or None,
                                                   headers=headers) as resp:
                            answers.append((f"{verb} {template}", resp.status, await resp.text()))
            # The route's own path with no canary in it, so the handler itself runs.
            async with session.request(method, template if "{" not in template else path,
                                       headers={**auth, **extra}) as resp:
                answers.append((f"{method} {template} plain", resp.status, await resp.text()))
    return answers


async def _failing_handler(session: aiohttp.ClientSession, gateway, tokens) -> list[tuple[str, int, str]]:
    """A handler failing with the person's name in the exception: a 500, and no name in the log."""
    original = gateway.submit

    async def explode(*args, **kwargs):
        raise RuntimeError(f"failure about {PERSON} token {WRONG_TOKEN}")
    gateway.submit = explode
    try:
        async with session.post("/referrals", json=_referral_body(),
                                headers={"Authorization": f"Bearer {tokens['caseworker']}"}) as resp:
            assert resp.status == 500
            return [("POST /referrals failing", resp.status, await resp.text())]
    finally:
        gateway.submit = original


async def _oversized_requests(port: int, tokens: dict[str, str]) -> list[tuple[str, int, str]]:
    big = "x" * 20 * 1024
    cases = [
        ("raw long authorization", 431, f"GET /inbox HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {WRONG_TOKEN}{big}"
                                        f"\r\n\r\n"),
        ("raw long valid token", 431, f"GET /inbox HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                                      f"{tokens['admin']}{big}\r\n\r\n"),
        ("raw long url", 414, f"GET /inbox/{PATH_VALUE}{big}?purpose={QUERY_VALUE} HTTP/1.1\r\nHost: x\r\n\r\n"),
        ("raw long query", 414, f"GET /inbox?purpose={QUERY_VALUE}{big} HTTP/1.1\r\nHost: x\r\n\r\n"),
        ("raw long header", 431, f"GET /inbox HTTP/1.1\r\nHost: x\r\nX-Person: {PERSON}{big}\r\n\r\n"),
        ("raw bad header", 400, f"GET /inbox HTTP/1.1\r\nHost: x\r\nBad {PERSON}: {HEADER_VALUE}\r\n\r\n"),
        ("raw bad method", 400, f"G{PERSON} /inbox?purpose={QUERY_VALUE} HTTP/1.1\r\n\r\n"),
        ("raw many headers", 431, "GET /inbox HTTP/1.1\r\n" + "".join(f"X-{i}: {PERSON}\r\n" for i in range(200))
         + "\r\n"),
    ]
    answers = []
    for what, expected, request in cases:
        raw = await _raw(port, request.encode())
        status, body = _answer(raw)
        assert status == expected, (what, raw[:300])
        assert set(body) == {"error", "detail"}, (what, body)
        answers.append((what, status, raw.decode("latin-1")))
    return answers


async def _lost_task_exception() -> None:
    """An exception nobody retrieved, quoting the person: asyncio reports it through our handler."""
    async def fail() -> None:
        raise ValueError(f"lost failure about {PERSON}")
    task = asyncio.get_running_loop().create_task(fail())
    await asyncio.sleep(0.01)
    del task
    gc.collect()
    await asyncio.sleep(0.01)


@pytest.mark.parametrize("text", [
    "Authorization: Bearer abc.def-ghi", "GET /inbox/1?purpose=x&token=y HTTP/1.1", "amqp://user:pw@host:5672/",
    "authorization=Basic dXNlcjpwdw==",
])
def test_scrub_removes_secrets_from_free_text(text: str) -> None:
    from gateway.logs import REDACTED, scrub
    cleaned = scrub(text)
    assert REDACTED in cleaned
    for secret in ("abc.def-ghi", "purpose=x", "token=y", "user:pw", "dXNlcjpwdw=="):
        assert secret not in cleaned


def test_library_records_and_secret_fields_become_one_redacted_json_line(capfd) -> None:
    configure_logging("info")
    try:
        raise ValueError(f"parser quoted {PERSON}\nsecond line")
    except ValueError as exc:
        logging.getLogger("aiohttp.server").error("Error handling %s from %s", f"GET /x?purpose={QUERY_VALUE}",
                                                  f"Bearer {WRONG_TOKEN}", exc_info=exc)
        logging.getLogger("aio_pika").warning("Connection to %s failed: %r", "amqp://guest:" + HEADER_VALUE + "@h/",
                                              exc)
    import structlog
    structlog.get_logger("t").warning("t.event", authorization=f"Bearer {WRONG_TOKEN}", token=WRONG_TOKEN,
                                      request_body=PERSON, note=f"url /inbox?purpose={QUERY_VALUE}")
    lines = [json.loads(line) for line in capfd.readouterr().err.splitlines()]
    assert len(lines) == 3
    text = json.dumps(lines)
    for canary in (PERSON, QUERY_VALUE, WRONG_TOKEN, HEADER_VALUE):
        assert canary not in text
    assert lines[0]["exception"]["type"] == "ValueError" and lines[0]["exception"]["frames"][0].startswith("tests/")
    assert lines[1]["event"] == "Connection to amqp://[redacted]@h/ failed: '<ValueError>'"
    assert lines[2]["authorization"] == lines[2]["token"] == lines[2]["request_body"] == "[redacted]"


def test_scrub_shortcut_changes_nothing() -> None:
    """scrub() skips texts its quick check rules out: the four patterns agree on every text."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from gateway import logs
    from tests.support.hypothesis_profiles import scaled

    def full(text: str) -> str:
        text = logs._HEADER_LINE.sub(lambda m: f"{m.group(1)}: {logs.REDACTED}", text)
        text = logs._BEARER.sub(lambda m: f"{m.group(1)} {logs.REDACTED}", text)
        text = logs._URL_CREDENTIALS.sub(lambda m: f"{m.group(1)}{logs.REDACTED}@", text)
        return logs._QUERY.sub(f"?{logs.REDACTED}", text)

    pieces = st.sampled_from(["Bearer ", "BASIC x", "authorization: y", "Cookie=z", "X-Api-Key: k", "amqp://u:p@h",
                              "?q=1", "@", "id-123", " ", "\u212aookie: v", "é", "\n"])

    @settings(max_examples=scaled(300), deadline=None)
    @given(st.lists(pieces | st.text(max_size=5), max_size=6).map("".join))
    def check(text: str) -> None:
        assert logs.scrub(text) == full(text)

    check()
