"""The OpenAPI 3.1 description of this API, generated from the app's own router.

Each route's operation is attached to its handler where the route is registered
(``@documented`` in gateway/api/operation.py); building the document fails for a route
without one, and security and roles come from the handlers' access policies, so the
document cannot drift from the code. The answers every route can give (400 for an unknown
or repeated query parameter, 401/403, 413/415 for bodies, 500, 503) are added here, and the
documented query parameters are also the ones the API accepts (``query_rules``); the
documented request body schemas are the ones the API validates bodies with
(gateway/api/bodies.py).

The document is self-contained: the shared v1 and v2 schemas (``schemas/v1/*.schema.json``,
``schemas/v2/*.schema.json``) are bundled into ``components/schemas`` (a v1 file as
``referral.request``, its ``$defs`` entry ``date`` as ``common.date``; v2 ones with a ``v2.``
prefix: ``v2.referral.request``, ``v2.common.date``) and every ``$ref`` points inside the
document, so standard tools need no network or file access.
"""

from __future__ import annotations

import json
from typing import Any, Iterable

from aiohttp import web

from gateway.api import bodies, idempotency
from gateway.api.context import GATEWAY
from gateway.api.operation import documentation_of, documented, error_content as _error, json_content as _json
from gateway.api.operation import schema_ref as _ref
from gateway.api.parse import MAX_BODY_BYTES, QUERY_RULES
from gateway.api.responses import NO_STORE
from gateway.api.roles import page_policy_of, policy_of, public, roles_with
from gateway.schema import SCHEMA_BASE_URIS, SCHEMA_VERSIONS, version_dir

routes = web.RouteTableDef()

OPENAPI_VERSION = "3.1.0"
API_VERSION = "1.0.0"
DOCUMENT = web.AppKey("openapi_document", bytes)
_RETRY = {"Retry-After": {"description": "Seconds to wait before retrying", "schema": {"type": "integer"}}}

#: The component schemas every document has; the others come with the operations that name them.
SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error", "detail"],
        "properties": {
            "error": {"type": "string", "description": "Stable machine-readable code (GatewayError.code)"},
            "detail": {"type": "string", "description": "What went wrong and where; never personal data"},
            "violations": {"type": "array", "items": _ref("Violation")},
        },
    },
    "Violation": {
        "type": "object",
        "required": ["path", "rule", "message"],
        "properties": {
            "path": {"type": "string", "examples": ["$.person.names.given"]},
            "rule": {"type": "string", "description": "JSON Schema keyword", "examples": ["required"]},
            "message": {"type": "string"},
        },
        "additionalProperties": False,
    },
}

_OPENAPI = {
    "summary": "This document",
    "responses": {"200": {"description": "OpenAPI 3.1 document",
                          "content": {"application/json": {"schema": {"type": "object"}}}}},
}



def _shared_component_name(file_stem: str, def_name: str | None = None, version: str = "1") -> str:
    prefix = "" if version == "1" else f"v{version}."
    return prefix + (file_stem if def_name is None else f"{file_stem}.{def_name}")


def shared_component(message_type: str, version: str) -> str:
    """The component name of a shared schema file: ``referral.request`` (v1), ``v2.referral.request``."""
    return _shared_component_name(message_type, None, version)


def shared_components() -> dict[str, Any]:
    """The shared v1 and v2 schemas as components: each file under its message type (``common``
    for common.schema.json), each ``$defs`` entry as ``<file>.<name>``, v2 ones prefixed ``v2.``;
    $refs rewritten to ``#/``."""
    out: dict[str, Any] = {}
    for version in SCHEMA_VERSIONS:
        for path in sorted(version_dir(version).glob("*.schema.json")):
            stem = path.name.removesuffix(".schema.json")
            doc = json.loads(path.read_text(encoding="utf-8"))
            defs = doc.pop("$defs", {})
            for key in ("$id", "$schema"):  # an $id would re-base every "#/..." below it
                doc.pop(key, None)
            named = [(_shared_component_name(stem, None, version), doc),
                     *((_shared_component_name(stem, d, version), n) for d, n in defs.items())]
            for name, node in named:
                if name in out:
                    raise ValueError(f"shared schema component {name} is defined twice")
                out[name] = _rewrite_refs(node, stem, version)
    return out


def _internal_ref(ref: str, here: str, version: str = "1") -> str:
    """A $ref of a shared schema (relative, by $id, or into another file) as a ``#/components`` ref."""
    target, _, fragment = ref.partition("#")
    for known, base_uri in SCHEMA_BASE_URIS.items():
        if target.startswith(base_uri):
            target, version = target[len(base_uri):], known
    if target:
        if not target.endswith(".schema.json"):
            return ref  # not one of ours: left alone (and the self-containment test would say so)
        stem = target.removesuffix(".schema.json")
    elif here:
        stem = here  # "#/..." inside a shared file: that file's component
    else:
        return ref  # already inside this document
    base = "#/components/schemas/"
    if fragment.startswith("/$defs/"):
        name, _, rest = fragment[len("/$defs/"):].partition("/")
        return base + _shared_component_name(stem, name, version) + (f"/{rest}" if rest else "")
    return base + _shared_component_name(stem, None, version) + fragment


def _rewrite_refs(node: Any, here: str, version: str = "1") -> Any:
    if isinstance(node, dict):
        return {k: (_internal_ref(v, here, version) if k == "$ref" and isinstance(v, str)
                    else _rewrite_refs(v, here, version))
                for k, v in node.items()}
    if isinstance(node, list):
        return [_rewrite_refs(v, here, version) for v in node]
    return node


#: Answers every operation can give, added where an operation does not describe them itself.
_BAD_QUERY = _error("invalid_query: an unknown or repeated query parameter (or a bad value); the detail names "
                    "the parameter and the rule, never the value")
_BODY_STATUSES = {
    "400": _error("The body is not strict JSON (invalid_json)"),
    "413": _error(f"The body is larger than {MAX_BODY_BYTES} bytes (request_too_large)"),
    "415": _error("The body is not application/json in UTF-8 (unsupported_media_type)"),
    "422": _error("The body breaks a rule (the detail and violations name the JSON path and the rule)"),
}
#: Operations that answer without the store or the broker (no 503).
_NO_BACKEND = {"health.live", "health.ready", "metrics", "openapi", "auditor.page"}


def _complete(name: str, operation: dict[str, Any], protected: bool) -> None:
    """Add the answers every route of its kind can give, so the document lists each status."""
    responses = operation["responses"]
    responses.setdefault("400", _BAD_QUERY)
    if "requestBody" in operation:
        for status, response in _BODY_STATUSES.items():
            responses.setdefault(status, response)
    if protected:
        responses["401"] = {"$ref": "#/components/responses/Unauthorized"}
        responses["403"] = {"$ref": "#/components/responses/Forbidden"}
    if name not in _NO_BACKEND:
        responses.setdefault("503", _json(_ref("Error"), "store_unavailable or broker unavailable; retry later",
                                          _RETRY))
    responses.setdefault("500", {"$ref": "#/components/responses/InternalError"})
    operation["responses"] = dict(sorted(responses.items()))


def _head(operation: dict[str, Any], name: str) -> dict[str, Any]:
    """HEAD of a GET operation: the same checks, statuses and headers, no body."""
    head = {k: v for k, v in operation.items() if k not in {"responses", "operationId", "summary"}}
    head["operationId"] = f"{name}.head"
    head["summary"] = "Headers only: " + operation.get("summary", name)
    head["responses"] = {status: ({"description": r["description"], **({"headers": r["headers"]} if "headers" in r
                                                                       else {})} if "$ref" not in r else r)
                         for status, r in operation["responses"].items()}
    return head


def build_document(app_routes: Iterable[web.AbstractRoute], *, agency_id: str) -> dict[str, Any]:
    """The OpenAPI document for these routes, from the operations their handlers carry;
    KeyError names a route whose handler was never ``@documented``."""
    paths: dict[str, dict[str, Any]] = {}
    heads: list[tuple[str, str]] = []
    schemas: dict[str, Any] = dict(SCHEMAS)
    for route in app_routes:
        resource = route.resource
        if resource is None or route.method == "*" or page_policy_of(route.handler) is not None:
            continue  # workspace pages (gateway/workspace) are not the API
        name = resource.name or ""
        if route.method == "HEAD":
            heads.append((resource.canonical, name))
            continue
        documentation = documentation_of(route.handler)
        if documentation is None:
            raise KeyError(f"route {route.method} {resource.canonical} ({name}) has no OpenAPI operation")
        for schema_name, schema in documentation.schemas.items():
            if schemas.setdefault(schema_name, schema) != schema:
                raise ValueError(f"component schema {schema_name} is described twice, differently")
        operation = json.loads(json.dumps(documentation.operation))  # a private copy per document
        operation["operationId"] = name
        if name in idempotency.ROUTES:  # the Idempotency-Key header (gateway/api/idempotency.py)
            idempotency.describe(operation)
        access = policy_of(route.handler)
        protected = not (access is None or access.public)
        if not protected:
            operation["security"] = []
        else:
            assert access is not None and access.permission is not None
            operation["security"] = [{"bearer": []}]
            operation["x-roles"] = roles_with(access.permission)
            operation["description"] = (operation.get("description", "") + "\n\nRoles: "
                                        + ", ".join(operation["x-roles"]) + ".").strip()
        _complete(name, operation, protected)
        paths.setdefault(resource.canonical, {})[route.method.lower()] = operation
    for canonical, name in heads:
        paths[canonical]["head"] = _head(paths[canonical]["get"], name)
    document = {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": f"Referral gateway API ({agency_id})",
            "version": API_VERSION,
            "description": "HTTP API of one agency's referral gateway: queue referrals to other agencies, read and "
                           "answer received ones, follow delivery. Payload schemas are the shared v1 schemas, "
                           "bundled below (schemas/v1/). Every error is JSON {\"error\", \"detail\"} and never "
                           "echoes a submitted value. See docs/api.md.",
        },
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": {**schemas, **shared_components()},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                           "description": "Per-user token; the gateway stores only its SHA-256"}},
            "responses": {
                "Unauthorized": {**_error("Missing or invalid bearer token (audited as auth.failed)"),
                                 "headers": {"WWW-Authenticate": {"schema": {"type": "string"}}}},
                "Forbidden": _error("The user's role may not do this (audited as auth.forbidden)"),
                "InternalError": _error("internal_error: an unexpected failure (the detail says no more)"),
            },
        },
        "security": [{"bearer": []}],
    }
    # Operations and component schemas name payload schemas by $id: point them inside.
    return _rewrite_refs(document, "")


def query_rules(document: dict[str, Any]) -> dict[str, tuple[tuple[str, ...], tuple[str, ...]]]:
    """Route name → (query parameters it takes, those that may be repeated), as documented."""
    rules: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {}
    for ops in document["paths"].values():
        for method, operation in ops.items():
            if method == "head":
                continue
            params = [p for p in operation.get("parameters", []) if p.get("in") == "query"]
            rules[operation["operationId"]] = (
                tuple(p["name"] for p in params),
                tuple(p["name"] for p in params if p.get("schema", {}).get("type") == "array"))
    return rules


@routes.get("/openapi.json", name="openapi", allow_head=True)
@documented(_OPENAPI)
@public
async def openapi(request: web.Request) -> web.Response:
    return web.Response(body=request.app[DOCUMENT], content_type="application/json", headers=NO_STORE)


def install(app: web.Application) -> None:
    """Build the document once from the finished router (call after every route is added), and
    the query parameter rules the API enforces from it."""
    document = build_document(app.router.routes(), agency_id=app[GATEWAY].agency_id)
    app[DOCUMENT] = json.dumps(document, ensure_ascii=False, indent=1).encode("utf-8")
    app[QUERY_RULES] = query_rules(document)
    app[bodies.BODY_RULES] = bodies.body_rules(document, frozenset(shared_components()))

