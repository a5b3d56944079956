"""The schema files themselves: generated parts up to date, closed objects, local refs."""

from __future__ import annotations

import importlib.util
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from gateway import schema

V1 = schema.SCHEMA_DIR / "v1"
FILES = sorted(V1.glob("*.schema.json"))
# Subschemas under these keywords constrain part of an object defined elsewhere.
PARTIAL = {"if", "then", "else", "not", "contains"}
PERSON_DEFS = {"person", "names", "place", "family_contact", "identity_document", "phone", "age"}


def _build() -> Any:
    spec = importlib.util.spec_from_file_location("schema_build", schema.SCHEMA_DIR / "build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def _subschemas(node: Any, path: tuple = (), partial: bool = False) -> Iterator[tuple[tuple, Any, bool]]:
    if isinstance(node, dict):
        yield path, node, partial
        for key, value in node.items():
            if key in ("enum", "const", "required", "examples"):
                continue
            if key in ("properties", "$defs", "patternProperties", "dependentSchemas"):
                for name, sub in value.items():
                    yield from _subschemas(sub, (*path, key, name), partial)
            else:
                yield from _subschemas(value, (*path, key), partial or key in PARTIAL)
    elif isinstance(node, list):
        for index, item in enumerate(node):
            yield from _subschemas(item, (*path, index), partial)


def test_committed_schemas_equal_the_generated_ones() -> None:
    stale = [p.name for p, text in _build().render_all().items() if p.read_text(encoding="utf-8") != text]
    assert stale == [], "run: .venv/bin/python schemas/build.py"


def test_build_rejects_a_table_that_misses_a_field() -> None:
    build = _build()
    table = schema.minimal_data_table()
    broken = {**table, "always_allowed": [f for f in table["always_allowed"] if f != "person.languages"]}
    with pytest.raises(ValueError, match="person.languages"):
        build.check_table(broken, _load(V1 / "referral.request.schema.json"), _load(V1 / "common.schema.json"))
    broken = {**table, "always_allowed": [*table["always_allowed"], "person.shoe_size"]}
    with pytest.raises(ValueError, match="shoe_size"):
        build.check_table(broken, _load(V1 / "referral.request.schema.json"), _load(V1 / "common.schema.json"))


def test_one_schema_file_per_message_type_plus_common() -> None:
    names = {p.name.removesuffix(".schema.json") for p in FILES}
    assert names == {*schema.MESSAGE_TYPES, "common"}


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_schema_is_valid_draft_2020_12_with_its_id(path: Path) -> None:
    doc = _load(path)
    Draft202012Validator.check_schema(doc)
    assert doc["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert doc["$id"] == schema.SCHEMA_BASE_URI + path.name


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_every_object_is_closed(path: Path) -> None:
    for where, node, partial in _subschemas(_load(path)):
        if node.get("type") == "object":
            closed = node.get("additionalProperties") is False or node.get("unevaluatedProperties") is False
            assert closed, f"{path.name} {where}: object without additionalProperties: false"
        elif "properties" in node and not partial:
            assert False, f"{path.name} {where}: properties outside an object schema or a rule"


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_every_ref_is_local_and_resolves(path: Path) -> None:
    doc = _load(path)
    resolver = schema._registry().resolver(base_uri=doc["$id"])
    for _, node, _ in _subschemas(doc):
        ref = node.get("$ref")
        if ref is not None:
            assert not ref.startswith(("http:", "https:")), ref
            resolver.lookup(ref)


MESSAGE_FILES = [p for p in FILES if p.name not in ("referral.request.schema.json", "common.schema.json")]


@pytest.mark.parametrize("path", MESSAGE_FILES, ids=lambda p: p.name)
def test_only_referral_request_carries_identity_data(path: Path) -> None:
    refs = {node["$ref"] for _, node, _ in _subschemas(_load(path)) if "$ref" in node}
    assert not {r.rsplit("/", 1)[-1] for r in refs} & PERSON_DEFS


def test_receipt_has_only_the_acknowledgement() -> None:
    assert set(schema.load_schema("receipt")["properties"]) == {"message_id", "status", "status_at"}


def test_purposes_agree_everywhere() -> None:
    common = _load(V1 / "common.schema.json")
    assert tuple(common["$defs"]["purpose"]["enum"]) == schema.PURPOSES
    assert tuple(schema.minimal_data_table()["allowed_by_purpose"]) == schema.PURPOSES


def test_country_codes() -> None:
    codes = _load(V1 / "common.schema.json")["$defs"]["country_code"]["enum"]
    assert codes == sorted(set(codes))
    assert all(re.fullmatch(r"[A-Z]{2}", c) for c in codes)
    assert {"NE", "NG", "ML", "BJ", "LR", "CM", "GM", "SD", "TD", "CI", "GH", "GN", "SL", "TG", "NO"} <= set(codes)
    assert not {"UK", "EU", "ZZ"} & set(codes)
    iso = Path("/usr/share/iso-codes/json/iso_3166-1.json")
    if iso.exists():
        assert set(codes) == {c["alpha_2"] for c in json.loads(iso.read_text())["3166-1"]} | {"XK"}


def test_docs_describe_every_field_and_definition() -> None:
    doc = (schema.SCHEMA_DIR.parent / "docs" / "schema.md").read_text(encoding="utf-8")
    for name in _load(V1 / "common.schema.json")["$defs"]:
        assert f"`{name}`" in doc, f"docs/schema.md does not describe $defs/{name}"
    for message_type in schema.MESSAGE_TYPES:
        section = doc.split(f"### `{message_type}`", 1)[1].split("\n### ", 1)[0]
        for name in schema.load_schema(message_type)["properties"]:
            assert f"`{name}`" in section or f"`{name}." in section, f"{message_type}.{name} undocumented"


def test_docs_minimal_data_table_matches_the_json_table() -> None:
    doc = (schema.SCHEMA_DIR.parent / "docs" / "schema.md").read_text(encoding="utf-8")
    section = doc.split("## Minimal data", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    seen = set()
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        fields = re.findall(r"`([a-z_.]+)`", cells[0])
        marked = {p for p, cell in zip(schema.PURPOSES, cells[1:]) if cell == "✓"}
        for field in fields:
            seen.add(field)
            expected = {p for p in schema.PURPOSES if field in schema.allowed_person_fields([p])}
            assert marked == expected, field
    table = schema.minimal_data_table()
    documented = {f for fields in table["allowed_by_purpose"].values() for f in fields} | set(table["always_allowed"])
    assert documented - {"person"} <= seen
