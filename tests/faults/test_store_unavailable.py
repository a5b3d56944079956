"""The sending gateway's store stops accepting writes (disk full, read-only file): the API
answers 503 with a clear error body and stores nothing for those requests; every request
answered 202 is delivered exactly once after the store recovers. Counted from the stores.

* disk full: NE's SQLite file lives on a tiny tmpfs that the test fills up (needs root for
  ``mount``; skipped locally without it, fails under CI=true);
* read-only: NE is restarted on the same file opened ``?mode=ro`` (no root needed), while
  NG's receipts for earlier referrals arrive and cannot be recorded yet.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import os
import secrets
import shutil
import subprocess
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import AsyncContextManager, AsyncIterator

import pytest

from gateway.schema import load_example
from gateway.service import Gateway
from gateway.settings import User

from testkit.gateway_pair import NIGER, NIGERIA

from testkit.harness import db_path, in_process_gateway, table_counts, wait_until
from tests.support.two_brokers import require

pytestmark = pytest.mark.broker

TOKEN = secrets.token_urlsafe(24)
API_EXTRA = {
    "users": (User("amina.caseworker", "caseworker", hashlib.sha256(TOKEN.encode()).hexdigest()),),
    "pseudonym_secret_hex": secrets.token_hex(32),
}


class Api:
    """NE's HTTP API on a free port, and a client posting referrals to it."""

    def __init__(self, stack: AsyncExitStack, gateway: Gateway) -> None:
        self.stack, self.gateway, self.n = stack, gateway, 0

    async def __aenter__(self) -> "Api":
        from aiohttp import ClientSession, ClientTimeout, web

        from gateway.api import create_app

        runner = web.AppRunner(create_app(self.gateway, self.gateway.settings), access_log=None)
        await runner.setup()
        self.stack.push_async_callback(runner.cleanup)
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.session = await self.stack.enter_async_context(ClientSession(timeout=ClientTimeout(total=30)))
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def post_referral(self) -> tuple[int, dict, dict]:
        """POST /referrals; (status, JSON body, headers)."""
        self.n += 1
        body = {"recipient": NIGERIA, "local_case_id": f"NE-ZINDER-2026-{self.n:04d}",
                "payload": load_example("referral.request")}
        async with self.session.post(f"http://127.0.0.1:{self.port}/referrals", json=body,
                                     headers={"Authorization": f"Bearer {TOKEN}"}) as resp:
            return resp.status, await resp.json(), dict(resp.headers)


def _assert_clear_503(status: int, body: dict, headers: dict) -> None:
    assert status == 503, body
    assert body["error"] == "store_unavailable"
    assert "nothing was stored" in body["detail"] and "retry" in body["detail"]
    assert headers.get("Retry-After")
    assert "/" not in body["detail"]  # no file path leaks into the answer


def _referral_rows(path: Path) -> int:
    return sum(n for (kind, _), n in table_counts(path)["outbox"].items() if kind == "referral.request")


async def _delivered(gateway: Gateway, ids: list[str]) -> bool:
    for message_id in ids:
        if (await gateway.store.get_outgoing(message_id)).status != "delivered":
            return False
    return True


@asynccontextmanager
async def _tmpfs(path: Path, size: str) -> AsyncIterator[Path]:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        require("mounting a tmpfs needs root (disk-full test)")
    path.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        require(f"cannot mount a tmpfs: {done.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=False)


def _fill(directory: Path) -> Path:
    """Write a filler file until the filesystem is full (ENOSPC)."""
    filler = directory / "filler"
    with open(filler, "wb", buffering=0) as f:
        chunk = b"\0" * 65536
        try:
            while True:
                f.write(chunk)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
        try:  # the last partial block
            while True:
                f.write(b"\0" * 512)
        except OSError:
            pass
    return filler


async def test_disk_full_answers_503_and_loses_nothing(tmp_path, run_id, amqp_url) -> None:
    async with _tmpfs(tmp_path / "ne-disk", "3m") as disk, AsyncExitStack() as stack:
        ng = await stack.enter_async_context(in_process_gateway(tmp_path, run_id, amqp_url, agency=NIGERIA))
        ne = await stack.enter_async_context(in_process_gateway(disk, run_id, amqp_url, **API_EXTRA))
        api = await stack.enter_async_context(Api(stack, ne))
        accepted: list[str] = []
        for _ in range(10):
            status, body, _ = await api.post_referral()
            assert status == 202, body
            accepted.append(body["message_id"])

        filler = _fill(disk)
        refused = 0
        for _ in range(200):  # until the store runs out of room (WAL growth fails)
            status, body, headers = await api.post_referral()
            if status == 202:
                accepted.append(body["message_id"])
                continue
            _assert_clear_503(status, body, headers)
            refused += 1
            if refused == 5:
                break
        assert refused == 5, "the full disk never made the store refuse a write"
        assert (await ne.store.ping()) in (True, False)  # a probe must not crash either

        filler.unlink()  # the operator frees space: no restart needed
        await wait_until(lambda: _delivered(ne, accepted), 90, interval=0.25, what="every 202 delivered")
        await asyncio.sleep(1.0)
        ng_ids = {r.message_id for r in await ng.store.list_incoming(1000)}
        ne_rows = _referral_rows(db_path(disk, NIGER))
        duplicates = ng.metrics.value("duplicates_total")

    print(f"\ndisk full: answered 202={len(accepted)} 503={refused}; NE outbox referral rows={ne_rows}; "
          f"NG stored={len(ng_ids)} lost={len(set(accepted) - ng_ids)} redeliveries_recognised={duplicates:.0f}")
    assert ng_ids == set(accepted)            # every 202 delivered, nothing else
    assert ne_rows == len(accepted)           # no 503 left a row behind
    assert sum(table_counts(db_path(tmp_path, NIGERIA))["inbox"].values()) == len(accepted)  # once each


def _ne(tmp: Path, run_id: str, amqp_url: str, *, read_only: bool) -> AsyncContextManager[Gateway]:
    return in_process_gateway(tmp, run_id, amqp_url, agency=NIGER, store_query="?mode=ro" if read_only else "",
                              **API_EXTRA)


async def test_read_only_store_answers_503_and_loses_nothing(tmp_path, run_id, amqp_url) -> None:
    ne_db = db_path(tmp_path, NIGER)
    async with AsyncExitStack() as stack:  # 1. NE accepts 5 referrals; NG is not running yet
        ne = await stack.enter_async_context(_ne(tmp_path, run_id, amqp_url, read_only=False))
        api = await stack.enter_async_context(Api(stack, ne))
        accepted = []
        for _ in range(5):
            status, body, _ = await api.post_referral()
            assert status == 202, body
            accepted.append(body["message_id"])

        async def all_sent() -> bool:
            return all([(await ne.store.get_outgoing(i)).status == "sent" for i in accepted])

        await wait_until(all_sent, 30, what="the 5 referrals published")
    before = table_counts(ne_db)

    async with AsyncExitStack() as stack:  # 2. NE restarts on a read-only store; NG comes up
        ne = await stack.enter_async_context(_ne(tmp_path, run_id, amqp_url, read_only=True))
        api = await stack.enter_async_context(Api(stack, ne))
        for _ in range(3):
            _assert_clear_503(*await api.post_referral())
        ng = await stack.enter_async_context(in_process_gateway(tmp_path, run_id, amqp_url, agency=NIGERIA))

        async def ng_stored_all() -> bool:
            return len(await ng.store.list_incoming(100)) == len(accepted)

        await wait_until(ng_stored_all, 30, what="NG stored the 5 referrals")
        await asyncio.sleep(1.5)  # NG's receipts reach NE, which cannot record them: requeued, not lost
        assert all([(await ne.store.get_outgoing(i)).status == "sent" for i in accepted])
        assert ne.metrics.value("messages_received_total") == 0
    assert table_counts(ne_db) == before  # the read-only phase wrote nothing

    async with AsyncExitStack() as stack:  # 3. the store is writable again
        ng = await stack.enter_async_context(in_process_gateway(tmp_path, run_id, amqp_url, agency=NIGERIA))
        ne = await stack.enter_async_context(_ne(tmp_path, run_id, amqp_url, read_only=False))
        await wait_until(lambda: _delivered(ne, accepted), 60, interval=0.25, what="the 5 receipts recorded")
        ng_ids = {r.message_id for r in await ng.store.list_incoming(100)}

    print(f"\nread-only: answered 202={len(accepted)} 503=3; NE outbox referral rows={_referral_rows(ne_db)}; "
          f"NG stored={len(ng_ids)}; delivered={len(accepted)}")
    assert ng_ids == set(accepted)
    assert _referral_rows(ne_db) == len(accepted)
