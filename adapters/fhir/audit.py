"""Export one gateway audit entry as a FHIR R4B ``AuditEvent``.

Pure. The AuditEvent mirrors the entry and nothing else: event type, time, actor, the
message id and case pseudonym it is about, and the entry's detail members (reason codes,
agency ids, roles: the gateway never writes personal data into an audit entry, and this
export adds none -- it never looks at a payload).
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

from fhir.resources.R4B.auditevent import AuditEvent

from gateway.store.base import AuditRecord, require_aware

from adapters.errors import AuditExportError
from adapters.fhir.codes import (
    AGENCY_ID_SYSTEM,
    AUDIT_ACTION,
    AUDIT_CATEGORY,
    AUDIT_OUTCOME,
    BASE,
    CASE_PSEUDONYM_SYSTEM,
    CODE_SYSTEMS,
    GATEWAY_USER_SYSTEM,
    HL7_AUDIT_ENTITY_TYPE,
    HL7_EXTRA_SECURITY_ROLE,
    HL7_SECURITY_SOURCE_TYPE,
    URI_SYSTEM,
    coding,
    concept,
    system,
)

SYSTEM_ACTOR = "system"  # gateway.service.SYSTEM, not imported: the pure export must not load the service
ANONYMOUS_ACTOR = "anonymous"  # gateway.api.auth.ANONYMOUS
_ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, BASE)
#: Event types are dotted codes (``message.read``); anything else is refused, not exported.
_EVENT_CODE = re.compile(r"^[a-z][a-z0-9_]*(?:\.[a-z0-9_]+)*$")

_SYSTEM_OBJECT = {"system": HL7_AUDIT_ENTITY_TYPE, "code": "2", "display": "System Object"}
_OTHER_OBJECT = {"system": HL7_AUDIT_ENTITY_TYPE, "code": "4", "display": "Other"}


def audit_event(record: AuditRecord, *, observer: str | None = None) -> AuditEvent:
    """The FHIR R4B AuditEvent for one stored audit entry.

    ``observer`` is the agency id of the gateway that wrote the log (an AuditRecord does not
    carry it); it becomes AuditEvent.source.observer and scopes the resource id.
    """
    event_type = record.event_type
    if not isinstance(event_type, str) or not _EVENT_CODE.fullmatch(event_type):
        raise AuditExportError(f"audit entry {record.seq}: event_type is not a dotted lower-case code")
    detail = _detail(record)
    category = AUDIT_CATEGORY.get(event_type.split(".", 1)[0], "other")
    known = event_type in CODE_SYSTEMS["audit-event-type"][2]
    entities = [_detail_entity(detail)] if detail else []
    if record.message_id is not None:
        entities.insert(0, {"what": {"identifier": {"system": URI_SYSTEM, "value": f"urn:uuid:{record.message_id}"}},
                            "type": _SYSTEM_OBJECT, "description": "gateway message"})
    if record.case_ref is not None:
        entities.insert(1 if record.message_id is not None else 0,
                        {"what": {"identifier": {"system": CASE_PSEUDONYM_SYSTEM, "value": record.case_ref}},
                         "type": _SYSTEM_OBJECT, "description": "case pseudonym"})
    data: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "id": str(uuid.uuid5(_ID_NAMESPACE, f"audit/{observer or '-'}/{record.seq}")),
        "type": coding("audit-event-category", category),
        # A newer gateway may log event types this table does not know yet: keep the code,
        # without a display, rather than refuse to export the log.
        "subtype": [coding("audit-event-type", event_type) if known
                    else {"system": system("audit-event-type"), "code": event_type}],
        "action": AUDIT_ACTION.get(event_type, "E"),
        "recorded": require_aware("at", record.at),
        "outcome": AUDIT_OUTCOME.get(event_type, "0"),
        "agent": [_agent(record.actor, detail)],
        "source": _source(observer),
    }
    if entities:
        data["entity"] = entities
    return AuditEvent.model_validate(data)


def _detail(record: AuditRecord) -> dict[str, Any]:
    try:
        detail = json.loads(record.detail_json)
    except (TypeError, ValueError):
        raise AuditExportError(f"audit entry {record.seq}: detail_json is not JSON") from None
    if not isinstance(detail, dict):
        raise AuditExportError(f"audit entry {record.seq}: detail_json is not a JSON object")
    return detail


def _agent(actor: str, detail: dict[str, Any]) -> dict[str, Any]:
    is_system = actor == SYSTEM_ACTOR
    role: str | None
    if is_system:
        role = "system"
    elif actor == ANONYMOUS_ACTOR:
        role = "none"
    else:
        # Only message.read and auth.forbidden record the user's role; otherwise it is unknown.
        role = detail.get("role") if detail.get("role") in CODE_SYSTEMS["gateway-role"][2] else None
    agent: dict[str, Any] = {
        "type": {"coding": [{"system": HL7_EXTRA_SECURITY_ROLE,
                             "code": "dataprocessor" if is_system else "humanuser",
                             "display": "data processor" if is_system else "human user"}]},
        "who": {"identifier": {"system": GATEWAY_USER_SYSTEM, "value": actor}},
        "requestor": not is_system,
    }
    if role is not None:
        agent["role"] = [concept("gateway-role", role)]
    return agent


def _source(observer: str | None) -> dict[str, Any]:
    who: dict[str, Any] = {"display": "referral gateway"}
    if observer is not None:
        who = {"type": "Organization", "identifier": {"system": AGENCY_ID_SYSTEM, "value": observer},
               "display": f"referral gateway of {observer}"}
    return {"observer": who,
            "type": [{"system": HL7_SECURITY_SOURCE_TYPE, "code": "4", "display": "Application Server"}]}


def _detail_entity(detail: dict[str, Any]) -> dict[str, Any]:
    """The entry's detail members, verbatim (strings as is, other JSON values as JSON text)."""
    return {
        "type": _OTHER_OBJECT,
        "description": "audit entry detail",
        "detail": [
            {"type": key, "valueString": value if isinstance(value, str) else json.dumps(value, sort_keys=True)}
            for key, value in sorted(detail.items())
        ],
    }
