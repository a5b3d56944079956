"""Consent gating, withdrawal with crypto-shredding at every recipient, retention, and
payloads at rest: three gateways on the in-process broker."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from datetime import timedelta

import pytest

from gateway.at_rest import AtRest, PayloadShreddedError
from gateway.consent import ConsentExpiredError, ConsentRecipientError, ConsentRefusedError, ConsentWithdrawnError
from gateway.schema import load_example
from gateway.schema_versions import upgrade_to_v2
from gateway.service import Actor
from gateway.transport import Delivery

from testkit.gateway_pair import NIGER, NIGERIA, deliver_sealed, eventually, gateway_group, gateway_pair

NG_IOM = "NG-IOM"


def as_sent(payload: dict) -> dict:
    """A v1 example as NAPTIP receives it: both demo agencies take schema version 2."""
    return upgrade_to_v2(payload, "referral.request", recipient=NIGERIA, recipient_country="NG").payload
WORKER = Actor("amina.caseworker", "caseworker")
OFFICER = Actor("officer.ng", "caseworker")
SUBJECT = ("Amaka", "Testfixture", "Ngozi")
CASE = "ne-ng-withdraw0001"


def tracing_request() -> dict:
    """The example referral, for family tracing only (IOM missions accept that purpose)."""
    payload = load_example("referral.request")
    payload["purposes"] = ["family_tracing"]
    payload.pop("safety_concerns", None)
    return payload


WITHDRAWAL = {"withdrawn_at": "2026-11-20T10:00:00Z", "decision_maker": "self", "scope": "all_purposes",
              "erasure_requested": True}


async def _status(gw, message_id):
    return (await gw.store.get_outgoing(message_id)).status


async def _inbox_has(gw, message_id):
    async def check():
        return await gw.store.get_incoming(message_id) is not None
    await eventually(check)


def _no_subject_in(text: str) -> None:
    for name in SUBJECT:
        assert name not in text


async def test_referral_without_matching_consent_is_refused_and_audited(tmp_path) -> None:
    async with gateway_pair(tmp_path) as (ne, _):
        expired = load_example("referral.request")
        expired["consent"]["expires_at"] = "2026-01-01T00:00:00Z"
        with pytest.raises(ConsentExpiredError):
            await ne.submit("referral.request", expired, recipient=NIGERIA, case_ref=CASE, actor=WORKER)
        other_country = load_example("referral.request")
        other_country["consent"]["recipient_countries"] = ["ML"]
        with pytest.raises(ConsentRecipientError):
            await ne.submit("referral.request", other_country, recipient=NIGERIA, case_ref=CASE, actor=WORKER)
        assert await ne.store.list_outgoing_for_case(CASE) == []  # nothing queued
        refused = [e for e in await ne.store.read_audit(1, 100) if e.event_type == "consent.refused"]
        assert [json.loads(e.detail_json)["reason"] for e in refused] == [
            "consent_expired", "consent_recipient_not_covered"]
        assert {(e.case_ref, e.agency) for e in refused} == {(CASE, NIGERIA)}
        assert ne.metrics.value("consent_refusals_total", reason="consent_expired") == 1


async def test_receiver_quarantines_a_referral_its_consent_does_not_cover(tmp_path) -> None:
    async with gateway_pair(tmp_path) as (ne, ng):
        # A non-conforming sender skips its own check: sealed by hand, consent for Mali only.
        payload = load_example("referral.request")
        payload["consent"]["recipient_countries"] = ["ML"]
        header, envelope = await deliver_sealed(ne, ng, "referral.request", payload, case_ref=CASE)
        quarantined = await ng.transport.list_quarantine(10)
        assert [(q.message_id, q.reason_code) for q in quarantined] == [(header.id, "consent_recipient_not_covered")]
        assert await ng.store.get_incoming(header.id) is None


async def test_withdrawn_case_is_unreadable_at_every_recipient_and_all_acknowledge(tmp_path) -> None:
    async with gateway_group(tmp_path, (NIGER, NIGERIA, NG_IOM)) as (ne, naptip, iom):
        to_naptip = await ne.submit("referral.request", load_example("referral.request"), recipient=NIGERIA,
                                    case_ref=CASE, actor=WORKER)
        to_iom = await ne.submit("referral.request", tracing_request(), recipient=NG_IOM, case_ref=CASE, actor=WORKER)
        await _inbox_has(naptip, to_naptip.id)
        await _inbox_has(iom, to_iom.id)
        assert (await naptip.read_incoming(to_naptip.id, actor=OFFICER, purpose="safety_assessment")).payload
        assert (await iom.read_incoming(to_iom.id, actor=OFFICER, purpose="family_tracing")).payload

        result = await ne.withdraw_consent(CASE, WITHDRAWAL, actor=WORKER)
        headers = result.headers
        assert sorted(h.recipient for h in headers) == sorted([NIGERIA, NG_IOM]) and result.failures == []
        # Idempotent: the same withdrawal again sends nothing new.
        assert [h.id for h in (await ne.withdraw_consent(CASE, WITHDRAWAL, actor=WORKER)).headers] == [
            h.id for h in headers]

        async def all_acknowledged():
            return all([await _status(ne, h.id) == "accepted" for h in headers])
        await eventually(all_acknowledged)

        for gw, message_id in ((naptip, to_naptip.id), (iom, to_iom.id)):
            with pytest.raises(PayloadShreddedError):
                await gw.read_incoming(message_id, actor=OFFICER, purpose="case_followup")
            case_key_ids = await gw.store.case_key_ids(CASE)
            assert case_key_ids and all([(await gw.store.get_data_key(k)).wrapped is None for k in case_key_ids])
            events = [e.event_type for e in await gw.store.read_audit(1, 1000)]
            assert "data.shredded" in events and "message.read_refused" in events
            # Even the gateway's own private key cannot bring the payload back.
            record = await gw.store.get_incoming(message_id)
            with pytest.raises(PayloadShreddedError):
                await AtRest(gw.identity, gw.store).open(record)
            acked = [e for e in await ne.store.read_audit(1, 1000) if e.event_type == "consent.withdrawal_acknowledged"
                     and e.agency == gw.agency_id]
            assert len(acked) == 1 and json.loads(acked[0].detail_json)["case_key_destroyed"] is True

        # The old consent can no longer carry a new referral for the case.
        with pytest.raises(ConsentWithdrawnError):
            await ne.submit("referral.request", load_example("referral.request"), recipient=NIGERIA,
                            case_ref=CASE, actor=WORKER)
        # A new consent given after the withdrawal can.
        renewed = load_example("referral.request")
        renewed["consent"]["given_at"] = "2026-11-21T09:00:00Z"
        again = await ne.submit("referral.request", renewed, recipient=NIGERIA, case_ref=CASE, actor=WORKER)
        await _inbox_has(naptip, again.id)
        assert (await naptip.read_incoming(again.id, actor=OFFICER, purpose="safety_assessment")).payload == as_sent(renewed)

        for gw in (ne, naptip, iom):
            entries = await gw.store.read_audit(1, 10_000)
            _no_subject_in("".join(e.detail_json + str(e) for e in entries))


async def test_queued_referrals_never_leave_after_a_withdrawal(tmp_path) -> None:
    async with gateway_pair(tmp_path) as (ne, ng):
        await ne.transport.stop_consuming()
        await ne.stop()  # no publisher: the referral stays queued
        header = await ne.submit("referral.request", load_example("referral.request"), recipient=NIGERIA,
                                 case_ref=CASE, actor=WORKER)
        await ne.withdraw_consent(CASE, WITHDRAWAL, actor=WORKER)
        record = await ne.store.get_outgoing(header.id)
        assert (record.status, record.last_error) == ("failed", "consent_withdrawn")


async def test_partial_withdrawal_shreds_only_the_requests_with_withdrawn_purposes(tmp_path) -> None:
    async with gateway_pair(tmp_path) as (ne, ng):
        safety = load_example("referral.request", "safety_assessment_only")
        first = await ne.submit("referral.request", safety, recipient=NIGERIA, case_ref=CASE, actor=WORKER)
        second = await ne.submit("referral.request", tracing_request(), recipient=NIGERIA, case_ref=CASE, actor=WORKER)
        await _inbox_has(ng, first.id)
        await _inbox_has(ng, second.id)
        (header,) = (await ne.withdraw_consent(CASE, {**WITHDRAWAL, "scope": "some_purposes",
                                                      "purposes": ["family_tracing"]}, actor=WORKER)).headers

        async def acknowledged():
            return await _status(ne, header.id) == "accepted"
        await eventually(acknowledged)
        assert (await ng.read_incoming(first.id, actor=OFFICER, purpose="safety_assessment")).payload == as_sent(safety)
        with pytest.raises(PayloadShreddedError):
            await ng.read_incoming(second.id, actor=OFFICER, purpose="family_tracing")


async def test_retention_shreds_expired_messages_and_keeps_the_audit_trail(tmp_path) -> None:
    async with gateway_pair(tmp_path, retention_days={"referral.request": 30}) as (ne, ng):
        header = await ne.submit("referral.request", load_example("referral.request"), recipient=NIGERIA,
                                 case_ref=CASE, actor=WORKER)
        await _inbox_has(ng, header.id)
        assert await ng.apply_retention() == 0
        real_clock = ng.clock
        ng.clock = lambda: real_clock() + timedelta(days=31)
        assert await ng.apply_retention() == 1
        assert await ng.apply_retention() == 0  # already shredded
        with pytest.raises(PayloadShreddedError):
            await ng.read_incoming(header.id, actor=OFFICER, purpose="case_followup")
        shredded = [e for e in await ng.store.read_audit(1, 1000) if e.event_type == "data.shredded"]
        assert [(e.message_id, json.loads(e.detail_json)["reason"]) for e in shredded] == [(header.id, "retention")]
        # The audit trail still verifies: its checkpoint covers the shredding entry.
        checkpoint = await ng.audit_log.checkpoint()
        assert checkpoint is not None and checkpoint.tree_size == await ng.store.audit_size()


async def test_payloads_at_rest_are_encrypted_under_case_keys(tmp_path) -> None:
    async with gateway_pair(tmp_path) as (ne, ng):
        header = await ne.submit("referral.request", load_example("referral.request"), recipient=NIGERIA,
                                 case_ref=CASE, actor=WORKER)
        await _inbox_has(ng, header.id)
        record = await ng.store.get_incoming(header.id)
        sent = await ne.store.get_outgoing(header.id)
        assert record.envelope[:5] == b"RGAR1" and sent.envelope not in record.envelope
        key = await ng.store.get_data_key(header.id)
        assert key.kind == "message" and key.parent_key_id == (await ng.store.live_case_key(CASE)).key_id
        # A redelivery of the same bytes is recognised by digest and changes nothing.
        again = Delivery(header.id, NIGER, NIGERIA, sent.envelope, {}, True)
        assert (await ng.handle_delivery(again)).name == "ACK"
        assert (await ng.store.get_incoming(header.id)).envelope == record.envelope
        db = sqlite3.connect(tmp_path / f"{NIGERIA}.db")
        blob = b"".join(bytes(r[0]) for r in db.execute("SELECT envelope FROM inbox"))
        db.close()
        assert sent.envelope[40:120] not in blob


async def test_a_shredded_key_is_gone_from_the_database_files(tmp_path) -> None:
    async with gateway_pair(tmp_path, retention_days={"referral.request": 1}) as (ne, ng):
        header = await ne.submit("referral.request", load_example("referral.request"), recipient=NIGERIA,
                                 case_ref=CASE, actor=WORKER)
        await _inbox_has(ng, header.id)
        wrapped = (await ng.store.get_data_key(header.id)).wrapped
        real_clock = ng.clock
        ng.clock = lambda: real_clock() + timedelta(days=2)
        assert await ng.apply_retention() == 1
        files = sorted(tmp_path.glob(f"{NIGERIA}.db*"))
        assert files and not any(wrapped in f.read_bytes() for f in files)


async def test_key_rotation_is_audited_at_start(tmp_path) -> None:
    from nacl.public import PrivateKey

    from gateway.keys import AgencyIdentity

    async with gateway_pair(tmp_path) as (ne, _):
        entries = [e for e in await ne.store.read_audit(1, 100) if e.event_type in ("keys.in_use", "key.rotated")]
        assert [e.event_type for e in entries] == ["keys.in_use"]
        await ne.start()  # same keys: nothing new
        await ne.stop()
        old = ne.identity
        ne.identity = AgencyIdentity.create(old.agency_id, old.signing_key, *old.encryption_keys.values(),
                                            PrivateKey.generate())
        await ne.start()
        await ne.stop()
        events = [e for e in await ne.store.read_audit(1, 1000) if e.event_type in ("keys.in_use", "key.rotated")]
        assert [e.event_type for e in events] == ["keys.in_use", "key.rotated", "keys.in_use"]
        rotated = json.loads(events[1].detail_json)
        assert len(rotated["to"]["enc"]) == len(rotated["from"]["enc"]) + 1


async def _acknowledged(ne, headers):
    async def check():
        return all([await _status(ne, h.id) == "accepted" for h in headers])
    await eventually(check)


async def test_a_replayed_withdrawal_does_not_shred_data_sent_later_under_a_new_consent(tmp_path) -> None:
    async with gateway_pair(tmp_path) as (ne, ng):
        first = await ne.submit("referral.request", load_example("referral.request"), recipient=NIGERIA,
                                case_ref=CASE, actor=WORKER)
        await _inbox_has(ng, first.id)
        result = await ne.withdraw_consent(CASE, WITHDRAWAL, actor=WORKER)
        await _acknowledged(ne, result.headers)
        renewed = load_example("referral.request")
        renewed["consent"]["given_at"] = "2026-11-21T09:00:00Z"
        later = await ne.submit("referral.request", renewed, recipient=NIGERIA, case_ref=CASE, actor=WORKER)
        await _inbox_has(ng, later.id)
        # The same withdrawal bytes arrive again (a lost ack, a requeue or a replay).
        (header,) = result.headers
        again = Delivery(header.id, NIGER, NIGERIA, (await ne.store.get_outgoing(header.id)).envelope, {}, True)
        assert (await ng.handle_delivery(again)).name == "ACK"
        assert (await ng.read_incoming(later.id, actor=OFFICER, purpose="safety_assessment")).payload == as_sent(renewed)
        shredded = [e for e in await ng.store.read_audit(1, 1000) if e.event_type == "data.shredded"]
        assert len(shredded) == 1


async def test_a_referral_racing_a_withdrawal_is_refused_or_withdrawn_too(tmp_path) -> None:
    async with gateway_group(tmp_path, (NIGER, NIGERIA, NG_IOM)) as (ne, naptip, iom):
        first = await ne.submit("referral.request", load_example("referral.request"), recipient=NIGERIA,
                                case_ref=CASE, actor=WORKER)
        await _inbox_has(naptip, first.id)
        withdrawn, racing = await asyncio.gather(
            ne.withdraw_consent(CASE, WITHDRAWAL, actor=WORKER),
            ne.submit("referral.request", tracing_request(), recipient=NG_IOM, case_ref=CASE, actor=WORKER),
            return_exceptions=True)
        assert not isinstance(withdrawn, BaseException)
        if isinstance(racing, BaseException):
            assert isinstance(racing, ConsentWithdrawnError)
            assert [h.recipient for h in withdrawn.headers] == [NIGERIA]
        else:  # stored first: the withdrawal covers it (given up if still queued, else sent to IOM too)
            assert sorted(h.recipient for h in withdrawn.headers) == sorted([NIGERIA, NG_IOM])
        await _acknowledged(ne, withdrawn.headers)
        for record in await iom.store.list_incoming_for_case(CASE):
            if record.message_type == "referral.request":
                with pytest.raises(PayloadShreddedError):
                    await iom.read_incoming(record.message_id, actor=OFFICER, purpose="family_tracing")


async def test_case_data_stops_flowing_both_ways_after_a_withdrawal(tmp_path) -> None:
    async with gateway_pair(tmp_path) as (ne, ng):
        first = await ne.submit("referral.request", load_example("referral.request"), recipient=NIGERIA,
                                case_ref=CASE, actor=WORKER)
        await _inbox_has(ng, first.id)
        result = await ne.withdraw_consent(CASE, WITHDRAWAL, actor=WORKER)
        await _acknowledged(ne, result.headers)
        followup = load_example("case.followup")
        with pytest.raises(ConsentWithdrawnError):
            await ne.submit("case.followup", followup, recipient=NIGERIA, case_ref=CASE, actor=WORKER)
        tracing = load_example("family_tracing.result")
        with pytest.raises(ConsentWithdrawnError):
            await ng.submit("family_tracing.result", tracing, recipient=NIGER, case_ref=CASE, actor=OFFICER)
        # A non-conforming sender is stopped at the receiver, and nothing of it is kept.
        header, envelope = await deliver_sealed(ng, ne, "family_tracing.result", tracing, case_ref=CASE)
        (q,) = [q for q in await ne.transport.list_quarantine(10) if q.message_id == header.id]
        assert q.reason_code == "consent_withdrawn"
        assert await ne.store.get_incoming(header.id) is None
        # Closing the case stays possible.
        closure = load_example("case.closure")
        await ng.submit("case.closure", closure, recipient=NIGER, case_ref=CASE, actor=OFFICER)


async def test_only_the_sender_can_withdraw_its_referrals_and_not_from_the_future(tmp_path) -> None:
    async with gateway_group(tmp_path, (NIGER, NIGERIA, "ML-DNPEF")) as (ne, ng, ml):
        # Mali's gateway claims a withdrawal for NE's case pseudonym, dated in the future.
        future = {**WITHDRAWAL, "withdrawn_at": "2029-01-01T00:00:00Z"}
        header, envelope = await deliver_sealed(ml, ng, "consent.withdrawal", future, case_ref=CASE)
        assert [q.reason_code for q in await ng.transport.list_quarantine(10)] == ["withdrawal_in_future"]
        # Dated in the past it is recorded, but it does not block NE's referrals.
        past = {**WITHDRAWAL}
        header, envelope = await deliver_sealed(ml, ng, "consent.withdrawal", past, case_ref=CASE)
        referral = await ne.submit("referral.request", load_example("referral.request"), recipient=NIGERIA,
                                   case_ref=CASE, actor=WORKER)
        await _inbox_has(ng, referral.id)
        assert (await ng.read_incoming(referral.id, actor=OFFICER, purpose="safety_assessment")).payload
        # And our own API refuses a future withdrawal.
        with pytest.raises(ConsentRefusedError) as info:
            await ne.withdraw_consent(CASE, future, actor=WORKER)
        assert info.value.code == "withdrawal_in_future"


async def test_a_consent_refusal_keeps_no_payload_in_quarantine(tmp_path) -> None:
    async with gateway_pair(tmp_path) as (ne, ng):
        payload = load_example("referral.request")
        payload["consent"]["recipient_countries"] = ["ML"]
        header, envelope = await deliver_sealed(ne, ng, "referral.request", payload, case_ref=CASE)
        (q,) = await ng.transport.list_quarantine(10)
        assert q.size < len(envelope) // 2  # the header only; the sealed payload was dropped
