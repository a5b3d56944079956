"""``GET /codes`` and ``GET /codes/{name}``: the shared schema's code lists, labelled in the reader's language.

A caseworker's form shows "Recherche familiale", not ``family_tracing``: every enumeration of
every published schema version (gateway/code_lists.py) with its label in the language that
``Accept-Language`` negotiates (gateway/i18n.py). Public, like /openapi.json, which already
publishes the codes: labels carry no case data.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gateway.api.errors import ApiError
from gateway.api.operation import documented, error_content, json_content, schema_ref
from gateway.api.responses import json_body
from gateway.api.roles import public
from gateway.code_lists import code_lists, labels
from gateway.i18n import CURRENT, LANGUAGES, msg

routes = web.RouteTableDef()

_LANGUAGE_HEADER: dict[str, Any] = {
    "Content-Language": {"description": "The language of the labels (en or fr)", "schema": {"enum": list(LANGUAGES)}}}
_ACCEPT_LANGUAGE: dict[str, Any] = {
    "name": "Accept-Language", "in": "header", "required": False,
    "description": "Preferred languages with q-values (RFC 9110); en or fr, English by default",
    "schema": {"type": "string", "examples": ["fr-NE, fr;q=0.9, en;q=0.5"]}}
_LABELS: dict[str, Any] = {"type": "object", "additionalProperties": {"type": "string"},
                           "description": "code → label", "examples": [{"female": "Féminin", "male": "Masculin"}]}

_SCHEMAS: dict[str, Any] = {
    "CodeList": {
        "type": "object", "required": ["code_list", "language", "labels"],
        "properties": {"code_list": {"type": "string", "examples": ["sex"]},
                       "language": {"enum": list(LANGUAGES)}, "labels": _LABELS},
    },
    "CodeLists": {
        "type": "object", "required": ["language", "code_lists"],
        "properties": {"language": {"enum": list(LANGUAGES)},
                       "code_lists": {"type": "object", "additionalProperties": _LABELS,
                                      "description": "code list name → (code → label)"}},
    },
}

_OPERATIONS: dict[str, dict[str, Any]] = {
    "codes.list": {
        "summary": "Every code list of the shared schema (v1 and v2), labelled in the negotiated language",
        "parameters": [_ACCEPT_LANGUAGE],
        "responses": {"200": json_content(schema_ref("CodeLists"), "The code lists", _LANGUAGE_HEADER)},
    },
    "codes.one": {
        "summary": "One code list (e.g. purpose, sex, needs.medical_urgency), labelled in the negotiated language",
        "parameters": [_ACCEPT_LANGUAGE,
                       {"name": "name", "in": "path", "required": True, "description": "Code list name (GET /codes)",
                        "schema": {"type": "string", "examples": ["purpose"]}}],
        "responses": {"200": json_content(schema_ref("CodeList"), "The code list", _LANGUAGE_HEADER),
                      "404": error_content("No code list has this name")},
    },
}


#: Every list in every language, built at import: a request reads no schema or locale file.
_TABLES: dict[str, dict[str, dict[str, str]]] = {
    language: {name: labels(name, language) for name in code_lists()} for language in LANGUAGES}


def _headers(language: str) -> dict[str, str]:
    return {"Content-Language": language, "Vary": "Accept-Language"}


@routes.get("/codes", name="codes.list")
@documented(_OPERATIONS["codes.list"], schemas=_SCHEMAS)
@public
async def list_codes(request: web.Request) -> web.Response:
    """Every code list with its labels."""
    language = CURRENT.get()
    body = {"language": language, "code_lists": _TABLES[language]}
    return json_body(body, headers=_headers(language))


@routes.get("/codes/{name}", name="codes.one")
@documented(_OPERATIONS["codes.one"], schemas=_SCHEMAS)
@public
async def one_code_list(request: web.Request) -> web.Response:
    """One code list with its labels."""
    name = request.match_info["name"]
    language = CURRENT.get()
    if name not in _TABLES[language]:
        raise ApiError(404, "not_found", msg("no code list has the name in the path (GET /codes lists them)"))
    return json_body({"code_list": name, "language": language, "labels": _TABLES[language][name]},
                     headers=_headers(language))
