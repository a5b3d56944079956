"""/openapi.json: a structurally valid OpenAPI 3.1 document that lists exactly the app's routes."""

from __future__ import annotations

import json
import re

import pytest

from jsonschema import Draft202012Validator
from openapi_spec_validator import validate
from referencing import Registry, Resource
from referencing.exceptions import Unresolvable
from referencing.jsonschema import DRAFT202012

from gateway.schema import MESSAGE_TYPES, load_example

from testkit.gateway_pair import NIGERIA
from .test_api_world import OPENAPI_URI, api_pair, request_validator

#: The required skeleton of an OpenAPI 3.1 document (a minimal slice of the official schema).
OPENAPI_31_SKELETON = {
    "type": "object",
    "required": ["openapi", "info", "paths", "components"],
    "properties": {
        "openapi": {"type": "string", "pattern": r"^3\.1\.\d+$"},
        "info": {"type": "object", "required": ["title", "version"],
                 "properties": {"title": {"type": "string"}, "version": {"type": "string"}}},
        "paths": {
            "type": "object",
            "propertyNames": {"pattern": "^/"},
            "additionalProperties": {
                "type": "object",
                "propertyNames": {"enum": ["get", "put", "post", "delete", "options", "head", "patch", "trace",
                                           "parameters", "summary", "description"]},
                "additionalProperties": {"$ref": "#/$defs/operation"},
            },
        },
        "components": {
            "type": "object",
            "properties": {
                "schemas": {"type": "object"},
                "securitySchemes": {"type": "object", "additionalProperties": {
                    "type": "object", "required": ["type"],
                    "properties": {"type": {"enum": ["apiKey", "http", "mutualTLS", "oauth2", "openIdConnect"]}},
                }},
            },
        },
    },
    "$defs": {
        "operation": {
            "type": "object",
            "required": ["responses", "operationId", "security"],
            "properties": {
                "operationId": {"type": "string"},
                "parameters": {"type": "array", "items": {
                    "type": "object", "required": ["name", "in", "schema"],
                    "properties": {"in": {"enum": ["query", "header", "path", "cookie"]}},
                }},
                "responses": {
                    "type": "object", "minProperties": 1,
                    "propertyNames": {"pattern": "^[1-5][0-9][0-9]$"},
                    "additionalProperties": {"type": "object", "anyOf": [
                        {"required": ["description"]}, {"required": ["$ref"]}]},
                },
                "security": {"type": "array"},
            },
        },
    },
}


async def _document(tmp_path):
    async with api_pair(tmp_path) as (ne, _):
        status, doc = await ne.call("GET", "/openapi.json", role=None)
        assert status == 200
        # The workspace's pages (gateway/workspace) are HTML for people, not part of the API document.
        return doc, [r for r in ne.client.app.router.routes() if not r.resource.canonical.startswith("/workspace")]


async def test_document_is_openapi_31_and_lists_every_route(tmp_path) -> None:
    doc, routes = await _document(tmp_path)
    errors = list(Draft202012Validator(OPENAPI_31_SKELETON).iter_errors(doc))
    assert not errors, [e.message for e in errors[:5]]
    documented = {(method.upper(), path) for path, ops in doc["paths"].items() for method in ops}
    served = {(r.method, r.resource.canonical) for r in routes}
    assert documented == served
    for path, ops in doc["paths"].items():
        for name in re.findall(r"{(\w+)}", path):
            for op in ops.values():
                assert any(p["in"] == "path" and p["name"] == name and p["required"] for p in op["parameters"])
    assert doc["components"]["securitySchemes"]["bearer"] == {
        **doc["components"]["securitySchemes"]["bearer"], "type": "http", "scheme": "bearer"}


async def test_security_follows_the_access_policies(tmp_path) -> None:
    doc, _ = await _document(tmp_path)
    public = {(m, p) for p, ops in doc["paths"].items() for m, op in ops.items() if op["security"] == []}
    assert public == {(m, p) for m in ("get", "head")
                      for p in ("/healthz", "/readyz", "/openapi.json", "/auditor", "/codes", "/codes/{name}")}
    read = doc["paths"]["/inbox/{id}"]["get"]
    assert read["x-roles"] == ["caseworker", "supervisor"]
    assert {"401", "403"} <= set(read["responses"])
    assert any(p["name"] == "purpose" and p["required"] for p in read["parameters"])


def _refs(node, where="#"):
    """Every $ref of the document with where it sits."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield where, value
            else:
                yield from _refs(value, f"{where}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _refs(value, f"{where}/{index}")


async def test_document_is_self_contained_and_every_reference_resolves(tmp_path) -> None:
    doc, _ = await _document(tmp_path)
    for name, schema in doc["components"]["schemas"].items():
        Draft202012Validator.check_schema(schema)
    refs = list(_refs(doc))
    outside = [(where, ref) for where, ref in refs if not ref.startswith("#/")]
    assert not outside, outside[:5]
    # The shared schemas are bundled: payloads point at their components, and no $id re-bases a ref.
    targets = {ref for _, ref in refs}
    assert {"#/components/schemas/referral.request", "#/components/schemas/common.date"} <= targets
    assert '"$id"' not in json.dumps(doc) and '"$defs"' not in json.dumps(doc["components"]["schemas"])
    # Resolved with the document alone: no shared schema file, no network.
    registry = Registry().with_resource(OPENAPI_URI, Resource.from_contents(doc, default_specification=DRAFT202012))
    resolver = registry.resolver(base_uri=OPENAPI_URI)
    for where, ref in refs:
        try:
            resolver.lookup(OPENAPI_URI + ref)
        except Unresolvable as exc:  # pragma: no cover - the assertion message is the point
            raise AssertionError(f"unresolvable $ref {ref} at {where}") from exc


async def test_document_passes_openapi_spec_validator(tmp_path) -> None:
    doc, _ = await _document(tmp_path)
    validate(doc)  # raises OpenAPIValidationError naming the first problem


async def test_the_bundled_payload_schemas_judge_like_the_shared_ones(tmp_path) -> None:
    doc, _ = await _document(tmp_path)
    registry = Registry().with_resource(OPENAPI_URI, Resource.from_contents(doc, default_specification=DRAFT202012))
    for message_type in MESSAGE_TYPES:
        validator = Draft202012Validator({"$ref": f"{OPENAPI_URI}#/components/schemas/{message_type}"},
                                         registry=registry)
        example = load_example(message_type)
        assert validator.is_valid(example), message_type
        assert not validator.is_valid({**example, "unexpected_member": 1}), message_type


async def test_documented_request_schemas_accept_valid_and_refuse_invalid_bodies(tmp_path) -> None:
    doc, _ = await _document(tmp_path)
    submission = request_validator(doc, "Submission")
    good = {"recipient": NIGERIA, "case_ref": "ne-ng-docs0000001", "payload": load_example("referral.request")}
    assert submission.is_valid(good)
    assert submission.is_valid({**good, "message_type": "case.followup", "payload": load_example("case.followup")})
    assert not submission.is_valid({**good, "message_type": "case.followup"})  # payload of the wrong type
    assert not submission.is_valid({**good, "local_case_id": "L-1"})  # both
    bad = load_example("referral.request")
    del bad["consent"]
    assert not submission.is_valid({**good, "payload": bad})
    answer = request_validator(doc, "Answer")
    assert answer.is_valid({"decision": "accepted", "accepted_purposes": ["assistance"]})
    assert not answer.is_valid({"decision": "maybe"})
    assert not answer.is_valid({"decision": "accepted", "request_message_id": "x"})
    assert set(doc["components"]["schemas"]["OpenedMessage"]["allOf"][0]["then"]["properties"]["payload"]
               ["$ref"].split("/")[-1:]) <= set(MESSAGE_TYPES)


def test_operations_come_from_the_handlers_and_an_undocumented_route_is_refused() -> None:
    from aiohttp import web

    from gateway.api.openapi import build_document
    from gateway.api.operation import documented
    from gateway.api.roles import public

    routes = web.RouteTableDef()

    @routes.get("/described", name="described")
    @documented({"summary": "Described where it is registered", "responses": {"200": {"description": "ok"}}})
    @public
    async def described(request: web.Request) -> web.Response:
        return web.Response()

    app = web.Application()
    app.add_routes(routes)
    doc = build_document(app.router.routes(), agency_id="NE-ANLTP-TIM")
    assert doc["paths"]["/described"]["get"]["summary"] == "Described where it is registered"
    assert doc["paths"]["/described"]["get"]["operationId"] == "described"

    async def undescribed(request: web.Request) -> web.Response:  # pragma: no cover - never served
        return web.Response()

    app.router.add_get("/undescribed", public(undescribed), name="undescribed")
    with pytest.raises(KeyError, match="undescribed"):
        build_document(app.router.routes(), agency_id="NE-ANLTP-TIM")


async def test_stats_parameters_have_enums_and_answers_follow_the_document(tmp_path) -> None:
    """GET /stats: direction and interval are documented with their enums, and real answers
    (received and sent, by month and by quarter) validate against StatsReport."""
    async with api_pair(tmp_path) as (ne, _):
        status, doc = await ne.call("GET", "/openapi.json", role=None)
        assert status == 200
        params = {p["name"]: p for p in doc["paths"]["/stats"]["get"]["parameters"]}
        assert params["direction"]["schema"]["enum"] == ["received", "sent"]
        assert params["interval"]["schema"]["enum"] == ["month", "quarter", "year"]
        assert set(params) == {"direction", "interval", "threshold", "month_from", "month_to"}
        validator = request_validator(doc, "StatsReport")
        for query in ("", "?direction=sent", "?interval=quarter", "?direction=sent&interval=year"):
            status, body = await ne.call("GET", "/stats" + query, role="supervisor")
            assert status == 200, (query, body)
            errors = [e.message for e in validator.iter_errors(body)]
            assert not errors, (query, errors)
        status, body = await ne.call("GET", "/stats?interval=fortnight", role="supervisor")
        assert status == 400 and body["error"] == "invalid_query"
