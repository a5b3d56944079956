"""The ``Idempotency-Key`` request header of the POSTs that create something (docs/api.md).

Same key + same request (same agency, route, user, path parameters and JSON body, compared
as the SHA-256 of their RFC 8785 canonical JSON) → the same answer, replayed from the
store, for at least the message lifetime. Same key + another request → 422
``idempotency_key_reused``. The store keeps hashes and the answer only (ids and codes):
never the key, the user or the body.

Exactly once: the key is claimed in the store before the handler runs; the handler gets a
``seed`` derived from the claim, from which it derives the id of what it creates, so a
retry after a crash between "created" and "answer recorded" re-derives the same id and
the outbox (unique id) hands back the message created the first time instead of a second.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Awaitable, Callable

import structlog
from aiohttp import web

from gateway.api.context import USER, gateway_of
from gateway.api.errors import ApiError, status_of
from gateway.api.responses import json_body
from gateway.canonical import canonical_bytes
from gateway.clock import format_ts
from gateway.errors import GatewayError
from gateway.store import IdempotencyRecord
from gateway.i18n import msg

log = structlog.get_logger("gateway.api.idempotency")

HEADER = "Idempotency-Key"
#: Visible ASCII, no spaces: UUIDs, ULIDs and random tokens fit; 128 characters at most.
KEY = re.compile(r"^[\x21-\x7e]{1,128}$")
#: Set on an answer replayed from the store rather than made now.
REPLAYED_HEADER = "Idempotent-Replayed"


@dataclass(frozen=True)
class Answer:
    """What a creating handler answers: status, JSON body, and the Location header."""

    status: int
    body: dict[str, Any]
    location: str | None = None


Create = Callable[[str | None], Awaitable[Answer]]


def request_key(request: web.Request) -> str | None:
    """The request's Idempotency-Key, or None without one; 400 if repeated or malformed."""
    values = request.headers.getall(HEADER, [])
    if not values:
        return None
    if len(values) > 1:
        raise ApiError(400, "invalid_idempotency_key",
                       msg("the {header} header must be given at most once", header=HEADER))
    if not KEY.fullmatch(values[0]):
        raise ApiError(400, "invalid_idempotency_key",
                       msg("the {header} header must be 1 to 128 visible ASCII characters (0x21-0x7E, no spaces)",
                           header=HEADER))
    return values[0]


def _sha256(*parts: bytes) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(len(part).to_bytes(4, "big") + part)  # length-prefixed: no ambiguity between parts
    return digest.hexdigest()


def key_hash(agency: str, route: str, user: str, key: str) -> str:
    """The stored name of a key: scoped to the agency, the route and the authenticated user."""
    return _sha256(b"rgw-idempotency-v1", agency.encode(), route.encode(), user.encode(), key.encode())


def request_hash(route: str, path: dict[str, str], body: dict[str, Any]) -> str:
    """What "the same request" means: the route, its path parameters and the JSON body, as
    RFC 8785 canonical JSON (member order, whitespace and number spelling do not matter)."""
    return _sha256(b"rgw-request-v1", canonical_bytes({"route": route, "path": path, "body": body}))


def _send(answer: Answer, *, replayed: bool) -> web.Response:
    headers = {"Location": answer.location} if answer.location else {}
    if replayed:
        headers[REPLAYED_HEADER] = "true"
    return json_body(answer.body, status=answer.status, headers=headers)


def _stored(record: IdempotencyRecord) -> Answer:
    assert record.status_code is not None and record.response_json is not None
    stored = json.loads(record.response_json)
    return Answer(record.status_code, stored["body"], stored.get("location"))


async def idempotent(request: web.Request, *, path: dict[str, str], body: dict[str, Any],
                     create: Create) -> web.Response:
    """Run ``create`` at most once per Idempotency-Key (always, without one) and answer.

    ``create`` gets a seed (None without a key) to derive the ids of what it creates from.
    A refusal (4xx) created nothing: the claim is released so the key can be used for a
    corrected request. A failure (5xx, a crash, a lost connection) may have created
    something: the claim stays, and only the same request may retry it.
    """
    key = request_key(request)
    if key is None:
        return _send(await create(None), replayed=False)
    gateway = gateway_of(request)
    route = request.match_info.route.name or "unnamed"
    now = gateway.clock()
    claim = IdempotencyRecord(
        key_hash=key_hash(gateway.agency_id, route, request[USER].name, key), route=route,
        request_hash=request_hash(route, path, body), created_at=now,
        expires_at=now + timedelta(days=gateway.settings.message_lifetime_days))
    held = await gateway.store.claim_idempotency_key(claim)
    if held.request_hash != claim.request_hash:
        raise ApiError(422, "idempotency_key_reused",
                       msg("this {header} was already used for a different request on this route; a key names one "
                           "request (same path and JSON body): send a new key for a new request", header=HEADER))
    if held.completed:
        log.info("idempotency.replayed", route=route)
        return _send(_stored(held), replayed=True)
    # The claim's own creation time makes the seed: every retry of this claim derives the
    # same ids, and a key reused after expiry gets new ones.
    seed = f"{held.key_hash}|{format_ts(held.created_at)}"
    try:
        answer = await create(seed)
    except GatewayError as exc:
        status = exc.status if isinstance(exc, ApiError) else status_of(exc)
        if status < 500:
            await gateway.store.release_idempotency_key(held.key_hash, held.request_hash)
        raise
    done = await gateway.store.complete_idempotency_key(IdempotencyRecord(
        key_hash=held.key_hash, route=route, request_hash=held.request_hash, created_at=held.created_at,
        expires_at=held.expires_at, status_code=answer.status, completed_at=gateway.clock(),
        response_json=json.dumps({"body": answer.body, "location": answer.location}, sort_keys=True,
                                 separators=(",", ":"), ensure_ascii=False)))
    # A concurrent request with the same key may have answered first: send that answer.
    return _send(_stored(done) if done.completed else answer, replayed=False)


#: The operations (route names) that take the header; their OpenAPI entries get it added.
ROUTES = ("referrals.submit", "inbox.respond", "cases.withdraw")

PARAMETER = {
    "name": HEADER, "in": "header", "required": False,
    "description": "Makes a retry safe: the same key with the same request (path and JSON body, compared as "
                   "RFC 8785 canonical JSON) gets the first answer again (same status, message ids and body, "
                   f"with {REPLAYED_HEADER}: true) for at least the message lifetime; the same key with another "
                   "request gets 422 idempotency_key_reused. Scoped per agency, route and user. See docs/api.md.",
    "schema": {"type": "string", "minLength": 1, "maxLength": 128, "pattern": KEY.pattern},
}


def describe(operation: dict[str, Any]) -> None:
    """Add the header, its errors and the replay marker to one OpenAPI operation (in place)."""
    operation.setdefault("parameters", []).append(PARAMETER)
    responses = operation["responses"]
    error = {"$ref": "#/components/schemas/Error"}
    for status, text in (("400", f"invalid_idempotency_key: the {HEADER} header is malformed or repeated"),
                         ("422", f"idempotency_key_reused: the {HEADER} was used for a different request")):
        if status in responses:
            responses[status]["description"] += f"; {text}"
        else:
            responses[status] = {"description": text, "content": {"application/json": {"schema": error}}}
    for status, response in responses.items():
        if status.startswith("2"):
            response.setdefault("headers", {})[REPLAYED_HEADER] = {
                "description": f"true when the answer is replayed for a repeated {HEADER}",
                "schema": {"type": "string", "enum": ["true"]}}
