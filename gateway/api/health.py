"""Liveness (``/healthz``) and readiness (``/readyz``) for orchestrators and load balancers."""

from __future__ import annotations

import asyncio
from typing import Awaitable

from typing import Any

from aiohttp import web

from gateway.api.operation import RETRY_HEADER as _RETRY, documented, json_content as _json, schema_ref as _ref
from gateway.api.context import gateway_of
from gateway.api.responses import json_body
from gateway.api.roles import public

routes = web.RouteTableDef()

#: A check that does not answer in time counts as failed: readiness must answer quickly.
CHECK_TIMEOUT_SECONDS = 2.0


# --- OpenAPI: the operations of this module's routes (see gateway/api/operation.py) ---------

#: Warnings ``/readyz`` may add without changing its status (docs/api.md).
READY_WARNINGS = ["directory_stale", "enc_key_next_missing", "enc_key_next_unpublished", "enc_key_long_lived",
                  "key_files_unreadable"]

_SCHEMAS: dict[str, Any] = {
    "Health": {"type": "object", "required": ["status"], "properties": {"status": {"const": "ok"}}},
    "Checks": {
        "type": "object",
        "required": ["store", "transport", "consumer", "outbox", "deliveries"],
        "properties": {"store": {"type": "boolean"}, "transport": {"type": "boolean"}, "consumer": {"type": "boolean"},
                       "outbox": {"type": "boolean", "description": "the outbox publisher task is running"},
                       "deliveries": {"type": "boolean", "description":
                                      "false while the delivery handler keeps failing (degraded)"}},
    },
    "DirectoryStatus": {
        "type": "object",
        "description": "The signed directory in force. A stale directory is a warning, not a failed check.",
        "required": ["serial", "issued", "age_seconds", "digest", "stale", "max_age_hours"],
        "properties": {"serial": {"type": "integer"}, "issued": {"type": "string", "format": "date-time"},
                       "age_seconds": {"type": "integer"},
                       "digest": {"type": ["string", "null"], "description": "hex SHA-256 of the signed file"},
                       "stale": {"type": "boolean", "description": "older than directory_max_age_hours"},
                       "max_age_hours": {"type": "number"}},
    },
    "Ready": {
        "type": "object",
        "required": ["status", "checks", "directory"],
        "properties": {"status": {"const": "ready"}, "checks": _ref("Checks"), "directory": _ref("DirectoryStatus"),
                       "warnings": {"type": "array", "items": {"enum": READY_WARNINGS}}},
    },
    "NotReady": {
        "type": "object",
        "required": ["error", "detail", "checks", "directory"],
        "properties": {"error": {"enum": ["not_ready", "degraded"]}, "detail": {"type": "string"},
                       "checks": _ref("Checks"), "directory": _ref("DirectoryStatus"),
                       "warnings": {"type": "array", "items": {"enum": READY_WARNINGS}}},
    },
}

_OPERATIONS: dict[str, dict[str, Any]] = {
    "health.live": {
        "summary": "Liveness: the process answers",
        "responses": {"200": _json(_ref("Health"), "Alive")},
    },
    "health.ready": {
        "summary": "Readiness: store answers, broker connection healthy, consumer running",
        "responses": {"200": _json(_ref("Ready"), "Ready"),
                      "503": _json(_ref("NotReady"), "Not ready; checks says which failed", _RETRY)},
    },
}


@routes.get("/healthz", name="health.live", allow_head=True)
@documented(_OPERATIONS["health.live"], schemas=_SCHEMAS)
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
@documented(_OPERATIONS["health.ready"], schemas=_SCHEMAS)
@public
async def readyz(request: web.Request) -> web.Response:
    """Ready only if the store answers, the broker connection is healthy, the consumer runs,
    the outbox publisher runs and deliveries are not failing persistently."""
    gateway = gateway_of(request)
    store, transport = await asyncio.gather(_check(gateway.store.ping()), _check(gateway.transport.is_healthy()))
    health = gateway.delivery_health
    checks = {"store": store, "transport": transport, "consumer": gateway.transport_ready,
              "outbox": gateway.outbox_running, "deliveries": not health.degraded}
    directory = gateway.directory_status()
    # A stale directory still verifies messages: a warning for the operator, not a reason to
    # take the gateway out of service (docs/operations.md "Directory freshness").
    extra: dict[str, Any] = {"directory": directory}
    warnings = [name for name, on in (("directory_stale", directory["stale"]),
                                       ("enc_key_next_missing", gateway.next_enc_key_missing()),
                                       ("enc_key_next_unpublished", gateway.next_enc_key_unpublished()),
                                       ("enc_key_long_lived", gateway.enc_key_long_lived()),
                                       ("key_files_unreadable", bool(gateway.key_load_failures))) if on]
    if warnings:
        extra["warnings"] = warnings
    if all(checks.values()):
        return json_body({"status": "ready", "checks": checks, **extra})
    failed = [name for name, ok in checks.items() if not ok]
    detail = "failed: " + ", ".join(failed)
    if not checks["deliveries"]:
        detail += f" ({health.streak} handler failures in a row, no success since)"
    # Only the delivery handler failing: the process is up but its inbound side is broken.
    error = "degraded" if failed == ["deliveries"] else "not_ready"
    return json_body({"error": error, "detail": detail, "checks": checks, **extra},
                     status=503, headers={"Retry-After": "5"})
