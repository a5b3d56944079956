"""Dates at the API edge: a sane range for every date the API accepts, and no stored date
that a later read cannot format (issue 15 item 4)."""

from __future__ import annotations

import json
from datetime import datetime, timezone

from gateway.api.dates import FORWARD, date_fields, date_violations
from gateway.clock import format_ts
from gateway.schema import SCHEMA_DIR, load_example
from gateway.store import Withdrawal
from gateway.store.sqlite import _dt, _ts

from testkit.gateway_pair import NIGERIA, eventually
from .test_api_world import api_pair

WITHDRAWAL = {"withdrawn_at": "2026-01-20T10:00:00Z", "decision_maker": "self", "scope": "all_purposes",
              "erasure_requested": False}
NOW = datetime(2026, 3, 6, 12, 0, tzinfo=timezone.utc)


async def _sent_case(ne, ng) -> tuple[str, str]:
    body = {"recipient": NIGERIA, "case_ref": "ne-ng-datecase0001", "payload": load_example("referral.request")}
    status, queued = await ne.call("POST", "/referrals", json=body)
    assert status == 202, queued

    async def delivered() -> bool:
        return (await ng.gateway.store.get_incoming(queued["message_id"])) is not None
    await eventually(delivered)
    return queued["case_ref"], queued["message_id"]


async def test_a_withdrawal_dated_0999_is_refused_and_a_stored_one_never_breaks_the_listing(tmp_path) -> None:
    async with api_pair(tmp_path) as (ne, ng):
        case_ref, _ = await _sent_case(ne, ng)
        status, body = await ne.call("POST", f"/cases/{case_ref}/withdrawal",
                                     json={**WITHDRAWAL, "withdrawn_at": "0999-01-01T00:00:00Z"})
        assert (status, body["error"]) == (422, "withdrawal_too_early")
        assert body["detail"].startswith("$.withdrawn_at:") and "0999" not in body["detail"]
        # One stored before this check existed (or by another path) still lists: the read formats it.
        await ne.gateway.store.add_withdrawal(Withdrawal(
            message_id="0f0f0f0f-0000-4000-8000-000000000999", case_ref=case_ref, direction="incoming",
            counterpart=NIGERIA, withdrawn_at=datetime(999, 1, 1, tzinfo=timezone.utc), scope="all_purposes",
            purposes=(), request_message_ids=(), recorded_at=ne.gateway.clock()))
        status, body = await ne.call("GET", f"/cases/{case_ref}/withdrawals")
        assert status == 200, body
        assert [i["withdrawn_at"] for i in body["items"]] == ["0999-01-01T00:00:00Z"]


def test_timestamps_before_year_1000_format_and_read_back() -> None:
    early = datetime(999, 1, 1, 0, 0, 1, tzinfo=timezone.utc)
    assert format_ts(early) == "0999-01-01T00:00:01Z"
    assert _ts(early) == "0999-01-01T00:00:01.000000Z"
    assert _dt(_ts(early)) == early
    assert _dt("999-01-01T00:00:01.000000Z") == early  # a row written with glibc's short year


def test_every_date_property_of_the_schemas_is_found_and_is_always_a_date() -> None:
    fields = date_fields()
    assert {"withdrawn_at", "date_of_birth", "given_at", "expires_at", "expected_by", "planned_on"} <= set(fields)
    assert FORWARD <= set(fields)
    # A name is a date wherever a schema declares it (else the walk by name would misjudge one).
    assert {"decided_on", "reflection_period_until"} <= set(fields)  # v2 (best interests, criminal justice)
    text = "".join(p.read_text(encoding="utf-8") for v in ("v1", "v2") for p in (SCHEMA_DIR / v).glob("*.schema.json"))
    for name in fields:
        for other in ('"type": "string"', '"type": "integer"'):
            assert f'"{name}": {{{other}' not in text, name


def test_date_violations_name_the_path_and_never_the_value() -> None:
    payload = load_example("referral.request")
    payload["consent"]["given_at"] = "0999-01-01T00:00:00Z"
    payload["person"]["age"] = {"minor": False, "date_of_birth": "2026-03-09"}  # 3 days ahead
    found = date_violations(payload, NOW, ("payload",))
    assert {(v.path, v.rule) for v in found} == {("$.payload.consent.given_at", "date_range"),
                                                ("$.payload.person.age.date_of_birth", "date_range")}
    assert "0999" not in json.dumps([str(v) for v in found]) and "2026-03-09" not in str(found)
    assert date_violations({"expected_by": "2030-01-01"}, NOW) == []  # a date ahead, where one belongs
    assert [v.path for v in date_violations({"expected_by": "2200-01-01"}, NOW)] == ["$.expected_by"]
    assert date_violations({"given_at": "2026-03-07T11:00:00Z"}, NOW) == []  # within a day (time zones)
    assert date_violations({"given_at": "not a date"}, NOW) == []  # the schema's business


async def test_every_post_refuses_dates_out_of_range_with_the_field_named(tmp_path) -> None:
    async with api_pair(tmp_path) as (ne, ng):
        case_ref, mid = await _sent_case(ne, ng)
        payload = load_example("referral.request")
        payload["consent"]["given_at"] = "1899-12-31T23:59:59Z"
        body = {"recipient": NIGERIA, "case_ref": case_ref, "payload": payload}
        status, answer = await ne.call("POST", "/referrals", json=body)
        assert (status, answer["error"]) == (422, "invalid_request"), answer
        assert [v["path"] for v in answer["violations"]] == ["$.payload.consent.given_at"]
        followup = load_example("case.followup")
        followup["followed_up_on"] = "2999-01-01"
        status, answer = await ne.call("POST", "/referrals", json={**body, "message_type": "case.followup",
                                                                   "payload": followup})
        assert status == 422 and [v["path"] for v in answer["violations"]] == ["$.payload.followed_up_on"]
        status, answer = await ne.call("POST", f"/cases/{case_ref}/withdrawal",
                                       json={**WITHDRAWAL, "withdrawn_at": "2099-01-01T00:00:00Z"})
        assert (status, answer["error"]) == (422, "withdrawal_in_future")
        more = {"decision": "more_information_needed", "information_needed": ["identity"], "expected_by": "1800-01-01"}
        status, answer = await ng.call("POST", f"/inbox/{mid}/response", json=more)
        assert status == 422 and [v["path"] for v in answer["violations"]] == ["$.expected_by"]
        # Nothing of it was stored or queued.
        assert not [r for r in await ne.gateway.store.list_outgoing_for_case(case_ref)
                    if r.message_type != "referral.request"]
