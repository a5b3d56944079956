"""One source of truth for request bodies: the schema GET /openapi.json publishes for a POST
and the live handler agree on every documented example and on every refused case.

"Agree" means: the document's schema accepts a body ⇔ the handler does not answer 422 for a
schema reason (``invalid_request`` or ``schema_invalid`` with a violation of a JSON Schema
rule). A body the schema accepts may still be refused for a rule no schema states (the
recipient is this gateway itself, a date out of range, a purpose the request did not ask
for); those violations carry rules of their own, listed in BUSINESS_RULES and in the
operation's description.
"""

from __future__ import annotations

import json
from typing import Any

from jsonschema import Draft202012Validator

from gateway.schema import load_example

from testkit.gateway_pair import NIGER, NIGERIA, ROOT, eventually
from .test_api_world import OPENAPI_URI, Agency, api_pair, document_registry

#: Violation rules of the code checks that run after the schema (docs/api.md).
BUSINESS_RULES = {"own_agency", "date_range", "request_purposes"}
SCHEMA_CODES = {"invalid_request", "schema_invalid"}
FICHE = json.loads((ROOT / "adapters" / "niger" / "samples" / "adulte_nigeriane_securite_recherche.json")
                   .read_text(encoding="utf-8"))
CASE_REF = "ne-ng-bodies000001"


def _body_validator(document: dict[str, Any], path: str) -> Draft202012Validator:
    """The published request body schema of POST ``path``, resolved against the document only."""
    schema = document["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert set(schema) == {"$ref"} and schema["$ref"].startswith("#/"), schema
    return Draft202012Validator({"$ref": OPENAPI_URI + schema["$ref"]}, registry=document_registry(document),
                                format_checker=Draft202012Validator.FORMAT_CHECKER)


def _schema_refusal(status: int, answer: Any) -> bool:
    """The handler refused the body for a schema reason."""
    if status != 422 or answer.get("error") not in SCHEMA_CODES:
        return False
    return any(v["rule"] not in BUSINESS_RULES for v in answer.get("violations") or [{"rule": "?"}])


def _examples(document: dict[str, Any], path: str) -> list[tuple[str, dict[str, Any]]]:
    media = document["paths"][path]["post"]["requestBody"]["content"]["application/json"]
    return [(name, example["value"]) for name, example in media.get("examples", {}).items()]


async def _received(ne: Agency, ng: Agency) -> str:
    body = {"recipient": NIGERIA, "case_ref": CASE_REF, "payload": load_example("referral.request")}
    status, queued = await ne.call("POST", "/referrals", json=body)
    assert status == 202, queued

    async def arrived() -> bool:
        return (await ng.gateway.store.get_incoming(queued["message_id"])) is not None
    await eventually(arrived)
    return queued["message_id"]


def _submissions() -> list[tuple[str, dict[str, Any], bool]]:
    """(name, body, accepted by the schema) for POST /referrals."""
    base = {"recipient": NIGERIA, "case_ref": CASE_REF, "payload": load_example("referral.request")}
    local = {"recipient": NIGERIA, "local_case_id": "NE-BODIES-1", "format": "niger", "record": FICHE}
    no_consent = load_example("referral.request")
    del no_consent["consent"]
    return [
        ("plain", base, True),
        ("own agency (a rule after the schema)", {**base, "recipient": NIGER}, True),
        ("local record", local, True),
        ("local record, some purposes", {**local, "purposes": ["family_tracing"]}, True),
        ("local case id of 128 characters",
         {**{k: v for k, v in base.items() if k != "case_ref"}, "local_case_id": "L" * 128}, True),
        ("payload plus purposes", {**base, "purposes": ["assistance"]}, False),
        ("blank local case id", {**{k: v for k, v in base.items() if k != "case_ref"}, "local_case_id": "   "}, False),
        ("control character in the local case id",
         {**{k: v for k, v in base.items() if k != "case_ref"}, "local_case_id": "NE-\x01-1"}, False),
        ("bidi override in the local case id",
         {**{k: v for k, v in base.items() if k != "case_ref"}, "local_case_id": "NE-\u202e-1"}, False),
        ("local case id of 129 characters",
         {**{k: v for k, v in base.items() if k != "case_ref"}, "local_case_id": "L" * 129}, False),
        ("payload and format", {**base, "format": "niger"}, False),
        ("payload and a local record", {**base, "format": "niger", "record": FICHE}, False),
        ("record without format", {k: v for k, v in local.items() if k != "format"}, False),
        ("local record as case.followup", {**local, "message_type": "case.followup"}, False),
        ("local record, no purposes", {**local, "purposes": []}, False),
        ("local record, an unknown purpose", {**local, "purposes": ["curiosity"]}, False),
        ("unknown format", {**local, "format": "klingon"}, False),
        ("case_ref and local_case_id", {**base, "local_case_id": "L-1"}, False),
        ("neither case_ref nor local_case_id", {k: v for k, v in base.items() if k != "case_ref"}, False),
        ("case_ref null", {**base, "case_ref": None}, False),
        ("bad case_ref", {**base, "case_ref": "short"}, False),
        ("bad recipient", {**base, "recipient": "not an agency"}, False),
        ("no recipient", {k: v for k, v in base.items() if k != "recipient"}, False),
        ("receipt", {**base, "message_type": "receipt", "payload": load_example("receipt")}, False),
        ("payload of another type", {**base, "message_type": "case.followup"}, False),
        ("payload not an object", {**base, "payload": []}, False),
        ("payload breaks its schema", {**base, "payload": no_consent}, False),
        ("unknown member", {**base, "surprise": 1}, False),
    ]


ANSWERS: list[tuple[str, dict[str, Any], bool]] = [
    ("no decision", {}, False),
    ("unknown decision", {"decision": "maybe"}, False),
    ("accepted without purposes", {"decision": "accepted"}, False),
    ("declined without a reason", {"decision": "declined"}, False),
    ("accepted with a decline reason", {"decision": "accepted", "accepted_purposes": ["assistance"],
                                        "decline_reason": "no_capacity"}, False),
    ("request_message_id given", {"decision": "declined", "decline_reason": "no_capacity",
                                  "request_message_id": "5b0f8c1e-2d3a-4b5c-9d6e-7f8091a2b3c4"}, False),
    ("no such calendar day", {"decision": "more_information_needed", "information_needed": ["identity"],
                              "expected_by": "2030-02-30"}, False),
    ("unknown member", {"decision": "declined", "decline_reason": "no_capacity", "surprise": 1}, False),
    ("a purpose the request did not ask for (a rule after the schema)",
     {"decision": "accepted", "accepted_purposes": ["reintegration_handover"]}, True),
    ("a date before 1900 (a rule after the schema)",
     {"decision": "more_information_needed", "information_needed": ["identity"], "expected_by": "1899-12-31"}, True),
]

WITHDRAWALS: list[tuple[str, dict[str, Any], bool]] = [
    ("nothing", {}, False),
    ("scope only", {"scope": "all_purposes"}, False),
    ("some purposes, none listed", {"withdrawn_at": "2026-01-20T10:00:00Z", "decision_maker": "self",
                                    "scope": "some_purposes", "erasure_requested": False}, False),
    ("all purposes, purposes listed", {"withdrawn_at": "2026-01-20T10:00:00Z", "decision_maker": "self",
                                       "scope": "all_purposes", "purposes": ["assistance"],
                                       "erasure_requested": False}, False),
    ("not a time", {"withdrawn_at": "yesterday", "decision_maker": "self", "scope": "all_purposes",
                    "erasure_requested": False}, False),
    ("unknown member", {"withdrawn_at": "2026-01-20T10:00:00Z", "decision_maker": "self",
                        "scope": "all_purposes", "erasure_requested": False, "surprise": 1}, False),
]


async def _agree(agency: Agency, validator: Draft202012Validator, path: str,
                 cases: list[tuple[str, dict[str, Any], bool]]) -> int:
    """Send each case to the handler; assert schema and handler agree. Returns how many were refused."""
    refused = 0
    for name, body, expected in cases:
        accepted = validator.is_valid(body)
        assert accepted == expected, (path, name, [e.message for e in validator.iter_errors(body)][:3])
        status, answer = await agency.call("POST", path, json=body)
        assert status != 500, (path, name, answer)
        assert _schema_refusal(status, answer) == (not accepted), (path, name, status, answer)
        refused += not accepted
    return refused


async def test_every_post_body_is_documented_with_examples_the_schema_accepts(tmp_path) -> None:
    async with api_pair(tmp_path) as (ne, _):
        _, doc = await ne.call("GET", "/openapi.json", role=None)
        posts = [p for p, ops in doc["paths"].items() if "requestBody" in ops.get("post", {})]
        assert sorted(posts) == ["/cases/{case_ref}/withdrawal", "/inbox/{id}/response", "/referrals"]
        for path in posts:
            examples = _examples(doc, path)
            assert len(examples) >= 2, path
            validator = _body_validator(doc, path)
            for name, value in examples:
                assert validator.is_valid(value), (path, name)
            # The rules checked after the schema are stated in the description.
            assert "no schema states" in doc["paths"][path]["post"]["description"], path


async def test_schema_and_handler_agree_on_examples_and_refused_bodies(tmp_path) -> None:
    async with api_pair(tmp_path) as (ne, ng):
        mid = await _received(ne, ng)
        _, doc = await ne.call("GET", "/openapi.json", role=None)
        refused = 0
        # POST /referrals: the refused cases, then every documented example (all accepted).
        referrals = _body_validator(doc, "/referrals")
        refused += await _agree(ne, referrals, "/referrals", _submissions())
        examples = [(n, v, True) for n, v in _examples(doc, "/referrals")]
        await _agree(ne, referrals, "/referrals", examples)
        # POST /inbox/{id}/response: refused cases first (they change nothing), then the examples.
        answer = _body_validator(doc, "/inbox/{id}/response")
        refused += await _agree(ng, answer, f"/inbox/{mid}/response", ANSWERS)
        await _agree(ng, answer, f"/inbox/{mid}/response",
                     [(n, v, True) for n, v in _examples(doc, "/inbox/{id}/response")])
        # POST /cases/{case_ref}/withdrawal.
        withdrawal = _body_validator(doc, "/cases/{case_ref}/withdrawal")
        refused += await _agree(ne, withdrawal, f"/cases/{CASE_REF}/withdrawal", WITHDRAWALS)
        await _agree(ne, withdrawal, f"/cases/{CASE_REF}/withdrawal",
                     [(n, v, True) for n, v in _examples(doc, "/cases/{case_ref}/withdrawal")])
        assert refused >= 30


async def test_refusals_name_the_path_and_rule_and_never_the_value(tmp_path) -> None:
    async with api_pair(tmp_path) as (ne, _):
        base = {"recipient": NIGERIA, "payload": load_example("referral.request")}
        for local_id, rule in (("   Cnry7Qx\x01", "pattern"), ("\u202eCnry7Qx", "pattern"),
                               ("Cnry7Qx" * 20, "maxLength")):
            status, answer = await ne.call("POST", "/referrals", json={**base, "local_case_id": local_id})
            assert (status, answer["error"]) == (422, "invalid_request"), answer
            assert [(v["path"], v["rule"]) for v in answer["violations"]] == [("$.local_case_id", rule)]
            assert "cnry7qx" not in json.dumps(answer).lower()
        status, answer = await ne.call("POST", "/referrals", json={**base, "case_ref": CASE_REF,
                                                                   "purposes": ["assistance"]})
        assert (status, answer["error"]) == (422, "invalid_request")
        assert [(v["path"], v["rule"]) for v in answer["violations"]] == [("$.purposes", "dependentRequired")]
        status, answer = await ne.call("POST", "/referrals", json={**base, "case_ref": CASE_REF, "recipient": NIGER})
        assert (status, answer["error"]) == (422, "invalid_request")
        assert [(v["path"], v["rule"]) for v in answer["violations"]] == [("$.recipient", "own_agency")]
        # A lone surrogate is no text: refused, not a 500.
        raw = b'{"recipient": "NG-NAPTIP", "local_case_id": "NE-\\ud800", "payload": {}}'
        status, answer = await ne.call("POST", "/referrals", data=raw, headers={"Content-Type": "application/json"})
        assert (status, answer["error"]) == (422, "invalid_request"), answer
