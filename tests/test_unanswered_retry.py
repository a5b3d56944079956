"""Retrying a receipt that could not be sealed makes only the receipt (security review 12, L6):
it must not re-run the other effects of the old message, such as the case state."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from gateway.schema import load_example
from gateway.service import Actor

from testkit.gateway_pair import NIGER, NIGERIA, eventually, gateway_pair

WORKER = Actor("amina.caseworker", "caseworker")
CASE = "ne-ng-unanswer0001"


async def test_a_late_receipt_does_not_roll_the_case_state_back(tmp_path: Path) -> None:
    async with gateway_pair(tmp_path) as (ne, ng):
        full = ng.directory
        agency = full.agency(NIGER)
        # NG's directory lists no encryption key of NE for a while: no receipt can be sealed.
        ng.directory = replace(full, agencies={
            **full.agencies, NIGER: replace(agency, keys=tuple(k for k in agency.keys if k.use != "enc"))})
        first = await ne.submit("referral.request", load_example("referral.request"), recipient=NIGERIA,
                                case_ref=CASE, actor=WORKER)

        async def receipt_failed() -> bool:
            return any(a.event_type == "receipt.failed" and a.message_id == first.id
                       for a in await ng.store.read_audit(1, 10_000))

        await eventually(receipt_failed)
        ng.directory = full
        later = await ne.submit("case.followup", load_example("case.followup"), recipient=NIGERIA,
                                case_ref=CASE, actor=WORKER)

        async def followup_stored() -> bool:
            case = await ng.store.get_case(CASE)
            return case is not None and case.state == "received:case.followup"

        await eventually(followup_stored)
        before = await ng.store.get_case(CASE)
        assert await ng.retry_unanswered() == 1
        assert await ng.store.get_case(CASE) == before
        assert later.id != first.id
