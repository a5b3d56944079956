"""``GET /metrics``: the gateway's counters in the Prometheus text format (admin token).

The series hold message types, agency ids, route names and reason codes only, no personal
data; they are still kept behind the admin role because traffic volumes per country and
quarantine reasons describe an agency's casework and attack surface. Prometheus sends a
bearer token natively (``authorization: {credentials_file: ...}`` in the scrape config).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gateway.api.operation import documented
from gateway.api.context import gateway_of
from gateway.api.responses import NO_STORE
from gateway.api.roles import Permission, requires

routes = web.RouteTableDef()

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


# --- OpenAPI: the operations of this module's routes (see gateway/api/operation.py) ---------

_OPERATIONS: dict[str, dict[str, Any]] = {
    "metrics": {
        "summary": "Counters in the Prometheus text format (no personal data)",
        "responses": {"200": {"description": "Prometheus text exposition format 0.0.4",
                              "content": {"text/plain": {"schema": {"type": "string"}}}}},
    },
}


@routes.get("/metrics", name="metrics", allow_head=True)
@documented(_OPERATIONS["metrics"])
@requires(Permission.OPERATE)
async def metrics(request: web.Request) -> web.Response:
    gateway = gateway_of(request)
    extra = [("transport_ready", 1.0 if gateway.transport_ready else 0.0)]
    return web.Response(body=gateway.metrics.render(extra).encode("utf-8"),
                        headers={**NO_STORE, "Content-Type": CONTENT_TYPE})
