"""SQLite store: the shared conformance suite, plus what only SQLite has (pragmas, file
permissions, lock timeouts, the worker thread)."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
from datetime import timedelta
from pathlib import Path

import pytest
from tests.support.store_conformance import (
    T0, StoreConformance, assert_nodes_match_leaves, audit, directory_record, incoming, outgoing,
)

from gateway.errors import GatewayError
from gateway.store import (
    SchemaVersionError,
    SQLiteStore,
    Store,
    StoreError,
    StoreUnavailableError,
    UnsupportedStoreURLError,
    open_store,
)
from gateway.store.sqlite import SCHEMA_VERSION


class SQLiteHarness:
    def __init__(self, path: Path, **options: str) -> None:
        self.path = path
        self.query = "&".join(f"{k}={v}" for k, v in options.items())

    def url(self, *extra: str) -> str:
        query = "&".join(q for q in (self.query, *extra) if q)
        return f"sqlite:///{self.path}" + (f"?{query}" if query else "")

    async def open(self) -> Store:
        return await open_store(self.url())

    async def open_read_only(self) -> Store:
        return await open_store(self.url("mode=ro"))


class TestSQLiteStore(StoreConformance):
    @pytest.fixture
    def harness(self, tmp_path: Path) -> SQLiteHarness:
        return SQLiteHarness(tmp_path / "gateway.db")


@pytest.fixture
async def sqlite_store(tmp_path: Path):
    store = await SQLiteStore.open(tmp_path / "gateway.db")
    yield store
    await store.close()


def _on_worker(store: SQLiteStore, fn):
    return store._call(fn)  # backend-specific tests may look inside


# --- settings ------------------------------------------------------------------------------


async def test_durability_pragmas(sqlite_store: SQLiteStore) -> None:
    def pragmas(conn: sqlite3.Connection) -> tuple:
        return tuple(
            conn.execute(f"PRAGMA {name}").fetchone()[0]
            for name in ("journal_mode", "synchronous", "foreign_keys", "busy_timeout", "user_version")
        )

    # synchronous: 2 = FULL (the WAL is fsynced at every commit).
    assert await _on_worker(sqlite_store, pragmas) == ("wal", 2, 1, 5000, SCHEMA_VERSION)
    assert isinstance(sqlite_store, Store)


async def test_all_sqlite_work_runs_on_one_worker_thread(sqlite_store: SQLiteStore) -> None:
    idents = await asyncio.gather(*(_on_worker(sqlite_store, lambda conn: threading.get_ident()) for _ in range(20)))
    assert len(set(idents)) == 1
    assert idents[0] != threading.get_ident()


async def test_new_database_file_is_owner_only(tmp_path: Path) -> None:
    store = await SQLiteStore.open(tmp_path / "gateway.db")
    await store.add_incoming(incoming())
    for name in ("gateway.db", "gateway.db-wal", "gateway.db-shm"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o600, name
    await store.close()


async def test_foreign_keys_hold_events_to_messages(sqlite_store: SQLiteStore) -> None:
    def orphan_event(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO message_events (outbox_id, status, at) VALUES ('nope', 'sent', 'x')")

    with pytest.raises(StoreError):
        await _on_worker(sqlite_store, orphan_event)


async def test_audit_rows_cannot_be_changed_even_with_sql(sqlite_store: SQLiteStore) -> None:
    seq = await sqlite_store.append_audit(audit(1))
    for sql in ("UPDATE audit_entries SET actor = 'mallory'", "DELETE FROM audit_entries"):
        with pytest.raises(StoreError, match="append-only"):
            await _on_worker(sqlite_store, lambda conn, sql=sql: conn.execute(sql))
    assert [r.actor for r in await sqlite_store.read_audit(seq, 10)] == ["worker"]


async def test_accepted_directories_cannot_be_changed_even_with_sql(sqlite_store: SQLiteStore) -> None:
    assert await sqlite_store.accept_directory(directory_record(9))
    # Lowering the recorded serial would reopen the door to a rollback.
    for sql in ("UPDATE directories SET serial = 1", "DELETE FROM directories"):
        with pytest.raises(StoreError, match="append-only"):
            await _on_worker(sqlite_store, lambda conn, sql=sql: conn.execute(sql))
    assert (await sqlite_store.current_directory()).serial == 9


# --- failure modes -------------------------------------------------------------------------


async def test_disk_full_is_unavailable_and_writes_nothing(sqlite_store: SQLiteStore) -> None:
    # max_page_count makes SQLite report SQLITE_FULL exactly as a full disk would.
    await _on_worker(sqlite_store, lambda conn: conn.execute("PRAGMA max_page_count = 1"))
    big = incoming(envelope=b"x" * 256 * 1024)
    with pytest.raises(StoreUnavailableError, match="SQLITE_FULL"):
        await sqlite_store.add_incoming(big)
    assert await sqlite_store.get_incoming(big.message_id) is None
    with pytest.raises(StoreUnavailableError):
        await sqlite_store.append_audit(audit(1, detail_json='{"pad": "' + "x" * 256 * 1024 + '"}'))
    await _on_worker(sqlite_store, lambda conn: conn.execute("PRAGMA max_page_count = 1073741823"))
    assert await sqlite_store.add_incoming(big) is True
    assert await sqlite_store.append_audit(audit(2)) == 1  # the failed append left no gap


async def test_locked_too_long_is_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "gateway.db"
    store = await open_store(f"sqlite:///{path}?busy_timeout_ms=100")
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        with pytest.raises(StoreUnavailableError, match="SQLITE_BUSY"):
            await asyncio.wait_for(store.add_outgoing(outgoing()), timeout=5)
        assert await store.ping() is True  # readers are not blocked in WAL mode
        other.execute("ROLLBACK")
        await store.add_outgoing(outgoing())
    finally:
        other.close()
        await store.close()


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root ignores file permissions")
async def test_read_only_file_permissions_are_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "db" / "gateway.db"
    path.parent.mkdir()
    store = await SQLiteStore.open(path)
    await store.close()
    path.chmod(0o444)
    path.parent.chmod(0o555)
    try:
        with pytest.raises(StoreUnavailableError):
            store = await SQLiteStore.open(path)
            await store.add_incoming(incoming())
    finally:
        path.parent.chmod(0o755)
        path.chmod(0o644)


def test_sqlite_error_mapping() -> None:
    from gateway.store.sqlite import map_sqlite_error

    def error(code: int) -> sqlite3.OperationalError:
        exc = sqlite3.OperationalError("boom")
        exc.sqlite_errorcode = code
        exc.sqlite_errorname = "X"
        return exc

    assert isinstance(map_sqlite_error(error(sqlite3.SQLITE_FULL), "t"), StoreUnavailableError)
    assert isinstance(map_sqlite_error(error(sqlite3.SQLITE_READONLY_DBMOVED), "t"), StoreUnavailableError)
    assert isinstance(map_sqlite_error(error(sqlite3.SQLITE_IOERR_FSYNC), "t"), StoreUnavailableError)
    corrupt = map_sqlite_error(error(sqlite3.SQLITE_CORRUPT), "t")
    assert isinstance(corrupt, StoreError) and not isinstance(corrupt, StoreUnavailableError)
    assert isinstance(corrupt, GatewayError)


# --- schema versions -----------------------------------------------------------------------


async def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "gateway.db"
    await (await SQLiteStore.open(path)).close()
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(SchemaVersionError):
        await SQLiteStore.open(path)


async def test_read_only_open_of_an_unmigrated_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "empty.db"
    sqlite3.connect(path).close()
    with pytest.raises(StoreError, match="read-only"):
        await SQLiteStore.open(path, read_only=True)


async def test_concurrent_first_opens_migrate_once(tmp_path: Path) -> None:
    path = tmp_path / "gateway.db"
    stores = await asyncio.gather(*(SQLiteStore.open(path) for _ in range(4)))
    try:
        assert await stores[0].add_incoming(incoming()) is True
    finally:
        for store in stores:
            await store.close()


# --- URLs ----------------------------------------------------------------------------------


async def test_relative_sqlite_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "var").mkdir()
    store = await open_store("sqlite:///var/gw.db")  # three slashes: relative, as in SQLAlchemy
    await store.close()
    assert (tmp_path / "var" / "gw.db").exists()


@pytest.mark.parametrize(
    "url, match",
    [
        ("sqlite://:memory:", "in-memory"),
        ("sqlite:///", "no file path"),
        ("sqlite:///x.db?journal=off", "unknown"),
        ("sqlite:///x.db?mode=rwc", "mode"),
        ("mysql://db/gateway", "unsupported"),
    ],
)
async def test_bad_store_urls(url: str, match: str) -> None:
    with pytest.raises(UnsupportedStoreURLError, match=match) as info:
        await open_store(url)
    assert "secret" not in str(info.value)


async def test_missing_directory_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(StoreUnavailableError):
        await open_store(f"sqlite:///{tmp_path}/missing/gw.db")


async def test_clock_fills_optional_times(tmp_path: Path) -> None:
    later = T0 + timedelta(hours=3)
    store = await open_store(f"sqlite:///{tmp_path}/gw.db", clock=lambda: later)
    try:
        msg = outgoing()
        await store.add_outgoing(msg)
        await store.mark_failed(msg.message_id, "max_attempts")
        assert (await store.get_outgoing(msg.message_id)).updated_at == later
    finally:
        await store.close()


async def test_version_1_audit_entries_get_leaf_hashes_on_upgrade(tmp_path: Path) -> None:
    import sqlite3 as sq

    from gateway.audit import merkle
    from gateway.audit.leaf import leaf_hash
    from gateway.store import sqlite as backend

    path = tmp_path / "v1.db"
    conn = sq.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    for statement in backend.MIGRATIONS[0][1]:
        conn.execute(statement)
    conn.execute("PRAGMA user_version = 1")
    for n in range(3):  # what release 1 wrote: no entry_hash
        conn.execute("INSERT INTO audit_entries (at, event_type, actor, case_ref, message_id, detail_json)"
                     " VALUES (?, 'message.sent', 'system', 'case-7f3a9c01', NULL, ?)",
                     (f"2026-01-0{n + 1}T00:00:00.000000Z", f'{{"n": {n}}}'))
    conn.close()

    store = await open_store(f"sqlite:///{path}")
    try:
        records = await store.read_audit(1, 10)
        assert [r.entry_hash for r in records] == [leaf_hash(r) for r in records]
        assert merkle.root(await store.audit_hashes(1, 10)) == merkle.root([leaf_hash(r) for r in records])
        await store.append_audit(audit(9))
        with pytest.raises(sq.IntegrityError):  # append-only again after the migration
            raw = sq.connect(path)
            raw.execute("UPDATE audit_entries SET actor = 'x' WHERE seq = 1")
    finally:
        raw.close()
        await store.close()


# --- stored Merkle subtrees: migration 6 and rollbacks ---------------------------------------


async def test_a_version_5_database_gets_its_subtrees_on_upgrade_then_proves(tmp_path: Path) -> None:
    from gateway.audit import merkle
    from gateway.audit.log import AuditLog
    from gateway.demo_identities import demo_identity

    path = tmp_path / "v5.db"
    store = await open_store(f"sqlite:///{path}")
    for i in range(45):
        await store.append_audit(audit(i, entry_hash=None))
    await store.close()
    # What version 5 left: the same tables without audit_nodes (migration 6 only adds it).
    raw = sqlite3.connect(path, isolation_level=None)
    raw.execute("DROP TABLE audit_nodes")
    raw.execute("PRAGMA user_version = 5")
    raw.close()

    store = await open_store(f"sqlite:///{path}")
    try:
        await assert_nodes_match_leaves(store)
        log = AuditLog(store, demo_identity("NE-ANLTP-TIM"), lambda: T0)
        leaves = await store.audit_hashes(1, 100)
        assert await log.inclusion_proof(17, 45) == (leaves[16], merkle.inclusion_proof(leaves, 16))
        assert await log.consistency_proof(13, 45) == merkle.consistency_proof(leaves, 13)
        for i in range(45, 64):  # appends after the backfill complete the trees it started
            await store.append_audit(audit(i, entry_hash=None))
        await assert_nodes_match_leaves(store)
        raw = sqlite3.connect(path)
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            raw.execute("UPDATE audit_nodes SET hash = zeroblob(32)")
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            raw.execute("DELETE FROM audit_nodes")
        raw.close()
    finally:
        await store.close()


async def test_a_rolled_back_append_leaves_no_subtree(sqlite_store: SQLiteStore) -> None:
    from gateway.store.sqlite import _insert_audit

    for i in range(3):
        await sqlite_store.append_audit(audit(i, entry_hash=None))

    def append_then_fail(conn: sqlite3.Connection) -> None:
        _insert_audit(conn, audit(3, entry_hash=None))  # leaf 3 completes (1, 1) and (2, 0)
        raise RuntimeError("crash after the append, before the commit")

    with pytest.raises(RuntimeError):
        await sqlite_store._in_write(append_then_fail)
    assert await sqlite_store.audit_size() == 3
    assert await sqlite_store.audit_nodes([(0, 3), (1, 1), (2, 0)]) == {}
    for i in range(3, 9):
        await sqlite_store.append_audit(audit(i, entry_hash=None))
    await assert_nodes_match_leaves(sqlite_store)


def _append_and_die(path: str) -> None:  # a child process killed mid-transaction
    import asyncio as aio

    from gateway.store.sqlite import _insert_audit

    async def run() -> None:
        store = await SQLiteStore.open(path)

        def append_and_exit(conn: sqlite3.Connection) -> None:
            _insert_audit(conn, audit(7, entry_hash=None))
            os._exit(3)  # no COMMIT, no ROLLBACK, no cleanup: as if the power went

        await store._in_write(append_and_exit)

    aio.run(run())


async def test_a_process_killed_mid_append_leaves_no_orphan_subtree(tmp_path: Path) -> None:
    import multiprocessing

    path = tmp_path / "gw.db"
    store = await open_store(f"sqlite:///{path}")
    for i in range(7):
        await store.append_audit(audit(i, entry_hash=None))
    await store.close()
    child = multiprocessing.get_context("spawn").Process(target=_append_and_die, args=(str(path),))
    child.start()
    await asyncio.to_thread(child.join, 60)
    assert child.exitcode == 3
    store = await open_store(f"sqlite:///{path}")
    try:
        assert await store.audit_size() == 7
        assert await store.audit_nodes([(0, 7), (1, 3), (2, 1), (3, 0)]) == {}
        await store.append_audit(audit(8, entry_hash=None))
        await assert_nodes_match_leaves(store)
    finally:
        await store.close()
