"""Received messages: list (metadata), read (decrypt, audited with a purpose), respond."""

from __future__ import annotations

import asyncio

from typing import Any

from aiohttp import web

from adapters.registry import available_formats, get_adapter
from gateway.api.context import actor_of, gateway_of
from gateway.api.errors import ApiError, invalid_request
from gateway.api.idempotency import Answer, idempotent
from gateway.api.parse import choice_query, int_query, json_object, message_id, text_query
from gateway.api.responses import json_body
from gateway.api.roles import Permission, requires
from gateway.clock import format_ts
from gateway.errors import Violation
from gateway.store import INCOMING_STATUSES, InboxRecord, MessageConflictError

routes = web.RouteTableDef()

MAX_PAGE = 200
DEFAULT_PAGE = 50
#: The purpose of a read is a code from service.READ_PURPOSES (it is audited); bounded before the check.
MAX_PURPOSE_CHARS = 200


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


@routes.get("/inbox", name="inbox.list", allow_head=False)
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


@routes.get("/inbox/{id}", name="inbox.read", allow_head=False)
@requires(Permission.INBOX_READ)
async def read_message(request: web.Request) -> web.Response:
    mid = message_id(request)
    purpose = text_query(request.query, "purpose", max_chars=MAX_PURPOSE_CHARS)
    local_format = choice_query(request.query, "format", frozenset(available_formats()))
    opened = await gateway_of(request).read_incoming(mid, actor=actor_of(request), purpose=purpose)
    if local_format is None:
        return json_body({"header": opened.header.to_json(), "payload": opened.payload})
    if opened.header.type != "referral.request":
        raise ApiError(409, "conflict", f"only a referral.request can be read in a local format, not a {opened.header.type}")
    record = await asyncio.to_thread(lambda: get_adapter(local_format).from_shared(opened.payload))
    return json_body({"header": opened.header.to_json(), "format": local_format, "record": record})


def check_answer(body: dict[str, Any]) -> dict[str, Any]:
    """The referral.response payload without request_message_id, which the path supplies."""
    if "request_message_id" in body:
        raise invalid_request([Violation("$.request_message_id", "not",
                                         "must not be given: the message id in the path is the request answered")])
    return body  # every other rule is the referral.response schema's, checked when sealing


@routes.post("/inbox/{id}/response", name="inbox.respond")
@requires(Permission.RESPOND)
async def respond(request: web.Request) -> web.Response:
    mid = message_id(request)
    body = await json_object(request)
    answer = check_answer(body)

    async def create(seed: str | None) -> Answer:
        # The response id is derived from the request and the decision (Gateway.respond):
        # already exactly once per decision, so the seed is not needed.
        gateway = gateway_of(request)
        try:
            header = await gateway.respond(mid, answer, actor=actor_of(request))
        except MessageConflictError:
            header = await gateway.respond(mid, answer, actor=actor_of(request))  # a concurrent retry stored it first
        link = f"/messages/{header.id}"
        return Answer(202, {"message_id": header.id, "type": header.type, "status": "queued", "in_reply_to": mid,
                            "case_ref": header.case, "links": {"status": link}}, link)

    return await idempotent(request, path={"id": mid}, body=body, create=create)
