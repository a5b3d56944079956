"""Request bodies, checked with the very schemas ``GET /openapi.json`` publishes.

``openapi.install`` builds one :class:`BodySchema` per operation with a request body from the
finished document (JSON Schema Draft 2020-12, the shared v1 schemas bundled in it), so what
the document accepts is what the handler accepts. A check sorts what is wrong into the rules
of the API's own schemas (the fields around a payload: 422 ``invalid_request``) and the rules
of a bundled shared v1 schema (a payload: 422 ``schema_invalid``); the handler decides how
to answer. Rules a schema cannot state (the recipient is another agency, dates in range,
accepted purposes the request asked for) are the handlers' code checks, run after this one.

Violations name the JSON path and the rule, never a value (gateway/schema.py explains them
the same way; gateway/api/errors.py ``redact`` hides unexpected member names).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import islice
from typing import Any, Iterator
from urllib.parse import quote

import jsonschema_rs
from aiohttp import web
from jsonschema import Draft202012Validator, ValidationError
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from gateway.api.parse import json_object
from gateway.errors import SchemaInvalidError, Violation
from gateway.i18n import msg
from gateway.schema import MAX_EXPLAINED, find_violations, json_path
# The payload explainer's building blocks: the same wording for the same rule everywhere.
from gateway.schema import _FORMATS, _calendar_date, _calendar_date_time, _describe, _name, _path_key, _unexpected

#: The document as a resource: ``#/components/...`` references resolve inside it.
DOCUMENT_URI = "urn:referral-gateway:openapi"
#: Route name → the schema its request body is checked with (set by ``openapi.install``).
BODY_RULES = web.AppKey("body_rules", dict)
_MEDIA = "application/json"


@dataclass(frozen=True)
class BodyCheck:
    """What a body breaks: rules of the API's own schemas, and rules of a shared v1 schema."""

    own: tuple[Violation, ...] = ()
    shared: tuple[Violation, ...] = ()

    @property
    def ok(self) -> bool:
        """True when the body is valid against the published schema."""
        return not (self.own or self.shared)


class BodySchema:
    """The published request body schema of one operation, as a validator."""

    def __init__(self, document: dict[str, Any], pointer: str, shared_nodes: frozenset[int]) -> None:
        self.pointer = pointer
        registry: Registry = Registry().with_resource(
            DOCUMENT_URI, Resource.from_contents(document, default_specification=DRAFT202012))
        root = {"$ref": f"{DOCUMENT_URI}#{quote(pointer, safe='/~')}"}  # {id} in a path: %7Bid%7D
        self._explainer = Draft202012Validator(root, registry=registry, format_checker=_FORMATS)
        # The Rust engine answers "valid?" (the common case) ~50x faster; the Python one explains.
        self._fast = jsonschema_rs.Draft202012Validator(
            root, registry=jsonschema_rs.Registry([(DOCUMENT_URI, document)]), validate_formats=True,
            formats={"date": _calendar_date, "date-time": _calendar_date_time, "uuid": lambda _: True},
            offline=True)
        self._shared = shared_nodes

    def check(self, body: object) -> BodyCheck:
        """The rules ``body`` breaks (empty when the document accepts it)."""
        try:
            if self._fast.is_valid(body):
                return BodyCheck()
        except ValueError:  # a lone UTF-16 surrogate (json.loads lets "\ud800" through) is no text
            lone = msg("a string holds a lone surrogate (U+D800 to U+DFFF)")
            return BodyCheck(own=(Violation("$", "unicode", lone),))
        own: set[Violation] = set()
        shared: set[Violation] = set()
        # A hostile body can break thousands of rules: explain the first ones only.
        for error in islice(self._explainer.iter_errors(body), MAX_EXPLAINED):
            found = list(_violations(error)) or [Violation(json_path(error.absolute_path), "schema",
                                                           "breaks a schema rule")]
            (shared if id(error.schema) in self._shared else own).update(found)
        if not (own or shared):
            own.add(Violation("$", "schema", "breaks a schema rule"))  # the engines disagree: refuse
        return BodyCheck(_sorted(own), _sorted(shared))


def _sorted(found: set[Violation]) -> tuple[Violation, ...]:
    return tuple(sorted(found, key=lambda v: (_path_key(v.path), v.rule, v.message)))


def _violations(error: ValidationError) -> Iterator[Violation]:
    """One jsonschema error as violations: from the schema side only, never the value."""
    where = list(error.absolute_path)
    rule = error.validator if isinstance(error.validator, str) else "false"
    schema = error.schema if isinstance(error.schema, dict) else {}
    note = schema.get("description")
    suffix = f": {note}" if isinstance(note, str) and rule not in ("type", "required", "additionalProperties") else ""
    instance = error.instance
    if rule == "additionalProperties" and isinstance(instance, dict):
        for key in _unexpected(error, instance):
            yield Violation(json_path([*where, _name(key)]), rule, msg("unexpected property"))
        return
    if rule == "required" and isinstance(instance, dict) and isinstance(error.validator_value, list):
        for key in error.validator_value:
            if key not in instance:
                yield Violation(json_path([*where, key]), rule, msg("required property '{key}' is missing", key=key))
        return
    if rule == "dependentRequired" and isinstance(instance, dict) and isinstance(error.validator_value, dict):
        for key, needs in error.validator_value.items():
            if key in instance and any(n not in instance for n in needs):
                yield Violation(json_path([*where, key]), rule, f"only together with: {', '.join(needs)}{suffix}")
        return
    if rule == "false":
        yield Violation(json_path(where), rule, msg("no value is allowed here"))
        return
    yield Violation(json_path(where), rule, _describe(rule, error.validator_value, error.schema) + suffix)


def _nodes(node: Any) -> Iterator[int]:
    if isinstance(node, dict):
        yield id(node)
        for value in node.values():
            yield from _nodes(value)
    elif isinstance(node, list):
        for value in node:
            yield from _nodes(value)


def _escape(step: str) -> str:
    return step.replace("~", "~0").replace("/", "~1")


def body_rules(document: dict[str, Any], shared: frozenset[str]) -> dict[str, BodySchema]:
    """Operation id → the validator of its published JSON request body. ``shared`` names the
    components that are bundled shared v1 schemas (a violation of theirs is a payload's)."""
    components = document["components"]["schemas"]
    shared_nodes = frozenset(i for name in shared for i in _nodes(components[name]))
    rules: dict[str, BodySchema] = {}
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            if _MEDIA not in operation.get("requestBody", {}).get("content", {}):
                continue
            pointer = "/" + "/".join(_escape(s) for s in ("paths", path, method, "requestBody", "content", _MEDIA,
                                                            "schema"))
            rules[operation["operationId"]] = BodySchema(document, pointer, shared_nodes)
    return rules


async def request_body(request: web.Request) -> tuple[dict[str, Any], BodyCheck]:
    """The JSON object body (400/413/415 as gateway/api/parse.py says) and what it breaks of
    the schema the document publishes for this route."""
    body = await json_object(request)
    name = request.match_info.route.name
    schema = request.app[BODY_RULES].get(name)
    if schema is None:  # a route that reads a body must document it
        raise KeyError(f"route {name} reads a body but documents no application/json request body")
    return body, schema.check(body)


def payload_invalid(message_type: str, payload: object, fallback: list[Violation]) -> SchemaInvalidError:
    """422 ``schema_invalid`` for a payload the published schema refused, explained by the
    shared schema's own explainer (gateway/schema.py; paths inside the payload)."""
    return SchemaInvalidError(message_type, find_violations(message_type, payload) or fallback)
