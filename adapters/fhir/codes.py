"""Code systems, identifier systems and mapping tables of the FHIR export (data, no logic).

Every local code the export emits is defined here, with its display, so that
:func:`code_system` can publish each table as a FHIR ``CodeSystem`` and the tests can check
that no coding uses an undefined code. The gateway's own vocabularies (purposes, sexes,
decision makers, organisation types) come from ``gateway.schema`` / ``gateway.directory``;
the tests fail if a table here falls out of step with them.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Mapping

from gateway.audit.events import EVENTS

BASE = "https://schemas.referral-gateway.example/fhir"

# --- identifier systems (NamingSystem-style URIs) --------------------------------------------

#: RFC 3986 URIs: a message id travels as ``urn:uuid:<id>`` (the FHIR convention for UUIDs).
URI_SYSTEM = "urn:ietf:rfc:3986"
AGENCY_ID_SYSTEM = f"{BASE}/sid/agency-id"
CASE_PSEUDONYM_SYSTEM = f"{BASE}/sid/case-pseudonym"
GATEWAY_USER_SYSTEM = f"{BASE}/sid/gateway-user"
COUNTRY_SYSTEM = "urn:iso:std:iso:3166"
LANGUAGE_SYSTEM = "urn:ietf:bcp:47"

# --- extensions --------------------------------------------------------------------------------

#: HL7 core extension (R4 core; the R5 extension pack keeps the same URL).
PATIENT_NATIONALITY = "http://hl7.org/fhir/StructureDefinition/patient-nationality"
EXT_AGE = f"{BASE}/StructureDefinition/age"
EXT_DECISION_MAKER = f"{BASE}/StructureDefinition/consent-decision-maker"
EXT_CONSENT_FORM = f"{BASE}/StructureDefinition/consent-form"
EXT_CONSENT_EXPLAINED_IN = f"{BASE}/StructureDefinition/consent-explained-in"

#: Where the consent rules are defined (a name, never fetched; see docs/schema.md).
CONSENT_POLICY_URI = "https://schemas.referral-gateway.example/v1/common.schema.json#/$defs/consent"

# --- external code systems -----------------------------------------------------------------

HL7_ORG_TYPE = "http://terminology.hl7.org/CodeSystem/organization-type"
HL7_ROLE_CODE = "http://terminology.hl7.org/CodeSystem/v3-RoleCode"
HL7_PARTICIPATION_TYPE = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
HL7_CONSENT_SCOPE = "http://terminology.hl7.org/CodeSystem/consentscope"
HL7_TASK_CODE = "http://hl7.org/fhir/CodeSystem/task-code"
HL7_SECURITY_SOURCE_TYPE = "http://terminology.hl7.org/CodeSystem/security-source-type"
HL7_AUDIT_ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
HL7_EXTRA_SECURITY_ROLE = "http://terminology.hl7.org/CodeSystem/extra-security-role-type"
LOINC = "http://loinc.org"

# --- local code systems: code -> display ---------------------------------------------------


def _cs(name: str) -> str:
    return f"{BASE}/CodeSystem/{name}"


def _table(rows: dict[str, str]) -> Mapping[str, str]:
    return MappingProxyType(rows)


CODE_SYSTEMS: Mapping[str, tuple[str, str, Mapping[str, str]]] = MappingProxyType({
    # key: (url, title, codes)
    "purpose": (_cs("purpose"), "Referral purpose", _table({
        "assistance": "Assistance",
        "safety_assessment": "Safety (risk) assessment",
        "family_tracing": "Family tracing",
        "assisted_return": "Assisted voluntary return",
        "reintegration_handover": "Reintegration handover",
        "criminal_justice_cooperation": "Cooperation with an investigation or prosecution",
        "international_protection": "Referral to international protection (asylum, UNHCR)",
    })),
    "message-type": (_cs("message-type"), "Gateway message type", _table({
        "referral.request": "Transnational referral request",
    })),
    "message-status": (_cs("message-status"), "Gateway status of an outgoing message", _table({
        "queued": "Queued in the sender's outbox",
        "sent": "Published to the broker",
        "failed": "Publishing given up",
        "delivered": "Delivered to the recipient gateway",
        "read": "Read by a caseworker of the recipient",
        "more_info_requested": "Recipient asked for more information",
        "accepted": "Accepted by the recipient",
        "declined": "Declined by the recipient",
    })),
    "organisation-type": (_cs("organisation-type"), "Organisation type (HTCDS org_Type)", _table({
        "ngo": "Non-governmental organisation",
        "law_enforcement": "Law enforcement",
        "health_service": "Health service",
        "central_government": "Central government",
        "local_government": "Local government",
        "immigration_service": "Immigration service",
        "legal_service": "Legal service",
        "international_organisation": "International organisation",
    })),
    "decision-maker": (_cs("decision-maker"), "Who gave consent", _table({
        "self": "The person",
        "parent_guardian": "Parent or guardian",
        "guardian_with_child_protection": "Guardian with the child protection service",
        "judge_of_minors": "Judge of minors",
        "appointed_guardian": "Guardian appointed for the child",
    })),
    "consent-role": (_cs("consent-role"), "Official role in a child's consent decision", _table({
        "child_protection_service": "Child protection service",
        "judge_of_minors": "Judge of minors",
    })),
    "age-band": (_cs("age-band"), "Age band (CTDC)", _table({
        "0-8": "0 to 8 years", "9-17": "9 to 17 years", "18-20": "18 to 20 years",
        "21-23": "21 to 23 years", "24-26": "24 to 26 years", "27-29": "27 to 29 years",
        "30-38": "30 to 38 years", "39-47": "39 to 47 years", "48+": "48 years or more",
        "unknown": "Unknown",
    })),
    "consent-form": (_cs("consent-form"), "Form in which consent was given", _table({
        "written": "Written",
        "oral_witnessed": "Oral, witnessed",
        "thumbprint": "Thumbprint",
    })),
    "audit-event-category": (_cs("audit-event-category"), "Gateway audit event category", _table({
        "message": "Message lifecycle",
        "receipt": "Receipts",
        "auth": "Authentication and authorisation",
        "other": "Other gateway event",
    })),
    # One row per declared event type (gateway/audit/events.py), its meaning as the display.
    "audit-event-type": (_cs("audit-event-type"), "Gateway audit event type",
                         _table({e.name: e.meaning for e in EVENTS.values()})),
    "gateway-role": (_cs("gateway-role"), "Role of a gateway actor", _table({
        "caseworker": "Caseworker",
        "supervisor": "Supervisor",
        "auditor": "Auditor",
        "admin": "Administrator",
        "system": "The gateway itself",
        "none": "Unauthenticated caller",
    })),
})


def system(key: str) -> str:
    """The URL of a local code system, by key (``purpose``, ``message-status``, ...)."""
    return CODE_SYSTEMS[key][0]


def coding(key: str, code: str) -> dict[str, str]:
    """A Coding from a local code system; KeyError for a code the table does not define."""
    url, _, codes = CODE_SYSTEMS[key]
    return {"system": url, "code": code, "display": codes[code]}


def concept(key: str, code: str) -> dict[str, list[dict[str, str]]]:
    """A CodeableConcept with one local Coding."""
    return {"coding": [coding(key, code)]}


# --- mapping tables ------------------------------------------------------------------------

#: Gateway outgoing status (gateway.store.base.OutgoingStatus) -> FHIR R4B Task.status.
#: The FHIR task state machine runs requested -> received -> accepted -> in-progress: "read"
#: means the recipient is still evaluating (received), not that work has started, and
#: in-progress before accepted would run the machine backwards. The exact gateway status
#: always travels in Task.businessStatus.
TASK_STATUS: Mapping[str, str] = MappingProxyType({
    "queued": "requested",
    "sent": "requested",
    "failed": "failed",
    "delivered": "received",
    "read": "received",
    "more_info_requested": "received",
    "accepted": "accepted",
    "declined": "rejected",
})

#: Payload urgency -> ServiceRequest.priority (routine | urgent | asap | stat).
PRIORITY: Mapping[str, str] = MappingProxyType({"routine": "routine", "urgent": "urgent", "emergency": "stat"})
URGENCY_NOTE: Mapping[str, str] = MappingProxyType({
    "routine": "Urgency: routine.",
    "urgent": "Urgency: urgent (act within days).",
    "emergency": "Urgency: emergency (act within 24 hours).",
})

#: Payload sex (HTCDS prs_Gender) -> Patient.gender; the codes coincide by design.
GENDER: Mapping[str, str] = MappingProxyType(
    {"female": "female", "male": "male", "other": "other", "unknown": "unknown"}
)

#: Directory org_type -> the closest HL7 organization-type code (a broader second type;
#: the exact code is always the local one).
HL7_ORGANIZATION_TYPE: Mapping[str, tuple[str, str]] = MappingProxyType({
    "ngo": ("cg", "Community Group"),
    "law_enforcement": ("govt", "Government"),
    "health_service": ("prov", "Healthcare Provider"),
    "central_government": ("govt", "Government"),
    "local_government": ("govt", "Government"),
    "immigration_service": ("govt", "Government"),
    "legal_service": ("other", "Other"),
    "international_organisation": ("other", "Other"),
})

#: Audit event type prefix -> audit-event-category (unknown prefixes: "other").
AUDIT_CATEGORY: Mapping[str, str] = MappingProxyType({"message": "message", "receipt": "receipt", "auth": "auth"})

#: AuditEvent.action (C create | R read | U update | D delete | E execute); default E.
AUDIT_ACTION: Mapping[str, str] = MappingProxyType({
    "message.created": "C",
    "message.received": "C",
    "message.read": "R",
    "message.status": "U",
})

#: AuditEvent.outcome (0 success | 4 minor failure | 8 serious failure | 12 major failure);
#: default 0. A refused request or a quarantined message is the gateway working as
#: intended on bad input (minor); giving up a publish loses a referral (serious).
AUDIT_OUTCOME: Mapping[str, str] = MappingProxyType({
    "auth.failed": "4",
    "auth.forbidden": "4",
    "message.quarantined": "4",
    "receipt.failed": "4",
    "message.failed": "8",
})


def code_system(key: str):  # -> fhir.resources.R4B.codesystem.CodeSystem
    """Publish one local table as a FHIR R4B ``CodeSystem`` resource (complete content)."""
    from fhir.resources.R4B.codesystem import CodeSystem

    url, title, codes = CODE_SYSTEMS[key]
    return CodeSystem.model_validate({
        "id": f"rgw-{key}",
        "url": url,
        "name": "".join(part.capitalize() for part in key.split("-")),
        "title": title,
        "status": "active",
        "content": "complete",
        "caseSensitive": True,
        "count": len(codes),
        "concept": [{"code": code, "display": display} for code, display in codes.items()],
    })
