"""Headers on every workspace answer (a strict CSP, no caching, no referrer) and HTML error pages.

The workspace answers people in a browser, so a failure becomes a page in their language,
not the API's JSON. Error pages say what happened in words, never an exception text (it
may quote input). Applies to every path under ``/workspace/``, routed or not.
"""

from __future__ import annotations

import structlog
from aiohttp import web

from gateway.api.errors import Handler, safe_detail, status_of
from gateway.errors import GatewayError
from gateway.i18n import msg
from gateway.workspace.render import error_page

log = structlog.get_logger("gateway.workspace")

PREFIX = "/workspace/"

#: No inline script or style anywhere: everything the pages use is a file under /workspace/static/.
#: connect-src 'self': htmx's requests (inbox filter, trail and acknowledgement refreshes) go to
#: this gateway only; without it default-src 'none' blocks them all.
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
#: Set on every workspace answer. Pages may hold case data: no cache keeps them, no other
#: site frames them, and no Referer tells another site which page (or message id) was open.
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cache-Control": "no-store",
}
#: Static files (CSS, htmx) hold no case data: a browser on a slow line may keep them an hour.
STATIC_CACHE = "public, max-age=3600"

_HTTP_TEXTS = {
    404: msg("This page does not exist."),
    405: msg("This page cannot be used that way."),
    413: msg("What was sent is too large."),
}


def is_workspace(request: web.Request) -> bool:
    """True for every path of the workspace (``/workspace`` itself included)."""
    return request.path == PREFIX.rstrip("/") or request.path.startswith(PREFIX)


@web.middleware
async def workspace_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Security headers on every workspace answer; failures as HTML pages."""
    if not is_workspace(request):
        return await handler(request)
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            _secure(exc, request)
            raise
        response = error_page(request, exc.status, _HTTP_TEXTS.get(exc.status, msg("The request was refused.")))
    except GatewayError as exc:
        status = status_of(exc)
        text: str
        if status >= 500:
            log.warning("workspace.error", error=exc.code, exc_type=type(exc).__name__, status=status)
            text = (msg("The service is unavailable for a moment. Nothing was lost; try again shortly.")
                    if status == 503 else msg("Something went wrong on the gateway. Nothing was shown or sent."))
        else:
            text = safe_detail(exc)
        response = error_page(request, status, text)
    except Exception as exc:  # noqa: BLE001 - the last line of defence: a page, no traceback text
        log.error("workspace.unhandled", exc_type=type(exc).__name__)
        response = error_page(request, 500, msg("Something went wrong on the gateway. Nothing was shown or sent."))
    _secure(response, request)
    return response


def _secure(response: web.StreamResponse, request: web.Request) -> None:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if request.path.startswith(PREFIX + "static/") and response.status == 200:
        response.headers["Cache-Control"] = STATIC_CACHE
