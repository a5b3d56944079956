"""End to end on the real RabbitMQ: two gateways, one referral, every receipt, and a forgery.

The same flows as ``test_service.py`` (in-process broker), here through aio-pika, quorum
queues and publisher confirms, with unique exchange/queue names per run (``gateway_pair``).
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter

import aio_pika
import pytest

from gateway.envelope import seal
from gateway.schema import load_example
from gateway.schema_versions import upgrade_to_v2
from gateway.service import Actor, derived_message_id
from gateway.transport.base import H_RECIPIENT, H_SENDER

from testkit.gateway_pair import NIGER, NIGERIA, eventually, gateway_pair

pytestmark = pytest.mark.broker

WORKER = Actor("amina.caseworker", "caseworker")
OFFICER = Actor("officer.ng", "caseworker")


async def _status(gw, message_id: str) -> str:
    record, _ = await gw.outgoing_status(message_id)
    return record.status


async def _reaches(gw, message_id: str, status: str, timeout: float = 30.0) -> None:
    async def check() -> bool:
        return await _status(gw, message_id) == status

    await eventually(check, timeout)


async def _quiet(gw, seconds: float = 0.5) -> None:
    """Wait until the gateway's outbox has nothing left to publish, then a little more."""

    async def drained() -> bool:
        return not await gw.store.due_outgoing(gw.clock(), 1)

    await eventually(drained, 30)
    await asyncio.sleep(seconds)


async def test_referral_round_trip_with_receipts_and_acceptance(tmp_path, amqp_url: str) -> None:
    async with gateway_pair(tmp_path, transport="amqp", amqp_url=amqp_url) as (ne, ng):
        header = await ne.submit("referral.request", load_example("referral.request"), recipient=NIGERIA,
                                 case_ref="ne-ng-e2ecase0001", actor=WORKER)
        assert await _status(ne, header.id) in {"queued", "sent", "delivered"}

        await _reaches(ne, header.id, "delivered")  # NG stored it and its receipt came back
        inbox = await ng.list_inbox(limit=100)
        assert [(r.message_id, r.message_type, r.sender) for r in inbox] == [(header.id, "referral.request", NIGER)]

        opened = await ng.read_incoming(header.id, actor=OFFICER, purpose="safety_assessment")
        # Both demo agencies take schema version 2: the v1 example travelled upgraded.
        assert opened.header.schema == "2"
        assert opened.payload == upgrade_to_v2(load_example("referral.request"), "referral.request",
                                               recipient=NIGERIA, recipient_country="NG").payload
        await _reaches(ne, header.id, "read")

        response = await ng.respond(header.id, {"decision": "accepted", "accepted_purposes": ["safety_assessment"]},
                                    actor=OFFICER)
        await _reaches(ne, header.id, "accepted")

        _, trail = await ne.outgoing_status(header.id)
        assert [s for s, _ in trail] == ["queued", "sent", "delivered", "read", "accepted"]

        # Let the last receipts settle, then count what each side holds.
        await _quiet(ne)
        await _quiet(ng)
        ng_inbox = await ng.list_inbox(limit=100)
        assert [r.message_id for r in ng_inbox if r.message_type == "referral.request"] == [header.id]
        # Besides the referral, NG holds only NE's delivered receipt for NG's response.
        assert Counter(r.message_type for r in ng_inbox) == {"referral.request": 1, "receipt": 1}
        assert {r.message_id for r in ng_inbox} == {
            header.id, derived_message_id("receipt", response.id, "delivered", NIGER)
        }
        ne_inbox = await ne.list_inbox(limit=100)
        assert Counter(r.message_type for r in ne_inbox) == {"receipt": 2, "referral.response": 1}
        assert {r.message_id for r in ne_inbox} == {
            derived_message_id("receipt", header.id, "delivered", NIGERIA),
            derived_message_id("receipt", header.id, "read", NIGERIA),
            response.id,
        }
        assert await _status(ng, response.id) == "delivered"
        assert ng.metrics.value("duplicates_total") == ne.metrics.value("duplicates_total") == 0
        assert await ng.transport.list_quarantine(10) == []
        assert await ne.transport.list_quarantine(10) == []


async def test_tampered_envelope_is_quarantined_and_the_next_message_flows(tmp_path, amqp_url: str) -> None:
    async with gateway_pair(tmp_path, transport="amqp", amqp_url=amqp_url) as (ne, ng):
        # A genuine envelope from NE (never published by NE) with a header field altered
        # after signing, published straight to NG's inbox queue as an attacker could.
        forged_header, envelope = seal(
            load_example("referral.request"), message_type="referral.request", sender=ne.identity,
            recipient=NIGERIA, directory=ne.directory, case_ref="ne-ng-e2ecase0002", now=ne.clock(),
        )
        doc = json.loads(envelope)
        doc["header"]["case"] = "ne-ng-othercase0002"
        forged = json.dumps(doc).encode()

        inbox_queue = ng.transport.config.inbox(NIGERIA)
        connection = await aio_pika.connect(amqp_url)
        async with connection:
            channel = await connection.channel(publisher_confirms=True)
            await channel.default_exchange.publish(
                aio_pika.Message(forged, message_id=forged_header.id, delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                                 headers={"type": "referral.request", H_SENDER: NIGER, H_RECIPIENT: NIGERIA}),
                routing_key=inbox_queue, mandatory=True,
            )

        async def quarantined() -> bool:
            return bool(await ng.transport.list_quarantine(10))

        await eventually(quarantined, 30)
        (entry,) = await ng.transport.list_quarantine(10)
        assert (entry.message_id, entry.reason_code, entry.sender, entry.recipient) == (
            forged_header.id, "bad_signature", NIGER, NIGERIA
        )
        assert await ng.store.get_incoming(forged_header.id) is None
        assert ng.metrics.value("messages_quarantined_total", reason="bad_signature") == 1
        audit = await ng.store.read_audit(1, 1000)
        assert [a.message_id for a in audit if a.event_type == "message.quarantined"] == [forged_header.id]

        # The consumer is still running: the next genuine referral is stored and receipted.
        header = await ne.submit("referral.request", load_example("referral.request"), recipient=NIGERIA,
                                 case_ref="ne-ng-e2ecase0003", actor=WORKER)
        await _reaches(ne, header.id, "delivered")
        assert [r.message_id for r in await ng.list_inbox(limit=100)] == [header.id]
        # The forged message was acked into quarantine, not left cycling in the inbox.
        assert [q.message_id for q in await ng.transport.list_quarantine(10)] == [forged_header.id]
