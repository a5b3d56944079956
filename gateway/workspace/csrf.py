"""The CSRF check: every POST to a workspace page carries the page's token (form field
``csrf``, or the ``X-CSRF-Token`` header for htmx), else a 403 page, audited
``workspace.csrf_refused``. The token is derived from the browser's own secret cookie
(gateway/workspace/tokens.py); SameSite=Strict cookies are a second line, not the only one."""

from __future__ import annotations

import structlog
from aiohttp import web

from gateway.api.context import GATEWAY, route_template
from gateway.api.errors import Handler
from gateway.api.roles import page_policy_of
from gateway.errors import GatewayError
from gateway.i18n import msg
from gateway.workspace.render import error_page, page_context
from gateway.workspace.tokens import same_token

log = structlog.get_logger("gateway.workspace")

FIELD = "csrf"
HEADER = "X-CSRF-Token"
#: Methods that change nothing and need no token.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@web.middleware
async def csrf_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refuse a state-changing request to a page unless it carries this browser's token."""
    if request.method in SAFE_METHODS or page_policy_of(request.match_info.handler) is None:
        return await handler(request)
    ctx = page_context(request)
    given = request.headers.get(HEADER)
    if given is None and request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        value = (await request.post()).get(FIELD)
        given = value if isinstance(value, str) else None
    if not given or not ctx.csrf or not same_token(given, ctx.csrf):
        reason = "missing" if not given else "mismatch"
        try:
            await ctx.gateway.audit_event("workspace.csrf_refused", ctx.actor,
                                          {"path": route_template(request), "method": request.method,
                                           "reason": reason})
        except GatewayError as exc:
            log.warning("workspace.audit_failed", audit_event="workspace.csrf_refused", error=exc.code)
        request.app[GATEWAY].metrics.inc("auth_refusals_total", event="workspace.csrf_refused")
        return error_page(request, 403, msg("This form has expired or did not come from this page. "
                                            "Go back, reload the page and try again."))
    return await handler(request)
