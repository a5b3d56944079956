"""The HTTP API end to end: two gateways, HTTP only (plus reads of the stores to check effects)."""

from __future__ import annotations

import asyncio
import json

from gateway.schema import load_example
from gateway.schema_versions import upgrade_to_v2
from gateway.store import StoreUnavailableError

from testkit.gateway_pair import NIGERIA, eventually
from .test_api_world import api_pair, assert_conforms

ACCEPT = {"decision": "accepted", "accepted_purposes": ["safety_assessment", "family_tracing"]}
BAD_ID = "not-a-uuid"
UNKNOWN_ID = "5b0f8c1e-2d3a-4b5c-9d6e-7f8091a2b3c4"


async def _document(agency) -> dict:
    status, doc = await agency.call("GET", "/openapi.json", role=None)
    assert status == 200
    return doc


async def _submit(agency, **fields) -> tuple[int, dict]:
    body = {"recipient": NIGERIA, "case_ref": "ne-ng-apicase000001", "payload": load_example("referral.request")}
    body.update(fields)
    return await agency.call("POST", "/referrals", json=body)


async def test_full_flow_through_http_only(tmp_path) -> None:
    async with api_pair(tmp_path) as (ne, ng):
        doc = await _document(ne)
        status, queued = await _submit(ne)
        assert status == 202, queued
        assert queued["status"] == "queued" and queued["links"]["status"] == f"/messages/{queued['message_id']}"
        assert_conforms(doc, "/referrals", "POST", 202, queued)
        mid = queued["message_id"]

        async def listed() -> bool:
            _, page = await ng.call("GET", "/inbox")
            return any(i["message_id"] == mid for i in page["items"])
        await eventually(listed)
        status, page = await ng.call("GET", "/inbox", params={"status": "received", "limit": "10"})
        assert status == 200
        assert_conforms(doc, "/inbox", "GET", 200, page)
        item = next(i for i in page["items"] if i["message_id"] == mid)
        assert item == {"message_id": mid, "sender": "NE-ANLTP-TIM", "type": "referral.request",
                        "case_ref": "ne-ng-apicase000001", "received_at": item["received_at"], "status": "received"}

        status, opened = await ng.call("GET", f"/inbox/{mid}", params={"purpose": "safety_assessment"})
        assert status == 200
        # Both demo agencies list schema version 2: the v1 body travelled upgraded, as the answer said.
        assert queued["schema_version"] == "2" and opened["header"]["schema"] == "2"
        assert queued["converted"] == [{"path": "$.consent.recipient_countries",
                                        "reason": "v2 consent names recipient agencies, not countries (kept for "
                                                  "the recipient only)"}]
        assert opened["payload"] == upgrade_to_v2(load_example("referral.request"), "referral.request",
                                                  recipient=NIGERIA, recipient_country="NG").payload
        assert opened["header"]["id"] == mid and opened["header"]["sender"] == "NE-ANLTP-TIM"
        assert_conforms(doc, "/inbox/{id}", "GET", 200, opened)
        reads = [a for a in await ng.gateway.store.read_audit(1, 1000) if a.event_type == "message.read"]
        assert [(a.actor, json.loads(a.detail_json)["purpose"]) for a in reads] == [
            ("caseworker.ng-naptip", "safety_assessment")]

        status, answered = await ng.call("POST", f"/inbox/{mid}/response", json=ACCEPT)
        assert status == 202, answered
        assert answered["in_reply_to"] == mid and answered["type"] == "referral.response"
        assert_conforms(doc, "/inbox/{id}/response", "POST", 202, answered)
        _, page = await ng.call("GET", "/inbox", params={"status": "responded"})
        assert [i["message_id"] for i in page["items"]] == [mid]

        async def accepted() -> bool:
            return (await ne.call("GET", f"/messages/{mid}"))[1]["status"] == "accepted"
        await eventually(accepted)
        status, state = await ne.call("GET", f"/messages/{mid}")
        assert status == 200
        assert_conforms(doc, "/messages/{id}", "GET", 200, state)
        assert [s["status"] for s in state["trail"]] == ["queued", "sent", "delivered", "read", "accepted"]
        assert (state["type"], state["recipient"], state["attempts"], state["last_error"]) == (
            "referral.request", NIGERIA, 1, None)
        # The auditor sees statuses too, and the NG side can follow its response.
        assert (await ne.call("GET", f"/messages/{mid}", role="auditor"))[0] == 200
        assert (await ng.call("GET", f"/messages/{answered['message_id']}", role="supervisor"))[0] == 200


async def test_other_outgoing_types_and_responses_other_than_accept(tmp_path) -> None:
    async with api_pair(tmp_path) as (ne, ng):
        status, body = await _submit(ne, message_type="case.followup", payload=load_example("case.followup"))
        assert status == 202 and body["type"] == "case.followup", body
        status, body = await _submit(ne, message_type="receipt", payload=load_example("receipt"))
        assert status == 422 and body["error"] == "invalid_request"
        assert [v["path"] for v in body["violations"]] == ["$.message_type"]

        status, queued = await _submit(ne)
        mid = queued["message_id"]

        async def arrived() -> bool:
            return (await ng.call("GET", f"/inbox/{mid}", params={"purpose": "case_followup"}))[0] == 200
        await eventually(arrived)
        more = {"decision": "more_information_needed", "information_needed": ["identity"]}
        assert (await ng.call("POST", f"/inbox/{mid}/response", json=more))[0] == 202
        status, body = await ng.call("POST", f"/inbox/{mid}/response", json={"decision": "accepted"})
        assert status == 422 and body["error"] == "schema_invalid"
        assert {"path": "$.accepted_purposes", "rule": "required"}.items() <= body["violations"][0].items()
        status, body = await ng.call("POST", f"/inbox/{mid}/response", json={**ACCEPT, "request_message_id": mid})
        assert status == 422 and body["violations"][0]["path"] == "$.request_message_id"

        async def more_info() -> bool:
            return (await ne.call("GET", f"/messages/{mid}"))[1]["status"] == "more_info_requested"
        await eventually(more_info)
        # Receipts in NE's inbox cannot be answered: 409.
        _, page = await ne.call("GET", "/inbox")
        receipt = next(i for i in page["items"] if i["type"] == "receipt")
        status, body = await ne.call("POST", f"/inbox/{receipt['message_id']}/response", json=ACCEPT)
        assert (status, body["error"]) == (409, "conflict")


async def test_local_case_id_becomes_a_pseudonym_and_never_leaves(tmp_path) -> None:
    local_id = "NE-ZINDER-2026-LOCAL-7731"
    async with api_pair(tmp_path) as (ne, ng):
        status, body = await _submit(ne, case_ref=None, local_case_id=local_id)
        assert status == 422  # case_ref: null is given (and invalid), not absent
        assert local_id not in json.dumps(body)
        fields = {"recipient": NIGERIA, "local_case_id": local_id, "payload": load_example("referral.request")}
        status, body = await ne.call("POST", "/referrals", json=fields)
        assert status == 202, body
        case_ref = body["case_ref"]
        assert case_ref.startswith("ne-ng-") and local_id.lower() not in case_ref.lower()
        # The same local id gives the same pseudonym (follow-ups line up).
        again = await ne.call("POST", "/referrals", json=fields)
        assert again[1]["case_ref"] == case_ref

        record = await ne.gateway.store.get_outgoing(body["message_id"])
        assert json.loads(record.envelope)["header"]["case"] == case_ref
        assert local_id.encode() not in record.envelope
        assert all(local_id not in repr(a) for a in await ne.gateway.store.read_audit(1, 1000))
        assert all(local_id not in text and local_id not in json.dumps(headers)
                   for _, headers, text in ne.responses)

        async def arrived() -> bool:
            _, page = await ng.call("GET", "/inbox")
            return any(i["case_ref"] == case_ref for i in page["items"])
        await eventually(arrived)


async def test_both_case_ref_and_local_id_or_neither_is_refused(tmp_path) -> None:
    async with api_pair(tmp_path) as (ne, _):
        status, body = await _submit(ne, local_case_id="L-1")
        assert status == 422 and [v["path"] for v in body["violations"]] == ["$"]
        status, body = await ne.call("POST", "/referrals", json={"recipient": NIGERIA, "payload": {}})
        assert status == 422 and body["violations"][0]["rule"] == "oneOf"


async def test_schema_violations_are_422_with_paths(tmp_path) -> None:
    async with api_pair(tmp_path) as (ne, _):
        payload = load_example("referral.request")
        del payload["consent"]
        payload["person"]["sex"] = "unknown-code"
        payload["surprise"] = 1
        status, body = await _submit(ne, payload=payload)
        assert status == 422 and body["error"] == "schema_invalid"
        paths = {v["path"] for v in body["violations"]}
        assert {"$.consent", "$.person.sex", "$"} <= paths  # an unexpected member at its parent, unnamed
        assert "surprise" not in json.dumps(body)
        assert all(set(v) == {"path", "rule", "message"} for v in body["violations"])
        assert "unknown-code" not in json.dumps(body)  # no payload values in errors
        assert await ne.gateway.store.due_outgoing(ne.gateway.clock().replace(year=2100), 100) == []


async def test_unknown_and_refusing_recipients_are_422(tmp_path) -> None:
    async with api_pair(tmp_path) as (ne, _):
        status, body = await _submit(ne, recipient="XX-NOBODY")
        assert (status, body["error"]) == (422, "unknown_agency")
        status, body = await _submit(ne, recipient="not an agency")
        assert (status, body["error"]) == (422, "invalid_request")
        status, body = await _submit(ne, recipient="NE-ANLTP-TIM")
        assert (status, body["error"]) == (422, "invalid_request")
        # NE-IOM does not accept the safety_assessment purpose (keys/demo/directory.json).
        status, body = await _submit(ne, recipient="NE-IOM")
        assert (status, body["error"]) == (422, "recipient_refuses"), body


async def test_bad_ids_missing_purpose_bad_queries_are_400(tmp_path) -> None:
    async with api_pair(tmp_path) as (ne, _):
        for method, path in (("GET", f"/inbox/{BAD_ID}"), ("GET", f"/messages/{BAD_ID}"),
                             ("POST", f"/inbox/{BAD_ID}/response"), ("GET", f"/inbox/{UNKNOWN_ID.upper()}")):
            params = {"purpose": "safety_assessment"} if method == "GET" and "inbox" in path else None
            status, body = await ne.call(method, path, params=params, json=ACCEPT)
            assert (status, body["error"]) == (400, "invalid_id"), path
        status, body = await ne.call("GET", f"/inbox/{UNKNOWN_ID}")
        assert (status, body["error"]) == (400, "missing_parameter") and "purpose" in body["detail"]
        status, body = await ne.call("GET", f"/inbox/{UNKNOWN_ID}", params={"purpose": "   "})
        assert status == 400
        status, body = await ne.call("GET", f"/inbox/{UNKNOWN_ID}", params={"purpose": "x" * 201})
        assert status == 400
        for query in ({"limit": "0"}, {"limit": "201"}, {"limit": "ten"}, {"offset": "-1"}, {"status": "lost"}):
            status, body = await ne.call("GET", "/inbox", params=query)
            assert (status, body["error"]) == (400, "invalid_query"), query
        assert (await ne.call("GET", f"/inbox/{UNKNOWN_ID}", params={"purpose": "safety_assessment"}))[0] == 404
        # The purpose is audited, so it is a code from a list, never free text.
        status, body = await ne.call("GET", f"/inbox/{UNKNOWN_ID}", params={"purpose": "checking on Amina"})
        assert (status, body["error"]) == (400, "invalid_query") and "Amina" not in body["detail"]
        assert (await ne.call("GET", f"/messages/{UNKNOWN_ID}"))[0] == 404
        assert (await ne.call("POST", f"/inbox/{UNKNOWN_ID}/response", json=ACCEPT))[0] == 404
        status, body = await ne.call("GET", "/no/such/route")
        assert (status, body["error"]) == (404, "not_found")
        status, body = await ne.call("DELETE", "/referrals")
        assert (status, body["error"]) == (405, "method_not_allowed")


async def test_invalid_json_is_400_without_echoing_the_body(tmp_path) -> None:
    async with api_pair(tmp_path) as (ne, _):
        secret_text = "Zyxwvuta-not-json"
        for raw in (b'{"recipient": "NG-NAPTIP", ' + secret_text.encode(), b'{"a": NaN}',
                    b'{"a": 1, "a": 2}', b"\xff\xfe", b"[1, 2]"):
            status, body = await ne.call("POST", "/referrals", data=raw,
                                         headers={"Content-Type": "application/json"})
            assert (status, body["error"]) == (400, "invalid_json"), raw
            assert secret_text not in json.dumps(body) and body["detail"]
        status, body = await ne.call("POST", "/referrals", data=b"recipient=NG",
                                     headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert (status, body["error"]) == (415, "unsupported_media_type")


async def test_oversize_body_is_413(tmp_path) -> None:
    async with api_pair(tmp_path) as (ne, _):
        payload = load_example("referral.request")
        payload["padding"] = "x" * (300 * 1024)
        status, body = await _submit(ne, payload=payload)
        assert (status, body["error"]) == (413, "request_too_large")
        # Unauthenticated senders are refused before their body is read.
        status, _ = await ne.call("POST", "/referrals", role=None, data=b"x" * (300 * 1024),
                                  headers={"Content-Type": "application/json"})
        assert status == 401


async def test_store_unavailable_is_503_and_nothing_is_half_stored(tmp_path, monkeypatch) -> None:
    async with api_pair(tmp_path) as (ne, _):
        store = ne.gateway.store
        created_before = [a for a in await store.read_audit(1, 1000) if a.event_type == "message.created"]

        async def unavailable(msg, **_) -> None:
            raise StoreUnavailableError("sqlite store /secret/path/ne.db unavailable: SQLITE_FULL")
        monkeypatch.setattr(store, "add_outgoing", unavailable)
        status, body = await _submit(ne)
        assert (status, body["error"]) == (503, "store_unavailable")
        assert "/secret/path" not in body["detail"]
        assert int(ne.responses[-1][1]["Retry-After"]) > 0
        monkeypatch.undo()
        assert await store.due_outgoing(ne.gateway.clock().replace(year=2100), 100) == []
        created_after = [a for a in await store.read_audit(1, 1000) if a.event_type == "message.created"]
        assert created_after == created_before
        # The client retries once the store is back: exactly one message is queued.
        status, body = await _submit(ne)
        assert status == 202
        state = await store.get_outgoing(body["message_id"])
        assert state is not None and state.status in {"queued", "sent", "delivered"}


async def test_closed_store_gives_503_and_readyz_says_so(tmp_path) -> None:
    async with api_pair(tmp_path) as (ne, _):
        await ne.gateway.store.close()
        status, body = await _submit(ne)
        assert (status, body["error"]) == (503, "store_unavailable")
        assert (await ne.call("GET", "/inbox"))[0] == 503
        status, body = await ne.call("GET", "/readyz", role=None)
        assert status == 503 and body["checks"]["store"] is False and body["checks"]["transport"] is True
        # Refusals are still refused (their audit entry cannot be written; that is logged).
        assert (await ne.call("GET", "/inbox", role=None))[0] == 401


async def test_health_and_readiness(tmp_path) -> None:
    async with api_pair(tmp_path) as (ne, _):
        doc = await _document(ne)
        status, body = await ne.call("GET", "/healthz", role=None)
        assert (status, body) == (200, {"status": "ok"})
        status, body = await ne.call("GET", "/readyz", role=None)
        assert status == 200 and body["checks"] == {"store": True, "transport": True, "consumer": True, "outbox": True,
                                                   "deliveries": True}
        assert_conforms(doc, "/readyz", "GET", 200, body)
        ne.gateway.transport.broker.available = False
        status, body = await ne.call("GET", "/readyz", role=None)
        assert status == 503 and body["checks"]["transport"] is False and "transport" in body["detail"]
        assert_conforms(doc, "/readyz", "GET", 503, body)
        # The API keeps accepting into the outbox while the broker is away.
        status, queued = await _submit(ne)
        assert status == 202
        ne.gateway.transport.broker.available = True
        status, _ = await ne.call("GET", "/readyz", role=None)
        assert status == 200

        async def sent() -> bool:
            return (await ne.call("GET", f"/messages/{queued['message_id']}"))[1]["status"] != "queued"
        await eventually(sent)


async def test_readyz_when_the_outbox_publisher_died(tmp_path) -> None:
    async with api_pair(tmp_path) as (ne, _):
        for task in ne.gateway._tasks:
            if task.get_name() == "gateway-outbox":
                task.cancel()
        await asyncio.sleep(0)
        status, body = await ne.call("GET", "/readyz", role=None)
        assert status == 503 and body["checks"]["outbox"] is False


async def test_readyz_when_transport_closed(tmp_path) -> None:
    async with api_pair(tmp_path) as (ne, _):
        await ne.gateway.transport.close()
        status, body = await ne.call("GET", "/readyz", role=None)
        assert status == 503 and body["checks"]["transport"] is False


async def test_metrics_and_quarantine_for_admin(tmp_path) -> None:
    async with api_pair(tmp_path) as (ne, _):
        await _submit(ne)
        async with ne.client.get("/metrics", headers=ne.auth("admin")) as resp:
            assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/plain")
            text = await resp.text()
        assert 'gateway_messages_submitted_total{type="referral.request"} 1' in text
        assert 'gateway_http_requests_total{method="POST",route="referrals.submit",status="202"} 1' in text
        assert "gateway_transport_ready 1" in text
        status, body = await ne.call("GET", "/quarantine", role="admin")
        assert status == 200 and body == {"items": []}


async def test_concurrent_submissions_all_land(tmp_path) -> None:
    async with api_pair(tmp_path) as (ne, _):
        results = await asyncio.gather(*(_submit(ne, case_ref=f"ne-ng-concurrent{i:04d}") for i in range(20)))
        assert {status for status, _ in results} == {202}
        ids = {body["message_id"] for _, body in results}
        assert len(ids) == 20
        for mid in ids:
            assert await ne.gateway.store.get_outgoing(mid) is not None


async def test_consent_withdrawal_over_the_api(tmp_path) -> None:
    async with api_pair(tmp_path) as (ne, ng):
        status, queued = await _submit(ne)
        assert status == 202
        case_ref, message_id = queued["case_ref"], queued["message_id"]

        async def delivered() -> bool:
            return (await ng.gateway.store.get_incoming(message_id)) is not None
        await eventually(delivered)
        status, body = await ne.call("POST", "/cases/not a case/withdrawal", json={})
        assert (status, body["error"]) == (400, "invalid_id")
        status, body = await ne.call("POST", f"/cases/{case_ref}/withdrawal", json={"scope": "all_purposes"})
        assert (status, body["error"]) == (422, "schema_invalid")
        withdrawal = {"withdrawn_at": "2026-11-20T10:00:00Z", "decision_maker": "self", "scope": "all_purposes",
                      "erasure_requested": True}
        status, body = await ne.call("POST", f"/cases/{case_ref}/withdrawal", json=withdrawal)
        assert status == 202 and body["failed"] == [] and [w["recipient"] for w in body["withdrawals"]] == [NIGERIA]

        async def acknowledged() -> bool:
            _, state = await ne.call("GET", f"/cases/{case_ref}/withdrawals", role="auditor")
            return state["all_acknowledged"] is True
        await eventually(acknowledged)
        status, body = await ng.call("GET", f"/inbox/{message_id}", params={"purpose": "case_followup"})
        assert (status, body["error"]) == (410, "payload_shredded")
        future = {**withdrawal, "withdrawn_at": "2099-01-01T00:00:00Z"}
        status, body = await ne.call("POST", f"/cases/{case_ref}/withdrawal", json=future)
        assert (status, body["error"]) == (422, "withdrawal_in_future")
