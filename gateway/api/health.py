"""Liveness (``/healthz``) and readiness (``/readyz``) for orchestrators and load balancers."""

from __future__ import annotations

import asyncio
from typing import Awaitable

from aiohttp import web

from gateway.api.context import gateway_of
from gateway.api.responses import json_body
from gateway.api.roles import public

routes = web.RouteTableDef()

#: A check that does not answer in time counts as failed: readiness must answer quickly.
CHECK_TIMEOUT_SECONDS = 2.0


@routes.get("/healthz", name="health.live", allow_head=True)
@public
async def healthz(request: web.Request) -> web.Response:
    """The process runs and its event loop answers; nothing else is checked."""
    return json_body({"status": "ok"})


async def _check(probe: Awaitable[bool]) -> bool:
    try:
        return bool(await asyncio.wait_for(probe, CHECK_TIMEOUT_SECONDS))
    except Exception:  # noqa: BLE001 - a probe that raises or hangs is simply not ready
        return False


@routes.get("/readyz", name="health.ready", allow_head=True)
@public
async def readyz(request: web.Request) -> web.Response:
    """Ready only if the store answers, the broker connection is healthy, the consumer runs,
    the outbox publisher runs and deliveries are not failing persistently."""
    gateway = gateway_of(request)
    store, transport = await asyncio.gather(_check(gateway.store.ping()), _check(gateway.transport.is_healthy()))
    health = gateway.delivery_health
    checks = {"store": store, "transport": transport, "consumer": gateway.transport_ready,
              "outbox": gateway.outbox_running, "deliveries": not health.degraded}
    if all(checks.values()):
        return json_body({"status": "ready", "checks": checks})
    failed = [name for name, ok in checks.items() if not ok]
    detail = "failed: " + ", ".join(failed)
    if not checks["deliveries"]:
        detail += f" ({health.streak} handler failures in a row, no success since)"
    # Only the delivery handler failing: the process is up but its inbound side is broken.
    error = "degraded" if failed == ["deliveries"] else "not_ready"
    return json_body({"error": error, "detail": detail, "checks": checks},
                     status=503, headers={"Retry-After": "5"})
