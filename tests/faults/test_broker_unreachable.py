"""The broker is unreachable when a referral is submitted: the submit still succeeds (the
outbox holds it, status ``queued``), and once the broker is back it is delivered once."""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import secrets
import time
from contextlib import AsyncExitStack
from urllib.parse import urlparse

import pytest

from gateway.schema import load_example
from gateway.settings import User

from testkit.gateway_pair import NIGERIA

from testkit.tcp_proxy import TcpProxy

from testkit.harness import WORKER, in_process_gateway, wait_until

pytestmark = pytest.mark.broker

API_AVAILABLE = importlib.util.find_spec("gateway.api") is not None


async def _submit_via_api(stack: AsyncExitStack, ne, token: str) -> str:
    """POST /referrals on NE's HTTP API; returns the message id (asserts 202)."""
    from aiohttp import ClientSession, ClientTimeout, web

    from gateway.api import create_app

    runner = web.AppRunner(create_app(ne, ne.settings), access_log=None)
    await runner.setup()
    stack.push_async_callback(runner.cleanup)
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    body = {"recipient": NIGERIA, "local_case_id": "NE-ZINDER-2026-0999", "payload": load_example("referral.request")}
    async with ClientSession(timeout=ClientTimeout(total=30)) as session:
        async with session.post(f"http://127.0.0.1:{port}/referrals", json=body,
                                headers={"Authorization": f"Bearer {token}"}) as resp:
            assert resp.status == 202, await resp.text()
            return (await resp.json())["message_id"]


@pytest.mark.parametrize("via", [
    "service",
    pytest.param("api", marks=pytest.mark.skipif(not API_AVAILABLE, reason="gateway.api not importable yet")),
])
async def test_submit_while_broker_unreachable_is_delivered_once_after(tmp_path, run_id, amqp_url, via) -> None:
    parsed = urlparse(amqp_url)
    proxy = TcpProxy(parsed.hostname or "127.0.0.1", parsed.port or 5672)
    await proxy.start()
    proxied = f"amqp://{parsed.username}:{parsed.password}@127.0.0.1:{proxy.port}{parsed.path or '/'}"
    token = secrets.token_urlsafe(24)
    api_extra = {
        "users": (User("amina.caseworker", "caseworker", hashlib.sha256(token.encode()).hexdigest()),),
        "pseudonym_secret_hex": secrets.token_hex(32),
    }
    try:
        async with AsyncExitStack() as stack:
            ng = await stack.enter_async_context(in_process_gateway(tmp_path, run_id, amqp_url, agency=NIGERIA))
            ne = await stack.enter_async_context(in_process_gateway(tmp_path, run_id, proxied, **api_extra))

            await proxy.stop()  # pull the plug between NE and the broker

            async def disconnected() -> bool:
                return not await ne.transport.is_healthy()

            await wait_until(disconnected, 10, what="NE notices the lost connection")

            started = time.monotonic()
            if via == "api":
                message_id = await _submit_via_api(stack, ne, token)
            else:
                message_id = (await ne.submit("referral.request", load_example("referral.request"),
                                              recipient=NIGERIA, case_ref="ne-ng-unreach0001", actor=WORKER)).id
            assert time.monotonic() - started < 2.0  # the broker's absence does not block submit
            record, trail = await ne.outgoing_status(message_id)
            assert record.status == "queued" and [s for s, _ in trail] == ["queued"]

            async def publish_failed() -> bool:  # the outbox tried, failed, and kept it queued
                record = await ne.store.get_outgoing(message_id)
                return record.attempts >= 1 and record.last_error == "transport_unavailable"

            await wait_until(publish_failed, 20, what="a failed publish attempt")
            assert (await ne.store.get_outgoing(message_id)).status == "queued"
            assert ne.metrics.value("publish_failures_total", reason="transport_unavailable") >= 1
            assert await ng.list_inbox(limit=10) == []

            await proxy.start()  # same port: the robust connection comes back by itself

            async def delivered() -> bool:
                return (await ne.store.get_outgoing(message_id)).status == "delivered"

            await wait_until(delivered, 60, what="NE status delivered after reconnect")
            await asyncio.sleep(0.5)  # a duplicate, if any, would arrive now
            inbox = await ng.list_inbox(limit=10)
            assert [(r.message_id, r.message_type) for r in inbox] == [(message_id, "referral.request")]
            assert [s for s, _ in (await ne.outgoing_status(message_id))[1]] == ["queued", "sent", "delivered"]
            assert ng.metrics.value("duplicates_total") == 0
    finally:
        await proxy.stop()


async def test_reconnect_retries_the_outbox_at_once_not_after_its_back_off(tmp_path, run_id, amqp_url) -> None:
    """Issue 15: a message in back-off (here 30 s) goes out as soon as the connection is
    back (the robust connection's reconnect), not when its back-off ends."""
    parsed = urlparse(amqp_url)
    proxy = TcpProxy(parsed.hostname or "127.0.0.1", parsed.port or 5672)
    await proxy.start()
    proxied = f"amqp://{parsed.username}:{parsed.password}@127.0.0.1:{proxy.port}{parsed.path or '/'}"
    try:
        async with AsyncExitStack() as stack:
            ng = await stack.enter_async_context(in_process_gateway(tmp_path, run_id, amqp_url, agency=NIGERIA))
            ne = await stack.enter_async_context(in_process_gateway(
                tmp_path, run_id, proxied, retry_initial_seconds=30.0, retry_max_seconds=60.0))
            await proxy.stop()

            async def disconnected() -> bool:
                return not await ne.transport.is_healthy()

            await wait_until(disconnected, 10, what="NE notices the lost connection")
            message_id = (await ne.submit("referral.request", load_example("referral.request"),
                                          recipient=NIGERIA, case_ref="ne-ng-reconn00001", actor=WORKER)).id

            async def backing_off() -> bool:
                record = await ne.store.get_outgoing(message_id)
                return record.attempts >= 1 and record.status == "queued"

            await wait_until(backing_off, 20, what="a failed publish attempt")
            due_in = ((await ne.store.get_outgoing(message_id)).next_attempt_at - ne.clock()).total_seconds()
            assert due_in > 20  # without the reconnect hook it would wait this long

            await proxy.start()
            started = time.monotonic()

            async def delivered() -> bool:
                return (await ne.store.get_outgoing(message_id)).status == "delivered"

            await wait_until(delivered, 25, what="delivered after the reconnect")
            took = time.monotonic() - started
            print(f"\nreconnect: back-off due in {due_in:.0f}s; delivered {took:.1f}s after the broker was back")
            assert took < 10.0  # reconnect interval (2 s) + publish + receipt, far below the back-off
            assert [r.message_id for r in await ng.list_inbox(limit=10)] == [message_id]
    finally:
        await proxy.stop()
