"""``GET /messages/{id}``: the delivery status of a message this gateway sent (no payload)."""

from __future__ import annotations

from aiohttp import web

from gateway.api.context import gateway_of
from gateway.api.parse import message_id
from gateway.api.responses import json_body
from gateway.api.roles import Permission, requires
from gateway.clock import format_ts

routes = web.RouteTableDef()


@routes.get("/messages/{id}", name="messages.status", allow_head=True)
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
