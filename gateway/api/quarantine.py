"""``GET /quarantine``: what this agency's gateway refused, for the admin (ids and reasons only).

Re-driving stays with ``gateway quarantine redrive`` on the host: it puts a refused message
back in front of the verifier, which is an operator's decision, not a web click.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gateway.api.operation import (
    RETRY_HEADER as _RETRY, documented, json_content as _json, page_param as _page_param, schema_ref as _ref,
)
from gateway.api.context import gateway_of
from gateway.api.parse import int_query
from gateway.api.responses import json_body
from gateway.api.roles import Permission, requires
from gateway.quarantine_vault import KEY_HEADER

routes = web.RouteTableDef()


# --- OpenAPI: the operations of this module's routes (see gateway/api/operation.py) ---------

_SCHEMAS: dict[str, Any] = {
    "QuarantinePage": {
        "type": "object",
        "required": ["items"],
        "properties": {"items": {"type": "array", "items": {
            "type": "object",
            "required": ["message_id", "sender", "reason", "detail", "size", "body"],
            "properties": {
                "message_id": {"type": "string"}, "sender": {"type": ["string", "null"]},
                "reason": {"type": "string"}, "detail": {"type": "string"}, "size": {"type": "integer"},
                "body": {"type": "string", "enum": ["encrypted", "destroyed", "clear"],
                         "description": "`encrypted`: under a quarantine key, re-drivable; `destroyed`: the key "
                                        "was destroyed by retention, the body is gone; `clear`: stored before "
                                        "bodies were sealed, or dead-lettered by the broker"},
            },
        }}},
    },
}

_OPERATIONS: dict[str, dict[str, Any]] = {
    "quarantine.list": {
        "summary": "Messages this gateway refused (ids, senders, reason codes; never bodies)",
        "parameters": [_page_param("limit", 50, 200)],
        "responses": {"200": _json(_ref("QuarantinePage"), "Quarantined messages"),
                      "503": _json(_ref("Error"), "The broker is unavailable", _RETRY)},
    },
}


@routes.get("/quarantine", name="quarantine.list", allow_head=True)
@documented(_OPERATIONS["quarantine.list"], schemas=_SCHEMAS)
@requires(Permission.OPERATE)
async def list_quarantine(request: web.Request) -> web.Response:
    limit = int_query(request.query, "limit", default=50, minimum=1, maximum=200)
    gateway = gateway_of(request)
    entries = await gateway.transport.list_quarantine(limit)
    return json_body({"items": [
        # The body is ciphertext and stays out; the detail is a code-like reason text.
        {"message_id": q.message_id, "sender": q.sender or None, "reason": q.reason_code,
         "detail": q.detail, "size": q.size,
         "body": await gateway.quarantine_vault.state(q.headers.get(KEY_HEADER))}
        for q in entries
    ]})
