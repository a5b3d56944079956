"""Messages this gateway sent: ``GET /messages/{id}`` (delivery status, no payload) and
``GET /messages?local_case_id=`` (find what was sent for a local case without its id)."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from gateway.api.operation import (
    AGENCY_SCHEMA as _AGENCY, CASE_REF_SCHEMA as _CASE_REF, ID_PARAM as _ID_PARAM, TIME_SCHEMA as _TIME,
    UUID_SCHEMA as _UUID, documented, error_content as _error, json_content as _json, schema_ref as _ref,
)
from gateway.api.context import actor_of, gateway_of, settings_of
from gateway.api.errors import ApiError
from gateway.api.parse import message_id
from gateway.api.referrals import MAX_LOCAL_CASE_ID  # the same rule as the id in POST /referrals
from gateway.api.responses import json_body
from gateway.api.roles import Permission, requires
from gateway.clock import format_ts
from gateway.pseudonym import case_pseudonym
from gateway.schema import MESSAGE_TYPES
from gateway.store import OUTGOING_STATUSES, AuditEntry, OutboxRecord
from gateway.transport.base import AGENCY_ID_RE
from gateway.i18n import msg

routes = web.RouteTableDef()



# --- OpenAPI: the operations of this module's routes (see gateway/api/operation.py) ---------

_SCHEMAS: dict[str, Any] = {
    "MessageStatus": {
        "type": "object",
        "required": ["message_id", "type", "recipient", "case_ref", "status", "attempts", "last_error",
                     "created_at", "updated_at", "trail"],
        "properties": {
            "message_id": _UUID,
            "type": {"type": "string", "enum": list(MESSAGE_TYPES)},
            "recipient": _AGENCY,
            "case_ref": _CASE_REF,
            "status": {"type": "string", "enum": sorted(OUTGOING_STATUSES)},
            "attempts": {"type": "integer", "minimum": 0, "description": "Publish attempts"},
            "last_error": {"type": ["string", "null"], "description": "Reason code of the last failed attempt"},
            "created_at": _TIME,
            "updated_at": _TIME,
            "trail": {
                "type": "array",
                "items": {
                    "type": "object", "required": ["status", "at"],
                    "properties": {"status": {"type": "string", "enum": sorted(OUTGOING_STATUSES)}, "at": _TIME},
                },
            },
        },
    },
}

_OPERATIONS: dict[str, dict[str, Any]] = {
    "messages.status": {
        "summary": "Delivery status and trail of a message this gateway sent",
        "parameters": [_ID_PARAM],
        "responses": {"200": _json(_ref("MessageStatus"), "Status and trail"),
                      "400": _error("Bad id (invalid_id)"),
                      "404": _error("No sent message with this id")},
    },
    "messages.find": {
        "summary": "Find the messages sent for a local case id (for a client that lost the message id)",
        "description": "The local case id is turned into the case pseudonym for each country pair (for the "
                       "recipient's country only, with recipient) exactly as POST /referrals does, and the "
                       "outgoing messages of those cases are listed, oldest first. The local id is not stored, "
                       "logged or answered; the search is audited as messages.found under the case pseudonym. "
                       "Unknown or repeated query parameters are refused.",
        "parameters": [
            {"name": "local_case_id", "in": "query", "required": True,
             "schema": {"type": "string", "minLength": 1, "maxLength": MAX_LOCAL_CASE_ID}},
            {"name": "recipient", "in": "query", "required": False,
             "schema": {"type": "string", "pattern": AGENCY_ID_RE.pattern}},
        ],
        "responses": {
            "200": _json({"type": "object", "required": ["items"], "properties": {"items": {"type": "array", "items": {
                "type": "object",
                "required": ["message_id", "type", "recipient", "case_ref", "status", "created_at", "links"],
                "properties": {"message_id": {"type": "string", "format": "uuid"}, "type": {"type": "string"},
                               "recipient": {"type": "string"}, "case_ref": {"type": "string"},
                               "status": {"type": "string"}, "created_at": {"type": "string", "format": "date-time"},
                               "links": {"type": "object"}}}}}}, "The outgoing messages of the case, oldest first"),
            "400": _error("missing_parameter, or invalid_query (a bad, unknown or repeated parameter)"),
        },
    },
}


@routes.get("/messages/{id}", name="messages.status", allow_head=True)
@documented(_OPERATIONS["messages.status"], schemas=_SCHEMAS)
@requires(Permission.STATUS)
async def status(request: web.Request) -> web.Response:
    mid = message_id(request)
    record, trail = await gateway_of(request).outgoing_status(mid)
    return json_body({
        "message_id": record.message_id,
        "type": record.message_type,
        "recipient": record.recipient,
        "case_ref": record.case_ref,
        "status": record.status,
        "attempts": record.attempts,
        "last_error": record.last_error,  # a reason code (store rule), never free text
        "created_at": format_ts(record.created_at),
        "updated_at": format_ts(record.updated_at),
        "trail": [{"status": change.status, "at": format_ts(change.at)} for change in trail],
    })


def find_query(request: web.Request) -> tuple[str, str | None]:
    """(local_case_id, recipient or None) from the query; 400 naming the parameter otherwise."""
    # Unknown and repeated parameters were refused already by parse.query_middleware, from the
    # parameters this route's OpenAPI operation documents.
    query = request.query
    local_id = query.get("local_case_id")
    if local_id is None:
        raise ApiError(400, "missing_parameter", msg("query parameter local_case_id is required"))
    if not (0 < len(local_id.strip()) and len(local_id) <= MAX_LOCAL_CASE_ID and local_id.isprintable()):
        raise ApiError(400, "invalid_query", msg("query parameter local_case_id must be a non-empty printable "
                                                 "string of at most {limit} characters", limit=MAX_LOCAL_CASE_ID))
    recipient = query.get("recipient")
    if recipient is not None:
        directory = gateway_of(request).directory
        if not AGENCY_ID_RE.fullmatch(recipient) or recipient not in directory.agencies:
            raise ApiError(400, "invalid_query", msg("query parameter recipient must be the id of an agency in the "
                                                     "directory"))
    return local_id, recipient


def _item(record: OutboxRecord) -> dict[str, Any]:
    return {"message_id": record.message_id, "type": record.message_type, "recipient": record.recipient,
            "case_ref": record.case_ref, "status": record.status, "created_at": format_ts(record.created_at),
            "links": {"status": f"/messages/{record.message_id}"}}


@routes.get("/messages", name="messages.find", allow_head=True)
@documented(_OPERATIONS["messages.find"], schemas=_SCHEMAS)
@requires(Permission.FIND_SENT)
async def find(request: web.Request) -> web.Response:
    local_id, recipient = find_query(request)
    gateway = gateway_of(request)
    secret = settings_of(request).pseudonym_secret
    ours = gateway.directory.agency(gateway.agency_id).country
    # A case's pseudonym depends on the recipient's country: one pseudonym with a recipient,
    # else one per country in the directory (each a case of its own at the recipients).
    countries = ({gateway.directory.agency(recipient).country} if recipient is not None
                 else {a.country for a in gateway.directory.agencies.values()})
    case_refs = sorted({case_pseudonym(secret, local_id, ours, country) for country in countries})
    found: list[OutboxRecord] = []
    for ref in case_refs:
        found += [r for r in await gateway.store.list_outgoing_for_case(ref)
                  if recipient is None or r.recipient == recipient]
    found.sort(key=lambda r: (r.created_at, r.message_id))
    # Audited by case pseudonym: the local id is never stored, logged or answered.
    actor = actor_of(request)
    matched = sorted({r.case_ref for r in found} | (set(case_refs) if recipient is not None else set()))
    now = gateway.clock()
    # One entry per case matched, or one without a case when nothing matched.
    audited: list[str | None] = list(matched) if matched else [None]
    for audited_ref in audited:
        await gateway.store.append_audit(AuditEntry(
            at=now, event_type="messages.found", actor=actor.name, case_ref=audited_ref, agency=recipient,
            detail_json=json.dumps({"role": actor.role, "found": sum(r.case_ref == audited_ref for r in found),
                                    "recipient_given": recipient is not None}, sort_keys=True)))
    return json_body({"items": [_item(r) for r in found]})
