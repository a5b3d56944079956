"""The directory feed and keeper against hostile or unlucky input (security review 12:
M1 deep nesting, M2 retry back-off, M3 stored row bound to its signed bytes, L1 a commit
whose answer was lost, L7 oversize publications audited)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from gateway.clock import utcnow
from gateway.demo_identities import demo_authority_key
from gateway.directory import directory_digest
from gateway.directory_updates import MAX_DIRECTORY_BYTES, DirectoryKeeper, StoredDirectoryMismatchError, _claimed_serial
from gateway.store import DirectoryRecord, StoreUnavailableError, open_store
from gateway.transport import directory_feed
from gateway.transport.directory_feed import RetryDelay, publish_directory_memory

from testkit.gateway_pair import NIGERIA, eventually, gateway_pair
from tests.test_directory_updates import audited, exchange_of, signed_directory

DEEP = b'{"directory":' + b"[" * 200_000 + b"]" * 200_000 + b"}"


def test_the_claimed_serial_of_a_deeply_nested_file_is_unknown_not_an_exception() -> None:
    assert _claimed_serial(b"[" * 200_000 + b"]" * 200_000) is None
    assert _claimed_serial(DEEP) is None
    assert _claimed_serial(b'{"directory": {"serial": 7}}') == 7


async def test_a_deeply_nested_publication_is_refused_and_does_not_block_the_feed(tmp_path: Path) -> None:
    async with gateway_pair(tmp_path) as (ne, ng):
        offer = await ng.directory_keeper.offer(DEEP, "broker")
        assert (offer.outcome, offer.reason) == ("refused", "malformed")
        broker = ne.transport.broker
        publish_directory_memory(broker, exchange_of(ng), DEEP)
        publish_directory_memory(broker, exchange_of(ng), signed_directory(2))

        async def serial_2() -> bool:
            return ng.directory.serial == 2

        await eventually(serial_2, timeout=5)


async def test_an_oversize_publication_is_refused_and_audited(tmp_path: Path) -> None:
    async with gateway_pair(tmp_path) as (ne, ng):
        publish_directory_memory(ne.transport.broker, exchange_of(ng), b" " * (MAX_DIRECTORY_BYTES + 1))
        publish_directory_memory(ne.transport.broker, exchange_of(ng), signed_directory(2))

        async def serial_2() -> bool:
            return ng.directory.serial == 2

        await eventually(serial_2, timeout=5)
        refused = await audited(ng, "directory.refused")
        assert refused == [{"reason": "oversize", "serial": None, "current_serial": 1, "source": "broker"}]


def test_the_retry_pause_doubles_up_to_a_cap_and_resets_after_a_success() -> None:
    delay = RetryDelay()
    pauses = [delay.next() for _ in range(10)]
    assert pauses[:4] == [2.0, 4.0, 8.0, 16.0] and pauses[-1] == directory_feed.RETRY_MAX_SECONDS
    assert pauses == sorted(pauses)
    delay.reset()
    assert delay.next() == 2.0
    # A 40 s outage (the review's case) costs 5 returns, not 20: within a quorum queue's default limit.
    elapsed, returns, delay = 0.0, 0, RetryDelay()
    while elapsed < 40:
        elapsed += delay.next()
        returns += 1
    assert returns <= 5


async def test_a_commit_whose_answer_was_lost_is_taken_not_refused_as_a_rollback(tmp_path: Path,
                                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(directory_feed, "RETRY_SECONDS", 0.05)
    async with gateway_pair(tmp_path, directory_check_seconds=3600) as (ne, ng):
        original = ng.store.accept_directory
        calls = {"n": 0}

        async def flaky(record: Any, *, audit: Any = None) -> bool:
            ok = await original(record, audit=audit)
            calls["n"] += 1
            if calls["n"] == 1:
                raise StoreUnavailableError("connection lost after commit")
            return ok

        monkeypatch.setattr(ng.store, "accept_directory", flaky)
        publish_directory_memory(ne.transport.broker, exchange_of(ng), signed_directory(2))

        async def serial_2() -> bool:
            return ng.directory.serial == 2

        await eventually(serial_2, timeout=5)
        assert calls["n"] == 2
        assert await audited(ng, "directory.refused") == []


async def _keeper(store) -> DirectoryKeeper:
    return DirectoryKeeper(store, (bytes(demo_authority_key().verify_key),), agency_id=NIGERIA,
                           allow_demo=True, clock=utcnow)


async def test_a_stored_row_whose_serial_is_not_its_signed_file_stops_the_start(tmp_path: Path) -> None:
    store = await open_store(f"sqlite:///{tmp_path}/s.db")
    try:
        old, now = signed_directory(1), utcnow()
        assert await store.accept_directory(DirectoryRecord(999, directory_digest(old), old, now, now, "broker"))
        with pytest.raises(StoredDirectoryMismatchError) as caught:
            await (await _keeper(store)).startup(signed_directory(3))
        assert "999" in str(caught.value)
    finally:
        await store.close()


async def test_a_stored_row_whose_digest_is_not_its_signed_file_is_not_taken(tmp_path: Path) -> None:
    store = await open_store(f"sqlite:///{tmp_path}/s.db")
    try:
        keeper = await _keeper(store)
        await keeper.startup(signed_directory(1))
        five, now = signed_directory(5), utcnow()
        assert await store.accept_directory(DirectoryRecord(5, "00" * 32, five, now, now, "broker"))
        with pytest.raises(StoredDirectoryMismatchError):
            await keeper.newer_in_store()
        assert keeper.current.directory.serial == 1
        # A publication outranked by that row is refused as a store mismatch, not a rollback.
        offer = await keeper.offer(signed_directory(3), "broker")
        assert (offer.outcome, offer.reason) == ("refused", "store_mismatch")
    finally:
        await store.close()
