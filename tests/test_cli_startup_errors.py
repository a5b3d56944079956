"""`gateway serve` with one configuration mistake each: exit 1, one line naming it, no traceback, no hang.

Each case runs the real command as a subprocess (with a timeout, so a hang fails the
test) against the real RabbitMQ where the mistake is about the broker.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import socket
import subprocess
import sys
from pathlib import Path
from typing import Callable

import aio_pika
import pytest
from yarl import URL

from gateway.keyfile import generate_agency_keys, key_path, write_key_file
from gateway.clock import utcnow

from testkit.gateway_pair import NIGERIA, ROOT

#: A start that hangs fails here instead of hanging the suite.
TIMEOUT_S = 60


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _base(tmp: Path, amqp_url: str) -> dict[str, object]:
    run = secrets.token_hex(4)
    return {
        "agency_id": NIGERIA,
        "demo_keys": True,
        "allow_demo_directory": True,
        "directory_path": str(ROOT / "keys" / "demo" / "directory.json"),
        "authority_key_path": str(ROOT / "keys" / "demo" / "authority.pub.json"),
        "amqp_url": amqp_url,
        "exchange": f"startup-{run}",
        "queue_prefix": f"startup-{run}.",
        "store_url": f"sqlite:///{tmp / 'gateway.db'}",
        "http_port": _free_port(),
        "pseudonym_secret_hex": secrets.token_hex(32),
        "checkpoint_interval_seconds": 0,
    }


def _write(tmp: Path, settings: dict[str, object]) -> Path:
    path = tmp / "gateway.toml"
    path.write_text("".join(f"{k} = {json.dumps(v)}\n" for k, v in settings.items() if v is not None),
                    encoding="utf-8")
    return path


def _serve(config: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_") and k != "AMQP_URL"}
    return subprocess.run([sys.executable, "-m", "gateway.cli", "serve", "--config", str(config)], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=TIMEOUT_S)


def _assert_one_line(result: subprocess.CompletedProcess[str], *expected: str) -> None:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    errors = [line for line in lines if line.startswith("gateway: error:")]
    assert len(errors) == 1, lines
    for word in expected:
        assert word in errors[0], errors[0]
    # Nothing else on stderr but JSON log lines below warning: the one line is the whole story.
    others = [json.loads(line) for line in lines if line not in errors]
    assert all(entry["level"] in ("debug", "info") for entry in others), others


def _with_key_dir(tmp: Path, settings: dict[str, object], file_mode: int) -> None:
    key_dir = tmp / "keys"
    key_dir.mkdir()
    now = utcnow()
    for pair in generate_agency_keys(NIGERIA, not_before=now, valid_days=30):
        path = key_path(key_dir, pair)
        write_key_file(path, pair)
        path.chmod(file_mode)
    settings.update(demo_keys=False, key_dir=str(key_dir))


Mistake = Callable[[Path, dict[str, object]], None]


def _wrong_password(tmp: Path, s: dict[str, object]) -> None:
    s["amqp_url"] = str(URL(str(s["amqp_url"])).with_password("not-the-password"))


def _wrong_vhost(tmp: Path, s: dict[str, object]) -> None:
    s["amqp_url"] = str(URL(str(s["amqp_url"])).with_path("/no-such-vhost-" + secrets.token_hex(3)))


def _missing_exchange(tmp: Path, s: dict[str, object]) -> None:
    s["declare_topology"] = False


def _missing_directory(tmp: Path, s: dict[str, object]) -> None:
    s["directory_path"] = str(tmp / "no-such-directory.json")


def _missing_authority_key(tmp: Path, s: dict[str, object]) -> None:
    s["authority_key_path"] = str(tmp / "no-such-authority.pub.json")


def _empty_secret(tmp: Path, s: dict[str, object]) -> None:
    s["pseudonym_secret_hex"] = ""


def _non_hex_secret(tmp: Path, s: dict[str, object]) -> None:
    s["pseudonym_secret_hex"] = "zz" * 32


def _no_secret(tmp: Path, s: dict[str, object]) -> None:
    s["pseudonym_secret_hex"] = None


def _readable_key_file(tmp: Path, s: dict[str, object]) -> None:
    _with_key_dir(tmp, s, 0o640)


def _missing_key_dir(tmp: Path, s: dict[str, object]) -> None:
    s.update(demo_keys=False, key_dir=str(tmp / "no-such-keys"))


def _bad_port(tmp: Path, s: dict[str, object]) -> None:
    s["http_port"] = 70000


MISTAKES: list[tuple[str, Mistake, tuple[str, ...]]] = [
    ("wrong broker password", _wrong_password, ("broker_login_refused", "refused the login", "password")),
    ("wrong broker vhost", _wrong_vhost, ("broker_vhost_refused", "no-such-vhost")),
    ("exchange missing, declare_topology false", _missing_exchange,
     ("broker_topology", "exchange", "declare_topology")),
    ("directory file missing", _missing_directory, ("directory_path", "no-such-directory.json")),
    ("authority key missing", _missing_authority_key, ("authority_key_path", "no-such-authority")),
    ("empty pseudonym secret", _empty_secret, ("pseudonym_secret_hex", "empty")),
    ("pseudonym secret not hex", _non_hex_secret, ("pseudonym_secret_hex", "not hexadecimal")),
    ("pseudonym secret not set", _no_secret, ("pseudonym_secret_hex", "not set")),
    ("key file readable by the group", _readable_key_file, ("0640", "0600")),
    ("key directory missing", _missing_key_dir, ("no-such-keys",)),
    ("HTTP port out of range", _bad_port, ("http_port", "65535")),
]


@pytest.mark.broker
@pytest.mark.parametrize(("mistake", "expected"), [pytest.param(m, e, id=name) for name, m, e in MISTAKES])
def test_each_configuration_mistake_stops_serve_with_one_line(tmp_path, amqp_url, mistake, expected) -> None:
    settings = _base(tmp_path, amqp_url)
    mistake(tmp_path, settings)
    _assert_one_line(_serve(_write(tmp_path, settings)), *expected)


@pytest.mark.broker
def test_http_port_in_use_stops_serve_before_the_broker(tmp_path, amqp_url) -> None:
    settings = _base(tmp_path, amqp_url)
    with socket.socket() as occupied:
        occupied.bind(("127.0.0.1", 0))
        occupied.listen(1)
        settings["http_port"] = occupied.getsockname()[1]
        _assert_one_line(_serve(_write(tmp_path, settings)), "http_port_in_use", str(settings["http_port"]), "in use")


@pytest.mark.broker
def test_missing_queue_with_declare_topology_false_is_named(tmp_path, amqp_url) -> None:
    settings = _base(tmp_path, amqp_url)
    settings["declare_topology"] = False
    exchange = str(settings["exchange"])

    async def declare_exchanges(delete: bool) -> None:
        connection = await aio_pika.connect(amqp_url)
        async with connection:
            channel = await connection.channel()
            for name in (exchange, exchange + ".dlx"):
                if delete:
                    await channel.exchange_delete(name)
                else:
                    await channel.declare_exchange(name, aio_pika.ExchangeType.TOPIC, durable=True)

    asyncio.run(declare_exchanges(delete=False))
    try:
        _assert_one_line(_serve(_write(tmp_path, settings)), "broker_topology",
                         f"{settings['queue_prefix']}inbox.{NIGERIA}", "definitions.json")
    finally:
        asyncio.run(declare_exchanges(delete=True))


def test_missing_settings_file_is_one_line(tmp_path) -> None:
    _assert_one_line(_serve(tmp_path / "nowhere.toml"), "settings_error", "nowhere.toml")


@pytest.mark.broker
def test_an_unreachable_broker_is_not_a_configuration_error(tmp_path, amqp_url) -> None:
    # The API keeps taking referrals into the outbox while the broker is away: serve keeps running.
    settings = _base(tmp_path, amqp_url)
    settings["amqp_url"] = f"amqp://guest:guest@127.0.0.1:{_free_port()}/"
    config = _write(tmp_path, settings)
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_") and k != "AMQP_URL"}
    proc = subprocess.Popen([sys.executable, "-m", "gateway.cli", "serve", "--config", str(config)], cwd=ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        with pytest.raises(subprocess.TimeoutExpired):
            proc.wait(timeout=8)
    finally:
        proc.terminate()
        _, stderr = proc.communicate(timeout=TIMEOUT_S)
    assert proc.returncode == 0, stderr[-3000:]
    assert "Traceback" not in stderr
    events = [json.loads(line)["event"] for line in stderr.splitlines() if line.startswith("{")]
    assert "transport.unreachable_at_start" in events and "gateway.serving" in events
