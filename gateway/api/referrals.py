"""``POST /referrals``: queue an outgoing message (a referral or a later message on a case).

The answer is 202 only once ``Gateway.submit`` returned, i.e. the sealed envelope is in
the durable outbox; publishing happens in the background. A ``local_case_id`` is turned
into the case pseudonym for the recipient's country here and goes no further: it is not
stored, logged, audited or echoed. With an ``Idempotency-Key`` header a retry gets the first
answer and the same message (gateway/api/idempotency.py).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

import adapters
from adapters.results import DroppedField
from adapters.registry import available_formats
from gateway.api.operation import (
    AGENCY_SCHEMA as _AGENCY, CASE_REF_SCHEMA as _CASE_REF, LOCATION_HEADER as _LOCATION,
    RETRY_HEADER as _RETRY, UUID_SCHEMA as _UUID, documented, error_content as _error, json_content as _json,
    json_request, schema_ref as _ref, versioned_payload,
)
from gateway.api.context import actor_of, gateway_of, settings_of
from gateway.api.errors import ApiError, invalid_request
from gateway.api.idempotency import Answer, idempotent
from gateway.api.bodies import payload_invalid, request_body
from gateway.api.parse import MAX_BODY_BYTES
from gateway.api.submission import leaving, shared_payload, submit as submit_outgoing
from gateway.api.roles import Permission, requires
from gateway.errors import GatewayError, Violation
from gateway.pseudonym import case_pseudonym
from gateway.schema import MESSAGE_TYPES, PURPOSES, SCHEMA_VERSIONS, load_example
from gateway.schema_versions import Dropped
from gateway.service import Gateway, derived_message_id
from gateway.settings import Settings
from gateway.store import MessageConflictError, OutboxRecord
from gateway.i18n import msg

routes = web.RouteTableDef()

#: Types a user may send through this endpoint. Receipts are the gateway's own, and a
#: referral.response answers a received request (POST /inbox/{id}/response).
#: Receipts, responses, withdrawals, their acknowledgements and checkpoints have their own
#: routes or are made by the gateway itself (a withdrawal must also stop queued referrals).
SUBMITTABLE_TYPES: tuple[str, ...] = tuple(t for t in MESSAGE_TYPES if t not in {
    "receipt", "referral.response", "consent.withdrawal", "consent.withdrawal.ack", "audit.checkpoint"})
DEFAULT_TYPE = "referral.request"
MAX_LOCAL_CASE_ID = 128
# Characters that are no text: controls, invisible formatting (bidi, zero-width), separators.
_NOT_TEXT = r"\x00-\x1f\x7f-\x9f\xad\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff"
_BLANK = r" \xa0\u1680\u2000-\u200a\u202f\u205f\u3000"
#: A local case id: not blank, no control or invisible formatting characters (the same id
#: must give the same pseudonym, and read as what it is). Also GET /messages?local_case_id=.
LOCAL_CASE_ID = re.compile(f"^[^{_NOT_TEXT}]*[^{_NOT_TEXT}{_BLANK}][^{_NOT_TEXT}]*$")
#: Violation rule of the one Submission rule the schema cannot state.
OWN_AGENCY_RULE = "own_agency"

@dataclass(frozen=True)
class Submission:
    """A parsed ``POST /referrals`` body: exactly one of ``case_ref`` and ``local_case_id``."""

    recipient: str
    message_type: str
    payload: dict[str, Any] | None = field(repr=False)
    case_ref: str | None = None
    local_case_id: str | None = field(default=None, repr=False)
    #: A referral in an agency's local format (``format`` + ``record``) instead of ``payload``.
    local_format: str | None = None
    record: dict[str, Any] | None = field(default=None, repr=False)
    purposes: list[str] | None = None


def parse_submission(body: dict[str, Any], *, own_agency: str) -> Submission:
    """The Submission of a body the published ``Submission`` schema accepted (its fields'
    shapes are that schema's); 422 for the rule it cannot state: the recipient is another agency."""
    if body["recipient"] == own_agency:
        raise invalid_request([Violation("$.recipient", OWN_AGENCY_RULE,
                                         msg("must be another agency than this gateway's own"))])
    return Submission(body["recipient"], body.get("message_type", DEFAULT_TYPE), body.get("payload"),
                      body.get("case_ref"), body.get("local_case_id"), body.get("format"), body.get("record"),
                      body.get("purposes"))

def case_ref_for(submission: Submission, gateway: Gateway, settings: Settings) -> str:
    """The case pseudonym to send: given, or derived from the local id for this country pair."""
    if submission.case_ref is not None:
        return submission.case_ref
    assert submission.local_case_id is not None
    ours = gateway.directory.agency(gateway.agency_id).country
    theirs = gateway.directory.agency(submission.recipient).country  # UnknownAgencyError → 422
    return case_pseudonym(settings.pseudonym_secret, submission.local_case_id, ours, theirs)


# --- OpenAPI: the operations of this module's routes (see gateway/api/operation.py) ---------

_SAMPLES = Path(adapters.__file__).resolve().parent / "niger" / "samples"


def _payload_by_type() -> list[dict[str, Any]]:
    """``payload`` must match the shared schema of ``message_type`` (default referral.request), in
    the version it declares (v2 with ``schema_version``, v1 without)."""
    rules: list[dict[str, Any]] = [{
        "if": {"not": {"required": ["message_type"]}},
        "then": {"properties": {"payload": versioned_payload(DEFAULT_TYPE)}},
    }]
    for message_type in SUBMITTABLE_TYPES:
        rules.append({
            "if": {"required": ["message_type"], "properties": {"message_type": {"const": message_type}}},
            "then": {"properties": {"payload": versioned_payload(message_type)}},
        })
    return rules


def _in_payload(violation: Violation) -> Violation:
    """A violation at ``$.payload…`` of the body as the payload's own (``$…``), as schema_invalid names it."""
    return Violation("$" + violation.path.removeprefix("$.payload"), violation.rule, violation.message)


def _submission_examples() -> dict[str, dict[str, Any]]:
    """Request examples of the document (tests/test_api_bodies.py sends each to the handler)."""
    examples = {
        "referral_by_local_case_id": {
            "summary": "A referral for a case of the agency's own case management system",
            "value": {"recipient": "NG-NAPTIP", "local_case_id": "NE-ZINDER-2026-0142",
                      "payload": load_example("referral.request")}},
        "referral_v2": {
            "summary": "A schema version 2 referral (a child with a guardian and a best-interests determination)",
            "value": {"recipient": "NG-NAPTIP", "local_case_id": "ML-BAMAKO-2026-0031",
                      "payload": load_example("referral.request", "minor_guardian", "2")}},
        "followup_by_case_ref": {
            "summary": "A later message on a case, by its pseudonym",
            "value": {"recipient": "NG-NAPTIP", "case_ref": "ne-ng-qgfqyk3q6bwq5ydzn3ctmcck",
                      "message_type": "case.followup", "payload": load_example("case.followup")}},
    }
    if "niger" in available_formats():
        examples["local_record"] = {
            "summary": "A referral as a record in a local format (docs/adapters.md), for fewer purposes",
            "value": {"recipient": "NG-NAPTIP", "local_case_id": "NE-ZINDER-2026-0143", "format": "niger",
                      "record": json.loads((_SAMPLES / "adulte_nigeriane_securite_recherche.json")
                                           .read_text(encoding="utf-8")),
                      "purposes": ["family_tracing"]}}
    return examples


#: The answer of the POSTs that queue a message (here and POST /inbox/{id}/response).
QUEUED: dict[str, Any] = {
    "type": "object",
    "required": ["message_id", "type", "status", "case_ref", "links"],
    "properties": {
        "message_id": _UUID,
        "type": {"type": "string", "enum": list(MESSAGE_TYPES)},
        "status": {"const": "queued"},
        "case_ref": _CASE_REF,
        "in_reply_to": _UUID,
        "schema_version": {"type": "string", "enum": list(SCHEMA_VERSIONS),
                           "description": "The payload schema version sent: the highest both agencies' directory "
                                          "entries list (docs/schema.md)"},
        "converted": {
            "type": "array",
            "description": "Fields of a v1 payload left out when it was upgraded for a v2 recipient, or of a v2 "
                           "payload a v1 recipient gets only coarsely (children's details, codes sent as "
                           "other): path and reason",
            "items": {"type": "object", "required": ["path", "reason"],
                      "properties": {"path": {"type": "string"}, "reason": {"type": "string"}}},
        },
        "dropped": {
            "type": "array",
            "description": "Local-record submissions only: fields the purposes do not allow, left out",
            "items": {"type": "object", "required": ["local_field", "shared_path", "reason"],
                      "properties": {"local_field": {"type": "string"},
                                     "shared_path": {"type": ["string", "null"]}, "reason": {"type": "string"}}},
        },
        "links": {
            "type": "object", "required": ["status"],
            "properties": {"status": {"type": "string", "examples": ["/messages/3f1c..."]}},
        },
    },
}

_SCHEMAS: dict[str, Any] = {
    "Queued": QUEUED,
    "Submission": {
        "type": "object",
        "description": "A message to queue. Exactly one of case_ref and local_case_id: a local id is turned into "
                       "the case pseudonym for the recipient's country and never leaves this gateway. Either "
                       "payload (valid against the shared schema of message_type), or format and record (a "
                       "referral.request in a local format, optionally with purposes).",
        "required": ["recipient"],
        "properties": {
            "recipient": _AGENCY,
            "case_ref": _CASE_REF,
            "local_case_id": {"type": "string", "minLength": 1, "maxLength": MAX_LOCAL_CASE_ID,
                              "pattern": LOCAL_CASE_ID.pattern,
                              "description": "not blank; no control or invisible formatting characters"},
            "message_type": {"type": "string", "enum": list(SUBMITTABLE_TYPES), "default": DEFAULT_TYPE},
            "payload": {"type": "object", "description": "Validated against the shared schema of message_type, "
                                                         "version 2 if it has schema_version \"2\", else version 1"},
            "format": {"type": "string", "enum": list(available_formats()),
                       "description": "Instead of payload: the local format of `record` (see docs/adapters.md)"},
            "record": {"type": "object", "description": "A referral.request in the agency's local format"},
            "purposes": {"type": "array", "minItems": 1, "items": {"type": "string", "enum": list(PURPOSES)},
                         "description": "With a local record: the purposes to send (default: the record's own)"},
        },
        "additionalProperties": False,
        "dependentRequired": {"format": ["record"], "record": ["format"], "purposes": ["format", "record"]},
        "oneOf": [{"required": ["case_ref"]}, {"required": ["local_case_id"]}],
        "allOf": [
            {"description": "either payload, or format and record (a local record)",
             "oneOf": [{"required": ["payload"]}, {"required": ["format", "record"]}]},
            {"if": {"required": ["record"]},
             "then": {"properties": {"message_type": {"const": DEFAULT_TYPE,
                                                      "description": "local records are sent as referral.request"}}}},
            *_payload_by_type(),
        ],
    },
}

_OPERATIONS: dict[str, dict[str, Any]] = {
    "referrals.submit": {
        "summary": "Queue a referral (or a later message on a case) for another agency",
        "description": "Answers 202 once the signed, encrypted envelope is in the durable outbox; it is published "
                       f"in the background. Request bodies are limited to {MAX_BODY_BYTES} bytes.\n\n"
                       "The body is checked against the Submission schema (422 invalid_request naming the path and "
                       "rule; a payload that breaks the shared schema of its message_type: 422 schema_invalid, "
                       "paths inside the payload). Then the rules no schema states, 422 invalid_request: the "
                       f"recipient is another agency than this gateway's own (rule {OWN_AGENCY_RULE}); every date "
                       "of the payload lies from 1900-01-01 to one day ahead, or 100 years for dates of plans and "
                       "expiries (rule date_range, docs/api.md). A local record must map to the shared schema (the "
                       "adapter's code); the directory must list the recipient (unknown_agency, recipient_refuses, "
                       "no_valid_key) and the consent cover the recipient agency and the purposes (consent_*). The "
                       "payload (v1 or v2) is sent in the highest schema version both directory entries list; a v2 "
                       "payload the recipient can only take as v1 and that v1 cannot carry: 422 "
                       "not_representable_in_v1, its violations naming each field.",
        "requestBody": json_request(_ref("Submission"), _submission_examples()),
        "responses": {
            "202": _json(_ref("Queued"), "Queued in the outbox", _LOCATION),
            "400": _error("Body is not JSON (invalid_json)"),
            "413": _error("Body or payload too large (request_too_large, oversize)"),
            "415": _error("Body is not application/json"),
            "422": _error("schema_invalid (with violations), invalid_request (with violations; also a date out of "
                          "range), consent_* (the consent does not cover it), not_representable_in_v1 (with "
                          "violations), recipient_refuses, unknown_agency, no_valid_key"),
            "503": _json(_ref("Error"), "store_unavailable: nothing was stored; retry later", _RETRY),
        },
    },
}


@routes.post("/referrals", name="referrals.submit")
@documented(_OPERATIONS["referrals.submit"], schemas=_SCHEMAS)
@requires(Permission.SUBMIT)
async def submit(request: web.Request) -> web.Response:
    gateway = gateway_of(request)
    body, check = await request_body(request)
    if check.own:
        raise invalid_request(list(check.own))
    submission = parse_submission(body, own_agency=gateway.agency_id)
    if check.shared:  # the payload breaks the shared schema of its message type
        raise payload_invalid(submission.message_type, submission.payload,
                              [_in_payload(v) for v in check.shared])
    case_ref = case_ref_for(submission, gateway, settings_of(request))

    async def create(seed: str | None) -> Answer:
        # The path the workspace's compose pages take too (gateway/api/submission.py).
        payload, dropped = await shared_payload(gateway, recipient=submission.recipient, payload=submission.payload,
                                                local_format=submission.local_format, record=submission.record,
                                                purposes=submission.purposes)
        # With an Idempotency-Key the id is derived from the key's claim: a retry after a
        # crash finds the message the first attempt stored instead of making a second one.
        message_id = None if seed is None else derived_message_id("referral", seed)
        if message_id is not None and (existing := await gateway.store.get_outgoing(message_id)) is not None:
            return _answer(_same(existing, submission, case_ref), case_ref, _dropped_body(dropped),
                           *_conversion(gateway, submission, payload, dropped))
        # Converted here to report what an upgrade left out; submit finds it in the right version.
        outgoing = leaving(gateway, submission.message_type, payload, submission.recipient, dropped)
        try:
            header = await submit_outgoing(gateway, outgoing, case_ref=case_ref, actor=actor_of(request),
                                           message_id=message_id)
        except MessageConflictError:
            if message_id is None or (existing := await gateway.store.get_outgoing(message_id)) is None:
                raise
            # A concurrent retry won.
            return _answer(_same(existing, submission, case_ref), case_ref, _dropped_body(dropped),
                           *_conversion(gateway, submission, payload, dropped))
        return _answer((header.id, header.type), case_ref, _dropped_body(dropped), header.schema, outgoing.converted)

    return await idempotent(request, path={}, body=body, create=create)


def _same(existing: OutboxRecord, submission: Submission, case_ref: str) -> tuple[str, str]:
    """The (id, type) of a message an earlier attempt with this key stored."""
    if (existing.case_ref, existing.recipient, existing.message_type) != (
            case_ref, submission.recipient, submission.message_type):
        raise ApiError(422, "idempotency_key_reused",
                       msg("this Idempotency-Key already created a different message; send a new key for a new "
                           "request"))
    return existing.message_id, existing.message_type


def _conversion(gateway: Gateway, submission: Submission, payload: dict[str, Any],
                dropped: tuple[DroppedField, ...] | None) -> tuple[str | None, tuple[Dropped, ...]]:
    """(schema version, what the conversion reports) for an answer made from a message an
    earlier attempt stored: its answer was lost, and with it the report of what the
    conversion left out, which must not go unsaid. The conversion is deterministic; if it
    no longer succeeds (the directory changed), the message is queued all the same."""
    try:
        outgoing = leaving(gateway, submission.message_type, payload, submission.recipient, dropped)
    except GatewayError:
        return None, ()
    return outgoing.schema_version, outgoing.converted


def _answer(made: tuple[str, str], case_ref: str, dropped: list[dict[str, str | None]] | None,
            schema_version: str | None = None, converted: tuple[Dropped, ...] = ()) -> Answer:
    message_id, message_type = made
    link = f"/messages/{message_id}"
    body: dict[str, Any] = {"message_id": message_id, "type": message_type, "status": "queued", "case_ref": case_ref,
                            "links": {"status": link}}
    if schema_version is not None:
        body["schema_version"] = schema_version
    if converted:
        body["converted"] = [{"path": d.path, "reason": d.reason} for d in converted]  # reported, never silent
    if dropped is not None:
        body["dropped"] = dropped  # local fields the purposes do not allow: reported, never silent
    return Answer(202, body, link)


def _dropped_body(dropped: tuple[DroppedField, ...] | None) -> list[dict[str, str | None]] | None:
    """The ``dropped`` member of the answer (local-record submissions only)."""
    if dropped is None:
        return None
    return [{"local_field": d.local_field, "shared_path": d.shared_path, "reason": d.reason} for d in dropped]
