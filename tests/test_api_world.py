"""Shared set-up for the API tests (no tests here): two gateways, an HTTP client for each.

``api_pair`` starts NE and NG on the in-process broker (testkit/gateway_pair.py) and serves
``create_app`` for each through aiohttp's TestServer, with one user per role and random
tokens whose SHA-256 is all the settings hold.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator

from aiohttp.test_utils import TestClient, TestServer
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from gateway.api import create_app
from gateway.service import Gateway
from gateway.settings import ROLES, User, with_overrides

from testkit.gateway_pair import ROOT, gateway_pair

PSEUDONYM_SECRET = "5e" * 32


@dataclass
class Agency:
    """One gateway, its HTTP client and a token per role."""

    gateway: Gateway
    client: TestClient
    tokens: dict[str, str]
    responses: list[Any] = field(default_factory=list)

    def auth(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role]}"}

    async def call(self, method: str, path: str, role: str | None = "caseworker", **kwargs: Any) -> tuple[int, Any]:
        """Send a request; return (status, JSON body or text). Every response is kept for PII checks."""
        headers = dict(kwargs.pop("headers", {}))
        if role is not None:
            headers.update(self.auth(role))
        async with self.client.request(method, path, headers=headers, **kwargs) as resp:
            text = await resp.text()
            self.responses.append((resp.status, dict(resp.headers), text))
            try:
                body = json.loads(text)
            except ValueError:
                body = text
            return resp.status, body


def users_for(agency_id: str) -> tuple[dict[str, str], tuple[User, ...]]:
    tokens = {role: secrets.token_urlsafe(32) for role in ROLES}
    users = tuple(
        User(f"{role}.{agency_id.lower()}", role, hashlib.sha256(token.encode()).hexdigest())
        for role, token in tokens.items()
    )
    return tokens, users


@asynccontextmanager
async def api_pair(tmp: Path) -> AsyncIterator[tuple[Agency, Agency]]:
    async with gateway_pair(tmp, pseudonym_secret_hex=PSEUDONYM_SECRET) as (ne, ng):
        agencies = []
        for gw in (ne, ng):
            tokens, users = users_for(gw.agency_id)
            app = create_app(gw, with_overrides(gw.settings, users=users))
            # Like `gateway serve`: aiohttp's own access log (raw paths, query strings) is off.
            client = TestClient(TestServer(app, access_log=None))
            await client.start_server()
            agencies.append(Agency(gw, client, tokens))
        try:
            yield agencies[0], agencies[1]
        finally:
            for agency in agencies:
                await agency.client.close()


# --- the OpenAPI document as a validator of real answers -------------------------------

OPENAPI_URI = "urn:referral-gateway:openapi"


def _shared_schemas() -> list[tuple[str, Resource]]:
    docs = [json.loads(p.read_text(encoding="utf-8")) for p in sorted((ROOT / "schemas" / "v1").glob("*.schema.json"))]
    return [(d["$id"], Resource.from_contents(d, default_specification=DRAFT202012)) for d in docs]


def document_registry(document: dict[str, Any]) -> Registry:
    """The OpenAPI document (as a resource, for its #/components refs) plus the shared schemas."""
    return Registry().with_resources([
        *_shared_schemas(),
        (OPENAPI_URI, Resource.from_contents(document, default_specification=DRAFT202012)),
    ])


def response_schema(document: dict[str, Any], template: str, method: str, status: int) -> dict[str, Any]:
    responses = document["paths"][template][method.lower()]["responses"]
    response = responses[str(status)]
    if "$ref" in response:
        response = document["components"]["responses"][response["$ref"].rsplit("/", 1)[-1]]
    content = response["content"]
    media = content.get("application/json") or next(iter(content.values()))
    return media["schema"]


def assert_conforms(document: dict[str, Any], template: str, method: str, status: int, body: Any) -> None:
    """``body`` is valid against the schema the document gives for this answer."""
    schema = response_schema(document, template, method, status)
    wrapper = {"$schema": "https://json-schema.org/draft/2020-12/schema", "$ref": OPENAPI_URI + "#/"}
    if "$ref" in schema and schema["$ref"].startswith("#/"):
        wrapper["$ref"] = OPENAPI_URI + schema["$ref"]
    else:
        wrapper = {**schema, "$id": OPENAPI_URI + "/inline"}
    validator = Draft202012Validator(wrapper, registry=document_registry(document))
    errors = sorted(validator.iter_errors(body), key=lambda e: list(e.absolute_path))
    assert not errors, f"{method} {template} {status}: " + "; ".join(
        f"{list(e.absolute_path)}: {e.message[:200]}" for e in errors[:5])


def request_validator(document: dict[str, Any], schema_name: str) -> Draft202012Validator:
    wrapper = {"$ref": f"{OPENAPI_URI}#/components/schemas/{schema_name}"}
    return Draft202012Validator(wrapper, registry=document_registry(document))
