"""The OpenAPI operation of a route, attached to its handler where the route is registered.

``@documented(operation, schemas=...)`` goes between ``@routes.get(...)`` and the access
policy (``@requires``/``@public``)::

    @routes.post("/referrals", name="referrals.submit")
    @documented(SUBMIT, schemas={"Submission": SUBMISSION})
    @requires(Permission.SUBMIT)
    async def submit(request): ...

``gateway/api/openapi.py`` builds the document from the app's router: each route's handler
carries its operation and the component schemas it names, so a route cannot be served
without being described, and nothing is merged into a global at import time. A leaf module:
the resource modules import it, it imports none of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, TypeVar

from gateway.envelope import CASE_REF, UUID_TEXT
from gateway.schema import schema_id
from gateway.transport.base import AGENCY_ID_RE

H = TypeVar("H", bound=Callable[..., Any])
_ATTR = "__gateway_openapi__"


@dataclass(frozen=True)
class Documented:
    """One route's OpenAPI operation (without operationId, security and roles, which the
    document adds) and the ``components/schemas`` entries it refers to."""

    operation: dict[str, Any]
    schemas: dict[str, Any] = field(default_factory=dict)


def documented(operation: dict[str, Any], *, schemas: dict[str, Any] | None = None) -> Callable[[H], H]:
    """Attach ``operation`` (and the component ``schemas`` it names) to a route's handler."""
    def mark(handler: H) -> H:
        setattr(handler, _ATTR, Documented(operation, dict(schemas or {})))
        return handler
    return mark


def documentation_of(handler: Any) -> Documented | None:
    """What a handler was documented with, or None if it never was."""
    found = getattr(handler, _ATTR, None)
    return found if isinstance(found, Documented) else None


# --- building blocks shared by the resource modules' operations ---------------------------


def versioned_payload(message_type: str) -> dict[str, Any]:
    """A payload of either schema version: one with ``schema_version`` is checked as v2, else as v1."""
    return {"if": {"required": ["schema_version"]},
            "then": {"$ref": schema_id(message_type, "2")}, "else": {"$ref": schema_id(message_type, "1")}}


def schema_ref(name: str) -> dict[str, str]:
    """A reference to a component schema of the document."""
    return {"$ref": f"#/components/schemas/{name}"}


def json_content(schema: dict[str, Any], description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    """A response with a JSON body of ``schema``."""
    out: dict[str, Any] = {"description": description, "content": {"application/json": {"schema": schema}}}
    if headers:
        out["headers"] = headers
    return out


def error_content(description: str) -> dict[str, Any]:
    """An error response (the Error schema)."""
    return json_content(schema_ref("Error"), description)


def json_request(schema: dict[str, Any], examples: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """A required JSON request body of ``schema``, with named examples (``summary`` and ``value``)."""
    return {"required": True, "content": {"application/json": {"schema": schema, "examples": examples}}}


UUID_SCHEMA: dict[str, Any] = {"type": "string", "format": "uuid", "pattern": UUID_TEXT.pattern}
AGENCY_SCHEMA: dict[str, Any] = {"type": "string", "pattern": AGENCY_ID_RE.pattern, "examples": ["NG-NAPTIP"]}
CASE_REF_SCHEMA: dict[str, Any] = {"type": "string", "pattern": CASE_REF.pattern,
                                   "description": "Case pseudonym (never a local case id)"}
TIME_SCHEMA: dict[str, Any] = {"type": "string", "format": "date-time", "examples": ["2026-03-06T10:15:00Z"]}
LOCATION_HEADER: dict[str, Any] = {"Location": {"description": "The status resource of the queued message",
                                                "schema": {"type": "string"}}}
RETRY_HEADER: dict[str, Any] = {"Retry-After": {"description": "Seconds to wait before retrying",
                                                "schema": {"type": "integer"}}}
ID_PARAM: dict[str, Any] = {"name": "id", "in": "path", "required": True,
                            "description": "Message id (lower-case UUID)", "schema": UUID_SCHEMA}


def page_param(name: str, default: int, maximum: int) -> dict[str, Any]:
    """An integer paging query parameter (``limit`` from 1, ``offset`` from 0)."""
    return {"name": name, "in": "query", "required": False,
            "schema": {"type": "integer", "minimum": 0 if name == "offset" else 1, "maximum": maximum,
                       "default": default}}
