"""Bearer-token authentication and role checks, as one middleware.

``authenticate`` and ``authorize`` decide and do no I/O; the middleware does the I/O:
it audits every refusal (``auth.failed`` for 401, ``auth.forbidden`` for 403) with the
route template and method, never the token, a hash of it, or the query string.
"""

from __future__ import annotations

import enum
from typing import Iterable

import structlog
from aiohttp import web

from gateway.actors import Actor
from gateway.api.context import GATEWAY, USER, route_template
from gateway.api.errors import Handler, Middleware, error_response
from gateway.api.roles import Access, allowed, page_policy_of, policy_of
from gateway.errors import GatewayError
from gateway.settings import User
from gateway.i18n import msg

log = structlog.get_logger("gateway.api")

#: Audit actor of a request whose token matched no user.
ANONYMOUS = Actor("anonymous", "none")
#: Tokens longer than this are refused without hashing (nobody is issued one).
MAX_TOKEN_CHARS = 512
CHALLENGE = {"WWW-Authenticate": 'Bearer realm="referral-gateway"'}


class AuthFailure(enum.Enum):
    """Why a request could not be authenticated (recorded in the audit entry)."""

    MISSING = "missing_token"  # no Authorization header
    MALFORMED = "malformed_header"  # not "Bearer <token>"
    INVALID = "invalid_token"  # matches no user


def authenticate(header: str | None, users: Iterable[User]) -> User | AuthFailure:
    """The user whose token is in an ``Authorization: Bearer`` header, or why there is none."""
    if header is None:
        return AuthFailure.MISSING
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or len(token) > MAX_TOKEN_CHARS or " " in token:
        return AuthFailure.MALFORMED
    # Compare with every user, not stopping at the first match, so timing does not tell
    # an attacker how far down the list a token's user is.
    matches = [user for user in users if user.matches(token)]
    return matches[0] if matches else AuthFailure.INVALID


def authorize(user: User, access: Access) -> bool:
    """True if ``user`` may use a route with this policy."""
    return access.public or (access.permission is not None and allowed(user.role, access.permission))


def auth_middleware(users: tuple[User, ...]) -> Middleware:
    """Authenticate and authorize every matched route by its handler's policy."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.match_info.http_exception is not None:
            return await handler(request)  # 404/405 from the router: nothing to protect
        if page_policy_of(request.match_info.handler) is not None:
            # A workspace page: sessions, not bearer tokens (gateway/workspace/session.py enforces it).
            return await handler(request)
        access = policy_of(request.match_info.handler)
        if access is None:
            # Fail closed: a route added without @requires/@public is reachable by nobody.
            log.error("auth.route_without_policy", route=route_template(request))
            return error_response(500, "internal_error", msg("internal error"))
        if access.public:
            return await handler(request)
        outcome = authenticate(request.headers.get("Authorization"), users)
        if isinstance(outcome, AuthFailure):
            await _audit(request, "auth.failed", ANONYMOUS, {"reason": outcome.value})
            return error_response(401, "unauthorized", msg("a valid bearer token is required"), headers=CHALLENGE)
        if not authorize(outcome, access):
            assert access.permission is not None
            await _audit(request, "auth.forbidden", Actor(outcome.name, outcome.role),
                         {"role": outcome.role, "permission": access.permission.value})
            request[USER] = outcome  # the access log names who was refused
            return error_response(403, "forbidden", msg("role {role} may not {permission}", role=outcome.role,
                                                                   permission=access.permission.value))
        request[USER] = outcome
        return await handler(request)

    return middleware


async def _audit(request: web.Request, event: str, actor: Actor, extra: dict[str, str]) -> None:
    gateway = request.app[GATEWAY]
    detail = {"path": route_template(request), "method": request.method, **extra}
    try:
        await gateway.audit_event(event, actor, detail)
    except GatewayError as exc:
        # The request is refused either way; a store outage must not turn 401 into 500.
        log.warning("auth.audit_failed", audit_event=event, error=exc.code)
    gateway.metrics.inc("auth_refusals_total", event=event)
