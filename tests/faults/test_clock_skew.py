"""The sender's clock runs ahead of the receiver's by more than the allowed skew
(``EnvelopePolicy.max_clock_skew``, 5 minutes): the receiver refuses the message clearly --
quarantine with reason ``clock_skew``, an audit entry, no inbox row, no receipt -- the sender
keeps it as ``sent``, and both gateways carry on (a correctly dated referral afterwards is
delivered). A skew inside the window is accepted. Counted from the stores and the queue."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from gateway.clock import utcnow
from gateway.envelope import EnvelopePolicy
from gateway.service import derived_message_id

from testkit.gateway_pair import NIGERIA

from testkit.harness import in_process_gateway, submit_referrals, wait_until

pytestmark = pytest.mark.broker

WINDOW = EnvelopePolicy().max_clock_skew


async def _audit(store, event_type: str) -> list:
    found, seq = [], 1
    while batch := await store.read_audit(seq, 1000):
        found += [e for e in batch if e.event_type == event_type]
        seq = batch[-1].seq + 1
    return found


async def test_sender_clock_beyond_skew_window_is_quarantined_not_lost(tmp_path, run_id, amqp_url) -> None:
    async with in_process_gateway(tmp_path, run_id, amqp_url, agency=NIGERIA) as ng, \
            in_process_gateway(tmp_path, run_id, amqp_url) as ne:
        ne.clock = lambda: utcnow() + WINDOW + timedelta(minutes=5)  # 10 minutes ahead
        skewed = await submit_referrals(ne, 3, tag="skew")

        async def quarantined() -> bool:
            return len(await _audit(ng.store, "message.quarantined")) >= len(skewed)

        await wait_until(quarantined, 30, what="NG quarantined the skewed referrals")

        def delivered(message_id: str):
            async def check() -> bool:
                return (await ne.store.get_outgoing(message_id)).status == "delivered"
            return check

        # The sender's clock stays ahead (its outbox schedules by it too), but inside the window.
        ne.clock = lambda: utcnow() + WINDOW - timedelta(minutes=1)  # 4 minutes ahead
        (inside,) = await submit_referrals(ne, 1, tag="skewok")
        await wait_until(delivered(inside), 30, what="the referral 4 minutes ahead delivered")
        ne.clock = utcnow  # the clock is fixed: a normal referral goes through as ever
        (normal,) = await submit_referrals(ne, 1, tag="noskew")
        await wait_until(delivered(normal), 30, what="a correctly dated referral delivered")

        entries = await _audit(ng.store, "message.quarantined")
        reasons = {e.message_id: json.loads(e.detail_json).get("reason") for e in entries}
        in_queue = {q.message_id: q for q in await ng.transport.list_quarantine(20)}
        ng_inbox = {r.message_id for r in await ng.store.list_incoming(100)}
        sender_status = {i: (await ne.store.get_outgoing(i)).status for i in skewed}
        receipts_for_skewed = [await ng.store.get_outgoing(derived_message_id("receipt", i, "delivered", NIGERIA))
                               for i in skewed]
        healthy = (ng.transport_ready and ng.outbox_running and ne.transport_ready and ne.outbox_running
                   and await ng.transport.is_healthy() and await ne.transport.is_healthy())

    print(f"\nclock skew: sent={len(skewed)} quarantined={len(entries)} reasons={sorted(set(reasons.values()))} "
          f"in_quarantine_queue={len(in_queue)} stored={len(set(skewed) & ng_inbox)} "
          f"sender_status={sorted(set(sender_status.values()))}; inside-window and normal delivered")
    assert reasons == {i: "clock_skew" for i in skewed}                      # audited, one entry each
    assert {i: in_queue[i].reason_code for i in skewed} == {i: "clock_skew" for i in skewed}  # kept, with reason
    assert all("after our clock" in in_queue[i].detail for i in skewed)       # and a readable detail
    assert not set(skewed) & ng_inbox and {inside, normal} <= ng_inbox       # refused vs accepted
    assert sender_status == {i: "sent" for i in skewed}                       # sender keeps it as sent
    assert receipts_for_skewed == [None, None, None]                          # no receipt for them
    assert healthy                                                            # nothing crashed
