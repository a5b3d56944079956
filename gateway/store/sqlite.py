"""The embedded default store: one SQLite file in WAL mode, ``synchronous=FULL``.

All sqlite3 work runs on ONE dedicated worker thread (gateway/store/worker.py, owned by
the store), never on the event loop. Each public method is one function run on that
thread and one transaction, so statements of two coroutines can never interleave inside
one transaction: atomicity follows from the structure, with no asyncio lock to forget.
(aiosqlite also uses one thread per connection, but forwards each *statement* separately,
so a read-modify-write would need an extra asyncio lock around every transaction and one
thread hop per statement instead of one per operation.)

Durability: a method returns only after COMMIT, and with WAL + ``synchronous=FULL`` COMMIT
returns only after the WAL has been fsynced. See docs/store.md.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, TypeVar

import structlog

from gateway.audit import merkle
from gateway.audit.leaf import leaf_hash
from gateway.store import rows
from gateway.store.worker import WorkerThread, settle_all
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
    WebSession,
    Withdrawal,
    incoming_moves_forward,
    outgoing_moves_forward,
    require_aware,
)

T = TypeVar("T")
log = structlog.get_logger("gateway.store.sqlite")

DEFAULT_BUSY_TIMEOUT_MS = 5_000

# --- schema ------------------------------------------------------------------------------
# Versioned with PRAGMA user_version, which SQLite changes inside the migration's own
# transaction: a migration is applied completely or not at all. Append new versions;
# never edit a released one. The DDL lives here rather than in a .sql file so that it
# ships with the module without package-data configuration.

_OUT = ", ".join(f"'{s}'" for s in sorted(OUTGOING_STATUSES))
_IN = ", ".join(f"'{s}'" for s in sorted(INCOMING_STATUSES))

MIGRATIONS: tuple[tuple[int, tuple[Any, ...]], ...] = (
    (
        1,
        (
            f"""
            CREATE TABLE outbox (
                message_id      TEXT PRIMARY KEY,
                case_ref        TEXT NOT NULL,
                recipient       TEXT NOT NULL,
                message_type    TEXT NOT NULL,
                envelope        BLOB NOT NULL,
                status          TEXT NOT NULL CHECK (status IN ({_OUT})),
                attempts        INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
                next_attempt_at TEXT NOT NULL,
                last_error      TEXT,
                created_at      TEXT NOT NULL,
                updated_at      TEXT NOT NULL
            )""",
            "CREATE INDEX outbox_due ON outbox (next_attempt_at) WHERE status = 'queued'",
            f"""
            CREATE TABLE inbox (
                message_id   TEXT PRIMARY KEY,
                sender       TEXT NOT NULL,
                message_type TEXT NOT NULL,
                case_ref     TEXT NOT NULL,
                envelope     BLOB NOT NULL,
                received_at  TEXT NOT NULL,
                status       TEXT NOT NULL CHECK (status IN ({_IN})),
                updated_at   TEXT NOT NULL
            )""",
            "CREATE INDEX inbox_by_arrival ON inbox (received_at)",
            "CREATE INDEX inbox_by_status ON inbox (status, received_at)",
            # One row per applied status transition, pointing at exactly one message.
            """
            CREATE TABLE message_events (
                id         INTEGER PRIMARY KEY AUTOINCREMENT,
                outbox_id  TEXT REFERENCES outbox (message_id) ON DELETE CASCADE,
                inbox_id   TEXT REFERENCES inbox (message_id) ON DELETE CASCADE,
                status     TEXT NOT NULL,
                at         TEXT NOT NULL,
                error_code TEXT,
                CHECK ((outbox_id IS NULL) <> (inbox_id IS NULL))
            )""",
            "CREATE INDEX message_events_outbox ON message_events (outbox_id, id) WHERE outbox_id IS NOT NULL",
            "CREATE INDEX message_events_inbox ON message_events (inbox_id, id) WHERE inbox_id IS NOT NULL",
            """
            CREATE TABLE seen_message_ids (
                message_id TEXT PRIMARY KEY,
                expires_at TEXT NOT NULL
            )""",
            "CREATE INDEX seen_by_expiry ON seen_message_ids (expires_at)",
            """
            CREATE TABLE cases (
                case_ref           TEXT PRIMARY KEY,
                counterpart_agency TEXT NOT NULL,
                state              TEXT NOT NULL,
                updated_at         TEXT NOT NULL
            )""",
            # AUTOINCREMENT: a seq is never reused, even after a failed or rolled-back append.
            """
            CREATE TABLE audit_entries (
                seq         INTEGER PRIMARY KEY AUTOINCREMENT,
                at          TEXT NOT NULL,
                event_type  TEXT NOT NULL,
                actor       TEXT NOT NULL,
                case_ref    TEXT,
                message_id  TEXT,
                detail_json TEXT NOT NULL,
                entry_hash  BLOB
            )""",
            # Append-only in the database too, not only by the absence of a method.
            """
            CREATE TRIGGER audit_entries_no_update BEFORE UPDATE ON audit_entries
            BEGIN SELECT RAISE(ABORT, 'audit_entries is append-only'); END""",
            """
            CREATE TRIGGER audit_entries_no_delete BEFORE DELETE ON audit_entries
            BEGIN SELECT RAISE(ABORT, 'audit_entries is append-only'); END""",
        ),
    ),
)
MIGRATIONS += (
    (
        2,
        (
            # The other agency involved in an event: auditors query by it (part of the leaf hash).
            "ALTER TABLE audit_entries ADD COLUMN agency TEXT",
            "CREATE INDEX audit_by_case ON audit_entries (case_ref, seq) WHERE case_ref IS NOT NULL",
            "CREATE INDEX audit_by_agency ON audit_entries (agency, seq) WHERE agency IS NOT NULL",
            "CREATE INDEX audit_by_event ON audit_entries (event_type, seq)",
            "CREATE INDEX audit_by_time ON audit_entries (at)",
            # Wrapped data keys. Shredding sets wrapped to NULL: the row stays as proof of
            # when and why, and the key can never come back.
            """
            CREATE TABLE data_keys (
                key_id        TEXT PRIMARY KEY,
                case_ref      TEXT NOT NULL,
                kind          TEXT NOT NULL CHECK (kind IN ('case', 'message')),
                parent_key_id TEXT REFERENCES data_keys (key_id),
                wrapped       BLOB,
                created_at    TEXT NOT NULL,
                shredded_at   TEXT,
                shred_reason  TEXT,
                CHECK ((wrapped IS NULL) = (shredded_at IS NOT NULL)),
                CHECK ((kind = 'message') = (parent_key_id IS NOT NULL))
            )""",
            # At most one live case key per case, whoever races to create it.
            "CREATE UNIQUE INDEX data_keys_live_case ON data_keys (case_ref) WHERE kind = 'case' AND wrapped IS NOT NULL",
            "CREATE INDEX data_keys_by_case ON data_keys (case_ref)",
            """
            CREATE TRIGGER data_keys_never_unshred BEFORE UPDATE OF wrapped ON data_keys
            WHEN OLD.wrapped IS NULL
            BEGIN SELECT RAISE(ABORT, 'a shredded data key cannot be restored'); END""",
            """
            CREATE TABLE withdrawals (
                message_id          TEXT NOT NULL,
                direction           TEXT NOT NULL CHECK (direction IN ('outgoing', 'incoming')),
                case_ref            TEXT NOT NULL,
                counterpart         TEXT NOT NULL,
                withdrawn_at        TEXT NOT NULL,
                scope               TEXT NOT NULL,
                purposes_json       TEXT NOT NULL,
                request_ids_json    TEXT NOT NULL,
                recorded_at         TEXT NOT NULL,
                PRIMARY KEY (message_id, direction)
            )""",
            "CREATE INDEX withdrawals_by_case ON withdrawals (case_ref, withdrawn_at)",
            """
            CREATE TABLE checkpoints (
                origin      TEXT NOT NULL,
                tree_size   INTEGER NOT NULL CHECK (tree_size >= 0),
                root_hash   BLOB NOT NULL,
                signed_at   TEXT NOT NULL,
                note        BLOB NOT NULL,
                recorded_at TEXT NOT NULL,
                PRIMARY KEY (origin, tree_size, root_hash)
            )""",
            """
            CREATE TRIGGER checkpoints_no_update BEFORE UPDATE ON checkpoints
            BEGIN SELECT RAISE(ABORT, 'checkpoints are append-only'); END""",
            """
            CREATE TRIGGER checkpoints_no_delete BEFORE DELETE ON checkpoints
            BEGIN SELECT RAISE(ABORT, 'checkpoints are append-only'); END""",
            lambda conn: _backfill_entry_hashes(conn),
        ),
    ),
)

MIGRATIONS += (
    (
        3,
        (
            # API Idempotency-Key records (docs/api.md "Idempotency"): hashes, a route name,
            # times and the answer as sent; never the client's key, user or body.
            """
            CREATE TABLE idempotency_keys (
                key_hash      TEXT PRIMARY KEY,
                route         TEXT NOT NULL,
                request_hash  TEXT NOT NULL,
                created_at    TEXT NOT NULL,
                expires_at    TEXT NOT NULL,
                status_code   INTEGER,
                response_json TEXT,
                completed_at  TEXT,
                CHECK ((status_code IS NULL) = (response_json IS NULL))
            )""",
            "CREATE INDEX idempotency_by_expiry ON idempotency_keys (expires_at)",
        ),
    ),
)

MIGRATIONS += (
    (
        4,
        (
            # Every directory this gateway accepted (docs/keys.md "Rollback protection"): the
            # highest serial is the one in force; a lower or equal one is refused, also after a
            # restart with an older file. Append-only: a serial once accepted is never forgotten.
            """
            CREATE TABLE directories (
                serial      INTEGER PRIMARY KEY CHECK (serial >= 1),
                digest      TEXT NOT NULL,
                signed      BLOB NOT NULL,
                issued      TEXT NOT NULL,
                accepted_at TEXT NOT NULL,
                source      TEXT NOT NULL CHECK (source IN ('file', 'broker'))
            )""",
            """
            CREATE TRIGGER directories_no_update BEFORE UPDATE ON directories
            BEGIN SELECT RAISE(ABORT, 'directories are append-only'); END""",
            """
            CREATE TRIGGER directories_no_delete BEFORE DELETE ON directories
            BEGIN SELECT RAISE(ABORT, 'directories are append-only'); END""",
        ),
    ),
)

MIGRATIONS += (
    (
        5,
        (
            # Workspace sessions (docs/workspace.md): the SHA-256 of the session id (never the
            # id), who signed in and the session's times. Deleted at sign-out and expiry.
            """
            CREATE TABLE web_sessions (
                id_hash      TEXT PRIMARY KEY,
                user_name    TEXT NOT NULL,
                role         TEXT NOT NULL,
                created_at   TEXT NOT NULL,
                last_seen_at TEXT NOT NULL,
                expires_at   TEXT NOT NULL,
                credential   TEXT NOT NULL DEFAULT ''
            )""",
            "CREATE INDEX web_sessions_by_last_seen ON web_sessions (last_seen_at)",
        ),
    ),
)

MIGRATIONS += (
    (
        6,
        (
            # The hash of every perfect Merkle subtree of the audit log above the leaves
            # (level >= 1; level 0 is audit_entries.entry_hash), written in the transaction
            # of the append that completes it: proofs read O(log n) of these instead of every
            # leaf (gateway/audit/merkle.py, docs/audit.md). Rows never change.
            """
            CREATE TABLE audit_nodes (
                level INTEGER NOT NULL CHECK (level >= 1),
                idx   INTEGER NOT NULL CHECK (idx >= 0),
                hash  BLOB NOT NULL CHECK (length(hash) = 32),
                PRIMARY KEY (level, idx)
            ) WITHOUT ROWID""",
            """
            CREATE TRIGGER audit_nodes_no_update BEFORE UPDATE ON audit_nodes
            BEGIN SELECT RAISE(ABORT, 'audit_nodes is append-only'); END""",
            """
            CREATE TRIGGER audit_nodes_no_delete BEFORE DELETE ON audit_nodes
            BEGIN SELECT RAISE(ABORT, 'audit_nodes is append-only'); END""",
            lambda conn: _backfill_audit_nodes(conn),
        ),
    ),
)


def _backfill_audit_nodes(conn: sqlite3.Connection) -> None:
    """Store the subtree hashes of the entries appended before migration 6, in one pass.

    Runs inside the migration's transaction (under the write lock: no append interleaves),
    streaming the leaf hashes through a frontier that yields each subtree as it completes,
    exactly as :func:`_insert_audit_nodes` does per append."""
    frontier = merkle.MerkleFrontier()
    leaves = conn.execute("SELECT seq, entry_hash FROM audit_entries ORDER BY seq")
    batch: list[tuple[int, int, bytes]] = []
    for seq, entry_hash in leaves:
        if seq != frontier.size + 1 or entry_hash is None:  # cannot happen: seqs have no gaps, hashes were backfilled (2)
            raise StoreError(f"sqlite store: audit entry {seq} cannot be a Merkle leaf (gap or no entry_hash)")
        batch.extend(frontier.append_nodes(bytes(entry_hash)))
        if len(batch) >= 10_000:
            conn.executemany("INSERT INTO audit_nodes (level, idx, hash) VALUES (?, ?, ?)", batch)
            batch.clear()
    conn.executemany("INSERT INTO audit_nodes (level, idx, hash) VALUES (?, ?, ?)", batch)


def _backfill_entry_hashes(conn: sqlite3.Connection) -> None:
    """Version 1 stored no leaf hashes; the Merkle log needs one for every entry.

    Runs inside migration 2's transaction: the append-only trigger is lifted for exactly
    this one UPDATE of a column that was NULL, and restored before COMMIT."""
    rows = conn.execute("SELECT * FROM audit_entries WHERE entry_hash IS NULL ORDER BY seq").fetchall()
    if not rows:
        return
    conn.execute("DROP TRIGGER audit_entries_no_update")
    for row in rows:
        conn.execute("UPDATE audit_entries SET entry_hash = ? WHERE seq = ?", (leaf_hash(_audit(row)), row["seq"]))
    conn.execute(
        "CREATE TRIGGER audit_entries_no_update BEFORE UPDATE ON audit_entries"
        " BEGIN SELECT RAISE(ABORT, 'audit_entries is append-only'); END"
    )
SCHEMA_VERSION = MIGRATIONS[-1][0]

# --- errors ------------------------------------------------------------------------------

# Primary result codes that mean "cannot write now", not "this request is wrong".
_UNAVAILABLE = {
    sqlite3.SQLITE_BUSY,
    sqlite3.SQLITE_LOCKED,
    sqlite3.SQLITE_NOMEM,
    sqlite3.SQLITE_READONLY,
    sqlite3.SQLITE_IOERR,
    sqlite3.SQLITE_FULL,
    sqlite3.SQLITE_CANTOPEN,
    sqlite3.SQLITE_PROTOCOL,
    sqlite3.SQLITE_PERM,
}


def map_sqlite_error(exc: sqlite3.Error, where: str) -> StoreError:
    """Translate a sqlite3 error into the store hierarchy (StoreUnavailableError -> 503)."""
    code = getattr(exc, "sqlite_errorcode", None)
    name = getattr(exc, "sqlite_errorname", None) or type(exc).__name__
    if code is not None and code & 0xFF in _UNAVAILABLE:
        return StoreUnavailableError(f"sqlite store {where} unavailable: {name}: {exc}")
    return StoreError(f"sqlite store {where} failed: {name}: {exc}")


# --- time --------------------------------------------------------------------------------
# Fixed-width UTC text sorts in time order, so comparisons and ORDER BY work on it directly.
_TS_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def _ts(moment: datetime) -> str:
    utc = moment if moment.tzinfo is timezone.utc else moment.astimezone(timezone.utc)
    # Integer fields, not strftime: glibc's %Y writes 999 as "999", which is neither fixed
    # width (ordering) nor read back by strptime, and several of these run per message.
    return (f"{utc.year:04d}-{utc.month:02d}-{utc.day:02d}T{utc.hour:02d}:{utc.minute:02d}:{utc.second:02d}"
            f".{utc.microsecond:06d}Z")


def _dt(text: str) -> datetime:
    if len(text) == 27 and text[4] == "-" and text[10] == "T" and text[26] == "Z":
        # What _ts writes: fromisoformat reads it several times faster than strptime.
        return datetime.fromisoformat(text[:26]).replace(tzinfo=timezone.utc)
    year, _, rest = text.partition("-")
    # Rows written before the padding fix may hold a short year ("999-01-01..."): still read.
    return datetime.strptime(f"{int(year):04d}-{rest}", _TS_FORMAT).replace(tzinfo=timezone.utc)


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


# --- row conversion ----------------------------------------------------------------------


def _outbox(row: sqlite3.Row) -> OutboxRecord:
    return rows.outbox_record(row, _dt)


def _inbox(row: sqlite3.Row) -> InboxRecord:
    return rows.inbox_record(row, _dt)


def _audit(row: sqlite3.Row) -> AuditRecord:
    return rows.audit_record(row, _dt)


def _data_key(row: sqlite3.Row) -> DataKey:
    return rows.data_key_record(row, _dt)


def _withdrawal(row: sqlite3.Row) -> Withdrawal:
    return rows.withdrawal_record(row, _dt, json.loads(row["purposes_json"]), json.loads(row["request_ids_json"]))


def _checkpoint(row: sqlite3.Row) -> CheckpointRecord:
    return rows.checkpoint_record(row, _dt)


def _idempotency(row: sqlite3.Row) -> IdempotencyRecord:
    return rows.idempotency_record(row, _dt)


def _insert_idempotency(conn: sqlite3.Connection, record: IdempotencyRecord) -> None:
    conn.execute(
        "INSERT INTO idempotency_keys (key_hash, route, request_hash, created_at, expires_at, status_code,"
        " response_json, completed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (record.key_hash, record.route, record.request_hash, _ts(record.created_at), _ts(record.expires_at),
         record.status_code, record.response_json, None if record.completed_at is None else _ts(record.completed_at)),
    )


# --- connection setup (runs on the worker thread) ----------------------------------------


def _connect(path: Path, read_only: bool, busy_timeout_ms: int) -> sqlite3.Connection:
    if not read_only:
        # The file holds case pseudonyms and the audit log: owner-only from the first byte.
        # SQLite gives the -wal and -shm files the same permissions.
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        except FileExistsError:
            pass  # an existing database (or another process created it a moment ago)
    uri = f"{path.absolute().as_uri()}?mode={'ro' if read_only else 'rw'}"
    # isolation_level=None: the sqlite3 module never opens transactions behind our back;
    # every transaction below is an explicit BEGIN ... COMMIT.
    conn = sqlite3.connect(uri, uri=True, isolation_level=None, timeout=busy_timeout_ms / 1000)
    try:
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        conn.execute("PRAGMA foreign_keys = ON")
        # Freed cell space is zeroed: a shredded data key must not linger in the file's free space.
        conn.execute("PRAGMA secure_delete = ON")
        if not read_only:
            mode = _enable_wal(conn, busy_timeout_ms)
            if mode != "wal":
                raise StoreError(f"sqlite store {path}: could not enable WAL (journal_mode={mode})")
        conn.execute("PRAGMA synchronous = FULL")
        _migrate(conn, path, read_only)
    except BaseException:
        conn.close()
        raise
    return conn


def _enable_wal(conn: sqlite3.Connection, busy_timeout_ms: int) -> str:
    # Switching the journal mode needs an exclusive lock and SQLite may answer SQLITE_BUSY
    # at once, without the busy handler, when two processes open a new file together.
    deadline = time.monotonic() + busy_timeout_ms / 1000
    while True:
        try:
            return str(conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]).lower()
        except sqlite3.OperationalError as exc:
            if getattr(exc, "sqlite_errorcode", 0) & 0xFF != sqlite3.SQLITE_BUSY or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def _migrate(conn: sqlite3.Connection, path: Path, read_only: bool) -> None:
    current = conn.execute("PRAGMA user_version").fetchone()[0]
    if current > SCHEMA_VERSION:
        raise SchemaVersionError(
            f"sqlite store {path} has schema version {current}; this release understands up to {SCHEMA_VERSION}"
        )
    if current == SCHEMA_VERSION:
        return
    if read_only:
        raise StoreError(f"sqlite store {path} needs schema migration {current} -> {SCHEMA_VERSION} but is read-only")
    for version, statements in MIGRATIONS:
        conn.execute("BEGIN IMMEDIATE")
        try:
            # Re-read under the write lock: another process may have migrated meanwhile.
            if conn.execute("PRAGMA user_version").fetchone()[0] < version:
                for statement in statements:
                    if callable(statement):  # a data migration that SQL alone cannot express
                        statement(conn)
                    else:
                        conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {version}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise


_WriteJob = tuple[Callable[[sqlite3.Connection], Any], "asyncio.Future[Any]"]
_ReadJob = tuple[Callable[..., Any], tuple[Any, ...], "asyncio.Future[Any]"]


def _write_batch(conn: sqlite3.Connection, where: str, jobs: list[_WriteJob]) -> list[tuple[bool, Any]]:
    """Run several write jobs in ONE transaction (group commit): one fsync for all of them.

    Each job runs inside its own SAVEPOINT, so a job that raises (a conflict, a bad
    value) is undone alone and the others still commit: every job stays atomic, as if
    it had its own transaction. A database error (disk full, read-only, locked) fails
    the whole batch, because SQLite may already have rolled the transaction back.
    BEGIN IMMEDIATE takes the write lock up front, so no job fails half-way on lock upgrade.
    Returns (ok, result-or-exception) per job, in order.
    """
    outcomes: list[tuple[bool, Any]] = []
    try:
        conn.execute("BEGIN IMMEDIATE")
        for fn, _ in jobs:
            conn.execute("SAVEPOINT job")
            try:
                result = fn(conn)
            except sqlite3.IntegrityError as exc:  # this job's constraint: undo it alone
                conn.execute("ROLLBACK TO job")
                conn.execute("RELEASE job")
                outcomes.append((False, map_sqlite_error(exc, where)))
                continue
            except sqlite3.Error:
                raise
            except Exception as exc:  # noqa: BLE001 - handed to that job's caller
                conn.execute("ROLLBACK TO job")
                conn.execute("RELEASE job")
                outcomes.append((False, exc))
                continue
            conn.execute("RELEASE job")
            outcomes.append((True, result))
        conn.execute("COMMIT")
    except sqlite3.Error as exc:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        error = map_sqlite_error(exc, where)
        return [(False, error) for _ in jobs]
    return outcomes


# --- the store ---------------------------------------------------------------------------


class SQLiteStore(Store):
    """:class:`gateway.store.base.Store` on one SQLite file. Create with :meth:`open`.

    Arguments arrive checked (the public methods of :class:`Store` check them).
    """

    def __init__(self, path: Path, executor: WorkerThread, conn: sqlite3.Connection, clock: Callable[[], datetime]) -> None:
        self._path = path
        self._executor = executor
        self._conn = conn
        self._clock = clock
        self._closed = False
        # Writes waiting for the next group commit, and whether a flush is already queued.
        self._pending: list[_WriteJob] = []
        self._pending_lock = threading.Lock()
        self._flush_queued = False
        # Reads waiting for the worker, and whether a job to run them is already queued.
        self._reads: list[_ReadJob] = []
        self._reads_queued = False

    @classmethod
    async def open(
        cls,
        path: str | os.PathLike[str],
        *,
        read_only: bool = False,
        busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS,
        clock: Callable[[], datetime] | None = None,
    ) -> SQLiteStore:
        """Open (creating and migrating if needed) the database file at ``path``."""
        path = Path(path)
        executor = WorkerThread("store-sqlite")
        try:
            conn = await executor.call(_guarded, str(path), _connect, path, read_only, busy_timeout_ms)
        except BaseException:
            executor.shutdown()
            raise
        return cls(path, executor, conn, clock or _utcnow)

    @property
    def path(self) -> Path:
        return self._path

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(conn, *args)`` on the worker thread (a read, outside any transaction).

        Reads issued together share one trip to the worker and back: a thread hop and its
        wake-ups cost several times more CPU than a point read, and every message needs a
        few reads. Order is kept: each batch is one executor job, like a write flush.
        """
        if self._closed:
            raise StoreUnavailableError(f"sqlite store {self._path} is closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        with self._pending_lock:
            self._reads.append((fn, args, future))
            queue_run = not self._reads_queued
            self._reads_queued = True
        if queue_run:
            self._executor.submit(self._run_reads, loop)
        return await future

    def _run_reads(self, loop: asyncio.AbstractEventLoop) -> None:
        """Worker thread: run every queued read in order, then settle their futures at once."""
        with self._pending_lock:
            jobs, self._reads = self._reads, []
            self._reads_queued = False
        where = str(self._path)
        outcomes: list[tuple[asyncio.Future[Any], bool, Any]] = []
        for fn, args, future in jobs:
            try:
                outcomes.append((future, True, _guarded(where, fn, self._conn, *args)))
            except BaseException as exc:  # noqa: BLE001 - handed to that read's caller
                outcomes.append((future, False, exc))
        loop.call_soon_threadsafe(settle_all, outcomes)

    async def _in_write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` in a write transaction; resolves once it is committed (durable).

        Writes issued while a commit is in progress are committed together by the next
        flush: concurrent handlers share one fsync instead of queueing for one each.
        """
        if self._closed:
            raise StoreUnavailableError(f"sqlite store {self._path} is closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        with self._pending_lock:
            self._pending.append((fn, future))
            queue_flush = not self._flush_queued
            self._flush_queued = True
        if queue_flush:
            self._executor.submit(self._flush, loop)
        return await future

    def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        """Worker thread: commit every pending write in one transaction, then settle their futures."""
        with self._pending_lock:
            jobs, self._pending = self._pending, []
            self._flush_queued = False
        if not jobs:
            return
        try:
            outcomes = _write_batch(self._conn, str(self._path), jobs)
        except BaseException as exc:  # noqa: BLE001 - e.g. the connection was closed under us
            error = StoreUnavailableError(f"sqlite store {self._path} unavailable: {type(exc).__name__}")
            outcomes = [(False, error) for _ in jobs]
        # One wake-up of the event loop for the whole batch, not one per write.
        loop.call_soon_threadsafe(settle_all, [(future, ok, value) for (_, future), (ok, value) in zip(jobs, outcomes)])

    # --- outbox ---------------------------------------------------------------------------

    async def _add_outgoing(self, msg: OutboxEntry, audit: tuple[AuditEntry, ...], claim: bool) -> bool:
        # One process per SQLite file: there is no one to keep a claimed row from.
        at = _ts(msg.created_at)

        def run(conn: sqlite3.Connection) -> bool:
            row = conn.execute(
                "SELECT case_ref, recipient, message_type, envelope FROM outbox WHERE message_id = ?",
                (msg.message_id,),
            ).fetchone()
            if row is not None:
                if (row[0], row[1], row[2], bytes(row[3])) == (msg.case_ref, msg.recipient, msg.message_type, msg.envelope):
                    return False  # the same request again (client retry): already queued
                raise MessageConflictError(f"outbox already holds message {msg.message_id} with different content")
            conn.execute(
                "INSERT INTO outbox (message_id, case_ref, recipient, message_type, envelope, status, attempts,"
                " next_attempt_at, last_error, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, 'queued', 0, ?, NULL, ?, ?)",
                (msg.message_id, msg.case_ref, msg.recipient, msg.message_type, msg.envelope, at, at, at),
            )
            conn.execute(
                "INSERT INTO message_events (outbox_id, status, at) VALUES (?, 'queued', ?)", (msg.message_id, at)
            )
            for entry in audit:
                _insert_audit(conn, entry)
            return True

        return await self._in_write(run)

    async def _due_outgoing(self, now: datetime, limit: int) -> list[OutboxRecord]:
        cutoff = _ts(now)

        def run(conn: sqlite3.Connection) -> list[OutboxRecord]:
            rows = conn.execute(
                "SELECT * FROM outbox WHERE status = 'queued' AND next_attempt_at <= ?"
                " ORDER BY created_at, rowid LIMIT ?",
                (cutoff, limit),
            ).fetchall()
            return [_outbox(r) for r in rows]

        return await self._call(run)

    async def _move_outgoing(
        self, message_id: str, status: str, at: datetime, *, error_code: str | None = None, attempt: bool = False,
        audit: AuditEntry | None = None,
    ) -> bool:
        when = _ts(at)

        def run(conn: sqlite3.Connection) -> bool:
            row = conn.execute("SELECT status FROM outbox WHERE message_id = ?", (message_id,)).fetchone()
            if row is None:
                raise MessageNotFoundError(f"no outgoing message {message_id}")
            if not outgoing_moves_forward(row[0], status):
                return False
            conn.execute(
                "UPDATE outbox SET status = ?, updated_at = ?, attempts = attempts + ?,"
                " last_error = COALESCE(?, last_error) WHERE message_id = ?",
                (status, when, 1 if attempt else 0, error_code, message_id),
            )
            conn.execute(
                "INSERT INTO message_events (outbox_id, status, at, error_code) VALUES (?, ?, ?, ?)",
                (message_id, status, when, error_code),
            )
            if audit is not None:
                _insert_audit(conn, audit)
            return True

        return await self._in_write(run)

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
        due = _ts(next_attempt_at)
        when = _ts(at or require_aware("clock", self._clock()))

        def run(conn: sqlite3.Connection) -> bool:
            row = conn.execute("SELECT status FROM outbox WHERE message_id = ?", (message_id,)).fetchone()
            if row is None:
                raise MessageNotFoundError(f"no outgoing message {message_id}")
            if row[0] != "queued":
                return False  # confirmed or given up meanwhile: a late failure report is stale
            conn.execute(
                "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ?, last_error = ?, updated_at = ?"
                " WHERE message_id = ?",
                (due, error_code, when, message_id),
            )
            return True

        return await self._in_write(run)

    async def _get_outgoing(self, message_id: str) -> OutboxRecord | None:
        def run(conn: sqlite3.Connection) -> OutboxRecord | None:
            row = conn.execute("SELECT * FROM outbox WHERE message_id = ?", (message_id,)).fetchone()
            return None if row is None else _outbox(row)

        return await self._call(run)

    async def _replace_outgoing_body(self, message_id: str, body: bytes, audit: AuditEntry | None) -> bool:
        def run(conn: sqlite3.Connection) -> bool:
            row = conn.execute("SELECT envelope FROM outbox WHERE message_id = ?", (message_id,)).fetchone()
            if row is None:
                raise MessageNotFoundError(f"no outgoing message {message_id}")
            if bytes(row[0]) == body:
                return False
            conn.execute("UPDATE outbox SET envelope = ? WHERE message_id = ?", (body, message_id))
            if audit is not None:
                _insert_audit(conn, audit)
            return True

        # No WAL scrub here (unlike shredding): the old body is sealed to a short-lived key
        # whose destruction makes any lingering page unreadable, and a checkpoint per
        # delivered message would cost every message an fsync of the main file.
        return await self._in_write(run)

    async def _replace_incoming_envelope(self, message_id: str, old: bytes, new: bytes) -> bool:
        def run(conn: sqlite3.Connection) -> bool:
            cur = conn.execute(
                "UPDATE inbox SET envelope = ? WHERE message_id = ? AND envelope = ?", (new, message_id, old))
            return cur.rowcount == 1

        return await self._in_write(run)

    async def _status_trail(self, message_id: str, direction: str) -> list[StatusChange]:
        column = {"outgoing": "outbox_id", "incoming": "inbox_id"}[direction]

        def run(conn: sqlite3.Connection) -> list[StatusChange]:
            rows = conn.execute(
                f"SELECT status, at FROM message_events WHERE {column} = ? ORDER BY id", (message_id,)
            ).fetchall()
            return [StatusChange(r[0], _dt(r[1])) for r in rows]

        return await self._call(run)

    # --- inbox ----------------------------------------------------------------------------

    async def _add_incoming(self, msg: IncomingMessage, audit: AuditEntry | None, data_key: DataKey | None,
                            case_key: DataKey | None) -> bool:
        at = _ts(msg.received_at)

        def run(conn: sqlite3.Connection) -> bool:
            if case_key is not None and _insert_data_key(conn, case_key) != 1:
                raise DataKeyExistsError(f"case {case_key.case_ref} has a live case key, or {case_key.key_id} is taken")
            if data_key is not None and _insert_data_key(conn, data_key) != 1:
                raise DataKeyExistsError(f"data key {data_key.key_id} is already stored")
            # One statement decides "new or duplicate" under the write lock: atomic across
            # coroutines, threads and processes alike.
            cur = conn.execute(
                "INSERT INTO inbox (message_id, sender, message_type, case_ref, envelope, received_at, status, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, 'received', ?) ON CONFLICT (message_id) DO NOTHING",
                (msg.message_id, msg.sender, msg.message_type, msg.case_ref, msg.envelope, at, at),
            )
            if cur.rowcount != 1:
                if data_key is not None:  # the job's savepoint undoes the keys too
                    raise DataKeyExistsError(f"message {msg.message_id} is already in the inbox")
                return False
            conn.execute("INSERT INTO message_events (inbox_id, status, at) VALUES (?, 'received', ?)", (msg.message_id, at))
            if audit is not None:
                _insert_audit(conn, audit)
            return True

        return await self._in_write(run)

    async def _list_incoming(self, limit: int, offset: int, status: str | None) -> list[InboxRecord]:

        def run(conn: sqlite3.Connection) -> list[InboxRecord]:
            where, args = ("WHERE status = ?", [status]) if status is not None else ("", [])
            rows = conn.execute(
                f"SELECT * FROM inbox {where} ORDER BY received_at, rowid LIMIT ? OFFSET ?", (*args, limit, offset)
            ).fetchall()
            return [_inbox(r) for r in rows]

        return await self._call(run)

    async def _get_incoming(self, message_id: str) -> InboxRecord | None:
        def run(conn: sqlite3.Connection) -> InboxRecord | None:
            row = conn.execute("SELECT * FROM inbox WHERE message_id = ?", (message_id,)).fetchone()
            return None if row is None else _inbox(row)

        return await self._call(run)

    async def _set_incoming_status(self, message_id: str, status: str, at: datetime) -> bool:
        when = _ts(at)

        def run(conn: sqlite3.Connection) -> bool:
            row = conn.execute("SELECT status FROM inbox WHERE message_id = ?", (message_id,)).fetchone()
            if row is None:
                raise MessageNotFoundError(f"no incoming message {message_id}")
            if not incoming_moves_forward(row[0], status):
                return False
            conn.execute("UPDATE inbox SET status = ?, updated_at = ? WHERE message_id = ?", (status, when, message_id))
            conn.execute("INSERT INTO message_events (inbox_id, status, at) VALUES (?, ?, ?)", (message_id, status, when))
            return True

        return await self._in_write(run)

    # --- replay guard ---------------------------------------------------------------------

    async def _remember_message_id(self, message_id: str, expires_at: datetime) -> bool:
        until = _ts(expires_at)

        def run(conn: sqlite3.Connection) -> bool:
            cur = conn.execute(
                "INSERT INTO seen_message_ids (message_id, expires_at) VALUES (?, ?) ON CONFLICT (message_id) DO NOTHING",
                (message_id, until),
            )
            return cur.rowcount == 1

        return await self._in_write(run)

    async def _prune_seen(self, now: datetime) -> int:
        cutoff = _ts(now)

        def run(conn: sqlite3.Connection) -> int:
            return conn.execute("DELETE FROM seen_message_ids WHERE expires_at < ?", (cutoff,)).rowcount

        return await self._in_write(run)

    # --- API idempotency keys -------------------------------------------------------------

    async def _claim_idempotency_key(self, claim: IdempotencyRecord) -> IdempotencyRecord:

        def run(conn: sqlite3.Connection) -> IdempotencyRecord:
            # Under the write lock: the check and the insert are one step for every process.
            row = conn.execute("SELECT * FROM idempotency_keys WHERE key_hash = ?", (claim.key_hash,)).fetchone()
            if row is not None and row["expires_at"] > _ts(claim.created_at):
                return _idempotency(row)
            conn.execute("DELETE FROM idempotency_keys WHERE key_hash = ?", (claim.key_hash,))
            _insert_idempotency(conn, claim)
            return claim

        return await self._in_write(run)

    async def _complete_idempotency_key(self, record: IdempotencyRecord) -> IdempotencyRecord:

        def run(conn: sqlite3.Connection) -> IdempotencyRecord:
            row = conn.execute("SELECT * FROM idempotency_keys WHERE key_hash = ?", (record.key_hash,)).fetchone()
            if row is None:
                _insert_idempotency(conn, record)
                return record
            if row["response_json"] is not None or row["request_hash"] != record.request_hash:
                return _idempotency(row)
            conn.execute(
                "UPDATE idempotency_keys SET status_code = ?, response_json = ?, completed_at = ? WHERE key_hash = ?",
                (record.status_code, record.response_json, _ts(record.completed_at or self._clock()), record.key_hash),
            )
            return _idempotency(
                conn.execute("SELECT * FROM idempotency_keys WHERE key_hash = ?", (record.key_hash,)).fetchone())

        return await self._in_write(run)

    async def _release_idempotency_key(self, key_hash: str, request_hash: str) -> bool:
        def run(conn: sqlite3.Connection) -> bool:
            return conn.execute(
                "DELETE FROM idempotency_keys WHERE key_hash = ? AND request_hash = ? AND response_json IS NULL",
                (key_hash, request_hash),
            ).rowcount == 1

        return await self._in_write(run)

    async def _prune_idempotency_keys(self, now: datetime) -> int:
        cutoff = _ts(now)

        def run(conn: sqlite3.Connection) -> int:
            return conn.execute("DELETE FROM idempotency_keys WHERE expires_at < ?", (cutoff,)).rowcount

        return await self._in_write(run)

    # --- workspace sessions ---------------------------------------------------------------

    async def _add_web_session(self, session: WebSession) -> None:
        def run(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO web_sessions (id_hash, user_name, role, created_at, last_seen_at, expires_at, credential)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (session.id_hash, session.user_name, session.role, _ts(session.created_at),
                 _ts(session.last_seen_at), _ts(session.expires_at), session.credential),
            )

        await self._in_write(run)

    async def _get_web_session(self, id_hash: str) -> WebSession | None:
        def run(conn: sqlite3.Connection) -> WebSession | None:
            row = conn.execute("SELECT * FROM web_sessions WHERE id_hash = ?", (id_hash,)).fetchone()
            return None if row is None else rows.web_session(row, _dt)

        return await self._call(run)

    async def _touch_web_session(self, id_hash: str, at: datetime) -> bool:
        when = _ts(at)

        def run(conn: sqlite3.Connection) -> bool:
            found = conn.execute("SELECT 1 FROM web_sessions WHERE id_hash = ?", (id_hash,)).fetchone()
            conn.execute("UPDATE web_sessions SET last_seen_at = ? WHERE id_hash = ? AND last_seen_at < ?",
                         (when, id_hash, when))
            return found is not None

        return await self._in_write(run)

    async def _delete_web_session(self, id_hash: str) -> bool:
        def run(conn: sqlite3.Connection) -> bool:
            return conn.execute("DELETE FROM web_sessions WHERE id_hash = ?", (id_hash,)).rowcount == 1

        return await self._in_write(run)

    async def _prune_web_sessions(self, idle_before: datetime, now: datetime) -> int:
        idle, cutoff = _ts(idle_before), _ts(now)

        def run(conn: sqlite3.Connection) -> int:
            return conn.execute("DELETE FROM web_sessions WHERE last_seen_at < ? OR expires_at < ?",
                                (idle, cutoff)).rowcount

        return await self._in_write(run)

    # --- cases ----------------------------------------------------------------------------

    async def _upsert_case(self, case: Case) -> None:

        def run(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO cases (case_ref, counterpart_agency, state, updated_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (case_ref) DO UPDATE SET counterpart_agency = excluded.counterpart_agency,"
                " state = excluded.state, updated_at = excluded.updated_at",
                (case.case_ref, case.counterpart_agency, case.state, _ts(case.updated_at)),
            )

        await self._in_write(run)

    async def _get_case(self, case_ref: str) -> Case | None:
        def run(conn: sqlite3.Connection) -> Case | None:
            row = conn.execute("SELECT * FROM cases WHERE case_ref = ?", (case_ref,)).fetchone()
            if row is None:
                return None
            return Case(row["case_ref"], row["counterpart_agency"], row["state"], _dt(row["updated_at"]))

        return await self._call(run)

    # --- audit ----------------------------------------------------------------------------

    async def _append_audit(self, entry: AuditEntry) -> int:

        def run(conn: sqlite3.Connection) -> int:
            return _insert_audit(conn, entry)

        return await self._in_write(run)

    async def _read_audit(self, from_seq: int, limit: int) -> list[AuditRecord]:

        def run(conn: sqlite3.Connection) -> list[AuditRecord]:
            rows = conn.execute(
                "SELECT * FROM audit_entries WHERE seq >= ? ORDER BY seq LIMIT ?", (from_seq, limit)
            ).fetchall()
            return [_audit(r) for r in rows]

        return await self._call(run)

    async def _query_audit(self, query: AuditQuery, limit: int) -> list[AuditRecord]:
        clauses: list[str] = ["seq > ?"]
        args: list[Any] = [query.after_seq]
        for column, value in (("case_ref", query.case_ref), ("agency", query.agency)):
            if value is not None:
                clauses.append(f"{column} = ?")
                args.append(value)
        if query.event_types:
            clauses.append(f"event_type IN ({', '.join('?' * len(query.event_types))})")
            args.extend(query.event_types)
        if query.since is not None:
            clauses.append("at >= ?")
            args.append(_ts(query.since))
        if query.until is not None:
            clauses.append("at < ?")
            args.append(_ts(query.until))

        def run(conn: sqlite3.Connection) -> list[AuditRecord]:
            rows = conn.execute(
                f"SELECT * FROM audit_entries WHERE {' AND '.join(clauses)} ORDER BY seq LIMIT ?", (*args, limit)
            ).fetchall()
            return [_audit(r) for r in rows]

        return await self._call(run)

    async def audit_size(self) -> int:
        return await self._call(lambda conn: int(conn.execute("SELECT COALESCE(MAX(seq), 0) FROM audit_entries").fetchone()[0]))

    async def _audit_hashes(self, from_seq: int, limit: int) -> list[bytes]:

        def run(conn: sqlite3.Connection) -> list[bytes]:
            rows = conn.execute(
                "SELECT entry_hash FROM audit_entries WHERE seq >= ? ORDER BY seq LIMIT ?", (from_seq, limit)
            ).fetchall()
            return [bytes(r[0]) for r in rows]

        return await self._call(run)

    async def _audit_nodes(self, ids: list[tuple[int, int]]) -> dict[tuple[int, int], bytes]:

        def run(conn: sqlite3.Connection) -> dict[tuple[int, int], bytes]:
            # One read transaction, so every hash comes from one state of the log. A few
            # dozen primary-key lookups with two cached statements are cheaper here than
            # compiling an IN list of a different length for every proof.
            found: dict[tuple[int, int], bytes] = {}
            conn.execute("BEGIN")
            try:
                for level, idx in ids:
                    if level == 0:
                        row = conn.execute("SELECT entry_hash FROM audit_entries WHERE seq = ?", (idx + 1,)).fetchone()
                    else:
                        row = conn.execute("SELECT hash FROM audit_nodes WHERE level = ? AND idx = ?", (level, idx)).fetchone()
                    if row is not None and row[0] is not None:
                        found[(level, idx)] = bytes(row[0])
            finally:
                conn.execute("COMMIT")
            return found

        return await self._call(run)

    # --- data keys ------------------------------------------------------------------------

    async def _add_data_key(self, key: DataKey) -> DataKey:

        def run(conn: sqlite3.Connection) -> DataKey:
            _insert_data_key(conn, key)
            if key.kind == "case":
                row = conn.execute(
                    "SELECT * FROM data_keys WHERE case_ref = ? AND kind = 'case' AND wrapped IS NOT NULL",
                    (key.case_ref,),
                ).fetchone()
            else:
                row = conn.execute("SELECT * FROM data_keys WHERE key_id = ?", (key.key_id,)).fetchone()
            if row is None:  # the same case key id exists, already shredded: never resurrect it
                raise StoreError(f"data key {key.key_id} exists and was shredded")
            return _data_key(row)  # a shredded message key comes back shredded (wrapped None)

        return await self._in_write(run)

    async def _get_data_key(self, key_id: str) -> DataKey | None:
        def run(conn: sqlite3.Connection) -> DataKey | None:
            row = conn.execute("SELECT * FROM data_keys WHERE key_id = ?", (key_id,)).fetchone()
            return None if row is None else _data_key(row)

        return await self._call(run)

    async def _live_case_key(self, case_ref: str) -> DataKey | None:
        def run(conn: sqlite3.Connection) -> DataKey | None:
            row = conn.execute(
                "SELECT * FROM data_keys WHERE case_ref = ? AND kind = 'case' AND wrapped IS NOT NULL", (case_ref,)
            ).fetchone()
            return None if row is None else _data_key(row)

        return await self._call(run)

    async def _shred_data_keys(
        self, key_ids: list[str], reason: str, at: datetime, audit: tuple[AuditEntry, ...]
    ) -> list[str]:
        when = _ts(at)
        ids = list(dict.fromkeys(key_ids))

        def run(conn: sqlite3.Connection) -> list[str]:
            shredded = []
            for key_id in ids:
                cur = conn.execute(
                    "UPDATE data_keys SET wrapped = NULL, shredded_at = ?, shred_reason = ?"
                    " WHERE key_id = ? AND wrapped IS NOT NULL",
                    (when, reason, key_id),
                )
                if cur.rowcount == 1:
                    shredded.append(key_id)
            if shredded:
                for entry in audit:
                    _insert_audit(conn, entry)
            return shredded

        shredded = await self._in_write(run)
        if shredded:
            await self._scrub_wal()
        return shredded

    async def _scrub_wal(self) -> None:
        # The WAL still holds page images with the old wrapped keys until a checkpoint copies
        # the zeroed pages back; TRUNCATE then empties the file. The shredding is committed
        # either way, so a failure here is reported, never raised to the caller.
        try:
            busy, _, _ = await self._call(lambda conn: conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone())
        except StoreError as exc:
            busy, reason = 1, exc.code
        else:
            reason = "reader_active"
        if busy:
            log.warning("store.wal_scrub_incomplete", reason=reason)

    async def _case_keys_wrapped_by(self, prefix: bytes, limit: int) -> list[DataKey]:
        def run(conn: sqlite3.Connection) -> list[DataKey]:
            rows = conn.execute(
                "SELECT * FROM data_keys WHERE kind = 'case' AND wrapped IS NOT NULL"
                " AND substr(wrapped, 1, ?) = ? ORDER BY key_id LIMIT ?",
                (len(prefix), prefix, limit),
            ).fetchall()
            return [_data_key(r) for r in rows]

        return await self._call(run)

    async def _rewrap_data_key(self, key_id: str, old: bytes, new: bytes) -> bool:
        def run(conn: sqlite3.Connection) -> bool:
            cur = conn.execute(
                "UPDATE data_keys SET wrapped = ? WHERE key_id = ? AND wrapped = ?", (new, key_id, old))
            return cur.rowcount == 1

        # The old wrapped bytes are sealed to the key about to be destroyed: no WAL scrub needed.
        return await self._in_write(run)

    async def _case_key_ids(self, case_ref: str) -> list[str]:
        def run(conn: sqlite3.Connection) -> list[str]:
            rows = conn.execute(
                "SELECT key_id FROM data_keys WHERE case_ref = ? ORDER BY kind = 'message', created_at, rowid",
                (case_ref,),
            ).fetchall()
            return [r[0] for r in rows]

        return await self._call(run)

    async def _retention_due(self, message_type: str, received_before: datetime, limit: int) -> list[InboxRecord]:
        cutoff = _ts(received_before)

        def run(conn: sqlite3.Connection) -> list[InboxRecord]:
            rows = conn.execute(
                "SELECT inbox.* FROM inbox JOIN data_keys ON data_keys.key_id = inbox.message_id"
                " WHERE inbox.message_type = ? AND inbox.received_at < ? AND data_keys.wrapped IS NOT NULL"
                " ORDER BY inbox.received_at, inbox.rowid LIMIT ?",
                (message_type, cutoff, limit),
            ).fetchall()
            return [_inbox(r) for r in rows]

        return await self._call(run)

    async def _list_outgoing(self, limit: int, offset: int, message_type: str | None) -> list[OutboxRecord]:
        def run(conn: sqlite3.Connection) -> list[OutboxRecord]:
            where, args = ("WHERE message_type = ?", [message_type]) if message_type is not None else ("", [])
            # No index orders the outbox by time: sort the row ids only, not the envelopes.
            rows = conn.execute(
                f"SELECT * FROM outbox WHERE rowid IN (SELECT rowid FROM outbox {where} ORDER BY created_at, rowid"
                " LIMIT ? OFFSET ?) ORDER BY created_at, rowid", (*args, limit, offset)
            ).fetchall()
            return [_outbox(r) for r in rows]

        return await self._call(run)

    async def _list_outgoing_for_case(self, case_ref: str) -> list[OutboxRecord]:
        def run(conn: sqlite3.Connection) -> list[OutboxRecord]:
            rows = conn.execute("SELECT * FROM outbox WHERE case_ref = ? ORDER BY created_at, rowid", (case_ref,)).fetchall()
            return [_outbox(r) for r in rows]

        return await self._call(run)

    async def _list_incoming_for_case(self, case_ref: str) -> list[InboxRecord]:
        def run(conn: sqlite3.Connection) -> list[InboxRecord]:
            rows = conn.execute("SELECT * FROM inbox WHERE case_ref = ? ORDER BY received_at, rowid", (case_ref,)).fetchall()
            return [_inbox(r) for r in rows]

        return await self._call(run)

    # --- consent withdrawals ----------------------------------------------------------------

    async def _add_withdrawal(self, withdrawal: Withdrawal, audit: AuditEntry | None) -> bool:
        w = withdrawal

        def run(conn: sqlite3.Connection) -> bool:
            cur = conn.execute(
                "INSERT INTO withdrawals (message_id, direction, case_ref, counterpart, withdrawn_at, scope,"
                " purposes_json, request_ids_json, recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT DO NOTHING",
                (w.message_id, w.direction, w.case_ref, w.counterpart, _ts(w.withdrawn_at), w.scope,
                 json.dumps(list(w.purposes)), json.dumps(list(w.request_message_ids)), _ts(w.recorded_at)),
            )
            if cur.rowcount != 1:
                return False
            if audit is not None:
                _insert_audit(conn, audit)
            return True

        return await self._in_write(run)

    async def _withdrawals_for_case(self, case_ref: str) -> list[Withdrawal]:
        def run(conn: sqlite3.Connection) -> list[Withdrawal]:
            rows = conn.execute(
                "SELECT * FROM withdrawals WHERE case_ref = ? ORDER BY withdrawn_at, rowid", (case_ref,)
            ).fetchall()
            return [_withdrawal(r) for r in rows]

        return await self._call(run)

    # --- the agency directory ---------------------------------------------------------------

    async def _accept_directory(self, record: DirectoryRecord, audit: AuditEntry | None) -> bool:
        r = record

        def run(conn: sqlite3.Connection) -> bool:
            # One writer thread: the check and the insert cannot interleave with another write.
            (highest,) = conn.execute("SELECT COALESCE(MAX(serial), 0) FROM directories").fetchone()
            if r.serial <= highest:
                return False
            conn.execute(
                "INSERT INTO directories (serial, digest, signed, issued, accepted_at, source) VALUES (?, ?, ?, ?, ?, ?)",
                (r.serial, r.digest, r.signed, _ts(r.issued), _ts(r.accepted_at), r.source),
            )
            if audit is not None:
                _insert_audit(conn, audit)
            return True

        return await self._in_write(run)

    async def _current_directory(self) -> DirectoryRecord | None:
        def run(conn: sqlite3.Connection) -> DirectoryRecord | None:
            row = conn.execute("SELECT * FROM directories ORDER BY serial DESC LIMIT 1").fetchone()
            return None if row is None else rows.directory_record(row, _dt)

        return await self._call(run)

    # --- checkpoints ------------------------------------------------------------------------

    async def _add_checkpoint(self, checkpoint: CheckpointRecord) -> bool:
        c = checkpoint

        def run(conn: sqlite3.Connection) -> bool:
            cur = conn.execute(
                "INSERT INTO checkpoints (origin, tree_size, root_hash, signed_at, note, recorded_at)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (c.origin, c.tree_size, c.root_hash, _ts(c.signed_at), c.note, _ts(c.recorded_at)),
            )
            return cur.rowcount == 1

        return await self._in_write(run)

    async def _latest_checkpoint(self, origin: str) -> CheckpointRecord | None:
        def run(conn: sqlite3.Connection) -> CheckpointRecord | None:
            row = conn.execute(
                "SELECT * FROM checkpoints WHERE origin = ? ORDER BY tree_size DESC, signed_at DESC, rowid DESC LIMIT 1",
                (origin,),
            ).fetchone()
            return None if row is None else _checkpoint(row)

        return await self._call(run)

    async def _list_checkpoints(
        self, origin: str, min_size: int, limit: int, newest_first: bool
    ) -> list[CheckpointRecord]:
        order = "tree_size DESC, signed_at DESC, rowid DESC" if newest_first else "tree_size, signed_at, rowid"

        def run(conn: sqlite3.Connection) -> list[CheckpointRecord]:
            rows = conn.execute(
                f"SELECT * FROM checkpoints WHERE origin = ? AND tree_size >= ? ORDER BY {order} LIMIT ?",
                (origin, min_size, limit),
            ).fetchall()
            return [_checkpoint(r) for r in rows]

        return await self._call(run)

    # --- lifecycle ------------------------------------------------------------------------

    async def ping(self, timeout: float = 2.0) -> bool:
        if self._closed:
            return False
        try:
            return await asyncio.wait_for(self._call(lambda conn: conn.execute("SELECT 1").fetchone()[0] == 1), timeout)
        except Exception:
            return False

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True  # refuse new work; work already queued runs first (FIFO)
        try:
            await self._executor.call(self._conn.close)
        finally:
            self._executor.shutdown()


def _insert_data_key(conn: sqlite3.Connection, key: DataKey) -> int:
    """Insert ``key`` unless its id (or, for a case key, a live key of its case) is taken: rows inserted."""
    return conn.execute(
        "INSERT INTO data_keys (key_id, case_ref, kind, parent_key_id, wrapped, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        (key.key_id, key.case_ref, key.kind, key.parent_key_id, key.wrapped, _ts(key.created_at)),
    ).rowcount


def _guarded(where: str, fn: Callable[..., T], *args: Any) -> T:
    """Run on the worker thread; sqlite3 errors leave it only as StoreError."""
    try:
        return fn(*args)
    except sqlite3.Error as exc:
        raise map_sqlite_error(exc, where) from exc
    except OSError as exc:  # creating the file: missing directory, no permission, disk full
        raise StoreUnavailableError(f"sqlite store {where} unavailable: {exc.strerror}") from exc


def _insert_audit(conn: sqlite3.Connection, entry: AuditEntry) -> int:
    """Insert one audit entry inside the caller's transaction; return its seq."""
    cur = conn.execute(
        "INSERT INTO audit_entries (at, event_type, actor, case_ref, message_id, detail_json, entry_hash, agency)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (_ts(entry.at), entry.event_type, entry.actor, entry.case_ref, entry.message_id, entry.detail_json,
         entry.entry_hash, entry.agency),
    )
    if cur.lastrowid is None:  # cannot happen: an INSERT of one row sets it
        raise StoreError("sqlite store: the audit entry got no seq")
    if entry.entry_hash is None:  # cannot happen: AuditEntry computes it
        raise StoreError("sqlite store: the audit entry has no leaf hash")
    _insert_audit_nodes(conn, cur.lastrowid - 1, entry.entry_hash)
    return cur.lastrowid


def _insert_audit_nodes(conn: sqlite3.Connection, index: int, entry_hash: bytes) -> None:
    """Store the perfect subtrees that leaf ``index`` completes, in the append's transaction
    (a rolled-back append leaves none). Their left children are read back from this
    transaction's view, never from a cache: another process may share the file."""
    # merkle.completed_nodes, unrolled: this runs on the worker thread for every append,
    # and Python held there is time the event loop waits for the GIL.
    h, i, level = entry_hash, index, 0
    while i & 1:  # an even index (half the appends) completes nothing
        h = merkle.node_hash(_stored_node(conn, level, i - 1), h)
        level, i = level + 1, i >> 1
        conn.execute("INSERT INTO audit_nodes (level, idx, hash) VALUES (?, ?, ?)", (level, i, h))


def _stored_node(conn: sqlite3.Connection, level: int, idx: int) -> bytes:
    """One stored subtree hash; StoreError if it is missing (the tree would be wrong)."""
    if level == 0:
        row = conn.execute("SELECT entry_hash FROM audit_entries WHERE seq = ?", (idx + 1,)).fetchone()
    else:
        row = conn.execute("SELECT hash FROM audit_nodes WHERE level = ? AND idx = ?", (level, idx)).fetchone()
    if row is None or row[0] is None:
        raise StoreError(f"sqlite store: Merkle subtree ({level}, {idx}) of the audit log is missing")
    return bytes(row[0])
