"""`gateway serve` as a real process, and the quarantine admin CLI, against the real RabbitMQ."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import socket
import sys
from pathlib import Path

import aiohttp
import pytest

from gateway.cli import main
from gateway.schema import load_example
from gateway.service import Actor

from testkit.gateway_pair import NIGER, NIGERIA, ROOT, eventually, gateway_pair

pytestmark = pytest.mark.broker


def _config(tmp: Path, gw, **extra) -> Path:
    s = gw.settings
    lines = [
        f'agency_id = "{s.agency_id}"', "demo_keys = true", "allow_demo_directory = true",
        f'directory_path = "{s.directory_path}"', f'authority_key_path = "{s.authority_key_path}"',
        f'exchange = "{s.exchange}"', f'queue_prefix = "{s.queue_prefix}"',
        f'store_url = "sqlite:///{tmp / (s.agency_id + "-cli.db")}"',
    ] + [f"{k} = {json.dumps(v)}" for k, v in extra.items()]
    path = tmp / f"{s.agency_id}.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


async def test_quarantine_list_and_redrive(tmp_path, amqp_url, monkeypatch, capsys) -> None:
    monkeypatch.setenv("AMQP_URL", amqp_url)
    async with gateway_pair(tmp_path, transport="amqp", amqp_url=amqp_url) as (ne, ng):
        header = await ne.submit("referral.request", load_example("referral.request"), recipient=NIGERIA,
                                 case_ref="ne-ng-clicase000001", actor=Actor("w", "caseworker"))
        record = await ne.store.get_outgoing(header.id)
        doc = json.loads(record.envelope)
        doc["header"]["id"] = "0c7e5f3a-9b2d-4e8f-a1b3-c5d7e9f1a2b4"
        doc["header"]["case"] = "ne-ng-tampered00001"
        from gateway.transport import WireMessage
        await ne.transport.publish(WireMessage(doc["header"]["id"], NIGER, NIGERIA, json.dumps(doc).encode(), {}))

        async def quarantined():
            return any(q.message_id == doc["header"]["id"] for q in await ng.transport.list_quarantine(10))
        await eventually(quarantined)
        config = _config(tmp_path, ng)
        capsys.readouterr()  # drop what the in-process gateways logged so far
        assert await asyncio.to_thread(main, ["quarantine", "list", "--config", str(config), "--json"]) == 0
        # The in-process gateways log to stdout (pytest's default structlog set-up) while the
        # CLI runs: keep the CLI's own JSON lines.
        listed = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
        assert [(e["message_id"], e["reason"]) for e in listed] == [(doc["header"]["id"], "bad_signature")]
        assert await asyncio.to_thread(main, ["quarantine", "redrive", "--config", str(config), doc["header"]["id"]]) == 0
        assert "re-driven" in capsys.readouterr().out
        # Re-driven into NG's inbox, verified again, and quarantined again (it is still tampered).
        await eventually(quarantined)
        assert await asyncio.to_thread(main, ["quarantine", "redrive", "--config", str(config),
                                              "5b0f8c1e-2d3a-4b5c-9d6e-7f8091a2b3c4"]) == 1


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def test_serve_runs_one_gateway_and_stops_on_sigterm(tmp_path, amqp_url) -> None:
    async with gateway_pair(tmp_path, transport="amqp", amqp_url=amqp_url) as (ne, ng):
        port = _free_port()
        token = "serve-test-token"
        config = _config(tmp_path, ng, http_port=port, pseudonym_secret_hex="ab" * 32)
        with config.open("a", encoding="utf-8") as f:
            f.write(f'[[users]]\nname = "officer"\nrole = "caseworker"\n'
                    f'token_sha256 = "{hashlib.sha256(token.encode()).hexdigest()}"\n')
        await ng.stop()  # the served process takes over NG's queue
        env = dict(os.environ, AMQP_URL=amqp_url)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway.cli", "serve", "--config", str(config), cwd=ROOT, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        try:
            async with aiohttp.ClientSession() as session:
                async def ready():
                    try:
                        async with session.get(f"http://127.0.0.1:{port}/readyz") as resp:
                            return resp.status == 200
                    except aiohttp.ClientError:
                        return False
                await eventually(ready, timeout=30)
                header = await ne.submit("referral.request", load_example("referral.request"), recipient=NIGERIA,
                                         case_ref="ne-ng-servecase00001", actor=Actor("w", "caseworker"))

                async def listed():
                    async with session.get(f"http://127.0.0.1:{port}/inbox",
                                           headers={"Authorization": f"Bearer {token}"}) as resp:
                        return any(i["message_id"] == header.id for i in (await resp.json())["items"])
                await eventually(listed)
        finally:
            proc.send_signal(signal.SIGTERM)
            _, stderr = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode == 0, stderr.decode()[-2000:]
        assert b"Amaka" not in stderr and b"Testfixture" not in stderr
