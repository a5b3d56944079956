"""The store conformance suite: behaviour every backend must have, written against the
``Store`` interface only (the idea of Trillian's storage/testonly).

A backend runs it by subclassing :class:`StoreConformance` in its own test module
(``from tests.support.store_conformance import StoreConformance``) and providing one
fixture, ``harness``, that returns a :class:`StoreHarness` for a fresh, empty database::

    class TestSQLiteStore(StoreConformance):
        @pytest.fixture
        def harness(self, tmp_path):
            return SQLiteHarness(tmp_path / "gateway.db")

Nothing here may import a backend module or peek at SQL.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone
from typing import AsyncIterator, Protocol

import pytest

from gateway.store import (
    INCOMING_RANK,
    OUTGOING_RANK,
    AuditEntry,
    AuditQuery,
    Case,
    CheckpointRecord,
    DataKey,
    DataKeyExistsError,
    DirectoryRecord,
    IdempotencyRecord,
    IncomingMessage,
    MessageConflictError,
    MessageNotFoundError,
    OutboxEntry,
    Store,
    StoreArgumentError,
    StoreError,
    StoreUnavailableError,
    WebSession,
    Withdrawal,
)
from gateway.audit import merkle
from gateway.audit.leaf import leaf_hash
from gateway.audit.log import AuditLog
from gateway.demo_identities import demo_identity

T0 = datetime(2025, 3, 1, 12, 0, 0, 123456, tzinfo=timezone.utc)
WAT = timezone(timedelta(hours=1))  # West Africa Time: inputs need not be in UTC
NAIVE = datetime(2025, 3, 1, 12, 0, 0)  # no tzinfo: every store method refuses it


class StoreHarness(Protocol):
    """What a backend provides to run the suite."""

    async def open(self) -> Store:
        """Open a store on this harness's database (same data every call: used to reopen)."""

    async def open_read_only(self) -> Store:
        """Open the same database so that reads work and every write fails."""


def new_id() -> str:
    return str(uuid.uuid4())


def outgoing(created_at: datetime = T0, *, message_id: str | None = None, envelope: bytes = b"sealed-envelope") -> OutboxEntry:
    return OutboxEntry(
        message_id=message_id or new_id(),
        case_ref="case-7f3a9c01",
        recipient="NG-NAPTIP",
        message_type="referral.request",
        envelope=envelope,
        created_at=created_at,
    )


def incoming(received_at: datetime = T0, *, message_id: str | None = None, envelope: bytes = b"sealed-envelope") -> IncomingMessage:
    return IncomingMessage(
        message_id=message_id or new_id(),
        sender="NE-ANLTP",
        message_type="referral.request",
        case_ref="case-7f3a9c01",
        envelope=envelope,
        received_at=received_at,
    )


def audit(n: int = 0, **overrides: object) -> AuditEntry:
    fields: dict[str, object] = dict(
        at=T0 + timedelta(seconds=n),
        event_type="message.sent",
        actor="worker",
        case_ref="case-7f3a9c01",
        message_id=new_id(),
        detail_json=f'{{"n":{n}}}',
        entry_hash=bytes([n % 256]) * 32,
    )
    fields.update(overrides)
    return AuditEntry(**fields)  # type: ignore[arg-type]


async def assert_nodes_match_leaves(store: Store) -> None:
    """Every complete subtree of the stored audit log is stored, and is the hash of its leaves
    (the backends' migrations backfill them; appends add them)."""
    leaves = await store.audit_hashes(1, 100_000)
    ids = [(level, idx) for level in range(len(leaves).bit_length()) for idx in range(len(leaves) >> level)]
    nodes = await store.audit_nodes(ids)
    assert set(nodes) == set(ids)
    for (level, idx), h in nodes.items():
        assert h == merkle.root(leaves[idx << level:(idx + 1) << level]), (level, idx)
    assert await store.audit_nodes([(1, len(leaves) // 2), (0, len(leaves))]) == {}  # nothing beyond the log


def data_key(key_id: str, case_ref: str, *, parent: str | None = None, wrapped: bytes = b"wrapped-key") -> DataKey:
    return DataKey(key_id=key_id, case_ref=case_ref, kind="message" if parent else "case",
                   wrapped=wrapped, created_at=T0, parent_key_id=parent)


async def _reach_outgoing(store: Store, message_id: str, status: str) -> None:
    """Bring a freshly queued message to ``status`` by the shortest legal path."""
    if status == "queued":
        return
    if status == "sent":
        assert await store.mark_sent(message_id, T0)
    elif status == "failed":
        assert await store.mark_failed(message_id, "broker_unreachable", at=T0)
    else:
        assert await store.set_status(message_id, status, T0)  # type: ignore[arg-type]


def directory_record(serial: int, signed: bytes = b"signed", *, source: str = "broker") -> DirectoryRecord:
    body = signed + b"-%d" % serial
    return DirectoryRecord(serial, hashlib.sha256(body).hexdigest(), body, T0, T0 + timedelta(seconds=serial), source)


def _hex(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def idem_claim(key: str, *, request: str = "body", created_at: datetime = T0) -> IdempotencyRecord:
    """A claim of key ``key`` for request ``request``, valid for 7 days."""
    return IdempotencyRecord(_hex(key), "referrals.submit", _hex(request), created_at, created_at + timedelta(days=7))


def idem_answer(claim: IdempotencyRecord, body: str, status: int = 202) -> IdempotencyRecord:
    return dataclasses.replace(claim, status_code=status, response_json=body,
                               completed_at=claim.created_at + timedelta(seconds=1))


class StoreConformance:
    """Subclass as ``Test<Backend>Store`` and provide a ``harness`` fixture."""

    @pytest.fixture
    async def store(self, harness: StoreHarness) -> AsyncIterator[Store]:
        store = await harness.open()
        yield store
        await store.close()

    # --- outbox ---------------------------------------------------------------------------

    async def test_add_and_get_outgoing_round_trips(self, store: Store) -> None:
        msg = outgoing(T0.astimezone(WAT), envelope=bytes(range(256)))
        assert await store.add_outgoing(msg) is True
        row = await store.get_outgoing(msg.message_id)
        assert row is not None
        assert (row.message_id, row.case_ref, row.recipient, row.message_type) == (
            msg.message_id, msg.case_ref, msg.recipient, msg.message_type,
        )
        assert row.envelope == bytes(range(256))
        assert (row.status, row.attempts, row.last_error) == ("queued", 0, None)
        assert row.created_at == row.next_attempt_at == row.updated_at == T0
        assert row.created_at.utcoffset() == timedelta(0)  # comes back in UTC, microseconds kept
        assert await store.get_outgoing(new_id()) is None

    async def test_due_outgoing_is_queued_and_due_oldest_first(self, store: Store) -> None:
        newest, oldest, middle = outgoing(T0 + timedelta(seconds=2)), outgoing(T0), outgoing(T0 + timedelta(seconds=1))
        sent, failed, later = outgoing(T0), outgoing(T0), outgoing(T0 + timedelta(hours=1))
        for msg in (newest, oldest, middle, sent, failed, later):
            await store.add_outgoing(msg)
        await store.mark_sent(sent.message_id, T0)
        await store.mark_failed(failed.message_id, "rejected_by_broker", at=T0)

        now = T0 + timedelta(minutes=1)
        due = await store.due_outgoing(now, limit=10)
        assert [r.message_id for r in due] == [oldest.message_id, middle.message_id, newest.message_id]
        assert [r.message_id for r in await store.due_outgoing(now, limit=2)] == [oldest.message_id, middle.message_id]
        assert await store.due_outgoing(T0 - timedelta(seconds=1), limit=10) == []
        assert later.message_id in {r.message_id for r in await store.due_outgoing(T0 + timedelta(hours=2), 10)}

    async def test_mark_sent_leaves_the_queue(self, store: Store) -> None:
        msg = outgoing()
        await store.add_outgoing(msg)
        at = T0 + timedelta(seconds=3)
        assert await store.mark_sent(msg.message_id, at) is True
        row = await store.get_outgoing(msg.message_id)
        assert (row.status, row.attempts, row.updated_at) == ("sent", 1, at)
        assert await store.due_outgoing(T0 + timedelta(days=1), 10) == []
        assert await store.mark_sent(msg.message_id, at) is False  # a second confirm is stale
        assert await store.status_trail(msg.message_id) == [("queued", T0), ("sent", at)]

    async def test_mark_retry_backs_off_and_counts_attempts(self, store: Store) -> None:
        msg = outgoing()
        await store.add_outgoing(msg)
        retry_at = T0 + timedelta(seconds=30)
        assert await store.mark_retry(msg.message_id, retry_at, "broker_unreachable", at=T0 + timedelta(seconds=1))
        assert await store.mark_retry(msg.message_id, retry_at + timedelta(seconds=60), "confirm_timeout", at=retry_at)
        row = await store.get_outgoing(msg.message_id)
        assert (row.status, row.attempts, row.last_error) == ("queued", 2, "confirm_timeout")
        assert row.next_attempt_at == retry_at + timedelta(seconds=60)
        assert await store.due_outgoing(retry_at + timedelta(seconds=59), 10) == []
        assert [r.message_id for r in await store.due_outgoing(retry_at + timedelta(seconds=60), 10)] == [msg.message_id]
        assert await store.mark_sent(msg.message_id, retry_at + timedelta(seconds=61))
        assert (await store.get_outgoing(msg.message_id)).attempts == 3
        # A retry does not change the status, so the trail shows none.
        assert [s for s, _ in await store.status_trail(msg.message_id)] == ["queued", "sent"]

    async def test_late_retry_after_confirm_is_ignored(self, store: Store) -> None:
        msg = outgoing()
        await store.add_outgoing(msg)
        await store.mark_sent(msg.message_id, T0)
        assert await store.mark_retry(msg.message_id, T0 + timedelta(seconds=5), "confirm_timeout") is False
        row = await store.get_outgoing(msg.message_id)
        assert (row.status, row.attempts, row.last_error) == ("sent", 1, None)
        assert await store.due_outgoing(T0 + timedelta(days=1), 10) == []

    async def test_mark_failed_gives_up(self, store: Store) -> None:
        msg = outgoing()
        await store.add_outgoing(msg)
        assert await store.mark_failed(msg.message_id, "max_attempts", at=T0 + timedelta(hours=1))
        row = await store.get_outgoing(msg.message_id)
        assert (row.status, row.last_error, row.attempts) == ("failed", "max_attempts", 1)
        assert await store.due_outgoing(T0 + timedelta(days=1), 10) == []
        assert await store.mark_sent(msg.message_id, T0 + timedelta(hours=2)) is False
        assert await store.mark_retry(msg.message_id, T0, "late") is False
        assert await store.status_trail(msg.message_id) == [("queued", T0), ("failed", T0 + timedelta(hours=1))]

    async def test_error_codes_must_be_reason_codes(self, store: Store) -> None:
        msg = outgoing()
        await store.add_outgoing(msg)
        with pytest.raises(ValueError):
            await store.mark_failed(msg.message_id, "Connection refused by host for Amina B.")
        with pytest.raises(ValueError):
            await store.mark_retry(msg.message_id, T0, "")
        assert (await store.get_outgoing(msg.message_id)).status == "queued"

    async def test_add_outgoing_is_idempotent(self, store: Store) -> None:
        msg = outgoing()
        assert await store.add_outgoing(msg) is True
        assert await store.add_outgoing(msg) is False  # queued before: the caller must not publish it again
        # Same content with a later created_at (a client retrying the POST) is still a no-op.
        await store.add_outgoing(outgoing(T0 + timedelta(seconds=9), message_id=msg.message_id))
        assert len(await store.due_outgoing(T0 + timedelta(days=1), 10)) == 1
        assert await store.status_trail(msg.message_id) == [("queued", T0)]
        # ...and never resets a message that already moved on.
        await store.mark_sent(msg.message_id, T0 + timedelta(seconds=1))
        await store.add_outgoing(msg)
        assert (await store.get_outgoing(msg.message_id)).status == "sent"
        assert await store.due_outgoing(T0 + timedelta(days=1), 10) == []

    async def test_add_outgoing_conflict_raises_and_keeps_the_first(self, store: Store) -> None:
        msg = outgoing(envelope=b"first")
        await store.add_outgoing(msg)
        with pytest.raises(MessageConflictError):
            await store.add_outgoing(outgoing(message_id=msg.message_id, envelope=b"second"))
        assert (await store.get_outgoing(msg.message_id)).envelope == b"first"

    async def test_replace_outgoing_body_keeps_status_trail_and_audits_once(self, store: Store) -> None:
        msg = outgoing(envelope=b"sealed-body")
        await store.add_outgoing(msg)
        await store.mark_sent(msg.message_id, T0 + timedelta(seconds=1))
        await store.set_status(msg.message_id, "delivered", T0 + timedelta(seconds=2))
        before = await store.audit_size()
        entry = audit(1, event_type="message.body_deleted", message_id=msg.message_id)
        assert await store.replace_outgoing_body(msg.message_id, b"digest-only", audit=entry)
        assert not await store.replace_outgoing_body(msg.message_id, b"digest-only", audit=audit(2))
        assert await store.audit_size() == before + 1
        record = await store.get_outgoing(msg.message_id)
        assert record.envelope == b"digest-only" and record.status == "delivered"
        assert [s for s, _ in await store.status_trail(msg.message_id)] == ["queued", "sent", "delivered"]
        # The same id with the old body is now a conflict, not a silent re-queue of the body.
        with pytest.raises(MessageConflictError):
            await store.add_outgoing(msg)
        assert await store.due_outgoing(T0 + timedelta(days=1), 10) == []
        with pytest.raises(MessageNotFoundError):
            await store.replace_outgoing_body(new_id(), b"x")
        with pytest.raises(ValueError):
            await store.replace_outgoing_body(msg.message_id, b"")

    async def test_unknown_message_ids_raise(self, store: Store) -> None:
        unknown = new_id()
        with pytest.raises(MessageNotFoundError):
            await store.mark_sent(unknown, T0)
        with pytest.raises(MessageNotFoundError):
            await store.mark_retry(unknown, T0, "broker_unreachable")
        with pytest.raises(MessageNotFoundError):
            await store.mark_failed(unknown, "max_attempts")
        with pytest.raises(MessageNotFoundError):
            await store.set_status(unknown, "delivered", T0)
        with pytest.raises(MessageNotFoundError):
            await store.set_incoming_status(unknown, "read", T0)
        assert await store.status_trail(unknown) == []

    async def test_naive_datetimes_are_refused(self, store: Store) -> None:
        with pytest.raises(ValueError):
            outgoing(datetime(2025, 1, 1))
        with pytest.raises(ValueError):
            await store.due_outgoing(datetime(2025, 1, 1), 10)
        with pytest.raises(ValueError):
            await store.remember_message_id(new_id(), datetime(2025, 1, 1))

    # --- status order ---------------------------------------------------------------------

    async def test_status_never_goes_backwards_and_trail_records_transitions(self, store: Store) -> None:
        msg = outgoing()
        await store.add_outgoing(msg)
        t = [T0 + timedelta(seconds=i) for i in range(10)]
        assert await store.mark_sent(msg.message_id, t[1])
        assert await store.set_status(msg.message_id, "read", t[2])
        assert await store.set_status(msg.message_id, "delivered", t[3]) is False  # late receipt
        assert (await store.get_outgoing(msg.message_id)).status == "read"
        assert await store.set_status(msg.message_id, "more_info_requested", t[4])
        assert await store.set_status(msg.message_id, "accepted", t[5])
        assert await store.set_status(msg.message_id, "declined", t[6]) is False  # first decision wins
        assert await store.set_status(msg.message_id, "queued", t[7]) is False
        row = await store.get_outgoing(msg.message_id)
        assert (row.status, row.updated_at) == ("accepted", t[5])
        assert await store.status_trail(msg.message_id) == [
            ("queued", T0), ("sent", t[1]), ("read", t[2]), ("more_info_requested", t[4]), ("accepted", t[5]),
        ]

    async def test_receipt_before_broker_confirm(self, store: Store) -> None:
        msg = outgoing()
        await store.add_outgoing(msg)
        assert await store.set_status(msg.message_id, "delivered", T0 + timedelta(seconds=1))
        assert await store.mark_sent(msg.message_id, T0 + timedelta(seconds=2)) is False
        assert (await store.get_outgoing(msg.message_id)).status == "delivered"
        assert await store.due_outgoing(T0 + timedelta(days=1), 10) == []  # never republished

    async def test_outgoing_order_every_pair(self, store: Store) -> None:
        for current in OUTGOING_RANK:
            for new in OUTGOING_RANK:
                msg = outgoing()
                await store.add_outgoing(msg)
                await _reach_outgoing(store, msg.message_id, current)
                applied = await store.set_status(msg.message_id, new, T0 + timedelta(seconds=1))  # type: ignore[arg-type]
                assert applied is (OUTGOING_RANK[new] > OUTGOING_RANK[current]), (current, new)
                expected = new if applied else current
                assert (await store.get_outgoing(msg.message_id)).status == expected, (current, new)

    async def test_incoming_order_every_pair(self, store: Store) -> None:
        for current in INCOMING_RANK:
            for new in INCOMING_RANK:
                msg = incoming()
                assert await store.add_incoming(msg)
                if current != "received":
                    assert await store.set_incoming_status(msg.message_id, current, T0)  # type: ignore[arg-type]
                applied = await store.set_incoming_status(msg.message_id, new, T0 + timedelta(seconds=1))  # type: ignore[arg-type]
                assert applied is (INCOMING_RANK[new] > INCOMING_RANK[current]), (current, new)
                expected = new if applied else current
                assert (await store.get_incoming(msg.message_id)).status == expected, (current, new)

    # --- inbox ----------------------------------------------------------------------------

    async def test_add_incoming_dedups_and_keeps_the_first_copy(self, store: Store) -> None:
        msg = incoming(envelope=b"first copy")
        assert await store.add_incoming(msg) is True
        assert await store.add_incoming(msg) is False
        assert await store.add_incoming(incoming(T0 + timedelta(seconds=5), message_id=msg.message_id, envelope=b"other")) is False
        row = await store.get_incoming(msg.message_id)
        assert (row.envelope, row.received_at, row.status, row.sender) == (b"first copy", T0, "received", "NE-ANLTP")
        assert len(await store.list_incoming(limit=10)) == 1
        assert await store.status_trail(msg.message_id, direction="incoming") == [("received", T0)]
        assert await store.get_incoming(new_id()) is None

    async def test_concurrent_add_incoming_same_id_exactly_one_wins(self, store: Store) -> None:
        message_id = new_id()
        copies = [incoming(message_id=message_id, envelope=f"copy {i}".encode()) for i in range(50)]
        results = await asyncio.gather(*(store.add_incoming(c) for c in copies))
        assert results.count(True) == 1
        assert results.count(False) == 49
        rows = await store.list_incoming(limit=100)
        assert [r.message_id for r in rows] == [message_id]
        assert rows[0].envelope == copies[results.index(True)].envelope

    async def test_thousand_distinct_ids_make_a_thousand_rows(self, store: Store) -> None:
        msgs = [incoming(T0 + timedelta(microseconds=i)) for i in range(1000)]
        assert await asyncio.gather(*(store.add_incoming(m) for m in msgs)) == [True] * 1000
        rows = await store.list_incoming(limit=5000)
        assert len(rows) == 1000
        assert {r.message_id for r in rows} == {m.message_id for m in msgs}

    async def test_list_incoming_order_paging_and_status_filter(self, store: Store) -> None:
        late, early, tie_a, tie_b = (
            incoming(T0 + timedelta(seconds=5)), incoming(T0), incoming(T0 + timedelta(seconds=1)), incoming(T0 + timedelta(seconds=1)),
        )
        for msg in (late, early, tie_a, tie_b):
            await store.add_incoming(msg)
        expected = [early.message_id, tie_a.message_id, tie_b.message_id, late.message_id]
        assert [r.message_id for r in await store.list_incoming(limit=10)] == expected
        assert [r.message_id for r in await store.list_incoming(limit=2, offset=1)] == expected[1:3]
        assert await store.list_incoming(limit=10, offset=4) == []
        await store.set_incoming_status(tie_a.message_id, "read", T0 + timedelta(minutes=1))
        assert [r.message_id for r in await store.list_incoming(10, status="read")] == [tie_a.message_id]
        assert [r.message_id for r in await store.list_incoming(10, status="received")] == [
            early.message_id, tie_b.message_id, late.message_id,
        ]
        assert await store.list_incoming(10, status="responded") == []

    async def test_list_outgoing_order_paging_and_type_filter(self, store: Store) -> None:
        late, early, tie_a, tie_b = (
            outgoing(T0 + timedelta(seconds=5)), outgoing(T0), outgoing(T0 + timedelta(seconds=1)),
            outgoing(T0 + timedelta(seconds=1)),
        )
        other = dataclasses.replace(outgoing(T0 + timedelta(seconds=2)), message_type="case.followup")
        for msg in (late, early, tie_a, tie_b, other):
            await store.add_outgoing(msg)
        expected = [early.message_id, tie_a.message_id, tie_b.message_id, late.message_id]
        assert [r.message_id for r in await store.list_outgoing(limit=10, message_type="referral.request")] == expected
        assert [r.message_id for r in await store.list_outgoing(2, 1, "referral.request")] == expected[1:3]
        assert await store.list_outgoing(10, 4, "referral.request") == []
        everything = [r.message_id for r in await store.list_outgoing(limit=10)]
        assert everything == [*expected[:3], other.message_id, late.message_id]
        for bad in (dict(limit=-1), dict(limit=1, offset=-1), dict(limit=1, message_type="")):
            with pytest.raises(StoreArgumentError):
                await store.list_outgoing(**bad)  # type: ignore[arg-type]

    async def test_incoming_status_moves_forward_with_trail(self, store: Store) -> None:
        msg = incoming()
        await store.add_incoming(msg)
        t1, t2 = T0 + timedelta(minutes=1), T0 + timedelta(minutes=2)
        assert await store.set_incoming_status(msg.message_id, "read", t1)
        assert await store.set_incoming_status(msg.message_id, "responded", t2)
        assert await store.set_incoming_status(msg.message_id, "read", t2) is False
        row = await store.get_incoming(msg.message_id)
        assert (row.status, row.updated_at) == ("responded", t2)
        assert await store.status_trail(msg.message_id, direction="incoming") == [
            ("received", T0), ("read", t1), ("responded", t2),
        ]
        assert await store.status_trail(msg.message_id) == []  # not an outgoing message

    # --- replay guard ---------------------------------------------------------------------

    async def test_replay_guard_remembers_until_pruned(self, store: Store) -> None:
        a, b, c = new_id(), new_id(), new_id()
        assert await store.remember_message_id(a, T0 + timedelta(days=1)) is True
        assert await store.remember_message_id(a, T0 + timedelta(days=9)) is False
        assert await store.remember_message_id(b, T0 + timedelta(days=2)) is True
        assert await store.remember_message_id(c, T0 + timedelta(days=3)) is True
        assert await store.prune_seen(T0) == 0
        assert await store.prune_seen(T0 + timedelta(days=2)) == 1  # expires_at < now only: b stays
        assert await store.remember_message_id(a, T0 + timedelta(days=9)) is True  # forgotten after pruning
        assert await store.remember_message_id(b, T0 + timedelta(days=9)) is False
        assert await store.prune_seen(T0 + timedelta(days=30)) == 3
        assert await store.prune_seen(T0 + timedelta(days=30)) == 0

    async def test_replay_guard_is_atomic(self, store: Store) -> None:
        message_id = new_id()
        results = await asyncio.gather(*(store.remember_message_id(message_id, T0) for _ in range(50)))
        assert results.count(True) == 1

    async def test_replay_guard_is_separate_from_inbox_dedup(self, store: Store) -> None:
        # Decision (docs/store.md): the inbox is the permanent dedup of stored messages; the
        # guard is a separate, prunable set for the envelope layer.
        msg = incoming()
        assert await store.add_incoming(msg)
        assert await store.remember_message_id(msg.message_id, T0) is True
        await store.prune_seen(T0 + timedelta(days=1))
        assert await store.add_incoming(msg) is False  # pruning never re-opens the inbox

    # --- cases ----------------------------------------------------------------------------

    async def test_upsert_and_get_case(self, store: Store) -> None:
        assert await store.get_case("case-7f3a9c01") is None
        await store.upsert_case(Case("case-7f3a9c01", "NG-NAPTIP", "referred", T0))
        assert await store.get_case("case-7f3a9c01") == Case("case-7f3a9c01", "NG-NAPTIP", "referred", T0)
        later = T0 + timedelta(days=1)
        await store.upsert_case(Case("case-7f3a9c01", "NG-NAPTIP", "accepted", later.astimezone(WAT)))
        assert await store.get_case("case-7f3a9c01") == Case("case-7f3a9c01", "NG-NAPTIP", "accepted", later)
        assert await store.get_case("case-00000000") is None

    # --- audit ----------------------------------------------------------------------------

    async def test_audit_appends_in_seq_order_and_round_trips(self, store: Store) -> None:
        entries = [audit(i) for i in range(5)] + [audit(5, case_ref=None, message_id=None, entry_hash=None)]
        seqs = [await store.append_audit(e) for e in entries]
        assert seqs == [1, 2, 3, 4, 5, 6]  # contiguous from 1: the Merkle leaf index is seq - 1
        records = await store.read_audit(0, 100)
        assert [r.seq for r in records] == seqs
        for entry, record in zip(entries, records):
            assert (record.at, record.event_type, record.actor, record.case_ref, record.message_id) == (
                entry.at, entry.event_type, entry.actor, entry.case_ref, entry.message_id,
            )
            assert (record.detail_json, record.entry_hash) == (entry.detail_json, entry.entry_hash)
        assert [r.seq for r in await store.read_audit(seqs[2], 2)] == seqs[2:4]
        assert await store.read_audit(seqs[-1] + 1, 10) == []

    async def test_concurrent_audit_appends_get_distinct_ordered_seqs(self, store: Store) -> None:
        seqs = await asyncio.gather(*(store.append_audit(audit(i)) for i in range(100)))
        assert sorted(seqs) == list(range(1, 101))
        records = await store.read_audit(1, 1000)
        assert [r.seq for r in records] == list(range(1, 101))
        by_seq = {r.seq: r.detail_json for r in records}
        assert [by_seq[s] for s in seqs] == [f'{{"n":{i}}}' for i in range(100)]

    async def test_audit_written_with_the_message_in_one_transaction(self, store: Store) -> None:
        out, inc = outgoing(), incoming()
        await store.add_outgoing(out, audit=audit(1, message_id=out.message_id))
        await store.add_outgoing(out, audit=audit(2, message_id=out.message_id))  # idempotent retry: no 2nd entry
        assert await store.add_incoming(inc, audit=audit(3, message_id=inc.message_id))
        assert not await store.add_incoming(inc, audit=audit(4, message_id=inc.message_id))  # duplicate
        records = await store.read_audit(1, 10)
        assert [(r.detail_json, r.message_id) for r in records] == [
            ('{"n":1}', out.message_id), ('{"n":3}', inc.message_id),
        ]

    async def test_add_outgoing_writes_several_entries_in_order_only_when_new(self, store: Store) -> None:
        out = outgoing()
        checked = audit(1, event_type="consent.checked", message_id=None)
        await store.add_outgoing(out, audit=[checked, audit(2, event_type="message.created", message_id=out.message_id)])
        await store.add_outgoing(out, audit=[audit(3), audit(4)])  # idempotent retry: no entries
        with pytest.raises(MessageConflictError):
            await store.add_outgoing(outgoing(message_id=out.message_id, envelope=b"other"), audit=[audit(5)])
        records = await store.read_audit(1, 10)
        assert [(r.event_type, r.detail_json) for r in records] == [
            ("consent.checked", '{"n":1}'), ("message.created", '{"n":2}')]
        with pytest.raises(StoreArgumentError):
            await store.add_outgoing(outgoing(), audit=["not an entry"])  # type: ignore[list-item]

    async def test_mark_sent_audits_in_its_transaction_only_when_it_moves(self, store: Store) -> None:
        late, prompt = outgoing(), outgoing()
        for msg in (late, prompt):
            await store.add_outgoing(msg)
        # A receipt can overtake the confirm: "sent" no longer moves the row, and no entry is written.
        await store.set_status(late.message_id, "delivered", T0 + timedelta(seconds=1))
        assert not await store.mark_sent(late.message_id, T0 + timedelta(seconds=2),
                                         audit=audit(1, message_id=late.message_id))
        assert await store.mark_sent(prompt.message_id, T0 + timedelta(seconds=2),
                                     audit=audit(2, message_id=prompt.message_id))
        assert not await store.mark_sent(prompt.message_id, T0 + timedelta(seconds=3), audit=audit(3))
        records = await store.read_audit(1, 10)
        assert [(r.detail_json, r.message_id) for r in records] == [('{"n":2}', prompt.message_id)]

    async def test_set_status_audits_in_its_transaction_only_when_it_moves(self, store: Store) -> None:
        msg = outgoing()
        await store.add_outgoing(msg)
        assert await store.set_status(msg.message_id, "read", T0 + timedelta(seconds=1),
                                      audit=audit(1, event_type="message.status", message_id=msg.message_id))
        # Stale (a late "delivered") and repeated receipts write no entry.
        assert not await store.set_status(msg.message_id, "delivered", T0 + timedelta(seconds=2), audit=audit(2))
        assert not await store.set_status(msg.message_id, "read", T0 + timedelta(seconds=3), audit=audit(3))
        with pytest.raises(MessageNotFoundError):
            await store.set_status(new_id(), "read", T0, audit=audit(4))
        records = await store.read_audit(1, 10)
        assert [(r.detail_json, r.message_id) for r in records] == [('{"n":1}', msg.message_id)]
        assert [s for s, _ in await store.status_trail(msg.message_id)] == ["queued", "read"]

    async def test_set_status_and_its_audit_entry_fail_together(
        self, store: Store, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # A crash or error between the two (once separate) writes must leave neither: the
        # receipt's redelivery then applies the status and writes its entry.
        msg = outgoing()
        await store.add_outgoing(msg)
        before = await store.audit_size()

        def broken(*args: object, **kwargs: object) -> None:
            raise RuntimeError("crash while writing the audit entry")

        backend = sys.modules[type(store).__module__]
        monkeypatch.setattr(backend, "_insert_audit", broken)
        with pytest.raises(Exception):
            await store.set_status(msg.message_id, "delivered", T0 + timedelta(seconds=1), audit=audit(1))
        monkeypatch.undo()
        assert (await store.get_outgoing(msg.message_id)).status == "queued"
        assert [s for s, _ in await store.status_trail(msg.message_id)] == ["queued"]
        assert await store.audit_size() == before
        assert await store.set_status(msg.message_id, "delivered", T0 + timedelta(seconds=2), audit=audit(2))
        assert await store.audit_size() == before + 1

    async def test_conflicting_add_writes_no_audit(self, store: Store) -> None:
        out = outgoing()
        await store.add_outgoing(out)
        with pytest.raises(MessageConflictError):
            await store.add_outgoing(outgoing(message_id=out.message_id, envelope=b"other"), audit=audit(1))
        assert await store.read_audit(1, 10) == []

    async def test_concurrent_writes_stay_independent(self, store: Store) -> None:
        # Backends may commit concurrent writes together; each must still succeed or fail alone.
        taken = outgoing()
        await store.add_outgoing(taken)
        fresh = [outgoing() for _ in range(20)]
        results = await asyncio.gather(
            store.add_outgoing(outgoing(message_id=taken.message_id, envelope=b"other"), audit=audit(99)),
            *(store.add_outgoing(m, audit=audit(i, message_id=m.message_id)) for i, m in enumerate(fresh)),
            return_exceptions=True,
        )
        assert isinstance(results[0], MessageConflictError) and results[1:] == [True] * 20
        for m in fresh:
            assert (await store.get_outgoing(m.message_id)).status == "queued"
        entries = await store.read_audit(1, 100)
        assert sorted(e.message_id for e in entries) == sorted(m.message_id for m in fresh)
        assert [e.seq for e in entries] == list(range(1, 21))  # the refused write left no gap

    async def test_audit_is_append_only(self, store: Store) -> None:
        audit_methods = {name for name in dir(store) if "audit" in name and not name.startswith("_")}
        assert audit_methods == {"append_audit", "read_audit", "query_audit", "audit_size", "audit_hashes", "audit_nodes"}

    # --- stored Merkle subtrees (proofs in O(log n)) --------------------------------------

    async def test_audit_nodes_are_exactly_the_complete_subtrees(self, store: Store) -> None:
        leaves = [hashlib.sha256(b"leaf %d" % i).digest() for i in range(70)]
        for i, h in enumerate(leaves):
            await store.append_audit(audit(i, entry_hash=h))
            size = i + 1
            # The subtrees this append completed are stored now, the next ones not yet.
            done = [(level, size // (1 << level) - 1) for level in range(1, 8) if size % (1 << level) == 0]
            pending = [(level, size >> level) for level in range(1, 8)]
            got = await store.audit_nodes(done + pending + [(0, i), (0, size)])
            assert set(got) == {*done, (0, i)}, size
        complete = [(level, idx) for level in range(7) for idx in range(70 >> level)]
        got = await store.audit_nodes(complete)
        assert set(got) == set(complete)
        for (level, idx), h in got.items():  # each one is the MTH of its leaves
            assert h == merkle.root(leaves[idx << level:(idx + 1) << level]), (level, idx)
        assert await store.audit_nodes([]) == {}
        for bad in ([(-1, 0)], [(1, -1)], [(1,)], "ab", [(True, 0)], [(63, 0)], [(0, 2**63)]):
            with pytest.raises(StoreArgumentError):
                await store.audit_nodes(bad)  # type: ignore[arg-type]

    async def test_proofs_from_stored_nodes_equal_proofs_from_the_leaves(self, store: Store) -> None:
        # Every size 1..70 and every leaf; consistency for every pair up to 40 (RFC 9162 by
        # the leaf-hashing reference in merkle.py, which the RFC vectors pin).
        leaves = [hashlib.sha256(b"leaf %d" % i).digest() for i in range(70)]
        for i, h in enumerate(leaves):
            await store.append_audit(audit(i, entry_hash=h))
        log = AuditLog(store, demo_identity("NE-ANLTP-TIM"), lambda: T0)
        for n in range(1, 71):
            assert await log.root(n) == merkle.root(leaves[:n])
            paths = await log.inclusion_proofs(list(range(1, n + 1)), n)
            assert paths == {i + 1: merkle.inclusion_proof(leaves[:n], i) for i in range(n)}, n
        found = await log.inclusion(13, 70)
        assert (found.leaf_hash, found.root_hash) == (leaves[12], merkle.root(leaves))
        assert merkle.verify_inclusion(found.leaf_hash, 12, 70, found.proof, found.root_hash)
        for n in range(1, 41):
            for m in range(1, n + 1):
                c = await log.consistency(m, n)
                assert c.proof == merkle.consistency_proof(leaves[:n], m), (m, n)
                assert (c.first_root, c.second_root) == (merkle.root(leaves[:m]), merkle.root(leaves[:n]))
                assert merkle.verify_consistency(m, n, c.first_root, c.second_root, c.proof)

    async def test_audit_nodes_follow_appends_from_every_write_path(self, store: Store) -> None:
        # Entries appended with a message or a directory get their subtrees too
        # (PostgreSQL's add_incoming inserts its entry in a CTE, not with _INSERT_AUDIT).
        inc = incoming()
        await store.add_outgoing(outgoing(), audit=audit(1, entry_hash=None))
        assert await store.add_incoming(inc, audit=audit(2, entry_hash=None))
        await store.append_audit(audit(3, entry_hash=None))
        assert not await store.add_incoming(inc, audit=audit(9, entry_hash=None))  # duplicate: no entry, no node
        await store.accept_directory(directory_record(1), audit=audit(4, entry_hash=None, event_type="directory.updated"))
        size = await store.audit_size()
        leaves = await store.audit_hashes(1, 100)
        assert len(leaves) == size == 4
        assert await store.audit_nodes([(2, 0)]) == {(2, 0): merkle.root(leaves)}

    async def test_audit_entry_hash_and_agency_round_trip(self, store: Store) -> None:
        entry = audit(1, entry_hash=None, agency="NG-NAPTIP", detail_json='{"b": 1, "a": [1, 2]}')
        assert entry.entry_hash == leaf_hash(entry)  # computed when omitted
        seq = await store.append_audit(entry)
        (record,) = await store.read_audit(seq, 1)
        assert record.agency == "NG-NAPTIP"
        assert record.detail_json == entry.detail_json  # stored verbatim
        assert leaf_hash(record) == entry.entry_hash == record.entry_hash  # same leaf after the round trip
        assert await store.audit_hashes(1, 10) == [entry.entry_hash]

    async def test_query_audit_filters_combine(self, store: Store) -> None:
        rows = [
            audit(0, case_ref="case-a", agency="NG-NAPTIP", event_type="message.created"),
            audit(1, case_ref="case-b", agency="NG-NAPTIP", event_type="message.sent"),
            audit(2, case_ref="case-a", agency="ML-DNPEF", event_type="message.sent"),
            audit(3, case_ref=None, agency=None, event_type="auth.failed"),
            audit(4, case_ref="case-a", agency="NG-NAPTIP", event_type="message.read"),
        ]
        for row in rows:
            await store.append_audit(row)
        assert await store.audit_size() == 5

        async def seqs(limit: int = 100, **filters: object) -> list[int]:
            return [r.seq for r in await store.query_audit(AuditQuery(**filters), limit)]  # type: ignore[arg-type]

        assert await seqs() == [1, 2, 3, 4, 5]
        assert await seqs(case_ref="case-a") == [1, 3, 5]
        assert await seqs(agency="NG-NAPTIP") == [1, 2, 5]
        assert await seqs(case_ref="case-a", agency="NG-NAPTIP") == [1, 5]
        assert await seqs(event_types=("message.sent", "auth.failed")) == [2, 3, 4]
        assert await seqs(since=T0 + timedelta(seconds=1), until=T0 + timedelta(seconds=3)) == [2, 3]
        assert await seqs(after_seq=3) == [4, 5]
        assert await seqs(limit=2, case_ref="case-a") == [1, 3]
        assert await seqs(case_ref="case-zzz") == []

    async def test_empty_log_has_size_zero(self, store: Store) -> None:
        assert await store.audit_size() == 0
        assert await store.audit_hashes(1, 10) == []

    # --- data keys --------------------------------------------------------------------------

    async def test_add_incoming_stores_the_message_key_in_the_same_write(self, store: Store) -> None:
        case = await store.add_data_key(data_key("case-key-1", "case-7f3a9c01"))
        msg = incoming()
        key = data_key(msg.message_id, msg.case_ref, parent=case.key_id, wrapped=b"w1")
        assert await store.add_incoming(msg, audit=audit(1, message_id=msg.message_id), data_key=key)
        assert (await store.get_data_key(msg.message_id)).wrapped == b"w1"
        assert (await store.get_incoming(msg.message_id)) is not None

        # The message is in already: nothing written, whatever the key says.
        with pytest.raises(DataKeyExistsError):
            await store.add_incoming(msg, audit=audit(2), data_key=data_key(msg.message_id, msg.case_ref,
                                                                               parent=case.key_id, wrapped=b"w2"))
        assert (await store.get_data_key(msg.message_id)).wrapped == b"w1"

        # A key left by an earlier attempt (no inbox row): neither the row nor the entry is written.
        left = incoming()
        await store.add_data_key(data_key(left.message_id, left.case_ref, parent=case.key_id, wrapped=b"old"))
        with pytest.raises(DataKeyExistsError):
            await store.add_incoming(left, audit=audit(3), data_key=data_key(left.message_id, left.case_ref,
                                                                              parent=case.key_id, wrapped=b"new"))
        assert await store.get_incoming(left.message_id) is None
        assert (await store.get_data_key(left.message_id)).wrapped == b"old"
        assert [r.detail_json for r in await store.read_audit(1, 10)] == ['{"n":1}']

        # A duplicate id in the inbox leaves no key behind either.
        taken = incoming()
        assert await store.add_incoming(taken)
        with pytest.raises(DataKeyExistsError):
            await store.add_incoming(taken, data_key=data_key(taken.message_id, taken.case_ref, parent=case.key_id))
        assert await store.get_data_key(taken.message_id) is None

    async def test_add_incoming_stores_a_new_cases_key_in_the_same_write(self, store: Store) -> None:
        msg = incoming()
        case = data_key("case-key-new", msg.case_ref, wrapped=b"case-w")
        key = data_key(msg.message_id, msg.case_ref, parent=case.key_id, wrapped=b"msg-w")
        assert await store.add_incoming(msg, audit=audit(1, message_id=msg.message_id), data_key=key, case_key=case)
        live = await store.live_case_key(msg.case_ref)
        assert live is not None and (live.key_id, live.wrapped) == ("case-key-new", b"case-w")
        assert (await store.get_data_key(msg.message_id)).parent_key_id == "case-key-new"
        assert await store.get_incoming(msg.message_id) is not None

        # Another writer gave the case its key first: nothing of this write is kept.
        other = incoming()
        late = data_key("case-key-late", other.case_ref, wrapped=b"late")
        with pytest.raises(DataKeyExistsError):
            await store.add_incoming(other, audit=audit(2), data_key=data_key(other.message_id, other.case_ref,
                                                                              parent=late.key_id), case_key=late)
        assert await store.get_incoming(other.message_id) is None
        assert await store.get_data_key(other.message_id) is None
        assert await store.get_data_key("case-key-late") is None
        assert (await store.live_case_key(msg.case_ref)).key_id == "case-key-new"
        assert [r.detail_json for r in await store.read_audit(1, 10)] == ['{"n":1}']

    async def test_add_incoming_refuses_a_case_key_that_is_not_the_message_keys_parent(self, store: Store) -> None:
        msg = incoming()
        case = data_key("case-key-p", msg.case_ref)
        key = data_key(msg.message_id, msg.case_ref, parent=case.key_id)
        for data, wrong in ((None, case),  # no message key to be the parent of
                            (key, data_key("case-key-q", msg.case_ref)),  # not the message key's parent
                            (key, data_key("case-key-p", "case-other")),  # another case
                            (key, key)):  # a message key
            with pytest.raises(StoreArgumentError):
                await store.add_incoming(msg, data_key=data, case_key=wrong)
        assert await store.get_incoming(msg.message_id) is None
        assert await store.live_case_key(msg.case_ref) is None

    async def test_add_incoming_refuses_a_key_that_is_not_the_messages_own(self, store: Store) -> None:
        msg = incoming()
        for wrong in (data_key(msg.message_id, msg.case_ref),  # a case key
                      data_key(new_id(), msg.case_ref, parent="case-key-1"),  # another message's id
                      data_key(msg.message_id, "case-other", parent="case-key-1")):  # another case
            with pytest.raises(StoreArgumentError):
                await store.add_incoming(msg, data_key=wrong)
        assert await store.get_incoming(msg.message_id) is None

    async def test_one_live_case_key_per_case_even_under_races(self, store: Store) -> None:
        keys = [data_key(f"k{i}", "case-a") for i in range(10)]
        winners = await asyncio.gather(*(store.add_data_key(k) for k in keys))
        assert len({w.key_id for w in winners}) == 1
        live = await store.live_case_key("case-a")
        assert live is not None and live.key_id == winners[0].key_id and live.wrapped == winners[0].wrapped
        assert await store.live_case_key("case-b") is None

    async def test_message_keys_are_idempotent_and_shred_for_good(self, store: Store) -> None:
        case = await store.add_data_key(data_key("case-key-1", "case-a"))
        msg_id = new_id()
        first = await store.add_data_key(data_key(msg_id, "case-a", parent=case.key_id, wrapped=b"w1"))
        again = await store.add_data_key(data_key(msg_id, "case-a", parent=case.key_id, wrapped=b"w2"))
        assert again.wrapped == first.wrapped == b"w1"
        entry = audit(1, event_type="data.shredded")
        shredded = await store.shred_data_keys([msg_id, "no-such-key"], "retention", T0, audit=[entry])
        assert shredded == [msg_id]
        key = await store.get_data_key(msg_id)
        assert key is not None and key.wrapped is None and key.shredded_at == T0 and key.shred_reason == "retention"
        assert [r.event_type for r in await store.read_audit(1, 10)] == ["data.shredded"]
        # Shredding again changes nothing and writes no audit entry.
        assert await store.shred_data_keys([msg_id], "retention", T0, audit=[audit(2)]) == []
        assert len(await store.read_audit(1, 10)) == 1
        # A shredded key id never comes back: adding it again returns it shredded.
        again = await store.add_data_key(data_key(msg_id, "case-a", parent=case.key_id, wrapped=b"w3"))
        assert again.wrapped is None and (await store.get_data_key(msg_id)).wrapped is None
        await store.shred_data_keys([case.key_id], "consent_withdrawn", T0)
        with pytest.raises(StoreError):  # a shredded case key id is refused
            await store.add_data_key(data_key(case.key_id, "case-a"))

    async def test_shredding_the_case_key_allows_a_new_one(self, store: Store) -> None:
        old = await store.add_data_key(data_key("case-key-1", "case-a"))
        msg = await store.add_data_key(data_key(new_id(), "case-a", parent=old.key_id))
        assert await store.case_key_ids("case-a") == [old.key_id, msg.key_id]
        assert await store.shred_data_keys(await store.case_key_ids("case-a"), "consent_withdrawn", T0) == [
            old.key_id, msg.key_id]
        assert await store.live_case_key("case-a") is None
        new = await store.add_data_key(data_key("case-key-2", "case-a"))
        assert new.key_id == "case-key-2" and (await store.live_case_key("case-a")).key_id == "case-key-2"

    async def test_replace_incoming_envelope_is_compare_and_swap(self, store: Store) -> None:
        msg = incoming(envelope=b"RGAR1-old-blob")
        assert await store.add_incoming(msg)
        await store.set_incoming_status(msg.message_id, "read", T0 + timedelta(seconds=1))
        assert await store.replace_incoming_envelope(msg.message_id, b"RGAR1-old-blob", b"RGAR2-new-blob")
        assert not await store.replace_incoming_envelope(msg.message_id, b"RGAR1-old-blob", b"RGAR2-other")
        assert not await store.replace_incoming_envelope(new_id(), b"RGAR1-old-blob", b"x")
        record = await store.get_incoming(msg.message_id)
        assert record.envelope == b"RGAR2-new-blob" and record.status == "read"
        # Redelivery dedup is unaffected: the row stays one row.
        assert not await store.add_incoming(msg)
        with pytest.raises(ValueError):
            await store.replace_incoming_envelope(msg.message_id, b"", b"x")

    async def test_case_keys_are_found_by_wrapping_prefix_and_rewrapped_once(self, store: Store) -> None:
        a = await store.add_data_key(data_key("case-key-a", "case-a", wrapped=b"old-kid:aaa"))
        b = await store.add_data_key(data_key("case-key-b", "case-b", wrapped=b"new-kid:bbb"))
        await store.add_data_key(data_key(new_id(), "case-a", parent=a.key_id, wrapped=b"old-kid:msg"))
        c = await store.add_data_key(data_key("case-key-c", "case-c", wrapped=b"old-kid:ccc"))
        await store.shred_data_keys([c.key_id], "consent_withdrawn", T0)
        found = await store.case_keys_wrapped_by(b"old-kid:", 10)
        assert [k.key_id for k in found] == ["case-key-a"]  # not message keys, not shredded ones
        assert [k.key_id for k in await store.case_keys_wrapped_by(b"new-kid:", 10)] == [b.key_id]
        assert await store.rewrap_data_key("case-key-a", b"old-kid:aaa", b"new-kid:AAA")
        assert not await store.rewrap_data_key("case-key-a", b"old-kid:aaa", b"new-kid:XXX")  # stale
        assert not await store.rewrap_data_key(c.key_id, b"old-kid:ccc", b"new-kid:CCC")  # shredded stays
        assert (await store.get_data_key("case-key-a")).wrapped == b"new-kid:AAA"
        assert (await store.get_data_key(c.key_id)).wrapped is None
        assert await store.case_keys_wrapped_by(b"old-kid:", 10) == []

    async def test_retention_due_lists_live_messages_past_the_cutoff(self, store: Store) -> None:
        case = await store.add_data_key(data_key("case-key-1", "case-7f3a9c01"))
        old, new, other = incoming(T0), incoming(T0 + timedelta(days=10)), incoming(T0)
        other = IncomingMessage(other.message_id, other.sender, "receipt", other.case_ref, other.envelope, T0)
        for msg in (old, new, other):
            await store.add_incoming(msg)
            await store.add_data_key(data_key(msg.message_id, "case-7f3a9c01", parent=case.key_id))
        due = await store.retention_due("referral.request", T0 + timedelta(days=1), 10)
        assert [r.message_id for r in due] == [old.message_id]
        await store.shred_data_keys([old.message_id], "retention", T0)
        assert await store.retention_due("referral.request", T0 + timedelta(days=1), 10) == []
        assert [r.message_id for r in await store.retention_due("receipt", T0 + timedelta(days=1), 10)] == [other.message_id]

    async def test_messages_by_case(self, store: Store) -> None:
        out1, out2, inc = outgoing(T0), outgoing(T0 + timedelta(seconds=1)), incoming()
        for msg in (out1, out2):
            await store.add_outgoing(msg)
        await store.add_incoming(inc)
        assert [r.message_id for r in await store.list_outgoing_for_case("case-7f3a9c01")] == [
            out1.message_id, out2.message_id]
        assert [r.message_id for r in await store.list_incoming_for_case("case-7f3a9c01")] == [inc.message_id]
        assert await store.list_outgoing_for_case("case-other") == []

    # --- withdrawals and checkpoints --------------------------------------------------------

    async def test_withdrawals_are_idempotent_per_direction(self, store: Store) -> None:
        w = Withdrawal(new_id(), "case-a", "outgoing", "NG-NAPTIP", T0, "some_purposes",
                       ("family_tracing",), (new_id(),), T0)
        assert await store.add_withdrawal(w, audit=audit(1))
        assert not await store.add_withdrawal(w, audit=audit(2))
        received = Withdrawal(w.message_id, "case-a", "incoming", "NE-ANLTP-TIM", T0, "all_purposes", (), (), T0)
        assert await store.add_withdrawal(received)
        assert await store.withdrawals_for_case("case-a") == [w, received]
        assert await store.withdrawals_for_case("case-b") == []
        assert len(await store.read_audit(1, 10)) == 1

    async def test_checkpoints_keep_forks_and_order_by_size(self, store: Store) -> None:
        def cp(origin: str, size: int, root: bytes, minute: int) -> CheckpointRecord:
            at = T0 + timedelta(minutes=minute)
            return CheckpointRecord(origin, size, root, at, b"note-%d" % size + root[:1], at)

        assert await store.latest_checkpoint("NE-ANLTP-TIM") is None
        a, b = cp("NE-ANLTP-TIM", 5, b"\x01" * 32, 1), cp("NE-ANLTP-TIM", 9, b"\x02" * 32, 2)
        fork = cp("NE-ANLTP-TIM", 9, b"\x03" * 32, 3)
        peer = cp("NG-NAPTIP", 100, b"\x04" * 32, 0)
        for record in (b, a, peer):
            assert await store.add_checkpoint(record)
        assert not await store.add_checkpoint(a)  # idempotent
        assert await store.add_checkpoint(fork)  # a second root for one size is evidence: kept
        assert await store.latest_checkpoint("NE-ANLTP-TIM") == fork
        assert await store.list_checkpoints("NE-ANLTP-TIM") == [a, b, fork]
        assert await store.list_checkpoints("NE-ANLTP-TIM", min_size=6, limit=1) == [b]
        assert await store.list_checkpoints("NE-ANLTP-TIM", newest_first=True, limit=2) == [fork, b]
        assert await store.latest_checkpoint("NG-NAPTIP") == peer

    # --- accepted directories (rollback protection) ----------------------------------------

    async def test_directory_serial_only_goes_up_and_survives_reopening(self, harness: StoreHarness) -> None:
        store = await harness.open()
        try:
            assert await store.current_directory() is None
            five = directory_record(5)
            assert await store.accept_directory(five, audit=audit(1, event_type="directory.updated"))
            assert await store.current_directory() == five
            # Equal (even with other bytes) and lower serials are refused, and their audit is not written.
            for refused in (directory_record(5, b"other"), directory_record(4), directory_record(1)):
                assert not await store.accept_directory(refused, audit=audit(2, event_type="directory.updated"))
            assert len(await store.read_audit(1, 10)) == 1
            six = directory_record(6, source="file")
            assert await store.accept_directory(six)
            assert await store.current_directory() == six
        finally:
            await store.close()
        store = await harness.open()
        try:
            assert await store.current_directory() == six
            assert not await store.accept_directory(directory_record(3))
        finally:
            await store.close()

    async def test_concurrent_directory_accepts_end_at_the_highest(self, store: Store) -> None:
        serials = [7, 3, 12, 9, 1, 12, 11, 2]
        results = await asyncio.gather(*(store.accept_directory(directory_record(s)) for s in serials))
        current = await store.current_directory()
        assert current is not None and current.serial == 12
        assert sum(r for s, r in zip(serials, results) if s == 12) == 1

    async def test_directory_records_are_checked(self, store: Store) -> None:
        with pytest.raises(StoreArgumentError):
            directory_record(0)
        with pytest.raises(StoreArgumentError):
            dataclasses.replace(directory_record(1), digest="not-hex")
        with pytest.raises(StoreArgumentError):
            dataclasses.replace(directory_record(1), accepted_at=NAIVE)
        with pytest.raises(StoreArgumentError):
            await store.accept_directory(directory_record(1), audit=audit(1, event_type="directory.invented"))
        assert await store.current_directory() is None

    # --- workspace sessions ---------------------------------------------------------------

    async def test_web_session_add_get_touch_delete(self, store: Store) -> None:
        session = web_session("s1")
        await store.add_web_session(session)
        assert await store.get_web_session(session.id_hash) == session
        assert await store.touch_web_session(session.id_hash, T0 + timedelta(minutes=5)) is True
        # last_seen_at never moves back (a slow request finishing after a newer one).
        assert await store.touch_web_session(session.id_hash, T0 + timedelta(minutes=1)) is True
        seen = await store.get_web_session(session.id_hash)
        assert seen is not None and seen.last_seen_at == T0 + timedelta(minutes=5)
        assert (seen.user_name, seen.role, seen.created_at, seen.expires_at) == (
            "alice", "caseworker", session.created_at, session.expires_at)
        assert await store.delete_web_session(session.id_hash) is True
        assert await store.get_web_session(session.id_hash) is None
        assert await store.delete_web_session(session.id_hash) is False
        assert await store.touch_web_session(session.id_hash, T0) is False

    async def test_web_session_ids_are_unique(self, store: Store) -> None:
        await store.add_web_session(web_session("s2"))
        with pytest.raises(StoreError):
            await store.add_web_session(web_session("s2", user="mallory"))
        kept = await store.get_web_session(web_session("s2").id_hash)
        assert kept is not None and kept.user_name == "alice"

    async def test_web_sessions_pruned_when_idle_or_past_their_end(self, store: Store) -> None:
        idle = web_session("idle")
        busy = web_session("busy")
        old = web_session("old", created_at=T0 - timedelta(hours=11), hours=10)
        for s in (idle, busy, old):
            await store.add_web_session(s)
        await store.touch_web_session(busy.id_hash, T0 + timedelta(minutes=40))
        await store.touch_web_session(old.id_hash, T0 + timedelta(minutes=40))
        removed = await store.prune_web_sessions(T0 + timedelta(minutes=10), T0 + timedelta(minutes=41))
        assert removed == 2
        assert await store.get_web_session(idle.id_hash) is None
        assert await store.get_web_session(old.id_hash) is None
        assert await store.get_web_session(busy.id_hash) is not None

    async def test_web_session_rules(self, store: Store) -> None:
        with pytest.raises(StoreArgumentError):
            dataclasses.replace(web_session("r"), id_hash="not-a-hash")
        with pytest.raises(StoreArgumentError):
            dataclasses.replace(web_session("r"), created_at=NAIVE)
        with pytest.raises(StoreArgumentError):
            dataclasses.replace(web_session("r"), expires_at=T0 - timedelta(seconds=1))
        with pytest.raises(StoreArgumentError):
            await store.get_web_session("secret-cookie-value")
        with pytest.raises(StoreArgumentError):
            await store.touch_web_session(web_session("r").id_hash, NAIVE)

    # --- API idempotency keys -------------------------------------------------------------

    async def test_idempotency_claim_then_complete_then_replay(self, store: Store) -> None:
        claim = idem_claim("a")
        assert await store.claim_idempotency_key(claim) == claim
        # A retry of the same key while the first is still running gets the first claim.
        again = await store.claim_idempotency_key(idem_claim("a", created_at=T0 + timedelta(seconds=3)))
        assert again == claim and not again.completed
        done = await store.complete_idempotency_key(idem_answer(claim, '{"message_id":"m1"}'))
        assert (done.status_code, done.response_json, done.completed) == (202, '{"message_id":"m1"}', True)
        # Later claims, with the same or another request hash, see the stored answer.
        assert await store.claim_idempotency_key(idem_claim("a", created_at=T0 + timedelta(days=1))) == done
        other = await store.claim_idempotency_key(idem_claim("a", request="other", created_at=T0 + timedelta(days=1)))
        assert other == done and other.request_hash == claim.request_hash

    async def test_idempotency_first_answer_wins(self, store: Store) -> None:
        claim = await store.claim_idempotency_key(idem_claim("b"))
        first = await store.complete_idempotency_key(idem_answer(claim, '{"n":1}'))
        second = await store.complete_idempotency_key(idem_answer(claim, '{"n":2}'))
        assert first == second and second.response_json == '{"n":1}'
        # An answer for another request hash never overwrites the key's claim.
        foreign = idem_answer(idem_claim("c", request="x"), '{"n":3}')
        await store.claim_idempotency_key(idem_claim("c"))
        kept = await store.complete_idempotency_key(foreign)
        assert kept.request_hash == idem_claim("c").request_hash and not kept.completed
        # Completing a claim that is gone (released, pruned) records the answer.
        lone = idem_answer(idem_claim("d"), '{"n":4}')
        assert (await store.complete_idempotency_key(lone)).response_json == '{"n":4}'

    async def test_idempotency_concurrent_claims_agree(self, store: Store) -> None:
        claims = [idem_claim("e", request=f"r{i}", created_at=T0 + timedelta(microseconds=i)) for i in range(30)]
        stored = await asyncio.gather(*(store.claim_idempotency_key(c) for c in claims))
        assert len({s.request_hash for s in stored}) == 1  # exactly one claim won, everyone sees it
        assert stored[0] in claims

    async def test_idempotency_release_only_an_unanswered_claim(self, store: Store) -> None:
        claim = await store.claim_idempotency_key(idem_claim("f"))
        assert await store.release_idempotency_key(claim.key_hash, idem_claim("f", request="x").request_hash) is False
        assert await store.release_idempotency_key(claim.key_hash, claim.request_hash) is True
        # Released: the key can now be claimed for another request.
        other = idem_claim("f", request="x")
        assert await store.claim_idempotency_key(other) == other
        await store.complete_idempotency_key(idem_answer(other, "{}"))
        assert await store.release_idempotency_key(other.key_hash, other.request_hash) is False

    async def test_idempotency_keys_expire(self, store: Store) -> None:
        claim = await store.claim_idempotency_key(idem_claim("g"))
        await store.complete_idempotency_key(idem_answer(claim, "{}"))
        young = await store.claim_idempotency_key(idem_claim("h", created_at=T0 + timedelta(days=5)))
        # Past expires_at a claim starts afresh (even for another request).
        late = idem_claim("g", request="x", created_at=claim.expires_at)
        assert await store.claim_idempotency_key(late) == late
        assert await store.prune_idempotency_keys(T0 + timedelta(days=1)) == 0
        assert await store.prune_idempotency_keys(late.expires_at + timedelta(seconds=1)) == 2
        assert await store.claim_idempotency_key(idem_claim("h", request="y", created_at=T0)) != young

    async def test_idempotency_record_rules(self) -> None:
        with pytest.raises(ValueError):
            IdempotencyRecord("not-a-hash", "referrals.submit", _hex("r"), T0, T0 + timedelta(days=1))
        with pytest.raises(ValueError):
            IdempotencyRecord(_hex("k"), "referrals.submit", _hex("r"), T0, T0)  # must expire after creation
        with pytest.raises(ValueError):
            IdempotencyRecord(_hex("k"), "referrals.submit", _hex("r"), T0, T0 + timedelta(days=1), status_code=202)

    # --- argument errors (checked once, in Store, for every backend) ------------------------

    @pytest.mark.parametrize("call", [
        pytest.param(lambda s: s.add_outgoing("not a message"), id="add_outgoing-msg"),
        pytest.param(lambda s: s.add_outgoing(outgoing(), audit="x"), id="add_outgoing-audit"),
        pytest.param(lambda s: s.due_outgoing(NAIVE, 10), id="due_outgoing-naive"),
        pytest.param(lambda s: s.due_outgoing(T0, -1), id="due_outgoing-limit"),
        pytest.param(lambda s: s.due_outgoing(T0, True), id="due_outgoing-bool-limit"),
        pytest.param(lambda s: s.due_outgoing(T0, "10"), id="due_outgoing-str-limit"),
        pytest.param(lambda s: s.mark_sent("abc", T0), id="mark_sent-id"),
        pytest.param(lambda s: s.mark_sent(new_id(), NAIVE), id="mark_sent-naive"),
        pytest.param(lambda s: s.mark_retry(new_id(), NAIVE, "broker_nack"), id="mark_retry-naive"),
        pytest.param(lambda s: s.mark_retry(new_id(), T0, "Free text"), id="mark_retry-code"),
        pytest.param(lambda s: s.mark_retry(new_id(), T0, "broker_nack", at=NAIVE), id="mark_retry-at"),
        pytest.param(lambda s: s.mark_failed(new_id(), "", at=T0), id="mark_failed-code"),
        pytest.param(lambda s: s.mark_failed(new_id(), "broker_nack", at=NAIVE), id="mark_failed-at"),
        pytest.param(lambda s: s.set_status(new_id(), "lost", T0), id="set_status-status"),
        pytest.param(lambda s: s.get_outgoing(""), id="get_outgoing-empty"),
        pytest.param(lambda s: s.get_outgoing(None), id="get_outgoing-none"),
        pytest.param(lambda s: s.status_trail(new_id(), direction="sideways"), id="status_trail-direction"),
        pytest.param(lambda s: s.list_outgoing_for_case(""), id="list_outgoing_for_case-empty"),
        pytest.param(lambda s: s.add_incoming(outgoing()), id="add_incoming-msg"),
        pytest.param(lambda s: s.add_incoming(incoming(), audit=[]), id="add_incoming-audit"),
        pytest.param(lambda s: s.list_incoming(-1), id="list_incoming-limit"),
        pytest.param(lambda s: s.list_incoming(10, -1), id="list_incoming-offset"),
        pytest.param(lambda s: s.list_incoming(10, status="sent"), id="list_incoming-status"),
        pytest.param(lambda s: s.get_incoming(b"id"), id="get_incoming-bytes"),
        pytest.param(lambda s: s.set_incoming_status("abc", "read", T0), id="set_incoming_status-id"),
        pytest.param(lambda s: s.set_incoming_status(new_id(), "read", NAIVE), id="set_incoming_status-naive"),
        pytest.param(lambda s: s.list_incoming_for_case(None), id="list_incoming_for_case-none"),
        pytest.param(lambda s: s.remember_message_id("abc", T0), id="remember_message_id-id"),
        pytest.param(lambda s: s.remember_message_id(new_id(), NAIVE), id="remember_message_id-naive"),
        pytest.param(lambda s: s.prune_seen(NAIVE), id="prune_seen-naive"),
        pytest.param(lambda s: s.prune_seen("2025-03-01"), id="prune_seen-str"),
        pytest.param(lambda s: s.upsert_case(("case-1", "NG-NAPTIP")), id="upsert_case-case"),
        pytest.param(lambda s: s.get_case(""), id="get_case-empty"),
        pytest.param(lambda s: s.append_audit({"event_type": "message.sent"}), id="append_audit-entry"),
        pytest.param(lambda s: s.read_audit(-1, 10), id="read_audit-from_seq"),
        pytest.param(lambda s: s.read_audit("1", 10), id="read_audit-str-from_seq"),
        pytest.param(lambda s: s.read_audit(1, -1), id="read_audit-limit"),
        pytest.param(lambda s: s.query_audit({"case_ref": "case-1"}, 10), id="query_audit-query"),
        pytest.param(lambda s: s.query_audit(AuditQuery(), -5), id="query_audit-limit"),
        pytest.param(lambda s: s.audit_hashes(None, 10), id="audit_hashes-from_seq"),
        pytest.param(lambda s: s.audit_hashes(1, 1.5), id="audit_hashes-limit"),
        pytest.param(lambda s: s.add_data_key("key"), id="add_data_key-key"),
        pytest.param(lambda s: s.get_data_key(""), id="get_data_key-empty"),
        pytest.param(lambda s: s.live_case_key(""), id="live_case_key-empty"),
        pytest.param(lambda s: s.shred_data_keys("abc", "retention", T0), id="shred_data_keys-one-string"),
        pytest.param(lambda s: s.shred_data_keys(b"abc", "retention", T0), id="shred_data_keys-bytes"),
        pytest.param(lambda s: s.shred_data_keys({"abc"}, "retention", T0), id="shred_data_keys-set"),
        pytest.param(lambda s: s.shred_data_keys(["abc", ""], "retention", T0), id="shred_data_keys-empty-id"),
        pytest.param(lambda s: s.shred_data_keys(["abc"], "Free text", T0), id="shred_data_keys-reason"),
        pytest.param(lambda s: s.shred_data_keys(["abc"], "retention", NAIVE), id="shred_data_keys-naive"),
        pytest.param(lambda s: s.shred_data_keys(["abc"], "retention", T0, audit=audit()), id="shred_data_keys-one-audit"),
        pytest.param(lambda s: s.shred_data_keys(["abc"], "retention", T0, audit=["x"]), id="shred_data_keys-audit-item"),
        pytest.param(lambda s: s.case_key_ids(""), id="case_key_ids-empty"),
        pytest.param(lambda s: s.retention_due("", T0, 10), id="retention_due-type"),
        pytest.param(lambda s: s.retention_due("referral.request", NAIVE, 10), id="retention_due-naive"),
        pytest.param(lambda s: s.retention_due("referral.request", T0, -1), id="retention_due-limit"),
        pytest.param(lambda s: s.add_withdrawal("withdrawal"), id="add_withdrawal-withdrawal"),
        pytest.param(lambda s: s.withdrawals_for_case(""), id="withdrawals_for_case-empty"),
        pytest.param(lambda s: s.claim_idempotency_key("key"), id="claim_idempotency_key-claim"),
        pytest.param(lambda s: s.claim_idempotency_key(idem_answer(idem_claim("a"), "{}")),
                     id="claim_idempotency_key-answered"),
        pytest.param(lambda s: s.complete_idempotency_key(idem_claim("a")), id="complete_idempotency_key-unanswered"),
        pytest.param(lambda s: s.release_idempotency_key("key", _hex("r")), id="release_idempotency_key-key"),
        pytest.param(lambda s: s.release_idempotency_key(_hex("k"), None), id="release_idempotency_key-request"),
        pytest.param(lambda s: s.prune_idempotency_keys(NAIVE), id="prune_idempotency_keys-naive"),
        pytest.param(lambda s: s.add_checkpoint(b"note"), id="add_checkpoint-checkpoint"),
        pytest.param(lambda s: s.latest_checkpoint(""), id="latest_checkpoint-empty"),
        pytest.param(lambda s: s.list_checkpoints("", limit=10), id="list_checkpoints-origin"),
        pytest.param(lambda s: s.list_checkpoints("NG-NAPTIP", min_size=-1), id="list_checkpoints-min_size"),
        pytest.param(lambda s: s.list_checkpoints("NG-NAPTIP", limit=-1), id="list_checkpoints-limit"),
        pytest.param(lambda s: s.list_checkpoints("NG-NAPTIP", newest_first="yes"), id="list_checkpoints-newest_first"),
    ])
    async def test_bad_arguments_raise_store_argument_error(self, store: Store, call) -> None:  # type: ignore[no-untyped-def]
        with pytest.raises(StoreArgumentError) as info:
            await call(store)
        assert info.value.code == "store_argument_invalid"
        # Still the builtins callers caught before the checks moved to Store.
        assert isinstance(info.value, ValueError) and isinstance(info.value, TypeError)
        assert not isinstance(info.value, StoreError)  # a caller's bug, not "the database cannot"

    async def test_shredding_one_string_never_shreds_its_characters(self, store: Store) -> None:
        await store.add_data_key(data_key("a", "case-a"))
        with pytest.raises(StoreArgumentError, match="key_ids"):
            await store.shred_data_keys("a", "retention", T0)
        key = await store.get_data_key("a")
        assert key is not None and key.wrapped is not None

    async def test_argument_errors_do_not_echo_the_value(self, store: Store) -> None:
        secret = "Amina Bello"
        for call in (store.get_case(""), store.mark_sent(secret, T0), store.set_status(new_id(), secret, T0),
                     store.retention_due(secret, NAIVE, 1)):
            with pytest.raises(StoreArgumentError) as info:
                await call
            assert secret not in str(info.value)

    # --- durability and failure -----------------------------------------------------------

    async def test_data_survives_close_and_reopen(self, harness: StoreHarness) -> None:
        store = await harness.open()
        out, inc, seen = outgoing(), incoming(), new_id()
        await store.add_outgoing(out)
        await store.mark_sent(out.message_id, T0 + timedelta(seconds=1))
        await store.add_incoming(inc)
        await store.remember_message_id(seen, T0 + timedelta(days=1))
        await store.upsert_case(Case("case-7f3a9c01", "NG-NAPTIP", "referred", T0))
        seq = await store.append_audit(audit(1))
        answered = await store.complete_idempotency_key(idem_answer(await store.claim_idempotency_key(idem_claim("k")), "{}"))
        await store.close()

        store = await harness.open()
        try:
            assert (await store.get_outgoing(out.message_id)).status == "sent"
            assert [s for s, _ in await store.status_trail(out.message_id)] == ["queued", "sent"]
            assert (await store.get_incoming(inc.message_id)).envelope == inc.envelope
            assert await store.add_incoming(inc) is False
            assert await store.remember_message_id(seen, T0) is False
            assert (await store.get_case("case-7f3a9c01")).state == "referred"
            assert [r.seq for r in await store.read_audit(seq, 10)] == [seq]
            assert await store.append_audit(audit(2)) == seq + 1
            assert await store.claim_idempotency_key(idem_claim("k", request="x")) == answered
        finally:
            await store.close()

    async def test_closed_store_is_unavailable(self, harness: StoreHarness) -> None:
        store = await harness.open()
        assert await store.ping() is True
        await store.close()
        assert await store.ping() is False
        with pytest.raises(StoreUnavailableError):
            await store.add_incoming(incoming())
        await store.close()  # idempotent

    async def test_read_only_database_refuses_writes_without_crashing(self, harness: StoreHarness) -> None:
        store = await harness.open()
        existing = outgoing()
        await store.add_outgoing(existing)
        await store.close()

        ro = await harness.open_read_only()
        try:
            assert (await ro.get_outgoing(existing.message_id)).status == "queued"
            writes = [
                ro.add_outgoing(outgoing()),
                ro.mark_sent(existing.message_id, T0),
                ro.mark_retry(existing.message_id, T0, "broker_unreachable"),
                ro.set_status(existing.message_id, "delivered", T0),
                ro.add_incoming(incoming()),
                ro.remember_message_id(new_id(), T0),
                ro.prune_seen(T0 + timedelta(days=999)),
                ro.upsert_case(Case("case-7f3a9c01", "NG-NAPTIP", "referred", T0)),
                ro.append_audit(audit(1)),
                ro.claim_idempotency_key(idem_claim("ro")),
            ]
            for write in writes:
                with pytest.raises(StoreUnavailableError):
                    await write
            assert await ro.ping() is True  # still answers reads
        finally:
            await ro.close()

        store = await harness.open()
        try:
            row = await store.get_outgoing(existing.message_id)
            assert (row.status, row.attempts) == ("queued", 0)
            assert await store.list_incoming(10) == []
            assert await store.read_audit(0, 10) == []
        finally:
            await store.close()

    async def test_event_loop_keeps_running_during_a_large_batch(self, store: Store) -> None:
        gaps: list[float] = []
        stop = asyncio.Event()

        async def ticker() -> None:
            last = time.perf_counter()
            while not stop.is_set():
                await asyncio.sleep(0.002)
                now = time.perf_counter()
                gaps.append(now - last)
                last = now

        tick = asyncio.create_task(ticker())
        await asyncio.sleep(0)
        envelope = b"x" * 64 * 1024
        started, written = time.perf_counter(), 0
        # Write until the batch has taken at least 0.6 s: work done on the loop thread would
        # then show up as a gap of at least that long.
        while time.perf_counter() - started < 0.6 and written < 20_000:
            await store.add_incoming(incoming(envelope=envelope))
            written += 1
        elapsed = time.perf_counter() - started
        stop.set()
        await tick
        assert len(await store.list_incoming(limit=written + 1)) == written
        assert max(gaps) < 0.25, f"event loop stalled {max(gaps):.3f}s during a {elapsed:.2f}s batch"
        assert len(gaps) >= 20


def web_session(name: str, *, user: str = "alice", created_at: datetime = T0, hours: int = 10) -> WebSession:
    """A workspace session whose id hash is derived from ``name``."""
    return WebSession(
        id_hash=hashlib.sha256(name.encode()).hexdigest(), user_name=user, role="caseworker",
        created_at=created_at, last_seen_at=created_at, expires_at=created_at + timedelta(hours=hours),
    )
