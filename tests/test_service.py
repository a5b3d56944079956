"""The service on the in-process broker: submit, deliver, receipts, read, respond, quarantine."""

from __future__ import annotations

import json

import pytest

from gateway import errors
from gateway.schema import load_example
from gateway.service import Actor, ConflictError, InvalidPurposeError, NotFoundError, derived_message_id
from gateway.transport import Delivery

from .gateway_pair import NIGER, NIGERIA, eventually, gateway_pair

WORKER = Actor("amina.caseworker", "caseworker")
OFFICER = Actor("officer.ng", "caseworker")


async def _status(gw, message_id):
    record, _ = await gw.outgoing_status(message_id)
    return record.status


async def _reaches(gw, message_id, status):
    async def reached():
        return await _status(gw, message_id) == status
    await eventually(reached)


async def _inbox_not_empty(gw):
    async def not_empty():
        return bool(await gw.list_inbox())
    await eventually(not_empty)


async def test_referral_round_trip_with_receipts_and_acceptance(tmp_path) -> None:
    async with gateway_pair(tmp_path) as (ne, ng):
        header = await ne.submit("referral.request", load_example("referral.request"), recipient=NIGERIA,
                                 case_ref="ne-ng-servicecase01", actor=WORKER)
        assert await _status(ne, header.id) in {"queued", "sent", "delivered"}

        await _reaches(ne, header.id, "delivered")

        inbox = await ng.list_inbox()
        assert [r.message_id for r in inbox] == [header.id]
        opened = await ng.read_incoming(header.id, actor=OFFICER, purpose="safety_assessment")
        assert opened.payload == load_example("referral.request")

        await _reaches(ne, header.id, "read")

        await ng.respond(header.id, {"decision": "accepted", "accepted_purposes": ["safety_assessment"]}, actor=OFFICER)

        await _reaches(ne, header.id, "accepted")
        _, trail = await ne.outgoing_status(header.id)
        assert [s for s, _ in trail] == ["queued", "sent", "delivered", "read", "accepted"]


async def test_redelivered_message_is_delivered_once(tmp_path) -> None:
    async with gateway_pair(tmp_path) as (ne, ng):
        header = await ne.submit("referral.request", load_example("referral.request"), recipient=NIGERIA,
                                 case_ref="ne-ng-servicecase02", actor=WORKER)

        await _reaches(ne, header.id, "delivered")
        record = await ne.store.get_outgoing(header.id)
        again = Delivery(header.id, NIGER, NIGERIA, record.envelope, {}, True)
        assert (await ng.handle_delivery(again)).name == "ACK"
        assert len(await ng.list_inbox()) == 1
        receipt_id = derived_message_id("receipt", header.id, "delivered", NIGERIA)
        assert (await ng.store.get_outgoing(receipt_id)) is not None
        assert ng.metrics.value("duplicates_total") == 1


async def test_tampered_delivery_is_quarantined_and_audited(tmp_path) -> None:
    async with gateway_pair(tmp_path) as (ne, ng):
        header = await ne.submit("referral.request", load_example("referral.request"), recipient=NIGERIA,
                                 case_ref="ne-ng-servicecase03", actor=WORKER)
        record = await ne.store.get_outgoing(header.id)
        doc = json.loads(record.envelope)
        doc["header"]["case"] = "ne-ng-othercase0003"
        forged = Delivery(header.id, NIGER, NIGERIA, json.dumps(doc).encode(), {}, False)
        await ng.handle_delivery(forged)
        quarantined = await ng.transport.list_quarantine(10)
        assert [(q.message_id, q.reason_code) for q in quarantined] == [(header.id, "bad_signature")]
        audit = await ng.store.read_audit(1, 100)
        assert any(a.event_type == "message.quarantined" and "bad_signature" in a.detail_json for a in audit)


async def test_receipt_for_a_message_never_sent_is_quarantined(tmp_path) -> None:
    async with gateway_pair(tmp_path) as (ne, ng):
        fake_id = "5b0f8c1e-2d3a-4b5c-9d6e-7f8091a2b3c4"
        header = await ng.submit("receipt", {"message_id": fake_id, "status": "delivered",
                                             "status_at": "2026-11-23T12:00:00Z"},
                                 recipient=NIGER, case_ref="ne-ng-servicecase04", actor=OFFICER, in_reply_to=fake_id)

        async def quarantined():
            return any(q.message_id == header.id for q in await ne.transport.list_quarantine(10))
        await eventually(quarantined)
        assert (await ne.transport.list_quarantine(10))[0].reason_code == "reference_mismatch"


async def test_read_and_respond_errors(tmp_path) -> None:
    async with gateway_pair(tmp_path) as (ne, ng):
        with pytest.raises(NotFoundError):
            await ng.read_incoming("5b0f8c1e-2d3a-4b5c-9d6e-7f8091a2b3c4", actor=OFFICER, purpose="family_tracing")
        with pytest.raises(InvalidPurposeError):
            await ng.read_incoming("5b0f8c1e-2d3a-4b5c-9d6e-7f8091a2b3c4", actor=OFFICER, purpose="looking")
        with pytest.raises(NotFoundError):
            await ng.respond("5b0f8c1e-2d3a-4b5c-9d6e-7f8091a2b3c4", {"decision": "accepted"}, actor=OFFICER)
        header = await ne.submit("referral.request", load_example("referral.request"), recipient=NIGERIA,
                                 case_ref="ne-ng-servicecase05", actor=WORKER)

        await _inbox_not_empty(ne)
        receipt = (await ne.list_inbox())[0]
        with pytest.raises(ConflictError):
            await ne.respond(receipt.message_id, {"decision": "accepted", "accepted_purposes": ["assistance"]}, actor=WORKER)
        with pytest.raises(errors.SchemaInvalidError):
            await ng.respond(header.id, {"decision": "accepted"}, actor=OFFICER)  # accepted_purposes missing


def _without(directory, agency_id, *, message_type=None, purpose=None):
    from dataclasses import replace

    agency = directory.agency(agency_id)
    changed = replace(agency,
                      message_types=agency.message_types - {message_type} if message_type else agency.message_types,
                      purposes=agency.purposes - {purpose} if purpose else agency.purposes)
    return replace(directory, agencies={**directory.agencies, agency_id: changed})


async def test_a_receipt_that_cannot_be_sealed_does_not_fail_the_stored_message(tmp_path) -> None:
    async with gateway_pair(tmp_path) as (ne, ng):
        ng.directory = _without(ng.directory, NIGER, message_type="receipt")  # NG thinks NE takes no receipts
        header = await ne.submit("referral.request", load_example("referral.request"), recipient=NIGERIA,
                                 case_ref="ne-ng-servicecase06", actor=WORKER)

        await _inbox_not_empty(ng)
        await eventually(lambda: _audited(ng, "receipt.failed"))
        assert await _status(ne, header.id) == "sent"  # no receipt came back, nothing looped
        assert await ng.transport.list_quarantine(10) == []


async def _audited(gw, event):
    return any(a.event_type == event for a in await gw.store.read_audit(1, 1000))


async def test_same_id_with_other_content_is_quarantined_not_acked_as_duplicate(tmp_path) -> None:
    async with gateway_pair(tmp_path) as (ne, ng):
        header = await ne.submit("referral.request", load_example("referral.request"), recipient=NIGERIA,
                                 case_ref="ne-ng-servicecase07", actor=WORKER)

        await _reaches(ne, header.id, "delivered")
        other = await ne.submit("case.followup", load_example("case.followup"), recipient=NIGERIA,
                                case_ref="ne-ng-servicecase07", actor=WORKER)
        record = await ne.store.get_outgoing(other.id)
        doc = json.loads(record.envelope)
        doc["header"]["id"] = header.id  # reuse the id of the delivered referral
        await ng.handle_delivery(Delivery(header.id, NIGER, NIGERIA, json.dumps(doc).encode(), {}, False))
        reasons = {q.reason_code for q in await ng.transport.list_quarantine(10)}
        assert reasons == {"replayed_message"}


async def test_receiver_refuses_purposes_its_directory_entry_does_not_accept(tmp_path) -> None:
    async with gateway_pair(tmp_path) as (ne, ng):
        ng.directory = _without(ng.directory, NIGERIA, purpose="family_tracing")
        header = await ne.submit("referral.request", load_example("referral.request"), recipient=NIGERIA,
                                 case_ref="ne-ng-servicecase08", actor=WORKER)

        async def quarantined():
            return [q.reason_code for q in await ng.transport.list_quarantine(10)] == ["recipient_refuses"]
        await eventually(quarantined)
        assert await ng.store.get_incoming(header.id) is None


async def test_respond_is_idempotent_and_final(tmp_path) -> None:
    async with gateway_pair(tmp_path) as (ne, ng):
        header = await ne.submit("referral.request", load_example("referral.request"), recipient=NIGERIA,
                                 case_ref="ne-ng-servicecase09", actor=WORKER)

        await _inbox_not_empty(ng)
        more = await ng.respond(header.id, {"decision": "more_information_needed", "information_needed": ["identity"]},
                                actor=OFFICER)
        accept = {"decision": "accepted", "accepted_purposes": ["safety_assessment"]}
        first = await ng.respond(header.id, accept, actor=OFFICER)
        again = await ng.respond(header.id, accept, actor=OFFICER)  # a client retry
        assert first.id == again.id != more.id
        with pytest.raises(ConflictError, match="already answered: accepted"):
            await ng.respond(header.id, {"decision": "declined", "decline_reason": "no_capacity"}, actor=OFFICER)

        await _reaches(ne, header.id, "accepted")
        responses = [r for r in await ne.list_inbox() if r.message_type == "referral.response"]
        assert len(responses) == 2  # more information, then accepted: never the retry twice
