"""kill -9 of the SENDING gateway while POST /referrals with Idempotency-Keys are in flight over
HTTP; restart it; retry every POST that got no answer with its key: every referral arrives
exactly once at the receiver (issue 15, item 1)."""

from __future__ import annotations

import asyncio
import secrets
import socket
import time
from collections import Counter

import aiohttp
import pytest

from gateway.schema import load_example

from testkit.gateway_pair import NIGER, NIGERIA

from testkit.harness import db_path, in_process_gateway, table_counts, wait_until

pytestmark = pytest.mark.broker

COUNT = 80
CONCURRENCY = 16
KILL_AFTER_ANSWERS = 20  # NE is killed once this many POSTs were answered; the rest are in flight or unsent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("crash", ["kill_9_from_outside", "dies_after_an_outbox_commit"])
async def test_kill_sender_mid_post_then_retry_with_keys_gives_exactly_once(
        tmp_path, run_id, amqp_url, gateway_process, monkeypatch, crash) -> None:
    started = time.monotonic()
    token = secrets.token_urlsafe(24)
    monkeypatch.setenv("FAULT_API_TOKEN", token)
    port = _free_port()
    extra: tuple[str, ...] = ("--http-port", str(port))
    if crash == "dies_after_an_outbox_commit":
        # Deterministic worst case: the process dies (os._exit, as kill -9) right after a
        # referral is durable and before its answer is written, with others in flight.
        extra += ("--crash-marker", str(tmp_path / "crashed"), "--crash-after-outbox", str(KILL_AFTER_ANSWERS))
    ne = gateway_process(agency=NIGER, extra_args=extra)
    payload = load_example("referral.request")
    # One referral per case, so that the receiver can count each one by its case pseudonym.
    requests = {f"fault-key-{i:04d}": {"recipient": NIGERIA, "case_ref": f"ne-ng-idem{i:06d}", "payload": payload}
                for i in range(COUNT)}
    answered: dict[str, dict] = {}
    replayed: set[str] = set()
    url = f"http://127.0.0.1:{port}/referrals"
    headers = {"Authorization": f"Bearer {token}"}

    async def post(session: aiohttp.ClientSession, key: str) -> None:
        try:
            async with session.post(url, json=requests[key], headers={**headers, "Idempotency-Key": key}) as resp:
                body = await resp.json()
                if resp.status == 202:
                    answered[key] = body
                    if resp.headers.get("Idempotent-Replayed") == "true":
                        replayed.add(key)
        except (aiohttp.ClientError, asyncio.TimeoutError):
            pass  # ambiguous: the connection died with the process; stored or not, we do not know

    async with in_process_gateway(tmp_path, run_id, amqp_url, agency=NIGERIA) as ng:
        await ne.start()
        timeout = aiohttp.ClientTimeout(total=10)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            gate = asyncio.Semaphore(CONCURRENCY)

            async def limited(key: str) -> None:
                async with gate:
                    if ne.running:
                        await post(session, key)

            burst = [asyncio.create_task(limited(key)) for key in requests]
            if crash == "kill_9_from_outside":
                await wait_until(lambda: _true(len(answered) >= KILL_AFTER_ANSWERS), 30, interval=0.005,
                                 what=f"{KILL_AFTER_ANSWERS} answers before the kill")
                await ne.kill()
            else:
                assert await ne.wait(30) == 137
            await asyncio.gather(*burst)
            before_kill = len(answered)
            ambiguous = [key for key in requests if key not in answered]
            assert ambiguous, "the kill came after every POST was answered: nothing was in flight"
            # Stored in NE's outbox before the kill but never answered: the case only the key can save.
            stored = sum(n for (kind, _), n in table_counts(db_path(tmp_path, NIGER))["outbox"].items()
                         if kind == "referral.request")
            stored_unanswered = stored - before_kill
            assert stored_unanswered >= (1 if crash == "dies_after_an_outbox_commit" else 0)

            await ne.start()
            for _ in range(3):  # retry each unanswered POST with its key until it is answered
                pending = [key for key in requests if key not in answered]
                if not pending:
                    break
                await asyncio.gather(*(post(session, key) for key in pending))
        assert set(answered) == set(requests)
        ids = {key: body["message_id"] for key, body in answered.items()}
        assert len(set(ids.values())) == COUNT

        async def all_arrived() -> bool:
            inbox = await ng.store.list_incoming(COUNT * 3)
            return sum(r.message_type == "referral.request" for r in inbox) >= COUNT

        await wait_until(all_arrived, 40, interval=0.2, what=f"{COUNT} referrals at NG")
        await asyncio.sleep(1.0)  # anything extra still on its way would arrive now
        inbox = [r for r in await ng.store.list_incoming(COUNT * 3) if r.message_type == "referral.request"]
        per_case = Counter(r.case_ref for r in inbox)
        assert per_case == Counter({body["case_ref"]: 1 for body in requests.values()})  # each exactly once
        assert {r.message_id for r in inbox} == set(ids.values())  # the ids the client was answered
    await ne.stop()
    elapsed = time.monotonic() - started
    assert elapsed < 60, f"took {elapsed:.1f}s"
    print(f"\n{crash}: {COUNT} POSTs: {before_kill} answered before kill -9, {len(ambiguous)} unanswered and retried with "
          f"their keys ({stored_unanswered} of them had been stored before the kill, {len(replayed)} replayed "
          f"from a stored answer); NG received {len(inbox)} referrals, "
          f"0 duplicates, in {elapsed:.1f}s")


async def _true(value: bool) -> bool:
    return value
