"""``gateway demo --serve`` (the README's way to try the workspace): it prints each agency's
workspace URL and demo logins, those logins sign in over HTTP, and SIGINT or SIGTERM stops it
cleanly (exit 0). The in-process broker keeps it independent of RabbitMQ; the broker choice
itself is the plain demo's, tested in tests/test_demo.py."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

import aiohttp
import pytest

from testkit.gateway_pair import ROOT

WORKSPACE_LINE = re.compile(r"\] (NE-ANLTP-TIM|NG-NAPTIP) workspace: (http://(?:127\.0\.0\.1|localhost):\d+)/workspace/ ")
LOGIN_LINE = re.compile(r"^\s+(caseworker|auditor):\s+name (\S+)\s+password (\S+)$")
CSRF = re.compile(r'name="csrf" value="([0-9a-f]{64})"')
READY = "Press Ctrl-C to stop."


@dataclass
class Served:
    """A running ``gateway demo --serve`` and what it printed."""

    proc: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)
    urls: dict[str, str] = field(default_factory=dict)
    logins: dict[str, dict[str, tuple[str, str]]] = field(default_factory=dict)


def _start(*extra: str, timeout: float = 60.0) -> Served:
    """Start the command and read its output until it says it is ready."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "gateway.cli", "demo", "--serve", "--memory",
                             "--ne-port", "0", "--ng-port", "0", *extra],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    served = Served(proc)
    assert proc.stdout is not None
    timer = threading.Timer(timeout, proc.kill)  # a hung start fails the test instead of blocking it
    timer.start()
    agency = None
    try:
        for line in proc.stdout:
            served.lines.append(line)
            if found := WORKSPACE_LINE.search(line):
                agency = found.group(1)
                served.urls[agency] = found.group(2)
                served.logins[agency] = {}
            elif (found := LOGIN_LINE.match(line.rstrip("\n"))) and agency is not None:
                served.logins[agency][found.group(1)] = (found.group(2), found.group(3))
            if READY in line:
                break
    finally:
        timer.cancel()
    assert READY in "".join(served.lines), "".join(served.lines) + (proc.stderr.read() if proc.stderr else "")
    return served


def _stop(served: Served, sig: int) -> tuple[int, str, str]:
    served.proc.send_signal(sig)
    try:
        out, err = served.proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        served.proc.kill()
        served.proc.communicate()
        raise AssertionError("gateway demo --serve did not stop within 30 s of the signal") from None
    return served.proc.returncode, "".join(served.lines) + out, err


async def _sign_in(base: str, name: str, password: str,
                   http: aiohttp.ClientSession | None = None) -> tuple[int, str, str]:
    """GET the sign-in form, post it with its CSRF token; (status, Location, final page)."""
    if http is None:
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as own:
            return await _sign_in(base, name, password, own)
    async with http.get(f"{base}/workspace/sign-in") as resp:
        assert resp.status == 200
        token = CSRF.search(await resp.text())
    assert token is not None
    form = {"username": name, "password": password, "csrf": token.group(1)}
    async with http.post(f"{base}/workspace/sign-in", data=form, allow_redirects=False) as resp:
        status, location = resp.status, resp.headers.get("Location", "")
    return status, location, await _landing(base, http)


async def _landing(base: str, http: aiohttp.ClientSession) -> str:
    async with http.get(f"{base}/workspace/", allow_redirects=True) as resp:
        return f"{resp.status} {resp.url.path}"


async def test_demo_serve_prints_logins_that_sign_in_and_stops_on_sigint() -> None:
    served = _start()
    try:
        assert set(served.urls) == {"NE-ANLTP-TIM", "NG-NAPTIP"}
        assert len(set(served.urls.values())) == 2
        for agency, base in served.urls.items():
            assert set(served.logins[agency]) == {"caseworker", "auditor"}
            for role, (name, password) in served.logins[agency].items():
                assert len(password) >= 12
                status, location, page = await _sign_in(base, name, password)
                assert (status, location) == (303, "/workspace/"), (agency, role)
                assert page == "200 /workspace/inbox", (agency, role, page)  # both roles have an inbox
            name, password = served.logins[agency]["caseworker"]
            status, _, page = await _sign_in(base, name, password + "x")
            assert status == 401 and page.endswith("/workspace/sign-in")
        # One browser (one cookie jar, unsafe=True keeps cookies for 127.0.0.1 as a browser
        # does) signed in at both agencies keeps both sessions: the URLs differ in host name.
        assert served.urls["NE-ANLTP-TIM"].startswith("http://127.0.0.1:")
        assert served.urls["NG-NAPTIP"].startswith("http://localhost:")
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            for agency, base in served.urls.items():
                name, password = served.logins[agency]["caseworker"]
                assert (await _sign_in(base, name, password, http))[0] == 303
            for base in served.urls.values():
                assert await _landing(base, http) == "200 /workspace/inbox"
        # Two agencies' passwords differ, and each differs from the other users'.
        passwords = [pw for logins in served.logins.values() for _, pw in logins.values()]
        assert len(set(passwords)) == 4
    finally:
        code, out, err = _stop(served, signal.SIGINT)
    assert code == 0, err[-2000:]
    assert "Stopping" in out
    for password in passwords:
        assert out.count(password) == 1, "a password is printed once, at start"
        assert password not in err
    assert "Traceback" not in err


def test_demo_serve_stops_cleanly_on_sigterm() -> None:
    served = _start()
    started = time.monotonic()
    code, out, err = _stop(served, signal.SIGTERM)
    assert code == 0, err[-2000:]
    assert "Stopping" in out and "Traceback" not in err
    assert time.monotonic() - started < 30


def test_demo_serve_says_when_a_port_is_taken() -> None:
    served = _start()
    try:
        port = served.urls["NE-ANLTP-TIM"].rsplit(":", 1)[1]
        taken = subprocess.run([sys.executable, "-m", "gateway.cli", "demo", "--serve", "--memory",
                                "--ne-port", port, "--ng-port", "0"], cwd=ROOT, capture_output=True, text=True,
                               timeout=60)
    finally:
        code, _, _ = _stop(served, signal.SIGINT)
    assert taken.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in taken.stdout and "--ne-port" in taken.stdout
    assert "Traceback" not in taken.stderr
    assert code == 0


def test_demo_serve_options_are_in_the_help_and_checked() -> None:
    out = subprocess.run([sys.executable, "-m", "gateway.cli", "demo", "--help"], cwd=ROOT, capture_output=True,
                         text=True, timeout=60).stdout
    for option in ("--serve", "--ne-port", "--ng-port", "--host", "--memory"):
        assert option in out
    with pytest.raises(SystemExit):
        from gateway.cli import main
        main(["demo", "--serve", "--ne-port", "70000"])
