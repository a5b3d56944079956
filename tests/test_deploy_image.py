"""deploy/Dockerfile: pinned base, a health check that works, no keys in the image.

There is no Docker engine where these tests run, so the image is never built here: the
Dockerfile and /.dockerignore are parsed, and the HEALTHCHECK command is run against a
stand-in HTTP server to prove it tells 200 from 503.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n", " ", "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#")))
    result = []
    for line in joined.splitlines():
        if line.strip():
            keyword, _, rest = line.strip().partition(" ")
            result.append((keyword.upper(), rest.strip()))
    return result


DOCKER = instructions(DOCKERFILE.read_text(encoding="utf-8"))


def test_base_image_is_pinned_to_a_patch_release_and_a_digest() -> None:
    bases = [args for keyword, args in DOCKER if keyword == "FROM"]
    assert len(bases) == 1
    image = bases[0].split()[0]
    assert "$" not in image, "the base must not come from a build argument that could unpin it"
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm@sha256:[0-9a-f]{64}", image), image


def test_healthcheck_is_declared_and_uses_no_missing_tool() -> None:
    checks = [args for keyword, args in DOCKER if keyword == "HEALTHCHECK"]
    assert len(checks) == 1
    assert "CMD" in checks[0] and "curl" not in checks[0] and "wget" not in checks[0]
    assert "/readyz" in checks[0]


def _healthcheck_argv() -> list[str]:
    args = next(args for keyword, args in DOCKER if keyword == "HEALTHCHECK")
    return json.loads(args[args.index("CMD") + 3:].strip())


class _Probe(BaseHTTPRequestHandler):
    status = 200
    paths: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        type(self).paths.append(self.path)
        self.send_response(type(self).status)
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.parametrize("status, healthy", [(200, True), (503, False)])
def test_healthcheck_command_passes_on_200_and_fails_on_503(status: int, healthy: bool) -> None:
    argv = _healthcheck_argv()
    assert argv[0] == "python"
    handler = type("Probe", (_Probe,), {"status": status, "paths": []})
    server = HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        env = {**os.environ, "GATEWAY_HTTP_PORT": str(server.server_address[1])}
        result = subprocess.run([sys.executable, *argv[1:]], env=env, capture_output=True, timeout=30, check=False)
    finally:
        server.shutdown()
        server.server_close()
    assert (result.returncode == 0) is healthy, result.stderr
    assert handler.paths == ["/readyz"]


def test_healthcheck_port_is_the_port_the_image_listens_on() -> None:
    env = " ".join(args for keyword, args in DOCKER if keyword == "ENV")
    assert "GATEWAY_HTTP_PORT=8080" in env and "GATEWAY_HTTP_HOST=0.0.0.0" in env
    assert ("EXPOSE", "8080") in DOCKER


def test_runs_as_an_unprivileged_user() -> None:
    users = [args for keyword, args in DOCKER if keyword == "USER"]
    assert users and users[-1] not in {"root", "0"}


def _copy_sources() -> list[str]:
    sources = []
    for keyword, args in DOCKER:
        if keyword in {"COPY", "ADD"}:
            assert keyword == "COPY", "ADD can fetch URLs and unpack archives: use COPY"
            parts = [p for p in args.split() if not p.startswith("--")]
            sources += parts[:-1]
    return sources


def test_no_keys_are_copied_into_the_image() -> None:
    sources = _copy_sources()
    assert sources, "the parser found no COPY"
    for source in sources:
        assert not source.rstrip("/").startswith(("keys", "tests", ".")), source
        assert (ROOT / source).exists(), f"COPY {source}: not in the repository"


# --- .dockerignore -----------------------------------------------------------------------


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
        elif pattern.startswith("**", i):
            out += ".*"
            i += 2
        elif pattern[i] == "*":
            out += "[^/]*"
            i += 1
        elif pattern[i] == "?":
            out += "[^/]"
            i += 1
        else:
            out += re.escape(pattern[i])
            i += 1
    return re.compile(out)


def ignored(path: str, rules: list[str]) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parent folders wins."""
    parts = path.split("/")
    candidates = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    excluded = False
    for rule in rules:
        negate = rule.startswith("!")
        regex = _pattern_regex(rule.lstrip("!").strip("/"))
        if any(regex.fullmatch(c) for c in candidates):
            excluded = not negate
    return excluded


def _rules() -> list[str]:
    lines = DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def test_the_ignore_matcher_follows_docker_precedence() -> None:
    assert ignored("a/b.py", ["**"]) and not ignored("a/b.py", ["**", "!a/"])
    assert ignored("a/__pycache__/b.pyc", ["**", "!a/", "**/__pycache__"])
    assert not ignored("keys/x", ["tests"])


@pytest.mark.parametrize("path", [
    "keys/demo/directory.json", "keys/demo/authority.pub.json", "keys/prod/0123.key", "tests/vectors/x.key",
    "tests/test_api.py", ".venv/bin/python", ".git/HEAD", "var/gateway.db", "test-artifacts/page.png",
    "deploy/compose/ne.secrets.env", "gateway/__pycache__/settings.cpython-311.pyc", "gateway/local.key",
])
def test_dockerignore_keeps_keys_tests_and_local_state_out_of_the_build_context(path: str) -> None:
    assert ignored(path, _rules())


def test_dockerignore_lets_every_copied_source_in() -> None:
    rules = _rules()
    for source in _copy_sources():
        target = ROOT / source
        files = [target] if target.is_file() else [p for p in target.rglob("*") if p.is_file()
                                                   and "__pycache__" not in p.parts]
        assert files, source
        for f in files:
            assert not ignored(f.relative_to(ROOT).as_posix(), rules), f"{f.relative_to(ROOT)} is ignored but copied"
