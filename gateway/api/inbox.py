"""Received messages: list (metadata), read (decrypt, audited with a purpose), respond."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

from aiohttp import web

from adapters.registry import available_formats, get_adapter
from gateway.api.context import actor_of, gateway_of
from gateway.api.dates import date_violations
from gateway.api.errors import ApiError, invalid_request
from gateway.api.idempotency import Answer, idempotent
from gateway.api.parse import choice_query, int_query, json_object, message_id
from gateway.api.responses import json_body
from gateway.api.roles import Permission, requires
from gateway.clock import format_ts
from gateway.errors import Violation
from gateway.service import READ_PURPOSES, Gateway
from gateway.store import INCOMING_STATUSES, InboxRecord, MessageConflictError

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


@routes.get("/inbox", name="inbox.list", allow_head=True)
@requires(Permission.INBOX_LIST)
async def list_inbox(request: web.Request) -> web.Response:
    limit = int_query(request.query, "limit", default=DEFAULT_PAGE, minimum=1, maximum=MAX_PAGE)
    offset = int_query(request.query, "offset", default=0, minimum=0, maximum=10**9)
    status = choice_query(request.query, "status", INCOMING_STATUSES)
    records = await gateway_of(request).list_inbox(limit=limit, offset=offset, status=status)
    return json_body({
        "items": [inbox_item(r) for r in records],
        "limit": limit,
        "offset": offset,
        "next_offset": offset + len(records) if len(records) == limit else None,
    })


@routes.get("/inbox/{id}", name="inbox.read", allow_head=True)
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
        raise ApiError(409, "conflict", f"only a referral.request can be read in a local format, not a {opened.header.type}")
    record = await asyncio.to_thread(lambda: get_adapter(local_format).from_shared(opened.payload))
    return json_body({"header": opened.header.to_json(), "format": local_format, "record": record})


def check_answer(body: dict[str, Any], now: datetime) -> dict[str, Any]:
    """The referral.response payload without request_message_id, which the path supplies."""
    if "request_message_id" in body:
        raise invalid_request([Violation("$.request_message_id", "not",
                                         "must not be given: the message id in the path is the request answered")])
    out_of_range = date_violations(body, now)  # expected_by
    if out_of_range:
        raise invalid_request(out_of_range)
    return body  # every other rule is the referral.response schema's, checked when sealing


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
                                         "must name only purposes the request asked for (its purposes)")])


@routes.post("/inbox/{id}/response", name="inbox.respond")
@requires(Permission.RESPOND)
async def respond(request: web.Request) -> web.Response:
    mid = message_id(request)
    gateway = gateway_of(request)
    body = await json_object(request)
    answer = check_answer(body, gateway.clock())
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
