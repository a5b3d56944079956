"""The caseworker workspace: server-rendered pages for staff, served by every gateway.

``install(app)`` (called by ``gateway.api.create_app``) sets up the Jinja2 templates, the
workspace middlewares and the routes of every page module in :data:`PAGES`. The pieces:
``security`` (CSP and the other headers, HTML error pages), ``session`` (sign-in sessions,
role checks), ``csrf`` (the token on every form), ``passwords`` (argon2, sign-in throttling),
``render`` (``page_context`` and ``render``), and the page modules. See docs/workspace.md.
"""

from __future__ import annotations

from types import ModuleType

from aiohttp import web

from gateway.workspace import csrf, render, security, session
from gateway.workspace.pages import compose, followup, home, inbox, sent, signin, static

#: The page modules, each with ``routes = web.RouteTableDef()``; every handler carries a
#: ``@page``/``@page_public`` policy (gateway/api/roles.py).
PAGES: tuple[ModuleType, ...] = (static, signin, home, inbox, followup, compose, sent)


def install(app: web.Application) -> None:
    """Serve the workspace under ``/workspace/`` on ``app`` (before the app starts)."""
    render.setup(app)
    session.setup(app)
    # Inside the API's middlewares (access log, errors, bearer auth, query rules): headers and
    # HTML errors outermost, then the session (who, which role), then the CSRF check of POSTs.
    app.middlewares.extend([security.workspace_middleware, session.session_middleware, csrf.csrf_middleware])
    for module in PAGES:
        app.add_routes(module.routes)


__all__ = ["PAGES", "install"]
