"""Durable state of the gateway: outbox, inbox, replay guard, cases, audit entries.

Use :func:`open_store` with a URL; code against :class:`Store`. Backends: ``sqlite``
(embedded default) and ``postgresql`` (``gateway/store/postgres.py``, asyncpg: one store
shared by several gateway processes). Both pass the same conformance suite,
``tests/support/store_conformance.py``. See docs/store.md and deploy/postgres.md.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, Callable
from urllib.parse import parse_qsl, unquote

from gateway.store.base import (
    INCOMING_RANK,
    INCOMING_STATUSES,
    OUTGOING_RANK,
    OUTGOING_STATUSES,
    AuditEntry,
    AuditQuery,
    AuditRecord,
    Case,
    CheckpointRecord,
    DataKey,
    Direction,
    DirectoryRecord,
    IdempotencyRecord,
    IncomingMessage,
    IncomingStatus,
    InboxRecord,
    MessageConflictError,
    DataKeyExistsError,
    MessageNotFoundError,
    OutboxEntry,
    OutboxRecord,
    OutgoingMessage,
    OutgoingStatus,
    SchemaVersionError,
    StatusChange,
    Store,
    StoreArgumentError,
    StoreError,
    StoreUnavailableError,
    UnsupportedStoreURLError,
    WebSession,
    Withdrawal,
    incoming_moves_forward,
    outgoing_moves_forward,
)

if TYPE_CHECKING:
    from gateway.store.sqlite import SQLiteStore


def __getattr__(name: str) -> Any:
    """``SQLiteStore`` on first use: importing the store's types must not load a backend."""
    if name == "SQLiteStore":
        from gateway.store.sqlite import SQLiteStore

        return SQLiteStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = [
    "INCOMING_RANK",
    "INCOMING_STATUSES",
    "OUTGOING_RANK",
    "OUTGOING_STATUSES",
    "AuditEntry",
    "AuditQuery",
    "AuditRecord",
    "Case",
    "CheckpointRecord",
    "DataKey",
    "DirectoryRecord",
    "Direction",
    "IdempotencyRecord",
    "IncomingMessage",
    "IncomingStatus",
    "InboxRecord",
    "MessageConflictError",
    "DataKeyExistsError",
    "MessageNotFoundError",
    "OutboxEntry",
    "OutboxRecord",
    "OutgoingMessage",
    "OutgoingStatus",
    "SQLiteStore",
    "SchemaVersionError",
    "StatusChange",
    "Store",
    "StoreArgumentError",
    "StoreError",
    "StoreUnavailableError",
    "UnsupportedStoreURLError",
    "WebSession",
    "Withdrawal",
    "incoming_moves_forward",
    "open_store",
    "outgoing_moves_forward",
]

_SQLITE_OPTIONS = {"mode", "busy_timeout_ms"}


async def open_store(url: str, *, clock: Callable[[], datetime] | None = None) -> Store:
    """Open the store named by ``url``.

    * ``sqlite:///relative/path.db`` or ``sqlite:////absolute/path.db`` (SQLAlchemy's
      convention: the path is everything after ``sqlite:///``). Options as a query:
      ``?mode=ro`` opens read-only, ``?busy_timeout_ms=5000`` bounds waits for the lock.
    * ``postgresql://user[:password]@host:port/database`` (or ``postgres://``): the shared
      store on an asyncpg pool (``gateway/store/postgres.py``). Options: ``pool_min``,
      ``pool_max``, ``acquire_timeout_ms``, ``connect_timeout_ms``, ``statement_timeout_ms``,
      ``lock_timeout_ms``, ``outbox_lease_s``, ``mode=ro``, ``search_path``,
      ``application_name`` and asyncpg's TLS options (``sslmode``, ``sslrootcert``, ...).

    ``clock`` supplies "now" where a method's ``at`` is optional; default: UTC wall clock.
    """
    # Error messages name the scheme only: a database URL may carry a password.
    scheme = url.split(":", 1)[0].lower() if ":" in url else ""
    if scheme == "sqlite":
        if not url.startswith("sqlite:///"):
            raise UnsupportedStoreURLError(
                "sqlite store URL must be sqlite:///path/to/file.db (an in-memory database "
                "is not supported: WAL and durability need a file)"
            )
        raw_path, _, query = url[len("sqlite:///") :].partition("?")
        path = unquote(raw_path)
        if not path:
            raise UnsupportedStoreURLError("sqlite store URL has no file path")
        options = dict(parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query)))
        unknown = set(options) - _SQLITE_OPTIONS
        if unknown:
            raise UnsupportedStoreURLError(f"unknown sqlite store URL options: {sorted(unknown)}")
        mode = options.get("mode", "rw")
        if mode not in {"rw", "ro"}:
            raise UnsupportedStoreURLError("sqlite store URL option mode must be 'rw' or 'ro'")
        try:
            busy_timeout_ms = int(options.get("busy_timeout_ms", "5000"))
        except ValueError:
            raise UnsupportedStoreURLError("sqlite store URL option busy_timeout_ms must be an integer") from None
        from gateway.store.sqlite import SQLiteStore

        return await SQLiteStore.open(path, read_only=mode == "ro", busy_timeout_ms=busy_timeout_ms, clock=clock)
    if scheme in {"postgresql", "postgres"}:
        # Imported here so that a SQLite-only gateway never loads the PostgreSQL driver.
        from gateway.store.postgres import PostgresStore

        return await PostgresStore.from_url(url, clock=clock)
    raise UnsupportedStoreURLError(f"unsupported store URL scheme {scheme!r}; expected sqlite or postgresql")
