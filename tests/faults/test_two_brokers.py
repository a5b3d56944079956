"""Two brokers, one per country (deploy/rabbitmq/countries): NE's gateway publishes to the
machine's RabbitMQ, a shovel (ack-mode on-confirm) moves ``outbound.NG`` to a second node
started by the test, NG's gateway consumes there, and its receipts travel back the same way.

Every count comes from the two SQLite stores (see ``two_brokers.tally``), never from logs."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest

from gateway.service import derived_message_id

from testkit.gateway_pair import NIGER, NIGERIA

from testkit.harness import (
    GatewayProcess,
    db_path,
    in_process_gateway,
    metric,
    observer,
    received_audit_counts,
    submit_referrals,
    table_counts,
    wait_until,
)
from tests.support.two_brokers import TwoBrokers, ng_node, tally, two_brokers  # noqa: F401 - fixtures

pytestmark = pytest.mark.broker

TWO_BROKER = {"declare_topology": False}  # the brokers' topology comes from the country definitions


async def _stored_count(ng, ids: list[str]) -> int:
    return sum(1 for r in await ng.store.list_incoming(len(ids) + 10) if r.message_id in set(ids))


async def _all_receipted(ne, ids: list[str]) -> bool:
    for message_id in ids:
        if (await ne.store.get_outgoing(message_id)).status != "delivered":
            return False
    return True


async def test_link_cut_for_500_referrals_then_restored_delivers_each_once(tmp_path, two_brokers: TwoBrokers) -> None:
    tb = two_brokers
    count = 500
    async with in_process_gateway(tmp_path, tb.run_id, tb.ng_node.amqp_url, agency=NIGERIA, **TWO_BROKER) as ng, \
            in_process_gateway(tmp_path, tb.run_id, tb.ne_node.amqp_url, agency=NIGER, **TWO_BROKER) as ne:
        # The link works: one referral crosses and its receipt comes back.
        (first,) = await submit_referrals(ne, 1, tag="link0")
        await wait_until(lambda: _all_receipted(ne, [first]), 30, what="first referral receipted across the link")

        started = time.monotonic()
        submitting = asyncio.create_task(submit_referrals(ne, count, batch=50, tag="link"))

        async def some_crossed() -> bool:  # cut mid-stream, with messages in flight in the shovel
            return len(await ng.store.list_incoming(60)) >= 26

        await wait_until(some_crossed, 60, interval=0.02, what="some referrals crossed before the cut")
        await tb.link.cut()
        cut_at = len(await ng.store.list_incoming(count + 10))
        ids = await submitting

        async def all_sent() -> bool:  # NE's broker confirmed every one: they wait in outbound.NG
            return all(s != "queued" for s in [(await ne.store.get_outgoing(i)).status for i in ids])

        await wait_until(all_sent, 60, what="NE broker confirmed all 500 while the link is cut")
        await asyncio.sleep(2.0)  # anything that could still cross would cross now
        during = await tally(tmp_path, ne.store, ng.store, ids)
        parked = await tb.ne.queue_length("outbound.NG")
        stored_during_cut = len(await ng.store.list_incoming(count + 10))
        # Nothing crosses a cut link (at most what was already in NG's broker when we cut).
        assert stored_during_cut - cut_at <= 100, (cut_at, stored_during_cut)
        assert during.sent == count and during.stored < count and parked > 0

        await tb.link.restore()
        await wait_until(lambda: _all_receipted(ne, ids), 120, interval=0.25, what="all 500 receipted after restore")
        elapsed = time.monotonic() - started
        await asyncio.sleep(1.0)  # a late duplicate, if any, would arrive now
        after = await tally(tmp_path, ne.store, ng.store, ids + [first])
        duplicates_recognised = ng.metrics.value("duplicates_total")

    print(f"\nlink cut: during cut {during.line()} parked_in_outbound={parked}"
          f"\nlink cut: after restore {after.line()} broker_redeliveries_recognised={duplicates_recognised:.0f} "
          f"elapsed={elapsed:.1f}s")
    assert after.submitted == count + 1
    assert after.sent == after.receipted == after.stored == count + 1
    assert after.duplicated == 0 and after.lost == 0 and after.extra_rows == 0
    assert await tb.ne.queue_length("outbound.NG") == 0 and await tb.ng.queue_length("outbound.NE") == 0
    assert await tb.ng.queue_length("unroutable") == 0 and await tb.ne.queue_length("unroutable") == 0


async def test_ng_broker_killed_mid_stream_and_restarted_delivers_each_once(tmp_path, two_brokers: TwoBrokers) -> None:
    tb = two_brokers
    count = 300
    async with in_process_gateway(tmp_path, tb.run_id, tb.ng_node.amqp_url, agency=NIGERIA, **TWO_BROKER) as ng, \
            in_process_gateway(tmp_path, tb.run_id, tb.ne_node.amqp_url, agency=NIGER, **TWO_BROKER) as ne:
        started = time.monotonic()
        submitting = asyncio.create_task(submit_referrals(ne, count, batch=50, tag="nodekill"))

        async def some_stored() -> bool:
            return len(await ng.store.list_incoming(60)) >= 40

        await wait_until(some_stored, 60, interval=0.02, what="some referrals stored at NG before the kill")
        pid = tb.ng_node.pid
        await tb.ng_node.kill()  # SIGKILL the NG broker's VM by its pid, mid-stream
        stored_at_kill = len(await ng.store.list_incoming(count + 10))
        ids = await submitting
        await asyncio.sleep(1.0)  # NG's gateway and both shovels notice and start retrying
        assert not tb.ng_node.running
        restart_seconds = await tb.ng_node.start()  # same data dir, ports, shovel parameters

        await wait_until(lambda: _all_receipted(ne, ids), 120, interval=0.25, what="all receipted after the restart")
        elapsed = time.monotonic() - started
        await asyncio.sleep(1.0)
        after = await tally(tmp_path, ne.store, ng.store, ids)
        duplicates_recognised = ng.metrics.value("duplicates_total")

    print(f"\nbroker kill: pid={pid} stored_at_kill={stored_at_kill} restart={restart_seconds:.1f}s "
          f"{after.line()} broker_redeliveries_recognised={duplicates_recognised:.0f} elapsed={elapsed:.1f}s")
    assert 0 < stored_at_kill < count
    assert after.sent == after.receipted == after.stored == count
    assert after.duplicated == 0 and after.lost == 0 and after.extra_rows == 0
    assert await tb.ne.queue_length("outbound.NG") == 0 and await tb.ng.queue_length("outbound.NE") == 0


async def test_ng_gateway_killed_mid_batch_across_two_brokers_delivers_each_once(tmp_path, two_brokers: TwoBrokers) -> None:
    """The subprocess NG gateway of tests/faults (SIGKILL) consuming from its own broker,
    whose topology comes from the country definitions (as in production)."""
    tb = two_brokers
    count = 200
    ng = GatewayProcess(tmp_path, tb.run_id, tb.ng_node.amqp_url, prefetch=8, extra_args=("--no-declare-topology",))
    await ng.start()
    ng_db = db_path(tmp_path, NIGERIA)
    try:
        async with in_process_gateway(tmp_path, tb.run_id, tb.ne_node.amqp_url, agency=NIGER, **TWO_BROKER) as ne, \
                observer(ng_db) as ng_store:
            started = time.monotonic()
            ids = await submit_referrals(ne, count, tag="gwkill")

            async def some_stored() -> bool:
                return len(await ng_store.list_incoming(count + 10)) >= 20

            await wait_until(some_stored, 60, interval=0.01, what="NG stored 20 messages")
            os.kill(ng.pid, signal.SIGKILL)
            assert await ng.wait(30) == -signal.SIGKILL
            stored_at_kill = len(await ng_store.list_incoming(count + 10))
            assert stored_at_kill < count, "killed too late to be mid-batch"
            await ng.start()

            await wait_until(lambda: _all_receipted(ne, ids), 120, interval=0.3, what="all receipted at NE")
            elapsed = time.monotonic() - started
            assert await ng.stop() == 0
            after = await tally(tmp_path, ne.store, ng_store, ids)
            audit = await received_audit_counts(ng_store)
            receipts = sum(n for (t, _), n in table_counts(ng_db)["outbox"].items() if t == "receipt")
            for message_id in ids:
                assert await ng_store.get_outgoing(derived_message_id("receipt", message_id, "delivered", NIGERIA))
    finally:
        if ng.running:
            await ng.kill()

    print(f"\ngateway kill (two brokers): SIGKILL after {stored_at_kill}/{count} stored; {after.line()} "
          f"receipts={receipts} redeliveries_recognised={metric(ng.metrics(), 'duplicates_total'):g} elapsed={elapsed:.1f}s")
    assert after.sent == after.receipted == after.stored == count
    assert after.duplicated == 0 and after.lost == 0 and after.extra_rows == 0
    assert audit == {message_id: 1 for message_id in ids}
    assert receipts == count  # exactly one receipt each, crash or not
