"""The shared store: PostgreSQL on an asyncpg pool, for several gateway processes of one
agency behind a load balancer.

Every public method is one transaction on one pooled connection (a single statement runs
in autocommit, which is one transaction too). A method returns only after COMMIT, and with
``synchronous_commit`` on (checked at open) COMMIT returns only after the WAL is flushed.

Concurrency across processes (see docs/store.md, "PostgreSQL"):

* audit seqs come from a one-row counter (``audit_head``) incremented in the appending
  transaction: its row lock serializes appenders until COMMIT, so seqs are 1..n without
  gaps and seq n+1 can only be taken after seq n is visible;
* ``add_incoming`` / ``remember_message_id`` are ``INSERT ... ON CONFLICT DO NOTHING``;
* status moves lock the message row (``SELECT ... FOR UPDATE``) and decide with the shared
  rank functions;
* ``due_outgoing`` leases the rows it returns to this store instance for
  ``outbox_lease_s`` seconds (``FOR UPDATE SKIP LOCKED``), so two processes do not
  publish the same message at the same time.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any, Awaitable, Callable, Mapping, Sequence, TypeAlias, TypeVar
from urllib.parse import parse_qsl, urlencode

import asyncpg

from gateway.store import rows
from gateway.store.base import (
    INCOMING_STATUSES,
    OUTGOING_STATUSES,
    AuditEntry,
    AuditQuery,
    AuditRecord,
    Case,
    CheckpointRecord,
    DataKey,
    DirectoryRecord,
    IdempotencyRecord,
    IncomingMessage,
    InboxRecord,
    MessageConflictError,
    DataKeyExistsError,
    MessageNotFoundError,
    OutboxRecord,
    OutboxEntry,
    SchemaVersionError,
    StatusChange,
    Store,
    StoreError,
    StoreUnavailableError,
    UnsupportedStoreURLError,
    WebSession,
    Withdrawal,
    incoming_moves_forward,
    outgoing_moves_forward,
    require_aware,
)

T = TypeVar("T")
#: What the store's work functions get: a pooled connection (every one comes from
#: ``pool.acquire()``), whose rows are plain asyncpg Records.
Conn: TypeAlias = "asyncpg.pool.PoolConnectionProxy[asyncpg.Record]"

# --- schema ------------------------------------------------------------------------------
# Versioned in the one-row table schema_version. All pending migrations are applied in ONE
# transaction (PostgreSQL DDL is transactional) under a transaction-level advisory lock
# keyed by the schema name, after re-reading the version under that lock: two processes
# starting together migrate once. Append new versions; never edit a released one.

_OUT = ", ".join(f"'{s}'" for s in sorted(OUTGOING_STATUSES))
_IN = ", ".join(f"'{s}'" for s in sorted(INCOMING_STATUSES))

MIGRATIONS: tuple[tuple[int, tuple[str, ...]], ...] = (
    (
        1,
        (
            f"""
            CREATE TABLE outbox (
                message_id      text PRIMARY KEY,
                case_ref        text NOT NULL,
                recipient       text NOT NULL,
                message_type    text NOT NULL,
                envelope        bytea NOT NULL,
                status          text NOT NULL CHECK (status IN ({_OUT})),
                attempts        integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
                next_attempt_at timestamptz NOT NULL,
                last_error      text,
                created_at      timestamptz NOT NULL,
                updated_at      timestamptz NOT NULL,
                arrival         bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
                -- publish lease (due_outgoing): which store instance holds it, until when
                -- (database clock). Not part of OutboxRecord.
                lease_owner     text,
                lease_until     timestamptz
            )""",
            "CREATE INDEX outbox_due ON outbox (created_at, arrival) WHERE status = 'queued'",
            "CREATE INDEX outbox_by_case ON outbox (case_ref, created_at, arrival)",
            f"""
            CREATE TABLE inbox (
                message_id   text PRIMARY KEY,
                sender       text NOT NULL,
                message_type text NOT NULL,
                case_ref     text NOT NULL,
                envelope     bytea NOT NULL,
                received_at  timestamptz NOT NULL,
                status       text NOT NULL CHECK (status IN ({_IN})),
                updated_at   timestamptz NOT NULL,
                arrival      bigint GENERATED ALWAYS AS IDENTITY UNIQUE
            )""",
            "CREATE INDEX inbox_by_arrival ON inbox (received_at, arrival)",
            "CREATE INDEX inbox_by_status ON inbox (status, received_at, arrival)",
            "CREATE INDEX inbox_by_case ON inbox (case_ref, received_at, arrival)",
            "CREATE INDEX inbox_by_type ON inbox (message_type, received_at, arrival)",
            """
            CREATE TABLE message_events (
                id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                outbox_id  text REFERENCES outbox (message_id) ON DELETE CASCADE,
                inbox_id   text REFERENCES inbox (message_id) ON DELETE CASCADE,
                status     text NOT NULL,
                at         timestamptz NOT NULL,
                error_code text,
                CHECK ((outbox_id IS NULL) <> (inbox_id IS NULL))
            )""",
            "CREATE INDEX message_events_outbox ON message_events (outbox_id, id) WHERE outbox_id IS NOT NULL",
            "CREATE INDEX message_events_inbox ON message_events (inbox_id, id) WHERE inbox_id IS NOT NULL",
            """
            CREATE TABLE seen_message_ids (
                message_id text PRIMARY KEY,
                expires_at timestamptz NOT NULL
            )""",
            "CREATE INDEX seen_by_expiry ON seen_message_ids (expires_at)",
            """
            CREATE TABLE cases (
                case_ref           text PRIMARY KEY,
                counterpart_agency text NOT NULL,
                state              text NOT NULL,
                updated_at         timestamptz NOT NULL
            )""",
            # The audit log. seq is assigned from audit_head (below), not from a sequence:
            # sequences leave gaps on rollback and commit out of order.
            """
            CREATE TABLE audit_entries (
                seq         bigint PRIMARY KEY CHECK (seq >= 1),
                at          timestamptz NOT NULL,
                event_type  text NOT NULL,
                actor       text NOT NULL,
                case_ref    text,
                message_id  text,
                agency      text,
                detail_json text NOT NULL,
                entry_hash  bytea
            )""",
            "CREATE INDEX audit_by_case ON audit_entries (case_ref, seq) WHERE case_ref IS NOT NULL",
            "CREATE INDEX audit_by_agency ON audit_entries (agency, seq) WHERE agency IS NOT NULL",
            "CREATE INDEX audit_by_event ON audit_entries (event_type, seq)",
            "CREATE INDEX audit_by_time ON audit_entries (at)",
            # The one-row counter: the last seq handed out. Incremented in the appending
            # transaction; its row lock is what serializes appends across processes.
            """
            CREATE TABLE audit_head (
                singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
                last_seq  bigint NOT NULL CHECK (last_seq >= 0)
            )""",
            "INSERT INTO audit_head (singleton, last_seq) VALUES (true, 0)",
            # Append-only in the database too, not only by the absence of a method.
            """
            CREATE FUNCTION gateway_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                RAISE EXCEPTION 'audit_entries is append-only' USING ERRCODE = 'GW001';
            END $$""",
            """
            CREATE TRIGGER audit_entries_no_update BEFORE UPDATE OR DELETE ON audit_entries
            FOR EACH ROW EXECUTE FUNCTION gateway_audit_append_only()""",
            """
            CREATE TRIGGER audit_entries_no_truncate BEFORE TRUNCATE ON audit_entries
            FOR EACH STATEMENT EXECUTE FUNCTION gateway_audit_append_only()""",
            # The counter only ever counts up by one and is never removed.
            """
            CREATE FUNCTION gateway_audit_head_forward() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF TG_OP = 'UPDATE' AND NEW.last_seq = OLD.last_seq + 1 AND NEW.singleton THEN
                    RETURN NEW;
                END IF;
                RAISE EXCEPTION 'audit_entries is append-only' USING ERRCODE = 'GW001';
            END $$""",
            """
            CREATE TRIGGER audit_head_forward BEFORE UPDATE OR DELETE ON audit_head
            FOR EACH ROW EXECUTE FUNCTION gateway_audit_head_forward()""",
            """
            CREATE TRIGGER audit_head_no_truncate BEFORE TRUNCATE ON audit_head
            FOR EACH STATEMENT EXECUTE FUNCTION gateway_audit_append_only()""",
            "REVOKE UPDATE, DELETE, TRUNCATE ON audit_entries FROM PUBLIC",
            "REVOKE DELETE, TRUNCATE ON audit_head FROM PUBLIC",
            # Data keys: a case key wrapped by the gateway key, message keys wrapped by it.
            # Shredding nulls ``wrapped`` for good. At most one live case key per case.
            """
            CREATE TABLE data_keys (
                key_id        text PRIMARY KEY,
                case_ref      text NOT NULL,
                kind          text NOT NULL CHECK (kind IN ('case', 'message')),
                wrapped       bytea,
                created_at    timestamptz NOT NULL,
                parent_key_id text REFERENCES data_keys (key_id),
                shredded_at   timestamptz,
                shred_reason  text,
                arrival       bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
                CHECK ((kind = 'message') = (parent_key_id IS NOT NULL)),
                CHECK ((wrapped IS NULL) = (shredded_at IS NOT NULL))
            )""",
            "CREATE UNIQUE INDEX data_keys_one_live_case_key ON data_keys (case_ref) WHERE kind = 'case' AND wrapped IS NOT NULL",
            "CREATE INDEX data_keys_by_case ON data_keys (case_ref, arrival)",
            """
            CREATE FUNCTION gateway_data_key_never_unshred() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                RAISE EXCEPTION 'a shredded data key cannot be restored' USING ERRCODE = 'GW002';
            END $$""",
            """
            CREATE TRIGGER data_keys_never_unshred BEFORE UPDATE OF wrapped ON data_keys
            FOR EACH ROW WHEN (OLD.wrapped IS NULL) EXECUTE FUNCTION gateway_data_key_never_unshred()""",
            """
            CREATE TABLE withdrawals (
                message_id          text NOT NULL,
                direction           text NOT NULL CHECK (direction IN ('outgoing', 'incoming')),
                case_ref            text NOT NULL,
                counterpart         text NOT NULL,
                withdrawn_at        timestamptz NOT NULL,
                scope               text NOT NULL CHECK (scope IN ('all_purposes', 'some_purposes')),
                purposes            text[] NOT NULL,
                request_message_ids text[] NOT NULL,
                recorded_at         timestamptz NOT NULL,
                arrival             bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
                PRIMARY KEY (message_id, direction)
            )""",
            "CREATE INDEX withdrawals_by_case ON withdrawals (case_ref, withdrawn_at, arrival)",
            """
            CREATE TABLE checkpoints (
                origin      text NOT NULL,
                tree_size   bigint NOT NULL CHECK (tree_size >= 0),
                root_hash   bytea NOT NULL,
                signed_at   timestamptz NOT NULL,
                note        bytea NOT NULL,
                recorded_at timestamptz NOT NULL,
                arrival     bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
                PRIMARY KEY (origin, tree_size, root_hash)
            )""",
            "CREATE INDEX checkpoints_by_size ON checkpoints (origin, tree_size, signed_at)",
            # Checkpoints are evidence (a fork shows as two roots for one size): append-only.
            """
            CREATE FUNCTION gateway_checkpoints_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                RAISE EXCEPTION 'checkpoints are append-only' USING ERRCODE = 'GW001';
            END $$""",
            """
            CREATE TRIGGER checkpoints_no_change BEFORE UPDATE OR DELETE ON checkpoints
            FOR EACH ROW EXECUTE FUNCTION gateway_checkpoints_append_only()""",
            """
            CREATE TRIGGER checkpoints_no_truncate BEFORE TRUNCATE ON checkpoints
            FOR EACH STATEMENT EXECUTE FUNCTION gateway_checkpoints_append_only()""",
        ),
    ),
)
MIGRATIONS += (
    (
        2,
        (
            # API Idempotency-Key records (docs/api.md "Idempotency"): hashes, a route name,
            # times and the answer as sent; never the client's key, user or body.
            """
            CREATE TABLE idempotency_keys (
                key_hash      text PRIMARY KEY,
                route         text NOT NULL,
                request_hash  text NOT NULL,
                created_at    timestamptz NOT NULL,
                expires_at    timestamptz NOT NULL,
                status_code   integer,
                response_json text,
                completed_at  timestamptz,
                CHECK ((status_code IS NULL) = (response_json IS NULL))
            )""",
            "CREATE INDEX idempotency_by_expiry ON idempotency_keys (expires_at)",
        ),
    ),
)
MIGRATIONS += (
    (
        3,
        (
            # Every directory this gateway accepted (docs/keys.md "Rollback protection"): the
            # highest serial is the one in force. Append-only, like the audit log.
            """
            CREATE TABLE directories (
                serial      bigint PRIMARY KEY CHECK (serial >= 1),
                digest      text NOT NULL,
                signed      bytea NOT NULL,
                issued      timestamptz NOT NULL,
                accepted_at timestamptz NOT NULL,
                source      text NOT NULL CHECK (source IN ('file', 'broker'))
            )""",
            """
            CREATE FUNCTION gateway_directories_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                RAISE EXCEPTION 'directories are append-only' USING ERRCODE = 'GW001';
            END $$""",
            """
            CREATE TRIGGER directories_no_change BEFORE UPDATE OR DELETE ON directories
            FOR EACH ROW EXECUTE FUNCTION gateway_directories_append_only()""",
            """
            CREATE TRIGGER directories_no_truncate BEFORE TRUNCATE ON directories
            FOR EACH STATEMENT EXECUTE FUNCTION gateway_directories_append_only()""",
        ),
    ),
)
MIGRATIONS += (
    (
        4,
        (
            # Workspace sessions (docs/workspace.md): the SHA-256 of the session id (never the
            # id), who signed in and the session's times. Deleted at sign-out and expiry.
            """
            CREATE TABLE web_sessions (
                id_hash      text PRIMARY KEY,
                user_name    text NOT NULL,
                role         text NOT NULL,
                created_at   timestamptz NOT NULL,
                last_seen_at timestamptz NOT NULL,
                expires_at   timestamptz NOT NULL,
                credential   text NOT NULL DEFAULT ''
            )""",
            "CREATE INDEX web_sessions_by_last_seen ON web_sessions (last_seen_at)",
        ),
    ),
)
MIGRATIONS += (
    (
        5,
        (
            # The hash of every perfect Merkle subtree of the audit log above the leaves
            # (level >= 1; level 0 is audit_entries.entry_hash): proofs read O(log n) of
            # these instead of every leaf (gateway/audit/merkle.py, docs/audit.md).
            """
            CREATE TABLE audit_nodes (
                level smallint NOT NULL CHECK (level BETWEEN 1 AND 62),
                idx   bigint NOT NULL CHECK (idx >= 0),
                hash  bytea NOT NULL CHECK (length(hash) = 32),
                PRIMARY KEY (level, idx)
            )""",
            """
            CREATE TRIGGER audit_nodes_no_change BEFORE UPDATE OR DELETE ON audit_nodes
            FOR EACH ROW EXECUTE FUNCTION gateway_audit_append_only()""",
            """
            CREATE TRIGGER audit_nodes_no_truncate BEFORE TRUNCATE ON audit_nodes
            FOR EACH STATEMENT EXECUTE FUNCTION gateway_audit_append_only()""",
            "REVOKE UPDATE, DELETE, TRUNCATE ON audit_nodes FROM PUBLIC",
            # No append (of an older release still running) may slip between the backfill
            # and the trigger: hold off inserts until this migration commits.
            "LOCK TABLE audit_entries IN SHARE ROW EXCLUSIVE MODE",
            # Backfill, level by level: each level's pairs make the next one.
            """
            DO $$
            DECLARE
                lvl integer := 1;
                added bigint;
            BEGIN
                INSERT INTO audit_nodes (level, idx, hash)
                    SELECT 1, (l.seq - 1) / 2, sha256('\x01'::bytea || l.entry_hash || r.entry_hash)
                    FROM audit_entries l JOIN audit_entries r ON r.seq = l.seq + 1
                    WHERE l.seq % 2 = 1;
                LOOP
                    INSERT INTO audit_nodes (level, idx, hash)
                        SELECT lvl + 1, l.idx / 2, sha256('\x01'::bytea || l.hash || r.hash)
                        FROM audit_nodes l JOIN audit_nodes r ON r.level = lvl AND r.idx = l.idx + 1
                        WHERE l.level = lvl AND l.idx % 2 = 0;
                    GET DIAGNOSTICS added = ROW_COUNT;
                    EXIT WHEN added = 0;
                    lvl := lvl + 1;
                END LOOP;
            END $$""",
            # From now on every append stores the subtrees it completes, in its own
            # transaction, whichever statement inserts the entry (_INSERT_AUDIT or the
            # add_incoming CTE). Appends are serialized by audit_head, and each statement
            # here reads a fresh snapshot (READ COMMITTED), so the left children written
            # by the previous append are visible. A missing one aborts the append (GW003)
            # rather than store a wrong hash. An even leaf index (odd seq) completes no
            # subtree: WHEN skips the call, which runs while audit_head is locked.
            """
            CREATE FUNCTION gateway_audit_nodes_add() RETURNS trigger LANGUAGE plpgsql AS $$
            DECLARE
                i bigint := NEW.seq - 1;
                h bytea := NEW.entry_hash;
                lvl integer := 0;
                sibling bytea;
            BEGIN
                IF h IS NULL THEN
                    RAISE EXCEPTION 'audit entry without entry_hash' USING ERRCODE = 'GW003';
                END IF;
                WHILE i % 2 = 1 LOOP
                    IF lvl = 0 THEN
                        SELECT entry_hash INTO sibling FROM audit_entries WHERE seq = i;
                    ELSE
                        SELECT hash INTO sibling FROM audit_nodes WHERE level = lvl AND idx = i - 1;
                    END IF;
                    IF sibling IS NULL THEN
                        RAISE EXCEPTION 'audit_nodes: a left subtree is missing' USING ERRCODE = 'GW003';
                    END IF;
                    h := sha256('\x01'::bytea || sibling || h);
                    lvl := lvl + 1;
                    i := i / 2;
                    INSERT INTO audit_nodes (level, idx, hash) VALUES (lvl, i, h);
                    sibling := NULL;
                END LOOP;
                RETURN NULL;
            END $$""",
            """
            CREATE TRIGGER audit_entries_add_nodes AFTER INSERT ON audit_entries
            FOR EACH ROW WHEN (NEW.seq % 2 = 0) EXECUTE FUNCTION gateway_audit_nodes_add()""",
        ),
    ),
)
SCHEMA_VERSION = MIGRATIONS[-1][0]

#: First key of the two-int advisory lock taken while migrating ('gw' + 1); the second
#: key is a hash of the schema name, so gateways in different schemas do not wait on each other.
MIGRATION_LOCK_CLASS = 0x67770001

# --- URL options -------------------------------------------------------------------------

DEFAULT_POOL_MIN = 1
DEFAULT_POOL_MAX = 10
DEFAULT_ACQUIRE_TIMEOUT_MS = 10_000
DEFAULT_CONNECT_TIMEOUT_MS = 10_000
DEFAULT_STATEMENT_TIMEOUT_MS = 30_000
DEFAULT_LOCK_TIMEOUT_MS = 5_000
DEFAULT_OUTBOX_LEASE_S = 30

_INT_OPTIONS = {
    "pool_min": DEFAULT_POOL_MIN,
    "pool_max": DEFAULT_POOL_MAX,
    "acquire_timeout_ms": DEFAULT_ACQUIRE_TIMEOUT_MS,
    "connect_timeout_ms": DEFAULT_CONNECT_TIMEOUT_MS,
    "statement_timeout_ms": DEFAULT_STATEMENT_TIMEOUT_MS,
    "lock_timeout_ms": DEFAULT_LOCK_TIMEOUT_MS,
    "outbox_lease_s": DEFAULT_OUTBOX_LEASE_S,
}
#: Passed on to asyncpg's DSN parser unchanged (TLS and connection selection).
_DSN_OPTIONS = {"sslmode", "sslrootcert", "sslcert", "sslkey", "sslcrl", "passfile", "target_session_attrs"}
#: Sent to the server as session settings.
_SESSION_OPTIONS = {"search_path", "application_name"}


def parse_postgres_url(url: str) -> tuple[str, dict[str, Any]]:
    """Split a store URL into the DSN for asyncpg and the store's own options.

    Raises UnsupportedStoreURLError naming option *keys* only: the URL may carry a password.
    """
    base, _, query = url.partition("?")
    scheme = base.split(":", 1)[0].lower()
    if scheme not in {"postgresql", "postgres"} or not base[len(scheme):].startswith("://"):
        raise UnsupportedStoreURLError("PostgreSQL store URL must be postgresql://user@host:port/database")
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError:
        raise UnsupportedStoreURLError("PostgreSQL store URL has a malformed query") from None
    options: dict[str, Any] = dict(_INT_OPTIONS)
    options.update(read_only=False, session={})
    dsn_query: list[tuple[str, str]] = []
    seen: set[str] = set()
    for key, value in pairs:
        if key in seen:
            raise UnsupportedStoreURLError(f"PostgreSQL store URL option {key} is given twice")
        seen.add(key)
        if key in _INT_OPTIONS:
            try:
                options[key] = int(value)
            except ValueError:
                raise UnsupportedStoreURLError(f"PostgreSQL store URL option {key} must be an integer") from None
            if options[key] < (0 if key in {"pool_min", "lock_timeout_ms", "statement_timeout_ms"} else 1):
                raise UnsupportedStoreURLError(f"PostgreSQL store URL option {key} is out of range")
        elif key == "mode":
            if value not in {"rw", "ro"}:
                raise UnsupportedStoreURLError("PostgreSQL store URL option mode must be 'rw' or 'ro'")
            options["read_only"] = value == "ro"
        elif key in _SESSION_OPTIONS:
            options["session"][key] = value
        elif key in _DSN_OPTIONS:
            dsn_query.append((key, value))
        else:
            raise UnsupportedStoreURLError(f"unknown PostgreSQL store URL option: {key!r}")
    if options["pool_min"] > options["pool_max"]:
        raise UnsupportedStoreURLError("PostgreSQL store URL option pool_min must not exceed pool_max")
    dsn = base + (f"?{urlencode(dsn_query)}" if dsn_query else "")
    return dsn, options


# --- errors ------------------------------------------------------------------------------

#: SQLSTATE classes meaning "cannot do it now", not "this request is wrong": connection
#: exceptions, insufficient resources (disk full, out of memory, too many connections),
#: operator intervention (shutdown, cannot connect now, statement_timeout's
#: query_canceled), system/I-O error.
_UNAVAILABLE_CLASSES = {"08", "53", "57", "58"}
_UNAVAILABLE_STATES = {
    "40001",  # serialization_failure
    "40P01",  # deadlock_detected
    "40003",  # statement_completion_unknown
    "25006",  # read_only_sql_transaction (mode=ro, a hot standby, default_transaction_read_only)
    "55P03",  # lock_not_available (lock_timeout)
    "25P03",  # idle_in_transaction_session_timeout
    "55000",  # object_not_in_prerequisite_state (e.g. recovery in progress)
}
#: SQLSTATEs raised by this schema's own triggers (fixed texts: safe to show).
_OWN_STATES = {
    "GW001": "the audit log, checkpoints and accepted directories are append-only",
    "GW002": "a shredded data key cannot be restored",
    "GW003": "the audit log's stored Merkle subtrees are incomplete",
}


def map_postgres_error(exc: BaseException, where: str) -> StoreError:
    """Translate an asyncpg/driver error into the store hierarchy (StoreUnavailableError -> 503).

    The message names the error class, SQLSTATE and schema objects only: server messages
    and details can quote row values (personal data), and the URL can hold a password.
    """
    if isinstance(exc, asyncpg.PostgresError):
        state = getattr(exc, "sqlstate", None) or "?????"
        name = type(exc).__name__
        if state in _OWN_STATES:
            return StoreError(f"postgresql store {where} refused: {_OWN_STATES[state]} (SQLSTATE {state})")
        objects = ", ".join(
            f"{label} {value}"
            for label, value in (
                ("table", getattr(exc, "table_name", None)),
                ("constraint", getattr(exc, "constraint_name", None)),
            )
            if value
        )
        text = f"{name} (SQLSTATE {state}{'; ' + objects if objects else ''})"
        if state[:2] in _UNAVAILABLE_CLASSES or state in _UNAVAILABLE_STATES:
            return StoreUnavailableError(f"postgresql store {where} unavailable: {text}")
        return StoreError(f"postgresql store {where} failed: {text}")
    if isinstance(exc, asyncpg.exceptions.DataError):  # a value asyncpg could not encode: a bug
        return StoreError(f"postgresql store {where} failed: {type(exc).__name__}")
    if isinstance(
        exc,
        (asyncpg.InterfaceError, asyncpg.exceptions.InternalClientError, OSError, asyncio.TimeoutError, TimeoutError),
    ):
        # Connection refused or lost, pool closed, acquire or connect timed out.
        return StoreUnavailableError(f"postgresql store {where} unavailable: {type(exc).__name__}")
    return StoreError(f"postgresql store {where} failed: {type(exc).__name__}")


_DRIVER_ERRORS = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.InternalClientError,
    OSError,
    asyncio.TimeoutError,
    TimeoutError,
)


def _connection_broken(exc: BaseException) -> bool:
    """True if the connection that raised ``exc`` must not be reused."""
    if isinstance(exc, asyncpg.PostgresError):
        state = getattr(exc, "sqlstate", None) or ""
        return state.startswith("08") or state in {"57P01", "57P02", "57P03"}
    return not isinstance(exc, asyncpg.exceptions.DataError)


# --- helpers -----------------------------------------------------------------------------


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _utc(moment: datetime) -> datetime:
    return moment.astimezone(timezone.utc)


def _outbox(row: asyncpg.Record) -> OutboxRecord:
    return rows.outbox_record(row, _utc)


def _inbox(row: asyncpg.Record) -> InboxRecord:
    return rows.inbox_record(row, _utc)


def _audit(row: asyncpg.Record) -> AuditRecord:
    return rows.audit_record(row, _utc)


def _data_key(row: asyncpg.Record) -> DataKey:
    return rows.data_key_record(row, _utc)


def _withdrawal(row: asyncpg.Record) -> Withdrawal:
    return rows.withdrawal_record(row, _utc, row["purposes"], row["request_message_ids"])


def _checkpoint(row: asyncpg.Record) -> CheckpointRecord:
    return rows.checkpoint_record(row, _utc)


def _idempotency(row: asyncpg.Record) -> IdempotencyRecord:
    return rows.idempotency_record(row, _utc)


_INSERT_IDEMPOTENCY = (
    "INSERT INTO idempotency_keys (key_hash, route, request_hash, created_at, expires_at, status_code,"
    " response_json, completed_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
)


#: How often complete_idempotency_key looks again when the key it conflicted with is
#: released in between (DO NOTHING leaves the conflicting row unlocked).
_IDEMPOTENCY_RACE_ATTEMPTS = 3


def _idempotency_args(record: IdempotencyRecord) -> tuple[Any, ...]:
    return (record.key_hash, record.route, record.request_hash, record.created_at, record.expires_at,
            record.status_code, record.response_json, record.completed_at)


# The counter row is locked by the UPDATE until COMMIT: the next appender (any process)
# waits here, then reads the committed value (READ COMMITTED re-reads the updated row), so
# seqs are 1..n without gaps and seq n+1 is handed out only after seq n is visible. A
# rolled-back transaction rolls its increment back too. Callers run this LAST in their
# transaction, so the lock is held for one round trip plus COMMIT.
_INSERT_AUDIT = """
    WITH head AS (UPDATE audit_head SET last_seq = last_seq + 1 RETURNING last_seq)
    INSERT INTO audit_entries (seq, at, event_type, actor, case_ref, message_id, agency, detail_json, entry_hash)
    SELECT last_seq, $1, $2, $3, $4, $5, $6, $7, $8 FROM head
    RETURNING seq
"""


_ADD_INCOMING_CTE = """
    WITH ins AS (
        INSERT INTO inbox (message_id, sender, message_type, case_ref, envelope, received_at, status, updated_at)
        VALUES ($1, $2, $3, $4, $5, $6, 'received', $6)
        ON CONFLICT (message_id) DO NOTHING
        RETURNING message_id
    ), trail AS (
        INSERT INTO message_events (inbox_id, status, at) SELECT message_id, 'received', $6 FROM ins
    )"""
_ADD_INCOMING = _ADD_INCOMING_CTE + " SELECT EXISTS (SELECT 1 FROM ins)"
# The counter is bumped only if the row is new (it depends on ``ins``, so it runs after the
# insert has decided), and stays locked until this statement's COMMIT, as in _INSERT_AUDIT.
_ADD_INCOMING_AUDITED = _ADD_INCOMING_CTE + """, head AS (
        UPDATE audit_head SET last_seq = last_seq + 1 WHERE EXISTS (SELECT 1 FROM ins) RETURNING last_seq
    ), entry AS (
        INSERT INTO audit_entries (seq, at, event_type, actor, case_ref, message_id, agency, detail_json, entry_hash)
        SELECT last_seq, $7, $8, $9, $10, $11, $12, $13, $14 FROM head
    )
    SELECT EXISTS (SELECT 1 FROM ins)"""


_AUDIT_NODES = """
    SELECT q.level, q.idx, e.entry_hash FROM unnest($1::int[], $2::bigint[]) AS q (level, idx)
        JOIN audit_entries e ON e.seq = q.idx + 1 WHERE q.level = 0
    UNION ALL
    SELECT n.level, n.idx, n.hash FROM unnest($1::int[], $2::bigint[]) AS q (level, idx)
        JOIN audit_nodes n ON n.level = q.level AND n.idx = q.idx WHERE q.level > 0
"""


async def _insert_data_key(conn: Conn, key: DataKey) -> Any:
    """Insert ``key`` unless its id (or, for a case key, a live key of its case) is taken:
    the new row, or None."""
    return await conn.fetchrow(
        "INSERT INTO data_keys (key_id, case_ref, kind, parent_key_id, wrapped, created_at)"
        " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING RETURNING *",
        key.key_id, key.case_ref, key.kind, key.parent_key_id, key.wrapped, key.created_at,
    )


async def _insert_audit(conn: Conn, entry: AuditEntry) -> int:
    """Append one entry inside the caller's transaction; return its seq."""
    return int(
        await conn.fetchval(
            _INSERT_AUDIT,
            entry.at, entry.event_type, entry.actor, entry.case_ref, entry.message_id, entry.agency,
            entry.detail_json, entry.entry_hash,
        )
    )


async def _read_version(conn: Conn) -> int:
    # A plain MVCC read of the catalog, not to_regclass(): the catalog caches are not
    # refreshed by taking an advisory lock, so to_regclass() could miss a table another
    # process created while we waited for the migration lock.
    exists = await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
        " WHERE c.relname = 'schema_version' AND n.nspname = current_schema())"
    )
    if not exists:
        return 0
    version = await conn.fetchval("SELECT version FROM schema_version")
    return int(version or 0)


async def _migrate(conn: Conn, read_only: bool) -> None:
    current = await _read_version(conn)
    if current > SCHEMA_VERSION:
        raise SchemaVersionError(
            f"postgresql store has schema version {current}; this release understands up to {SCHEMA_VERSION}"
        )
    if current == SCHEMA_VERSION:
        return
    if read_only:
        raise StoreError(f"postgresql store needs schema migration {current} -> {SCHEMA_VERSION} but is read-only")
    async with conn.transaction():
        if await conn.fetchval("SELECT current_schema() IS NULL"):
            raise StoreError("postgresql store: no schema of the search_path exists (create it first)")
        await conn.execute("SELECT pg_advisory_xact_lock($1, hashtext(current_schema()))", MIGRATION_LOCK_CLASS)
        # Re-read under the lock: another process may have migrated meanwhile.
        current = await _read_version(conn)
        if current > SCHEMA_VERSION:
            raise SchemaVersionError(
                f"postgresql store has schema version {current}; this release understands up to {SCHEMA_VERSION}"
            )
        if current == SCHEMA_VERSION:
            return
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_version ("
            " singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),"
            " version integer NOT NULL)"
        )
        for version, statements in MIGRATIONS:
            if version <= current:
                continue
            # One round trip per migration (simple-query protocol allows several statements).
            await conn.execute(";\n".join(statements))
        await conn.execute(
            "INSERT INTO schema_version (singleton, version) VALUES (true, $1)"
            " ON CONFLICT (singleton) DO UPDATE SET version = excluded.version",
            SCHEMA_VERSION,
        )


async def _check_durability(conn: Conn) -> None:
    """Refuse servers that acknowledge commits before they are on disk."""
    row = await conn.fetchrow("SELECT current_setting('fsync'), current_setting('synchronous_commit')")
    if row is None:  # cannot happen: a SELECT without FROM returns one row
        raise StoreError("postgresql store: the server returned no durability settings")
    fsync, sync_commit = row
    if fsync != "on" or sync_commit == "off":
        raise StoreError(
            "postgresql store refused: the server has fsync or synchronous_commit off, so a COMMIT can be "
            "lost after it returned; set fsync = on and synchronous_commit = on (or local/remote_*)"
        )


async def _check_audit_grants(conn: Conn) -> None:
    """Refuse a role that may append audit entries but not store their Merkle subtrees.

    Each append writes audit_nodes in its own transaction (migration 5); without the grant
    every audited write would fail. Say so once, at open (deploy/postgres.md)."""
    blocked = await conn.fetchval(
        "SELECT has_table_privilege('audit_entries', 'INSERT')"
        " AND NOT (has_table_privilege('audit_nodes', 'INSERT') AND has_table_privilege('audit_nodes', 'SELECT'))"
    )
    if blocked:
        raise StoreError(
            "postgresql store refused: this role may append audit entries but lacks SELECT, INSERT on "
            "audit_nodes (added by schema migration 5); grant them as in deploy/postgres.md"
        )


async def _no_session_reset(conn: asyncpg.Connection[asyncpg.Record]) -> None:
    return None


# --- the store ---------------------------------------------------------------------------


class PostgresStore(Store):
    """:class:`gateway.store.base.Store` on PostgreSQL. Create with :meth:`open` or
    :meth:`from_url`; several instances (processes) may share one database. Arguments
    arrive checked (the public methods of :class:`Store` check them)."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        clock: Callable[[], datetime],
        read_only: bool,
        acquire_timeout: float,
        outbox_lease: timedelta,
    ) -> None:
        self._pool = pool
        self._clock = clock
        self._read_only = read_only
        self._acquire_timeout = acquire_timeout
        self._lease = outbox_lease
        #: Owner of the publish leases this instance takes in due_outgoing.
        self._lease_owner = uuid.uuid4().hex
        self._closed = False
        self._running: set[asyncio.Task[Any]] = set()

    @classmethod
    async def from_url(cls, url: str, *, clock: Callable[[], datetime] | None = None) -> PostgresStore:
        dsn, options = parse_postgres_url(url)
        return await cls.open(
            dsn,
            pool_min=options["pool_min"],
            pool_max=options["pool_max"],
            acquire_timeout_ms=options["acquire_timeout_ms"],
            connect_timeout_ms=options["connect_timeout_ms"],
            statement_timeout_ms=options["statement_timeout_ms"],
            lock_timeout_ms=options["lock_timeout_ms"],
            outbox_lease_s=options["outbox_lease_s"],
            read_only=options["read_only"],
            session=options["session"],
            clock=clock,
        )

    @classmethod
    async def open(
        cls,
        dsn: str,
        *,
        pool_min: int = DEFAULT_POOL_MIN,
        pool_max: int = DEFAULT_POOL_MAX,
        acquire_timeout_ms: int = DEFAULT_ACQUIRE_TIMEOUT_MS,
        connect_timeout_ms: int = DEFAULT_CONNECT_TIMEOUT_MS,
        statement_timeout_ms: int = DEFAULT_STATEMENT_TIMEOUT_MS,
        lock_timeout_ms: int = DEFAULT_LOCK_TIMEOUT_MS,
        outbox_lease_s: int = DEFAULT_OUTBOX_LEASE_S,
        read_only: bool = False,
        session: Mapping[str, str] | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> PostgresStore:
        """Open a pool on ``dsn`` (an asyncpg DSN without store options), check the server's
        durability settings and migrate the schema (the first schema of ``search_path``)."""
        server_settings = {
            "application_name": "referral-gateway",
            "statement_timeout": str(int(statement_timeout_ms)),
            "lock_timeout": str(int(lock_timeout_ms)),
            "idle_in_transaction_session_timeout": str(max(int(statement_timeout_ms), 60_000)),
            "TimeZone": "UTC",
        }
        server_settings.update(session or {})
        if read_only:
            server_settings["default_transaction_read_only"] = "on"
        try:
            pool = await asyncpg.create_pool(
                dsn,
                min_size=pool_min,
                max_size=pool_max,
                timeout=connect_timeout_ms / 1000,
                server_settings=server_settings,
                max_inactive_connection_lifetime=300.0,
                # The store never changes session state (no SET, LISTEN, cursors or
                # session-level advisory locks; migrations use a transaction-level lock),
                # so the default reset query (RESET ALL, UNLISTEN *, ...: one more round
                # trip per operation) is skipped. asyncpg still rolls back a transaction
                # left open before a connection goes back to the pool.
                reset=_no_session_reset,
            )
        except Exception as exc:  # noqa: BLE001 - driver errors can carry URL parts; never echo them
            raise map_postgres_error(exc, "open") from None
        try:
            async with pool.acquire(timeout=acquire_timeout_ms / 1000) as conn:
                await _check_durability(conn)
                await _migrate(conn, read_only)
                if not read_only:
                    await _check_audit_grants(conn)
        except StoreError:
            await pool.close()
            raise
        except BaseException as exc:
            pool.terminate()
            if isinstance(exc, asyncio.CancelledError):
                raise
            raise map_postgres_error(exc, "open") from None
        return cls(
            pool,
            clock=clock or _utcnow,
            read_only=read_only,
            acquire_timeout=acquire_timeout_ms / 1000,
            outbox_lease=timedelta(seconds=outbox_lease_s),
        )

    # --- running work ---------------------------------------------------------------------

    async def _run(self, where: str, fn: Callable[[Conn], Awaitable[T]], *, transaction: bool) -> T:
        """Run ``fn`` on a pooled connection, inside ``BEGIN ... COMMIT`` if ``transaction``.

        Without it, ``fn`` must issue ONE statement: in autocommit that statement is its
        own transaction (and for a read, one snapshot), which saves two round trips.

        The work runs as its own task, shielded from the caller: a caller cancelled
        mid-transaction does not abort it half-way; it commits or rolls back on its own
        (as with SQLite's worker thread). close() waits for it.
        """
        if self._closed:
            raise StoreUnavailableError(f"postgresql store {where}: the store is closed")
        task = asyncio.ensure_future(self._guarded(where, fn, transaction))
        self._running.add(task)
        task.add_done_callback(self._finished)
        return await asyncio.shield(task)

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self._running.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: no "never retrieved" warning if the caller left

    async def _guarded(self, where: str, fn: Callable[[Conn], Awaitable[T]], transaction: bool) -> T:
        try:
            async with self._pool.acquire(timeout=self._acquire_timeout) as conn:
                try:
                    if not transaction:
                        return await fn(conn)
                    async with conn.transaction():
                        return await fn(conn)
                except _DRIVER_ERRORS as exc:
                    if _connection_broken(exc):
                        conn.terminate()  # never hand a broken connection to the next caller
                    raise
        except StoreError:
            raise
        except _DRIVER_ERRORS as exc:
            raise map_postgres_error(exc, where) from None

    async def _one(self, where: str, fn: Callable[[Conn], Awaitable[T]]) -> T:
        """One statement (a read, or a write that is a single statement): autocommit."""
        return await self._run(where, fn, transaction=False)

    async def _tx(self, where: str, fn: Callable[[Conn], Awaitable[T]]) -> T:
        """Several statements: one explicit transaction."""
        return await self._run(where, fn, transaction=True)

    # --- outbox ---------------------------------------------------------------------------

    async def _add_outgoing(self, msg: OutboxEntry, audit: tuple[AuditEntry, ...], claim: bool) -> bool:
        at = msg.created_at

        async def run(conn: Conn) -> bool:
            # ON CONFLICT waits for a concurrent insert of the same id to commit, then the
            # SELECT (a new snapshot under READ COMMITTED) sees the winner's row.
            # A claimed row is leased to this instance from the start: the gateway that queued
            # it publishes it at once (Gateway.submit), and another process must not pick it
            # up meanwhile. An unclaimed one is free for any process's publisher.
            new = await conn.fetchval(
                "INSERT INTO outbox (message_id, case_ref, recipient, message_type, envelope, status, attempts,"
                " next_attempt_at, last_error, created_at, updated_at, lease_owner, lease_until)"
                " VALUES ($1, $2, $3, $4, $5, 'queued', 0, $6, NULL, $6, $6,"
                " CASE WHEN $9::boolean THEN $7::text END, CASE WHEN $9::boolean THEN now() + $8::interval END)"
                " ON CONFLICT (message_id) DO NOTHING RETURNING true",
                msg.message_id, msg.case_ref, msg.recipient, msg.message_type, msg.envelope, at,
                self._lease_owner, self._lease, claim,
            )
            if not new:
                row = await conn.fetchrow(
                    "SELECT case_ref, recipient, message_type, envelope FROM outbox WHERE message_id = $1",
                    msg.message_id,
                )
                if row is not None and (row[0], row[1], row[2], bytes(row[3])) == (
                    msg.case_ref, msg.recipient, msg.message_type, msg.envelope,
                ):
                    return False  # the same request again (client retry): already queued
                raise MessageConflictError(f"outbox already holds message {msg.message_id} with different content")
            await conn.execute(
                "INSERT INTO message_events (outbox_id, status, at) VALUES ($1, 'queued', $2)", msg.message_id, at
            )
            for entry in audit:
                await _insert_audit(conn, entry)
            return True

        return await self._tx("add_outgoing", run)

    async def _due_outgoing(self, now: datetime, limit: int) -> list[OutboxRecord]:
        cutoff = now
        if self._read_only:
            async def peek(conn: Conn) -> list[OutboxRecord]:
                rows = await conn.fetch(
                    "SELECT * FROM outbox WHERE status = 'queued' AND next_attempt_at <= $1"
                    " ORDER BY created_at, arrival LIMIT $2",
                    cutoff, limit,
                )
                return [_outbox(r) for r in rows]

            return await self._one("due_outgoing", peek)

        async def run(conn: Conn) -> list[OutboxRecord]:
            # Lease: rows leased by ANOTHER store instance until a time still in the future
            # (database clock) are skipped, and so are rows another transaction holds
            # locked right now (SKIP LOCKED: no waiting, no double hand-out). Rows leased by
            # this instance come back to it (the gateway skips those it is publishing).
            rows = await conn.fetch(
                """
                WITH picked AS (
                    SELECT message_id FROM outbox
                    WHERE status = 'queued' AND next_attempt_at <= $1
                      AND (lease_until IS NULL OR lease_until <= now() OR lease_owner = $3)
                    ORDER BY created_at, arrival
                    LIMIT $2
                    FOR UPDATE SKIP LOCKED
                )
                UPDATE outbox AS o SET lease_owner = $3, lease_until = now() + $4::interval
                FROM picked WHERE o.message_id = picked.message_id
                RETURNING o.*
                """,
                cutoff, limit, self._lease_owner, self._lease,
            )
            rows = sorted(rows, key=lambda r: (r["created_at"], r["arrival"]))
            return [_outbox(r) for r in rows]

        return await self._one("due_outgoing", run)

    async def _move_outgoing(
        self, message_id: str, status: str, at: datetime, *, error_code: str | None = None, attempt: bool = False,
        audit: AuditEntry | None = None,
    ) -> bool:
        when = at

        async def run(conn: Conn) -> bool:
            current = await conn.fetchval("SELECT status FROM outbox WHERE message_id = $1 FOR UPDATE", message_id)
            if current is None:
                raise MessageNotFoundError(f"no outgoing message {message_id}")
            if not outgoing_moves_forward(current, status):
                return False
            await conn.execute(
                "UPDATE outbox SET status = $2, updated_at = $3, attempts = attempts + $4,"
                " last_error = COALESCE($5, last_error), lease_owner = NULL, lease_until = NULL"
                " WHERE message_id = $1",
                message_id, status, when, 1 if attempt else 0, error_code,
            )
            await conn.execute(
                "INSERT INTO message_events (outbox_id, status, at, error_code) VALUES ($1, $2, $3, $4)",
                message_id, status, when, error_code,
            )
            if audit is not None:
                await _insert_audit(conn, audit)
            return True

        return await self._tx("set_status", run)

    async def _mark_sent(self, message_id: str, at: datetime, audit: AuditEntry | None) -> bool:
        return await self._move_outgoing(message_id, "sent", at, attempt=True, audit=audit)

    async def _mark_failed(self, message_id: str, error_code: str, at: datetime | None) -> bool:
        when = at or require_aware("clock", self._clock())
        return await self._move_outgoing(message_id, "failed", when, error_code=error_code, attempt=True)

    async def _set_status(self, message_id: str, status: str, at: datetime, audit: AuditEntry | None) -> bool:
        return await self._move_outgoing(message_id, status, at, audit=audit)

    async def _mark_retry(
        self, message_id: str, next_attempt_at: datetime, error_code: str, at: datetime | None
    ) -> bool:
        due = next_attempt_at
        when = at or require_aware("clock", self._clock())

        async def run(conn: Conn) -> bool:
            current = await conn.fetchval("SELECT status FROM outbox WHERE message_id = $1 FOR UPDATE", message_id)
            if current is None:
                raise MessageNotFoundError(f"no outgoing message {message_id}")
            if current != "queued":
                return False  # confirmed or given up meanwhile: a late failure report is stale
            # The lease is released: after the back-off any process may take the message.
            await conn.execute(
                "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = $2, last_error = $3, updated_at = $4,"
                " lease_owner = NULL, lease_until = NULL WHERE message_id = $1",
                message_id, due, error_code, when,
            )
            return True

        return await self._tx("mark_retry", run)

    async def _get_outgoing(self, message_id: str) -> OutboxRecord | None:
        async def run(conn: Conn) -> OutboxRecord | None:
            row = await conn.fetchrow("SELECT * FROM outbox WHERE message_id = $1", message_id)
            return None if row is None else _outbox(row)

        return await self._one("get_outgoing", run)

    async def _replace_outgoing_body(self, message_id: str, body: bytes, audit: AuditEntry | None) -> bool:
        async def run(conn: Conn) -> bool:
            current = await conn.fetchval("SELECT envelope FROM outbox WHERE message_id = $1 FOR UPDATE", message_id)
            if current is None:
                raise MessageNotFoundError(f"no outgoing message {message_id}")
            if bytes(current) == body:
                return False
            await conn.execute("UPDATE outbox SET envelope = $2 WHERE message_id = $1", message_id, body)
            if audit is not None:
                await _insert_audit(conn, audit)
            return True

        return await self._tx("replace_outgoing_body", run)

    async def _replace_incoming_envelope(self, message_id: str, old: bytes, new: bytes) -> bool:
        async def run(conn: Conn) -> bool:
            status = await conn.execute(
                "UPDATE inbox SET envelope = $3 WHERE message_id = $1 AND envelope = $2", message_id, old, new)
            return bool(status == "UPDATE 1")

        return await self._tx("replace_incoming_envelope", run)

    async def _status_trail(self, message_id: str, direction: str) -> list[StatusChange]:
        column = {"outgoing": "outbox_id", "incoming": "inbox_id"}[direction]

        async def run(conn: Conn) -> list[StatusChange]:
            # Events of one message are inserted while its row is locked, so id order is
            # the order in which they were applied.
            rows = await conn.fetch(f"SELECT status, at FROM message_events WHERE {column} = $1 ORDER BY id", message_id)
            return [StatusChange(r[0], _utc(r[1])) for r in rows]

        return await self._one("status_trail", run)

    async def _list_outgoing(self, limit: int, offset: int, message_type: str | None) -> list[OutboxRecord]:
        async def run(conn: Conn) -> list[OutboxRecord]:
            if message_type is None:
                rows = await conn.fetch(
                    "SELECT * FROM outbox ORDER BY created_at, arrival LIMIT $1 OFFSET $2", limit, offset)
            else:
                rows = await conn.fetch(
                    "SELECT * FROM outbox WHERE message_type = $3 ORDER BY created_at, arrival LIMIT $1 OFFSET $2",
                    limit, offset, message_type)
            return [_outbox(r) for r in rows]

        return await self._one("list_outgoing", run)

    async def _list_outgoing_for_case(self, case_ref: str) -> list[OutboxRecord]:
        async def run(conn: Conn) -> list[OutboxRecord]:
            rows = await conn.fetch("SELECT * FROM outbox WHERE case_ref = $1 ORDER BY created_at, arrival", case_ref)
            return [_outbox(r) for r in rows]

        return await self._one("list_outgoing_for_case", run)

    # --- inbox ----------------------------------------------------------------------------

    async def _add_incoming(self, msg: IncomingMessage, audit: AuditEntry | None, data_key: DataKey | None,
                            case_key: DataKey | None) -> bool:
        at = msg.received_at

        args: list[Any] = [msg.message_id, msg.sender, msg.message_type, msg.case_ref, msg.envelope, at]
        sql = _ADD_INCOMING
        if audit is not None:
            sql = _ADD_INCOMING_AUDITED
            args += [audit.at, audit.event_type, audit.actor, audit.case_ref, audit.message_id, audit.agency,
                     audit.detail_json, audit.entry_hash]

        async def run(conn: Conn) -> bool:
            # One statement (one round trip, its own transaction) decides "new or
            # duplicate": a concurrent insert of the same id (any process) makes it wait for
            # that outcome, then do nothing. The trail row and the audit entry are written
            # by the same statement only when the row is new.
            return bool(await conn.fetchval(sql, *args))

        if data_key is None:
            return await self._one("add_incoming", run)

        async def keyed(conn: Conn) -> bool:
            key = data_key
            assert key is not None
            # A concurrent writer's live case key (any process) makes the insert wait for its
            # commit, then do nothing: the caller then seals under that key.
            if case_key is not None and await _insert_data_key(conn, case_key) is None:
                raise DataKeyExistsError(f"case {case_key.case_ref} has a live case key, or {case_key.key_id} is taken")
            if await _insert_data_key(conn, key) is None:
                raise DataKeyExistsError(f"data key {key.key_id} is already stored")
            if not await run(conn):  # raising rolls the key back
                raise DataKeyExistsError(f"message {msg.message_id} is already in the inbox")
            return True

        return await self._tx("add_incoming", keyed)

    async def _list_incoming(self, limit: int, offset: int, status: str | None) -> list[InboxRecord]:

        async def run(conn: Conn) -> list[InboxRecord]:
            if status is None:
                rows = await conn.fetch(
                    "SELECT * FROM inbox ORDER BY received_at, arrival LIMIT $1 OFFSET $2", limit, offset
                )
            else:
                rows = await conn.fetch(
                    "SELECT * FROM inbox WHERE status = $3 ORDER BY received_at, arrival LIMIT $1 OFFSET $2",
                    limit, offset, status,
                )
            return [_inbox(r) for r in rows]

        return await self._one("list_incoming", run)

    async def _get_incoming(self, message_id: str) -> InboxRecord | None:
        async def run(conn: Conn) -> InboxRecord | None:
            row = await conn.fetchrow("SELECT * FROM inbox WHERE message_id = $1", message_id)
            return None if row is None else _inbox(row)

        return await self._one("get_incoming", run)

    async def _set_incoming_status(self, message_id: str, status: str, at: datetime) -> bool:
        when = at

        async def run(conn: Conn) -> bool:
            current = await conn.fetchval("SELECT status FROM inbox WHERE message_id = $1 FOR UPDATE", message_id)
            if current is None:
                raise MessageNotFoundError(f"no incoming message {message_id}")
            if not incoming_moves_forward(current, status):
                return False
            await conn.execute("UPDATE inbox SET status = $2, updated_at = $3 WHERE message_id = $1", message_id, status, when)
            await conn.execute(
                "INSERT INTO message_events (inbox_id, status, at) VALUES ($1, $2, $3)", message_id, status, when
            )
            return True

        return await self._tx("set_incoming_status", run)

    async def _list_incoming_for_case(self, case_ref: str) -> list[InboxRecord]:
        async def run(conn: Conn) -> list[InboxRecord]:
            rows = await conn.fetch("SELECT * FROM inbox WHERE case_ref = $1 ORDER BY received_at, arrival", case_ref)
            return [_inbox(r) for r in rows]

        return await self._one("list_incoming_for_case", run)

    # --- replay guard ---------------------------------------------------------------------

    async def _remember_message_id(self, message_id: str, expires_at: datetime) -> bool:
        until = expires_at

        async def run(conn: Conn) -> bool:
            return bool(
                await conn.fetchval(
                    "INSERT INTO seen_message_ids (message_id, expires_at) VALUES ($1, $2)"
                    " ON CONFLICT (message_id) DO NOTHING RETURNING true",
                    message_id, until,
                )
            )

        return await self._one("remember_message_id", run)

    async def _prune_seen(self, now: datetime) -> int:
        cutoff = now

        async def run(conn: Conn) -> int:
            status = await conn.execute("DELETE FROM seen_message_ids WHERE expires_at < $1", cutoff)
            return int(status.split()[-1])

        return await self._one("prune_seen", run)

    # --- API idempotency keys -------------------------------------------------------------

    async def _claim_idempotency_key(self, claim: IdempotencyRecord) -> IdempotencyRecord:

        async def run(conn: Conn) -> IdempotencyRecord:
            # A concurrent claim of the same key waits on the conflicting row, then either
            # replaces it (expired) or leaves it; the SELECT (a new snapshot) sees the winner.
            row = await conn.fetchrow(
                _INSERT_IDEMPOTENCY + " ON CONFLICT (key_hash) DO UPDATE SET route = excluded.route,"
                " request_hash = excluded.request_hash, created_at = excluded.created_at,"
                " expires_at = excluded.expires_at, status_code = NULL, response_json = NULL, completed_at = NULL"
                " WHERE idempotency_keys.expires_at <= excluded.created_at RETURNING *",
                *_idempotency_args(claim),
            )
            if row is None:
                row = await conn.fetchrow("SELECT * FROM idempotency_keys WHERE key_hash = $1", claim.key_hash)
            if row is None:  # cannot happen: DO UPDATE locks the conflicting row even when WHERE is false
                raise StoreError("postgresql store claim_idempotency_key: the conflicting key vanished")
            return _idempotency(row)

        return await self._tx("claim_idempotency_key", run)

    async def _complete_idempotency_key(self, record: IdempotencyRecord) -> IdempotencyRecord:
        completed_at = record.completed_at or self._clock()

        async def run(conn: Conn) -> IdempotencyRecord:
            for _ in range(_IDEMPOTENCY_RACE_ATTEMPTS):
                row = await conn.fetchrow(
                    "SELECT * FROM idempotency_keys WHERE key_hash = $1 FOR UPDATE", record.key_hash
                )
                if row is not None:
                    break
                row = await conn.fetchrow(_INSERT_IDEMPOTENCY + " ON CONFLICT (key_hash) DO NOTHING RETURNING *",
                                          *_idempotency_args(record))
                if row is None:  # a concurrent claim or answer won: it stays
                    row = await conn.fetchrow("SELECT * FROM idempotency_keys WHERE key_hash = $1", record.key_hash)
                if row is not None:
                    return _idempotency(row)
                # That winner was released (deleted) between the two statements: look again.
            else:
                raise StoreUnavailableError("postgresql store complete_idempotency_key: the key kept changing; retry")
            if row["response_json"] is not None or row["request_hash"] != record.request_hash:
                return _idempotency(row)
            row = await conn.fetchrow(
                "UPDATE idempotency_keys SET status_code = $2, response_json = $3, completed_at = $4"
                " WHERE key_hash = $1 RETURNING *",
                record.key_hash, record.status_code, record.response_json, completed_at,
            )
            if row is None:  # cannot happen: the row is locked FOR UPDATE above
                raise StoreError("postgresql store complete_idempotency_key: the locked key vanished")
            return _idempotency(row)

        return await self._tx("complete_idempotency_key", run)

    async def _release_idempotency_key(self, key_hash: str, request_hash: str) -> bool:
        async def run(conn: Conn) -> bool:
            status = await conn.execute(
                "DELETE FROM idempotency_keys WHERE key_hash = $1 AND request_hash = $2 AND response_json IS NULL",
                key_hash, request_hash,
            )
            return int(status.split()[-1]) == 1

        return await self._one("release_idempotency_key", run)

    async def _prune_idempotency_keys(self, now: datetime) -> int:
        cutoff = now

        async def run(conn: Conn) -> int:
            status = await conn.execute("DELETE FROM idempotency_keys WHERE expires_at < $1", cutoff)
            return int(status.split()[-1])

        return await self._one("prune_idempotency_keys", run)

    # --- workspace sessions ---------------------------------------------------------------

    async def _add_web_session(self, session: WebSession) -> None:
        async def run(conn: Conn) -> None:
            await conn.execute(
                "INSERT INTO web_sessions (id_hash, user_name, role, created_at, last_seen_at, expires_at, credential)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7)",
                session.id_hash, session.user_name, session.role, session.created_at, session.last_seen_at,
                session.expires_at, session.credential,
            )

        await self._one("add_web_session", run)

    async def _get_web_session(self, id_hash: str) -> WebSession | None:
        async def run(conn: Conn) -> WebSession | None:
            row = await conn.fetchrow("SELECT * FROM web_sessions WHERE id_hash = $1", id_hash)
            return None if row is None else rows.web_session(row, _utc)

        return await self._one("get_web_session", run)

    async def _touch_web_session(self, id_hash: str, at: datetime) -> bool:
        async def run(conn: Conn) -> bool:
            # GREATEST: a slower request finishing after a newer one never moves the time back.
            status = await conn.execute(
                "UPDATE web_sessions SET last_seen_at = GREATEST(last_seen_at, $2) WHERE id_hash = $1", id_hash, at)
            return int(status.split()[-1]) == 1

        return await self._one("touch_web_session", run)

    async def _delete_web_session(self, id_hash: str) -> bool:
        async def run(conn: Conn) -> bool:
            status = await conn.execute("DELETE FROM web_sessions WHERE id_hash = $1", id_hash)
            return int(status.split()[-1]) == 1

        return await self._one("delete_web_session", run)

    async def _prune_web_sessions(self, idle_before: datetime, now: datetime) -> int:
        async def run(conn: Conn) -> int:
            status = await conn.execute(
                "DELETE FROM web_sessions WHERE last_seen_at < $1 OR expires_at < $2", idle_before, now)
            return int(status.split()[-1])

        return await self._one("prune_web_sessions", run)

    # --- cases ----------------------------------------------------------------------------

    async def _upsert_case(self, case: Case) -> None:

        async def run(conn: Conn) -> None:
            await conn.execute(
                "INSERT INTO cases (case_ref, counterpart_agency, state, updated_at) VALUES ($1, $2, $3, $4)"
                " ON CONFLICT (case_ref) DO UPDATE SET counterpart_agency = excluded.counterpart_agency,"
                " state = excluded.state, updated_at = excluded.updated_at",
                case.case_ref, case.counterpart_agency, case.state, case.updated_at,
            )

        await self._one("upsert_case", run)

    async def _get_case(self, case_ref: str) -> Case | None:
        async def run(conn: Conn) -> Case | None:
            row = await conn.fetchrow("SELECT * FROM cases WHERE case_ref = $1", case_ref)
            if row is None:
                return None
            return Case(row["case_ref"], row["counterpart_agency"], row["state"], _utc(row["updated_at"]))

        return await self._one("get_case", run)

    # --- audit ----------------------------------------------------------------------------

    async def _append_audit(self, entry: AuditEntry) -> int:

        async def run(conn: Conn) -> int:
            return await _insert_audit(conn, entry)

        return await self._one("append_audit", run)

    async def _read_audit(self, from_seq: int, limit: int) -> list[AuditRecord]:

        async def run(conn: Conn) -> list[AuditRecord]:
            rows = await conn.fetch("SELECT * FROM audit_entries WHERE seq >= $1 ORDER BY seq LIMIT $2", from_seq, limit)
            return [_audit(r) for r in rows]

        return await self._one("read_audit", run)

    async def _query_audit(self, query: AuditQuery, limit: int) -> list[AuditRecord]:
        clauses: list[str] = ["seq > $1"]
        args: list[Any] = [query.after_seq]
        for column, op, value in (
            ("case_ref", "=", query.case_ref),
            ("agency", "=", query.agency),
            ("at", ">=", query.since),
            ("at", "<", query.until),
        ):
            if value is not None:
                args.append(value)
                clauses.append(f"{column} {op} ${len(args)}")
        if query.event_types:
            args.append(list(query.event_types))
            clauses.append(f"event_type = ANY(${len(args)}::text[])")
        args.append(limit)
        sql = f"SELECT * FROM audit_entries WHERE {' AND '.join(clauses)} ORDER BY seq LIMIT ${len(args)}"

        async def run(conn: Conn) -> list[AuditRecord]:
            return [_audit(r) for r in await conn.fetch(sql, *args)]

        return await self._one("query_audit", run)

    async def audit_size(self) -> int:
        async def run(conn: Conn) -> int:
            # The counter commits together with its entry: never ahead of what is visible.
            return int(await conn.fetchval("SELECT last_seq FROM audit_head"))

        return await self._one("audit_size", run)

    async def _audit_hashes(self, from_seq: int, limit: int) -> list[bytes]:

        async def run(conn: Conn) -> list[bytes]:
            rows = await conn.fetch(
                "SELECT entry_hash FROM audit_entries WHERE seq >= $1 ORDER BY seq LIMIT $2", from_seq, limit
            )
            return [bytes(r[0]) for r in rows]

        return await self._one("audit_hashes", run)

    async def _audit_nodes(self, ids: list[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
        levels = [level for level, _ in ids]
        indexes = [idx for _, idx in ids]

        async def run(conn: Conn) -> dict[tuple[int, int], bytes]:
            # One statement (one snapshot, one round trip) for every id of a proof.
            rows = await conn.fetch(_AUDIT_NODES, levels, indexes)
            return {(int(r[0]), int(r[1])): bytes(r[2]) for r in rows if r[2] is not None}

        return await self._one("audit_nodes", run)

    # --- data keys ------------------------------------------------------------------------

    async def _add_data_key(self, key: DataKey) -> DataKey:

        async def run(conn: Conn) -> DataKey:
            for _ in range(3):
                # No conflict target: a clash on the key id OR on "one live case key per
                # case" does nothing, after waiting for a concurrent insert to commit; the
                # next statement (a new snapshot under READ COMMITTED) sees the winner.
                row = await _insert_data_key(conn, key)
                if row is not None:
                    return _data_key(row)
                if key.kind == "case":
                    live = await conn.fetchrow(
                        "SELECT * FROM data_keys WHERE case_ref = $1 AND kind = 'case' AND wrapped IS NOT NULL",
                        key.case_ref,
                    )
                    if live is not None:
                        return _data_key(live)
                same_id = await conn.fetchrow("SELECT * FROM data_keys WHERE key_id = $1", key.key_id)
                if key.kind == "message" and same_id is not None:
                    return _data_key(same_id)  # shredded stays shredded (wrapped None)
                if same_id is not None and same_id["wrapped"] is None:
                    raise StoreError(f"data key {key.key_id} exists and was shredded")  # never resurrected
                # The live case key was shredded between our statements: try again.
            raise StoreUnavailableError("postgresql store add_data_key: the case key kept changing; retry")

        return await self._tx("add_data_key", run)

    async def _get_data_key(self, key_id: str) -> DataKey | None:
        async def run(conn: Conn) -> DataKey | None:
            row = await conn.fetchrow("SELECT * FROM data_keys WHERE key_id = $1", key_id)
            return None if row is None else _data_key(row)

        return await self._one("get_data_key", run)

    async def _live_case_key(self, case_ref: str) -> DataKey | None:
        async def run(conn: Conn) -> DataKey | None:
            row = await conn.fetchrow(
                "SELECT * FROM data_keys WHERE case_ref = $1 AND kind = 'case' AND wrapped IS NOT NULL", case_ref
            )
            return None if row is None else _data_key(row)

        return await self._one("live_case_key", run)

    async def _shred_data_keys(
        self, key_ids: list[str], reason: str, at: datetime, audit: tuple[AuditEntry, ...]
    ) -> list[str]:
        ids, when, entries = key_ids, at, audit

        async def run(conn: Conn) -> list[str]:
            # Rows are locked in key order (ORDER BY in the subquery), so two shreds of
            # overlapping sets cannot deadlock.
            rows = await conn.fetch(
                "UPDATE data_keys SET wrapped = NULL, shredded_at = $2, shred_reason = $3"
                " WHERE key_id IN (SELECT key_id FROM data_keys WHERE key_id = ANY($1::text[]) AND wrapped IS NOT NULL"
                " ORDER BY key_id FOR UPDATE) AND wrapped IS NOT NULL RETURNING key_id",
                ids, when, reason,
            )
            shredded = {r[0] for r in rows}
            if shredded:
                for entry in entries:
                    await _insert_audit(conn, entry)
            result: list[str] = []
            for key_id in ids:
                if key_id in shredded and key_id not in result:
                    result.append(key_id)
            return result

        return await self._tx("shred_data_keys", run)

    async def _case_keys_wrapped_by(self, prefix: bytes, limit: int) -> list[DataKey]:
        async def run(conn: Conn) -> list[DataKey]:
            rows = await conn.fetch(
                "SELECT * FROM data_keys WHERE kind = 'case' AND wrapped IS NOT NULL"
                " AND substring(wrapped FROM 1 FOR $2) = $1 ORDER BY key_id LIMIT $3",
                prefix, len(prefix), limit,
            )
            return [_data_key(r) for r in rows]

        return await self._one("case_keys_wrapped_by", run)

    async def _rewrap_data_key(self, key_id: str, old: bytes, new: bytes) -> bool:
        async def run(conn: Conn) -> bool:
            status = await conn.execute(
                "UPDATE data_keys SET wrapped = $3 WHERE key_id = $1 AND wrapped = $2", key_id, old, new)
            return bool(status == "UPDATE 1")

        return await self._tx("rewrap_data_key", run)

    async def _case_key_ids(self, case_ref: str) -> list[str]:
        async def run(conn: Conn) -> list[str]:
            rows = await conn.fetch(
                "SELECT key_id FROM data_keys WHERE case_ref = $1"
                " ORDER BY kind = 'case' DESC, created_at, arrival",
                case_ref,
            )
            return [r[0] for r in rows]

        return await self._one("case_key_ids", run)

    async def _retention_due(self, message_type: str, received_before: datetime, limit: int) -> list[InboxRecord]:
        cutoff = received_before

        async def run(conn: Conn) -> list[InboxRecord]:
            rows = await conn.fetch(
                "SELECT i.* FROM inbox i JOIN data_keys k ON k.key_id = i.message_id"
                " WHERE i.message_type = $1 AND i.received_at < $2 AND k.wrapped IS NOT NULL"
                " ORDER BY i.received_at, i.arrival LIMIT $3",
                message_type, cutoff, limit,
            )
            return [_inbox(r) for r in rows]

        return await self._one("retention_due", run)

    # --- consent withdrawals --------------------------------------------------------------

    async def _add_withdrawal(self, withdrawal: Withdrawal, audit: AuditEntry | None) -> bool:
        w = withdrawal

        async def run(conn: Conn) -> bool:
            new = await conn.fetchval(
                "INSERT INTO withdrawals (message_id, direction, case_ref, counterpart, withdrawn_at, scope, purposes,"
                " request_message_ids, recorded_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
                " ON CONFLICT (message_id, direction) DO NOTHING RETURNING true",
                w.message_id, w.direction, w.case_ref, w.counterpart, w.withdrawn_at, w.scope,
                list(w.purposes), list(w.request_message_ids), w.recorded_at,
            )
            if not new:
                return False
            if audit is not None:
                await _insert_audit(conn, audit)
            return True

        return await self._tx("add_withdrawal", run)

    async def _withdrawals_for_case(self, case_ref: str) -> list[Withdrawal]:
        async def run(conn: Conn) -> list[Withdrawal]:
            rows = await conn.fetch(
                "SELECT * FROM withdrawals WHERE case_ref = $1 ORDER BY withdrawn_at, arrival", case_ref
            )
            return [_withdrawal(r) for r in rows]

        return await self._one("withdrawals_for_case", run)

    # --- the agency directory -------------------------------------------------------------

    async def _accept_directory(self, record: DirectoryRecord, audit: AuditEntry | None) -> bool:
        r = record

        async def run(conn: Conn) -> bool:
            # Writers of one store (several processes of an agency) take turns, so "greater
            # than every recorded serial" is decided on what the others committed. An advisory
            # lock, not LOCK TABLE: that would need UPDATE rights the application role lacks.
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext(current_schema() || '.directories'))")
            highest = await conn.fetchval("SELECT COALESCE(MAX(serial), 0) FROM directories")
            if r.serial <= highest:
                return False
            await conn.execute(
                "INSERT INTO directories (serial, digest, signed, issued, accepted_at, source)"
                " VALUES ($1, $2, $3, $4, $5, $6)",
                r.serial, r.digest, r.signed, r.issued, r.accepted_at, r.source,
            )
            if audit is not None:
                await _insert_audit(conn, audit)
            return True

        return await self._tx("accept_directory", run)

    async def _current_directory(self) -> DirectoryRecord | None:
        async def run(conn: Conn) -> DirectoryRecord | None:
            row = await conn.fetchrow("SELECT * FROM directories ORDER BY serial DESC LIMIT 1")
            return None if row is None else rows.directory_record(row, _utc)

        return await self._one("current_directory", run)

    # --- audit checkpoints ----------------------------------------------------------------

    async def _add_checkpoint(self, checkpoint: CheckpointRecord) -> bool:
        c = checkpoint

        async def run(conn: Conn) -> bool:
            return bool(
                await conn.fetchval(
                    "INSERT INTO checkpoints (origin, tree_size, root_hash, signed_at, note, recorded_at)"
                    " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (origin, tree_size, root_hash) DO NOTHING RETURNING true",
                    c.origin, c.tree_size, c.root_hash, c.signed_at, c.note, c.recorded_at,
                )
            )

        return await self._one("add_checkpoint", run)

    async def _latest_checkpoint(self, origin: str) -> CheckpointRecord | None:
        async def run(conn: Conn) -> CheckpointRecord | None:
            row = await conn.fetchrow(
                "SELECT * FROM checkpoints WHERE origin = $1 ORDER BY tree_size DESC, signed_at DESC, arrival DESC LIMIT 1",
                origin,
            )
            return None if row is None else _checkpoint(row)

        return await self._one("latest_checkpoint", run)

    async def _list_checkpoints(
        self, origin: str, min_size: int, limit: int, newest_first: bool
    ) -> list[CheckpointRecord]:
        order = "tree_size DESC, signed_at DESC, arrival DESC" if newest_first else "tree_size, signed_at, arrival"

        async def run(conn: Conn) -> list[CheckpointRecord]:
            rows = await conn.fetch(
                f"SELECT * FROM checkpoints WHERE origin = $1 AND tree_size >= $2 ORDER BY {order} LIMIT $3",
                origin, min_size, limit,
            )
            return [_checkpoint(r) for r in rows]

        return await self._one("list_checkpoints", run)

    # --- lifecycle ------------------------------------------------------------------------

    async def ping(self, timeout: float = 2.0) -> bool:
        if self._closed:
            return False
        try:
            async def run(conn: Conn) -> bool:
                return await conn.fetchval("SELECT 1") == 1

            return await asyncio.wait_for(self._one("ping", run), timeout)
        except Exception:  # noqa: BLE001 - readiness probe: any failure means "not ready"
            return False

    async def close(self) -> None:
        """Refuse new work, let running operations finish, then close the pool."""
        if self._closed:
            return
        self._closed = True
        if self._running:
            await asyncio.gather(*list(self._running), return_exceptions=True)
        try:
            await asyncio.wait_for(self._pool.close(), timeout=10)
        except Exception:  # noqa: BLE001 - a stuck connection must not keep us from shutting down
            self._pool.terminate()
