"""One structlog line per request, and request counters for ``/metrics``.

Logged: method, route *template* (``/inbox/{id}``), status, duration, user name. Not
logged: bodies, query strings (a read's purpose is free text), headers, tokens.
"""

from __future__ import annotations

import time

import structlog
from aiohttp import web

from gateway.api.context import GATEWAY, USER, route_name, route_template
from gateway.api.errors import Handler

log = structlog.get_logger("gateway.api.access")

#: Methods used as a metric label as they are; any other token counts as "other".
KNOWN_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})


@web.middleware
async def access_log_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    started = time.perf_counter()
    status = 500  # if the handler raises past the error middleware (cancellation)
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:  # only non-error statuses get past the error middleware
        status = exc.status
        raise
    finally:
        user = request.get(USER)
        log.info(
            "http.request",
            method=request.method,
            route=route_template(request),
            status=status,
            duration_ms=round((time.perf_counter() - started) * 1000, 1),
            user=user.name if user is not None else None,
        )
        method = request.method if request.method in KNOWN_METHODS else "other"
        request.app[GATEWAY].metrics.inc("http_requests_total", route=route_name(request), method=method,
                                         status=str(status))
