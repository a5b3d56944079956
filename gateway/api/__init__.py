"""The gateway's HTTP API (aiohttp): ``create_app(gateway, settings)``.

One module per concern: ``auth`` (bearer tokens, roles, audited refusals), ``roles`` (the
role matrix), ``errors`` (errors → JSON), ``parse`` (input at the edge), ``access_log``;
resources ``referrals``, ``inbox``, ``messages``, ``codes``, ``health``, ``metrics``, ``quarantine``
and ``openapi`` (built from the operations the handlers carry: ``operation``), whose
request body schemas validate the bodies (``bodies``). See docs/api.md. The caseworker
workspace (``gateway.workspace``, docs/workspace.md) is served by the same app.
"""

from __future__ import annotations

from aiohttp import web

from gateway.api import audit, cases, codes, health, inbox, messages, metrics, openapi, quarantine, referrals, stats
from gateway.api.access_log import access_log_middleware
from gateway.api.auth import auth_middleware
from gateway.api.context import GATEWAY, SETTINGS
from gateway.api.errors import error_middleware
from gateway.api.parse import MAX_BODY_BYTES, query_middleware
from gateway.api.roles import ROLE_PERMISSIONS, Permission
from gateway.service import Gateway
from gateway.settings import Settings
from gateway import workspace

RESOURCES = (referrals, inbox, messages, cases, codes, health, metrics, quarantine, audit, stats, openapi)
# Each route's OpenAPI operation travels with its handler (gateway/api/operation.py):
# openapi.install builds the document, the query rules and the body validators from the router.


def create_app(gateway: Gateway, settings: Settings) -> web.Application:
    """The API of one gateway; users and their roles come from ``settings.users``."""
    if settings.pseudonym_secret_hex:
        settings.pseudonym_secret  # noqa: B018 - a malformed secret fails at start, not on a request
    app = web.Application(
        # Outermost first: the access log sees the final status, errors become JSON before
        # that, authentication runs before any handler reads a body, and query parameters are
        # checked against the documented ones (openapi.query_rules) after it.
        middlewares=[access_log_middleware, error_middleware, auth_middleware(settings.users), query_middleware],
        client_max_size=MAX_BODY_BYTES,
    )
    app[GATEWAY] = gateway
    app[SETTINGS] = settings
    for resource in RESOURCES:
        app.add_routes(resource.routes)
    openapi.install(app)
    workspace.install(app)  # after openapi: pages are not part of the API document
    gateway.metrics.describe("http_requests_total", "HTTP requests, by route name, method and status")
    gateway.metrics.describe("auth_refusals_total", "Refused API requests (auth.failed, auth.forbidden)")
    return app


__all__ = ["ROLE_PERMISSIONS", "Permission", "create_app"]
