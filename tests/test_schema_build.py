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
V2 = schema.SCHEMA_DIR / "v2"
FILES = sorted(V1.glob("*.schema.json")) + sorted(V2.glob("*.schema.json"))
# Subschemas under these keywords constrain part of an object defined elsewhere.
PARTIAL = {"if", "then", "else", "not", "contains"}
PURPOSES_V1 = schema.PURPOSES_BY_VERSION["1"]
PERSON_DEFS = {"guardian", "child_protection", "person", "names", "place", "family_contact", "identity_document", "phone", "age"}


def _build() -> Any:
    spec = importlib.util.spec_from_file_location("schema_build", schema.SCHEMA_DIR / "build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _version(path: Path) -> str:
    return path.parent.name.removeprefix("v")


def _ids(path: Path) -> str:
    return f"{path.parent.name}/{path.name}"


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


def test_build_checks_both_versions() -> None:
    rendered = {(p.parent.name, p.name) for p in _build().render_all()}
    for version in schema.SCHEMA_VERSIONS:
        assert (f"v{version}", "referral.request.schema.json") in rendered


def test_build_rejects_a_v2_table_without_a_reason_for_a_field() -> None:
    build = _build()
    table = schema.minimal_data_table("2")
    reasons = table["reasons"]
    by_purpose = {**reasons["by_purpose"], "assistance": {k: v for k, v in reasons["by_purpose"]["assistance"].items() if k != "needs"}}
    broken = {**table, "reasons": {**reasons, "by_purpose": by_purpose}}
    with pytest.raises(ValueError, match="missing for assistance/needs"):
        build.check_table(broken, _load(V2 / "referral.request.schema.json"), _load(V2 / "common.schema.json"))
    by_purpose = {**reasons["by_purpose"], "assistance": {**reasons["by_purpose"]["assistance"], "narrative": "why not"}}
    broken = {**table, "reasons": {**reasons, "by_purpose": by_purpose}}
    with pytest.raises(ValueError, match="not allowed: assistance/narrative"):
        build.check_table(broken, _load(V2 / "referral.request.schema.json"), _load(V2 / "common.schema.json"))


def test_build_rejects_a_table_that_misses_a_field() -> None:
    build = _build()
    table = schema.minimal_data_table()
    broken = {**table, "always_allowed": [f for f in table["always_allowed"] if f != "person.languages"]}
    with pytest.raises(ValueError, match="person.languages"):
        build.check_table(broken, _load(V1 / "referral.request.schema.json"), _load(V1 / "common.schema.json"))
    broken = {**table, "always_allowed": [*table["always_allowed"], "person.shoe_size"]}
    with pytest.raises(ValueError, match="shoe_size"):
        build.check_table(broken, _load(V1 / "referral.request.schema.json"), _load(V1 / "common.schema.json"))


@pytest.mark.parametrize("folder", [V1, V2], ids=lambda p: p.name)
def test_one_schema_file_per_message_type_plus_common(folder: Path) -> None:
    names = {p.name.removesuffix(".schema.json") for p in folder.glob("*.schema.json")}
    assert names == {*schema.MESSAGE_TYPES, "common"}


@pytest.mark.parametrize("path", FILES, ids=_ids)
def test_schema_is_valid_draft_2020_12_with_its_id(path: Path) -> None:
    doc = _load(path)
    Draft202012Validator.check_schema(doc)
    assert doc["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert doc["$id"] == schema.SCHEMA_BASE_URIS[_version(path)] + path.name


@pytest.mark.parametrize("path", FILES, ids=_ids)
def test_every_object_is_closed(path: Path) -> None:
    for where, node, partial in _subschemas(_load(path)):
        if node.get("type") == "object":
            closed = node.get("additionalProperties") is False or node.get("unevaluatedProperties") is False
            assert closed, f"{path.name} {where}: object without additionalProperties: false"
        elif "properties" in node and not partial:
            assert False, f"{path.name} {where}: properties outside an object schema or a rule"


@pytest.mark.parametrize("path", FILES, ids=_ids)
def test_every_ref_is_local_and_resolves(path: Path) -> None:
    doc = _load(path)
    resolver = schema._registry().resolver(base_uri=doc["$id"])
    for _, node, _ in _subschemas(doc):
        ref = node.get("$ref")
        if ref is not None:
            assert not ref.startswith(("http:", "https:")), ref
            resolver.lookup(ref)


MESSAGE_FILES = [p for p in FILES if p.name not in ("referral.request.schema.json", "common.schema.json")]


@pytest.mark.parametrize("path", MESSAGE_FILES, ids=_ids)
def test_only_referral_request_carries_identity_data(path: Path) -> None:
    refs = {node["$ref"] for _, node, _ in _subschemas(_load(path)) if "$ref" in node}
    assert not {r.rsplit("/", 1)[-1] for r in refs} & PERSON_DEFS


def test_receipt_has_only_the_acknowledgement() -> None:
    assert set(schema.load_schema("receipt")["properties"]) == {"message_id", "status", "status_at"}
    assert set(schema.load_schema("receipt", "2")["properties"]) == {"schema_version", "message_id", "status", "status_at"}


@pytest.mark.parametrize("version", schema.SCHEMA_VERSIONS)
def test_purposes_agree_everywhere(version: str) -> None:
    common = _load(schema.version_dir(version) / "common.schema.json")
    assert tuple(common["$defs"]["purpose"]["enum"]) == schema.PURPOSES_BY_VERSION[version]
    assert tuple(schema.minimal_data_table(version)["allowed_by_purpose"]) == schema.PURPOSES_BY_VERSION[version]


@pytest.mark.parametrize("path", sorted(V2.glob("*.schema.json")), ids=_ids)
def test_every_v2_message_declares_its_version(path: Path) -> None:
    doc = _load(path)
    if path.name == "common.schema.json":
        assert doc["$defs"]["schema_version"] == {"description": doc["$defs"]["schema_version"]["description"], "const": "2"}
        return
    assert doc["properties"]["schema_version"] == {"$ref": "common.schema.json#/$defs/schema_version"}
    assert "schema_version" in doc["required"]


def test_v1_schemas_have_no_version_member() -> None:
    for path in V1.glob("*.schema.json"):
        assert "schema_version" not in _load(path).get("properties", {}), path.name


def test_country_codes() -> None:
    codes = _load(V1 / "common.schema.json")["$defs"]["country_code"]["enum"]
    assert codes == sorted(set(codes))
    assert all(re.fullmatch(r"[A-Z]{2}", c) for c in codes)
    assert {"NE", "NG", "ML", "BJ", "LR", "CM", "GM", "SD", "TD", "CI", "GH", "GN", "SL", "TG", "NO"} <= set(codes)
    assert not {"UK", "EU", "ZZ"} & set(codes)
    iso = Path("/usr/share/iso-codes/json/iso_3166-1.json")
    if iso.exists():
        assert set(codes) == {c["alpha_2"] for c in json.loads(iso.read_text())["3166-1"]} | {"XK"}


@pytest.mark.parametrize(("version", "heading"), [("1", "### `{}`"), ("2", "### v2 `{}`")])
def test_docs_describe_every_field_and_definition(version: str, heading: str) -> None:
    doc = (schema.SCHEMA_DIR.parent / "docs" / "schema.md").read_text(encoding="utf-8")
    for name in _load(schema.version_dir(version) / "common.schema.json")["$defs"]:
        assert f"`{name}`" in doc, f"docs/schema.md does not describe $defs/{name} (v{version})"
    for message_type in schema.MESSAGE_TYPES:
        section = doc.split(heading.format(message_type), 1)[1].split("\n### ", 1)[0]
        for name in schema.load_schema(message_type, version)["properties"]:
            assert f"`{name}`" in section or f"`{name}." in section, f"v{version} {message_type}.{name} undocumented"


def test_docs_cite_htcds_2_0_field_names_only() -> None:
    doc = (schema.SCHEMA_DIR.parent / "docs" / "schema.md").read_text(encoding="utf-8")
    # The project's shared reference folder sits beside the checkout (../shared, or ../../shared
    # from a worktree); it is not part of the repository.
    root = schema.SCHEMA_DIR.parent
    found = [r / "shared" / "reference" / "htcds" / "htcds_2.0_fields.txt" for r in (root.parent, root.parent.parent)]
    reference = next((r for r in found if r.exists()), None)
    if reference is None:
        pytest.skip("the HTCDS 2.0 field list (../shared/reference/htcds) is not next to this checkout")
    current = {line.split(" | ")[1] for line in reference.read_text(encoding="utf-8").splitlines()
               if line.startswith("DRAFT | ")}
    cited = set(re.findall(r"\b(?:org|prs|vic|per|cas|hte|spl|con|cco)_[A-Za-z]+\b", doc))
    assert cited and cited <= current, sorted(cited - current)


def test_docs_minimal_data_table_matches_the_json_table() -> None:
    doc = (schema.SCHEMA_DIR.parent / "docs" / "schema.md").read_text(encoding="utf-8")
    section = doc.split("## Minimal data, version 1", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    seen = set()
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        fields = re.findall(r"`([a-z_.]+)`", cells[0])
        marked = {p for p, cell in zip(PURPOSES_V1, cells[1:]) if cell == "✓"}
        for field in fields:
            seen.add(field)
            expected = {p for p in PURPOSES_V1 if field in schema.allowed_person_fields([p])}
            assert marked == expected, field
    table = schema.minimal_data_table()
    documented = {f for fields in table["allowed_by_purpose"].values() for f in fields} | set(table["always_allowed"])
    assert documented - {"person"} <= seen


def test_docs_v2_minimal_data_tables_match_the_json_table() -> None:
    doc = (schema.SCHEMA_DIR.parent / "docs" / "schema.md").read_text(encoding="utf-8")
    section = doc.split("## Minimal data, version 2", 1)[1].split("\n## ", 1)[0]
    purposes = schema.PURPOSES_BY_VERSION["2"]
    table = schema.minimal_data_table("2")
    header = next(line for line in section.splitlines() if line.startswith("| Field |"))
    assert [c.strip() for c in header.strip("|").split("|")][1:] == list(purposes)
    marks, reasons = {}, set()
    for row in section.splitlines():
        cells = [c.strip() for c in row.strip("|").split("|")]
        if row.startswith("| `") and len(cells) == len(purposes) + 1:
            (field,) = re.findall(r"`([a-z_.]+)`", cells[0])
            marks[field] = {p for p, cell in zip(purposes, cells[1:]) if cell == "✓"}
        elif len(cells) == 3 and cells[1].startswith("`"):
            purpose = None if cells[0] == "(every purpose)" else cells[0].strip("`")
            field = cells[1].strip("`")
            reasons.add((purpose, field))
            assert cells[2] == schema.minimal_data_reason(purpose, field), (purpose, field)
    for field, marked in marks.items():
        assert marked == {p for p in purposes if field in schema.allowed_person_fields([p], "2")}, field
    restricted = {f for fields in table["allowed_by_purpose"].values() for f in fields}
    assert set(marks) == (restricted | set(table["always_allowed"])) - {"person"}
    expected = {(None, f) for f in table["reasons"]["always_allowed"]} | {
        (p, f) for p, fields in table["reasons"]["by_purpose"].items() for f in fields}
    assert reasons == expected
