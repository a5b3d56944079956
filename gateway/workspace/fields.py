"""The shared schema as people see it: field labels, payloads shown as labelled rows, and forms
generated from a message type's schema (its fields, enumerations and nesting).

Everything is read from ``schemas/v<version>/`` (``$ref`` to ``common.schema.json``
resolved), so a field or code added to the schema appears in the pages without a template
change; its label needs an entry in :data:`FIELD_LABELS` (tests/test_workspace_pages.py
checks every field of the case message types has one).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from functools import cache
from typing import Any, Mapping

from babel import Locale
from babel.dates import format_date, format_datetime

from gateway.code_lists import COUNTRY_LISTS
from gateway.code_lists import label as code_list_label
from gateway.i18n import Message, msg, translate
from gateway.languages import language_name, to_v1_code
from gateway.schema import load_schema, version_dir

#: Field name → label (the same name means the same thing wherever it appears).
FIELD_LABELS: dict[str, Message] = {
    "accepted_purposes": msg("Accepted purposes"),
    "access_needs": msg("Access needs"),
    "accompanying_children": msg("Accompanying children"),
    "acts": msg("Acts"),
    "admin1": msg("Region or state"),
    "admin2": msg("District"),
    "age": msg("Age"),
    "age_band": msg("Age band"),
    "agency": msg("Agency"),
    "aliases": msg("Other names"),
    "applied_at": msg("Applied at"),
    "arrival": msg("Arrival"),
    "arrival_country": msg("Country of arrival"),
    "arrived_at": msg("Arrived at"),
    "assessed_by": msg("Assessed by"),
    "assessed_on": msg("Assessed on"),
    "authority": msg("Authority"),
    "authority_country": msg("Country of the authority"),
    "band": msg("Band"),
    "best_interests": msg("Best-interests determination"),
    "best_interests_determination": msg("Best-interests determination"),
    "best_interests_determination_on": msg("Best-interests determination on"),
    "blocked_reasons": msg("Why the return is blocked"),
    "care_status": msg("Care status"),
    "caregiver_assessment": msg("Caregiver assessment"),
    "case_key_destroyed": msg("Case key destroyed"),
    "case_status": msg("Case status"),
    "child_protection": msg("Child protection"),
    "closed_on": msg("Closed on"),
    "code": msg("Code"),
    "comment": msg("Comment"),
    "conditions": msg("Conditions"),
    "consent": msg("Consent"),
    "cooperation_decision": msg("Decision on cooperation"),
    "countries": msg("Countries"),
    "country": msg("Country"),
    "criminal_justice": msg("Criminal justice"),
    "date_of_birth": msg("Date of birth"),
    "decided_at": msg("Decided at"),
    "decided_by": msg("Decided by"),
    "decided_on": msg("Decided on"),
    "decision": msg("Decision"),
    "decision_maker": msg("Who decided"),
    "decline_reason": msg("Reason for declining"),
    "departure": msg("Departure"),
    "disability": msg("Disability"),
    "documents": msg("Documents"),
    "entry_point": msg("Entry point"),
    "erasure_requested": msg("Erasure requested"),
    "escort": msg("Escort"),
    "escort_agency": msg("Escort agency"),
    "escort_role": msg("Escorted by"),
    "escorted": msg("Escorted"),
    "estimated": msg("Estimated"),
    "expected_by": msg("Expected by"),
    "expires_at": msg("Expires at"),
    "expires_on": msg("Expires on"),
    "explained_in": msg("Explained in"),
    "exploitation": msg("Exploitation"),
    "family": msg("Family name"),
    "family_contacts": msg("Family contacts"),
    "family_involvement_suspected": msg("Family involvement suspected"),
    "family_location": msg("Where the family lives"),
    "fit_to_travel": msg("Fit to travel"),
    "followed_up_on": msg("Followed up on"),
    "form": msg("Form"),
    "given": msg("Given name"),
    "given_at": msg("Given at"),
    "guardian": msg("Guardian"),
    "held_by_person": msg("Held by the person"),
    "hold": msg("Hold by an authority"),
    "identification": msg("Identification"),
    "identified_by": msg("Identified by"),
    "identified_on": msg("Identified on"),
    "identity_documents": msg("Identity documents"),
    "information_needed": msg("Information needed"),
    "intended": msg("Intended, not yet occurred"),
    "interpreter": msg("Interpreter"),
    "issuing_country": msg("Issuing country"),
    "labour_sectors": msg("Labour sectors"),
    "language": msg("Language"),
    "languages": msg("Languages"),
    "last_known_place": msg("Last known place"),
    "lead_agency": msg("Lead agency"),
    "locality": msg("Town or village"),
    "means": msg("Means"),
    "medical_category": msg("Medical category"),
    "medical_urgency": msg("Medical urgency"),
    "messages_made_unreadable": msg("Messages made unreadable"),
    "method": msg("Method"),
    "methods_of_control": msg("Methods of control"),
    "middle": msg("Middle name"),
    "minor": msg("Minor"),
    "name": msg("Name"),
    "names": msg("Names"),
    "narrative": msg("Account"),
    "nationality": msg("Nationality"),
    "needed": msg("Needed"),
    "needs": msg("Needs"),
    "needs_escort": msg("Needs an escort"),
    "needs_on_arrival": msg("Needs on arrival"),
    "needs_outstanding": msg("Needs still to meet"),
    "next_follow_up_on": msg("Next follow-up on"),
    "number": msg("Number"),
    "organisation_type": msg("Type of organisation"),
    "outcome": msg("Outcome"),
    "person": msg("Person"),
    "phone": msg("Phone"),
    "place_of_origin": msg("Place of origin"),
    "planned_on": msg("Planned on"),
    "pregnant": msg("Pregnant"),
    "protection_measures_requested": msg("Protection measures requested"),
    "purposes": msg("Purposes"),
    "reason": msg("Reason"),
    "received_by": msg("Received by"),
    "receiving_agency": msg("Receiving agency"),
    "reception": msg("Reception"),
    "recipient_agencies": msg("Recipient agencies"),
    "recipient_countries": msg("Recipient countries"),
    "recipients": msg("Recipients"),
    "recommendation": msg("Recommendation"),
    "referral_source": msg("Referral source"),
    "referred_to": msg("Referred to"),
    "reflection_period_until": msg("Reflection period until"),
    "reintegration_plan": msg("Reintegration plan"),
    "reintegration_progress": msg("Reintegration progress"),
    "relationship": msg("Relationship"),
    "relatives_found": msg("Relatives found"),
    "request_message_id": msg("Request answered"),
    "request_message_ids": msg("Requests concerned"),
    "return_decision": msg("Decision to return"),
    "return_plan_message_id": msg("Return plan"),
    "review_on": msg("Review on"),
    "risk_factors": msg("Risk factors"),
    "risk_level": msg("Risk level"),
    "risk_of_re_trafficking": msg("Risk of re-trafficking"),
    "role": msg("Role"),
    "safety_concerns": msg("Safety concerns"),
    "schema_version": msg("Schema version"),
    "scope": msg("Scope"),
    "services": msg("Services"),
    "services_received": msg("Services received"),
    "sex": msg("Sex"),
    "since": msg("Since"),
    "status": msg("Status"),
    "status_on": msg("Status on"),
    "summary": msg("Summary"),
    "traced_on": msg("Traced on"),
    "transport_mode": msg("Transport"),
    "travel_document": msg("Travel document"),
    "type": msg("Type"),
    "urgency": msg("Urgency"),
    "valid_until": msg("Valid until"),
    "willing_to_receive": msg("Willing to receive the person"),
    "withdrawal_message_id": msg("Withdrawal"),
    "withdrawn_at": msg("Withdrawn at"),
    "years": msg("Years"),
}

YES, NO = msg("Yes"), msg("No")

#: Message types as people name them.
MESSAGE_TYPE_LABELS: dict[str, Message] = {
    "referral.request": msg("Referral"),
    "referral.response": msg("Answer to a referral"),
    "safety_assessment.result": msg("Safety assessment result"),
    "family_tracing.result": msg("Family tracing result"),
    "return.plan": msg("Return plan"),
    "return.arrival": msg("Arrival after return"),
    "case.followup": msg("Follow-up report"),
    "case.closure": msg("Case closure"),
    "consent.withdrawal": msg("Consent withdrawal"),
    "consent.withdrawal.ack": msg("Withdrawal acknowledgement"),
    "receipt": msg("Receipt"),
    "audit.checkpoint": msg("Audit checkpoint"),
}


def message_type_label(message_type: str, lang: str) -> str:
    """A message type's name in ``lang`` (the type itself if it has none)."""
    return _label(MESSAGE_TYPE_LABELS, message_type, lang)


#: Message statuses as people name them: a received message's (the inbox: ``IncomingStatus``
#: of gateway/store/base.py, plus ``erased``) and a sent one's (the trail: ``OutgoingStatus``).
#: One table, so the inbox, read, sent and trail pages say the same thing the same way
#: (``read`` is the same word on both sides). French agrees with "orientation" (feminine).
STATUS_LABELS: dict[str, Message] = {
    "received": msg("New"),
    "read": msg("Read"),
    "responded": msg("Answered"),
    "erased": msg("Erased"),
    "queued": msg("Queued"),
    "sent": msg("Sent"),
    "delivered": msg("Delivered"),
    "accepted": msg("Accepted"),
    "declined": msg("Declined"),
    "more_info_requested": msg("More information requested"),
    "failed": msg("Failed"),
}


def status_label(status: str, lang: str) -> str:
    """A message status in ``lang`` (the code itself if it has no label)."""
    return _label(STATUS_LABELS, status, lang)


def _label(table: dict[str, Message], code: str, lang: str) -> str:
    text = table.get(code)
    return translate(text, lang) if text is not None else code


def moment_text(moment: datetime, lang: str) -> str:
    """A time as every page shows it: medium length, in ``lang``, in UTC (said so)."""
    return format_datetime(moment.astimezone(timezone.utc), "medium", tzinfo=timezone.utc, locale=lang) + " UTC"


def date_text(value: str, kind: str, lang: str) -> str:
    """A schema date (``format: date``) or date-time (``date-time``, UTC) in ``lang``; the value
    itself if it does not parse."""
    try:
        if kind == "date":
            return format_date(date.fromisoformat(value), "medium", locale=lang)
        return moment_text(datetime.fromisoformat(value.replace("Z", "+00:00")), lang)
    except ValueError:
        return value


def field_label(name: str | int, lang: str) -> str:
    """The label of a field (a list position as "1", "2", ...)."""
    if isinstance(name, int):
        return str(name + 1)
    text = FIELD_LABELS.get(name)
    return translate(text, lang) if text is not None else name.replace("_", " ").capitalize()


@cache
def _common(version: str) -> dict[str, Any]:
    return json.loads((version_dir(version) / "common.schema.json").read_text(encoding="utf-8"))


@dataclass(frozen=True)
class Node:
    """A schema node with its ``$ref`` resolved, and the code list name its enumeration has."""

    schema: Mapping[str, Any]
    list_name: str | None  # set when the node (or its items) is an enumeration
    base: tuple[str, ...]  # where it is defined (code list naming, gateway/code_lists.py)
    def_name: str | None = None  # the definition it comes from, if any
    doc: Mapping[str, Any] | None = None  # the document its local "#/$defs/..." refs point into


def resolve(schema: Mapping[str, Any], base: tuple[str, ...], version: str,
            doc: Mapping[str, Any] | None = None) -> Node:
    """Follow ``$ref`` (to common.schema.json, or to the same document's ``$defs``) and merge
    the referring node's own keywords."""
    own = dict(schema)
    def_name = None
    has_enum = "enum" in own
    while "$ref" in own:
        ref = own.pop("$ref")
        file, _, pointer = ref.partition("#")
        name = pointer.rsplit("/", 1)[-1]
        if file:  # another document: the shared definitions
            doc = _common(version)
        target = (doc or _common(version))["$defs"][name]
        own = {**target, **own}
        if def_name is None:
            def_name = name
        if not has_enum:
            base = (name,)
    list_name = ".".join(base) if "enum" in own else None
    return Node(own, list_name, base, def_name, doc)


def child(node: Node, key: str, version: str) -> Node | None:
    """The node of property ``key`` of an object node (None if the schema has no such property)."""
    sub = node.schema.get("properties", {}).get(key)
    return None if sub is None else resolve(sub, (*node.base, key), version, node.doc)


def items(node: Node, version: str) -> Node:
    """The node of an array's items (named like the array: gateway/code_lists.py)."""
    return resolve(node.schema.get("items", {}), node.base, version, node.doc)


def message_node(message_type: str, version: str) -> Node:
    """The root node of a message type's payload schema."""
    document = load_schema(message_type, version)
    return Node(document, None, (message_type,), None, document)


# --- showing a payload -------------------------------------------------------------------


@dataclass
class Row:
    """One labelled field of a payload: a value, nested rows, or a list of nested row groups."""

    name: str
    label: str
    value: str | None = None
    rows: list["Row"] = field(default_factory=list)
    groups: list[list["Row"]] = field(default_factory=list)


def code_text(node: Node, value: Any, lang: str) -> str:
    """A code's label in ``lang`` (countries and languages from CLDR), else the value itself."""
    if isinstance(value, bool):
        return translate(YES if value else NO, lang)
    if not isinstance(value, str):
        return json.dumps(value, ensure_ascii=False) if isinstance(value, (dict, list)) else str(value)
    if node.schema.get("format") in ("date", "date-time"):
        return date_text(value, node.schema["format"], lang)
    if node.def_name in ("language", "language_code") or (node.list_name is None and node.def_name == "iso639_3"):
        return language_label(value, lang)
    if node.list_name is not None:
        if node.list_name in COUNTRY_LISTS:
            return code_list_label("country_code", value, lang) or value
        return code_list_label(node.list_name, value, lang) or value
    return value


def language_label(code: Any, lang: str) -> str:
    """A language's name in ``lang`` (CLDR through its ISO 639-1 code where there is one)."""
    if isinstance(code, dict):  # an uncoded language carries its name
        return str(code.get("name") or code.get("code") or "")
    names = Locale.parse(lang).languages
    return names.get(to_v1_code(code)) or names.get(code) or language_name(code) or str(code)


def describe(payload: Mapping[str, Any], message_type: str, version: str, lang: str) -> list[Row]:
    """The payload as labelled rows, in schema order, codes shown as labels."""
    return _rows(payload, message_node(message_type, version), version, lang)


def _rows(obj: Mapping[str, Any], node: Node, version: str, lang: str) -> list[Row]:
    order = list(node.schema.get("properties", {}))
    keys = sorted(obj, key=lambda k: order.index(k) if k in order else len(order))
    out = []
    for key in keys:
        if key == "schema_version":
            continue
        sub = child(node, key, version) or Node({}, None, (*node.base, key))
        out.append(_row(key, obj[key], sub, version, lang))
    return out


def _row(key: str, value: Any, node: Node, version: str, lang: str) -> Row:
    row = Row(key, field_label(key, lang))
    if isinstance(value, Mapping):
        row.rows = _rows(value, node, version, lang)
    elif isinstance(value, list):
        item = items(node, version)
        if all(isinstance(v, Mapping) for v in value) and value:
            row.groups = [_rows(v, item, version, lang) for v in value]
        else:
            if node.def_name in ("languages",) or item.def_name in ("language", "language_code"):
                row.value = ", ".join(language_label(v, lang) for v in value)
            else:
                row.value = ", ".join(code_text(item, v, lang) for v in value)
    else:
        row.value = code_text(node, value, lang)
    return row


# --- what leaves: one row per value -------------------------------------------------------

#: Between the labels of a nested field ("Personne › Noms › Prénom").
PATH_SEPARATOR = " › "


@dataclass(frozen=True)
class Leaf:
    """One value of a payload as the compose preview lists it."""

    path: str  # the shared field: person.family_contacts[0].names.given
    label: str  # its labels from the root: Personne › Contacts familiaux 1 › Noms › Prénom
    text: str  # the value as people read it (a code's label, a date in the reader's language)
    raw: str  # the value as it is sent, when it reads differently ("" otherwise)


def leaves(payload: Mapping[str, Any], message_type: str, version: str, lang: str) -> list[Leaf]:
    """Every value of the payload, in schema order, labelled as on the read page."""
    out: list[Leaf] = []
    _leaves(payload, message_node(message_type, version), version, lang, "", (), out)
    return out


def _leaves(value: Any, node: Node, version: str, lang: str, path: str, labels: tuple[str, ...],
            out: list[Leaf]) -> None:
    if isinstance(value, Mapping):
        order = list(node.schema.get("properties", {}))
        for key in sorted(value, key=lambda k: order.index(k) if k in order else len(order)):
            sub = child(node, key, version) or Node({}, None, (*node.base, key))
            _leaves(value[key], sub, version, lang, f"{path}.{key}" if path else key,
                    (*labels, field_label(key, lang)), out)
    elif isinstance(value, list):
        item = items(node, version)
        for i, one in enumerate(value):
            # A list position goes with the list's own label: "Contacts familiaux 2".
            numbered = (*labels[:-1], f"{labels[-1]} {i + 1}") if labels else (str(i + 1),)
            _leaves(one, item, version, lang, f"{path}[{i}]", numbered, out)
    else:
        text = code_text(node, value, lang)
        raw = value if isinstance(value, str) else json.dumps(value)
        out.append(Leaf(path, PATH_SEPARATOR.join(labels), text, "" if raw == text else raw))
