"""What every registered country adapter must satisfy, whatever its format."""

from __future__ import annotations

import json

import pytest
from jsonschema import Draft202012Validator

from adapters import AdapterError, MappingAdapter, available_formats, get_adapter


@pytest.fixture(params=available_formats())
def adapter(request: pytest.FixtureRequest) -> MappingAdapter:
    found = get_adapter(request.param)
    assert isinstance(found, MappingAdapter)
    return found


def test_local_schema_is_draft_2020_12_and_samples_are_valid(adapter: MappingAdapter) -> None:
    assert adapter.local_schema_file is not None
    schema = json.loads((adapter.folder / adapter.local_schema_file).read_text(encoding="utf-8"))
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(schema)
    samples = sorted((adapter.folder / "samples").glob("*.json"))
    assert len(samples) >= 3
    for path in samples:
        assert list(Draft202012Validator(schema).iter_errors(json.loads(path.read_text(encoding="utf-8")))) == [], path.name


def test_every_code_list_the_local_schema_names_exists(adapter: MappingAdapter) -> None:
    assert adapter.local_schema_file is not None
    text = (adapter.folder / adapter.local_schema_file).read_text(encoding="utf-8")
    named = {part.split('"')[0] for part in text.split('"x-code-list": "')[1:]}
    assert named <= set(adapter.table.code_lists)


def test_every_shared_code_has_a_local_spelling(adapter: MappingAdapter) -> None:
    """from_shared can write back every code the shared schema can send."""
    for name, codes in adapter.table.code_lists.items():
        assert codes.missing_codes() == [], name


def test_the_code_lists_in_the_docs_are_generated_from_the_tables() -> None:
    """docs/adapters.md shows every country's code lists as the tables have them (no drift)."""
    from adapters import code_list_doc

    text = code_list_doc.DOC.read_text(encoding="utf-8")
    assert code_list_doc.updated(text) == text, "run: python -m adapters.code_list_doc --write"
    for folder, title in code_list_doc.COUNTRIES:
        assert f"### Code lists: {title}" in text
    assert "| `abuse_of_vulnerability` |" in text and "abus de vulnérabilité" in text
    assert "[docs/htcds.md](htcds.md)" in text


def test_local_schema_patterns_are_explained_in_the_forms_words(adapter: MappingAdapter) -> None:
    """Every pattern in a local schema has an x-hint, so no error shows a regular expression."""
    assert adapter.local_schema_file is not None
    text = (adapter.folder / adapter.local_schema_file).read_text(encoding="utf-8")
    if adapter.format_id in ("niger", "nigeria", "mali"):
        assert text.count('"pattern"') == text.count('"x-hint"')
        assert ("JJ/MM/AAAA" in text) == (adapter.table.date_hint == "JJ/MM/AAAA")


#: format -> (a sample of a minor, the care-status field, spellings -> v2 code, what is written back)
CARE_STATUS = {
    "niger": ("mineure_retour_tuteur", "situation_enfant",
              {"non accompagnée": "unaccompanied", "Enfant séparé": "separated"}, {"unaccompanied": "non accompagné"}),
    "nigeria": ("minor_guardian_family_tracing", "care_status",
                {"UASC": "unaccompanied", "separated child": "separated"}, {"unaccompanied": "unaccompanied"}),
    "mali": ("fillette_recherche_retour", "situation_enfant",
             {"non accompagné": "unaccompanied", "avec ses parents": "with_parent_or_legal_guardian"},
             {"with_parent_or_legal_guardian": "avec parent ou tuteur légal"}),
}


@pytest.mark.parametrize("fmt", sorted(CARE_STATUS))
def test_a_childs_care_status_travels_in_v2_and_is_reported_in_v1(fmt: str) -> None:
    """Unaccompanied / separated: every country form has the field (the table's ``care_status``)."""
    adapter = get_adapter(fmt)
    assert isinstance(adapter, MappingAdapter)
    sample, field, spellings, back = CARE_STATUS[fmt]
    record = json.loads((adapter.folder / "samples" / f"{sample}.json").read_text(encoding="utf-8"))
    for spelling, code in spellings.items():
        result = adapter.to_shared_v2(record | {field: spelling}, None, recipient="NG-NAPTIP", recipient_country="NG")
        assert result.payload["child_protection"]["care_status"] == code
        assert field not in {d.local_field for d in result.dropped}
        local = adapter.from_shared(result.payload)
        if code in back:
            assert local[field] == back[code]
        v1 = adapter.to_shared(record | {field: spelling})
        assert "child_protection" not in v1.payload and field in {d.local_field for d in v1.dropped}
    with pytest.raises(AdapterError, match=f"^{field}: 'lost' is not in the code list"):
        adapter.to_shared(record | {field: "lost"})


def test_a_care_status_table_entry_is_checked_when_the_table_loads() -> None:
    from adapters.errors import MappingDefinitionError
    from adapters.table import MappingTable
    folder = get_adapter("niger").folder  # type: ignore[attr-defined]
    spec = json.loads((folder / "mapping.json").read_text(encoding="utf-8"))
    bad = json.loads(json.dumps(spec))
    bad["code_lists"]["situation_enfant"]["codes"]["perdu"] = "lost"
    with pytest.raises(MappingDefinitionError, match="not care statuses"):
        MappingTable.from_dict(bad, folder)
    bad = json.loads(json.dumps(spec))
    del bad["local_only"]["situation_enfant"]
    with pytest.raises(MappingDefinitionError, match="care_status"):
        MappingTable.from_dict(bad, folder)
