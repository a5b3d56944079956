"""The Idempotency-Key header of the creating POSTs, and GET /messages?local_case_id= (docs/api.md)."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from datetime import timedelta

from gateway.schema import load_example
from gateway.store import StoreUnavailableError

from testkit.gateway_pair import NIGERIA, eventually
from .test_api_world import api_pair, assert_conforms

CASE = "ne-ng-idemcase00001"
ACCEPT = {"decision": "accepted", "accepted_purposes": ["safety_assessment", "family_tracing"]}
WITHDRAWAL = {"withdrawn_at": "2026-11-20T10:00:00Z", "decision_maker": "self", "scope": "all_purposes",
              "erasure_requested": True}


def _referral(**fields) -> dict:
    return {"recipient": NIGERIA, "case_ref": CASE, "payload": load_example("referral.request"), **fields}


async def _post(agency, path: str, body: dict, key: str | None, role: str = "caseworker") -> tuple[int, dict, dict]:
    headers = {} if key is None else {"Idempotency-Key": key}
    status, answer = await agency.call("POST", path, role=role, json=body, headers=headers)
    return status, answer, agency.responses[-1][1]


async def _outbox(agency, case_ref: str = CASE, message_type: str = "referral.request") -> list:
    return [r for r in await agency.gateway.store.list_outgoing_for_case(case_ref) if r.message_type == message_type]


async def test_same_key_same_body_gets_the_same_answer_and_one_message(tmp_path) -> None:
    async with api_pair(tmp_path) as (ne, _):
        status, first, headers = await _post(ne, "/referrals", _referral(), "key-0001")
        assert status == 202 and "Idempotent-Replayed" not in headers
        for _ in range(3):
            again_status, again, again_headers = await _post(ne, "/referrals", _referral(), "key-0001")
            assert (again_status, again) == (202, first)
            assert again_headers["Idempotent-Replayed"] == "true"
            assert again_headers["Location"] == headers["Location"] == f"/messages/{first['message_id']}"
        # Member order and whitespace do not matter: the body is compared as canonical JSON.
        body = _referral()
        reordered = json.dumps(dict(reversed(list(body.items()))), indent=3)
        status, answer = await ne.call("POST", "/referrals", data=reordered,
                                       headers={"Idempotency-Key": "key-0001", "Content-Type": "application/json"})
        assert (status, answer) == (202, first)
        assert [r.message_id for r in await _outbox(ne)] == [first["message_id"]]
        # Without a key every POST creates a message.
        assert (await _post(ne, "/referrals", _referral(), None))[0] == 202
        assert len(await _outbox(ne)) == 2


async def test_same_key_other_body_is_422_without_echoing_the_key(tmp_path) -> None:
    key = "secret-looking-key-7731"
    async with api_pair(tmp_path) as (ne, _):
        assert (await _post(ne, "/referrals", _referral(), key))[0] == 202
        other = _referral(case_ref="ne-ng-idemcase00002")
        status, body, _ = await _post(ne, "/referrals", other, key)
        assert status == 422 and body["error"] == "idempotency_key_reused"
        assert "Idempotency-Key" in body["detail"] and key not in json.dumps(body)
        assert len(await _outbox(ne)) == 1


async def test_malformed_or_repeated_keys_are_400(tmp_path) -> None:
    async with api_pair(tmp_path) as (ne, _):
        for bad in ("", "x" * 129, "has space", "naïve"):
            status, body = await ne.call("POST", "/referrals", json=_referral(),
                                         headers={"Idempotency-Key": bad.encode("utf-8").decode("latin-1")})
            assert (status, body["error"]) == (400, "invalid_idempotency_key"), bad
            assert "1 to 128 visible ASCII" in body["detail"]
        headers = [("Idempotency-Key", "a1"), ("Idempotency-Key", "a2"), *ne.auth("caseworker").items()]
        async with ne.client.post("/referrals", json=_referral(), headers=headers) as resp:
            assert resp.status == 400 and (await resp.json())["error"] == "invalid_idempotency_key"
        assert (await _post(ne, "/referrals", _referral(), "x" * 128))[0] == 202
        assert len(await _outbox(ne)) == 1


async def test_keys_are_scoped_per_user_and_route(tmp_path) -> None:
    async with api_pair(tmp_path) as (ne, _):
        _, mine, _ = await _post(ne, "/referrals", _referral(), "shared-key")
        _, theirs, _ = await _post(ne, "/referrals", _referral(), "shared-key", role="supervisor")
        assert mine["message_id"] != theirs["message_id"]
        status, body, _ = await _post(ne, f"/cases/{CASE}/withdrawal", WITHDRAWAL, "shared-key")
        assert status == 202, body  # another route: the key is another key there


async def test_a_refused_request_frees_the_key(tmp_path) -> None:
    async with api_pair(tmp_path) as (ne, _):
        status, body, _ = await _post(ne, "/referrals", _referral(recipient="XX-NOBODY"), "retry-me")
        assert status == 422 and body["error"] != "idempotency_key_reused"
        status, body, _ = await _post(ne, "/referrals", _referral(), "retry-me")
        assert status == 202, body


async def test_crash_between_store_and_answer_still_creates_once(tmp_path) -> None:
    async with api_pair(tmp_path) as (ne, _):
        store = ne.gateway.store
        real = store.complete_idempotency_key

        async def lost(record):  # the process "dies" after the outbox commit, before the answer is kept
            raise StoreUnavailableError("simulated")
        store.complete_idempotency_key = lost
        try:
            status, _, _ = await _post(ne, "/referrals", _referral(), "ambiguous")
            assert status == 503
        finally:
            store.complete_idempotency_key = real
        stored = await _outbox(ne)
        assert len(stored) == 1
        # The client retries: same message, still one in the outbox, and now the answer is kept.
        status, body, headers = await _post(ne, "/referrals", _referral(), "ambiguous")
        assert (status, body["message_id"]) == (202, stored[0].message_id)
        status, again, headers = await _post(ne, "/referrals", _referral(), "ambiguous")
        assert (status, again, headers["Idempotent-Replayed"]) == (202, body, "true")
        # While the first attempt's outcome is unknown the key stays bound to its body.
        other = _referral(case_ref="ne-ng-idemcase00002")
        assert (await _post(ne, "/referrals", other, "ambiguous"))[1]["error"] == "idempotency_key_reused"
        assert len(await _outbox(ne)) == 1


async def test_a_retry_after_a_crash_still_reports_the_conversion(tmp_path) -> None:
    """The first attempt's answer (with what the upgrade left out) was lost: the retry's
    answer, made from the stored message, must say the same, not drop the report."""
    async with api_pair(tmp_path) as (ne, _):
        status, fresh, _ = await _post(ne, "/referrals", _referral(case_ref="ne-ng-idemcase00003"), None)
        assert status == 202 and fresh["converted"] and fresh["schema_version"] == "2"
        store = ne.gateway.store
        real = store.complete_idempotency_key

        async def lost(record):
            raise StoreUnavailableError("simulated")
        store.complete_idempotency_key = lost
        try:
            assert (await _post(ne, "/referrals", _referral(), "lost-answer"))[0] == 503
        finally:
            store.complete_idempotency_key = real
        status, body, _ = await _post(ne, "/referrals", _referral(), "lost-answer")
        assert status == 202
        assert (body.get("schema_version"), body.get("converted")) == (fresh["schema_version"], fresh["converted"])


async def test_concurrent_requests_with_one_key_create_one_message(tmp_path) -> None:
    async with api_pair(tmp_path) as (ne, _):
        results = await asyncio.gather(*(_post(ne, "/referrals", _referral(), "race") for _ in range(12)))
        assert {status for status, _, _ in results} == {202}
        assert len({json.dumps(body, sort_keys=True) for _, body, _ in results}) == 1
        assert len(await _outbox(ne)) == 1


async def test_response_and_withdrawal_take_keys(tmp_path) -> None:
    async with api_pair(tmp_path) as (ne, ng):
        _, sent, _ = await _post(ne, "/referrals", _referral(), None)
        mid = sent["message_id"]

        async def arrived() -> bool:
            return await ng.gateway.store.get_incoming(mid) is not None
        await eventually(arrived)
        path = f"/inbox/{mid}/response"
        status, first, _ = await _post(ng, path, ACCEPT, "answer-1")
        assert status == 202, first
        status, again, headers = await _post(ng, path, ACCEPT, "answer-1")
        assert (status, again, headers["Idempotent-Replayed"]) == (202, first, "true")
        declined = {"decision": "declined", "decline_reason": "no_capacity"}
        assert (await _post(ng, path, declined, "answer-1"))[1]["error"] == "idempotency_key_reused"

        path = f"/cases/{CASE}/withdrawal"
        status, first, _ = await _post(ne, path, WITHDRAWAL, "withdraw-1")
        assert status == 202 and first["withdrawals"], first
        concurrent = await asyncio.gather(*(_post(ne, path, WITHDRAWAL, "withdraw-1") for _ in range(4)))
        assert all((s, b) == (202, first) for s, b, _ in concurrent)
        other = {**WITHDRAWAL, "withdrawn_at": "2026-11-21T10:00:00Z"}
        assert (await _post(ne, path, other, "withdraw-1"))[1]["error"] == "idempotency_key_reused"
        assert len(await _outbox(ne, message_type="consent.withdrawal")) == 1


async def test_keys_expire_after_the_message_lifetime_and_are_pruned(tmp_path) -> None:
    async with api_pair(tmp_path) as (ne, _):
        gw = ne.gateway
        _, first, _ = await _post(ne, "/referrals", _referral(), "old-key")
        real_clock = gw.clock
        later = real_clock() + timedelta(days=gw.settings.message_lifetime_days, minutes=1)
        gw.clock = lambda: later
        try:
            other = _referral(case_ref="ne-ng-idemcase00002")
            status, second, _ = await _post(ne, "/referrals", other, "old-key")
            assert status == 202 and second["message_id"] != first["message_id"], second
            gw.clock = lambda: later + timedelta(days=gw.settings.message_lifetime_days, minutes=1)
            assert await gw.store.prune_idempotency_keys(gw.clock()) == 1
        finally:
            gw.clock = real_clock


async def test_stored_keys_hold_no_key_user_or_local_id(tmp_path) -> None:
    key, local_id = "client-key-NE-ZINDER-5521", "NE-ZINDER-2026-5521"
    async with api_pair(tmp_path) as (ne, _):
        body = {"recipient": NIGERIA, "local_case_id": local_id, "payload": load_example("referral.request")}
        assert (await _post(ne, "/referrals", body, key))[0] == 202
        with sqlite3.connect(f"file:{ne.gateway.store.path}?mode=ro", uri=True) as conn:
            rows = conn.execute("SELECT * FROM idempotency_keys").fetchall()
        assert len(rows) == 1
        text = json.dumps(rows)
        for secret in (key, local_id, "caseworker"):
            assert secret not in text


async def test_find_sent_messages_by_local_case_id(tmp_path) -> None:
    local_id = "NE-ZINDER-2026-0142"
    async with api_pair(tmp_path) as (ne, _):
        body = {"recipient": NIGERIA, "local_case_id": local_id, "payload": load_example("referral.request")}
        _, sent, _ = await _post(ne, "/referrals", body, "find-me")
        assert (await _post(ne, "/referrals", _referral(), None))[0] == 202  # another case: not listed

        for params in ({"local_case_id": local_id}, {"local_case_id": local_id, "recipient": NIGERIA}):
            status, found = await ne.call("GET", "/messages", params=params)
            assert status == 200, found
            assert [i["message_id"] for i in found["items"]] == [sent["message_id"]]
            item = found["items"][0]
            assert (item["type"], item["recipient"], item["case_ref"], item["status"]) == (
                "referral.request", NIGERIA, sent["case_ref"], item["status"])
            assert local_id not in json.dumps(found)
        status, found = await ne.call("GET", "/messages", params={"local_case_id": "NE-NEVER-SENT"})
        assert (status, found) == (200, {"items": []})

        for params, error in (({}, "missing_parameter"),
                              ({"local_case_id": local_id, "limit": "5"}, "invalid_query"),
                              ([("local_case_id", local_id), ("local_case_id", "x")], "invalid_query"),
                              ({"local_case_id": local_id, "recipient": "XX-NOBODY"}, "invalid_query"),
                              ({"local_case_id": " "}, "invalid_query")):
            status, answer = await ne.call("GET", "/messages", params=params)
            assert (status, answer["error"]) == (400, error), params
            assert local_id not in json.dumps(answer)
        assert (await ne.call("GET", "/messages", role="auditor", params={"local_case_id": local_id}))[0] == 403

        found_entries = [a for a in await ne.gateway.store.read_audit(1, 10_000) if a.event_type == "messages.found"]
        assert sent["case_ref"] in {a.case_ref for a in found_entries}
        assert all(a.actor == "caseworker.ne-anltp-tim" for a in found_entries)
        everything = json.dumps([(a.case_ref, a.detail_json, a.agency) for a in
                                 await ne.gateway.store.read_audit(1, 10_000)])
        assert local_id not in everything


async def test_retention_pass_prunes_expired_keys(tmp_path) -> None:
    async with api_pair(tmp_path) as (ne, _):
        gw = ne.gateway
        assert (await _post(ne, "/referrals", _referral(), "prune-me"))[0] == 202
        real_clock = gw.clock
        gw.clock = lambda: real_clock() + timedelta(days=gw.settings.message_lifetime_days, minutes=1)
        try:
            await gw.apply_retention()
            assert await gw.store.prune_idempotency_keys(gw.clock()) == 0  # already gone
        finally:
            gw.clock = real_clock


async def test_openapi_documents_the_header_and_the_find_route(tmp_path) -> None:
    async with api_pair(tmp_path) as (ne, _):
        status, doc = await ne.call("GET", "/openapi.json", role=None)
        assert status == 200
        for path in ("/referrals", "/inbox/{id}/response", "/cases/{case_ref}/withdrawal"):
            operation = doc["paths"][path]["post"]
            header = [p for p in operation["parameters"] if p["in"] == "header"]
            assert [p["name"] for p in header] == ["Idempotency-Key"], path
            assert "idempotency_key_reused" in operation["responses"]["422"]["description"]
            assert "invalid_idempotency_key" in operation["responses"]["400"]["description"]
            assert "Idempotent-Replayed" in operation["responses"]["202"]["headers"]
        find = doc["paths"]["/messages"]["get"]
        assert find["x-roles"] == ["caseworker", "supervisor"]
        assert {p["name"] for p in find["parameters"]} == {"local_case_id", "recipient"}
        body = {"recipient": NIGERIA, "local_case_id": "NE-DOC-1", "payload": load_example("referral.request")}
        assert (await _post(ne, "/referrals", body, None))[0] == 202
        status, found = await ne.call("GET", "/messages", params={"local_case_id": "NE-DOC-1"})
        assert_conforms(doc, "/messages", "GET", 200, found)
