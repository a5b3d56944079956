"""A receiving gateway that dies between storing a message and acking it, and one killed
with SIGKILL mid-batch: after a restart the broker redelivers, the gateway recognises the
ids, and the application sees every message exactly once."""

from __future__ import annotations

import os
import signal
from collections import Counter

import pytest

from gateway.service import derived_message_id

from testkit.gateway_pair import NIGERIA

from testkit.harness import (
    db_path,
    in_process_gateway,
    metric,
    observer,
    received_audit_counts,
    statuses,
    submit_referrals,
    table_counts,
    wait_until,
)

pytestmark = pytest.mark.broker


async def test_killed_after_store_before_ack_is_delivered_once(tmp_path, run_id, amqp_url, gateway_process) -> None:
    marker = tmp_path / "crashed.marker"
    ng = gateway_process(crash_marker=marker)
    await ng.start()
    async with in_process_gateway(tmp_path, run_id, amqp_url) as ne:
        (message_id,) = await submit_referrals(ne, 1, tag="crash")

        # NG stores it, then dies before the ack: exit code 137, marker names the message.
        assert await ng.wait(30) == 137
        assert marker.read_text() == message_id
        ng_db = db_path(tmp_path, NIGERIA)
        async with observer(ng_db) as ng_store:
            assert (await ng_store.get_incoming(message_id)) is not None  # stored ...
            assert await ng_store.get_outgoing(derived_message_id("receipt", message_id, "delivered", NIGERIA)) is None
        assert (await ne.store.get_outgoing(message_id)).status == "sent"  # ... but never acked or receipted

        await ng.start()  # the same process again; the marker exists, so no second crash

        async def delivered() -> bool:
            return (await ne.store.get_outgoing(message_id)).status == "delivered"

        await wait_until(delivered, 30, what="NE status delivered")
        assert await ng.stop() == 0

    duplicates = metric(ng.metrics(), "duplicates_total")
    assert duplicates == 1  # the redelivery was recognised by its id
    async with observer(ng_db) as ng_store:
        inbox = await ng_store.list_incoming(100)
        assert [(r.message_id, r.message_type) for r in inbox] == [(message_id, "referral.request")]
        receipt = await ng_store.get_outgoing(derived_message_id("receipt", message_id, "delivered", NIGERIA))
        assert receipt is not None and receipt.status in {"sent", "delivered"}
        # No second receipt hiding under another id; nothing else in NG's outbox.
        assert sum(table_counts(ng_db)["outbox"].values()) == 1
        # The audit entry commits with the inbox row: exactly one, crash or not.
        assert (await received_audit_counts(ng_store)).get(message_id, 0) == 1


async def test_sigkill_mid_batch_then_restart_loses_and_duplicates_nothing(
    tmp_path, run_id, amqp_url, gateway_process
) -> None:
    count = 50
    ng = gateway_process(prefetch=8)
    await ng.start()
    ng_db = db_path(tmp_path, NIGERIA)
    async with in_process_gateway(tmp_path, run_id, amqp_url) as ne, observer(ng_db) as ng_store:
        ids = await submit_referrals(ne, count, tag="kill")
        stored_at_kill = 0

        async def some_stored() -> bool:
            nonlocal stored_at_kill
            stored_at_kill = len(await ng_store.list_incoming(count + 10))
            return stored_at_kill >= 5

        await wait_until(some_stored, 30, interval=0.01, what="NG stored 5 messages")
        os.kill(ng.pid, signal.SIGKILL)
        assert await ng.wait(30) == -signal.SIGKILL
        stored_at_kill = len(await ng_store.list_incoming(count + 10))
        assert stored_at_kill < count, "killed too late to be mid-stream"

        await ng.start()

        async def all_delivered() -> bool:
            return set((await statuses(ne.store, ids)).values()) == {"delivered"}

        await wait_until(all_delivered, 60, interval=0.3, what="all 50 delivered at NE")
        assert await ng.stop() == 0

        inbox = await ng_store.list_incoming(count + 10)
        assert Counter(r.message_type for r in inbox) == {"referral.request": count}
        assert sorted(r.message_id for r in inbox) == sorted(ids)
        receipts = {derived_message_id("receipt", i, "delivered", NIGERIA) for i in ids}
        for receipt_id in receipts:
            assert await ng_store.get_outgoing(receipt_id) is not None
        counts = table_counts(ng_db)
        assert sum(n for (t, _), n in counts["outbox"].items() if t == "receipt") == count  # exactly one each
        assert sum(counts["outbox"].values()) == count
        audit = await received_audit_counts(ng_store)
        assert audit == {message_id: 1 for message_id in ids}  # one entry each, even those stored at the kill
    print(f"\nSIGKILL after {stored_at_kill}/{count} stored; duplicates recognised after restart: "
          f"{metric(ng.metrics(), 'duplicates_total'):g}; received-audit entries {len(audit)}/{count}")
