"""Export a ``referral.request`` as a FHIR R4B ``Bundle`` of type ``collection``.

Pure: no I/O; the caller passes the opened header and payload, the verified directory and
the outbox status. Every resource is built as a plain dict and parsed once by its
fhir.resources model, so a wrong element name or type fails here, not at the partner.

Why ``collection`` and not ``transaction``: the export is a snapshot handed to another
system, not instructions for a FHIR server. A transaction would tell the receiver to
*create* a Patient and two Organizations, i.e. duplicate people and agencies on every
referral; with a collection the importer matches Organizations by agency id and decides
itself what to store. References between entries are ``urn:uuid:`` fullUrls, which
resolve inside any Bundle type.

Minimal data: the Patient carries sex, age, nationality and languages (always allowed) and
names and date of birth only when the request's purposes allow them -- the schema already
guarantees that, and the export checks ``allowed_person_fields`` again rather than trust
its input. Everything else in the payload is deliberately left out (see docs/fhir.md).

Payloads of schema version 1 and 2 are exported alike; a v2 consent, scoped per recipient
agency, becomes a deny-by-default provision with one permit per agency and its purposes.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.consent import Consent
from fhir.resources.R4B.organization import Organization
from fhir.resources.R4B.patient import Patient
from fhir.resources.R4B.resource import Resource
from fhir.resources.R4B.servicerequest import ServiceRequest
from fhir.resources.R4B.task import Task

from gateway.clock import parse_ts
from gateway.directory import Agency, Directory
from gateway.envelope import Header
from gateway.languages import language_name, to_v1_code
from gateway.schema import allowed_person_fields, payload_version, validate_payload

from adapters.errors import FhirExportError
from adapters.fhir.audit import audit_event  # noqa: F401  (re-exported: one import for callers)
from adapters.fhir.codes import (
    AGENCY_ID_SYSTEM,
    BASE,
    CASE_PSEUDONYM_SYSTEM,
    CONSENT_POLICY_URI,
    COUNTRY_SYSTEM,
    EXT_AGE,
    EXT_CONSENT_EXPLAINED_IN,
    EXT_CONSENT_FORM,
    EXT_DECISION_MAKER,
    GENDER,
    HL7_CONSENT_SCOPE,
    HL7_ORG_TYPE,
    HL7_ORGANIZATION_TYPE,
    HL7_PARTICIPATION_TYPE,
    HL7_ROLE_CODE,
    HL7_TASK_CODE,
    LANGUAGE_SYSTEM,
    LOINC,
    PATIENT_NATIONALITY,
    PRIORITY,
    TASK_STATUS,
    URGENCY_NOTE,
    URI_SYSTEM,
    coding,
    concept,
)

FHIR_RELEASE = "R4B"
MESSAGE_TYPE = "referral.request"
#: Namespace of the export's deterministic resource ids: exporting the same message twice
#: gives the same ids, so a re-import updates instead of duplicating.
ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, BASE)

Json = dict[str, Any]


def referral_bundle(header: Header, payload: dict[str, Any], directory: Directory, *, status: str = "queued") -> Bundle:
    """A FHIR R4B collection Bundle for one ``referral.request``.

    ``status`` is the sender-side outbox status (``gateway.store.base.OutgoingStatus``);
    it sets Task.status through :data:`~adapters.fhir.codes.TASK_STATUS`.
    Raises FhirExportError for another message type or an unknown status,
    SchemaInvalidError for an invalid payload, UnknownAgencyError for an agency the
    directory does not list.
    """
    if header.type != MESSAGE_TYPE:
        raise FhirExportError(f"header.type: only {MESSAGE_TYPE} is exported as a referral bundle, not {header.type!r}")
    task_status(status)  # fail before building anything
    validate_payload(MESSAGE_TYPE, payload)
    sender, recipient = directory.agency(header.sender), directory.agency(header.recipient)

    ids = {kind: resource_id(header.id, kind) for kind in ("ServiceRequest", "Task", "Patient", "Consent")}
    ref = {kind: urn(rid) for kind, rid in ids.items()}
    ref["sender"], ref["recipient"] = urn(agency_resource_id(sender.id)), urn(agency_resource_id(recipient.id))

    resources = [
        service_request(header, payload, ids["ServiceRequest"], ref),
        task(header, status, ids["Task"], ref),
        patient(payload, ids["Patient"]),
        consent(payload, ids["Consent"], ref, directory,
                in_bundle={sender.id: ref["sender"], recipient.id: ref["recipient"]}),
        organization(sender),
    ]
    if recipient.id != sender.id:
        resources.append(organization(recipient))
    return Bundle.model_validate({
        "resourceType": "Bundle",
        "id": resource_id(header.id, "Bundle"),
        "identifier": message_identifier(header.id),
        "type": "collection",
        "timestamp": header.created,
        "entry": [_entry(r) for r in resources],
    })


# --- small pure helpers ------------------------------------------------------------------------


def task_status(status: str) -> str:
    """FHIR Task.status for a gateway outgoing status (FhirExportError for an unknown one)."""
    try:
        return TASK_STATUS[status]
    except KeyError:
        raise FhirExportError(f"status: {status!r} is not an outgoing message status; "
                              f"expected one of {', '.join(TASK_STATUS)}") from None


def resource_id(message_id: str, kind: str) -> str:
    """Deterministic id of the ``kind`` resource exported for one message."""
    return str(uuid.uuid5(ID_NAMESPACE, f"message/{message_id}/{kind}"))


def agency_resource_id(agency_id: str) -> str:
    """Deterministic Organization id of an agency: the same in every bundle, so importers dedupe."""
    return str(uuid.uuid5(ID_NAMESPACE, f"agency/{agency_id}"))


def urn(rid: str) -> str:
    return f"urn:uuid:{rid}"


def _entry(resource: Resource) -> Json:
    """A Bundle entry: the resource under its ``urn:uuid:`` full URL."""
    if resource.id is None:  # cannot happen: every exported resource is built with its id
        raise FhirExportError("a bundle resource has no id")
    return {"fullUrl": urn(resource.id), "resource": resource}


def message_identifier(message_id: str) -> Json:
    return {"system": URI_SYSTEM, "value": f"urn:uuid:{message_id}"}


def case_identifier(case: str) -> Json:
    # The pseudonym is an identifier, never a name: it must not look like a person's name
    # to a receiving system, and it differs per country pair by design (gateway.pseudonym).
    return {"system": CASE_PSEUDONYM_SYSTEM, "value": case}


def agency_identifier(agency_id: str) -> Json:
    return {"system": AGENCY_ID_SYSTEM, "value": agency_id}


def _when(text: str) -> datetime:
    return parse_ts(text)


# --- resources --------------------------------------------------------------------------------


def service_request(header: Header, payload: dict[str, Any], rid: str, ref: dict[str, str]) -> ServiceRequest:
    """The referral itself: one ServiceRequest, one category per requested purpose."""
    urgency = payload.get("urgency")
    data: Json = {
        "resourceType": "ServiceRequest",
        "id": rid,
        "identifier": [message_identifier(header.id), case_identifier(header.case)],
        "status": "active",
        # The sender intends the service to happen and the consent authorises the disclosure;
        # that the recipient may still decline is the Task's business (ServiceRequest+Task
        # is FHIR's referral workflow pattern).
        "intent": "order",
        "category": [concept("purpose", p) for p in payload["purposes"]],
        "code": concept("message-type", MESSAGE_TYPE),
        "subject": {"reference": ref["Patient"]},
        "authoredOn": header.created,
        "requester": {"reference": ref["sender"]},
        "performer": [{"reference": ref["recipient"]}],
        "supportingInfo": [{"reference": ref["Consent"]}],
    }
    if urgency is not None:
        data["priority"] = PRIORITY[urgency]
        data["note"] = [{"text": URGENCY_NOTE[urgency]}]
    return ServiceRequest.model_validate(data)


def task(header: Header, status: str, rid: str, ref: dict[str, str]) -> Task:
    """Fulfilment of the referral at the recipient; the gateway status is the businessStatus."""
    return Task.model_validate({
        "resourceType": "Task",
        "id": rid,
        "identifier": [case_identifier(header.case)],
        "basedOn": [{"reference": ref["ServiceRequest"]}],
        "focus": {"reference": ref["ServiceRequest"]},
        "for": {"reference": ref["Patient"]},
        "status": task_status(status),
        "businessStatus": concept("message-status", status),
        "intent": "order",
        "code": {"coding": [{"system": HL7_TASK_CODE, "code": "fulfill", "display": "Fulfill the focal request"}]},
        "authoredOn": header.created,
        "requester": {"reference": ref["sender"]},
        "owner": {"reference": ref["recipient"]},
    })


def patient(payload: dict[str, Any], rid: str) -> Patient:
    """The person, reduced to what the purposes allow (and what the payload carries)."""
    person = payload["person"]
    allowed = allowed_person_fields(payload["purposes"], payload_version(payload))
    data: Json = {"resourceType": "Patient", "id": rid, "gender": GENDER[person["sex"]]}
    extensions: list[Json] = []
    if "nationality" in person:
        extensions.append({"url": PATIENT_NATIONALITY, "extension": [
            {"url": "code",
             "valueCodeableConcept": {"coding": [{"system": COUNTRY_SYSTEM, "code": person["nationality"]}]}},
        ]})
    age = person["age"]
    if "date_of_birth" in age and "person.age.date_of_birth" in allowed:
        data["birthDate"] = age["date_of_birth"]
    extensions.append(age_extension(age))
    data["extension"] = extensions
    if "names" in person and "person.names" in allowed:
        names = human_names(person["names"])
        if names:
            data["name"] = names
    if person.get("languages"):
        data["communication"] = [{"language": language_concept(lang)} for lang in person["languages"]]
    return Patient.model_validate(data)


def language_concept(language: Any) -> Json:
    """A language as BCP 47 (the shortest ISO 639 code: ``ha`` for v2 ``hau``); an uncoded one by its name."""
    if isinstance(language, dict):
        return {"text": language_name(language) or "uncoded language"}
    return {"coding": [{"system": LANGUAGE_SYSTEM, "code": to_v1_code(language)}]}


def age_extension(age: dict[str, Any]) -> Json:
    """Minor flag, exact age or band, estimated flag: Patient has no element for these.
    A date of birth is never repeated here (it goes to birthDate, when allowed)."""
    parts: list[Json] = [{"url": "minor", "valueBoolean": age["minor"]}]
    if "years" in age:
        parts.append({"url": "years", "valueAge": {
            "value": age["years"], "unit": "years", "system": "http://unitsofmeasure.org", "code": "a"}})
    if "band" in age:
        parts.append({"url": "band", "valueCoding": coding("age-band", age["band"])})
    if "estimated" in age:
        parts.append({"url": "estimated", "valueBoolean": age["estimated"]})
    return {"url": EXT_AGE, "extension": parts}


def human_names(names: dict[str, Any]) -> list[Json]:
    """Names as given; aliases as separate nickname entries. Nothing is composed or added."""
    out: list[Json] = []
    main: Json = {}
    given = [names[k] for k in ("given", "middle") if k in names]
    if given:
        main["given"] = given
    if "family" in names:
        main["family"] = names["family"]
    if main:
        out.append(main)
    out.extend({"use": "nickname", "text": alias} for alias in names.get("aliases", []))
    return out


#: Decision maker -> contained resources naming who decided. A guardian is a RelatedPerson
#: with no name (the payload has none); an official is a PractitionerRole with a role code.
_GUARDIAN = {"resourceType": "RelatedPerson", "id": "guardian",
             "relationship": [{"coding": [{"system": HL7_ROLE_CODE, "code": "GUARD", "display": "guardian"}]}]}
DECISION_MAKER_PARTIES: dict[str, tuple[str, ...]] = {
    "self": (),
    "parent_guardian": ("guardian",),
    "guardian_with_child_protection": ("guardian", "child_protection_service"),
    "judge_of_minors": ("judge_of_minors",),
    "appointed_guardian": ("guardian",),
}


def _party(kind: str, patient_ref: str) -> Json:
    if kind == "guardian":
        return dict(_GUARDIAN, patient={"reference": patient_ref})
    return {"resourceType": "PractitionerRole", "id": kind.replace("_", "-"), "code": [concept("consent-role", kind)]}


def consent(
    payload: dict[str, Any], rid: str, ref: dict[str, str], directory: Directory, *, in_bundle: dict[str, str]
) -> Consent:
    """The consent record that travels with the referral, as a privacy Consent."""
    record = payload["consent"]
    decision_maker = record["decision_maker"]
    parties = [_party(kind, ref["Patient"]) for kind in DECISION_MAKER_PARTIES[decision_maker]]
    performer = [{"reference": f"#{p['id']}"} for p in parties] or [{"reference": ref["Patient"]}]
    extensions: list[Json] = [{"url": EXT_DECISION_MAKER, "valueCoding": coding("decision-maker", decision_maker)}]
    if "form" in record:
        extensions.append({"url": EXT_CONSENT_FORM, "valueCoding": coding("consent-form", record["form"])})
    explained = record.get("explained_in")
    if isinstance(explained, str):
        extensions.append({"url": EXT_CONSENT_EXPLAINED_IN, "valueCode": to_v1_code(explained)})
    elif isinstance(explained, dict):  # an uncoded language (v2): ISO 639 "mis"
        extensions.append({"url": EXT_CONSENT_EXPLAINED_IN, "valueCode": "mis"})
    data: Json = {
        "resourceType": "Consent",
        "id": rid,
        "extension": extensions,
        "status": "active",
        "scope": {"coding": [{"system": HL7_CONSENT_SCOPE, "code": "patient-privacy", "display": "Privacy Consent"}]},
        "category": [{"coding": [{"system": LOINC, "code": "64292-6", "display": "Release of information consent"}]}],
        "patient": {"reference": ref["Patient"]},
        "dateTime": _when(record["given_at"]),
        "performer": performer,
        "organization": [{"reference": ref["sender"]}],
        "policy": [{"uri": CONSENT_POLICY_URI}],
        "provision": consent_provision(record, directory, in_bundle),
    }
    if parties:
        data["contained"] = parties
    return Consent.model_validate(data)


def consent_provision(record: dict[str, Any], directory: Directory, in_bundle: dict[str, str]) -> Json:
    """v1: one permit for every named recipient and purpose. v2 (``recipients``): deny by default,
    with a nested permit per recipient agency for the purposes granted to it."""
    period = {"start": _when(record["given_at"]), "end": _when(record["expires_at"])}
    if "recipients" not in record:
        return {"type": "permit", "period": period, "actor": consent_actors(record, directory, in_bundle),
                "purpose": [coding("purpose", p) for p in record["purposes"]]}
    return {"type": "deny", "period": period, "provision": [
        {"type": "permit", "actor": [_agency_actor(entry["agency"], directory, in_bundle)],
         "purpose": [coding("purpose", p) for p in entry["purposes"]]}
        for entry in record["recipients"]
    ]}


_RECIPIENT_ROLE = {"coding": [{"system": HL7_PARTICIPATION_TYPE, "code": "IRCP", "display": "information recipient"}]}


def consent_actors(record: dict[str, Any], directory: Directory, in_bundle: dict[str, str]) -> list[Json]:
    """Who may receive the data: each named agency, and each country as "any agency there".

    Never empty (the schema requires a country or an agency): a FHIR provision without an
    actor would permit every recipient. Agencies the directory does not list (yet) are still
    named by id; countries are referenced by their ISO 3166 code, so a consumer checks an
    Organization's address.country against them.
    """
    actors = [_agency_actor(agency_id, directory, in_bundle) for agency_id in record.get("recipient_agencies", [])]
    for country in record.get("recipient_countries", []):
        actors.append({"role": _RECIPIENT_ROLE, "reference": {
            "type": "Organization",
            "identifier": {"system": COUNTRY_SYSTEM, "value": country},
            "display": f"Any directory agency in {country}",
        }})
    return actors


def _agency_actor(agency_id: str, directory: Directory, in_bundle: dict[str, str]) -> Json:
    reference: Json = {"type": "Organization", "identifier": agency_identifier(agency_id)}
    if agency_id in in_bundle:
        reference["reference"] = in_bundle[agency_id]
    listed = directory.agencies.get(agency_id)
    if listed is not None:
        reference["display"] = listed.name
    return {"role": _RECIPIENT_ROLE, "reference": reference}


def organization(agency: Agency) -> Organization:
    """A directory agency: id, name, type (exact local code + broader HL7 code), country."""
    hl7_code, hl7_display = HL7_ORGANIZATION_TYPE[agency.org_type]
    return Organization.model_validate({
        "resourceType": "Organization",
        "id": agency_resource_id(agency.id),
        "identifier": [agency_identifier(agency.id)],
        "active": True,
        "type": [concept("organisation-type", agency.org_type),
                 {"coding": [{"system": HL7_ORG_TYPE, "code": hl7_code, "display": hl7_display}]}],
        "name": agency.name,
        "address": [{"country": agency.country}],
    })
