"""What a page handler uses: ``page_context(request)`` (who, which language, the CSRF token)
and ``render(request, template, values)`` (a template inside the base layout).

Every template gets ``_`` (translate into the page's language), ``label(list, code)``
(a code-list label), ``csrf_field()`` (the hidden token input of a form), ``when(moment)``
(a time in the page's language, UTC), ``lang``, ``user``, ``role``, ``nav`` and
``page_path`` (where the language switch returns to). Templates live in
``gateway/workspace/templates`` and are autoescaped.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Mapping

import aiohttp_jinja2
import jinja2
from aiohttp import web
from markupsafe import Markup, escape

from gateway.actors import Actor
from gateway.api.auth import ANONYMOUS
from gateway.api.context import GATEWAY, SETTINGS
from gateway.api.roles import Permission, allowed
from gateway.code_lists import label as code_list_label
from gateway.i18n import LANGUAGES, Message, msg, negotiate, translate
from gateway.service import Gateway
from gateway.settings import Settings, User
from gateway.workspace.fields import moment_text
from gateway.workspace.tokens import ANON_COOKIE, LANG_COOKIE, SESSION_COOKIE, csrf_token, well_formed


@dataclass(frozen=True)
class PageContext:
    """Who is asking and how to answer them, for one workspace request."""

    user: User | None  # None on public pages without a session
    actor: Actor  # the audit actor (anonymous without a session)
    lang: str  # "fr" or "en"
    csrf: str  # the token every form of this page carries
    gateway: Gateway
    settings: Settings


CONTEXT = web.RequestKey("workspace_context", PageContext)

#: The navigation: (path, text, permission). An entry shows when the role holds the
#: permission and the page exists (compose and sent come from their own modules).
NAV: tuple[tuple[str, Message, Permission], ...] = (
    ("/workspace/inbox", msg("Inbox"), Permission.INBOX_LIST),
    ("/workspace/compose", msg("Compose"), Permission.SUBMIT),
    ("/workspace/sent", msg("Sent messages"), Permission.STATUS),
    ("/workspace/admin", msg("Service"), Permission.OPERATE),
)

#: Role names as people read them.
ROLE_LABELS: dict[str, Message] = {
    "caseworker": msg("caseworker"), "supervisor": msg("supervisor"), "auditor": msg("auditor"), "admin": msg("admin"),
}


def setup(app: web.Application) -> None:
    """Jinja2 for the workspace templates: autoescaped, undefined names fail loudly."""
    aiohttp_jinja2.setup(
        app,
        loader=jinja2.PackageLoader("gateway.workspace", "templates"),
        autoescape=jinja2.select_autoescape(["html"], default_for_string=True, default=True),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def language_of(request: web.Request) -> str:
    """The page language: the ``rgw_lang`` cookie (the visible switch), else Accept-Language."""
    chosen = request.cookies.get(LANG_COOKIE)
    return chosen if chosen in LANGUAGES else negotiate(request.headers.get("Accept-Language"))


def page_context(request: web.Request) -> PageContext:
    """The context the session middleware built for this request (a minimal one on error pages)."""
    ctx = request.get(CONTEXT)
    if ctx is not None:
        return ctx
    # Error pages of unrouted paths: no session was looked up; the forms still get a token
    # from whichever secret the browser holds.
    secret = next((v for v in (request.cookies.get(SESSION_COOKIE), request.cookies.get(ANON_COOKIE))
                   if well_formed(v)), None)
    return PageContext(None, ANONYMOUS, language_of(request), csrf_token(secret) if secret else "",
                       request.app[GATEWAY], request.app[SETTINGS])


def render(request: web.Request, template: str, values: Mapping[str, Any] | None = None, *,
           status: int = 200) -> web.Response:
    """``template`` rendered in the base layout, in the page's language."""
    ctx = page_context(request)
    env = aiohttp_jinja2.get_env(request.app)
    html = env.get_template(template).render({**layout_values(request, ctx), **(values or {})})
    return web.Response(text=html, status=status, content_type="text/html", charset="utf-8",
                        headers={"Content-Language": ctx.lang, "Vary": "Accept-Language, Cookie"})


def see_other(location: str) -> web.Response:
    """A 303 to ``location`` (a workspace path), as a response the handler can set cookies on."""
    return web.Response(status=303, headers={"Location": location})


def error_page(request: web.Request, status: int, text: str) -> web.Response:
    """A page saying what went wrong (``text``: a translatable message, never an input)."""
    return render(request, "error.html", {"status": status, "message": text}, status=status)


def layout_values(request: web.Request, ctx: PageContext) -> dict[str, Any]:
    """What the base layout and every template may use."""
    lang = ctx.lang
    role = ctx.user.role if ctx.user is not None else None

    def gettext(text: str, **params: Any) -> str:
        return translate(msg(text, **params), lang)

    def label(code_list: str, code: Any) -> str:
        if code is None:
            return ""
        return code_list_label(code_list, str(code), lang) or str(code)

    def csrf_field() -> Markup:
        return Markup('<input type="hidden" name="csrf" value="{}">').format(escape(ctx.csrf))

    def when(moment: datetime | None) -> str:
        if moment is None:
            return ""
        return moment_text(moment, lang)

    routes = {getattr(r.resource, "canonical", None) for r in request.app.router.routes()}
    nav = [{"href": path, "text": translate(text, lang), "current": request.path.startswith(path)}
           for path, text, permission in NAV
           if role is not None and allowed(role, permission) and path in routes]
    return {
        "_": gettext, "t": lambda text: translate(text, lang), "label": label, "csrf_field": csrf_field,
        "when": when, "lang": lang, "user": ctx.user, "role": role, "csrf": ctx.csrf, "nav": nav,
        "page_path": request.path if request.method == "GET" else "/workspace/",
        "agency_id": ctx.gateway.agency_id,
        "role_label": translate(ROLE_LABELS.get(role or "", role or ""), lang),
    }
