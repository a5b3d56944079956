"""The service on the in-process broker: submit, deliver, receipts, read, respond, quarantine."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from datetime import datetime, timezone

import pytest
from structlog.testing import capture_logs

from gateway import errors
from gateway.envelope import seal
from gateway.schema import load_example
from gateway.schema_versions import upgrade_to_v2
from gateway.service import Actor, ConflictError, Gateway, InvalidPurposeError, NotFoundError, derived_message_id
from gateway.store import StoreUnavailableError, Withdrawal
from gateway.transport import Delivery, Disposition
from gateway.transport.memory import _Message

from testkit.gateway_pair import NIGER, NIGERIA, deliver_sealed, eventually, gateway_pair

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


async def _refer(ne: Gateway, case: str):
    """NE's example referral for ``case``, submitted to NG: its header."""
    return await ne.submit("referral.request", load_example("referral.request"), recipient=NIGERIA,
                           case_ref=case, actor=WORKER)


async def test_referral_round_trip_with_receipts_and_acceptance(tmp_path) -> None:
    async with gateway_pair(tmp_path) as (ne, ng):
        header = await _refer(ne, "ne-ng-servicecase01")
        assert await _status(ne, header.id) in {"queued", "sent", "delivered"}

        await _reaches(ne, header.id, "delivered")

        inbox = await ng.list_inbox()
        assert [r.message_id for r in inbox] == [header.id]
        opened = await ng.read_incoming(header.id, actor=OFFICER, purpose="safety_assessment")
        # Both demo agencies list schema version 2: the v1 submission travels upgraded.
        assert opened.header.schema == "2"
        assert opened.payload == upgrade_to_v2(load_example("referral.request"), "referral.request",
                                               recipient=NIGERIA, recipient_country="NG").payload

        await _reaches(ne, header.id, "read")

        await ng.respond(header.id, {"decision": "accepted", "accepted_purposes": ["safety_assessment"]}, actor=OFFICER)

        await _reaches(ne, header.id, "accepted")
        _, trail = await ne.outgoing_status(header.id)
        assert [s for s, _ in trail] == ["queued", "sent", "delivered", "read", "accepted"]


async def test_redelivered_message_is_delivered_once(tmp_path) -> None:
    async with gateway_pair(tmp_path) as (ne, ng):
        header = await _refer(ne, "ne-ng-servicecase02")

        await _reaches(ne, header.id, "delivered")
        # The sender deleted its sealed copy once the receipt arrived; the broker's copy is
        # what the receiver stored (the same bytes).
        stored = await ng.at_rest.open(await ng.store.get_incoming(header.id))
        again = Delivery(header.id, NIGER, NIGERIA, stored.envelope, {}, True)
        assert (await ng.handle_delivery(again)).name == "ACK"
        assert len(await ng.list_inbox()) == 1
        receipt_id = derived_message_id("receipt", header.id, "delivered", NIGERIA)
        assert (await ng.store.get_outgoing(receipt_id)) is not None
        assert ng.metrics.value("duplicates_total") == 1


async def test_tampered_delivery_is_quarantined_and_audited(tmp_path) -> None:
    async with gateway_pair(tmp_path) as (ne, ng):
        header = await _refer(ne, "ne-ng-servicecase03")
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
        header = await _refer(ne, "ne-ng-servicecase05")

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


def _without_encryption_keys(directory, agency_id):
    from dataclasses import replace

    agency = directory.agency(agency_id)
    changed = replace(agency, keys=tuple(k for k in agency.keys if k.use != "enc"))
    return replace(directory, agencies={**directory.agencies, agency_id: changed})


async def test_control_types_are_implied_whatever_the_entry_lists(tmp_path) -> None:
    async with gateway_pair(tmp_path) as (ne, ng):
        # An entry that forgot receipts (as copying an old docs/keys.md example did) still takes them.
        ng.directory = _without(ng.directory, NIGER, message_type="receipt")
        header = await _refer(ne, "ne-ng-servicecase06")
        await _reaches(ne, header.id, "delivered")
        assert not await _audited(ng, "receipt.failed")


async def test_a_receipt_that_cannot_be_sealed_is_retried_once_the_directory_allows_it(tmp_path) -> None:
    async with gateway_pair(tmp_path) as (ne, ng):
        good = ng.directory
        ng.directory = _without_encryption_keys(good, NIGER)  # NG cannot seal anything to NE
        header = await _refer(ne, "ne-ng-servicecase16")

        await _inbox_not_empty(ng)
        await eventually(lambda: _audited(ng, "receipt.failed"))
        assert await _status(ne, header.id) == "sent"  # no receipt came back, nothing looped
        assert await ng.transport.list_quarantine(10) == []
        assert await ng.retry_unanswered() == 0  # still not possible: audited again, nothing lost

        ng.directory = good  # a directory that allows it
        assert await ng.retry_unanswered() == 1
        await _reaches(ne, header.id, "delivered")
        assert await ng.retry_unanswered() == 0  # answered once, never twice


async def _audited(gw, event):
    return any(a.event_type == event for a in await gw.store.read_audit(1, 1000))


async def test_same_id_with_other_content_is_quarantined_not_acked_as_duplicate(tmp_path) -> None:
    async with gateway_pair(tmp_path) as (ne, ng):
        header = await _refer(ne, "ne-ng-servicecase07")

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
        header = await _refer(ne, "ne-ng-servicecase08")

        async def quarantined():
            return [q.reason_code for q in await ng.transport.list_quarantine(10)] == ["recipient_refuses"]
        await eventually(quarantined)
        assert await ng.store.get_incoming(header.id) is None


async def test_respond_is_idempotent_and_final(tmp_path) -> None:
    async with gateway_pair(tmp_path) as (ne, ng):
        header = await _refer(ne, "ne-ng-servicecase09")

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


# --- poison messages, routing and audit from verified facts (issue 15) ------------------------

CANARY = "Canary-Zainab-Oyelaran"


def _failing_for(gw, method: str, case_prefix: str, exc_factory):
    """Make ``gw.store.<method>(case_ref)`` raise for cases starting with ``case_prefix``;
    returns the list of calls that raised."""
    real = getattr(gw.store, method)
    raised: list[str] = []

    async def patched(case_ref, *args, **kwargs):
        if case_ref.startswith(case_prefix):
            raised.append(case_ref)
            raise exc_factory()
        return await real(case_ref, *args, **kwargs)

    setattr(gw.store, method, patched)
    return raised


async def _audit_of(gw, event):
    return [a for a in await gw.store.read_audit(1, 5000) if a.event_type == event]


async def test_poison_delivery_is_quarantined_after_bounded_attempts_and_good_ones_pass(tmp_path) -> None:
    async with gateway_pair(tmp_path) as (ne, ng):
        # A stored value the handler cannot read (like the 0999 withdrawal did): every attempt fails.
        raised = _failing_for(ng, "withdrawals_for_case", "ne-ng-poison", lambda: ValueError(CANARY))
        with capture_logs() as logs:
            poison = await _refer(ne, "ne-ng-poison000001")
            good = await _refer(ne, "ne-ng-goodcase0001")

            async def quarantined():
                return [q.message_id for q in await ng.transport.list_quarantine(10)] == [poison.id]
            await eventually(quarantined)
            await _inbox_not_empty(ng)
            await asyncio.sleep(0.3)  # a further attempt, if any, would come now

        assert len(raised) == ng.settings.delivery_max_attempts == 3  # bounded, counted by the gateway
        (entry,) = await ng.transport.list_quarantine(10)
        assert entry.reason_code == "handler_failed" and entry.recipient == NIGERIA
        assert "3 times" in entry.detail and "gateway/service.py:" in entry.detail and "ValueError" in entry.detail
        assert [r.message_id for r in await ng.list_inbox()] == [good.id]
        (audited,) = await _audit_of(ng, "message.quarantined")
        detail = json.loads(audited.detail_json)
        # The signature was checked before the failure: the sender is a fact, not a claim.
        assert (detail["reason"], detail["verified"], audited.agency, audited.actor) == (
            "handler_failed", True, NIGER, "system")
        assert ng.metrics.value("handler_failures_total", reason="ValueError") == 3
        assert not ng.delivery_health.degraded  # the good referral succeeded since
        failures = [e for e in logs if e["event"] == "transport.handler_failed"]
        assert [e["attempt"] for e in failures] == [1, 2, 3] and failures[-1]["next"] == "quarantine"
        assert all(e["code"] == "ValueError" and e["where"].startswith("gateway/service.py:") for e in failures)
        assert CANARY not in repr(logs) and CANARY not in entry.detail and CANARY not in audited.detail_json


async def test_transient_store_failure_is_requeued_never_quarantined(tmp_path) -> None:
    async with gateway_pair(tmp_path) as (ne, ng):
        ng.transport.config = dataclasses.replace(ng.transport.config, requeue_backoff_initial=0.01)
        raised = _failing_for(ng, "withdrawals_for_case", "ne-ng-storedown", lambda: StoreUnavailableError("down"))
        header = await _refer(ne, "ne-ng-storedown001")

        async def failed_often():
            return len(raised) >= 6  # twice the attempt limit: still not quarantined
        await eventually(failed_often)
        assert await ng.transport.list_quarantine(10) == []
        assert ng.delivery_health.degraded  # failing in a row: /readyz says degraded meanwhile
        ng.store.withdrawals_for_case = type(ng.store).withdrawals_for_case.__get__(ng.store)  # the store is back
        await _inbox_not_empty(ng)
        assert [r.message_id for r in await ng.list_inbox()] == [header.id]
        assert await ng.transport.list_quarantine(10) == []
        assert ng.metrics.value("handler_failures_total", reason="store_unavailable") == 0

        async def recovered():  # the handler reports success once the stored message's receipt is queued
            return not ng.delivery_health.degraded
        await eventually(recovered)  # recovered with the first success


WITHDRAWN_0999 = {"withdrawn_at": "0999-01-01T00:00:00Z", "decision_maker": "self", "scope": "all_purposes",
                  "erasure_requested": False}


async def test_withdrawals_dated_0999_never_make_the_handler_fail(tmp_path) -> None:
    async with gateway_pair(tmp_path) as (ne, ng):
        case = "ne-ng-year0999case"
        first = await _refer(ne, case)
        await _inbox_not_empty(ng)
        dispositions = []
        for _ in range(3):  # a non-conforming sender; the second one used to fail forever
            header, envelope = await deliver_sealed(ne, ng, "consent.withdrawal", WITHDRAWN_0999, case_ref=case)
            dispositions.append(await ng.handle_delivery(Delivery(header.id, NIGER, NIGERIA, envelope, {}, True)))
        assert dispositions == [Disposition.ACK] * 3
        assert ng.metrics.value("handler_failures_total", reason="ValueError") == 0
        assert not [q for q in await ng.transport.list_quarantine(10) if q.reason_code == "handler_failed"]
        # The case stays usable: its withdrawals read back, and a later referral is handled.
        await ng.store.withdrawals_for_case(case)
        later, envelope = await deliver_sealed(ne, ng, "referral.request", load_example("referral.request"),
                                               case_ref=case)
        assert await ng.store.get_incoming(later.id) is not None or any(
            q.message_id == later.id for q in await ng.transport.list_quarantine(20))
        assert first.id in {r.message_id for r in await ng.list_inbox()}


async def test_store_keeps_years_before_1000(tmp_path) -> None:
    async with gateway_pair(tmp_path) as (_, ng):
        at = datetime(999, 1, 1, tzinfo=timezone.utc)
        record = Withdrawal(message_id="5b0f8c1e-2d3a-4b5c-9d6e-7f8091a2b3c4", case_ref="ne-ng-year0999case",
                            direction="incoming", counterpart=NIGER, withdrawn_at=at, scope="all_purposes",
                            purposes=(), request_message_ids=(), recorded_at=datetime.now(timezone.utc))
        await ng.store.add_withdrawal(record)
        (back,) = await ng.store.withdrawals_for_case("ne-ng-year0999case")
        assert back.withdrawn_at == at


def _raw(ng, message_id: str, body: bytes, **headers: str) -> None:
    """Publish straight into NG's inbox with whatever headers a publisher likes."""
    ng.transport.broker.publish(ng.transport.config.exchange, NIGERIA, _Message(message_id, body, dict(headers), NIGERIA))


async def test_quarantine_is_routed_by_the_inbox_and_audits_unverified_senders_as_claims(tmp_path) -> None:
    async with gateway_pair(tmp_path) as (ne, ng):
        junk_ids = [str(__import__("uuid").uuid4()) for _ in range(4)]
        recipients = ["XX-NOBODY", "../#", "", "NG-NAPTIP.*"]
        for message_id, recipient in zip(junk_ids, recipients):
            _raw(ng, message_id, b"{not an envelope", **{"x-recipient": recipient, "x-sender": NIGER,
                                                        "x-delivery-count": "0"})
        _raw(ng, "not-a-uuid", b"junk", **{"x-recipient": "XX-NOBODY", "x-sender": "<Amaka Testfixture>"})

        async def all_quarantined():
            return len(await ng.transport.list_quarantine(20)) == 5
        await eventually(all_quarantined)
        listed = await ng.transport.list_quarantine(20)
        assert {q.recipient for q in listed} == {NIGERIA} and {q.reason_code for q in listed} == {"malformed"}
        assert {q.sender for q in listed} == {NIGER, ""}  # a sender header that is no agency id is not kept
        audited = await _audit_of(ng, "message.quarantined")
        assert len(audited) == 5
        for entry in audited:
            detail = json.loads(entry.detail_json)
            assert detail["verified"] is False and "sender" not in detail
            assert entry.agency is None and entry.case_ref is None and entry.actor == "system"
        assert sorted(json.loads(e.detail_json)["claimed_sender"] or "" for e in audited) == ["", NIGER, NIGER, NIGER, NIGER]
        assert {e.message_id for e in audited} == set(junk_ids) | {None}
        assert "Amaka" not in repr([e.detail_json for e in audited])
        assert ng.metrics.value("handler_failures_total", reason="UnroutableMessageError") == 0


async def test_forged_header_sender_is_a_claim_in_the_audit(tmp_path) -> None:
    async with gateway_pair(tmp_path) as (ne, ng):
        header = await _refer(ne, "ne-ng-forgedsig001")
        doc = json.loads((await ne.store.get_outgoing(header.id)).envelope)
        doc["header"]["case"] = "ne-ng-othercase0099"  # breaks the signature
        await ng.handle_delivery(Delivery(header.id, NIGER, NIGERIA, json.dumps(doc).encode(), {}, False))
        (entry,) = [e for e in await _audit_of(ng, "message.quarantined")]
        detail = json.loads(entry.detail_json)
        assert (detail["reason"], detail["claimed_sender"], detail["verified"]) == ("bad_signature", NIGER, False)
        assert entry.agency is None and entry.case_ref is None  # neither the named agency nor the named case


def _twin_envelopes(ne, ng, case: str, message_id: str) -> tuple[bytes, bytes]:
    """Two validly signed envelopes with one id and different content (a colliding sender)."""
    made = []
    for _ in range(2):  # sealing is randomised: the same payload twice gives other bytes
        payload = load_example("referral.request")
        made.append(seal(payload, message_type="referral.request", sender=ne.identity, recipient=NIGERIA,
                         directory=ne.directory, case_ref=case, now=ne.clock(), message_id=message_id)[1])
    assert made[0] != made[1]
    return made[0], made[1]


async def test_concurrent_copies_with_one_id_and_other_content_are_each_quarantined(tmp_path) -> None:
    async with gateway_pair(tmp_path) as (ne, ng):
        for n in range(8):
            message_id = str(__import__("uuid").uuid4())
            first, second = _twin_envelopes(ne, ng, f"ne-ng-twincase{n:04d}", message_id)
            results = await asyncio.gather(*(
                ng.handle_delivery(Delivery(message_id, NIGER, NIGERIA, body, {}, False)) for body in (first, second)))
            assert results == [Disposition.ACK, Disposition.ACK]
            stored = await ng.store.get_incoming(message_id)
            assert stored is not None
            quarantined = [q for q in await ng.transport.list_quarantine(100) if q.message_id == message_id]
            assert [q.reason_code for q in quarantined] == ["replayed_message"], n  # the loser, never silently acked
        audited = [e for e in await _audit_of(ng, "message.quarantined")
                   if json.loads(e.detail_json)["reason"] == "replayed_message"]
        assert len(audited) == 8
        assert ng.metrics.value("duplicates_total") == 0


async def test_concurrent_byte_identical_copies_are_one_message_and_a_duplicate(tmp_path) -> None:
    async with gateway_pair(tmp_path) as (ne, ng):
        message_id = str(__import__("uuid").uuid4())
        body, _ = _twin_envelopes(ne, ng, "ne-ng-samecopy0001", message_id)
        results = await asyncio.gather(*(
            ng.handle_delivery(Delivery(message_id, NIGER, NIGERIA, body, {}, redelivered)) for redelivered in (False, True)))
        assert results == [Disposition.ACK, Disposition.ACK]
        assert await ng.transport.list_quarantine(10) == []
        assert ng.metrics.value("duplicates_total") == 1
        assert [r.message_id for r in await ng.list_inbox()] == [message_id]


async def test_broker_back_retries_the_outbox_at_once_not_after_its_back_off(tmp_path) -> None:
    async with gateway_pair(tmp_path, retry_initial_seconds=30.0, retry_max_seconds=60.0) as (ne, ng):
        ne.transport.broker.available = False
        header = await _refer(ne, "ne-ng-reconnect001")

        async def backing_off():
            record = await ne.store.get_outgoing(header.id)
            return record.attempts >= 1 and record.status == "queued"
        await eventually(backing_off)
        assert (await ne.store.get_outgoing(header.id)).next_attempt_at > ne.clock()  # due in ~30 s
        started = asyncio.get_running_loop().time()
        ne.transport.broker.available = True  # the broker is back
        await _reaches(ne, header.id, "delivered")
        assert asyncio.get_running_loop().time() - started < 3.0


async def test_readyz_is_degraded_while_handler_failures_persist_and_recovers(tmp_path) -> None:
    from .test_api_world import api_pair, assert_conforms

    async with api_pair(tmp_path) as (ne_api, ng_api):
        ne, ng = ne_api.gateway, ng_api.gateway
        _failing_for(ng, "withdrawals_for_case", "ne-ng-readyzbad", lambda: KeyError("x"))
        status, body = await ng_api.call("GET", "/readyz", role=None)
        assert status == 200 and body["checks"]["deliveries"] is True
        for n in range(ng.settings.degraded_after_failures):
            await deliver_sealed(ne, ng, "referral.request", load_example("referral.request"),
                                 case_ref=f"ne-ng-readyzbad{n:03d}")
        status, body = await ng_api.call("GET", "/readyz", role=None)
        assert status == 503 and body["error"] == "degraded" and body["checks"]["deliveries"] is False
        assert body["detail"].startswith("failed: deliveries (5 handler failures in a row")
        async with ng_api.client.get("/openapi.json") as resp:
            assert_conforms(await resp.json(), "/readyz", "GET", 503, body)
        good, _ = await deliver_sealed(ne, ng, "referral.request", load_example("referral.request"),
                                       case_ref="ne-ng-readyzgood01")
        assert await ng.store.get_incoming(good.id) is not None
        status, body = await ng_api.call("GET", "/readyz", role=None)
        assert status == 200 and body["checks"]["deliveries"] is True


def test_delivery_health_needs_a_streak_and_forgets_it_after_the_window() -> None:
    from gateway.delivery_health import DeliveryHealth

    now = [100.0]
    health = DeliveryHealth(3, 60.0, monotonic=lambda: now[0])
    health.failed()
    health.failed()
    assert not health.degraded  # two in a row: not yet
    health.failed()
    assert health.degraded
    now[0] += 59
    assert health.degraded
    now[0] += 2  # a minute without a failure
    assert not health.degraded
    health.failed()
    assert health.degraded  # the streak was never broken by a success
    health.succeeded()
    assert not health.degraded and health.streak == 0


def _held_publishes(gw):
    """Make ``gw``'s publishes wait for a release per message; returns (started ids, release)."""
    started: list[str] = []
    gates: dict[str, asyncio.Event] = {}
    original = gw.transport.publish

    async def publish(message):
        started.append(message.message_id)
        gate = gates.setdefault(message.message_id, asyncio.Event())
        await gate.wait()  # a broker confirm that is slow to come
        await original(message)

    def release(message_id: str) -> None:
        gates.setdefault(message_id, asyncio.Event()).set()

    gw.transport.publish = publish
    return started, release


async def test_a_message_is_published_at_once_while_earlier_ones_await_their_confirm(tmp_path) -> None:
    async with gateway_pair(tmp_path, outbox_batch=2) as (ne, ng):
        started, release = _held_publishes(ne)
        submitted = []
        for n in range(3):
            header = await _refer(ne, f"ne-ng-continuous0{n}")
            submitted.append(header.id)
            if n < 2:  # each starts publishing while the earlier one still waits
                await eventually(lambda: asyncio.sleep(0, result=len(started) == n + 1))
        await asyncio.sleep(0.3)
        # outbox_batch in flight at most: the third waits for a free slot, not for a poll round.
        assert started == submitted[:2]
        release(submitted[1])
        await _reaches(ne, submitted[1], "delivered")
        await eventually(lambda: asyncio.sleep(0, result=len(started) == 3))
        assert started[2] == submitted[2]
        release(submitted[2])
        await _reaches(ne, submitted[2], "delivered")
        assert (await ne.store.get_outgoing(submitted[0])).status == "queued"  # still awaiting its confirm
        release(submitted[0])
        await _reaches(ne, submitted[0], "delivered")
        assert sorted(started) == sorted(submitted)  # each published once
        sent = [e.message_id for e in await _audit_of(ne, "message.sent")]
        assert sorted(sent) == sorted(submitted)


async def _one_publish_held(ne: Gateway, case: str):
    """A referral submitted and being published, its broker confirm held: (started, release, header)."""
    started, release = _held_publishes(ne)
    header = await _refer(ne, case)
    await eventually(lambda: asyncio.sleep(0, result=started == [header.id]))
    return started, release, header


async def _left_the_queue(gateway: Gateway, message_id: str) -> None:
    async def moved() -> bool:
        return (await gateway.store.get_outgoing(message_id)).status != "queued"
    await eventually(moved)


async def test_an_outbox_read_answered_before_a_publish_ended_does_not_publish_it_again(tmp_path) -> None:
    # The loop reads the due rows while a message submitted just now is being published; that
    # publish ends (confirm, mark_sent) before the read's answer is used: the answer still
    # lists the row as queued, and it must not be published a second time.
    async with gateway_pair(tmp_path) as (ne, ng):
        started, release, header = await _one_publish_held(ne, "ne-ng-staleread01")
        real_due = ne.store.due_outgoing

        async def answered_late(*args, **kwargs):
            due = await real_due(*args, **kwargs)
            assert header.id in [record.message_id for record in due]  # read while still queued
            release(header.id)
            await _left_the_queue(ne, header.id)
            return due

        ne.store.due_outgoing = answered_late
        assert await ne.publish_due() == 0
        ne.store.due_outgoing = real_due
        await _reaches(ne, header.id, "delivered")
        await asyncio.sleep(0.2)
        assert started == [header.id]
        assert [e.message_id for e in await _audit_of(ne, "message.sent")] == [header.id]


async def _keys_left_by_an_earlier_attempt(ne: Gateway, ng: Gateway, case: str):
    """A referral sealed by NE, and NG's case and message keys for it stored without the message."""
    header, envelope = seal(load_example("referral.request"), message_type="referral.request",
                            sender=ne.identity, recipient=NIGERIA, directory=ne.directory, case_ref=case,
                            now=ne.clock())
    await ng.at_rest.seal(header.id, case, header.type, envelope, ng.clock())  # writes the keys only
    return header, envelope


async def test_a_message_key_left_by_an_earlier_attempt_is_reused(tmp_path) -> None:
    # Before the key and the inbox row were one write, a crash between them left the key
    # alone; the message must then be stored under that key, not fail or get a second one.
    async with gateway_pair(tmp_path) as (ne, ng):
        header, envelope = await _keys_left_by_an_earlier_attempt(ne, ng, "ne-ng-leftkey0001")
        left = await ng.store.get_data_key(header.id)
        assert left is not None and await ng.store.get_incoming(header.id) is None
        disposition = await ng.handle_delivery(Delivery(header.id, NIGER, NIGERIA, envelope, {}, False))
        assert disposition == Disposition.ACK
        assert (await ng.store.get_data_key(header.id)).wrapped == left.wrapped
        opened = await ng.read_incoming(header.id, actor=OFFICER, purpose="safety_assessment")
        assert opened.header.id == header.id
        assert [e.message_id for e in await _audit_of(ng, "message.received")] == [header.id]


async def test_overlapping_outbox_reads_each_skip_the_publishes_that_ended_during_them(tmp_path) -> None:
    # publish_due() may read while the loop reads too: each read keeps its own record of the
    # publishes that ended meanwhile, and none is left behind once both are answered.
    async with gateway_pair(tmp_path) as (ne, ng):
        started, release, header = await _one_publish_held(ne, "ne-ng-overlap001")
        real_due = ne.store.due_outgoing
        gates = [asyncio.Event(), asyncio.Event()]
        calls = 0

        async def held(*args, **kwargs):
            nonlocal calls
            gate = gates[min(calls, 1)]
            calls += 1
            due = await real_due(*args, **kwargs)
            await gate.wait()
            return due

        ne.store.due_outgoing = held
        first = asyncio.create_task(ne.publish_due())
        second = asyncio.create_task(ne.publish_due())
        await eventually(lambda: asyncio.sleep(0, result=calls >= 2))
        gates[1].set()  # the later read is answered first, while the publish is still held
        assert await asyncio.wait_for(second, 5) == 0
        release(header.id)
        await _left_the_queue(ne, header.id)
        gates[0].set()  # the earlier read's answer still lists the row as queued
        assert await asyncio.wait_for(first, 5) == 0
        ne.store.due_outgoing = real_due
        assert not ne._ended_during_reads
        await _reaches(ne, header.id, "delivered")
        assert started == [header.id]


async def test_a_new_case_gets_its_key_in_the_messages_write_and_yields_to_a_key_made_meanwhile(tmp_path) -> None:
    async with gateway_pair(tmp_path) as (ne, ng):
        writes: list[str] = []
        real_add_data_key, real_add_incoming = ng.store.add_data_key, ng.store.add_incoming

        async def add_data_key(key):
            writes.append(f"key:{key.kind}")
            return await real_add_data_key(key)

        async def add_incoming(msg, **kwargs):
            writes.append("inbox+case" if kwargs.get("case_key") else "inbox")
            return await real_add_incoming(msg, **kwargs)

        ng.store.add_data_key, ng.store.add_incoming = add_data_key, add_incoming
        first, second = "ne-ng-onewrite01", "ne-ng-onewrite02"
        header = await _refer(ne, first)
        await _reaches(ne, header.id, "delivered")
        assert writes == ["inbox+case"]  # no separate case-key write
        live = await ng.store.live_case_key(first)
        assert (await ng.store.get_data_key(header.id)).parent_key_id == live.key_id

        # Another process of NG gives the second case its key between the look-up and the write.
        async def raced(msg, **kwargs):
            if kwargs.get("case_key") is not None:
                await real_add_data_key(dataclasses.replace(kwargs["case_key"], key_id="case-other-process"))
            return await add_incoming(msg, **kwargs)

        ng.store.add_incoming, writes[:] = raced, []
        header = await _refer(ne, second)
        await _reaches(ne, header.id, "delivered")
        assert writes == ["inbox+case", "key:message", "inbox"]  # refused whole, then under the winner's key
        assert (await ng.store.live_case_key(second)).key_id == "case-other-process"
        assert (await ng.store.get_data_key(header.id)).parent_key_id == "case-other-process"
        opened = await ng.read_incoming(header.id, actor=OFFICER, purpose="safety_assessment")
        assert opened.header.case == second


async def test_a_key_left_under_a_case_key_destroyed_since_drops_the_message_and_makes_no_case_key(tmp_path) -> None:
    # A crash left the message's key; a withdrawal then destroyed its case key. The redelivery
    # is dropped (payload_shredded), and no new case key is made for the withdrawn case.
    async with gateway_pair(tmp_path) as (ne, ng):
        case = "ne-ng-leftshred01"
        header, envelope = await _keys_left_by_an_earlier_attempt(ne, ng, case)
        case_key = await ng.store.live_case_key(case)
        assert await ng.store.shred_data_keys([case_key.key_id], "consent_withdrawn", ng.clock()) == [case_key.key_id]
        disposition = await ng.handle_delivery(Delivery(header.id, NIGER, NIGERIA, envelope, {}, False))
        assert disposition == Disposition.ACK
        assert await ng.store.get_incoming(header.id) is None
        assert await ng.store.live_case_key(case) is None
        dropped = await _audit_of(ng, "message.dropped")
        assert [(e.message_id, json.loads(e.detail_json)["reason"]) for e in dropped] == [(header.id, "payload_shredded")]


async def test_a_store_that_reads_but_cannot_write_does_not_make_the_outbox_republish_in_a_loop(tmp_path) -> None:
    # The confirm arrives but mark_sent fails (disk full: reads work, writes do not), with more
    # due than outbox_batch: each message is tried again after outbox_poll_seconds, not at once.
    async with gateway_pair(tmp_path, outbox_batch=2, outbox_poll_seconds=0.5) as (ne, ng):
        started, release = _held_publishes(ne)
        ids = []
        for n in range(6):
            header = await _refer(ne, f"ne-ng-diskfull0{n}")
            ids.append(header.id)

        async def disk_full(*args, **kwargs):
            raise StoreUnavailableError("disk full (simulated)")
        ne.store.mark_sent = disk_full
        with capture_logs() as logs:
            for message_id in ids:
                release(message_id)
            await asyncio.sleep(2.0)
        # Without the rest, a held-then-released row was republished as fast as it failed
        # (thousands of times in 2 s); with it, about once per poll interval per slot.
        assert 2 <= len(started) <= 2 * (1 + 2.0 / 0.5) + 2
        warnings = [e for e in logs if e["log_level"] == "warning"]
        assert warnings and all(e["event"] == "outbox.publish_failed" for e in warnings)
        assert len(warnings) <= len(started)
