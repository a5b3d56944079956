"""The store interface: rows as frozen dataclasses, the ``Store`` protocol, store errors.

Every backend (``sqlite.py`` now, PostgreSQL later) implements :class:`Store` and runs the
same conformance suite (``tests/support/store_conformance.py``). The status-order rules are pure
functions here so that every backend decides "forward or stale?" the same way.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from abc import ABC, abstractmethod
from typing import Literal, NamedTuple, Sequence, get_args

from gateway.audit.events import is_declared
from gateway.audit.leaf import leaf_hash
from gateway.errors import GatewayError

# --- errors ------------------------------------------------------------------------------


class StoreError(GatewayError):
    """The store refused or failed an operation; the subclass says why."""

    code = "store_error"


class StoreUnavailableError(StoreError):
    """The database cannot take the operation now (disk full, read-only, locked too long,
    closed, unreachable). Nothing was written; the caller may answer 503 and retry later."""

    code = "store_unavailable"


class MessageConflictError(StoreError):
    """A message id is already stored with different content (not an idempotent retry)."""

    code = "message_conflict"


class DataKeyExistsError(StoreError):
    """``add_incoming(..., data_key=)``: a key with that id is already stored (an earlier
    attempt at the message made one), or the message is already in the inbox, or
    (``case_key=``) the case has a live case key already (another process made it). Nothing
    was written: the caller seals the message under the stored keys instead (gateway/at_rest.py)."""

    code = "data_key_exists"


class MessageNotFoundError(StoreError):
    """No stored message has this id."""

    code = "message_not_found"


class SchemaVersionError(StoreError):
    """The database schema is newer than this code understands (opened by a newer release)."""

    code = "schema_version"


class UnsupportedStoreURLError(StoreError):
    """The store URL names a backend that does not exist (or does not exist yet)."""

    code = "unsupported_store_url"


class StoreArgumentError(GatewayError, ValueError, TypeError):
    """A store method or row was given an argument of the wrong type or value (the caller's
    bug, not a store failure: deliberately not a :class:`StoreError`, which callers treat as
    "the database cannot do this now"). Also a ValueError and a TypeError, the builtins the
    backends raised before the checks moved here. The message names the argument, never
    its value."""

    code = "store_argument_invalid"


# --- status vocabulary and order ----------------------------------------------------------

OutgoingStatus = Literal[
    "queued", "sent", "delivered", "read", "accepted", "declined", "more_info_requested", "failed"
]
IncomingStatus = Literal["received", "read", "responded"]
Direction = Literal["outgoing", "incoming"]

OUTGOING_STATUSES: frozenset[str] = frozenset(get_args(OutgoingStatus))
INCOMING_STATUSES: frozenset[str] = frozenset(get_args(IncomingStatus))

#: Rank of each outgoing status; a transition is applied only if it raises the rank.
#: Receipts can arrive out of order (``delivered`` after ``read``) and the broker confirm
#: can be processed after the recipient's first receipt, so anything not strictly later
#: is stale and ignored. Equal ranks are alternatives, not steps: ``sent``/``failed`` are
#: the two publish outcomes, ``accepted``/``declined`` the two final decisions; the first
#: one recorded wins. ``failed`` only means *we* gave up publishing: a later receipt proves
#: the message arrived after all, so it moves forward. ``more_info_requested`` may still
#: be followed by a decision.
OUTGOING_RANK: dict[str, int] = {
    "queued": 0,
    "sent": 1,
    "failed": 1,
    "delivered": 2,
    "read": 3,
    "more_info_requested": 4,
    "accepted": 5,
    "declined": 5,
}
INCOMING_RANK: dict[str, int] = {"received": 0, "read": 1, "responded": 2}


def outgoing_moves_forward(current: str, new: str) -> bool:
    """True if an outgoing message in status ``current`` may move to ``new``."""
    return OUTGOING_RANK[new] > OUTGOING_RANK[current]


def incoming_moves_forward(current: str, new: str) -> bool:
    """True if an incoming message in status ``current`` may move to ``new``."""
    return INCOMING_RANK[new] > INCOMING_RANK[current]


# --- value checks (parse once at the edge) -----------------------------------------------


def require_aware(name: str, moment: datetime) -> datetime:
    """Return ``moment`` in UTC; raise ValueError for naive datetimes."""
    if not isinstance(moment, datetime) or moment.tzinfo is None or moment.utcoffset() is None:
        raise StoreArgumentError(f"{name} must be a timezone-aware datetime")
    return moment.astimezone(timezone.utc)


def require_message_id(name: str, value: str) -> str:
    """Message ids are canonical (lower-case, hyphenated) UUID strings."""
    try:
        ok = isinstance(value, str) and str(uuid.UUID(value)) == value
    except ValueError:
        ok = False
    if not ok:
        raise StoreArgumentError(f"{name} must be a lower-case hyphenated UUID string")
    return value


def require_status(name: str, value: str, allowed: frozenset[str]) -> str:
    if value not in allowed:
        raise StoreArgumentError(f"{name} must be one of {sorted(allowed)}")
    return value


#: Reason codes only (``broker_nack``, ``amqp.timeout``): free text could carry personal data.
ERROR_CODE = re.compile(r"^[a-z0-9][a-z0-9_.:-]{0,63}$")


def require_error_code(name: str, value: str) -> str:
    if not isinstance(value, str) or not ERROR_CODE.fullmatch(value):
        raise StoreArgumentError(f"{name} must be a reason code matching {ERROR_CODE.pattern}")
    return value


def _require_text(name: str, value: str | None, *, optional: bool = False) -> None:
    if value is None and optional:
        return
    if not isinstance(value, str) or not value:
        raise StoreArgumentError(f"{name} must be a non-empty string")


def _utc_fields(obj: object, *names: str) -> None:
    for name in names:
        value = getattr(obj, name)
        if value is not None:
            object.__setattr__(obj, name, require_aware(name, value))


# --- rows --------------------------------------------------------------------------------


@dataclass(frozen=True)
class OutboxEntry:
    """An envelope to publish: what the API stores in the outbox before answering 202."""

    message_id: str
    case_ref: str
    recipient: str
    message_type: str
    envelope: bytes = field(repr=False)  # already signed and encrypted
    created_at: datetime

    def __post_init__(self) -> None:
        require_message_id("message_id", self.message_id)
        for name in ("case_ref", "recipient", "message_type"):
            _require_text(name, getattr(self, name))
        if not isinstance(self.envelope, bytes) or not self.envelope:
            raise StoreArgumentError("envelope must be non-empty bytes")
        _utc_fields(self, "created_at")


#: The former name of OutboxEntry, kept for code written against it.
OutgoingMessage = OutboxEntry


@dataclass(frozen=True)
class OutboxRecord:
    """An outbox row as stored: the message plus its delivery state."""

    message_id: str
    case_ref: str
    recipient: str
    message_type: str
    envelope: bytes = field(repr=False)
    status: OutgoingStatus
    attempts: int
    next_attempt_at: datetime
    last_error: str | None  # a reason code, never a free-text message with data in it
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class IncomingMessage:
    """A received envelope, still encrypted: what the consumer stores before acking."""

    message_id: str
    sender: str
    message_type: str
    case_ref: str
    envelope: bytes = field(repr=False)
    received_at: datetime

    def __post_init__(self) -> None:
        require_message_id("message_id", self.message_id)
        for name in ("sender", "message_type", "case_ref"):
            _require_text(name, getattr(self, name))
        if not isinstance(self.envelope, bytes) or not self.envelope:
            raise StoreArgumentError("envelope must be non-empty bytes")
        _utc_fields(self, "received_at")


@dataclass(frozen=True)
class InboxRecord:
    """An inbox row as stored."""

    message_id: str
    sender: str
    message_type: str
    case_ref: str
    envelope: bytes = field(repr=False)
    received_at: datetime
    status: IncomingStatus
    updated_at: datetime


class StatusChange(NamedTuple):
    """One recorded transition; compares equal to a plain ``(status, at)`` tuple."""

    status: str
    at: datetime


@dataclass(frozen=True)
class Case:
    """Minimal state per case pseudonym (no personal data lives here)."""

    case_ref: str
    counterpart_agency: str
    state: str
    updated_at: datetime

    def __post_init__(self) -> None:
        for name in ("case_ref", "counterpart_agency", "state"):
            _require_text(name, getattr(self, name))
        _utc_fields(self, "updated_at")


@dataclass(frozen=True)
class AuditEntry:
    """An audit event to append. ``detail_json`` is stored verbatim (the audit log decides
    its canonical form, because its hash covers those bytes)."""

    at: datetime
    event_type: str
    actor: str
    case_ref: str | None = None
    message_id: str | None = None
    detail_json: str = "{}"
    #: The other agency involved (recipient of a send, sender of a receipt), for queries.
    agency: str | None = None
    #: RFC 9162 leaf hash of the entry (gateway/audit/leaf.py); computed here when omitted,
    #: so every backend stores the same hash for the same entry.
    entry_hash: bytes | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        _require_text("event_type", self.event_type)
        _require_text("actor", self.actor)
        _require_text("case_ref", self.case_ref, optional=True)
        _require_text("message_id", self.message_id, optional=True)
        _require_text("agency", self.agency, optional=True)
        try:
            detail = json.loads(self.detail_json)
        except (TypeError, ValueError):
            raise StoreArgumentError("detail_json must be a JSON text") from None
        if not isinstance(detail, dict):
            raise StoreArgumentError("detail_json must be a JSON object")
        if self.entry_hash is not None and not isinstance(self.entry_hash, bytes):
            raise StoreArgumentError("entry_hash must be bytes or None")
        _utc_fields(self, "at")
        if self.entry_hash is None:
            object.__setattr__(self, "entry_hash", leaf_hash(self, detail))


@dataclass(frozen=True)
class AuditRecord:
    """A stored audit entry with its sequence number (1, 2, 3, ... in append order, no gaps)."""

    seq: int
    at: datetime
    event_type: str
    actor: str
    case_ref: str | None
    message_id: str | None
    detail_json: str
    entry_hash: bytes | None = field(repr=False)
    agency: str | None = None


DataKeyKind = Literal["case", "message"]


@dataclass(frozen=True)
class DataKey:
    """A data key for payloads at rest, stored only wrapped (encrypted).

    A ``case`` key is wrapped by the gateway's own encryption key; a ``message`` key is
    wrapped by its case key (``parent_key_id``) and encrypts one stored envelope. Shredding
    sets ``wrapped`` to None for good: what it encrypted can no longer be read by anyone.
    """

    key_id: str
    case_ref: str
    kind: DataKeyKind
    wrapped: bytes | None = field(repr=False)
    created_at: datetime
    parent_key_id: str | None = None
    shredded_at: datetime | None = None
    shred_reason: str | None = None

    def __post_init__(self) -> None:
        for name in ("key_id", "case_ref"):
            _require_text(name, getattr(self, name))
        require_status("kind", self.kind, frozenset(get_args(DataKeyKind)))
        if (self.kind == "message") != (self.parent_key_id is not None):
            raise StoreArgumentError("a message key has a parent_key_id (its case key); a case key has none")
        if self.wrapped is not None and (not isinstance(self.wrapped, bytes) or not self.wrapped):
            raise StoreArgumentError("wrapped must be non-empty bytes or None (shredded)")
        if self.shred_reason is not None:
            require_error_code("shred_reason", self.shred_reason)
        _utc_fields(self, "created_at", "shredded_at")


@dataclass(frozen=True)
class Withdrawal:
    """A consent withdrawal for a case, sent by us or received from the referring agency."""

    message_id: str
    case_ref: str
    direction: Direction
    counterpart: str
    withdrawn_at: datetime
    scope: Literal["all_purposes", "some_purposes"]
    purposes: tuple[str, ...]
    request_message_ids: tuple[str, ...]  # empty: every request of the case
    recorded_at: datetime

    def __post_init__(self) -> None:
        require_message_id("message_id", self.message_id)
        for name in ("case_ref", "counterpart"):
            _require_text(name, getattr(self, name))
        require_status("direction", self.direction, frozenset(get_args(Direction)))
        require_status("scope", self.scope, frozenset({"all_purposes", "some_purposes"}))
        for mid in self.request_message_ids:
            require_message_id("request_message_ids[]", mid)
        object.__setattr__(self, "purposes", tuple(self.purposes))
        object.__setattr__(self, "request_message_ids", tuple(self.request_message_ids))
        _utc_fields(self, "withdrawn_at", "recorded_at")


@dataclass(frozen=True)
class CheckpointRecord:
    """A signed audit-log checkpoint: our own (``origin`` is our agency) or a partner's."""

    origin: str
    tree_size: int
    root_hash: bytes = field(repr=False)
    signed_at: datetime
    note: bytes = field(repr=False)  # the signed checkpoint exactly as signed and exchanged
    recorded_at: datetime

    def __post_init__(self) -> None:
        _require_text("origin", self.origin)
        if not isinstance(self.tree_size, int) or self.tree_size < 0:
            raise StoreArgumentError("tree_size must be a non-negative integer")
        if not isinstance(self.root_hash, bytes) or len(self.root_hash) != 32:
            raise StoreArgumentError("root_hash must be 32 bytes")
        if not isinstance(self.note, bytes) or not self.note:
            raise StoreArgumentError("note must be non-empty bytes")
        _utc_fields(self, "signed_at", "recorded_at")


@dataclass(frozen=True)
class DirectoryRecord:
    """A signed directory this gateway accepted: the highest ``serial`` is the one in force.

    ``signed`` is the file exactly as verified, so a gateway can start from it again after a
    restart with an older file on disk (docs/keys.md "Rollback protection")."""

    serial: int
    digest: str  # hex SHA-256 of ``signed``
    signed: bytes = field(repr=False)
    issued: datetime
    accepted_at: datetime
    #: Where it came from: ``file`` (start-up) or ``broker`` (published by the authority).
    source: str

    def __post_init__(self) -> None:
        if not isinstance(self.serial, int) or isinstance(self.serial, bool) or self.serial < 1:
            raise StoreArgumentError("serial must be a positive integer")
        _require_sha256("digest", self.digest)
        if not isinstance(self.signed, bytes) or not self.signed:
            raise StoreArgumentError("signed must be non-empty bytes")
        if self.source not in ("file", "broker"):
            raise StoreArgumentError("source must be 'file' or 'broker'")
        _utc_fields(self, "issued", "accepted_at")


#: How a stored idempotency key and request are named: hex SHA-256 (never the raw values).
SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class IdempotencyRecord:
    """One ``Idempotency-Key`` of the API and the answer it produced (docs/api.md).

    Holds hashes, a route name, times and the answer as sent (ids and codes only): never
    the client's key, the user or the request body, which may carry anything.
    ``status_code``/``response_json`` are None while the request is still being made
    (claimed, not completed).
    """

    key_hash: str  # SHA-256 of agency, route, user and key
    route: str
    request_hash: str  # SHA-256 of the canonical request (path parameters and JSON body)
    created_at: datetime
    expires_at: datetime
    status_code: int | None = None
    response_json: str | None = None
    completed_at: datetime | None = None

    def __post_init__(self) -> None:
        for name in ("key_hash", "request_hash"):
            if not isinstance(getattr(self, name), str) or not SHA256_HEX.fullmatch(getattr(self, name)):
                raise StoreArgumentError(f"{name} must be a lower-case hex SHA-256")
        _require_text("route", self.route)
        if (self.status_code is None) != (self.response_json is None):
            raise StoreArgumentError("status_code and response_json are given together or not at all")
        if self.status_code is not None and not (isinstance(self.status_code, int) and 200 <= self.status_code <= 599):
            raise StoreArgumentError("status_code must be an HTTP status")
        if self.response_json is not None:
            try:
                json.loads(self.response_json)
            except (TypeError, ValueError):
                raise StoreArgumentError("response_json must be a JSON text") from None
        _utc_fields(self, "created_at", "expires_at", "completed_at")
        if self.expires_at <= self.created_at:
            raise StoreArgumentError("expires_at must be after created_at")

    @property
    def completed(self) -> bool:
        """True once the answer is recorded."""
        return self.response_json is not None


@dataclass(frozen=True)
class WebSession:
    """A signed-in workspace session (docs/workspace.md): who, and when it ends.

    Holds the SHA-256 of the session id, never the id itself (the browser's cookie), so a
    copy of the store cannot be used to sign in. ``last_seen_at`` moves on every page; the
    session ends ``idle`` after it or at ``expires_at``, whichever comes first.
    """

    id_hash: str  # SHA-256 hex of the 32 random bytes in the cookie
    user_name: str
    role: str
    created_at: datetime
    last_seen_at: datetime
    expires_at: datetime  # absolute end (workspace_session_hours after sign-in)
    #: A digest of the password hash the user signed in with (never the hash itself): a
    #: password changed in the settings ends the session.
    credential: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.id_hash, str) or not SHA256_HEX.fullmatch(self.id_hash):
            raise StoreArgumentError("id_hash must be a lower-case hex SHA-256")
        _require_text("user_name", self.user_name)
        _require_text("role", self.role)
        if not isinstance(self.credential, str) or len(self.credential) > 64:
            raise StoreArgumentError("credential must be a digest of at most 64 characters")
        _utc_fields(self, "created_at", "last_seen_at", "expires_at")
        if self.expires_at <= self.created_at:
            raise StoreArgumentError("expires_at must be after created_at")


@dataclass(frozen=True)
class AuditQuery:
    """Filters for :meth:`Store.query_audit`; every given filter must match (AND)."""

    case_ref: str | None = None
    agency: str | None = None
    event_types: tuple[str, ...] = ()
    since: datetime | None = None  # inclusive
    until: datetime | None = None  # exclusive
    after_seq: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "event_types", tuple(self.event_types))
        if not isinstance(self.after_seq, int) or self.after_seq < 0:
            raise StoreArgumentError("after_seq must be a non-negative integer")
        _utc_fields(self, "since", "until")


# --- argument checks of the interface ------------------------------------------------------


def _require_instance(name: str, value: object, kind: type, *, optional: bool = False) -> None:
    if value is None and optional:
        return
    if not isinstance(value, kind):
        raise StoreArgumentError(f"{name} must be a {kind.__name__}")


def _require_count(name: str, value: int) -> int:
    # bool is an int subclass; True as a limit is a bug, not a page size of one.
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise StoreArgumentError(f"{name} must be a non-negative integer")
    return value


def _require_key_ids(key_ids: Sequence[str]) -> list[str]:
    # A lone string is a Sequence of characters: shredding "abc" must not quietly mean
    # shredding keys "a", "b" and "c" (or nothing at all).
    if isinstance(key_ids, (str, bytes)) or not isinstance(key_ids, Sequence):
        raise StoreArgumentError("key_ids must be a sequence of key ids, not one string")
    ids = list(key_ids)
    for key_id in ids:
        _require_text("key_ids[]", key_id)
    return ids


def _require_entry(name: str, entry: AuditEntry | None, *, optional: bool = False) -> None:
    _require_instance(name, entry, AuditEntry, optional=optional)
    # Every event type is declared once (gateway/audit/events.py: docs and FHIR codes come
    # from there); an undeclared one is a bug caught here, before anything is written.
    if entry is not None and not is_declared(entry.event_type):
        raise StoreArgumentError(f"{name}: event type {entry.event_type!r} is not declared in gateway/audit/events.py")


def _require_audit_entries(audit: Sequence[AuditEntry]) -> tuple[AuditEntry, ...]:
    if isinstance(audit, (str, bytes, AuditEntry)) or not isinstance(audit, Sequence):
        raise StoreArgumentError("audit must be a sequence of AuditEntry")
    for entry in audit:
        _require_entry("audit[]", entry)
    return tuple(audit)


def _require_sha256(name: str, value: str) -> str:
    if not isinstance(value, str) or not SHA256_HEX.fullmatch(value):
        raise StoreArgumentError(f"{name} must be a lower-case hex SHA-256")
    return value


# --- the interface -----------------------------------------------------------------------


class Store(ABC):
    """Durable state of one gateway. Every method is a single transaction: when it returns,
    the change is durable; when it raises, nothing was changed.

    Methods that move a status return True if the transition was applied and False if it
    was stale (not forward) and therefore ignored; they raise MessageNotFoundError for an
    unknown id. Times are aware datetimes and come back in UTC.

    Template methods: each public method checks its arguments here, once for every
    backend, and raises :class:`StoreArgumentError` for a bad one; then it calls the
    backend's ``_<name>`` with checked values (datetimes already in UTC). A backend
    implements only the ``_<name>`` methods, plus :meth:`audit_size`, :meth:`ping` and
    :meth:`close`, which take no arguments to check.
    """

    # --- outbox ---------------------------------------------------------------------------

    async def add_outgoing(
        self, msg: OutboxEntry, *, audit: AuditEntry | Sequence[AuditEntry] | None = None, claim: bool = False
    ) -> bool:
        """Queue ``msg`` (status ``queued``, due at ``created_at``): True. Idempotent for the
        same id and content (False: it was queued before); MessageConflictError if the id is
        stored with other content. ``audit`` (one entry, or several in order) is appended in
        the same transaction, only when the row is new. ``claim``: the caller publishes the
        new row at once, so no other process may take it meanwhile (the PostgreSQL lease)."""
        _require_instance("msg", msg, OutboxEntry)
        if audit is None or isinstance(audit, AuditEntry):
            _require_entry("audit", audit, optional=True)
            entries: tuple[AuditEntry, ...] = () if audit is None else (audit,)
        else:
            entries = _require_audit_entries(audit)
        return await self._add_outgoing(msg, entries, claim)

    async def due_outgoing(self, now: datetime, limit: int) -> list[OutboxRecord]:
        """Queued messages with ``next_attempt_at <= now``, oldest (``created_at``) first."""
        return await self._due_outgoing(require_aware("now", now), _require_count("limit", limit))

    async def mark_sent(self, message_id: str, at: datetime, *, audit: AuditEntry | None = None) -> bool:
        """The broker confirmed the publish: ``queued`` -> ``sent``; counts one attempt.
        ``audit`` is appended in the same transaction, only when the status moves."""
        _require_entry("audit", audit, optional=True)
        return await self._mark_sent(require_message_id("message_id", message_id), require_aware("at", at), audit)

    async def mark_retry(
        self, message_id: str, next_attempt_at: datetime, error_code: str, *, at: datetime | None = None
    ) -> bool:
        """A publish attempt failed; stay ``queued``, due again at ``next_attempt_at``.
        Counts one attempt. Ignored (False) unless the message is still ``queued``.
        ``at`` defaults to the store's clock."""
        return await self._mark_retry(
            require_message_id("message_id", message_id),
            require_aware("next_attempt_at", next_attempt_at),
            require_error_code("error_code", error_code),
            None if at is None else require_aware("at", at),
        )

    async def mark_failed(self, message_id: str, error_code: str, *, at: datetime | None = None) -> bool:
        """Give up publishing: ``queued`` -> ``failed``; counts one attempt. ``at`` defaults
        to the store's clock."""
        return await self._mark_failed(
            require_message_id("message_id", message_id),
            require_error_code("error_code", error_code),
            None if at is None else require_aware("at", at),
        )

    async def set_status(
        self, message_id: str, status: OutgoingStatus, at: datetime, *, audit: AuditEntry | None = None
    ) -> bool:
        """Apply a business receipt (``delivered``, ``read``, ``accepted``, ...) if it moves
        the message forward in :data:`OUTGOING_RANK`; stale receipts are ignored.
        ``audit`` is appended in the same transaction, only when the status moves."""
        _require_entry("audit", audit, optional=True)
        return await self._set_status(
            require_message_id("message_id", message_id),
            require_status("status", status, OUTGOING_STATUSES),
            require_aware("at", at),
            audit,
        )

    async def get_outgoing(self, message_id: str) -> OutboxRecord | None:
        """The outbox row of ``message_id``, or None."""
        _require_text("message_id", message_id)
        return await self._get_outgoing(message_id)

    async def status_trail(self, message_id: str, *, direction: Direction = "outgoing") -> list[StatusChange]:
        """Every applied transition of one message, in the order applied (first: ``queued``
        or ``received``). Empty for an unknown id."""
        _require_text("message_id", message_id)
        require_status("direction", direction, frozenset(get_args(Direction)))
        return await self._status_trail(message_id, direction)

    async def list_outgoing(self, limit: int, offset: int = 0, message_type: str | None = None) -> list[OutboxRecord]:
        """Outbox rows oldest (``created_at``) first, ties in arrival order, optionally of one
        message type. New submissions append at the end, so offset pages stay stable."""
        _require_count("limit", limit)
        _require_count("offset", offset)
        if message_type is not None:
            _require_text("message_type", message_type)
        return await self._list_outgoing(limit, offset, message_type)

    async def list_outgoing_for_case(self, case_ref: str) -> list[OutboxRecord]:
        """Every outbox row of the case, oldest first."""
        _require_text("case_ref", case_ref)
        return await self._list_outgoing_for_case(case_ref)

    async def replace_outgoing_body(self, message_id: str, body: bytes, *, audit: AuditEntry | None = None) -> bool:
        """Overwrite the stored envelope of an outbox row (forward secrecy: the sender keeps a
        digest, not the sealed body; gateway/outbox_body.py). True if it changed now; False if
        it already held exactly ``body``. ``audit`` is appended in the same transaction when
        it changed. MessageNotFoundError for an unknown id."""
        if not isinstance(body, bytes) or not body:
            raise StoreArgumentError("body must be non-empty bytes")
        _require_entry("audit", audit, optional=True)
        return await self._replace_outgoing_body(require_message_id("message_id", message_id), body, audit)

    # --- inbox ----------------------------------------------------------------------------

    async def add_incoming(
        self, msg: IncomingMessage, *, audit: AuditEntry | None = None, data_key: DataKey | None = None,
        case_key: DataKey | None = None,
    ) -> bool:
        """Store ``msg`` unless its id is already in the inbox. True if stored now, False if
        the id was already there (the first copy wins; it is never overwritten). Atomic:
        of any number of concurrent calls for one id, exactly one returns True.
        ``audit`` is appended in the same transaction, only when the row is new.

        ``data_key``: the message's own new key (kind ``message``, ``key_id`` the message
        id), stored in the same transaction (one write instead of :meth:`add_data_key` and
        then this). If a key with that id is stored already, or the id is already in the
        inbox, nothing is written and DataKeyExistsError is raised.

        ``case_key`` (with ``data_key`` only): the case's new case key, the message key's
        parent, stored first in the same transaction (a new case's first message: one write
        instead of three). If the case has a live case key already (another writer's), or
        that key id is taken, nothing is written and DataKeyExistsError is raised."""
        _require_instance("msg", msg, IncomingMessage)
        _require_entry("audit", audit, optional=True)
        if data_key is not None:
            _require_instance("data_key", data_key, DataKey)
            if (data_key.kind != "message" or data_key.key_id != msg.message_id or data_key.wrapped is None
                    or data_key.case_ref != msg.case_ref or not data_key.parent_key_id):
                raise StoreArgumentError("data_key must be the message's own new key: kind 'message', key_id the "
                                         "message id, the message's case, a parent case key and a wrapped key")
        if case_key is not None:
            _require_instance("case_key", case_key, DataKey)
            if (data_key is None or case_key.kind != "case" or case_key.key_id != data_key.parent_key_id
                    or case_key.case_ref != msg.case_ref or case_key.wrapped is None or case_key.parent_key_id):
                raise StoreArgumentError("case_key must be the new case key data_key is wrapped under: kind 'case', "
                                         "key_id data_key's parent, the message's case, a wrapped key, no parent")
        return await self._add_incoming(msg, audit, data_key, case_key)

    async def list_incoming(
        self, limit: int, offset: int = 0, status: IncomingStatus | None = None
    ) -> list[InboxRecord]:
        """Inbox rows oldest (``received_at``) first, ties in arrival order. New arrivals
        append at the end, so offset pages stay stable while messages come in."""
        _require_count("limit", limit)
        _require_count("offset", offset)
        if status is not None:
            require_status("status", status, INCOMING_STATUSES)
        return await self._list_incoming(limit, offset, status)

    async def replace_incoming_envelope(self, message_id: str, old: bytes, new: bytes) -> bool:
        """Replace a stored inbox blob ``old`` by ``new`` (the same message re-stored in a
        newer at-rest format, gateway/at_rest.py). False if the row no longer holds ``old``."""
        for name, value in (("old", old), ("new", new)):
            if not isinstance(value, bytes) or not value:
                raise StoreArgumentError(f"{name} must be non-empty bytes")
        return await self._replace_incoming_envelope(require_message_id("message_id", message_id), old, new)

    async def get_incoming(self, message_id: str) -> InboxRecord | None:
        """The inbox row of ``message_id``, or None."""
        _require_text("message_id", message_id)
        return await self._get_incoming(message_id)

    async def set_incoming_status(self, message_id: str, status: IncomingStatus, at: datetime) -> bool:
        """Move an inbox row forward (``received`` -> ``read`` -> ``responded``)."""
        return await self._set_incoming_status(
            require_message_id("message_id", message_id),
            require_status("status", status, INCOMING_STATUSES),
            require_aware("at", at),
        )

    async def list_incoming_for_case(self, case_ref: str) -> list[InboxRecord]:
        """Every inbox row of the case, oldest first."""
        _require_text("case_ref", case_ref)
        return await self._list_incoming_for_case(case_ref)

    # --- replay guard ---------------------------------------------------------------------

    async def remember_message_id(self, message_id: str, expires_at: datetime) -> bool:
        """Record an envelope id until ``expires_at``. False if it was already recorded
        (check and insert are one atomic step)."""
        return await self._remember_message_id(
            require_message_id("message_id", message_id), require_aware("expires_at", expires_at)
        )

    async def prune_seen(self, now: datetime) -> int:
        """Forget ids whose ``expires_at`` is before ``now``; return how many."""
        return await self._prune_seen(require_aware("now", now))

    # --- cases ----------------------------------------------------------------------------

    async def upsert_case(self, case: Case) -> None:
        """Insert or replace the state of ``case.case_ref``."""
        _require_instance("case", case, Case)
        await self._upsert_case(case)

    async def get_case(self, case_ref: str) -> Case | None:
        """The state of ``case_ref``, or None."""
        _require_text("case_ref", case_ref)
        return await self._get_case(case_ref)

    # --- audit (append-only: there is deliberately no update or delete) --------------------

    async def append_audit(self, entry: AuditEntry) -> int:
        """Append ``entry``; return its seq. Seqs are 1, 2, 3, ... with no gaps and never
        reused, and an entry is visible only once every lower seq is: a Merkle log can use
        ``seq - 1`` as the leaf index and never sees an entry appear behind its tree."""
        _require_entry("entry", entry)
        return await self._append_audit(entry)

    async def read_audit(self, from_seq: int, limit: int) -> list[AuditRecord]:
        """Entries with ``seq >= from_seq`` in seq order, at most ``limit``."""
        return await self._read_audit(_require_count("from_seq", from_seq), _require_count("limit", limit))

    async def query_audit(self, query: AuditQuery, limit: int) -> list[AuditRecord]:
        """Entries matching ``query`` with ``seq > query.after_seq``, in seq order, at most ``limit``."""
        _require_instance("query", query, AuditQuery)
        return await self._query_audit(query, _require_count("limit", limit))

    @abstractmethod
    async def audit_size(self) -> int:
        """The highest seq appended (0 for an empty log): the Merkle tree size."""

    async def audit_hashes(self, from_seq: int, limit: int) -> list[bytes]:
        """``entry_hash`` of entries ``seq >= from_seq`` in seq order, at most ``limit``
        (cheaper than :meth:`read_audit` when building trees and proofs)."""
        return await self._audit_hashes(_require_count("from_seq", from_seq), _require_count("limit", limit))

    async def audit_nodes(self, ids: Sequence[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
        """Stored hashes of perfect Merkle subtrees, by (level, index): the 2**level leaves
        from leaf index ``index * 2**level`` (level 0 is an entry's ``entry_hash``, seq
        ``index + 1``). A subtree is stored, in the transaction of the append that completes
        it, once all its leaves are appended; ids not stored are missing from the answer.
        Proofs and roots are assembled from these (gateway/audit/merkle.py, docs/audit.md)."""
        if isinstance(ids, (str, bytes)) or not isinstance(ids, Sequence):
            raise StoreArgumentError("ids must be a sequence of (level, index) pairs")
        checked: list[tuple[int, int]] = []
        for node_id in ids:
            if not (isinstance(node_id, tuple) and len(node_id) == 2):
                raise StoreArgumentError("ids must be a sequence of (level, index) pairs")
            level, index = node_id
            _require_count("level", level)
            _require_count("index", index)
            if level > 62 or index >= 1 << (63 - level):  # leaf positions stay within a signed 64-bit seq
                raise StoreArgumentError("a subtree id must lie within 2**63 leaves")
            checked.append((level, index))
        if not checked:
            return {}
        return await self._audit_nodes(sorted(set(checked)))

    # --- data keys (payload encryption at rest, crypto-shredding) -------------------------

    async def add_data_key(self, key: DataKey) -> DataKey:
        """Store a new key and return the key now in force. A ``case`` key is added only if
        the case has no live (unshredded) case key; otherwise the live one is returned, so
        concurrent first messages of a case agree on one key. A ``message`` key is
        idempotent on ``key_id``: the stored one is returned, shredded (``wrapped`` None) if
        it was shredded. StoreError if a new case key reuses the id of a shredded one."""
        _require_instance("key", key, DataKey)
        if key.wrapped is None:
            raise StoreArgumentError("a new data key must carry its wrapped key")
        return await self._add_data_key(key)

    async def get_data_key(self, key_id: str) -> DataKey | None:
        """The key with this id, shredded or not; None if it never existed."""
        _require_text("key_id", key_id)
        return await self._get_data_key(key_id)

    async def live_case_key(self, case_ref: str) -> DataKey | None:
        """The case's live case key, or None if it has none (never had, or shredded)."""
        _require_text("case_ref", case_ref)
        return await self._live_case_key(case_ref)

    async def shred_data_keys(
        self, key_ids: Sequence[str], reason: str, at: datetime, *, audit: Sequence[AuditEntry] = ()
    ) -> list[str]:
        """Destroy the wrapped keys of ``key_ids`` that are still live; return those ids
        (in the order given). ``audit`` entries are appended in the same transaction when
        at least one key was destroyed now. Unknown or already shredded ids are skipped."""
        return await self._shred_data_keys(
            _require_key_ids(key_ids),
            require_error_code("reason", reason),
            require_aware("at", at),
            _require_audit_entries(audit),
        )

    async def case_key_ids(self, case_ref: str) -> list[str]:
        """Ids of every key of the case, live or shredded, case keys first."""
        _require_text("case_ref", case_ref)
        return await self._case_key_ids(case_ref)

    async def case_keys_wrapped_by(self, prefix: bytes, limit: int) -> list[DataKey]:
        """Live case keys whose wrapped bytes start with ``prefix`` (the id of the gateway key
        that wraps them, gateway/at_rest.py), at most ``limit``, in key id order."""
        if not isinstance(prefix, bytes) or not prefix:
            raise StoreArgumentError("prefix must be non-empty bytes")
        return await self._case_keys_wrapped_by(prefix, _require_count("limit", limit))

    async def rewrap_data_key(self, key_id: str, old: bytes, new: bytes) -> bool:
        """Replace a live key's wrapped bytes ``old`` by ``new`` (the same key wrapped by
        another gateway key). False if the key is shredded or no longer holds ``old``."""
        _require_text("key_id", key_id)
        for name, value in (("old", old), ("new", new)):
            if not isinstance(value, bytes) or not value:
                raise StoreArgumentError(f"{name} must be non-empty bytes")
        return await self._rewrap_data_key(key_id, old, new)

    async def retention_due(self, message_type: str, received_before: datetime, limit: int) -> list[InboxRecord]:
        """Inbox rows of ``message_type`` received before ``received_before`` whose message
        key (key id = message id) is still live, oldest first."""
        _require_text("message_type", message_type)
        return await self._retention_due(
            message_type, require_aware("received_before", received_before), _require_count("limit", limit)
        )

    # --- consent withdrawals --------------------------------------------------------------

    async def add_withdrawal(self, withdrawal: Withdrawal, *, audit: AuditEntry | None = None) -> bool:
        """Record a withdrawal; idempotent on (``message_id``, ``direction``). True if new.
        ``audit`` is appended in the same transaction, only when the row is new."""
        _require_instance("withdrawal", withdrawal, Withdrawal)
        _require_entry("audit", audit, optional=True)
        return await self._add_withdrawal(withdrawal, audit)

    async def withdrawals_for_case(self, case_ref: str) -> list[Withdrawal]:
        """Withdrawals recorded for the case, in ``withdrawn_at`` order."""
        _require_text("case_ref", case_ref)
        return await self._withdrawals_for_case(case_ref)

    # --- API idempotency keys -------------------------------------------------------------

    async def claim_idempotency_key(self, claim: IdempotencyRecord) -> IdempotencyRecord:
        """Record ``claim`` (without an answer) unless its ``key_hash`` is stored and not yet
        expired at ``claim.created_at``; return the record now stored: the caller's own if it
        was new (or replaced an expired one), else the earlier one, whatever its request
        hash. Atomic: concurrent claims of one key (any process) all get the same record."""
        _require_instance("claim", claim, IdempotencyRecord)
        if claim.completed:
            raise StoreArgumentError("claim must be an IdempotencyRecord without an answer")
        return await self._claim_idempotency_key(claim)

    async def complete_idempotency_key(self, record: IdempotencyRecord) -> IdempotencyRecord:
        """Record the answer of ``record`` (which has one) and return the stored record. The
        first answer wins: if the key already has an answer, or is held by another request
        hash, the stored record is returned unchanged. Inserts ``record`` if the claim is gone."""
        _require_instance("record", record, IdempotencyRecord)
        if not record.completed:
            raise StoreArgumentError("record must be an IdempotencyRecord with an answer")
        return await self._complete_idempotency_key(record)

    async def release_idempotency_key(self, key_hash: str, request_hash: str) -> bool:
        """Forget a claim that has no answer (its request failed without creating anything),
        so the key can be used again. True if a claim was removed."""
        return await self._release_idempotency_key(
            _require_sha256("key_hash", key_hash), _require_sha256("request_hash", request_hash)
        )

    async def prune_idempotency_keys(self, now: datetime) -> int:
        """Forget keys whose ``expires_at`` is before ``now``; return how many."""
        return await self._prune_idempotency_keys(require_aware("now", now))

    # --- workspace sessions ---------------------------------------------------------------

    async def add_web_session(self, session: WebSession) -> None:
        """Record a new session (sign-in). Its ``id_hash`` must be new."""
        _require_instance("session", session, WebSession)
        await self._add_web_session(session)

    async def get_web_session(self, id_hash: str) -> WebSession | None:
        """The session with this id hash, or None (signed out, pruned, never existed).
        Expiry is the caller's rule: a returned session may be past its end."""
        return await self._get_web_session(_require_sha256("id_hash", id_hash))

    async def touch_web_session(self, id_hash: str, at: datetime) -> bool:
        """Move ``last_seen_at`` forward to ``at`` (never back); True if the session exists."""
        return await self._touch_web_session(_require_sha256("id_hash", id_hash), require_aware("at", at))

    async def delete_web_session(self, id_hash: str) -> bool:
        """Forget a session (sign-out, expiry); True if it existed."""
        return await self._delete_web_session(_require_sha256("id_hash", id_hash))

    async def prune_web_sessions(self, idle_before: datetime, now: datetime) -> int:
        """Forget sessions last seen before ``idle_before`` or whose ``expires_at`` is before
        ``now``; return how many."""
        return await self._prune_web_sessions(require_aware("idle_before", idle_before), require_aware("now", now))

    # --- audit checkpoints (ours and partners') -------------------------------------------

    async def add_checkpoint(self, checkpoint: CheckpointRecord) -> bool:
        """Record a checkpoint; idempotent on (``origin``, ``tree_size``, ``root_hash``).
        True if new. Two different roots for one origin and size are both kept: that is
        the evidence of a forked log, and it must not be lost."""
        _require_instance("checkpoint", checkpoint, CheckpointRecord)
        return await self._add_checkpoint(checkpoint)

    async def latest_checkpoint(self, origin: str) -> CheckpointRecord | None:
        """The checkpoint of ``origin`` with the largest tree size (latest signed on ties)."""
        _require_text("origin", origin)
        return await self._latest_checkpoint(origin)

    async def list_checkpoints(
        self, origin: str, *, min_size: int = 0, limit: int = 1000, newest_first: bool = False
    ) -> list[CheckpointRecord]:
        """Checkpoints of ``origin`` with ``tree_size >= min_size``, by tree size then signing
        time (largest first with ``newest_first``)."""
        _require_text("origin", origin)
        _require_instance("newest_first", newest_first, bool)
        return await self._list_checkpoints(
            origin, _require_count("min_size", min_size), _require_count("limit", limit), newest_first
        )

    # --- the agency directory (rollback protection) ----------------------------------------

    async def accept_directory(self, record: DirectoryRecord, *, audit: AuditEntry | None = None) -> bool:
        """Record a directory if its serial is greater than every serial recorded so far (with
        ``audit`` in the same transaction); False, and nothing written, if it is not."""
        _require_instance("record", record, DirectoryRecord)
        _require_entry("audit", audit, optional=True)
        return await self._accept_directory(record, audit)

    async def current_directory(self) -> DirectoryRecord | None:
        """The accepted directory with the highest serial, or None before the first."""
        return await self._current_directory()

    # --- lifecycle ------------------------------------------------------------------------

    @abstractmethod
    async def ping(self) -> bool:
        """True if the database answers a trivial query now; never raises (for /readyz)."""

    @abstractmethod
    async def close(self) -> None:
        """Finish queued work and close. Later calls raise StoreUnavailableError."""

    # --- what a backend implements (arguments already checked) ----------------------------

    @abstractmethod
    async def _add_outgoing(self, msg: OutboxEntry, audit: tuple[AuditEntry, ...], claim: bool) -> bool: ...

    @abstractmethod
    async def _accept_directory(self, record: DirectoryRecord, audit: AuditEntry | None) -> bool: ...

    @abstractmethod
    async def _current_directory(self) -> DirectoryRecord | None: ...

    @abstractmethod
    async def _replace_outgoing_body(self, message_id: str, body: bytes, audit: AuditEntry | None) -> bool: ...

    @abstractmethod
    async def _case_keys_wrapped_by(self, prefix: bytes, limit: int) -> list[DataKey]: ...

    @abstractmethod
    async def _rewrap_data_key(self, key_id: str, old: bytes, new: bytes) -> bool: ...

    @abstractmethod
    async def _replace_incoming_envelope(self, message_id: str, old: bytes, new: bytes) -> bool: ...

    @abstractmethod
    async def _due_outgoing(self, now: datetime, limit: int) -> list[OutboxRecord]: ...

    @abstractmethod
    async def _mark_sent(self, message_id: str, at: datetime, audit: AuditEntry | None) -> bool: ...

    @abstractmethod
    async def _mark_retry(
        self, message_id: str, next_attempt_at: datetime, error_code: str, at: datetime | None
    ) -> bool: ...

    @abstractmethod
    async def _mark_failed(self, message_id: str, error_code: str, at: datetime | None) -> bool: ...

    @abstractmethod
    async def _set_status(self, message_id: str, status: str, at: datetime, audit: AuditEntry | None) -> bool: ...

    @abstractmethod
    async def _get_outgoing(self, message_id: str) -> OutboxRecord | None: ...

    @abstractmethod
    async def _status_trail(self, message_id: str, direction: str) -> list[StatusChange]: ...

    @abstractmethod
    async def _list_outgoing(self, limit: int, offset: int, message_type: str | None) -> list[OutboxRecord]: ...

    @abstractmethod
    async def _list_outgoing_for_case(self, case_ref: str) -> list[OutboxRecord]: ...

    @abstractmethod
    async def _add_incoming(self, msg: IncomingMessage, audit: AuditEntry | None, data_key: DataKey | None,
                            case_key: DataKey | None) -> bool: ...

    @abstractmethod
    async def _list_incoming(self, limit: int, offset: int, status: str | None) -> list[InboxRecord]: ...

    @abstractmethod
    async def _get_incoming(self, message_id: str) -> InboxRecord | None: ...

    @abstractmethod
    async def _set_incoming_status(self, message_id: str, status: str, at: datetime) -> bool: ...

    @abstractmethod
    async def _list_incoming_for_case(self, case_ref: str) -> list[InboxRecord]: ...

    @abstractmethod
    async def _remember_message_id(self, message_id: str, expires_at: datetime) -> bool: ...

    @abstractmethod
    async def _prune_seen(self, now: datetime) -> int: ...

    @abstractmethod
    async def _upsert_case(self, case: Case) -> None: ...

    @abstractmethod
    async def _get_case(self, case_ref: str) -> Case | None: ...

    @abstractmethod
    async def _append_audit(self, entry: AuditEntry) -> int: ...

    @abstractmethod
    async def _read_audit(self, from_seq: int, limit: int) -> list[AuditRecord]: ...

    @abstractmethod
    async def _query_audit(self, query: AuditQuery, limit: int) -> list[AuditRecord]: ...

    @abstractmethod
    async def _audit_hashes(self, from_seq: int, limit: int) -> list[bytes]: ...

    @abstractmethod
    async def _audit_nodes(self, ids: list[tuple[int, int]]) -> dict[tuple[int, int], bytes]: ...

    @abstractmethod
    async def _add_data_key(self, key: DataKey) -> DataKey: ...

    @abstractmethod
    async def _get_data_key(self, key_id: str) -> DataKey | None: ...

    @abstractmethod
    async def _live_case_key(self, case_ref: str) -> DataKey | None: ...

    @abstractmethod
    async def _shred_data_keys(
        self, key_ids: list[str], reason: str, at: datetime, audit: tuple[AuditEntry, ...]
    ) -> list[str]: ...

    @abstractmethod
    async def _case_key_ids(self, case_ref: str) -> list[str]: ...

    @abstractmethod
    async def _retention_due(self, message_type: str, received_before: datetime, limit: int) -> list[InboxRecord]: ...

    @abstractmethod
    async def _add_withdrawal(self, withdrawal: Withdrawal, audit: AuditEntry | None) -> bool: ...

    @abstractmethod
    async def _withdrawals_for_case(self, case_ref: str) -> list[Withdrawal]: ...

    @abstractmethod
    async def _claim_idempotency_key(self, claim: IdempotencyRecord) -> IdempotencyRecord: ...

    @abstractmethod
    async def _complete_idempotency_key(self, record: IdempotencyRecord) -> IdempotencyRecord: ...

    @abstractmethod
    async def _release_idempotency_key(self, key_hash: str, request_hash: str) -> bool: ...

    @abstractmethod
    async def _prune_idempotency_keys(self, now: datetime) -> int: ...

    @abstractmethod
    async def _add_web_session(self, session: WebSession) -> None: ...

    @abstractmethod
    async def _get_web_session(self, id_hash: str) -> WebSession | None: ...

    @abstractmethod
    async def _touch_web_session(self, id_hash: str, at: datetime) -> bool: ...

    @abstractmethod
    async def _delete_web_session(self, id_hash: str) -> bool: ...

    @abstractmethod
    async def _prune_web_sessions(self, idle_before: datetime, now: datetime) -> int: ...

    @abstractmethod
    async def _add_checkpoint(self, checkpoint: CheckpointRecord) -> bool: ...

    @abstractmethod
    async def _latest_checkpoint(self, origin: str) -> CheckpointRecord | None: ...

    @abstractmethod
    async def _list_checkpoints(
        self, origin: str, min_size: int, limit: int, newest_first: bool
    ) -> list[CheckpointRecord]: ...
