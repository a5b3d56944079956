"""Parse request input once, at the edge: path ids, query parameters, JSON bodies.

Failures raise :class:`ApiError` whose texts name the parameter or JSON path and the
rule, never the value sent (a body or a query may carry personal data).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from aiohttp import web
from multidict import MultiMapping

from gateway.api.errors import ApiError
from gateway.api.roles import page_policy_of
from gateway.envelope import CASE_REF
from gateway.canonical import MAX_JSON_DEPTH, strict_loads
from gateway.errors import DuplicateKeyError, NestingTooDeepError
from gateway.i18n import msg

#: Largest request body the API reads (aiohttp answers 413 past it). The largest payload
#: that may be sealed is 64 KiB of canonical JSON; this leaves room for whitespace.
MAX_BODY_BYTES = 256 * 1024
JSON_TYPES = {"application/json"}
#: The only request body charset: JSON is UTF-8 (RFC 8259); an absent charset means UTF-8.
CHARSETS = {None, "utf-8", "utf8"}


def message_id(request: web.Request, name: str = "id") -> str:
    """A path id as a canonical (lower-case, hyphenated) UUID, else 400."""
    raw = request.match_info[name]
    try:
        ok = str(uuid.UUID(raw)) == raw
    except ValueError:
        ok = False
    if not ok:
        raise ApiError(400, "invalid_id", msg("path parameter {name} must be a lower-case hyphenated UUID", name=name))
    return raw


def case_ref(request: web.Request, name: str = "case_ref") -> str:
    """A path case pseudonym (8-64 of A-Z a-z 0-9 . _ -), else 400 ``invalid_id``."""
    raw = request.match_info[name]
    if not CASE_REF.fullmatch(raw):
        raise ApiError(400, "invalid_id", msg("path parameter {name} must be a case pseudonym (8 to 64 of "
                                              "A-Z a-z 0-9 . _ -)", name=name))
    return raw


def allow_only(query: MultiMapping[str], allowed: Iterable[str], *, repeatable: Iterable[str] = ()) -> None:
    """400 ``invalid_query`` for a parameter this route does not take, or a single-valued one given twice.

    An unknown name is refused instead of ignored (a mistyped filter must not silently widen
    an answer), and a repeated one instead of reading the first (``?purpose=a&purpose=b``
    must not audit only ``a``). Neither the unknown name nor any value is echoed."""
    allowed, repeatable = tuple(allowed), frozenset(repeatable)
    for name in set(query.keys()):
        if name not in allowed:
            takes = ", ".join(allowed) if allowed else msg("no query parameters")
            raise ApiError(400, "invalid_query", msg("unknown query parameter; this route takes: {takes}", takes=takes))
        if name not in repeatable and len(query.getall(name)) > 1:
            raise ApiError(400, "invalid_query", msg("query parameter {name} must be given at most once", name=name))


def int_query(query: Mapping[str, str], name: str, *, default: int, minimum: int, maximum: int) -> int:
    """An optional integer parameter in minimum..maximum (``default`` when absent), else 400."""
    raw = query.get(name)
    if raw is None:
        return default
    # The length bound keeps int() off huge inputs: 9 digits, or as many as maximum has.
    digits = max(9, len(str(maximum)))
    if not (raw.isascii() and raw.isdigit() and len(raw) <= digits) or not minimum <= int(raw) <= maximum:
        raise ApiError(400, "invalid_query", msg("query parameter {name} must be an integer from {minimum} to "
                                                 "{maximum}", name=name, minimum=minimum, maximum=maximum))
    return int(raw)


def required_int_query(query: Mapping[str, str], name: str, *, minimum: int, maximum: int) -> int:
    """A required integer parameter in minimum..maximum: 400 ``missing_parameter`` when absent."""
    if name not in query:
        raise ApiError(400, "missing_parameter", msg("query parameter {name} is required", name=name))
    return int_query(query, name, default=minimum, minimum=minimum, maximum=maximum)


def choice_query(query: Mapping[str, str], name: str, choices: Iterable[str], *,
                 required: bool = False) -> str | None:
    """An optional (or required) parameter that must be one of ``choices``, else 400."""
    raw = query.get(name)
    if raw is None:
        if required:
            raise ApiError(400, "missing_parameter", msg("query parameter {name} is required", name=name))
        return None
    choices = frozenset(choices)
    if raw not in choices:
        raise ApiError(400, "invalid_query", msg("query parameter {name} must be one of: {choices}", name=name,
                                                  choices=", ".join(sorted(choices))))
    return raw


def text_query(query: Mapping[str, str], name: str, *, max_chars: int) -> str:
    """A required free-text parameter: 1..max_chars printable characters after trimming."""
    raw = query.get(name)
    if raw is None or not raw.strip():
        raise ApiError(400, "missing_parameter", msg("query parameter {name} is required", name=name))
    value = raw.strip()
    if len(value) > max_chars or not value.isprintable():
        raise ApiError(400, "invalid_query",
                       msg("query parameter {name} must be at most {max_chars} printable characters", name=name,
                           max_chars=max_chars))
    return value


async def json_object(request: web.Request) -> dict[str, Any]:
    """The request body as a JSON object: 415 for another media type or a charset other than
    UTF-8, 413 past the size limit (raised by aiohttp while reading), 400 for bytes that are
    not strict JSON."""
    if request.content_type not in JSON_TYPES:
        # Also keeps cross-site HTML forms out: they cannot send application/json.
        raise ApiError(415, "unsupported_media_type", msg("the request body must be application/json"))
    charset = request.charset.lower() if request.charset else None
    if charset not in CHARSETS:
        # Decoding latin-1 bytes as UTF-8 would store other text than the client meant.
        raise ApiError(415, "unsupported_media_type",
                       msg("the request body must be UTF-8 (charset=utf-8 or no charset)"))
    data = await request.read()
    try:
        value = strict_loads(data)
    except UnicodeDecodeError:
        raise ApiError(400, "invalid_json", msg("the request body is not UTF-8")) from None
    except ValueError as exc:
        raise ApiError(400, "invalid_json", msg("the request body is not valid JSON: {problem}",
                                                  problem=_json_problem(exc))) from None
    except RecursionError:
        raise ApiError(400, "invalid_json", msg("the request body is nested too deeply")) from None
    if not isinstance(value, dict):
        raise ApiError(400, "invalid_json", msg("the request body must be a JSON object"))
    return value


def _json_problem(exc: ValueError) -> str:
    # json.JSONDecodeError.msg and the position never quote the document. A duplicate member
    # name would be quoted by DuplicateKeyError, so it is described without the name.
    msg = getattr(exc, "msg", None)
    if msg is not None:
        return f"{msg} at line {exc.lineno} column {exc.colno}"  # type: ignore[attr-defined]
    if isinstance(exc, DuplicateKeyError):
        return "an object has the same member name twice"
    if isinstance(exc, NestingTooDeepError):
        return f"arrays and objects nest deeper than {MAX_JSON_DEPTH} levels"
    if "constant" in str(exc):
        return "NaN and Infinity are not JSON"
    return "unparseable"


#: Route name → (query parameters it takes, those that may repeat); built from the OpenAPI
#: document (gateway/api/openapi.py ``query_rules``), so what is refused is what is documented.
QUERY_RULES = web.AppKey("query_rules", dict)


@web.middleware
async def query_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    """Refuse unknown and repeated query parameters on every route, as documented (400)."""
    if (request.match_info.http_exception is None and request.query
            and page_policy_of(request.match_info.handler) is None):  # pages check their own (gateway/workspace)
        resource = getattr(request.match_info.route, "resource", None)
        rules = request.app[QUERY_RULES].get(getattr(resource, "name", None))
        allowed, repeatable = rules if rules is not None else ((), ())
        allow_only(request.query, allowed, repeatable=repeatable)
    return await handler(request)
