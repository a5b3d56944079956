"""Database rows → store records, shared by every backend.

A backend passes ``when`` (its stored time → aware UTC datetime) and, for withdrawals,
``items`` (its stored list → tuple of strings); everything else about a record's shape
lives here once.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Callable, Protocol

from gateway.store.base import (
    AuditRecord, CheckpointRecord, DataKey, DirectoryRecord, IdempotencyRecord, InboxRecord, OutboxRecord, WebSession,
    Withdrawal,
)


class Row(Protocol):
    """All a converter reads from a row: a column's value by name. sqlite3.Row, asyncpg.Record
    and a dict all qualify (the first two are not Mappings)."""

    def __getitem__(self, key: str, /) -> Any: ...


When = Callable[[Any], datetime]


def _maybe(value: Any, convert: Callable[[Any], Any]) -> Any:
    return None if value is None else convert(value)


def outbox_record(row: Row, when: When) -> OutboxRecord:
    """An ``outbox`` row as an OutboxRecord."""
    return OutboxRecord(
        message_id=row["message_id"], case_ref=row["case_ref"], recipient=row["recipient"],
        message_type=row["message_type"], envelope=bytes(row["envelope"]), status=row["status"],
        attempts=row["attempts"], next_attempt_at=when(row["next_attempt_at"]), last_error=row["last_error"],
        created_at=when(row["created_at"]), updated_at=when(row["updated_at"]),
    )


def inbox_record(row: Row, when: When) -> InboxRecord:
    """An ``inbox`` row as an InboxRecord."""
    return InboxRecord(
        message_id=row["message_id"], sender=row["sender"], message_type=row["message_type"],
        case_ref=row["case_ref"], envelope=bytes(row["envelope"]), received_at=when(row["received_at"]),
        status=row["status"], updated_at=when(row["updated_at"]),
    )


def audit_record(row: Row, when: When) -> AuditRecord:
    """An ``audit_entries`` row as an AuditRecord."""
    return AuditRecord(
        seq=row["seq"], at=when(row["at"]), event_type=row["event_type"], actor=row["actor"],
        case_ref=row["case_ref"], message_id=row["message_id"], detail_json=row["detail_json"],
        entry_hash=_maybe(row["entry_hash"], bytes), agency=row["agency"],
    )


def data_key_record(row: Row, when: When) -> DataKey:
    """A ``data_keys`` row as a DataKey (``wrapped`` None once shredded)."""
    return DataKey(
        key_id=row["key_id"], case_ref=row["case_ref"], kind=row["kind"], wrapped=_maybe(row["wrapped"], bytes),
        created_at=when(row["created_at"]), parent_key_id=row["parent_key_id"],
        shredded_at=_maybe(row["shredded_at"], when), shred_reason=row["shred_reason"],
    )


def withdrawal_record(row: Row, when: When, purposes: Any, request_ids: Any) -> Withdrawal:
    """A ``withdrawals`` row as a Withdrawal (the lists already decoded by the backend)."""
    return Withdrawal(
        message_id=row["message_id"], case_ref=row["case_ref"], direction=row["direction"],
        counterpart=row["counterpart"], withdrawn_at=when(row["withdrawn_at"]), scope=row["scope"],
        purposes=tuple(purposes), request_message_ids=tuple(request_ids), recorded_at=when(row["recorded_at"]),
    )


def checkpoint_record(row: Row, when: When) -> CheckpointRecord:
    """A ``checkpoints`` row as a CheckpointRecord."""
    return CheckpointRecord(
        origin=row["origin"], tree_size=row["tree_size"], root_hash=bytes(row["root_hash"]),
        signed_at=when(row["signed_at"]), note=bytes(row["note"]), recorded_at=when(row["recorded_at"]),
    )


def directory_record(row: Row, when: When) -> DirectoryRecord:
    """A ``directories`` row as a DirectoryRecord."""
    return DirectoryRecord(
        serial=row["serial"], digest=row["digest"], signed=bytes(row["signed"]), issued=when(row["issued"]),
        accepted_at=when(row["accepted_at"]), source=row["source"],
    )


def idempotency_record(row: Row, when: When) -> IdempotencyRecord:
    """An ``idempotency_keys`` row as an IdempotencyRecord."""
    return IdempotencyRecord(
        key_hash=row["key_hash"], route=row["route"], request_hash=row["request_hash"],
        created_at=when(row["created_at"]), expires_at=when(row["expires_at"]), status_code=row["status_code"],
        response_json=row["response_json"], completed_at=_maybe(row["completed_at"], when),
    )


def web_session(row: Row, when: When) -> WebSession:
    """A ``web_sessions`` row as a WebSession."""
    return WebSession(
        id_hash=row["id_hash"], user_name=row["user_name"], role=row["role"], created_at=when(row["created_at"]),
        last_seen_at=when(row["last_seen_at"]), expires_at=when(row["expires_at"]), credential=row["credential"],
    )
