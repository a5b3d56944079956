"""PostgreSQL store: the shared conformance suite, plus what only the shared backend has
(several processes on one database, publish leases, SQLSTATE mapping, migrations under an
advisory lock). Needs the real PostgreSQL (``postgres_dsn``: fails under CI=true when it is
unreachable, skips otherwise). Every test gets its own schema, dropped afterwards."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import AsyncIterator

import asyncpg
import pytest
from tests.support.store_conformance import (
    T0, StoreConformance, assert_nodes_match_leaves, audit, directory_record, idem_answer, idem_claim, incoming,
    new_id, outgoing,
)

from gateway.store import (
    SchemaVersionError,
    Store,
    StoreError,
    StoreUnavailableError,
    UnsupportedStoreURLError,
    open_store,
)
from gateway.store.postgres import SCHEMA_VERSION, PostgresStore, map_postgres_error, parse_postgres_url
from testkit.pg_schemas import create_schema, drop_schema

pytestmark = pytest.mark.postgres


def _with_query(dsn: str, *options: str) -> str:
    query = "&".join(o for o in options if o)
    if not query:
        return dsn
    return dsn + ("&" if "?" in dsn else "?") + query


class PostgresHarness:
    """A fresh schema on the test database; "reopen" is a new pool on the same schema."""

    def __init__(self, dsn: str, schema: str, *options: str) -> None:
        self.dsn = dsn
        self.schema = schema
        self.options = options

    def url(self, *extra: str) -> str:
        return _with_query(self.dsn, f"search_path={self.schema}", *self.options, *extra)

    async def open(self, *extra: str) -> Store:
        return await open_store(self.url(*extra))

    async def open_read_only(self) -> Store:
        return await open_store(self.url("mode=ro"))

    async def sql(self, statement: str, *args: object) -> object:
        """Run one statement on a separate connection in this schema (like another client)."""
        conn = await asyncpg.connect(self.dsn, server_settings={"search_path": self.schema})
        try:
            return await conn.fetch(statement, *args)
        finally:
            await conn.close()


@pytest.fixture
async def pg(postgres_dsn: str) -> AsyncIterator[PostgresHarness]:
    schema = await create_schema(postgres_dsn, "t_")
    try:
        yield PostgresHarness(postgres_dsn, schema)
    finally:
        await drop_schema(postgres_dsn, schema)


class TestPostgresStore(StoreConformance):
    @pytest.fixture
    def harness(self, pg: PostgresHarness) -> PostgresHarness:
        return pg


@pytest.fixture
async def two_stores(pg: PostgresHarness) -> AsyncIterator[tuple[Store, Store]]:
    """Two stores with their own pools on one schema: two gateway processes of one agency."""
    a = await pg.open("pool_max=8")
    b = await pg.open("pool_max=8")
    try:
        yield a, b
    finally:
        await a.close()
        await b.close()


# --- several processes on one database ---------------------------------------------------


async def test_two_processes_append_audit_without_gaps(two_stores: tuple[Store, Store]) -> None:
    a, b = two_stores
    seqs = await asyncio.gather(
        *(store.append_audit(audit(i, detail_json=f'{{"n":{i}}}')) for i in range(100) for store in (a, b))
    )
    assert sorted(seqs) == list(range(1, 201))
    for store in (a, b):
        records = await store.read_audit(1, 1000)
        assert [r.seq for r in records] == list(range(1, 201))
        assert await store.audit_size() == 200


async def test_readers_never_see_an_audit_gap(two_stores: tuple[Store, Store]) -> None:
    # An entry must be visible only once every lower seq is: a reader polling during
    # concurrent appends from two processes always sees 1..k, never 1..k-2, k.
    a, b = two_stores
    stop = asyncio.Event()
    observed: list[int] = []

    async def reader() -> None:
        while not stop.is_set():
            size = await a.audit_size()
            seqs = [r.seq for r in await b.read_audit(1, 10_000)]
            assert seqs == list(range(1, len(seqs) + 1))
            assert len(seqs) >= size  # the counter is never ahead of visible entries
            observed.append(len(seqs))
            await asyncio.sleep(0)

    async def writer(store: Store, base: int) -> None:
        for i in range(60):
            await asyncio.gather(*(store.append_audit(audit(base + i * 4 + j)) for j in range(4)))

    read = asyncio.create_task(reader())
    await asyncio.gather(writer(a, 0), writer(b, 1000))
    stop.set()
    await read
    assert await a.audit_size() == 480
    assert len(observed) > 3


async def test_two_processes_add_incoming_one_id_exactly_one_wins(two_stores: tuple[Store, Store]) -> None:
    a, b = two_stores
    for _ in range(5):
        message_id = new_id()
        copies = [incoming(message_id=message_id, envelope=f"copy {i}".encode()) for i in range(40)]
        results = await asyncio.gather(
            *((a, b)[i % 2].add_incoming(c, audit=audit(i, message_id=message_id)) for i, c in enumerate(copies))
        )
        assert results.count(True) == 1
        winner = copies[results.index(True)]
        assert (await b.get_incoming(message_id)).envelope == winner.envelope
        assert len(await a.status_trail(message_id, direction="incoming")) == 1
    # one audit entry per stored message, none for the 195 duplicates
    assert await a.audit_size() == 5


async def test_concurrent_first_case_keys_agree_across_processes(two_stores: tuple[Store, Store]) -> None:
    from gateway.store import DataKey

    a, b = two_stores
    keys = [DataKey(f"k-{i}", "case-7f3a9c01", "case", b"wrapped-%d" % i, T0) for i in range(20)]
    results = await asyncio.gather(*((a, b)[i % 2].add_data_key(k) for i, k in enumerate(keys)))
    assert len({r.key_id for r in results}) == 1
    assert (await a.live_case_key("case-7f3a9c01")).key_id == results[0].key_id


# --- the outbox lease --------------------------------------------------------------------


async def test_due_outgoing_is_leased_to_one_process(two_stores: tuple[Store, Store]) -> None:
    a, b = two_stores
    msgs = [outgoing(T0 + timedelta(seconds=i)) for i in range(6)]
    for m in msgs:
        await a.add_outgoing(m)
    now = T0 + timedelta(minutes=1)
    first = await a.due_outgoing(now, 4)
    assert [r.message_id for r in first] == [m.message_id for m in msgs[:4]]
    # The other process gets only what is not leased; the holder gets its own rows again.
    assert [r.message_id for r in await b.due_outgoing(now, 10)] == [m.message_id for m in msgs[4:]]
    assert [r.message_id for r in await a.due_outgoing(now, 4)] == [m.message_id for m in msgs[:4]]
    assert await b.due_outgoing(now, 10) != []  # b holds msgs[4:] and gets them again
    # Confirm, retry and give-up release the lease.
    await a.mark_sent(msgs[0].message_id, now)
    await a.mark_retry(msgs[1].message_id, now + timedelta(seconds=5), "broker_unreachable", at=now)
    await a.mark_failed(msgs[2].message_id, "max_attempts", at=now)
    later = now + timedelta(seconds=10)
    assert [r.message_id for r in await b.due_outgoing(later, 10)] == [
        msgs[1].message_id, msgs[4].message_id, msgs[5].message_id,
    ]


async def test_a_claimed_row_is_leased_to_the_process_that_queued_it(two_stores: tuple[Store, Store]) -> None:
    # That process publishes it at once (Gateway.submit); another must not take it meanwhile.
    a, b = two_stores
    msg, free = outgoing(), outgoing()
    assert await a.add_outgoing(msg, claim=True) is True
    assert await a.add_outgoing(free) is True  # not claimed (no room to publish it now): anyone's
    now = T0 + timedelta(minutes=1)
    assert [r.message_id for r in await b.due_outgoing(now, 10)] == [free.message_id]
    assert [r.message_id for r in await a.due_outgoing(now, 10)] == [msg.message_id]
    assert await b.add_outgoing(msg, claim=True) is False  # the same message again: not re-leased to b
    assert [r.message_id for r in await b.due_outgoing(now, 10)] == [free.message_id]
    await a.mark_retry(msg.message_id, now, "broker_unreachable", at=now)  # released: anyone may take it
    assert sorted(r.message_id for r in await b.due_outgoing(now, 10)) == sorted([msg.message_id, free.message_id])


async def test_concurrent_due_outgoing_hands_each_message_out_once(two_stores: tuple[Store, Store]) -> None:
    a, b = two_stores
    msgs = [outgoing(T0 + timedelta(milliseconds=i)) for i in range(60)]
    await asyncio.gather(*(a.add_outgoing(m) for m in msgs))
    now = T0 + timedelta(minutes=1)
    per_store: dict[int, set[str]] = {0: set(), 1: set()}
    # A store's own leased rows come back to it until its publisher settles them, so how much
    # one round of concurrent batches covers depends on timing; what must hold is that no
    # row is ever handed to both stores and that, as each settles what it got, all go out.
    for _ in range(10):
        batches = await asyncio.gather(*((a, b)[i % 2].due_outgoing(now, 7) for i in range(20)))
        for i, batch in enumerate(batches):
            per_store[i % 2].update(r.message_id for r in batch)
        assert not per_store[0] & per_store[1]  # never handed to both processes
        handed = {r.message_id: i % 2 for i, batch in enumerate(batches) for r in batch}
        await asyncio.gather(*((a, b)[side].mark_sent(mid, now) for mid, side in handed.items()))
        if per_store[0] | per_store[1] == {m.message_id for m in msgs}:
            break
    assert per_store[0] | per_store[1] == {m.message_id for m in msgs}


async def test_an_expired_lease_lets_another_process_take_over(pg: PostgresHarness) -> None:
    a = await pg.open("outbox_lease_s=1")
    b = await pg.open("outbox_lease_s=1")
    try:
        msg = outgoing()
        await a.add_outgoing(msg)
        now = T0 + timedelta(minutes=1)
        assert len(await a.due_outgoing(now, 10)) == 1  # then "a" crashes while publishing
        assert await b.due_outgoing(now, 10) == []
        await asyncio.sleep(1.2)
        assert [r.message_id for r in await b.due_outgoing(now, 10)] == [msg.message_id]
    finally:
        await a.close()
        await b.close()


# --- database-level guarantees -----------------------------------------------------------


async def test_audit_rows_cannot_be_changed_even_with_sql(pg: PostgresHarness) -> None:
    store = await pg.open()
    try:
        seq = await store.append_audit(audit(1))
        for sql in (
            "UPDATE audit_entries SET actor = 'mallory'",
            "DELETE FROM audit_entries",
            "TRUNCATE audit_entries",
            "UPDATE audit_head SET last_seq = 0",
            "DELETE FROM audit_head",
        ):
            with pytest.raises(asyncpg.PostgresError, match="append-only") as info:
                await pg.sql(sql)
            assert info.value.sqlstate == "GW001"
            assert "append-only" in str(map_postgres_error(info.value, "t"))
        assert [r.actor for r in await store.read_audit(seq, 10)] == ["worker"]
        assert await store.append_audit(audit(2)) == seq + 1
    finally:
        await store.close()


async def test_schema_version_and_settings(pg: PostgresHarness) -> None:
    store = await pg.open()
    try:
        assert isinstance(store, Store)
        assert await pg.sql("SELECT version FROM schema_version") == [(SCHEMA_VERSION,)]
        assert (await pg.sql("SELECT current_setting('synchronous_commit')"))[0][0] in {"on", "remote_apply"}
    finally:
        await store.close()


async def test_newer_schema_is_refused(pg: PostgresHarness) -> None:
    await (await pg.open()).close()
    await pg.sql("UPDATE schema_version SET version = version + 1")
    with pytest.raises(SchemaVersionError):
        await pg.open()


async def test_concurrent_first_opens_migrate_once(pg: PostgresHarness) -> None:
    stores = await asyncio.gather(*(pg.open("pool_max=2") for _ in range(4)))
    try:
        assert await stores[0].add_incoming(incoming()) is True
        assert await pg.sql("SELECT count(*) FROM schema_version") == [(1,)]
    finally:
        for store in stores:
            await store.close()


async def test_read_only_open_of_an_unmigrated_schema_is_refused(pg: PostgresHarness) -> None:
    with pytest.raises(StoreError, match="read-only"):
        await pg.open_read_only()


async def test_missing_schema_is_refused(postgres_dsn: str) -> None:
    with pytest.raises(StoreError, match="search_path"):
        await open_store(_with_query(postgres_dsn, f"search_path=t_missing_{uuid.uuid4().hex}"))


async def test_server_without_synchronous_commit_is_refused(pg: PostgresHarness) -> None:
    dsn, _ = parse_postgres_url(pg.url())
    with pytest.raises(StoreError, match="synchronous_commit"):
        await PostgresStore.open(dsn, session={"search_path": pg.schema, "synchronous_commit": "off"})


# --- failure modes -------------------------------------------------------------------------


async def test_row_locked_too_long_is_unavailable(pg: PostgresHarness) -> None:
    store = await pg.open("lock_timeout_ms=100")
    other = await asyncpg.connect(pg.dsn, server_settings={"search_path": pg.schema})
    try:
        msg = outgoing()
        await store.add_outgoing(msg)
        tx = other.transaction()
        await tx.start()
        await other.execute("SELECT 1 FROM outbox WHERE message_id = $1 FOR UPDATE", msg.message_id)
        with pytest.raises(StoreUnavailableError, match="55P03"):
            await asyncio.wait_for(store.mark_sent(msg.message_id, T0), timeout=5)
        assert await store.ping() is True  # readers are not blocked
        await tx.rollback()
        assert await store.mark_sent(msg.message_id, T0) is True
    finally:
        await other.close()
        await store.close()


async def test_lost_connections_are_unavailable_then_recover(pg: PostgresHarness) -> None:
    store = await pg.open("pool_min=2", "pool_max=2", "application_name=gw-kill-test")
    try:
        await store.add_incoming(incoming())
        await pg.sql(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'gw-kill-test'"
        )
        outcomes = []
        for _ in range(4):
            try:
                outcomes.append(await store.add_incoming(incoming()))
            except StoreUnavailableError:
                outcomes.append("unavailable")
        assert outcomes[-1] is True  # the pool replaced the dead connections
        assert await store.ping() is True
    finally:
        await store.close()


async def test_unreachable_server_is_unavailable_and_never_echoes_the_url() -> None:
    with pytest.raises(StoreUnavailableError) as info:
        await open_store("postgresql://gw:s3cret-pw@127.0.0.1:1/gateway?connect_timeout_ms=2000")
    assert "s3cret" not in str(info.value) and "127.0.0.1" not in str(info.value)
    assert info.value.__cause__ is None and info.value.__suppress_context__


async def test_cancelled_caller_does_not_abort_the_write(pg: PostgresHarness) -> None:
    store = await pg.open()
    try:
        msgs = [incoming() for _ in range(20)]
        tasks = [asyncio.create_task(store.add_incoming(m)) for m in msgs]
        await asyncio.sleep(0)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await store.close()  # waits for the shielded transactions
        store = await pg.open()
        stored = await store.list_incoming(100)
        # Every write either committed completely (row + trail) or not at all.
        for row in stored:
            assert len(await store.status_trail(row.message_id, direction="incoming")) == 1
    finally:
        await store.close()


def test_error_mapping() -> None:
    exc = asyncpg.exceptions
    for unavailable in (
        exc.DiskFullError("x"),
        exc.TooManyConnectionsError("x"),
        exc.ReadOnlySQLTransactionError("x"),
        exc.CannotConnectNowError("x"),
        exc.AdminShutdownError("x"),
        exc.QueryCanceledError("x"),
        exc.LockNotAvailableError("x"),
        exc.DeadlockDetectedError("x"),
        exc.SerializationError("x"),
        exc.ConnectionDoesNotExistError("x"),
        exc.InterfaceError("pool is closed"),
        ConnectionRefusedError(111, "refused"),
        asyncio.TimeoutError(),
    ):
        mapped = map_postgres_error(unavailable, "t")
        assert isinstance(mapped, StoreUnavailableError), type(unavailable).__name__
    leaky = exc.UniqueViolationError("duplicate key value: Key (case_ref)=(Amina B.) already exists")
    leaky.detail = "Key (case_ref)=(Amina B.) already exists"
    for failure in (leaky, exc.UndefinedTableError("x"), exc.DataError("bad value Amina B."), RuntimeError("Amina B.")):
        mapped = map_postgres_error(failure, "t")
        assert isinstance(mapped, StoreError) and not isinstance(mapped, StoreUnavailableError)
        assert "Amina" not in str(mapped)


# --- URLs ----------------------------------------------------------------------------------


def test_url_options_are_split_from_the_dsn() -> None:
    dsn, options = parse_postgres_url(
        "postgresql://gw:p%40ss@db:5433/gateway?pool_min=2&pool_max=20&sslmode=verify-full"
        "&outbox_lease_s=45&search_path=agency_a&mode=ro"
    )
    assert dsn == "postgresql://gw:p%40ss@db:5433/gateway?sslmode=verify-full"
    assert (options["pool_min"], options["pool_max"], options["outbox_lease_s"], options["read_only"]) == (2, 20, 45, True)
    assert options["session"] == {"search_path": "agency_a"}
    assert parse_postgres_url("postgres://db/gateway")[0] == "postgres://db/gateway"


@pytest.mark.parametrize(
    "url, match",
    [
        ("postgresql://gw:secret@db/gateway?journal=off", "unknown"),
        ("postgresql://gw:secret@db/gateway?pool_max=lots", "integer"),
        ("postgresql://gw:secret@db/gateway?pool_min=5&pool_max=2", "pool_min"),
        ("postgresql://gw:secret@db/gateway?pool_max=0", "range"),
        ("postgresql://gw:secret@db/gateway?mode=rwc", "mode"),
        ("postgresql://gw:secret@db/gateway?mode=ro&mode=rw", "twice"),
        ("postgresql:gw:secret@db/gateway", "postgresql://"),
    ],
)
async def test_bad_postgres_urls(url: str, match: str) -> None:
    with pytest.raises(UnsupportedStoreURLError, match=match) as info:
        await open_store(url)
    assert "secret" not in str(info.value)


async def test_clock_fills_optional_times(pg: PostgresHarness) -> None:
    later = T0 + timedelta(hours=3)
    store = await open_store(pg.url(), clock=lambda: later)
    try:
        msg = outgoing()
        await store.add_outgoing(msg)
        await store.mark_failed(msg.message_id, "max_attempts")
        assert (await store.get_outgoing(msg.message_id)).updated_at == later
    finally:
        await store.close()


# --- least privilege (deploy/postgres.md) ----------------------------------------------------

APP_GRANTS = (
    "GRANT USAGE ON SCHEMA {schema} TO {role}",
    "GRANT SELECT ON schema_version TO {role}",
    "GRANT SELECT, INSERT, UPDATE ON outbox, inbox, cases, data_keys TO {role}",
    "GRANT SELECT, INSERT ON message_events, withdrawals, checkpoints, audit_entries, audit_nodes, directories TO {role}",
    "GRANT SELECT, INSERT, DELETE ON seen_message_ids TO {role}",
    "GRANT SELECT, UPDATE ON audit_head TO {role}",
    "GRANT SELECT, INSERT, UPDATE, DELETE ON idempotency_keys, web_sessions TO {role}",
)


async def test_runs_as_an_application_role_that_cannot_rewrite_the_audit_log(pg: PostgresHarness) -> None:
    # Owner migrates; the gateways run as a role with only the grants of deploy/postgres.md.
    await (await pg.open()).close()
    role = f"gw_app_{uuid.uuid4().hex[:12]}"
    await pg.sql(f"CREATE ROLE {role} LOGIN")
    try:
        for grant in APP_GRANTS:
            await pg.sql(grant.format(schema=pg.schema, role=role))
        app_dsn = pg.dsn.replace("postgres@", f"{role}@", 1)
        assert app_dsn != pg.dsn
        store = await open_store(_with_query(app_dsn, f"search_path={pg.schema}"))
        try:
            out, inc = outgoing(), incoming()
            await store.add_outgoing(out, audit=audit(1))
            assert len(await store.due_outgoing(T0 + timedelta(minutes=1), 10)) == 1
            await store.mark_retry(out.message_id, T0, "broker_unreachable", at=T0)
            await store.mark_sent(out.message_id, T0)
            assert await store.add_incoming(inc, audit=audit(2))
            await store.set_incoming_status(inc.message_id, "read", T0)
            await store.remember_message_id(new_id(), T0)
            assert await store.prune_seen(T0 + timedelta(days=1)) == 1
            assert await store.append_audit(audit(3)) == 3
            from gateway.store import DataKey
            key = await store.add_data_key(DataKey("case-key", "case-7f3a9c01", "case", b"w", T0))
            assert await store.shred_data_keys([key.key_id], "retention", T0, audit=[audit(4)]) == [key.key_id]
            assert await store.accept_directory(directory_record(3), audit=audit(5, event_type="directory.updated"))
            assert not await store.accept_directory(directory_record(2))
            assert (await store.current_directory()).serial == 3
            # The API's Idempotency-Key and the workspace's sessions work as the application role.
            from dataclasses import replace as _replace
            from gateway.store import IdempotencyRecord, WebSession
            claim = IdempotencyRecord("a" * 64, "referrals.submit", "b" * 64, T0, T0 + timedelta(days=1))
            await store.claim_idempotency_key(claim)
            await store.complete_idempotency_key(_replace(claim, status_code=202, response_json="{}", completed_at=T0))
            assert await store.prune_idempotency_keys(T0 + timedelta(days=2)) == 1
            session = WebSession("c" * 64, "amina.caseworker", "caseworker", T0, T0, T0 + timedelta(hours=10))
            await store.add_web_session(session)
            assert await store.touch_web_session(session.id_hash, T0 + timedelta(minutes=1))
            assert await store.delete_web_session(session.id_hash)
            assert await store.prune_web_sessions(T0, T0) == 0
        finally:
            await store.close()
        conn = await asyncpg.connect(app_dsn, server_settings={"search_path": pg.schema})
        try:
            for sql in ("UPDATE audit_entries SET actor = 'x'", "DELETE FROM audit_entries", "DROP TABLE audit_entries",
                        "DROP TRIGGER audit_entries_no_update ON audit_entries", "DELETE FROM directories",
                        "UPDATE directories SET serial = 1"):
                with pytest.raises(asyncpg.PostgresError) as info:
                    await conn.execute(sql)
                assert info.value.sqlstate in {"42501", "GW001"}  # no privilege (or the trigger)
        finally:
            await conn.close()
    finally:
        await pg.sql(f"DROP OWNED BY {role}")
        await pg.sql(f"DROP ROLE {role}")


# --- the point of it all: two gateway processes of one agency, one store ----------------------


async def test_two_gateway_processes_of_one_agency_share_one_store(pg: PostgresHarness, tmp_path) -> None:
    import dataclasses

    from gateway.bootstrap import open_gateway
    from gateway.schema import load_example
    from gateway.service import Actor
    from gateway.transport import MemoryBroker

    from testkit.gateway_pair import NIGER, NIGERIA, eventually, settings_for

    broker = MemoryBroker()
    gateways = []
    for agency in (NIGER, NIGER, NIGERIA):  # two NE processes on PostgreSQL, NG on SQLite
        settings = settings_for(agency, tmp_path, transport="memory")
        if agency == NIGER:
            settings = dataclasses.replace(settings, store_url=pg.url())
        gateways.append(await open_gateway(settings, broker=broker))
    ne1, ne2, ng = gateways
    try:
        for gw in gateways:
            await gw.start()
        for gw in gateways:
            await gw.wait_ready(30)
        worker, officer = Actor("amina.caseworker", "caseworker"), Actor("officer.ng", "caseworker")
        headers = [
            await (ne1, ne2)[i % 2].submit("referral.request", load_example("referral.request"), recipient=NIGERIA,
                                           case_ref=f"ne-ng-sharedcase{i:02d}", actor=worker)
            for i in range(8)
        ]

        async def statuses(gw) -> list[str]:
            return [(await gw.outgoing_status(h.id))[0].status for h in headers]

        async def all_delivered() -> bool:  # receipts reach either process; both see them
            return await statuses(ne1) == ["delivered"] * 8 and await statuses(ne2) == ["delivered"] * 8

        await eventually(all_delivered)
        assert sorted(r.message_id for r in await ng.list_inbox()) == sorted(h.id for h in headers)
        assert ng.metrics.value("duplicates_total") == 0  # the lease: nothing published twice

        await ng.read_incoming(headers[1].id, actor=officer, purpose="safety_assessment")
        await ng.respond(headers[1].id, {"decision": "accepted", "accepted_purposes": ["safety_assessment"]},
                         actor=officer)

        async def accepted() -> bool:
            return (await ne1.outgoing_status(headers[1].id))[0].status == "accepted"

        await eventually(accepted)
        _, trail = await ne2.outgoing_status(headers[1].id)
        assert [s for s, _ in trail] == ["queued", "sent", "delivered", "read", "accepted"]
        records = await ne1.store.read_audit(1, 10_000)
        assert [r.seq for r in records] == list(range(1, len(records) + 1)) and len(records) > 16
    finally:
        for gw in gateways:
            await gw.stop()
            await gw.store.close()


async def test_two_processes_claim_one_idempotency_key_agree(two_stores: tuple[Store, Store]) -> None:
    a, b = two_stores
    for round_ in range(5):
        claims = [idem_claim(f"key{round_}", request=f"r{i}", created_at=T0 + timedelta(microseconds=i))
                  for i in range(20)]
        stored = await asyncio.gather(*((a, b)[i % 2].claim_idempotency_key(c) for i, c in enumerate(claims)))
        assert len({s.request_hash for s in stored}) == 1
        answers = await asyncio.gather(*((a, b)[i % 2].complete_idempotency_key(idem_answer(stored[0], f'{{"n":{i}}}'))
                                         for i in range(10)))
        assert len({r.response_json for r in answers}) == 1  # the first answer wins in both processes


async def test_complete_idempotency_key_survives_a_claim_released_in_between(
    two_stores: tuple[Store, Store], monkeypatch: pytest.MonkeyPatch,
) -> None:
    """complete finds no key, another process claims it (so complete's INSERT ... DO NOTHING
    conflicts) and releases it before complete reads the winner back: complete must look
    again and store its answer (it used to read a missing row and raise TypeError)."""
    a, b = two_stores
    claim = idem_claim("raced")
    original = asyncpg.pool.PoolConnectionProxy.fetchrow
    steps: list[str] = []

    async def fetchrow(self: object, query: str, *args: object, **kwargs: object) -> object:
        if not steps and "ON CONFLICT (key_hash) DO NOTHING" in query:
            steps.append("claimed")
            assert (await b.claim_idempotency_key(claim)).request_hash == claim.request_hash
        elif steps == ["claimed"] and query == "SELECT * FROM idempotency_keys WHERE key_hash = $1":
            steps.append("released")
            assert await b.release_idempotency_key(claim.key_hash, claim.request_hash)
        return await original(self, query, *args, **kwargs)

    monkeypatch.setattr(asyncpg.pool.PoolConnectionProxy, "fetchrow", fetchrow)
    answered = await a.complete_idempotency_key(idem_answer(claim, '{"n":1}'))
    monkeypatch.undo()
    assert steps == ["claimed", "released"]  # the race really happened
    assert answered.response_json == '{"n":1}'
    stored = await b.claim_idempotency_key(claim)
    assert stored.response_json == '{"n":1}'


# --- stored Merkle subtrees: migration 5 and rollbacks ---------------------------------------


async def test_a_version_4_schema_gets_its_subtrees_on_upgrade_then_proves(pg: PostgresHarness) -> None:
    from gateway.audit import merkle
    from gateway.audit.log import AuditLog
    from gateway.demo_identities import demo_identity

    store = await pg.open()
    for i in range(45):
        await store.append_audit(audit(i, entry_hash=None))
    await store.close()
    # What release 4 left: the same schema without migration 5's table, function and trigger.
    await pg.sql("DROP TRIGGER audit_entries_add_nodes ON audit_entries")
    await pg.sql("DROP FUNCTION gateway_audit_nodes_add()")
    await pg.sql("DROP TABLE audit_nodes")
    await pg.sql("UPDATE schema_version SET version = 4")

    store = await pg.open()
    try:
        await assert_nodes_match_leaves(store)
        log = AuditLog(store, demo_identity("NE-ANLTP-TIM"), lambda: T0)
        leaves = await store.audit_hashes(1, 100)
        assert await log.inclusion_proof(17, 45) == (leaves[16], merkle.inclusion_proof(leaves, 16))
        assert await log.consistency_proof(13, 45) == merkle.consistency_proof(leaves, 13)
        for i in range(45, 64):
            await store.append_audit(audit(i, entry_hash=None))
        await assert_nodes_match_leaves(store)
        for sql in ("UPDATE audit_nodes SET hash = hash", "DELETE FROM audit_nodes", "TRUNCATE audit_nodes"):
            with pytest.raises(asyncpg.PostgresError, match="append-only"):
                await pg.sql(sql)
    finally:
        await store.close()


async def test_a_rolled_back_append_leaves_no_subtree(pg: PostgresHarness) -> None:
    from gateway.store.postgres import _insert_audit

    store = await pg.open()
    try:
        for i in range(3):
            await store.append_audit(audit(i, entry_hash=None))

        async def append_then_fail(conn: object) -> None:
            await _insert_audit(conn, audit(3, entry_hash=None))  # type: ignore[arg-type]
            raise RuntimeError("crash after the append, before the commit")

        with pytest.raises(RuntimeError):
            await store._run("test", append_then_fail, transaction=True)  # type: ignore[attr-defined]
        assert await store.audit_size() == 3
        assert await store.audit_nodes([(0, 3), (1, 1), (2, 0)]) == {}
        for i in range(3, 9):
            await store.append_audit(audit(i, entry_hash=None))
        await assert_nodes_match_leaves(store)
    finally:
        await store.close()


async def test_two_processes_appending_keep_the_subtrees_right(two_stores: tuple[Store, Store]) -> None:
    a, b = two_stores
    await asyncio.gather(*((a if i % 2 else b).append_audit(audit(i, entry_hash=None)) for i in range(80)))
    assert await a.audit_size() == 80
    await assert_nodes_match_leaves(b)


async def test_a_role_without_the_audit_nodes_grant_is_refused_at_open(pg: PostgresHarness) -> None:
    await (await pg.open()).close()
    role = f"gw_app_{uuid.uuid4().hex[:12]}"
    await pg.sql(f"CREATE ROLE {role} LOGIN")
    try:
        for grant in APP_GRANTS:
            await pg.sql(grant.format(schema=pg.schema, role=role).replace("audit_nodes, ", ""))
        app_dsn = pg.dsn.replace("postgres@", f"{role}@", 1)
        with pytest.raises(StoreError, match="audit_nodes"):
            await open_store(_with_query(app_dsn, f"search_path={pg.schema}"))
    finally:
        await pg.sql(f"DROP OWNED BY {role}")
        await pg.sql(f"DROP ROLE {role}")
