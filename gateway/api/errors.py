"""Errors → JSON: ``{"error": <code>, "detail": <text>}`` with the right HTTP status.

Codes are ``GatewayError.code`` values (stable, machine-readable). A detail names the field
(JSON path or parameter) and the rule, never a submitted value: errors whose own text names
an id, an agency, a purpose or a coded value from the request get a fixed text here
(``SAFE_DETAIL``); the others' texts are written to that rule (gateway/errors.py). 5xx
answers get a fixed text, because an unexpected exception's message was not written with
that rule in mind.
"""

from __future__ import annotations

import re
import traceback
from pathlib import Path
from typing import Any, Awaitable, Callable

import aiohttp.typedefs
import structlog
from aiohttp import web

from gateway.api.responses import json_body
from gateway.i18n import CURRENT, Joined, msg, negotiate, translate
from adapters.base import AdapterError, RecordErrors
from adapters.errors import adapter_detail
from gateway.directory import NoValidKeyError, UnknownAgencyError
from gateway.envelope import RecipientRefusesError
from gateway.at_rest import PayloadShreddedError
from gateway.audit.log import ProofRequestError
from gateway.consent import ConsentRefusedError
from gateway.schema_versions import DowngradeError
from gateway.errors import (
    ConflictError,
    GatewayError,
    InvalidPurposeError,
    NotFoundError,
    OversizeEnvelopeError,
    SchemaInvalidError,
    Violation,
)
from gateway.settings import SettingsError
from gateway.store import MessageConflictError, StoreUnavailableError
from gateway.transport import TransportError

log = structlog.get_logger("gateway.api")

#: Seconds a client should wait before retrying after a 503.
RETRY_AFTER_SECONDS = 5

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
#: aiohttp's own middleware type (a Protocol with named parameters): what
#: web.Application(middlewares=...) accepts; a plain Callable type is not one.
Middleware = aiohttp.typedefs.Middleware


class ApiError(GatewayError):
    """A request the API refuses before it reaches the gateway (bad id, bad query, bad body)."""

    code = "bad_request"

    def __init__(self, status: int, code: str, detail: str, violations: list[Violation] | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.violations = violations
        self.headers = headers or {}


def invalid_request(violations: list[Violation]) -> ApiError:
    """422 for a body whose JSON is fine but whose fields are not (paths like ``$.recipient``)."""
    shown = Joined("; ", (msg("{path}: {message}", path=v.path, message=v.message)
                          for v in dict.fromkeys(redact(v) for v in violations[:5])))
    return ApiError(422, "invalid_request", msg("request body invalid: {shown}", shown=shown), violations)


#: GatewayError classes the API expects, most specific first: (class, status).
STATUS_OF: tuple[tuple[type[GatewayError], int], ...] = (
    (InvalidPurposeError, 400),
    (ProofRequestError, 400),
    (AdapterError, 422),
    (ConsentRefusedError, 422),
    (DowngradeError, 422),
    (PayloadShreddedError, 410),
    (SchemaInvalidError, 422),
    (RecipientRefusesError, 422),
    (UnknownAgencyError, 422),
    (NoValidKeyError, 422),
    (OversizeEnvelopeError, 413),
    (NotFoundError, 404),
    (ConflictError, 409),
    (MessageConflictError, 409),
    (StoreUnavailableError, 503),
    (TransportError, 503),
)

#: What a client is told on 503: the cause in a phrase, never the backend's own text
#: (a store error names a file path, a broker error a host).
UNAVAILABLE_DETAIL: tuple[tuple[type[GatewayError], str], ...] = (
    (StoreUnavailableError, msg("the gateway's store is unavailable; nothing was stored, retry later")),
    (TransportError, msg("the message broker is unavailable; retry later")),
)


#: Errors whose own text quotes what the request named (a message id, a case, the recipient,
#: purposes): the client is told the field and the rule instead. Most specific first.
SAFE_DETAIL: tuple[tuple[type[GatewayError], str], ...] = (
    (UnknownAgencyError, msg("$.recipient: no agency with this id is in the directory")),
    (NoValidKeyError, msg("$.recipient: the directory lists no valid encryption key for this agency")),
    (RecipientRefusesError, msg("$.recipient: the recipient's directory entry does not accept this message "
                                "type for these purposes")),
    (PayloadShreddedError, msg("the payload was shredded (consent withdrawn or retention period over)")),
    (NotFoundError, msg("nothing here has the id in the path")),
    (ConflictError, msg("the message in the path cannot take this (not a referral.request, or already "
                        "answered with another final decision)")),
    (MessageConflictError, msg("a message with this id already exists with other content")),
)


def safe_detail(exc: GatewayError) -> str:
    """The detail of a 4xx answer: the error's text unless it may quote the request."""
    if isinstance(exc, RecordErrors):
        # every problem of the local record, each told the safe way (and translated on its own)
        return Joined("; ", dict.fromkeys(adapter_detail(one) for one in exc.errors))
    if isinstance(exc, AdapterError):
        return adapter_detail(exc)
    for cls, text in SAFE_DETAIL:
        if isinstance(exc, cls):
            return text
    return str(exc)


def status_of(exc: GatewayError) -> int:
    """The HTTP status for a gateway error; 500 for anything not expected here."""
    for cls, status in STATUS_OF:
        if isinstance(exc, cls):
            return status
    return 500


_LAST_STEP = re.compile(r"(?:\.[A-Za-z_][A-Za-z0-9_]*|\[\d+\]|\['(?:[^'\\]|\\.)*'\])$")


def redact(violation: Violation) -> Violation:
    """An unexpected member is reported at its parent object: its name is the client's, not ours."""
    if violation.rule != "additionalProperties":
        return violation
    parent = _LAST_STEP.sub("", violation.path) or "$"
    return Violation(parent, violation.rule, msg("has a property the schema does not allow (names are not echoed)"))


def error_response(status: int, code: str, detail: str, *, violations: list[Violation] | None = None,
                   headers: dict[str, str] | None = None) -> web.Response:
    """The JSON error answer; ``detail`` in the request's language (gateway/i18n.py), code and paths as is."""
    language = CURRENT.get()
    headers = {**(headers or {}), "Content-Language": language, "Vary": "Accept-Language"}
    body: dict[str, Any] = {"error": code, "detail": translate(detail, language)}
    if violations is not None:
        shown = list(dict.fromkeys(redact(v) for v in violations))
        body["violations"] = [{"path": v.path, "rule": v.rule, "message": v.message} for v in shown]
    return json_body(body, status=status, headers=headers)


def response_for(exc: GatewayError) -> web.Response:
    """The JSON error answer for a GatewayError raised by a handler."""
    if isinstance(exc, ApiError):
        return error_response(exc.status, exc.code, exc.detail, violations=exc.violations, headers=exc.headers)
    status = status_of(exc)
    if isinstance(exc, SchemaInvalidError):
        return error_response(422, exc.code, msg("{message_type} payload does not match its schema",
                                                 message_type=exc.message_type),
                              violations=exc.violations)
    if isinstance(exc, DowngradeError):
        return error_response(422, exc.code, msg("the recipient takes schema version 1 only, and version 1 "
                                                 "cannot carry these fields of the {message_type}",
                                                 message_type=exc.message_type),
                              violations=[Violation(f.path, "schema_version", f.reason) for f in exc.fields])
    if status == 503:
        detail = next(text for cls, text in UNAVAILABLE_DETAIL if isinstance(exc, cls))
        return error_response(503, exc.code, detail, headers={"Retry-After": str(RETRY_AFTER_SECONDS)})
    if status == 500:
        if isinstance(exc, SettingsError):
            return error_response(500, exc.code, msg("the gateway is not configured for this request"))
        return error_response(500, exc.code, msg("internal error"))
    return error_response(status, exc.code, safe_detail(exc))


def _frames(exc: BaseException) -> list[str]:
    """Where an exception came from (file:line:function), without its message or locals."""
    frames = traceback.extract_tb(exc.__traceback__)[-6:]
    return [f"{Path(f.filename).name}:{f.lineno}:{f.name}" for f in frames]


def _http_code(exc: web.HTTPException) -> str:
    return {
        400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
        405: "method_not_allowed", 413: "request_too_large", 415: "unsupported_media_type",
    }.get(exc.status, "http_error")


_TOO_LARGE = re.compile(r"^Maximum request body size (\d+) exceeded, actual body size (\d+)$")


def _http_reason(exc: web.HTTPException) -> str:
    """aiohttp's reason as a translatable text (the router's 404/405, the body size limit's 413)."""
    sizes = _TOO_LARGE.match(exc.reason)
    if sizes:
        return msg("Maximum request body size {maximum} exceeded, actual body size {actual}",
                   maximum=sizes[1], actual=sizes[2])
    return {
        "Not Found": msg("Not Found"), "Method Not Allowed": msg("Method Not Allowed"),
        "Unsupported Media Type": msg("Unsupported Media Type"), "Bad Request": msg("Bad Request"),
    }.get(exc.reason, exc.reason)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn every failure into the JSON error shape in the request's language; never echo bodies or tokens."""
    token = CURRENT.set(negotiate(request.headers.get("Accept-Language")))
    try:
        return await _answer(request, handler)
    finally:
        CURRENT.reset(token)


async def _answer(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except GatewayError as exc:
        response = response_for(exc)
        if response.status >= 500:
            # The code and class only: exception texts from deep inside may quote inputs.
            log.warning("http.error", error=exc.code, exc_type=type(exc).__name__, status=response.status)
        return response
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        # aiohttp's own reasons (404, 405, 413 with sizes) carry no request content.
        headers = {k: v for k, v in exc.headers.items() if k.lower() in {"allow", "www-authenticate"}}
        return error_response(exc.status, _http_code(exc), _http_reason(exc), headers=headers)
    except Exception as exc:  # noqa: BLE001 - the last line of defence: a JSON 500, no traceback text
        log.error("http.unhandled", exc_type=type(exc).__name__, where=_frames(exc))
        return error_response(500, "internal_error", msg("internal error"))
