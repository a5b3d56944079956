"""Sign-in, sign-out and the language switch: the pages anyone may reach.

Sign-in checks the name and argon2 password of a configured user (gateway/workspace/
passwords.py), refuses a name after too many failures, and audits every outcome
(``workspace.signed_in``, ``workspace.sign_in_failed``: the name only if it is a
configured user's, never what else was typed).
"""

from __future__ import annotations

import re

from aiohttp import web

from gateway.actors import Actor
from gateway.api.auth import ANONYMOUS
from gateway.api.context import GATEWAY, SETTINGS
from gateway.api.roles import page, page_public
from gateway.i18n import LANGUAGES, msg
from gateway.workspace.passwords import MAX_PASSWORD_CHARS, verify_password
from gateway.workspace.render import page_context, render, see_other
from gateway.workspace.session import (
    OTHER_NAMES_THROTTLE, SESSION_ID, THROTTLE, audit_event, end_session, set_cookie, start_session,
)
from gateway.workspace.tokens import LANG_COOKIE

routes = web.RouteTableDef()

HOME = "/workspace/"
#: The language cookie lasts a year: it is a preference of the computer, not a secret.
LANG_MAX_AGE = 365 * 24 * 3600
MAX_NAME_CHARS = 200
#: Where the language switch may return: /workspace/ and segments of letters, digits, ``._~-``,
#: none starting with a dot (so no ``..``) and no empty one (so no ``//``).
_SEGMENT = r"[A-Za-z0-9_~-][A-Za-z0-9._~-]*"
_BACK = re.compile(rf"/workspace/(?:{_SEGMENT}(?:/{_SEGMENT})*/?)?")


@routes.get("/workspace/sign-in", name="workspace.sign_in")
@page_public
async def sign_in_form(request: web.Request) -> web.StreamResponse:
    """The sign-in form (already signed in: straight to the workspace)."""
    if request.get(SESSION_ID) is not None:
        raise web.HTTPSeeOther(HOME)
    ended = request.query.get("ended") == "1"
    return render(request, "sign_in.html", {"error": None, "username": "", "ended": ended})


@routes.post("/workspace/sign-in", name="workspace.sign_in_submit")
@page_public
async def sign_in(request: web.Request) -> web.StreamResponse:
    """Check the name and password; on success a new session and 303 to the workspace."""
    form = await request.post()
    name = str(form.get("username", "")).strip()[:MAX_NAME_CHARS]
    password = str(form.get("password", ""))
    gateway, settings = request.app[GATEWAY], request.app[SETTINGS]
    now = gateway.clock()
    user = next((u for u in settings.users if u.name == name), None)
    # Every name is throttled alike, so the lockout does not tell which names exist.
    throttle = request.app[THROTTLE] if user is not None else request.app[OTHER_NAMES_THROTTLE]
    key = user.name if user is not None else throttle.key(name)
    detail = {"user": user.name} if user is not None else {}  # a name only if it is a user's
    if not throttle.begin(key, now):
        await audit_event(request, "workspace.sign_in_failed", ANONYMOUS, {"reason": "throttled", **detail})
        return render(request, "sign_in.html", {
            "error": msg("Too many failed attempts for this name. Wait 15 minutes, or ask your administrator."),
            "username": name, "ended": False}, status=429)
    phc = user.password_argon2 if user is not None else None
    try:
        ok = (bool(name) and bool(password) and len(password) <= MAX_PASSWORD_CHARS
              and await verify_password(phc, password))
    finally:
        throttle.end(key)
    if not ok or user is None:
        if user is None:
            reason = "unknown_user"
        else:
            reason = "no_password" if user.password_argon2 is None else "wrong_password"
        throttle.failed(key, now)
        await audit_event(request, "workspace.sign_in_failed", ANONYMOUS, {"reason": reason, **detail})
        return render(request, "sign_in.html", {
            "error": msg("The name or the password is not right."), "username": name, "ended": False}, status=401)
    throttle.succeeded(key)
    response = see_other(HOME)
    await start_session(request, response, user)
    await audit_event(request, "workspace.signed_in", Actor(user.name, user.role), {"role": user.role})
    return response


@routes.post("/workspace/sign-out", name="workspace.sign_out")
@page(None)
async def sign_out(request: web.Request) -> web.StreamResponse:
    """End the session and go back to the sign-in page."""
    ctx = page_context(request)
    response = see_other("/workspace/sign-in")
    await end_session(request, response)
    await audit_event(request, "workspace.signed_out", ctx.actor, {"reason": "sign_out"})
    return response


@routes.post("/workspace/language", name="workspace.language")
@page_public
async def choose_language(request: web.Request) -> web.StreamResponse:
    """Remember the chosen language on this computer and return to the page it was chosen on."""
    form = await request.post()
    lang = str(form.get("lang", ""))
    back = str(form.get("next", HOME))
    # Only a plain workspace path: never an open redirect ("//host", "/\\host"), never a
    # header break (CR/LF) or anything else that is not a page's own path.
    if not _BACK.fullmatch(back):
        back = HOME
    response = see_other(back)
    if lang in LANGUAGES:
        set_cookie(request, response, LANG_COOKIE, lang, max_age=LANG_MAX_AGE)
    return response
