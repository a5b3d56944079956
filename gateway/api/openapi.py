"""The OpenAPI 3.1 description of this API, generated from the app's own router.

Every route the app has must have an entry in ``OPERATIONS`` (building the document fails
otherwise), and security and roles come from the handlers' access policies, so the
document cannot drift from the code. The answers every route can give (400 for an unknown
or repeated query parameter, 401/403, 413/415 for bodies, 500, 503) are added here, and the
documented query parameters are also the ones the API accepts (``query_rules``).

The document is self-contained: the shared v1 schemas (``schemas/v1/*.schema.json``) are
bundled into ``components/schemas`` (a file as ``referral.request``, its ``$defs`` entry
``date`` as ``common.date``) and every ``$ref`` points inside the document, so standard tools
need no network or file access.
"""

from __future__ import annotations

import json
from typing import Any, Iterable

from aiohttp import web

from gateway.api.context import GATEWAY
from gateway.api.inbox import DEFAULT_PAGE, MAX_PAGE
from gateway.api.parse import MAX_BODY_BYTES, QUERY_RULES
from gateway.api.referrals import DEFAULT_TYPE, MAX_LOCAL_CASE_ID, SUBMITTABLE_TYPES
from gateway.api.responses import NO_STORE
from gateway.api.roles import policy_of, public, roles_with
from gateway.envelope import CASE_REF, UUID_TEXT
from adapters.registry import available_formats
from gateway.schema import MESSAGE_TYPES, PURPOSES, SCHEMA_BASE_URI, SCHEMA_DIR, schema_id
from gateway.service import READ_PURPOSES
from gateway.store import INCOMING_STATUSES, OUTGOING_STATUSES
from gateway.transport.base import AGENCY_ID_RE

routes = web.RouteTableDef()

OPENAPI_VERSION = "3.1.0"
API_VERSION = "1.0.0"
DOCUMENT = web.AppKey("openapi_document", bytes)


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"description": description, "content": {"application/json": {"schema": schema}}}
    if headers:
        out["headers"] = headers
    return out


def _error(description: str) -> dict[str, Any]:
    return _json(_ref("Error"), description)


_RESPONSE_ID = schema_id("referral.response")
_UUID = {"type": "string", "format": "uuid", "pattern": UUID_TEXT.pattern}
_AGENCY = {"type": "string", "pattern": AGENCY_ID_RE.pattern, "examples": ["NG-NAPTIP"]}
_CASE_REF = {"type": "string", "pattern": CASE_REF.pattern, "description": "Case pseudonym (never a local case id)"}
_TIME = {"type": "string", "format": "date-time", "examples": ["2026-03-06T10:15:00Z"]}
_LOCATION = {"Location": {"description": "The status resource of the queued message", "schema": {"type": "string"}}}
_RETRY = {"Retry-After": {"description": "Seconds to wait before retrying", "schema": {"type": "integer"}}}


def _payload_by_type() -> list[dict[str, Any]]:
    """``payload`` must match the shared schema of ``message_type`` (default referral.request)."""
    rules: list[dict[str, Any]] = [{
        "if": {"not": {"required": ["message_type"]}},
        "then": {"properties": {"payload": {"$ref": schema_id(DEFAULT_TYPE)}}},
    }]
    for message_type in SUBMITTABLE_TYPES:
        rules.append({
            "if": {"required": ["message_type"], "properties": {"message_type": {"const": message_type}}},
            "then": {"properties": {"payload": {"$ref": schema_id(message_type)}}},
        })
    return rules


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
    "Submission": {
        "type": "object",
        "description": "A message to queue. Exactly one of case_ref and local_case_id: a local id is turned into "
                       "the case pseudonym for the recipient's country and never leaves this gateway.",
        "required": ["recipient"],
        "properties": {
            "recipient": _AGENCY,
            "case_ref": _CASE_REF,
            "local_case_id": {"type": "string", "minLength": 1, "maxLength": MAX_LOCAL_CASE_ID},
            "message_type": {"type": "string", "enum": list(SUBMITTABLE_TYPES), "default": DEFAULT_TYPE},
            "payload": {"type": "object", "description": "Validated against the shared schema of message_type"},
            "format": {"type": "string", "enum": list(available_formats()),
                       "description": "Instead of payload: the local format of `record` (see docs/adapters.md)"},
            "record": {"type": "object", "description": "A referral.request in the agency's local format"},
            "purposes": {"type": "array", "minItems": 1, "items": {"type": "string", "enum": list(PURPOSES)},
                         "description": "With a local record: the purposes to send (default: the record's own)"},
        },
        "additionalProperties": False,
        "oneOf": [{"required": ["case_ref"]}, {"required": ["local_case_id"]}],
        "allOf": [*_payload_by_type(),
                  {"oneOf": [{"required": ["payload"]}, {"required": ["format", "record"]}]}],
    },
    "Queued": {
        "type": "object",
        "required": ["message_id", "type", "status", "case_ref", "links"],
        "properties": {
            "message_id": _UUID,
            "type": {"type": "string", "enum": list(MESSAGE_TYPES)},
            "status": {"const": "queued"},
            "case_ref": _CASE_REF,
            "in_reply_to": _UUID,
            "dropped": {
                "type": "array",
                "description": "Local-record submissions only: fields the purposes do not allow, left out",
                "items": {"type": "object", "required": ["local_field", "shared_path", "reason"],
                          "properties": {"local_field": {"type": "string"},
                                         "shared_path": {"type": ["string", "null"]}, "reason": {"type": "string"}}},
            },
            "links": {
                "type": "object", "required": ["status"],
                "properties": {"status": {"type": "string", "examples": ["/messages/3f1c..."]}},
            },
        },
    },
    "InboxItem": {
        "type": "object",
        "description": "Metadata of a received message; the payload stays encrypted until read.",
        "required": ["message_id", "sender", "type", "case_ref", "received_at", "status"],
        "properties": {
            "message_id": _UUID,
            "sender": _AGENCY,
            "type": {"type": "string", "enum": list(MESSAGE_TYPES)},
            "case_ref": _CASE_REF,
            "received_at": _TIME,
            "status": {"type": "string", "enum": sorted(INCOMING_STATUSES)},
        },
        "additionalProperties": False,
    },
    "InboxPage": {
        "type": "object",
        "required": ["items", "limit", "offset", "next_offset"],
        "properties": {
            "items": {"type": "array", "items": _ref("InboxItem")},
            "limit": {"type": "integer"},
            "offset": {"type": "integer"},
            "next_offset": {"type": ["integer", "null"], "description": "null on the last page"},
        },
    },
    "EnvelopeHeader": {
        "type": "object",
        "description": "The signed clear header of the envelope (docs/wire-format.md)",
        "required": ["id", "type", "schema", "sender", "recipient", "created", "expires", "sig_kid", "enc_kid",
                     "case"],
        "properties": {
            "id": _UUID, "type": {"type": "string", "enum": list(MESSAGE_TYPES)}, "schema": {"type": "string"},
            "sender": _AGENCY, "recipient": _AGENCY, "created": _TIME, "expires": _TIME,
            "sig_kid": {"type": "string"}, "enc_kid": {"type": "string"}, "case": _CASE_REF, "in_reply_to": _UUID,
        },
    },
    "OpenedMessage": {
        "type": "object",
        "required": ["header", "payload"],
        "properties": {
            "header": _ref("EnvelopeHeader"),
            "payload": {"type": "object", "description": "Decrypted payload, valid against the schema of header.type"},
        },
        "allOf": [
            {"if": {"properties": {"header": {"properties": {"type": {"const": t}}}}},
             "then": {"properties": {"payload": {"$ref": schema_id(t)}}}}
            for t in MESSAGE_TYPES
        ],
    },
    "ReadResult": {"oneOf": [_ref("OpenedMessage"), _ref("LocalMessage")]},
    "LocalMessage": {
        "type": "object",
        "required": ["header", "format", "record"],
        "properties": {
            "header": _ref("EnvelopeHeader"),
            "format": {"type": "string", "enum": list(available_formats())},
            "record": {"type": "object", "description": "The referral.request in the requested local format"},
        },
    },
    "Answer": {
        "type": "object",
        "description": "A referral.response payload without request_message_id (taken from the path). "
                       f"The full rules (which fields go with which decision) are those of {_RESPONSE_ID}.",
        "required": ["decision"],
        "properties": {
            name: {"$ref": f"{_RESPONSE_ID}#/properties/{name}"}
            for name in ("decision", "accepted_purposes", "decline_reason", "information_needed", "expected_by",
                         "comment")
        },
        "additionalProperties": False,
    },
    "MessageStatus": {
        "type": "object",
        "required": ["message_id", "type", "recipient", "case_ref", "status", "attempts", "last_error",
                     "created_at", "updated_at", "trail"],
        "properties": {
            "message_id": _UUID,
            "type": {"type": "string", "enum": list(MESSAGE_TYPES)},
            "recipient": _AGENCY,
            "case_ref": _CASE_REF,
            "status": {"type": "string", "enum": sorted(OUTGOING_STATUSES)},
            "attempts": {"type": "integer", "minimum": 0, "description": "Publish attempts"},
            "last_error": {"type": ["string", "null"], "description": "Reason code of the last failed attempt"},
            "created_at": _TIME,
            "updated_at": _TIME,
            "trail": {
                "type": "array",
                "items": {
                    "type": "object", "required": ["status", "at"],
                    "properties": {"status": {"type": "string", "enum": sorted(OUTGOING_STATUSES)}, "at": _TIME},
                },
            },
        },
    },
    "Health": {"type": "object", "required": ["status"], "properties": {"status": {"const": "ok"}}},
    "Checks": {
        "type": "object",
        "required": ["store", "transport", "consumer", "outbox", "deliveries"],
        "properties": {"store": {"type": "boolean"}, "transport": {"type": "boolean"}, "consumer": {"type": "boolean"},
                       "outbox": {"type": "boolean", "description": "the outbox publisher task is running"},
                       "deliveries": {"type": "boolean", "description":
                                      "false while the delivery handler keeps failing (degraded)"}},
    },
    "Ready": {
        "type": "object",
        "required": ["status", "checks"],
        "properties": {"status": {"const": "ready"}, "checks": _ref("Checks")},
    },
    "NotReady": {
        "type": "object",
        "required": ["error", "detail", "checks"],
        "properties": {"error": {"enum": ["not_ready", "degraded"]}, "detail": {"type": "string"},
                       "checks": _ref("Checks")},
    },
    "QuarantinePage": {
        "type": "object",
        "required": ["items"],
        "properties": {"items": {"type": "array", "items": {
            "type": "object",
            "required": ["message_id", "sender", "reason", "detail", "size"],
            "properties": {
                "message_id": {"type": "string"}, "sender": {"type": ["string", "null"]},
                "reason": {"type": "string"}, "detail": {"type": "string"}, "size": {"type": "integer"},
            },
        }}},
    },
}

_ID_PARAM = {"name": "id", "in": "path", "required": True, "description": "Message id (lower-case UUID)",
             "schema": _UUID}


def _page_param(name: str, default: int, maximum: int) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False,
            "schema": {"type": "integer", "minimum": 0 if name == "offset" else 1, "maximum": maximum,
                       "default": default}}


#: Route name → the descriptive part of its operation. Security, roles and the 401/403
#: answers are added from the handler's access policy.
OPERATIONS: dict[str, dict[str, Any]] = {
    "referrals.submit": {
        "summary": "Queue a referral (or a later message on a case) for another agency",
        "description": "Answers 202 once the signed, encrypted envelope is in the durable outbox; it is published "
                       f"in the background. Request bodies are limited to {MAX_BODY_BYTES} bytes.",
        "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("Submission")}}},
        "responses": {
            "202": _json(_ref("Queued"), "Queued in the outbox", _LOCATION),
            "400": _error("Body is not JSON (invalid_json)"),
            "413": _error("Body or payload too large (request_too_large, oversize)"),
            "415": _error("Body is not application/json"),
            "422": _error("schema_invalid (with violations), invalid_request (with violations; also a date out of "
                          "range), consent_* (the consent does not cover it), recipient_refuses, unknown_agency, "
                          "no_valid_key"),
            "503": _json(_ref("Error"), "store_unavailable: nothing was stored; retry later", _RETRY),
        },
    },
    "inbox.list": {
        "summary": "List received messages (metadata only, oldest first)",
        "parameters": [
            _page_param("limit", DEFAULT_PAGE, MAX_PAGE), _page_param("offset", 0, 10**9),
            {"name": "status", "in": "query", "required": False,
             "schema": {"type": "string", "enum": sorted(INCOMING_STATUSES)}},
        ],
        "responses": {"200": _json(_ref("InboxPage"), "A page of the inbox"),
                      "400": _error("Bad limit, offset or status (invalid_query)")},
    },
    "inbox.read": {
        "summary": "Decrypt and read a received message (audited with user and purpose)",
        "parameters": [_ID_PARAM, {
            "name": "purpose", "in": "query", "required": True,
            "description": "Why the message is read; recorded in the audit log with the user",
            "schema": {"type": "string", "enum": list(READ_PURPOSES)},
        }, {
            "name": "format", "in": "query", "required": False,
            "description": "Return a referral.request as a record in this local format instead of the shared payload",
            "schema": {"type": "string", "enum": list(available_formats())},
        }],
        "responses": {"200": _json(_ref("ReadResult"),
                                   "The verified header and the decrypted payload (or local record)"),
                      "409": _error("format given for a message that is not a referral.request"),
                      "400": _error("Bad id (invalid_id), purpose missing (missing_parameter) or not one of the "
                                    "codes (invalid_query)"),
                      "404": _error("No received message with this id"),
                      "410": _error("The payload was shredded (consent withdrawn or retention): payload_shredded")},
    },
    "inbox.respond": {
        "summary": "Answer a received referral.request (accepted, declined, more information needed)",
        "parameters": [_ID_PARAM],
        "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("Answer")}}},
        "responses": {
            "202": _json(_ref("Queued"), "The referral.response is queued", _LOCATION),
            "400": _error("Bad id or body is not JSON"),
            "404": _error("No received message with this id"),
            "409": _error("The message is not a referral.request, or was already answered otherwise (conflict)"),
            "410": _error("The request's payload was shredded (payload_shredded)"),
            "413": _error("Body too large"),
            "415": _error("Body is not application/json"),
            "422": _error("schema_invalid (with violations); invalid_request (with violations): a date out of "
                          "range, request_message_id given, or accepted_purposes naming a purpose the request "
                          "did not ask for"),
            "503": _json(_ref("Error"), "store_unavailable; retry later", _RETRY),
        },
    },
    "messages.status": {
        "summary": "Delivery status and trail of a message this gateway sent",
        "parameters": [_ID_PARAM],
        "responses": {"200": _json(_ref("MessageStatus"), "Status and trail"),
                      "400": _error("Bad id (invalid_id)"),
                      "404": _error("No sent message with this id")},
    },
    "health.live": {
        "summary": "Liveness: the process answers",
        "responses": {"200": _json(_ref("Health"), "Alive")},
    },
    "health.ready": {
        "summary": "Readiness: store answers, broker connection healthy, consumer running",
        "responses": {"200": _json(_ref("Ready"), "Ready"),
                      "503": _json(_ref("NotReady"), "Not ready; checks says which failed", _RETRY)},
    },
    "metrics": {
        "summary": "Counters in the Prometheus text format (no personal data)",
        "responses": {"200": {"description": "Prometheus text exposition format 0.0.4",
                              "content": {"text/plain": {"schema": {"type": "string"}}}}},
    },
    "quarantine.list": {
        "summary": "Messages this gateway refused (ids, senders, reason codes; never bodies)",
        "parameters": [_page_param("limit", 50, 200)],
        "responses": {"200": _json(_ref("QuarantinePage"), "Quarantined messages"),
                      "503": _json(_ref("Error"), "The broker is unavailable", _RETRY)},
    },
    "openapi": {
        "summary": "This document",
        "responses": {"200": {"description": "OpenAPI 3.1 document",
                              "content": {"application/json": {"schema": {"type": "object"}}}}},
    },
}


def _shared_component_name(file_stem: str, def_name: str | None = None) -> str:
    return file_stem if def_name is None else f"{file_stem}.{def_name}"


def shared_components() -> dict[str, Any]:
    """The shared v1 schemas as components: each file under its message type (``common`` for
    common.schema.json), each ``$defs`` entry as ``<file>.<name>``; $refs rewritten to ``#/``."""
    out: dict[str, Any] = {}
    for path in sorted((SCHEMA_DIR / "v1").glob("*.schema.json")):
        stem = path.name.removesuffix(".schema.json")
        doc = json.loads(path.read_text(encoding="utf-8"))
        defs = doc.pop("$defs", {})
        for key in ("$id", "$schema"):  # an $id would re-base every "#/..." below it
            doc.pop(key, None)
        for name, node in [(stem, doc), *((_shared_component_name(stem, d), n) for d, n in defs.items())]:
            if name in out:
                raise ValueError(f"shared schema component {name} is defined twice")
            out[name] = _rewrite_refs(node, stem)
    return out


def _internal_ref(ref: str, here: str) -> str:
    """A $ref of a shared schema (relative, by $id, or into another file) as a ``#/components`` ref."""
    target, _, fragment = ref.partition("#")
    if target.startswith(SCHEMA_BASE_URI):
        target = target[len(SCHEMA_BASE_URI):]
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
        return base + _shared_component_name(stem, name) + (f"/{rest}" if rest else "")
    return base + stem + fragment


def _rewrite_refs(node: Any, here: str) -> Any:
    if isinstance(node, dict):
        return {k: (_internal_ref(v, here) if k == "$ref" and isinstance(v, str) else _rewrite_refs(v, here))
                for k, v in node.items()}
    if isinstance(node, list):
        return [_rewrite_refs(v, here) for v in node]
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
    """The OpenAPI document for these routes; KeyError names a route without an OPERATIONS entry."""
    paths: dict[str, dict[str, Any]] = {}
    heads: list[tuple[str, str]] = []
    for route in app_routes:
        resource = route.resource
        if resource is None or route.method == "*":
            continue
        name = resource.name
        if name not in OPERATIONS:
            raise KeyError(f"route {route.method} {resource.canonical} ({name}) has no OpenAPI operation")
        if route.method == "HEAD":
            heads.append((resource.canonical, name))
            continue
        operation = json.loads(json.dumps(OPERATIONS[name]))  # a private copy per document
        operation["operationId"] = name
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
            "schemas": {**SCHEMAS, **shared_components()},
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
@public
async def openapi(request: web.Request) -> web.Response:
    return web.Response(body=request.app[DOCUMENT], content_type="application/json", headers=NO_STORE)


def install(app: web.Application) -> None:
    """Build the document once from the finished router (call after every route is added), and
    the query parameter rules the API enforces from it."""
    document = build_document(app.router.routes(), agency_id=app[GATEWAY].agency_id)
    app[DOCUMENT] = json.dumps(document, ensure_ascii=False, indent=1).encode("utf-8")
    app[QUERY_RULES] = query_rules(document)


# For resource modules that describe their own OPERATIONS (gateway/api/__init__.py merges them).
schema_ref = _ref
json_content = _json
error_content = _error
