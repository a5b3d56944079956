"""``GET /quarantine``: what this agency's gateway refused, for the admin (ids and reasons only).

Re-driving stays with ``gateway quarantine redrive`` on the host: it puts a refused message
back in front of the verifier, which is an operator's decision, not a web click.
"""

from __future__ import annotations

from aiohttp import web

from gateway.api.context import gateway_of
from gateway.api.parse import int_query
from gateway.api.responses import json_body
from gateway.api.roles import Permission, requires

routes = web.RouteTableDef()


@routes.get("/quarantine", name="quarantine.list", allow_head=True)
@requires(Permission.OPERATE)
async def list_quarantine(request: web.Request) -> web.Response:
    limit = int_query(request.query, "limit", default=50, minimum=1, maximum=200)
    entries = await gateway_of(request).transport.list_quarantine(limit)
    return json_body({"items": [
        # The body is ciphertext and stays out; the detail is a code-like reason text.
        {"message_id": q.message_id, "sender": q.sender or None, "reason": q.reason_code,
         "detail": q.detail, "size": q.size}
        for q in entries
    ]})
