"""The local forms as HTML forms (gateway/workspace/local_form.py): built from each adapter's
local schema, labelled in the form's own language, and record → fields → record round-trips."""

from __future__ import annotations

import json
import string
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from adapters.registry import get_adapter
from gateway.workspace.local_form import (DEFAULT_ROWS, MAX_CHECKBOXES, FormField, LocalForm, build_form,
                                          formats_with_forms, input_name)

from testkit.gateway_pair import ROOT
from .support.adapter_checks import maps_or_refuses, records_from_schema
from .support.hypothesis_profiles import scaled

FORMATS = ("niger", "nigeria", "mali")
SAMPLES = sorted((ROOT / "adapters").glob("*/samples/*.json"))
#: Samples that write unknown values ("inconnu", "unknown") where the form has a blank: their
#: round trip leaves those out, which is what a clerk leaving the field blank sends.
MISSING_VALUE_SAMPLES = {"valeurs_manquantes.json", "missing_values.json"}


def _get_path(record: Any, name: str) -> Any:
    for part in name.split("."):
        if isinstance(record, list) and part.isdigit() and int(part) < len(record):
            record = record[int(part)]
        elif isinstance(record, dict):
            record = record.get(part)
        else:
            return None
    return record


def pairs(values: dict[str, list[str]]) -> list[tuple[str, str]]:
    """What a browser posts for these inputs (a name repeated for each checked box)."""
    return [(name, v) for name, vs in values.items() for v in vs]


def shared_or_error(format_id: str, record: dict[str, Any]) -> Any:
    """What the adapter makes of a record: its payload and dropped fields, or its errors."""
    try:
        result = get_adapter(format_id).to_shared(record)
    except Exception as exc:  # noqa: BLE001 - the comparison is of the error's data
        return ("error", type(exc).__name__, [getattr(e, "local_field", None) for e in getattr(exc, "errors", ())])
    return ("ok", result.payload, sorted(map(str, result.dropped)))


def test_the_three_local_forms_are_offered() -> None:
    assert set(FORMATS) <= set(formats_with_forms())
    assert "htcds" not in formats_with_forms()  # a data standard, not a form a clerk fills in


@pytest.mark.parametrize("format_id", FORMATS)
def test_every_field_of_the_local_schema_has_an_input_and_a_label(format_id: str) -> None:
    form = build_form(format_id)
    schema = get_adapter(format_id).local_schema
    names = [f.name for f in form.fields()]
    tops = {n.split(".")[0] for n in names}
    assert tops == set(schema["properties"]), "every top-level field of the local form is on the page"
    assert len(names) == len(set(names))
    for form_field in form.fields():
        last = form_field.name.split(".")[-1]
        assert form_field.label and form_field.label != last.replace("_", " "), f"{form_field.name} has no label"
    assert [s.id for s in form.sections][-1] == "consent" and form.consent_field in ("consentement", "consent")
    assert all(f.name.startswith(form.consent_field + ".") for f in form.sections[-1].fields)


def test_labels_are_in_the_forms_own_language() -> None:
    niger, nigeria, mali = (build_form(f) for f in FORMATS)
    assert (niger.language, nigeria.language, mali.language) == ("fr", "en", "fr")
    assert niger.field("prenom").label == "Prénom(s)"
    assert niger.field("lieu_origine.ville").label == "Ville ou village"
    assert niger.field("contacts_famille.0.prenom").row_label == "Contact familial n° 1"
    assert niger.field("consentement.date").label == "Date du consentement"
    assert nigeria.field("first_name").label == "First name"
    assert nigeria.field("family_contacts.1.location.town").label == "Location — Town"
    assert niger.field("lieu_origine.ville").caption == "Lieu d'origine"
    assert niger.field("contacts_famille.0.lieu.ville").caption == "Contact familial n° 1"
    assert mali.field("tuteur.lien").label == "Lien de parenté"  # one guardian block, as on the paper form


def test_objects_are_flattened_and_lists_of_objects_are_rows() -> None:
    form = build_form("niger")
    for name in ("lieu_origine.ville", "lieu_origine.pays", "contacts_famille.0.lieu.ville",
                 "contacts_famille.1.telephone", "documents_identite.1.numero", "type_exploitation.0.type",
                 "type_exploitation.1.secteurs", "autres_noms.0", "consentement.agences_destinataires"):
        assert form.field(name) is not None, name
    assert form.field(f"contacts_famille.{DEFAULT_ROWS}.nom") is None
    assert form.field("contacts_famille.0.telephone").hint == "+227 90 12 34 56"
    assert form.field("date_naissance").hint == "JJ/MM/AAAA"
    assert form.field("recit").kind == "textarea"
    assert form.field("age_estime").kind == "number"
    assert form.field("consentement.donne_par").required and not form.field("prenom").required


def test_coded_fields_are_selects_and_lists_of_codes_checkboxes() -> None:
    form = build_form("niger")
    sexe = form.field("sexe")
    assert sexe.kind == "select" and {"F", "M"} <= {c.value for c in sexe.choices}
    besoins = form.field("besoins")
    assert besoins.kind == "checkboxes" and besoins.multiple
    values = [c.value for c in besoins.choices]
    assert "médical" in values and len(values) == len(set(values))
    # One spelling per shared code: "évaluation des risques" means what "évaluation de sécurité" does.
    finalites = [c.value for c in form.field("consentement.finalites").choices]
    assert "évaluation de sécurité" in finalites and "évaluation des risques" not in finalites
    pays = form.field("consentement.pays_destinataires")
    assert pays.kind == "multiselect" and len(pays.choices) > MAX_CHECKBOXES
    assert form.field("mineur").kind == "select" and [c.value for c in form.field("mineur").choices][:2] == ["oui", "non"]


def test_parse_leaves_out_blanks_parses_numbers_and_drops_empty_rows() -> None:
    form = build_form("niger")
    posted = [("csrf", "tok"), ("recipient", "NG-NAPTIP"), ("prenom", "  Amaka "), ("nom", ""), ("age_estime", "22"),
              ("enfants_accompagnants", "deux"), ("besoins", "médical"), ("besoins", "psychosocial"),
              ("lieu_origine.ville", "Benin City"), ("lieu_origine.pays", ""),
              ("contacts_famille.0.nom", ""), ("contacts_famille.1.lien", "mère"),
              ("contacts_famille.1.lieu.pays", "Nigeria"), ("consentement.finalites", "recherche familiale")]
    assert form.parse(posted) == {
        "prenom": "Amaka", "age_estime": 22, "enfants_accompagnants": "deux",
        "besoins": ["médical", "psychosocial"], "lieu_origine": {"ville": "Benin City"},
        "contacts_famille": [{"lien": "mère", "lieu": {"pays": "Nigeria"}}],
        "consentement": {"finalites": ["recherche familiale"]},
    }
    assert form.parse([("contacts_famille.0.nom", " "), ("x", "y")]) == {}


def test_input_names_of_adapter_errors() -> None:
    assert input_name("contacts_famille[0].telephone") == "contacts_famille.0.telephone"
    assert input_name("type_exploitation[1].secteurs[0]") == "type_exploitation.1.secteurs.0"
    assert input_name("prenom") == "prenom"


@pytest.mark.parametrize("sample", SAMPLES and [s for s in SAMPLES if s.parent.parent.name in FORMATS],
                         ids=lambda p: f"{p.parent.parent.name}/{p.name}")
def test_samples_round_trip_through_the_form(sample: Path) -> None:
    format_id = sample.parent.parent.name
    record = json.loads(sample.read_text(encoding="utf-8"))
    form = build_form(format_id).fit(record)
    back = form.parse(pairs(form.values(record)))
    # Once through the form, a record is in the form's own shape: a second pass changes nothing.
    again = build_form(format_id).fit(back)
    assert again.parse(pairs(again.values(back))) == back
    if sample.name not in MISSING_VALUE_SAMPLES:
        # The adapter makes the same referral of it: what leaves and what is dropped are the same.
        assert shared_or_error(format_id, back) == shared_or_error(format_id, record)
        assert shared_or_error(format_id, back)[0] == "ok"


def test_fit_adds_rows_for_a_longer_list_and_keeps_an_unlisted_spelling() -> None:
    record = {"contacts_famille": [{"lien": "mère"}, {"lien": "père"}, {"lien": "Maman"}]}
    form = build_form("niger").fit(record)
    assert form.field("contacts_famille.2.lien") is not None
    assert "Maman" in [c.value for c in form.field("contacts_famille.2.lien").choices]
    assert form.parse(pairs(form.values(record))) == record


# --- generated records in the form's shape ---------------------------------------------------

_TEXT = st.text(alphabet=string.ascii_letters + string.digits + " éèàçÉ'-/.", min_size=1, max_size=30).map(
    str.strip).filter(bool)


def _value(form_field: FormField) -> st.SearchStrategy[Any]:
    if form_field.multiple:
        choices = [c.value for c in form_field.choices] or ["NG-NAPTIP", "NE-ANLTP-TIM"]
        return st.lists(st.sampled_from(choices), min_size=1, max_size=4, unique=True)
    if form_field.kind == "select":
        return st.sampled_from([c.value for c in form_field.choices])
    if form_field.kind == "number":
        return st.integers(min_value=0, max_value=120)
    return _TEXT


def _nest(flat: dict[str, Any]) -> dict[str, Any]:
    """A record from dotted names (rows numbered from 0), built apart from the code under test."""
    record: dict[str, Any] = {}
    for name, value in flat.items():
        parts = name.split(".")
        node: Any = record
        for part, after in zip(parts, parts[1:]):
            key: Any = int(part) if isinstance(node, list) else part
            if isinstance(node, list):
                while len(node) <= key:
                    node.append([] if after.isdigit() else {})
                node = node[key]
            else:
                node = node.setdefault(key, [] if after.isdigit() else {})
        if isinstance(node, list):
            node.append(value)
        else:
            node[parts[-1]] = value
    return record


@st.composite
def form_records(draw: st.DrawFn, form: LocalForm) -> dict[str, Any]:
    """A record the form can hold: some fields filled, rows filled from the first one on."""
    flat: dict[str, Any] = {}
    filled_rows: dict[str, int] = {}
    for form_field in form.fields():
        if form_field.row is not None:
            owner, _, index = form_field.row.rpartition(".")
            count = filled_rows.setdefault(owner, draw(st.integers(0, DEFAULT_ROWS)))
            if int(index) >= count:
                continue
            # A filled row needs a value in its first field so no row comes back empty.
            first = form_field.name == next(f.name for f in form.fields() if f.row == form_field.row)
            if first or draw(st.booleans()):
                flat[form_field.name] = draw(_value(form_field))
        elif draw(st.booleans()):
            flat[form_field.name] = draw(_value(form_field))
    return _nest(flat)


@pytest.mark.parametrize("format_id", FORMATS)
@settings(max_examples=scaled(100), suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(data=st.data())
def test_generated_records_round_trip(format_id: str, data: st.DataObject) -> None:
    form = build_form(format_id)
    record = data.draw(form_records(form))
    values = form.values(record)
    assert form.parse(pairs(values)) == record
    # And the other way: the fields a record fills are the fields it comes back from.
    assert form.values(form.parse(pairs(values))) == values


# --- records drawn from the local schemas (the adapters' fuzz strategy) ------------------------

@pytest.mark.parametrize("format_id", FORMATS)
@settings(max_examples=scaled(100), suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
          deadline=None)
@given(data=st.data())
def test_any_record_of_the_local_schema_settles_after_one_pass(format_id: str, data: st.DataObject) -> None:
    adapter = get_adapter(format_id)
    record = data.draw(records_from_schema(adapter.local_schema, adapter.table))
    form = build_form(format_id).fit(record)
    back = form.parse(pairs(form.values(record)))
    # What the form shows is what it sends back: a second pass changes nothing.
    again = build_form(format_id).fit(back)
    assert again.parse(pairs(again.values(back))) == back
    # A JSON true or false of a yes/no field is shown as the form's own spelling ("oui", "yes").
    base = build_form(format_id)
    shown = form.values(record)
    for form_field in base.fields():
        value = _get_path(record, form_field.name)
        if form_field.kind == "select" and isinstance(value, bool):
            assert shown[form_field.name][0] in {c.value for c in form_field.choices}
    # And the adapter answers it as any record: a payload or an AdapterError naming a field.
    maps_or_refuses(adapter, back)
