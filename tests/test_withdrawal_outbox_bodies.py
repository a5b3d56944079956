"""A withdrawal leaves the sender no readable copy of the case data it covers (review 12 H2):
referrals and, when it closes the case with a recipient, every case-data message sent to it."""

from __future__ import annotations

from pathlib import Path

from gateway.outbox_body import is_deleted
from gateway.schema import load_example
from gateway.service import Actor
from gateway.store import AuditQuery
from gateway.withdrawal import CASE_DATA_TYPES

from testkit.gateway_pair import NIGERIA, eventually, gateway_pair

WORKER = Actor("amina.caseworker", "caseworker")
WITHDRAWAL = {"withdrawn_at": "2026-11-20T10:00:00Z", "decision_maker": "self", "scope": "all_purposes",
              "erasure_requested": True}


async def _referral_delivered(ne, case: str) -> str:
    ref = await ne.submit("referral.request", load_example("referral.request"), recipient=NIGERIA,
                          case_ref=case, actor=WORKER)

    async def delivered() -> bool:
        r = await ne.store.get_outgoing(ref.id)
        return r.status in ("delivered", "read", "accepted")

    await eventually(delivered, timeout=10)
    return ref.id


async def test_withdrawal_deletes_the_body_of_case_data_not_yet_receipted(tmp_path: Path) -> None:
    async with gateway_pair(tmp_path) as (ne, ng):
        case = "ne-ng-fsreview0001"
        ref = await _referral_delivered(ne, case)
        await ng.stop()  # the recipient is down for a while: nothing is receipted
        assert "case.followup" in CASE_DATA_TYPES
        fu = await ne.submit("case.followup", load_example("case.followup"), recipient=NIGERIA,
                             case_ref=case, actor=WORKER)
        await ne.withdraw_consent(case, WITHDRAWAL, actor=WORKER)
        r_ref, r_fu = await ne.store.get_outgoing(ref), await ne.store.get_outgoing(fu.id)
        assert is_deleted(r_ref.envelope) and is_deleted(r_fu.envelope)
        deleted = await ne.store.query_audit(AuditQuery(event_types=("message.body_deleted",)), 100)
        assert fu.id in {e.message_id for e in deleted}


async def test_withdrawal_gives_up_queued_case_data_so_it_is_never_published(tmp_path: Path) -> None:
    async with gateway_pair(tmp_path) as (ne, ng):
        case = "ne-ng-fsreview0002"
        await _referral_delivered(ne, case)
        await ne.stop()  # the sender's publisher is stopped: the follow-up stays queued
        fu = await ne.submit("case.followup", load_example("case.followup"), recipient=NIGERIA,
                             case_ref=case, actor=WORKER)
        assert (await ne.store.get_outgoing(fu.id)).status == "queued"
        await ne.withdraw_consent(case, WITHDRAWAL, actor=WORKER)
        record = await ne.store.get_outgoing(fu.id)
        assert record.status == "failed" and record.last_error == "consent_withdrawn"
        assert is_deleted(record.envelope)


async def test_a_withdrawal_naming_referrals_leaves_other_case_data_alone(tmp_path: Path) -> None:
    async with gateway_pair(tmp_path) as (ne, ng):
        case = "ne-ng-fsreview0003"
        ref = await _referral_delivered(ne, case)
        await ng.stop()
        fu = await ne.submit("case.followup", load_example("case.followup"), recipient=NIGERIA,
                             case_ref=case, actor=WORKER)
        await ne.withdraw_consent(case, {**WITHDRAWAL, "request_message_ids": [ref]}, actor=WORKER)
        assert not is_deleted((await ne.store.get_outgoing(fu.id)).envelope)
