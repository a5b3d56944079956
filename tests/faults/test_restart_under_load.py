"""1,000 referrals while the receiving gateway is stopped and started twice: every one
arrives, none twice, and every sender status reaches ``delivered``."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import pytest

from gateway.service import derived_message_id

from testkit.gateway_pair import NIGER, NIGERIA

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

COUNT = 1000
RESTART_AT = (250, 600)  # NG inbox sizes at which NG is stopped and started again


async def test_thousand_referrals_with_two_consumer_restarts(tmp_path, run_id, amqp_url, gateway_process) -> None:
    ng = gateway_process()
    await ng.start()
    ng_db, ne_db = db_path(tmp_path, NIGERIA), db_path(tmp_path, NIGER)
    restarts: list[dict[str, float]] = []
    duplicates = 0.0
    started = time.monotonic()
    async with in_process_gateway(tmp_path, run_id, amqp_url) as ne, observer(ng_db) as ng_store:

        async def restart_twice() -> None:
            nonlocal duplicates
            for threshold in RESTART_AT:
                async def reached() -> bool:
                    return len(await ng_store.list_incoming(COUNT + 10)) >= threshold

                await wait_until(reached, 120, interval=0.05, what=f"NG inbox >= {threshold}")
                stopped_at = time.monotonic()
                assert await ng.stop() == 0
                duplicates += metric(ng.metrics(), "duplicates_total")
                stored = len(await ng_store.list_incoming(COUNT + 10))
                await ng.start()
                restarts.append({"inbox_at_stop": stored, "down_seconds": round(time.monotonic() - stopped_at, 2)})

        restarter = asyncio.create_task(restart_twice())
        ids = await submit_referrals(ne, COUNT, batch=50, tag="load")
        submitted_after = time.monotonic() - started
        await restarter
        assert len(restarts) == 2
        # Two restarts must have happened while referrals were still arriving.
        assert all(r["inbox_at_stop"] < COUNT for r in restarts)

        async def all_delivered() -> bool:
            counts = table_counts(ne_db)["outbox"]
            return counts.get(("referral.request", "delivered"), 0) == COUNT

        await wait_until(all_delivered, 240, interval=0.5, what="all 1,000 delivered at NE")
        elapsed = time.monotonic() - started
        assert await ng.stop() == 0
        duplicates += metric(ng.metrics(), "duplicates_total")

        # Sender side, from NE's store: 1,000 referral.request rows, each delivered.
        assert len(set(ids)) == COUNT
        assert Counter((await statuses(ne.store, ids)).values()) == {"delivered": COUNT}
        ne_counts = table_counts(ne_db)["outbox"]
        assert {k: v for k, v in ne_counts.items() if k[0] == "referral.request"} == {
            ("referral.request", "delivered"): COUNT
        }
        trail = await ne.store.status_trail(ids[0])
        assert [s for s, _ in trail] == ["queued", "sent", "delivered"]

        # Receiver side, from NG's store: exactly the 1,000 ids, once each.
        inbox = await ng_store.list_incoming(COUNT * 2)
        requests = [r.message_id for r in inbox if r.message_type == "referral.request"]
        assert len(requests) == len(inbox) == COUNT
        assert set(requests) == set(ids)  # 0 lost, and (by the count) 0 extra
        ng_counts = table_counts(ng_db)
        assert sum(ng_counts["outbox"].values()) == COUNT  # one delivered receipt per referral
        for message_id in ids[:: COUNT // 50]:
            assert await ng_store.get_outgoing(derived_message_id("receipt", message_id, "delivered", NIGERIA))
        audit = await received_audit_counts(ng_store)
        assert audit == {message_id: 1 for message_id in ids}  # received exactly once each, and audited
        assert ne.metrics.value("messages_received_total", type="receipt") == COUNT  # one receipt each at NE

    print(f"\n{COUNT} referrals: submitted in {submitted_after:.1f}s, all delivered in {elapsed:.1f}s "
          f"({COUNT / elapsed:.0f}/s); restarts {restarts}; redeliveries recognised by id: {duplicates:g}; "
          f"received-audit entries {len(audit)}/{COUNT}")
