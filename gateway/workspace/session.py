"""Workspace sessions: who is signed in, for how long, and whether their role may see a page.

The ``rgw_session`` cookie holds the session id (HttpOnly, SameSite=Strict, Path=/workspace/,
Secure over HTTPS or with ``workspace_secure_cookies``); the store holds its SHA-256 and
the user's name and role. A session ends ``workspace_idle_minutes`` after the last page or
``workspace_session_hours`` after sign-in, and when its user leaves the settings or changes
role. No session on a page that needs one: 303 to the sign-in page. A role without the
page's permission: a 403 page, audited ``auth.forbidden`` like the API.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime, timedelta

import structlog
from aiohttp import web

from gateway.actors import Actor
from gateway.api.auth import ANONYMOUS
from gateway.api.context import GATEWAY, SETTINGS, USER, route_template
from gateway.api.errors import Handler
from gateway.api.roles import PageAccess, page_policy_of
from gateway.errors import GatewayError
from gateway.i18n import CURRENT, msg
from gateway.settings import Settings, User
from gateway.store import WebSession
from gateway.workspace.passwords import MAX_OTHER_NAMES, Throttle
from gateway.workspace.render import CONTEXT, PageContext, error_page, language_of
from gateway.workspace.tokens import (
    ANON_COOKIE, COOKIE_PATH, SESSION_COOKIE, csrf_token, new_secret, session_hash, well_formed,
)

log = structlog.get_logger("gateway.workspace")

SIGN_IN = "/workspace/sign-in"
STATIC_ROUTE = "workspace.static"
THROTTLE = web.AppKey("workspace_throttle", Throttle)
#: The throttle of names that are no configured user's (bounded, keyed digests).
OTHER_NAMES_THROTTLE = web.AppKey("workspace_other_names_throttle", Throttle)
#: The id of the request's session (set when one is valid): sign-out needs it.
SESSION_ID = web.RequestKey("workspace_session_id", str)
#: Ids of the elements htmx refreshes on a timer (hx-trigger="every 5s": ol#trail in
#: sent_trail.html, ul#acks in withdrawal_acks.html); htmx names the element in HX-Trigger.
#: Their refreshes are not activity: a status page left open must not keep a session alive.
POLLED = frozenset({"trail", "acks"})
#: A fresh ``rgw_csrf`` secret this request handed out (set on the answer as a cookie).
NEW_ANON_SECRET = web.RequestKey("workspace_new_anon_secret", str)


def setup(app: web.Application) -> None:
    """Per-app state of the sign-in throttles."""
    app[THROTTLE] = Throttle()
    app[OTHER_NAMES_THROTTLE] = Throttle(max_names=MAX_OTHER_NAMES, secret=secrets.token_bytes(32))


@web.middleware
async def session_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Find the request's session, enforce the page's policy, and build its PageContext."""
    access = page_policy_of(request.match_info.handler)
    if access is None or getattr(request.match_info.route, "name", None) == STATIC_ROUTE:
        return await handler(request)  # not a page; static files need no session (nor a store read)
    lang = language_of(request)
    token = CURRENT.set(lang)
    try:
        return await _serve(request, handler, access, lang)
    finally:
        CURRENT.reset(token)


def is_poll(request: web.Request) -> bool:
    """True for htmx's timed refresh of a status list: not something the person did."""
    return (request.method == "GET" and request.headers.get("HX-Request") == "true"
            and request.headers.get("HX-Trigger") in POLLED)


async def _serve(request: web.Request, handler: Handler, access: PageAccess, lang: str) -> web.StreamResponse:
    gateway, settings = request.app[GATEWAY], request.app[SETTINGS]
    found = await current_session(request, touch=not is_poll(request))
    if found is not None:
        user, session_id = found
        request[USER] = user
        request[SESSION_ID] = session_id
        request[CONTEXT] = PageContext(user, Actor(user.name, user.role), lang, csrf_token(session_id), gateway,
                                       settings)
    else:
        secret = request.cookies.get(ANON_COOKIE)
        if not well_formed(secret):
            secret = new_secret()
            request[NEW_ANON_SECRET] = secret
        assert secret is not None
        request[CONTEXT] = PageContext(None, ANONYMOUS, lang, csrf_token(secret), gateway, settings)
        if not access.public:
            # A session cookie that no longer works: the sign-in page says the session ended.
            target = SIGN_IN + ("?ended=1" if SESSION_COOKIE in request.cookies else "")
            if request.headers.get("HX-Request") == "true":
                # htmx would follow a 303 and swap the sign-in page into the list it refreshes:
                # it loads the whole page instead (and swaps nothing from a 401).
                return web.Response(status=401, headers={"HX-Redirect": target})
            raise web.HTTPSeeOther(target)
    if found is not None and not access.allows(found[0].role):
        user = found[0]
        assert access.permission is not None
        try:
            await gateway.audit_event("auth.forbidden", Actor(user.name, user.role),
                                      {"path": route_template(request), "method": request.method,
                                       "role": user.role, "permission": access.permission.value})
        except GatewayError as exc:
            log.warning("workspace.audit_failed", audit_event="auth.forbidden", error=exc.code)
        gateway.metrics.inc("auth_refusals_total", event="auth.forbidden")
        return error_page(request, 403, msg("Your role may not use this page."))
    response = await handler(request)
    fresh = request.get(NEW_ANON_SECRET)
    if fresh is not None and SESSION_COOKIE not in response.cookies:
        set_cookie(request, response, ANON_COOKIE, fresh)
    return response


async def current_session(request: web.Request, *, touch: bool = True) -> tuple[User, str] | None:
    """The signed-in user and session id of the request, or None; an ended session is deleted
    (and its end audited) on the way. ``touch``: the request is activity (it moves the idle
    deadline); a poll is not."""
    session_id = request.cookies.get(SESSION_COOKIE)
    if not well_formed(session_id):
        return None
    assert session_id is not None
    gateway, settings = request.app[GATEWAY], request.app[SETTINGS]
    id_hash = session_hash(session_id)
    session = await gateway.store.get_web_session(id_hash)
    if session is None:
        return None
    now = gateway.clock()
    user = next((u for u in settings.users if u.name == session.user_name), None)
    ended = _ended(session, user, now, settings)
    if ended is not None:
        await gateway.store.delete_web_session(id_hash)
        await audit_event(request, "workspace.signed_out", Actor(session.user_name, session.role), {"reason": ended})
        return None
    assert user is not None
    if touch:
        await gateway.store.touch_web_session(id_hash, now)
    return user, session_id


def credential_digest(password_hash: str) -> str:
    """What a session keeps of the password hash it signed in with: 16 bytes of its SHA-256."""
    return hashlib.sha256(password_hash.encode("utf-8")).hexdigest()[:32]


def _ended(session: WebSession, user: User | None, now: datetime, settings: Settings) -> str | None:
    """Why the session is over (a reason code), or None while it is valid."""
    if user is None or user.role != session.role or user.password_argon2 is None:
        return "user_changed"
    if not hmac.compare_digest(session.credential, credential_digest(user.password_argon2)):
        return "user_changed"  # the password was changed in the settings
    if now >= session.expires_at:
        return "lifetime"
    if now - session.last_seen_at >= timedelta(minutes=settings.workspace_idle_minutes):
        return "idle"
    return None


async def start_session(request: web.Request, response: web.StreamResponse, user: User) -> None:
    """Sign ``user`` in: a new session (any earlier one of this browser is ended first) and its cookie."""
    gateway, settings = request.app[GATEWAY], request.app[SETTINGS]
    now = gateway.clock()
    old = request.get(SESSION_ID)
    if old is not None:
        await gateway.store.delete_web_session(session_hash(old))
    # Sessions that ended without a visit (browser closed) are forgotten here, at each sign-in.
    await gateway.store.prune_web_sessions(now - timedelta(minutes=settings.workspace_idle_minutes), now)
    session_id = new_secret()
    await gateway.store.add_web_session(WebSession(
        id_hash=session_hash(session_id), user_name=user.name, role=user.role, created_at=now, last_seen_at=now,
        expires_at=now + timedelta(hours=settings.workspace_session_hours),
        credential=credential_digest(user.password_argon2 or "")))
    set_cookie(request, response, SESSION_COOKIE, session_id)
    response.del_cookie(ANON_COOKIE, path=COOKIE_PATH)


async def end_session(request: web.Request, response: web.StreamResponse) -> None:
    """Sign out: forget the session and clear its cookie."""
    session_id = request.get(SESSION_ID)
    if session_id is not None:
        await request.app[GATEWAY].store.delete_web_session(session_hash(session_id))
    response.del_cookie(SESSION_COOKIE, path=COOKIE_PATH)


def secure_cookies(request: web.Request) -> bool:
    """Secure cookies over HTTPS, or always when the settings say a TLS proxy is in front."""
    return request.secure or request.app[SETTINGS].workspace_secure_cookies


def set_cookie(request: web.Request, response: web.StreamResponse, name: str, value: str,
               *, max_age: int | None = None) -> None:
    """A workspace cookie: HttpOnly, SameSite=Strict, Path=/workspace/, Secure when it should be."""
    response.set_cookie(name, value, path=COOKIE_PATH, httponly=True, samesite="Strict",
                        secure=secure_cookies(request), max_age=max_age)


async def audit_event(request: web.Request, event: str, actor: Actor, detail: dict[str, str]) -> None:
    """Append an audit entry; a store outage is logged (code only) and does not fail the page."""
    try:
        await request.app[GATEWAY].audit_event(event, actor, detail)
    except GatewayError as exc:
        log.warning("workspace.audit_failed", audit_event=event, error=exc.code)
