"""The HTTP contract exactly as documented (issue 15 item 4): error shape, no echo of what was
sent, query parameter rules, charset, unknown cases, HEAD, and every status in the OpenAPI
document of its operation."""

from __future__ import annotations

import copy
import json
import re
from typing import Any, Iterator

from gateway.schema import load_example

from testkit.gateway_pair import NIGERIA, ROOT, eventually
from .test_api_world import Agency, api_pair

CANARY = "Cnry7Qx"  # sent as a value
CANARY_NAME = "CnryKey9"  # sent as a member or parameter name
FICHE = json.loads((ROOT / "adapters" / "niger" / "samples" / "adulte_nigeriane_securite_recherche.json")
                   .read_text(encoding="utf-8"))
UNKNOWN_CASE = "ne-ng-neversent0001"


def _leaves(node: Any, where: tuple = ()) -> Iterator[tuple]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _leaves(value, (*where, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _leaves(value, (*where, index))
    yield where  # every node, containers too


def _objects(node: Any, where: tuple = ()) -> Iterator[tuple]:
    if isinstance(node, dict):
        yield where
        for key, value in node.items():
            yield from _objects(value, (*where, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _objects(value, (*where, index))


def _set(node: Any, where: tuple, value: Any) -> Any:
    if not where:
        return value
    out = copy.deepcopy(node)
    target = out
    for step in where[:-1]:
        target = target[step]
    target[where[-1]] = value
    return out


def canaried(body: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The body with the canary as every value in turn, and as an unknown member of every object."""
    for where in _leaves(body):
        if where:
            yield _set(body, where, CANARY)
            yield _set(body, where, [CANARY])
    for where in _objects(body):
        target = body
        for step in where:
            target = target[step]
        yield _set(body, where, {**target, CANARY_NAME: 1})


def _clean(text: str) -> bool:
    return CANARY.lower() not in text.lower() and CANARY_NAME.lower() not in text.lower()


async def _received(ne: Agency, ng: Agency, case_ref: str = "ne-ng-contract0001") -> tuple[str, str]:
    body = {"recipient": NIGERIA, "case_ref": case_ref, "payload": load_example("referral.request")}
    status, queued = await ne.call("POST", "/referrals", json=body)
    assert status == 202, queued

    async def arrived() -> bool:
        return (await ng.gateway.store.get_incoming(queued["message_id"])) is not None
    await eventually(arrived)
    return case_ref, queued["message_id"]


def _assert_error_shape(status: int, body: Any) -> None:
    assert isinstance(body, dict) and set(body) >= {"error", "detail"}, (status, body)
    assert isinstance(body["error"], str) and isinstance(body["detail"], str)


async def test_no_error_answer_of_any_post_contains_a_submitted_value_or_name(tmp_path) -> None:
    async with api_pair(tmp_path) as (ne, ng):
        case_ref, mid = await _received(ne, ng)
        withdrawal = {"withdrawn_at": "2026-01-20T10:00:00Z", "decision_maker": "self", "scope": "some_purposes",
                      "purposes": ["family_tracing"], "erasure_requested": False,
                      "request_message_ids": [mid]}
        posts = [
            (ne, "/referrals", {"recipient": NIGERIA, "case_ref": case_ref, "payload": load_example("referral.request")}),
            (ne, "/referrals", {"recipient": NIGERIA, "local_case_id": "L-1", "format": "niger", "record": FICHE,
                                "purposes": ["family_tracing"]}),
            (ng, f"/inbox/{mid}/response", {"decision": "more_information_needed", "information_needed": ["identity"],
                                             "expected_by": "2030-01-01", "comment": "x"}),
            (ne, f"/cases/{case_ref}/withdrawal", withdrawal),
        ]
        refused = 0
        for agency, path, body in posts:
            for variant in canaried(body):
                status, answer = await agency.call("POST", path, json=variant)
                assert status != 500, (path, answer)
                if status >= 400:
                    refused += 1
                    _assert_error_shape(status, answer)
                    assert _clean(json.dumps(answer)), (path, status, answer)
        assert refused > 100  # the canaries did reach the checks
        # Query parameter names and values on every GET route.
        for path, params in (("/inbox", {"status": CANARY}), (f"/inbox/{mid}", {"purpose": CANARY}),
                             (f"/inbox/{mid}", {"purpose": "family_tracing", "format": CANARY}),
                             ("/inbox", {CANARY_NAME: "1"}), ("/audit/entries", {"agency": CANARY}),
                             ("/audit/checkpoints/latest", {"origin": "XX-" + CANARY.upper()})):
            for role in ("caseworker", "auditor"):
                status, answer = await ng.call("GET", path, role=role, params=params)
                if status >= 400:
                    _assert_error_shape(status, answer)
                    assert _clean(json.dumps(answer)), (path, answer)


async def test_unknown_and_repeated_query_parameters_are_refused_on_every_route(tmp_path) -> None:
    async with api_pair(tmp_path) as (ne, ng):
        _, mid = await _received(ne, ng)
        status, doc = await ne.call("GET", "/openapi.json", role=None)
        role_of = {"caseworker": "caseworker", "supervisor": "supervisor", "auditor": "auditor", "admin": "admin"}
        for template, ops in doc["paths"].items():
            path = template.replace("{id}", mid).replace("{case_ref}", "ne-ng-contract0001")
            for method, op in ops.items():
                if method == "head":
                    continue
                role = role_of[op["x-roles"][0]] if op.get("x-roles") else None
                status, body = await ng.call(method.upper(), f"{path}?{CANARY_NAME}=1", role=role)
                assert (status, body["error"]) == (400, "invalid_query"), (method, template, body)
                assert CANARY_NAME.lower() not in body["detail"].lower()
                for param in (p for p in op.get("parameters", []) if p["in"] == "query"
                              and p["schema"].get("type") != "array"):
                    status, body = await ng.call(method.upper(), f"{path}?{param['name']}=1&{param['name']}=2",
                                                 role=role)
                    assert (status, body["error"]) == (400, "invalid_query"), (method, template, param["name"])
        # ?purpose=a&purpose=b is refused, and no read is audited under either.
        status, body = await ng.call("GET", f"/inbox/{mid}?purpose=family_tracing&purpose=assistance")
        assert (status, body["error"]) == (400, "invalid_query")
        assert not [a for a in await ng.gateway.store.read_audit(1, 10_000) if a.event_type == "message.read"]
        # The purpose is one of the documented codes, and the document says so.
        read = doc["paths"]["/inbox/{id}"]["get"]
        purpose = next(p for p in read["parameters"] if p["name"] == "purpose")
        assert purpose["schema"]["enum"] == ["assistance", "safety_assessment", "family_tracing", "assisted_return",
                                             "reintegration_handover", "criminal_justice_cooperation",
                                             "international_protection", "case_followup"]
        assert (await ng.call("GET", f"/inbox/{mid}", params={"purpose": "curiosity"}))[0] == 400
        assert (await ng.call("GET", f"/inbox/{mid}", params={"purpose": "family_tracing"}))[0] == 200


async def test_errors_raised_by_aiohttp_are_json_too(tmp_path) -> None:
    async with api_pair(tmp_path) as (ne, _):
        answers = [
            await ne.call("GET", "/no/such/route"),  # 404 from the router
            await ne.call("DELETE", "/referrals"),  # 405
            await ne.call("POST", "/referrals", data=b"{" + b" " * (300 * 1024) + b"}",
                          headers={"Content-Type": "application/json"}),  # 413 while reading
            await ne.call("POST", "/referrals", data=b"{}", headers={"Content-Type": "text/plain"}),  # 415
        ]
        assert [s for s, _ in answers] == [404, 405, 413, 415]
        for status, body in answers:
            _assert_error_shape(status, body)
        assert ne.responses[1][1]["Allow"]  # 405 still says what is allowed
        assert all(h["Content-Type"].startswith("application/json") for _, h, _ in ne.responses)


async def test_a_charset_other_than_utf8_is_refused(tmp_path) -> None:
    async with api_pair(tmp_path) as (ne, _):
        body = json.dumps({"recipient": NIGERIA, "case_ref": "ne-ng-charset00001",
                           "payload": load_example("referral.request")}).encode("latin-1")
        for charset, expected in (("latin-1", 415), ("ISO-8859-1", 415), ("utf-16", 415), ("UTF-8", 202), (None, 202)):
            content_type = "application/json" + (f"; charset={charset}" if charset else "")
            status, answer = await ne.call("POST", "/referrals", data=body, headers={"Content-Type": content_type})
            assert status == expected, (charset, answer)
            if status == 415:
                assert answer["error"] == "unsupported_media_type" and "UTF-8" in answer["detail"]


async def test_a_case_ref_never_created_is_404(tmp_path) -> None:
    async with api_pair(tmp_path) as (ne, ng):
        case_ref, mid = await _received(ne, ng)
        withdrawal = {"withdrawn_at": "2026-01-20T10:00:00Z", "decision_maker": "self", "scope": "all_purposes",
                      "erasure_requested": False}
        for method, path, body in (("GET", f"/cases/{UNKNOWN_CASE}/withdrawals", None),
                                   ("POST", f"/cases/{UNKNOWN_CASE}/withdrawal", withdrawal)):
            status, answer = await ne.call(method, path, json=body)
            assert (status, answer["error"]) == (404, "not_found"), answer
            assert UNKNOWN_CASE not in answer["detail"]
        # The receiving side knows the case (it received a referral) but sent none: 404, not a withdrawal.
        status, answer = await ng.call("POST", f"/cases/{case_ref}/withdrawal", json=withdrawal)
        assert (status, answer["error"]) == (404, "not_found")
        assert (await ng.call("GET", f"/cases/{case_ref}/withdrawals"))[0] == 200
        assert not [w for w in await ne.gateway.store.withdrawals_for_case(UNKNOWN_CASE)]


async def test_a_response_cannot_accept_a_purpose_the_request_did_not_ask_for(tmp_path) -> None:
    async with api_pair(tmp_path) as (ne, ng):
        _, mid = await _received(ne, ng)
        asked = load_example("referral.request")["purposes"]
        other = next(p for p in ("assistance", "safety_assessment", "family_tracing", "assisted_return",
                                 "reintegration_handover") if p not in asked)
        status, answer = await ng.call("POST", f"/inbox/{mid}/response",
                                       json={"decision": "accepted", "accepted_purposes": [asked[0], other]})
        assert (status, answer["error"]) == (422, "invalid_request"), answer
        assert [v["path"] for v in answer["violations"]] == ["$.accepted_purposes"]
        assert other not in json.dumps(answer)
        assert not [r for r in await ng.gateway.store.list_outgoing_for_case("ne-ng-contract0001")
                    if r.message_type == "referral.response"]
        status, answer = await ng.call("POST", f"/inbox/{mid}/response",
                                       json={"decision": "accepted", "accepted_purposes": [asked[0]]})
        assert status == 202, answer


async def test_head_works_where_get_does(tmp_path) -> None:
    async with api_pair(tmp_path) as (ne, ng):
        _, mid = await _received(ne, ng)
        for path, role, params in (("/healthz", None, None), ("/readyz", None, None), ("/openapi.json", None, None),
                                   ("/auditor", None, None), ("/inbox", "caseworker", None),
                                   (f"/inbox/{mid}", "caseworker", {"purpose": "family_tracing"}),
                                   ("/metrics", "admin", None), ("/audit/entries", "auditor", None),
                                   ("/audit/export", "auditor", None),
                                   ("/inbox", "caseworker", {"limit": "201"}), ("/inbox", None, None)):
            got = await ng.call("GET", path, role=role, params=params)
            head = await ng.call("HEAD", path, role=role, params=params)
            assert head == (got[0], ""), (path, head)


async def test_every_status_answered_is_documented_for_its_operation(tmp_path) -> None:
    """Each (method, route, status) the tests above can produce, against the document."""
    async with api_pair(tmp_path) as (ne, ng):
        case_ref, mid = await _received(ne, ng)
        _, doc = await ne.call("GET", "/openapi.json", role=None)
        withdrawal = {"withdrawn_at": "2026-01-20T10:00:00Z", "decision_maker": "self", "scope": "all_purposes",
                      "erasure_requested": False}
        big = b"{" + b" " * (300 * 1024) + b"}"
        calls = [
            ("GET", "/inbox", "caseworker", {"params": {"limit": "201"}}),
            ("GET", "/inbox", None, {}),
            ("GET", "/inbox", "admin", {}),
            ("GET", f"/inbox/{mid}", "caseworker", {"params": {"purpose": "curiosity"}}),
            ("GET", f"/inbox/{mid}", "caseworker", {"params": {"purpose": "family_tracing", "format": "nigeria"}}),
            ("GET", "/inbox/5b0f8c1e-2d3a-4b5c-9d6e-7f8091a2b3c4", "caseworker",
             {"params": {"purpose": "family_tracing"}}),
            ("POST", f"/inbox/{mid}/response", "caseworker", {"data": big,
                                                                "headers": {"Content-Type": "application/json"}}),
            ("POST", f"/inbox/{mid}/response", "caseworker", {"json": {"decision": "accepted"}}),
            ("POST", f"/inbox/{mid}/response", "caseworker", {"data": b"{}", "headers": {"Content-Type": "text/plain"}}),
            ("POST", f"/inbox/{mid}/response", "caseworker", {"json": {"decision": "declined",
                                                                        "decline_reason": "no_capacity"}}),
            ("POST", f"/inbox/{mid}/response", "caseworker", {"json": {
                "decision": "accepted", "accepted_purposes": load_example("referral.request")["purposes"][:1]}}),
            ("POST", "/referrals", "caseworker", {"data": b"{", "headers": {"Content-Type": "application/json"}}),
            ("POST", "/referrals", "caseworker", {"json": {"recipient": "XX-NOBODY", "case_ref": case_ref,
                                                          "payload": load_example("referral.request")}}),
            ("GET", f"/cases/{UNKNOWN_CASE}/withdrawals", "caseworker", {}),
            ("POST", f"/cases/{UNKNOWN_CASE}/withdrawal", "caseworker", {"json": withdrawal}),
            ("POST", f"/cases/{case_ref}/withdrawal", "caseworker", {"json": {**withdrawal,
                                                                                "withdrawn_at": "0999-01-01T00:00:00Z"}}),
            ("GET", "/audit/entries", "auditor", {"params": {"limit": "0"}}),
            ("GET", "/audit/checkpoints/latest", "auditor", {"params": {"origin": "ML-DNPEF"}}),
            ("GET", "/stats", "supervisor", {"params": {"threshold": "1"}}),
            ("GET", "/quarantine", "admin", {"params": {"limit": "500"}}),
            ("GET", "/messages/not-an-id", "caseworker", {}),
        ]
        templates = [(re.compile("^" + re.sub(r"{\w+}", "[^/]+", t) + "$"), t) for t in doc["paths"]]
        seen = set()
        for method, path, role, kwargs in calls:
            agency = ng if path.startswith("/inbox") else ne
            status, body = await agency.call(method, path, role=role, **kwargs)
            template = next(t for pattern, t in templates if pattern.match(path))
            documented = doc["paths"][template][method.lower()]["responses"]
            assert str(status) in documented, (method, template, status, body)
            seen.add(status)
        assert {400, 401, 403, 404, 409, 413, 415, 422} <= seen
        for template, ops in doc["paths"].items():
            for method, op in ops.items():
                assert {"400", "500"} <= set(op["responses"]), (method, template)
                if "requestBody" in op:
                    assert {"413", "415", "422"} <= set(op["responses"]), (method, template)
