"""Received messages: list (metadata), read (decrypt, audited with a purpose), respond."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any, cast

from aiohttp import web

from adapters.registry import available_formats, get_adapter
from gateway.api.operation import (
    AGENCY_SCHEMA as _AGENCY, CASE_REF_SCHEMA as _CASE_REF, ID_PARAM as _ID_PARAM, LOCATION_HEADER as _LOCATION,
    RETRY_HEADER as _RETRY, TIME_SCHEMA as _TIME, UUID_SCHEMA as _UUID, documented, error_content as _error,
    json_content as _json, json_request, page_param as _page_param, schema_ref as _ref,
)
from gateway.api.context import actor_of, gateway_of
from gateway.api.dates import date_violations
from gateway.api.errors import ApiError, invalid_request
from gateway.api.idempotency import Answer, idempotent
from gateway.api.bodies import BodyCheck, payload_invalid, request_body
from gateway.api.parse import choice_query, int_query, message_id
from gateway.api.referrals import QUEUED
from gateway.api.responses import json_body
from gateway.api.roles import Permission, requires
from gateway.clock import format_ts
from gateway.errors import Violation
from gateway.schema import MESSAGE_TYPES, SCHEMA_VERSIONS, load_schema, schema_id
from gateway.schema_versions import for_adapter
from gateway.service import READ_PURPOSES, Gateway
from gateway.store import INCOMING_STATUSES, InboxRecord, IncomingStatus, MessageConflictError
from gateway.i18n import msg

routes = web.RouteTableDef()

MAX_PAGE = 200
DEFAULT_PAGE = 50


def inbox_item(record: InboxRecord) -> dict[str, Any]:
    """Metadata of a received message: never the envelope or anything decrypted."""
    return {
        "message_id": record.message_id,
        "sender": record.sender,
        "type": record.message_type,
        "case_ref": record.case_ref,
        "received_at": format_ts(record.received_at),
        "status": record.status,
    }


# --- OpenAPI: the operations of this module's routes (see gateway/api/operation.py) ---------

_ANSWER_FIELDS = ("decision", "accepted_purposes", "decline_reason", "information_needed", "expected_by", "comment")


def _answer_schema(version: str) -> dict[str, Any]:
    """The Answer body in one schema version: the referral.response fields and rules, by reference."""
    response_id = schema_id("referral.response", version)
    names = _ANSWER_FIELDS + (("schema_version", "best_interests") if version != "1" else ())
    return {
        "type": "object",
        "description": "A referral.response payload without request_message_id (taken from the path), with the "
                       f"same rules as {response_id} (which fields go with which decision).",
        "required": ["decision", *(["schema_version"] if version != "1" else [])],
        "properties": {
            **{name: {"$ref": f"{response_id}#/properties/{name}"} for name in names},
            "request_message_id": {"not": {}, "description": "must not be given: the message id in the path is "
                                                              "the request answered"},
        },
        "additionalProperties": False,
        # The decision rules of the shared schema, by reference: one statement of them.
        "allOf": [{"$ref": f"{response_id}#/allOf/{i}"}
                  for i in range(len(load_schema("referral.response", version)["allOf"]))],
    }


_SCHEMAS: dict[str, Any] = {
    "Queued": QUEUED,
    "InboxItem": {
        "type": "object",
        "description": "Metadata of a received message; the payload stays encrypted until read.",
        "required": ["message_id", "sender", "type", "case_ref", "received_at", "status"],
        "properties": {
            "message_id": _UUID,
            "sender": _AGENCY,
            "type": {"type": "string", "enum": list(MESSAGE_TYPES)},
            "case_ref": _CASE_REF,
            "received_at": _TIME,
            "status": {"type": "string", "enum": sorted(INCOMING_STATUSES)},
        },
        "additionalProperties": False,
    },
    "InboxPage": {
        "type": "object",
        "required": ["items", "limit", "offset", "next_offset"],
        "properties": {
            "items": {"type": "array", "items": _ref("InboxItem")},
            "limit": {"type": "integer"},
            "offset": {"type": "integer"},
            "next_offset": {"type": ["integer", "null"], "description": "null on the last page"},
        },
    },
    "EnvelopeHeader": {
        "type": "object",
        "description": "The signed clear header of the envelope (docs/wire-format.md)",
        "required": ["id", "type", "schema", "sender", "recipient", "created", "expires", "sig_kid", "enc_kid",
                     "case"],
        "properties": {
            "id": _UUID, "type": {"type": "string", "enum": list(MESSAGE_TYPES)},
            "schema": {"type": "string", "enum": list(SCHEMA_VERSIONS),
                       "description": "The payload's schema version (docs/wire-format.md)"},
            "sender": _AGENCY, "recipient": _AGENCY, "created": _TIME, "expires": _TIME,
            "sig_kid": {"type": "string"}, "enc_kid": {"type": "string"}, "case": _CASE_REF, "in_reply_to": _UUID,
        },
    },
    "OpenedMessage": {
        "type": "object",
        "required": ["header", "payload"],
        "properties": {
            "header": _ref("EnvelopeHeader"),
            "payload": {"type": "object", "description": "Decrypted payload, valid against the schema of header.type"},
        },
        "allOf": [
            {"if": {"properties": {"header": {"properties": {"type": {"const": t}, "schema": {"const": v}}}}},
             "then": {"properties": {"payload": {"$ref": schema_id(t, v)}}}}
            for t in MESSAGE_TYPES for v in SCHEMA_VERSIONS
        ],
    },
    "ReadResult": {"oneOf": [_ref("OpenedMessage"), _ref("LocalMessage")]},
    "LocalMessage": {
        "type": "object",
        "required": ["header", "format", "record"],
        "properties": {
            "header": _ref("EnvelopeHeader"),
            "format": {"type": "string", "enum": list(available_formats())},
            "record": {"type": "object", "description": "The referral.request in the requested local format"},
        },
    },
    "Answer": {
        "description": "A referral.response payload without request_message_id (taken from the path): version 2 "
                       "(AnswerV2) when it has schema_version, else version 1 (AnswerV1).",
        "if": {"required": ["schema_version"]},
        "then": _ref("AnswerV2"),
        "else": _ref("AnswerV1"),
    },
    "AnswerV1": _answer_schema("1"),
    "AnswerV2": _answer_schema("2"),
}

_OPERATIONS: dict[str, dict[str, Any]] = {
    "inbox.list": {
        "summary": "List received messages (metadata only, oldest first)",
        "parameters": [
            _page_param("limit", DEFAULT_PAGE, MAX_PAGE), _page_param("offset", 0, 10**9),
            {"name": "status", "in": "query", "required": False,
             "schema": {"type": "string", "enum": sorted(INCOMING_STATUSES)}},
        ],
        "responses": {"200": _json(_ref("InboxPage"), "A page of the inbox"),
                      "400": _error("Bad limit, offset or status (invalid_query)")},
    },
    "inbox.read": {
        "summary": "Decrypt and read a received message (audited with user and purpose)",
        "parameters": [_ID_PARAM, {
            "name": "purpose", "in": "query", "required": True,
            "description": "Why the message is read; recorded in the audit log with the user",
            "schema": {"type": "string", "enum": list(READ_PURPOSES)},
        }, {
            "name": "format", "in": "query", "required": False,
            "description": "Return a referral.request as a record in this local format instead of the shared payload",
            "schema": {"type": "string", "enum": list(available_formats())},
        }],
        "responses": {"200": _json(_ref("ReadResult"),
                                   "The verified header and the decrypted payload (or local record)"),
                      "409": _error("format given for a message that is not a referral.request"),
                      "400": _error("Bad id (invalid_id), purpose missing (missing_parameter) or not one of the "
                                    "codes (invalid_query)"),
                      "404": _error("No received message with this id"),
                      "410": _error("The payload was shredded (consent withdrawn or retention): payload_shredded")},
    },
    "inbox.respond": {
        "summary": "Answer a received referral.request (accepted, declined, more information needed)",
        "parameters": [_ID_PARAM],
        "description": "The body is checked against the Answer schema (422 schema_invalid with violations; "
                       "request_message_id in the body: 422 invalid_request). Then the rules no schema states, "
                       "422 invalid_request: expected_by lies from 1900-01-01 to 100 years ahead (rule date_range), "
                       "and accepted_purposes names only purposes the request asked for (rule request_purposes).",
        "requestBody": json_request(_ref("Answer"), {
            "accepted": {"summary": "Accepted for some of the purposes asked for",
                         "value": {"decision": "accepted", "accepted_purposes": ["safety_assessment"]}},
            "declined": {"summary": "Declined, with a reason",
                         "value": {"decision": "declined", "decline_reason": "no_capacity"}},
            "accepted_v2": {"summary": "Accepted (schema version 2), with the child's best-interests determination",
                            "value": {"schema_version": "2", "decision": "accepted",
                                      "accepted_purposes": ["safety_assessment"],
                                      "best_interests": {"status": "in_progress", "outcome": "pending"}}},
            "more_information_needed": {"summary": "More information needed first",
                                        "value": {"decision": "more_information_needed",
                                                  "information_needed": ["identity"], "expected_by": "2030-01-01"}},
        }),
        "responses": {
            "202": _json(_ref("Queued"), "The referral.response is queued", _LOCATION),
            "400": _error("Bad id or body is not JSON"),
            "404": _error("No received message with this id"),
            "409": _error("The message is not a referral.request, or was already answered otherwise (conflict)"),
            "410": _error("The request's payload was shredded (payload_shredded)"),
            "413": _error("Body too large"),
            "415": _error("Body is not application/json"),
            "422": _error("schema_invalid (with violations); invalid_request (with violations): a date out of "
                          "range, request_message_id given, or accepted_purposes naming a purpose the request "
                          "did not ask for"),
            "503": _json(_ref("Error"), "store_unavailable; retry later", _RETRY),
        },
    },
}


@routes.get("/inbox", name="inbox.list", allow_head=True)
@documented(_OPERATIONS["inbox.list"], schemas=_SCHEMAS)
@requires(Permission.INBOX_LIST)
async def list_inbox(request: web.Request) -> web.Response:
    limit = int_query(request.query, "limit", default=DEFAULT_PAGE, minimum=1, maximum=MAX_PAGE)
    offset = int_query(request.query, "offset", default=0, minimum=0, maximum=10**9)
    # choice_query admits only INCOMING_STATUSES, the values of IncomingStatus.
    status = cast(IncomingStatus | None, choice_query(request.query, "status", INCOMING_STATUSES))
    records = await gateway_of(request).list_inbox(limit=limit, offset=offset, status=status)
    return json_body({
        "items": [inbox_item(r) for r in records],
        "limit": limit,
        "offset": offset,
        "next_offset": offset + len(records) if len(records) == limit else None,
    })


@routes.get("/inbox/{id}", name="inbox.read", allow_head=True)
@documented(_OPERATIONS["inbox.read"], schemas=_SCHEMAS)
@requires(Permission.INBOX_READ)
async def read_message(request: web.Request) -> web.Response:
    mid = message_id(request)
    # The purpose is audited with the read, so it is one of the documented codes, never free text.
    purpose = choice_query(request.query, "purpose", READ_PURPOSES, required=True)
    assert purpose is not None
    local_format = choice_query(request.query, "format", frozenset(available_formats()))
    opened = await gateway_of(request).read_incoming(mid, actor=actor_of(request), purpose=purpose)
    if local_format is None:
        return json_body({"header": opened.header.to_json(), "payload": opened.payload})
    if opened.header.type != "referral.request":
        raise ApiError(409, "conflict", msg("only a referral.request can be read in a local format, not a "
                                            "{message_type}", message_type=opened.header.type))
    adapter = get_adapter(local_format)
    gateway = gateway_of(request)
    # With our country: a v1 consent given for it covers us in the v2 form a v2 adapter reads.
    shared = for_adapter(adapter, opened.payload, recipient=gateway.agency_id,
                         recipient_country=gateway.directory.agency(gateway.agency_id).country)
    record = await asyncio.to_thread(lambda: adapter.from_shared(shared))
    return json_body({"header": opened.header.to_json(), "format": local_format, "record": record})


def check_answer(body: dict[str, Any], check: BodyCheck, mid: str, now: datetime) -> dict[str, Any]:
    """The referral.response payload without request_message_id, which the path supplies:
    422 unless the published Answer schema accepts it, then the date range rule."""
    misplaced = [v for v in (*check.own, *check.shared) if v.path == "$.request_message_id"]
    if misplaced:
        raise invalid_request(misplaced)
    if not check.ok:  # explained as the referral.response it would be
        raise payload_invalid("referral.response", {**body, "request_message_id": mid}, [*check.own, *check.shared])
    out_of_range = date_violations(body, now)  # expected_by
    if out_of_range:
        raise invalid_request(out_of_range)
    return body

async def check_accepted_purposes(gateway: Gateway, mid: str, body: dict[str, Any]) -> None:
    """422 if ``accepted_purposes`` names a purpose the request did not ask for.

    The schema cannot see the request; the gateway opens it (no read is audited: nobody is
    shown it) and compares. A missing or non-referral message is left to the service (404/409)."""
    accepted = body.get("accepted_purposes")
    if not isinstance(accepted, list):
        return  # absent or malformed: the schema's rules answer
    record = await gateway.store.get_incoming(mid)
    if record is None or record.message_type != "referral.request":
        return
    opened = gateway.open_stored(await gateway.at_rest.open(record), record.received_at)  # 410 if shredded
    asked = set(opened.payload.get("purposes") or ())
    if any(purpose not in asked for purpose in accepted):
        raise invalid_request([Violation("$.accepted_purposes", "request_purposes",
                                         msg("must name only purposes the request asked for (its purposes)"))])


@routes.post("/inbox/{id}/response", name="inbox.respond")
@documented(_OPERATIONS["inbox.respond"], schemas=_SCHEMAS)
@requires(Permission.RESPOND)
async def respond(request: web.Request) -> web.Response:
    mid = message_id(request)
    gateway = gateway_of(request)
    body, check = await request_body(request)
    answer = check_answer(body, check, mid, gateway.clock())
    await check_accepted_purposes(gateway, mid, answer)

    async def create(seed: str | None) -> Answer:
        # The response id is derived from the request and the decision (Gateway.respond):
        # already exactly once per decision, so the seed is not needed.
        try:
            header = await gateway.respond(mid, answer, actor=actor_of(request))
        except MessageConflictError:
            header = await gateway.respond(mid, answer, actor=actor_of(request))  # a concurrent retry stored it first
        link = f"/messages/{header.id}"
        return Answer(202, {"message_id": header.id, "type": header.type, "status": "queued", "in_reply_to": mid,
                            "case_ref": header.case, "links": {"status": link}}, link)

    return await idempotent(request, path={"id": mid}, body=body, create=create)
