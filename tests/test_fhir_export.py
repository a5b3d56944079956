"""FHIR R4B export: referral bundles from every referral.request example, AuditEvents from
audit entries. fhir.resources checks structure and types but not value sets or
invariants, so the required FHIR bindings and reference resolution are checked here."""

from __future__ import annotations

import copy
import dataclasses
import json
import re
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterator

import pytest
from fhir.resources.R4B.auditevent import AuditEvent
from fhir.resources.R4B.bundle import Bundle
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.fhir import (
    FHIR_RELEASE,
    TASK_STATUS,
    AuditExportError,
    FhirExportError,
    audit_event,
    code_system,
    referral_bundle,
)
from adapters.fhir import codes
from adapters.fhir import export as export_module
from gateway import schema
from gateway.directory import ORG_TYPES, Directory, load_directory
from gateway.envelope import Header
from gateway.errors import SchemaInvalidError, UnknownAgencyError
from gateway.keyfile import parse_authority_public
from gateway.settings import ROLES
from gateway.store.base import OUTGOING_STATUSES, AuditRecord
from tests.support.hypothesis_profiles import scaled

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "keys" / "demo"
CREATED = datetime(2026, 5, 3, 9, 30, 0, tzinfo=timezone.utc)

REQUEST_EXAMPLES = [n for n in schema.example_names() if schema.example_message_type(n) == "referral.request"]
#: Example -> (sender, recipient): a plausible route through the demo directory. Examples
#: added later fall back to the NE -> NG route, which every consent in the examples covers.
ROUTES = {
    "referral.request": ("NE-ANLTP-TIM", "NG-NAPTIP"),
    "referral.request.safety_assessment_only": ("NE-ANLTP-TIM", "NG-NAPTIP"),
    "referral.request.minor_guardian": ("ML-DNPEF", "NG-NAPTIP"),
    "referral.request.all_purposes": ("NE-IOM", "NG-IOM"),
}

# Value sets with *required* bindings in FHIR R4/R4B, copied from the specification.
TASK_STATUS_VS = {"draft", "requested", "received", "accepted", "rejected", "ready", "cancelled",
                  "in-progress", "on-hold", "failed", "completed", "entered-in-error"}
REQUEST_STATUS_VS = {"draft", "active", "on-hold", "revoked", "completed", "entered-in-error", "unknown"}
REQUEST_INTENT_VS = {"proposal", "plan", "directive", "order", "original-order", "reflex-order",
                     "filler-order", "instance-order", "option"}
REQUEST_PRIORITY_VS = {"routine", "urgent", "asap", "stat"}
CONSENT_STATE_VS = {"draft", "proposed", "active", "rejected", "inactive", "entered-in-error"}
GENDER_VS = {"male", "female", "other", "unknown"}
AUDIT_ACTION_VS = {"C", "R", "U", "D", "E"}
AUDIT_OUTCOME_VS = {"0", "4", "8", "12"}

# Independent copy of the documented mapping (docs/fhir.md), so a change to the table is a
# deliberate change to two places.
EXPECTED_TASK_STATUS = {
    "queued": "requested", "sent": "requested", "failed": "failed", "delivered": "received",
    "read": "received", "more_info_requested": "received", "accepted": "accepted", "declined": "rejected",
}


# --- fixtures and helpers ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def directory() -> Directory:
    _, authority_key = parse_authority_public((DEMO / "authority.pub.json").read_bytes())
    return load_directory((DEMO / "directory.json").read_bytes(), [authority_key])


def header_for(example: str, *, message_id: str | None = None, case: str = "ne-ng-q3v7k2m4x8p1c6r5t9w2y4zb") -> Header:
    sender, recipient = ROUTES.get(example, ("NE-ANLTP-TIM", "NG-NAPTIP"))
    return Header(
        id=message_id or str(uuid.uuid4()), type="referral.request", schema=schema.SCHEMA_VERSION,
        sender=sender, recipient=recipient, created=CREATED, expires=CREATED + timedelta(days=14),
        sig_kid="0" * 32, enc_kid="1" * 32, case=case,
    )


def load(example: str) -> dict[str, Any]:
    message_type = schema.example_message_type(example)
    variant = example[len(message_type) + 1:] or None
    return schema.load_example(message_type, variant)


def as_json(model: Any) -> dict[str, Any]:
    return json.loads(model.model_dump_json())


def entries(bundle_json: dict[str, Any], resource_type: str) -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle_json["entry"] if e["resource"]["resourceType"] == resource_type]


def one(bundle_json: dict[str, Any], resource_type: str) -> dict[str, Any]:
    (found,) = entries(bundle_json, resource_type)
    return found


def full_url(bundle_json: dict[str, Any], resource: dict[str, Any]) -> str:
    (url,) = [e["fullUrl"] for e in bundle_json["entry"] if e["resource"] is resource]
    return url


def walk(node: Any) -> Iterator[Any]:
    yield node
    if isinstance(node, dict):
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


def strings(node: Any) -> set[str]:
    return {leaf for leaf in walk(node) if isinstance(leaf, str)}


def agency_ids(resource: dict[str, Any]) -> list[str]:
    return [i["value"] for i in resource.get("identifier", []) if i["system"] == codes.AGENCY_ID_SYSTEM]


def export(example: str, directory: Directory, **kwargs: Any) -> tuple[Header, dict[str, Any], dict[str, Any]]:
    header, payload = header_for(example), load(example)
    return header, payload, as_json(referral_bundle(header, payload, directory, **kwargs))


# --- the bundle ------------------------------------------------------------------------------


def test_release_is_r4b_and_examples_are_found() -> None:
    assert FHIR_RELEASE == "R4B"
    assert set(ROUTES) <= set(REQUEST_EXAMPLES)


@pytest.mark.parametrize("example", REQUEST_EXAMPLES)
def test_bundle_validates_and_round_trips(example: str, directory: Directory) -> None:
    header, payload = header_for(example), load(example)
    bundle = referral_bundle(header, payload, directory)
    text = bundle.model_dump_json()
    again = Bundle.model_validate_json(text)
    assert again.model_dump_json() == text
    assert Bundle.model_validate(json.loads(text)).model_dump_json() == text
    assert bundle.type == "collection"
    # Same input, same output: deterministic ids make a re-import an update, not a copy.
    assert referral_bundle(header, payload, directory).model_dump_json() == text


@pytest.mark.parametrize("example", REQUEST_EXAMPLES)
def test_bundle_holds_exactly_the_expected_resources(example: str, directory: Directory) -> None:
    _, _, bundle = export(example, directory)
    types = sorted(e["resource"]["resourceType"] for e in bundle["entry"])
    assert types == ["Consent", "Organization", "Organization", "Patient", "ServiceRequest", "Task"]
    for entry in bundle["entry"]:
        assert entry["fullUrl"] == f"urn:uuid:{entry['resource']['id']}"


@pytest.mark.parametrize("example", REQUEST_EXAMPLES)
def test_every_reference_resolves_inside_the_bundle(example: str, directory: Directory) -> None:
    _, _, bundle = export(example, directory)
    urls = {e["fullUrl"] for e in bundle["entry"]}
    for entry in bundle["entry"]:
        resource = entry["resource"]
        contained = {c["id"] for c in resource.get("contained", [])}
        references = [n["reference"] for n in walk(resource) if isinstance(n, dict) and isinstance(n.get("reference"), str)]
        for ref in references:
            if ref.startswith("#"):
                assert ref[1:] in contained, (resource["resourceType"], ref)
            else:
                assert ref in urls, (resource["resourceType"], ref)
        # dom-3: every contained resource is referenced from its container.
        assert contained <= {r[1:] for r in references if r.startswith("#")}


@pytest.mark.parametrize("example", REQUEST_EXAMPLES)
def test_required_fhir_codes(example: str, directory: Directory) -> None:
    _, _, bundle = export(example, directory)
    request, task, consent = one(bundle, "ServiceRequest"), one(bundle, "Task"), one(bundle, "Consent")
    assert request["status"] in REQUEST_STATUS_VS and request["intent"] in REQUEST_INTENT_VS
    assert request.get("priority", "routine") in REQUEST_PRIORITY_VS
    assert task["status"] in TASK_STATUS_VS and task["intent"] in REQUEST_INTENT_VS
    assert consent["status"] in CONSENT_STATE_VS and consent["provision"]["type"] in {"deny", "permit"}
    assert one(bundle, "Patient")["gender"] in GENDER_VS
    # ppc-1: a Consent names a policy or a policyRule; org-1: an Organization has a name or identifier.
    assert consent.get("policy") or consent.get("policyRule")
    for org in entries(bundle, "Organization"):
        assert org["name"] and org["identifier"]


@pytest.mark.parametrize("example", REQUEST_EXAMPLES)
def test_every_local_code_is_defined(example: str, directory: Directory) -> None:
    _, _, bundle = export(example, directory)
    tables = {url: table for url, _, table in codes.CODE_SYSTEMS.values()}
    local = [n for n in walk(bundle) if isinstance(n, dict) and n.get("system", "").startswith(codes.BASE + "/CodeSystem/")]
    assert local
    for c in local:
        assert c["code"] in tables[c["system"]], c
        assert c["display"] == tables[c["system"]][c["code"]]


# --- ServiceRequest and Task -------------------------------------------------------------------


@pytest.mark.parametrize("example", REQUEST_EXAMPLES)
def test_service_request_is_the_referral(example: str, directory: Directory) -> None:
    header, payload, bundle = export(example, directory)
    request = one(bundle, "ServiceRequest")
    sender, recipient = entries(bundle, "Organization")
    assert {"system": "urn:ietf:rfc:3986", "value": f"urn:uuid:{header.id}"} in request["identifier"]
    assert {"system": codes.CASE_PSEUDONYM_SYSTEM, "value": header.case} in request["identifier"]
    assert request["intent"] == "order" and request["status"] == "active"
    assert [c["coding"][0]["code"] for c in request["category"]] == payload["purposes"]
    assert {c["coding"][0]["system"] for c in request["category"]} == {codes.system("purpose")}
    assert request["subject"]["reference"] == full_url(bundle, one(bundle, "Patient"))
    assert request["requester"]["reference"] == full_url(bundle, sender)
    assert request["performer"] == [{"reference": full_url(bundle, recipient)}]
    assert request["supportingInfo"] == [{"reference": full_url(bundle, one(bundle, "Consent"))}]
    urgency = payload.get("urgency")
    if urgency is None:
        assert "priority" not in request and "note" not in request
    else:
        assert request["priority"] == {"routine": "routine", "urgent": "urgent", "emergency": "stat"}[urgency]
        assert urgency in request["note"][0]["text"]


@pytest.mark.parametrize("urgency", ["routine", "urgent", "emergency"])
def test_urgency_becomes_priority_and_note(urgency: str, directory: Directory) -> None:
    payload = load("referral.request")
    payload["urgency"] = urgency
    request = one(as_json(referral_bundle(header_for("referral.request"), payload, directory)), "ServiceRequest")
    assert request["priority"] == codes.PRIORITY[urgency]
    assert request["note"] == [{"text": codes.URGENCY_NOTE[urgency]}]


@pytest.mark.parametrize("example", REQUEST_EXAMPLES)
def test_case_pseudonym_is_only_ever_an_identifier(example: str, directory: Directory) -> None:
    header, _, bundle = export(example, directory)
    holders = [n for n in walk(bundle) if isinstance(n, dict) and header.case in n.values()]
    assert holders and all(n == {"system": codes.CASE_PSEUDONYM_SYSTEM, "value": header.case} for n in holders)
    assert {r["resourceType"] for r in (e["resource"] for e in bundle["entry"]) if header.case in strings(r)} == {
        "ServiceRequest", "Task"}


def test_task_status_table_covers_every_outgoing_status() -> None:
    assert dict(TASK_STATUS) == EXPECTED_TASK_STATUS
    assert set(TASK_STATUS) == OUTGOING_STATUSES == set(codes.CODE_SYSTEMS["message-status"][2])
    assert set(TASK_STATUS.values()) <= TASK_STATUS_VS


@pytest.mark.parametrize("status", sorted(EXPECTED_TASK_STATUS))
def test_task_status_follows_the_message_status(status: str, directory: Directory) -> None:
    header, _, bundle = export("referral.request", directory, status=status)
    task = one(bundle, "Task")
    assert task["status"] == EXPECTED_TASK_STATUS[status]
    assert task["businessStatus"]["coding"] == [codes.coding("message-status", status)]
    request_url = full_url(bundle, one(bundle, "ServiceRequest"))
    assert task["focus"] == {"reference": request_url} and task["basedOn"] == [{"reference": request_url}]
    assert task["for"] == {"reference": full_url(bundle, one(bundle, "Patient"))}
    sender, recipient = entries(bundle, "Organization")
    assert task["requester"]["reference"] == full_url(bundle, sender)
    assert task["owner"]["reference"] == full_url(bundle, recipient)
    assert task["identifier"] == [{"system": codes.CASE_PSEUDONYM_SYSTEM, "value": header.case}]


@pytest.mark.parametrize("status", ["responded", "received", "QUEUED", ""])
def test_unknown_status_is_refused(status: str, directory: Directory) -> None:
    with pytest.raises(FhirExportError, match="status"):
        referral_bundle(header_for("referral.request"), load("referral.request"), directory, status=status)


# --- Patient: minimal data -------------------------------------------------------------------


@pytest.mark.parametrize("example", REQUEST_EXAMPLES)
def test_patient_carries_only_what_the_purposes_allow(example: str, directory: Directory) -> None:
    _, payload, bundle = export(example, directory)
    patient, person = one(bundle, "Patient"), payload["person"]
    allowed = schema.allowed_person_fields(payload["purposes"])
    assert set(patient) <= {"resourceType", "id", "extension", "name", "birthDate", "gender", "communication"}
    assert ("name" in patient) == ("person.names" in allowed and "names" in person)
    assert ("birthDate" in patient) == ("person.age.date_of_birth" in allowed and "date_of_birth" in person["age"])
    assert patient["gender"] == person["sex"]
    if "name" in patient:
        names = person["names"]
        main = patient["name"][0]
        assert main.get("family") == names.get("family")
        assert main.get("given") == [names[k] for k in ("given", "middle") if k in names]
        assert [n["text"] for n in patient["name"][1:]] == names.get("aliases", [])
    if "birthDate" in patient:
        assert patient["birthDate"] == person["age"]["date_of_birth"]
    nationality = [e for e in patient.get("extension", []) if e["url"] == codes.PATIENT_NATIONALITY]
    assert [e["extension"][0]["valueCodeableConcept"]["coding"][0]["code"] for e in nationality] == (
        [person["nationality"]] if "nationality" in person else [])
    assert [c["language"]["coding"][0]["code"] for c in patient.get("communication", [])] == person.get("languages", [])


def test_safety_assessment_only_patient_is_anonymous(directory: Directory) -> None:
    _, _, bundle = export("referral.request.safety_assessment_only", directory)
    patient = one(bundle, "Patient")
    assert "name" not in patient and "birthDate" not in patient
    (age,) = [e for e in patient["extension"] if e["url"] == codes.EXT_AGE]
    assert {p["url"] for p in age["extension"]} == {"minor", "band"}


@pytest.mark.parametrize("example", REQUEST_EXAMPLES)
def test_deliberately_unexported_data_never_appears(example: str, directory: Directory) -> None:
    _, payload, bundle = export(example, directory)
    person = payload["person"]
    left_out = [person.get(k) for k in ("place_of_origin", "family_contacts", "identity_documents")]
    left_out += [payload.get(k) for k in ("narrative", "exploitation", "acts", "means", "methods_of_control", "needs",
                                          "safety_concerns", "identification")]
    exported_names = strings(person.get("names"))  # the person's own names may be exported
    text = json.dumps(bundle)
    for value in strings(left_out) - exported_names:
        if len(value) >= 3 and not re.fullmatch(r"[a-z_]+|\d{4}-\d{2}-\d{2}", value):  # skip shared codes, dates
            assert value not in text, value
    # Codes that exist only in left-out fields must not leak either.
    for code in ("presumed", "self_denies", "outstanding_debt", "re_trafficking_risk", "sexual_exploitation",
                 "debt_bondage", "documentation"):
        if code in json.dumps(left_out):
            assert f'"{code}"' not in text, code


def test_names_with_a_safety_only_purpose_are_refused(directory: Directory) -> None:
    payload = load("referral.request.safety_assessment_only")
    payload["person"]["names"] = {"given": "Amaka", "family": "Testfixture"}
    with pytest.raises(SchemaInvalidError):
        referral_bundle(header_for("referral.request.safety_assessment_only"), payload, directory)


def test_patient_builder_checks_the_purposes_itself() -> None:
    # Defence in depth: even handed an unvalidated payload, the Patient gets no identity
    # the purposes do not allow.
    payload = load("referral.request.safety_assessment_only")
    payload["person"]["names"] = {"given": "Amaka", "family": "Testfixture"}
    payload["person"]["age"] = {"minor": False, "date_of_birth": "2004-01-01"}
    patient = as_json(export_module.patient(payload, "p1"))
    assert "name" not in patient and "birthDate" not in patient
    assert "Amaka" not in json.dumps(patient) and "2004" not in json.dumps(patient)


# --- Consent -------------------------------------------------------------------------------


def _consent_checks(bundle: dict[str, Any], payload: dict[str, Any], header: Header, directory: Directory) -> None:
    consent, record = one(bundle, "Consent"), payload["consent"]
    patient_url = full_url(bundle, one(bundle, "Patient"))
    assert consent["status"] == "active"
    assert consent["patient"] == {"reference": patient_url}
    assert consent["dateTime"] == record["given_at"]
    assert consent["provision"]["period"] == {"start": record["given_at"], "end": record["expires_at"]}
    assert [p["code"] for p in consent["provision"]["purpose"]] == record["purposes"]
    (maker,) = [e for e in consent["extension"] if e["url"] == codes.EXT_DECISION_MAKER]
    assert maker["valueCoding"]["code"] == record["decision_maker"]
    sender_org = [o for o in entries(bundle, "Organization") if agency_ids(o) == [header.sender]]
    assert consent["organization"] == [{"reference": full_url(bundle, sender_org[0])}]
    actors = [a["reference"] for a in consent["provision"]["actor"]]
    assert all(a["type"] == "Organization" for a in actors)
    assert {a["role"]["coding"][0]["code"] for a in consent["provision"]["actor"]} == {"IRCP"}
    named = [a["identifier"]["value"] for a in actors if a["identifier"]["system"] == codes.AGENCY_ID_SYSTEM]
    countries = [a["identifier"]["value"] for a in actors if a["identifier"]["system"] == codes.COUNTRY_SYSTEM]
    assert named == record.get("recipient_agencies", []) and countries == record.get("recipient_countries", [])
    assert actors, "a permit provision without actors would permit everyone"
    for actor in actors:
        agency_id = actor["identifier"]["value"]
        if agency_id in (header.sender, header.recipient):
            org = [o for o in entries(bundle, "Organization") if agency_ids(o) == [agency_id]][0]
            assert actor["reference"] == full_url(bundle, org)
        if agency_id in directory.agencies:
            assert actor["display"] == directory.agency(agency_id).name


@pytest.mark.parametrize("example", REQUEST_EXAMPLES)
def test_consent_mirrors_the_consent_record(example: str, directory: Directory) -> None:
    header, payload = header_for(example), load(example)
    bundle = as_json(referral_bundle(header, payload, directory))
    _consent_checks(bundle, payload, header, directory)


def test_self_consent_is_given_by_the_patient(directory: Directory) -> None:
    _, _, bundle = export("referral.request", directory)
    consent = one(bundle, "Consent")
    assert consent["performer"] == [{"reference": full_url(bundle, one(bundle, "Patient"))}]
    assert "contained" not in consent


@pytest.mark.parametrize(("decision_maker", "parties"), [
    ("parent_guardian", [("RelatedPerson", "GUARD")]),
    ("guardian_with_child_protection", [("RelatedPerson", "GUARD"), ("PractitionerRole", "child_protection_service")]),
    ("judge_of_minors", [("PractitionerRole", "judge_of_minors")]),
])
def test_a_childs_consent_names_the_guardian_roles(decision_maker: str, parties: list[tuple[str, str]],
                                                   directory: Directory) -> None:
    example = "referral.request.minor_guardian"
    header, payload = header_for(example), load(example)
    payload["consent"]["decision_maker"] = decision_maker
    bundle = as_json(referral_bundle(header, payload, directory))
    consent = one(bundle, "Consent")
    contained = {c["id"]: c for c in consent["contained"]}
    performers = [contained[p["reference"][1:]] for p in consent["performer"]]
    found = []
    for party in performers:
        if party["resourceType"] == "RelatedPerson":
            found.append(("RelatedPerson", party["relationship"][0]["coding"][0]["code"]))
            assert party["patient"] == {"reference": full_url(bundle, one(bundle, "Patient"))}
            assert "name" not in party  # the payload names no guardian; nothing is invented
        else:
            found.append((party["resourceType"], party["code"][0]["coding"][0]["code"]))
    assert found == parties
    _consent_checks(bundle, payload, header, directory)


# --- Organizations ---------------------------------------------------------------------------


@pytest.mark.parametrize("example", REQUEST_EXAMPLES)
def test_organizations_match_the_directory(example: str, directory: Directory) -> None:
    header, _, bundle = export(example, directory)
    orgs = entries(bundle, "Organization")
    assert [agency_ids(o) for o in orgs] == [[header.sender], [header.recipient]]
    for org in orgs:
        agency = directory.agency(agency_ids(org)[0])
        assert org["name"] == agency.name
        assert org["address"] == [{"country": agency.country}]
        assert org["type"][0]["coding"] == [codes.coding("organisation-type", agency.org_type)]
        assert org["type"][1]["coding"][0]["code"] == codes.HL7_ORGANIZATION_TYPE[agency.org_type][0]


def test_organization_ids_are_stable_and_patient_ids_are_not_linkable(directory: Directory) -> None:
    first = as_json(referral_bundle(header_for("referral.request"), load("referral.request"), directory))
    second = as_json(referral_bundle(header_for("referral.request"), load("referral.request"), directory))
    assert [o["id"] for o in entries(first, "Organization")] == [o["id"] for o in entries(second, "Organization")]
    # Two messages about (possibly) the same person do not share a Patient id.
    assert one(first, "Patient")["id"] != one(second, "Patient")["id"]


# --- refusals --------------------------------------------------------------------------------


def test_other_message_types_are_refused(directory: Directory) -> None:
    header = header_for("referral.request")
    other = dataclasses.replace(header, type="referral.response")
    with pytest.raises(FhirExportError, match="header.type"):
        referral_bundle(other, schema.load_example("referral.response"), directory)


def test_agency_missing_from_the_directory_is_refused(directory: Directory) -> None:
    header = header_for("referral.request")
    with pytest.raises(UnknownAgencyError):
        referral_bundle(dataclasses.replace(header, recipient="NG-COSUDOW"), load("referral.request"), directory)


def test_invalid_payload_is_refused(directory: Directory) -> None:
    payload = load("referral.request")
    del payload["consent"]
    with pytest.raises(SchemaInvalidError):
        referral_bundle(header_for("referral.request"), payload, directory)


# --- published code systems ------------------------------------------------------------------


@pytest.mark.parametrize("key", sorted(codes.CODE_SYSTEMS))
def test_code_systems_publish_as_valid_fhir(key: str) -> None:
    resource = as_json(code_system(key))
    assert resource["url"] == codes.system(key)
    assert [c["code"] for c in resource["concept"]] == list(codes.CODE_SYSTEMS[key][2])


def test_code_tables_are_in_step_with_the_gateway() -> None:
    # v2's code lists are v1's plus the new codes: the tables follow v2.
    common = json.loads((schema.SCHEMA_DIR / "v2" / "common.schema.json").read_text())["$defs"]
    table = lambda key: list(codes.CODE_SYSTEMS[key][2])  # noqa: E731
    assert table("purpose") == list(schema.PURPOSES)
    assert set(table("organisation-type")) == ORG_TYPES == set(codes.HL7_ORGANIZATION_TYPE)
    assert table("decision-maker") == common["decision_maker"]["enum"]
    assert table("age-band") == common["age_band"]["enum"]
    assert table("consent-form") == common["consent"]["properties"]["form"]["enum"]
    assert list(codes.GENDER) == common["sex"]["enum"]
    assert set(ROLES) <= set(table("gateway-role"))
    assert set(codes.PRIORITY) == set(codes.URGENCY_NOTE) == set(common["urgency"]["enum"])


def test_every_audit_event_type_the_gateway_writes_has_a_code() -> None:
    # The store refuses undeclared event types (tests/test_audit_events.py), so the
    # declaration is what the gateway can write: one code per declared type, no other.
    from gateway.audit.events import EVENTS

    table = codes.CODE_SYSTEMS["audit-event-type"][2]
    assert list(table) == list(EVENTS)
    assert all(table[name] == event.meaning for name, event in EVENTS.items())


# --- AuditEvent ------------------------------------------------------------------------------

MESSAGE_ID = "5b0e2c1a-7d4f-4e8a-9c3b-2f1d0e6a8b7c"
CASE = "ne-ng-q3v7k2m4x8p1c6r5t9w2y4zb"
AT = datetime(2026, 5, 3, 9, 31, 12, tzinfo=timezone.utc)


def _record(seq: int, event_type: str, actor: str, detail: dict[str, Any], *, about_message: bool = True) -> AuditRecord:
    # Shaped as gateway.service writes them (detail: sorted-key JSON of codes and agency ids).
    return AuditRecord(seq=seq, at=AT + timedelta(seconds=seq), event_type=event_type, actor=actor,
                       case_ref=CASE if about_message else None, message_id=MESSAGE_ID if about_message else None,
                       detail_json=json.dumps(detail, sort_keys=True), entry_hash=bytes(32))


AUDIT_RECORDS = [
    _record(1, "message.created", "demo.caseworker.ne-anltp-tim", {"type": "referral.request", "recipient": "NG-NAPTIP"}),
    _record(2, "message.sent", "system", {"attempts": 1}),
    _record(3, "message.status", "system", {"of": MESSAGE_ID, "status": "read"}),
    _record(4, "message.read", "demo.caseworker.ng-naptip", {"purpose": "casework", "role": "caseworker"}),
    _record(5, "message.quarantined", "system", {"reason": "schema_invalid", "sender": "NE-ANLTP-TIM"}),
    _record(6, "auth.failed", "anonymous", {"method": "GET", "path": "/inbox", "reason": "missing"}, about_message=False),
    _record(7, "auth.forbidden", "demo.auditor.ne-anltp-tim",
            {"method": "GET", "path": "/inbox/{message_id}", "permission": "inbox.read", "role": "auditor"},
            about_message=False),
    _record(8, "consent.withdrawn", "system", {}),  # a future event type: exported without a display
]


@pytest.mark.parametrize("record", AUDIT_RECORDS, ids=lambda r: r.event_type)
def test_audit_event_mirrors_the_entry(record: AuditRecord) -> None:
    event = audit_event(record, observer="NE-ANLTP-TIM")
    text = event.model_dump_json()
    assert AuditEvent.model_validate_json(text).model_dump_json() == text
    data = json.loads(text)
    assert data["recorded"] == record.at.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert data["subtype"][0]["code"] == record.event_type
    assert data["subtype"][0]["system"] == codes.system("audit-event-type")
    assert data["type"]["code"] == codes.AUDIT_CATEGORY.get(record.event_type.split(".")[0], "other")
    assert data["action"] in AUDIT_ACTION_VS and data["outcome"] in AUDIT_OUTCOME_VS
    (agent,) = data["agent"]
    assert agent["who"]["identifier"] == {"system": codes.GATEWAY_USER_SYSTEM, "value": record.actor}
    assert agent["requestor"] is (record.actor != "system")
    detail = json.loads(record.detail_json)
    expected_role = {"system": "system", "anonymous": "none"}.get(record.actor, detail.get("role"))
    assert [r["coding"][0]["code"] for r in agent.get("role", [])] == ([expected_role] if expected_role else [])
    assert data["source"]["observer"]["identifier"]["value"] == "NE-ANLTP-TIM"
    whats = [e["what"]["identifier"] for e in data.get("entity", []) if "what" in e]
    expected = []
    if record.message_id:
        expected.append({"system": "urn:ietf:rfc:3986", "value": f"urn:uuid:{record.message_id}"})
    if record.case_ref:
        expected.append({"system": codes.CASE_PSEUDONYM_SYSTEM, "value": record.case_ref})
    assert whats == expected
    details = {d["type"]: d["valueString"] for e in data.get("entity", []) for d in e.get("detail", [])}
    assert details == {k: v if isinstance(v, str) else json.dumps(v) for k, v in detail.items()}


def test_audit_events_carry_no_payload_text() -> None:
    personal = set()
    for example in REQUEST_EXAMPLES:
        payload = load(example)
        person = payload["person"]
        personal |= strings([person.get(k) for k in ("names", "place_of_origin", "family_contacts", "identity_documents")])
        personal |= strings(payload.get("narrative"))
    personal = {s for s in personal if len(s) >= 3 and not re.fullmatch(r"[a-z_]+|\d{4}-\d{2}-\d{2}", s)}
    assert {"Amaka", "Testfixture", "Hadiza", "Benin City"} <= personal
    for record in AUDIT_RECORDS:
        text = audit_event(record).model_dump_json()
        assert not [s for s in personal if s in text], record.event_type


def test_audit_event_ids_are_scoped_by_observer_and_sequence() -> None:
    record = AUDIT_RECORDS[0]
    assert audit_event(record, observer="NE-ANLTP-TIM").id == audit_event(record, observer="NE-ANLTP-TIM").id
    assert audit_event(record, observer="NE-ANLTP-TIM").id != audit_event(record, observer="NG-NAPTIP").id
    assert audit_event(record).source.observer.display == "referral gateway"


@pytest.mark.parametrize("event_type", ["Message Read", "message.read by Amaka", "", "message..read"])
def test_audit_event_type_must_be_a_code(event_type: str) -> None:
    record = AuditRecord(seq=9, at=AT, event_type=event_type, actor="system", case_ref=None, message_id=None,
                         detail_json="{}", entry_hash=None)
    with pytest.raises(AuditExportError) as raised:
        audit_event(record)
    assert "Amaka" not in str(raised.value)


def test_audit_time_must_be_aware() -> None:
    record = AuditRecord(seq=9, at=datetime(2026, 5, 3, 9, 0), event_type="message.sent", actor="system",
                         case_ref=None, message_id=None, detail_json="{}", entry_hash=None)
    with pytest.raises(ValueError, match="timezone"):
        audit_event(record)


# --- property: any purpose subset of the full example ----------------------------------------

FULL = schema.load_example("referral.request", "all_purposes")


def _cut_to(purposes: list[str], extra_consented: list[str]) -> dict[str, Any]:
    """The full example with only the fields these purposes allow (as an adapter would drop them)."""
    payload = copy.deepcopy(FULL)
    payload["purposes"] = purposes
    payload["consent"]["purposes"] = purposes + [p for p in extra_consented if p not in purposes]
    for dotted in schema.disallowed_person_fields(purposes):
        *parents, last = dotted.split(".")
        node = payload
        for part in parents:
            node = node[part]
        node.pop(last, None)
    if set(payload["person"]["age"]) == {"minor"}:
        payload["person"]["age"]["band"] = "24-26"  # age needs years, date_of_birth or band
    return payload


@settings(max_examples=scaled(60), deadline=None)
@given(
    purposes=st.lists(st.sampled_from(schema.PURPOSES_BY_VERSION["1"]), min_size=1, unique=True),
    extra=st.lists(st.sampled_from(schema.PURPOSES_BY_VERSION["1"]), unique=True),
    status=st.sampled_from(sorted(EXPECTED_TASK_STATUS)),
)
def test_any_purpose_subset_exports_minimal_and_valid(
    directory: Directory, purposes: list[str], extra: list[str], status: str
) -> None:
    payload = _cut_to(purposes, extra)
    schema.validate_payload("referral.request", payload)
    header = header_for("referral.request.all_purposes")
    bundle = referral_bundle(header, payload, directory, status=status)
    data = json.loads(bundle.model_dump_json())
    patient = one(data, "Patient")
    names_allowed = bool({"family_tracing", "assisted_return"} & set(purposes))
    assert ("name" in patient) is names_allowed and ("birthDate" in patient) is names_allowed
    if not names_allowed:
        assert "Hadiza" not in bundle.model_dump_json()
    assert [c["coding"][0]["code"] for c in one(data, "ServiceRequest")["category"]] == purposes
    assert [p["code"] for p in one(data, "Consent")["provision"]["purpose"]] == payload["consent"]["purposes"]
    assert one(data, "Task")["status"] == EXPECTED_TASK_STATUS[status]


# --- schema version 2 payloads ------------------------------------------------------------------

V2_REQUESTS = [n for n in schema.example_names("2") if schema.example_message_type(n) == "referral.request"]


def _v2(name: str) -> dict[str, Any]:
    return schema.load_example("referral.request", name[len("referral.request") + 1:] or None, "2")


@pytest.mark.parametrize("name", V2_REQUESTS)
def test_v2_requests_export_as_valid_bundles(directory: Directory, name: str) -> None:
    payload = _v2(name)
    header = dataclasses.replace(header_for("referral.request"), schema="2")
    data = json.loads(referral_bundle(header, payload, directory).model_dump_json())
    assert [c["coding"][0]["code"] for c in one(data, "ServiceRequest")["category"]] == payload["purposes"]
    provision = one(data, "Consent")["provision"]
    # Scoped consent: nothing is permitted but what each named agency was granted.
    assert provision["type"] == "deny"
    granted = [([a["reference"]["identifier"]["value"] for a in p["actor"]], [c["code"] for c in p["purpose"]])
               for p in provision["provision"]]
    assert granted == [([r["agency"]], r["purposes"]) for r in payload["consent"]["recipients"]]
    patient = one(data, "Patient")
    names_allowed = "person.names" in schema.allowed_person_fields(payload["purposes"], "2")
    assert ("name" in patient) is (names_allowed and "names" in payload["person"])
    assert "narrative" not in json.dumps(data) and "Synthetic test narrative" not in json.dumps(data)


def test_v2_languages_export_as_bcp47_or_by_name(directory: Directory) -> None:
    payload = _v2("referral.request.interpreter_uncoded_language")
    header = dataclasses.replace(header_for("referral.request"), schema="2")
    data = json.loads(referral_bundle(header, payload, directory).model_dump_json())
    languages = [c["language"] for c in one(data, "Patient")["communication"]]
    assert languages == [{"text": "Dogon (Tommo So)"}, {"coding": [{"system": codes.LANGUAGE_SYSTEM, "code": "bm"}]}]
