"""Dates at the API edge: a sane range for every date the API accepts, and no stored date
that a later read cannot format (issue 15 item 4)."""

from __future__ import annotations

from .gateway_pair import NIGERIA, eventually
from .test_api_world import api_pair
from gateway.schema import load_example

WITHDRAWAL = {"withdrawn_at": "2026-01-20T10:00:00Z", "decision_maker": "self", "scope": "all_purposes",
              "erasure_requested": False}


async def _sent_case(ne, ng) -> str:
    body = {"recipient": NIGERIA, "case_ref": "ne-ng-datecase0001", "payload": load_example("referral.request")}
    status, queued = await ne.call("POST", "/referrals", json=body)
    assert status == 202, queued

    async def delivered() -> bool:
        return (await ng.gateway.store.get_incoming(queued["message_id"])) is not None
    await eventually(delivered)
    return queued["case_ref"]


async def test_a_withdrawal_dated_0999_is_refused_and_never_breaks_the_listing(tmp_path) -> None:
    async with api_pair(tmp_path) as (ne, ng):
        case_ref = await _sent_case(ne, ng)
        status, body = await ne.call("POST", f"/cases/{case_ref}/withdrawal",
                                     json={**WITHDRAWAL, "withdrawn_at": "0999-01-01T00:00:00Z"})
        print(status, body)
        status, body = await ne.call("GET", f"/cases/{case_ref}/withdrawals")
        print(status, body)
        assert status == 200
