"""The mapping engine, its transforms and errors, the registry, and the ``adapt`` CLI.

Uses a tiny inline adapter so each engine feature is tested apart from any country.
The hypothesis strategy country adapter tests reuse, ``records_from_schema``, is in
tests/support/adapter_checks.py.
"""

from __future__ import annotations

import json
import unicodedata
from datetime import date
from pathlib import Path
from typing import Any

import phonenumbers
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from adapters import (
    AdapterError,
    LocalRecordInvalidError,
    MappingAdapter,
    MappingDefinitionError,
    MissingFieldError,
    PurposesError,
    RecordErrors,
    UnknownFormatError,
    UnmappableValueError,
    available_formats,
    get_adapter,
)
from adapters.base import TRANSFORMS, MappingTable, TransformFailed, normalise, shared_request_fields
from gateway.cli import main
from gateway.errors import GatewayError
from gateway.schema import find_violations
from tests.support.hypothesis_profiles import scaled

# --- a tiny adapter --------------------------------------------------------------------

TINY_MAPPING: dict[str, Any] = {
    "format_id": "tiny",
    "missing_values": ["inconnu", "NSP", ""],
    "local_only": {"ref": "local case number"},
    "code_lists": {
        "sex": {"label": "sex", "target": "sex", "codes": {"F": "female", "M": "male"}},
        "status": {"label": "identification status", "target": "identification_status",
                   "codes": {"présumée": "presumed", "confirmée": "confirmed"}},
        "source": {"label": "referral source", "target": "referral_source", "codes": {"police": "law_enforcement"}},
        "country": {"label": "country", "target": "country_code", "accept_codes": True,
                    "codes": {"Nigeria": "NG", "nigériane": "NG", "Niger": "NE"}},
        "type": {"label": "exploitation type", "target": "exploitation_type",
                 "codes": {"exploitation sexuelle": "sexual_exploitation", "mendicité forcée": "forced_begging",
                           "indéterminé": "undetermined"}},
        "yes": {"label": "yes/no", "codes": {"oui": True, "non": False}},
        "relative": {"label": "relationship", "target": "relationship", "codes": {"mère": "mother", "tuteur": "legal_guardian"}},
        "who": {"label": "decision maker", "target": "decision_maker",
                "codes": {"victime": "self", "tuteur": "parent_guardian"}},
        "purpose": {"label": "purpose", "target": "purpose", "accept_codes": True, "codes": {"recherche familiale": "family_tracing"}},
    },
    "fields": [
        {"local": "statut", "shared": "identification.status", "codes": "status", "required": True},
        {"local": "source", "shared": "identification.referral_source", "codes": "source", "required": True},
        {"local": "prenom", "shared": "person.names", "transform": "split_names"},
        {"local": "nom", "shared": "person.names.family", "transform": "text"},
        {"local": "sexe", "shared": "person.sex", "codes": "sex", "unknown": "unknown"},
        {"local": "mineur", "shared": "person.age.minor", "codes": "yes"},
        {"local": "naissance", "shared": "person.age.date_of_birth", "transform": "date_dmy"},
        {"local": "age", "shared": "person.age.years", "transform": {"name": "int", "min": 0, "max": 120}},
        {"local": "nationalite", "shared": "person.nationality", "codes": "country"},
        {"local": "origine", "shared": "person.place_of_origin", "fields": [
            {"local": "pays", "shared": "country", "codes": "country", "required": True},
            {"local": "ville", "shared": "locality", "transform": "text"}]},
        {"local": "contacts", "shared": "person.family_contacts", "items": {"fields": [
            {"local": "lien", "shared": "relationship", "codes": "relative", "required": True},
            {"local": "tel", "shared": "phone", "transform": "phone_e164"}]}},
        {"local": "exploitation", "shared": "exploitation", "items": {"scalar": "type", "fields": [
            {"local": "type", "shared": "type", "codes": "type", "unknown": "undetermined"},
            {"local": "intention", "shared": "intended", "codes": "yes", "default": False}]}},
        {"local": "consentement", "shared": "consent", "required": True, "fields": [
            {"local": "par", "shared": "decision_maker", "codes": "who", "required": True},
            {"local": "le", "shared": "given_at", "transform": {"name": "datetime_dmy", "utc_offset": "+01:00"}, "required": True},
            {"local": "jusqu_au", "shared": "expires_at",
             "transform": {"name": "datetime_dmy", "utc_offset": "+01:00", "default_time": "23:59:59"}, "required": True},
            {"local": "finalites", "shared": "purposes", "items": {"codes": "purpose"}, "required": True},
            {"local": "pays", "shared": "recipient_countries", "items": {"codes": "country"}}]},
    ],
}


@pytest.fixture
def tiny(tmp_path: Path) -> MappingAdapter:
    (tmp_path / "mapping.json").write_text(json.dumps(TINY_MAPPING), encoding="utf-8")
    cls = type("TinyAdapter", (MappingAdapter,), {"format_id": "tiny", "folder": tmp_path, "local_schema_file": None})
    return cls()


def record(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "ref": "T-1",
        "statut": "présumée",
        "source": "police",
        "prenom": "Amaka Joy",
        "nom": "Testfixture",
        "sexe": "F",
        "age": 22,
        "nationalite": "NIGÉRIANE",
        "origine": {"pays": "Nigeria", "ville": "Benin City"},
        "contacts": [{"lien": "tuteur", "tel": "+234 800 000 0001"}],
        "exploitation": ["exploitation sexuelle", {"type": "mendicité forcée", "intention": "oui"}],
        "consentement": {"par": "victime", "le": "06/03/2026 11:15", "jusqu_au": "31/12/2030",
                         "finalites": ["safety_assessment", "recherche familiale", "assistance"], "pays": ["Nigeria"]},
    }
    base.update(changes)
    return base


# --- mapping ---------------------------------------------------------------------------


def test_maps_scalars_objects_lists_and_codes(tiny: MappingAdapter) -> None:
    result = tiny.to_shared(record(), ["family_tracing", "assistance"])
    p = result.payload
    assert find_violations("referral.request", p) == []
    assert p["purposes"] == ["family_tracing", "assistance"]
    assert p["identification"] == {"status": "presumed", "referral_source": "law_enforcement"}
    assert p["person"]["names"] == {"given": "Amaka", "middle": "Joy", "family": "Testfixture"}
    assert p["person"]["nationality"] == "NG"
    assert p["person"]["age"] == {"minor": False, "years": 22}
    assert p["person"]["place_of_origin"] == {"country": "NG", "locality": "Benin City"}
    assert p["person"]["family_contacts"] == [{"relationship": "legal_guardian", "phone": "+2348000000001"}]
    assert p["exploitation"] == [{"type": "sexual_exploitation", "intended": False}, {"type": "forced_begging", "intended": True}]
    assert p["consent"]["given_at"] == "2026-03-06T10:15:00Z"
    assert p["consent"]["expires_at"] == "2030-12-31T22:59:59Z"
    assert [d.local_field for d in result.dropped] == ["ref"]


def test_round_trip_through_shared(tiny: MappingAdapter) -> None:
    first = tiny.to_shared(record(), ["family_tracing", "assistance"]).payload
    local = tiny.from_shared(first)
    assert local["nationalite"] == "Nigeria" and local["consentement"]["jusqu_au"] == "31/12/2030"
    assert tiny.to_shared(local, ["family_tracing", "assistance"]).payload == first


def test_purposes_default_to_the_consent(tiny: MappingAdapter) -> None:
    assert tiny.to_shared(record()).payload["purposes"] == ["safety_assessment", "family_tracing", "assistance"]


def test_disallowed_fields_are_dropped_and_reported(tiny: MappingAdapter) -> None:
    result = tiny.to_shared(record(), ["safety_assessment"])
    assert "names" not in result.payload["person"] and "exploitation" not in result.payload
    dropped = {d.local_field: d for d in result.dropped}
    assert set(dropped) == {"prenom", "nom", "origine", "contacts", "exploitation", "ref"}
    assert dropped["nom"].shared_path == "person.names.family"
    assert dropped["nom"].reason == "not allowed for purposes [safety_assessment]"
    assert find_violations("referral.request", result.payload) == []


def test_a_broken_value_in_a_dropped_field_does_not_block(tiny: MappingAdapter) -> None:
    broken = record(contacts=[{"lien": "voisin"}])
    with pytest.raises(UnmappableValueError):
        tiny.to_shared(broken, ["family_tracing"])
    result = tiny.to_shared(broken, ["safety_assessment"])
    assert "contacts" in {d.local_field for d in result.dropped}


def test_dropped_date_of_birth_becomes_years(tiny: MappingAdapter) -> None:
    rec = record(naissance="02/05/2009", age=None, mineur=None)
    rec["consentement"]["par"] = "tuteur"
    traced = tiny.to_shared(rec, ["family_tracing"]).payload["person"]["age"]
    assert traced == {"minor": True, "date_of_birth": "2009-05-02"}
    result = tiny.to_shared(rec, ["safety_assessment"])
    assert result.payload["person"]["age"] == {"minor": True, "years": 16}
    assert any(d.local_field == "naissance" and "age in years" in d.reason for d in result.dropped)


def test_one_age_only_and_the_rest_reported(tiny: MappingAdapter) -> None:
    result = tiny.to_shared(record(naissance="01/01/2000", age=26), ["family_tracing"])
    assert result.payload["person"]["age"] == {"minor": False, "date_of_birth": "2000-01-01"}
    assert any(d.local_field == "age" and "superseded" in d.reason for d in result.dropped)


@pytest.mark.parametrize("missing", ["inconnu", "NSP", "", "  Inconnu ", None])
def test_missing_values_are_omitted_or_unknown(tiny: MappingAdapter, missing: Any) -> None:
    rec = record(sexe=missing, nationalite=missing, age=missing, mineur="oui", origine={"pays": missing, "ville": missing})
    rec["consentement"]["par"] = "tuteur"
    p = tiny.to_shared(rec, ["family_tracing"]).payload
    assert p["person"]["sex"] == "unknown"
    assert p["person"]["age"] == {"minor": True, "band": "unknown"}
    assert "nationality" not in p["person"] and "place_of_origin" not in p["person"]


def test_unknown_item_becomes_the_schemas_unknown_code(tiny: MappingAdapter) -> None:
    p = tiny.to_shared(record(exploitation=["inconnu"]), ["assistance"]).payload
    assert p["exploitation"] == [{"type": "undetermined", "intended": False}]
    assert "exploitation" not in tiny.to_shared(record(exploitation="inconnu"), ["assistance"]).payload


def test_accents_and_case_do_not_matter(tiny: MappingAdapter) -> None:
    for spelling in ("nigériane", "NIGÉRIANE", "nigeriane", "Nigériane ", "ng", "NG"):
        assert tiny.to_shared(record(nationalite=spelling), ["assistance"]).payload["person"]["nationality"] == "NG"


def test_unknown_code_names_the_field_and_the_code_list(tiny: MappingAdapter) -> None:
    with pytest.raises(UnmappableValueError) as info:
        tiny.to_shared(record(exploitation=["exploitation sexuelle", "pêche"]), ["assistance"])
    assert str(info.value) == ("exploitation[1]: 'pêche' is not in the code list for exploitation type "
                               "(accepted: exploitation sexuelle, mendicité forcée, indéterminé)")
    # structured for a translation layer: reason code and parameters, the value kept apart
    assert info.value.reason_code == "not_in_code_list"
    assert info.value.params == {"code_list": "type", "label": "exploitation type",
                                 "accepted": ["exploitation sexuelle", "mendicité forcée", "indéterminé"]}
    assert info.value.quoted == "'pêche'" and "pêche" not in json.dumps(info.value.as_dict())
    assert info.value.local_field == "exploitation[1]"
    assert isinstance(info.value, AdapterError) and isinstance(info.value, GatewayError)


def test_free_text_values_are_never_echoed(tiny: MappingAdapter) -> None:
    with pytest.raises(UnmappableValueError) as info:
        tiny.to_shared(record(contacts=[{"lien": "tuteur", "tel": "Zebulon-Quixote"}]), ["family_tracing"])
    assert "Zebulon" not in str(info.value)
    assert str(info.value) == "contacts[0].tel: is not a phone number"
    with pytest.raises(UnmappableValueError) as info:
        tiny.to_shared(record(naissance="31/02/2001"), ["family_tracing"])
    assert "31/02" not in str(info.value) and "naissance" in str(info.value)


def test_required_fields(tiny: MappingAdapter) -> None:
    with pytest.raises(MissingFieldError, match=r"^statut: is required"):
        tiny.to_shared(record(statut="inconnu"), ["assistance"])
    with pytest.raises(MissingFieldError, match=r"^origine.pays: is required when origine is given"):
        tiny.to_shared(record(origine={"ville": "Kano"}), ["family_tracing"])
    with pytest.raises(MissingFieldError, match=r"^mineur: is needed when the age is unknown"):
        tiny.to_shared(record(age="inconnu"), ["assistance"])


def test_shared_cross_field_rules_are_named_by_local_field(tiny: MappingAdapter) -> None:
    with pytest.raises(UnmappableValueError, match=r"^mineur: contradicts age"):
        tiny.to_shared(record(age=15, mineur="non"), ["assistance"])
    with pytest.raises(UnmappableValueError, match=r"^consentement.par: a minor cannot consent alone"):
        tiny.to_shared(record(age=15), ["assistance"])
    with pytest.raises(PurposesError, match=r"^consentement.finalites: 'assisted_return' not consented"):
        tiny.to_shared(record(), ["assisted_return"])
    with pytest.raises(PurposesError, match="not one of"):
        tiny.to_shared(record(), ["lunch"])
    rec = record()
    del rec["consentement"]["pays"]
    with pytest.raises(MissingFieldError, match=r"^consentement.pays: is required unless"):
        tiny.to_shared(rec, ["assistance"])


def test_shapes_are_checked(tiny: MappingAdapter) -> None:
    with pytest.raises(UnmappableValueError, match=r"^origine: must be an object"):
        tiny.to_shared(record(origine="Kano"), ["family_tracing"])
    with pytest.raises(UnmappableValueError, match=r"^contacts: must be a list"):
        tiny.to_shared(record(contacts={"lien": "tuteur"}), ["family_tracing"])


def test_a_mapping_bug_surfaces_as_schema_invalid(tmp_path: Path) -> None:
    from gateway.errors import SchemaInvalidError

    bad = json.loads(json.dumps(TINY_MAPPING))
    bad["fields"][2]["shared"] = "person.alias"  # not a shared field
    (tmp_path / "mapping.json").write_text(json.dumps(bad), encoding="utf-8")
    cls = type("Bad", (MappingAdapter,), {"format_id": "bad", "folder": tmp_path, "local_schema_file": None})
    with pytest.raises(SchemaInvalidError, match="person.alias"):
        cls().to_shared(record(), ["assistance"])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda m: m["fields"][0].update(codes="nope"), "unknown code list 'nope'"),
        (lambda m: m["fields"][2].update(transform="rot13"), "unknown transform 'rot13'"),
        (lambda m: m["fields"][0].update(colour="red"), "unknown keys ['colour']"),
        (lambda m: m["code_lists"]["sex"]["codes"].update(X="x_gender"), "'x_gender' is not a code of sex"),
        (lambda m: m["code_lists"]["sex"]["codes"].update(f="male"), "clashes"),
        (lambda m: m["code_lists"]["sex"].update(target="not_a_def"), "is not an enum"),
    ],
)
def test_mapping_table_mistakes_fail_at_load(tmp_path: Path, change: Any, message: str) -> None:
    spec = json.loads(json.dumps(TINY_MAPPING))
    change(spec)
    with pytest.raises(MappingDefinitionError, match=message.replace("[", r"\[").replace("]", r"\]")):
        MappingTable.from_dict(spec, tmp_path)


# --- transforms ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "args", "value", "expected"),
    [
        ("date_dmy", {}, "04/03/2026", "2026-03-04"),
        ("date_dmy", {}, "4.3.2026", "2026-03-04"),
        ("datetime_dmy", {"utc_offset": "+01:00"}, "06/03/2026 00:30", "2026-03-05T23:30:00Z"),
        ("datetime_dmy", {"utc_offset": "+01:00", "default_time": "23:59:59"}, "31/12/2030", "2030-12-31T22:59:59Z"),
        ("int", {"min": 0}, " 22 ", 22),
        ("upper", {}, " ng-naptip ", "NG-NAPTIP"),
        ("text", {}, "  Benin   City ", "Benin City"),
        ("split_names", {}, "Hadiza  Amina Kande", {"given": "Hadiza", "middle": "Amina Kande"}),
        ("phone_e164", {}, "00 227 90 00 00 00", "+22790000000"),
        ("country_code", {}, "ne", "NE"),
    ],
)
def test_transforms(name: str, args: dict[str, Any], value: Any, expected: Any) -> None:
    assert TRANSFORMS[name].to_shared(value, args) == expected


@pytest.mark.parametrize(
    ("name", "value"),
    [("date_dmy", "2026-03-04"), ("date_dmy", "30/02/2026"), ("date_dmy", "01/01/1850"), ("int", True),
     ("int", "vingt"), ("phone_e164", "0803 000 0000"), ("country_code", "UK"), ("text", "   "), ("text", "x" * 201),
     ("datetime_dmy", "01/01/2026 25:00")],
)
def test_transform_failures_never_quote_the_value(name: str, value: Any) -> None:
    with pytest.raises(TransformFailed) as info:
        TRANSFORMS[name].to_shared(value, {})
    assert str(value).strip() not in str(info.value) or str(value).strip() == ""


def test_transforms_invert() -> None:
    args = {"utc_offset": "+01:00", "default_time": "23:59:59"}
    for value in ("31/12/2030", "06/03/2026 11:15", "06/03/2026 11:15:07"):
        assert TRANSFORMS["datetime_dmy"].to_local(TRANSFORMS["datetime_dmy"].to_shared(value, args), args) == value
    assert TRANSFORMS["split_names"].to_local({"given": "A", "middle": "B C", "family": "D"}, {}) == "A B C"


def test_normalise() -> None:
    assert normalise("  Prélèvement d’ORGANES ") == normalise("prelevement d'organe") == "prelevement d organe"
    # a plural -s on a word of five letters or more is folded; short words and codes keep theirs
    assert normalise("Violences  physiques") == normalise("violence-physique") == "violence physique"
    assert [normalise(w) for w in ("pays", "abus", "MS", "business")] == ["pays", "abus", "ms", "business"]
    assert normalise("SŒUR") == "soeur"


def test_shared_request_fields_lists_nested_paths() -> None:
    fields = shared_request_fields()
    assert {"person.names.given", "exploitation.intended", "consent.explained_in", "purposes"} <= fields


# --- registry and CLI ------------------------------------------------------------------


def test_registry() -> None:
    assert "niger" in available_formats()
    assert get_adapter("niger") is get_adapter("niger")
    assert get_adapter("niger").format_id == "niger"
    with pytest.raises(UnknownFormatError, match="no adapter for format 'atlantis'"):
        get_adapter("atlantis")


SAMPLE = Path(__file__).resolve().parent.parent / "adapters" / "niger" / "samples" / "adulte_nigeriane_securite_recherche.json"


def test_cli_to_shared_and_back(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["adapt", "--from", "niger", "--to", "shared", str(SAMPLE), "--purposes", "safety_assessment"]) == 0
    out, err = capsys.readouterr()
    payload = json.loads(out)
    assert payload["purposes"] == ["safety_assessment"] and "names" not in payload["person"]
    assert "dropped: nom -> person.names.family: not allowed for purposes [safety_assessment]" in err
    assert "Testfixture" not in err
    shared = tmp_path / "shared.json"
    shared.write_text(out, encoding="utf-8")
    assert main(["adapt", "--from", "shared", "--to", "niger", str(shared)]) == 0
    local = json.loads(capsys.readouterr().out)
    assert local["nationalite"] == "Nigeria" and "nom" not in local


def test_cli_errors_exit_1_without_personal_data(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    rec = json.loads(SAMPLE.read_text(encoding="utf-8"))
    rec["nom"] = "Qwertyuiopname"
    rec["sexe"] = "X"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(rec), encoding="utf-8")
    assert main(["adapt", "--from", "niger", "--to", "shared", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "sexe: 'X' is not in the code list for sex" in err and "Qwertyuiopname" not in err
    bad.write_text('{"nom": "Qwertyuiopname",', encoding="utf-8")
    assert main(["adapt", "--from", "niger", "--to", "shared", str(bad)]) == 1
    assert "not JSON" in (err := capsys.readouterr().err) and "Qwertyuiopname" not in err
    assert main(["adapt", "--from", "atlantis", "--to", "shared", str(bad)]) == 1
    assert "unknown_format" in capsys.readouterr().err
    assert main(["adapt", "--list"]) == 0
    assert capsys.readouterr().out.split() == ["shared", *available_formats()]


def test_local_schema_errors_name_the_path_not_the_value() -> None:
    niger = get_adapter("niger")
    rec = json.loads(SAMPLE.read_text(encoding="utf-8"))
    with pytest.raises(LocalRecordInvalidError) as info:
        niger.to_shared(rec | {"nom": "Qwertyuiopname" * 20})
    assert str(info.value) == "nom: must be at most 200 characters long" and info.value.local_field == "nom"
    with pytest.raises(LocalRecordInvalidError, match=r"^\?: is not a field of the local format"):
        niger.to_shared(rec | {"Qwerty Uiopname": 1})
    with pytest.raises(MissingFieldError, match=r"^statut_identification: is required by the local format"):
        niger.to_shared({k: v for k, v in rec.items() if k != "statut_identification"})


# --- every error at once, structured (issue 11) ----------------------------------------


def test_every_problem_of_a_record_is_reported_in_one_run(tiny: MappingAdapter) -> None:
    rec = record(sexe="Q", naissance="2001-02-03", exploitation=["pêche", "exploitation sexuelle", "chasse"],
                 contacts=[{"lien": "voisin", "tel": "12"}], nom="Zyxwvuta")
    rec["consentement"]["le"] = "31/02/2026"
    with pytest.raises(RecordErrors) as info:
        tiny.to_shared(rec, ["family_tracing", "assistance"])
    errors = info.value.errors
    assert [(e.local_field, e.reason_code) for e in errors] == [
        ("sexe", "not_in_code_list"), ("contacts[0].lien", "not_in_code_list"),
        ("contacts[0].tel", "phone_country_code"), ("exploitation[0]", "not_in_code_list"),
        ("exploitation[2]", "not_in_code_list"), ("consentement.le", "not_a_calendar_date"),
        ("naissance", "date_year_first"),
    ]
    assert isinstance(info.value, AdapterError) and info.value.local_field is None
    assert str(info.value) == "; ".join(str(e) for e in errors)
    data = info.value.as_dict()
    assert data["code"] == "record_invalid" and len(data["errors"]) == 7
    assert data["errors"][-1] == {"code": "unmappable_value", "reason_code": "date_year_first",
                                  "local_field": "naissance", "params": {"hint": "DD/MM/YYYY"}}
    shown = str(info.value) + json.dumps(data)
    assert "Zyxwvuta" not in shown and "2001" not in shown


def test_one_problem_is_raised_as_itself(tiny: MappingAdapter) -> None:
    with pytest.raises(UnmappableValueError) as info:
        tiny.to_shared(record(sexe="Q"), ["assistance"])
    assert info.value.errors == (info.value,)


def test_problems_that_follow_from_another_are_not_repeated(tiny: MappingAdapter) -> None:
    """A consent block that cannot be read is one problem, not also "consent is required"."""
    rec = record()
    rec["consentement"]["le"] = "hier"
    with pytest.raises(UnmappableValueError, match=r"^consentement.le: must be a date written DD/MM/YYYY \[HH:MM\]$"):
        tiny.to_shared(rec, ["assistance"])


def test_the_form_language_sets_the_date_hint(tmp_path: Path) -> None:
    spec = dict(TINY_MAPPING, date_hint="JJ/MM/AAAA", country="NE")
    (tmp_path / "mapping.json").write_text(json.dumps(spec), encoding="utf-8")
    cls = type("FrAdapter", (MappingAdapter,), {"format_id": "tiny", "folder": tmp_path, "local_schema_file": None})
    fr = cls()
    with pytest.raises(UnmappableValueError) as info:
        fr.to_shared(record(naissance="2001-02-03"), ["family_tracing"])
    assert str(info.value) == "naissance: is written year first: write the date as JJ/MM/AAAA"
    # and the form's country is the region of a national phone number
    rec = record(contacts=[{"lien": "tuteur", "tel": "96 12 34 56"}])
    assert fr.to_shared(rec, ["family_tracing"]).payload["person"]["family_contacts"][0]["phone"] == "+22796123456"


def test_local_checks_and_unsent_codes_and_split_are_table_data(tmp_path: Path) -> None:
    spec = json.loads(json.dumps(TINY_MAPPING))
    spec["code_lists"]["basis"] = {"label": "age basis", "codes": {"estimé": True, "déclaré": None, "documenté": False}}
    spec["code_lists"]["lang"] = {"label": "language", "codes": {"haoussa": "ha", "zarma": "dje", "pêche et chasse": "xx"}}
    spec["code_lists"]["office"] = {"label": "office", "codes": {"Niamey": "niamey"}}
    spec["local_checks"] = {"bureau": "office"}
    spec["fields"] += [{"local": "base", "shared": "person.age.estimated", "codes": "basis"},
                       {"local": "langues", "shared": "person.languages", "items": {"codes": "lang"}, "split": [",", " et "]}]
    (tmp_path / "mapping.json").write_text(json.dumps(spec), encoding="utf-8")
    cls = type("T2", (MappingAdapter,), {"format_id": "tiny", "folder": tmp_path, "local_schema_file": None})
    t2 = cls()
    result = t2.to_shared(record(base="déclaré", langues="Haoussa et zarma", bureau="niamey"), ["assistance"])
    assert "estimated" not in result.payload["person"]["age"]
    assert any(d.local_field == "base" and d.shared_path == "person.age.estimated" for d in result.dropped)
    assert result.payload["person"]["languages"] == ["ha", "dje"]
    assert t2.trace(record(langues=["pêche et chasse"]))["langues"] == ["xx"]  # a spelling with a separator stays whole
    with pytest.raises(UnmappableValueError, match=r"^bureau: 'Zinder' is not in the code list for office \(accepted: Niamey\)$"):
        t2.to_shared(record(bureau="Zinder"), ["assistance"])
    bad = dict(spec, local_checks={"bureau": "nope"})
    with pytest.raises(MappingDefinitionError, match="local_checks.bureau"):
        MappingTable.from_dict(bad, tmp_path)
    bad = json.loads(json.dumps(spec))
    bad["fields"][-1] = {"local": "langues", "shared": "person.languages", "transform": "text", "split": [","]}
    with pytest.raises(MappingDefinitionError, match="split"):
        MappingTable.from_dict(bad, tmp_path)


# --- the parsers staff input goes through (hypothesis) ---------------------------------

_DATE = TRANSFORMS["date_dmy"]
_PHONE = TRANSFORMS["phone_e164"]


@settings(max_examples=scaled(300))
@given(day=st.dates(date(1900, 1, 1), date(2100, 12, 31)), sep=st.sampled_from("/.-"), pad=st.booleans(),
       hint=st.sampled_from(["JJ/MM/AAAA", "DD/MM/YYYY"]))
def test_any_day_month_year_date_parses_and_any_iso_date_gets_the_form_hint(day: date, sep: str, pad: bool,
                                                                            hint: str) -> None:
    typed = f"{day.day:02d}{sep}{day.month:02d}{sep}{day.year}" if pad else f"{day.day}{sep}{day.month}{sep}{day.year}"
    assert _DATE.to_shared(typed, {"date_hint": hint}) == day.isoformat()
    assert _DATE.to_shared(_DATE.to_local(day.isoformat(), {}), {}) == day.isoformat()
    with pytest.raises(TransformFailed) as info:
        _DATE.to_shared(day.isoformat(), {"date_hint": hint})
    assert info.value.reason_code == "date_year_first" and info.value.params == {"hint": hint}
    assert str(day.year) not in str(info.value)  # a date of birth is never echoed


@settings(max_examples=scaled(300))
@given(text=st.text(max_size=30), hint=st.sampled_from(["JJ/MM/AAAA", "DD/MM/YYYY"]))
def test_date_parser_answers_any_text_with_a_date_or_a_reason_in_the_form_language(text: str, hint: str) -> None:
    try:
        parsed = _DATE.to_shared(text, {"date_hint": hint})
    except TransformFailed as exc:
        other = "DD/MM/YYYY" if hint == "JJ/MM/AAAA" else "JJ/MM/AAAA"
        assert other not in str(exc) and "^" not in str(exc)
        assert len(text.strip()) < 4 or text.strip() not in str(exc)
    else:
        assert date.fromisoformat(parsed)


def _national_numbers(region: str) -> st.SearchStrategy[phonenumbers.PhoneNumber]:
    example = phonenumbers.example_number_for_type(region, phonenumbers.PhoneNumberType.MOBILE)
    digits = str(example.national_number)

    def vary(tail: int) -> phonenumbers.PhoneNumber:
        number = phonenumbers.parse(digits[:-4] + f"{tail:04d}", region)
        return number

    return st.integers(0, 9999).map(vary)


@settings(max_examples=scaled(300))
@given(data=st.data(), region=st.sampled_from(["NE", "NG", "ML"]), form_region=st.sampled_from(["NE", "NG", "ML"]),
       style=st.sampled_from(["international", "e164", "00", "trunk_in_brackets", "national", "dotted"]))
def test_valid_numbers_in_any_usual_writing_become_e164(data: st.DataObject, region: str, form_region: str,
                                                        style: str) -> None:
    number = data.draw(_national_numbers(region))
    assume(phonenumbers.is_valid_number(number))
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    international = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL)
    code = f"+{number.country_code}"
    typed = {
        "international": international,
        "e164": e164,
        "00": "00" + e164[1:],
        "trunk_in_brackets": international.replace(code, code + " (0)", 1),
        "national": phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL),
        "dotted": international.replace(" ", "."),
    }[style]
    if style == "national":
        form_region = region  # a national number is read in the form's own country
    assert _PHONE.to_shared(typed, {"region": form_region}) == e164


@settings(max_examples=scaled(300))
@given(text=st.text(alphabet="0123456789 +()-.", max_size=22), region=st.sampled_from(["NE", "NG", "ML"]))
def test_phone_parser_answers_any_text_with_e164_or_a_precise_reason(text: str, region: str) -> None:
    try:
        out = _PHONE.to_shared(text, {"region": region})
    except TransformFailed as exc:
        assert exc.reason_code.startswith("phone_")
        digits = "".join(c for c in text if c.isdigit())
        assert len(digits) < 3 or digits not in str(exc).replace(" ", "")
    else:
        assert phonenumbers.is_valid_number(phonenumbers.parse(out))


def _respell(text: str, data: st.DataObject) -> str:
    """How a clerk may type a listed spelling: case, accents dropped, spacing, hyphens, a plural."""
    if data.draw(st.booleans()):
        text = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    text = data.draw(st.sampled_from([str.upper, str.lower, str.title, str]))(text)
    text = text.replace(" ", data.draw(st.sampled_from([" ", "  ", "-", " - "])))
    return data.draw(st.sampled_from(["", " ", "\t"])) + text + data.draw(st.sampled_from(["", " "]))


@settings(max_examples=scaled(300))
@given(data=st.data(), country=st.sampled_from(["niger", "nigeria", "mali"]))
def test_any_listed_spelling_typed_loosely_finds_its_code(data: st.DataObject, country: str) -> None:
    table = get_adapter(country).table  # type: ignore[attr-defined]
    name = data.draw(st.sampled_from(sorted(table.code_lists)))
    codes = table.code_lists[name]
    spelling = data.draw(st.sampled_from(sorted(k for k in codes.codes if isinstance(k, str))))
    assert codes.to_shared(_respell(spelling, data)) == codes.codes[spelling]
