"""The Nigeria adapter (NAPTIP victim referral record): samples, round trips, drops, errors, fuzzing, Niger -> Nigeria."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters import AdapterError, MissingFieldError, PurposesError, RecordErrors, UnmappableValueError, get_adapter
from adapters.base import MappingAdapter, _walk_rules, shared_request_fields
from adapters.nigeria import NigeriaAdapter
from gateway.schema import example_names, find_violations, load_example
from tests.support.adapter_checks import (
    converts_first_time, converts_to_v2_and_back, handwritten, handwritten_names,
    assert_hides, day_month_year_overrides, fuzz_local_record, fuzz_respelled_sample, local_dates,
)
from tests.support.hypothesis_profiles import scaled

ROOT = Path(__file__).resolve().parent.parent
FOLDER = ROOT / "adapters" / "nigeria"
SCHEMA_FILE = FOLDER / "naptip.schema.json"
SAMPLES = sorted((FOLDER / "samples").glob("*.json"))
ADULT = "adult_returned_from_niger_reintegration"
MINOR = "minor_guardian_family_tracing"


@pytest.fixture(scope="module")
def nigeria() -> MappingAdapter:
    adapter = get_adapter("nigeria")
    assert isinstance(adapter, NigeriaAdapter)
    return adapter


def sample(name: str) -> dict[str, Any]:
    return json.loads((FOLDER / "samples" / f"{name}.json").read_text(encoding="utf-8"))


def without(trace: dict[str, Any], prefixes: set[str]) -> dict[str, Any]:
    """A trace minus the local fields under any of these prefixes (dropped fields)."""
    return {k: v for k, v in trace.items() if not any(k == p or k.startswith((p + ".", p + "[")) for p in prefixes)}


# --- the local format ------------------------------------------------------------------


def test_the_mapping_covers_every_field_the_shared_schema_carries(nigeria: MappingAdapter) -> None:
    mapped = {shared for _, _, shared in _walk_rules(nigeria.table.rules)}
    leaves = {f for f in shared_request_fields() if not any(g.startswith(f + ".") for g in shared_request_fields())}
    # family contacts carry no aliases on the NAPTIP form (the shared field is optional)
    covered = mapped | {"person.family_contacts.names.aliases"}
    expanded = {f for f in leaves if any(f == m or f.startswith(m + ".") for m in covered)}
    assert leaves - expanded == set()


def test_registered() -> None:
    from adapters import available_formats

    assert "nigeria" in available_formats()


# --- samples ---------------------------------------------------------------------------


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.stem)
def test_sample_round_trip_preserves_every_carried_field(nigeria: MappingAdapter, path: Path) -> None:
    local = json.loads(path.read_text(encoding="utf-8"))
    result = nigeria.to_shared(local)
    assert find_violations("referral.request", result.payload) == []
    back = nigeria.from_shared(result.payload)
    dropped = {d.local_field for d in result.dropped}
    before, after = without(nigeria.trace(local), dropped), nigeria.trace(back)
    for field, value in before.items():
        assert after.get(field) == value, field
    assert nigeria.to_shared(back, result.payload["purposes"]).payload == result.payload


def test_adult_returned_from_niger_for_reintegration_handover(nigeria: MappingAdapter) -> None:
    result = nigeria.to_shared(sample(ADULT))
    p = result.payload
    assert p["purposes"] == ["reintegration_handover", "assistance"]
    assert p["identification"] == {"status": "confirmed", "referral_source": "iom", "identified_by": "international_organisation",
                                   "identified_on": "2026-03-04", "country": "NE"}
    assert p["person"]["nationality"] == "NG" and p["person"]["sex"] == "female"
    assert p["person"]["age"] == {"minor": False, "years": 22, "estimated": False}
    assert p["person"]["languages"] == ["en", "pcm", "bin"]
    assert p["exploitation"] == [{"type": "sexual_exploitation", "intended": False},
                                 {"type": "domestic_servitude", "intended": True, "countries": ["NE", "LY"]}]
    assert p["methods_of_control"] == ["debt_bondage", "threats"]
    assert p["consent"]["given_at"] == "2026-03-06T10:15:00Z"  # 11:15 WAT (UTC+1)
    assert p["consent"]["recipient_agencies"] == ["NG-NAPTIP", "NG-COSUDOW"]
    # names and places of origin are not needed for a handover: dropped and reported
    assert "names" not in p["person"] and "place_of_origin" not in p["person"]
    reasons = {d.local_field: d.reason for d in result.dropped}
    for field in ("surname", "first_name", "other_names", "state_of_origin", "lga", "family_contacts"):
        assert reasons[field] == "not allowed for purposes [reintegration_handover, assistance]", field
    assert reasons["case_number"].startswith("local only") and reasons["zonal_office"].startswith("local only")


def test_state_of_origin_implies_nigeria(nigeria: MappingAdapter) -> None:
    rec = sample(ADULT)
    rec["consent"]["purposes"].append("family tracing")
    p = nigeria.to_shared(rec).payload
    assert p["person"]["names"] == {"given": "Amaka", "middle": "Joy", "family": "Testfixture"}
    assert p["person"]["place_of_origin"] == {"country": "NG", "admin1": "Edo", "admin2": "Oredo", "locality": "Benin City"}
    assert p["person"]["family_contacts"][0]["phone"] == "+2348000000001"
    with pytest.raises(MissingFieldError, match=r"^country_of_origin: is required when state_of_origin is given"):
        nigeria.to_shared(rec | {"state_of_origin": "Tahoua"})
    assert nigeria.to_shared(rec | {"state_of_origin": "Tahoua", "country_of_origin": "Niger"}).payload["person"][
        "place_of_origin"]["country"] == "NE"


def test_minor_with_guardian_consent_for_family_tracing(nigeria: MappingAdapter) -> None:
    result = nigeria.to_shared(sample(MINOR))
    p = result.payload
    assert p["purposes"] == ["family_tracing", "safety_assessment"]
    # a declared age is neither estimated nor documented: v1 cannot say it, so it is not sent (and reported)
    assert p["person"]["age"] == {"minor": True, "date_of_birth": "2012-05-02"}
    assert any(d.local_field == "age_basis" and "no shared code" in d.reason for d in result.dropped)
    assert "age_basis" not in nigeria.from_shared(p)
    assert p["person"]["place_of_origin"] == {"country": "NG", "admin1": "Kano", "admin2": "Fagge"}
    assert p["consent"]["decision_maker"] == "parent_guardian"
    assert p["person"]["family_contacts"] == [{"relationship": "aunt_uncle", "names": {"given": "Musa", "family": "Testfixture"},
                                                "last_known_place": {"country": "NG", "admin1": "Kano"}}]
    assert {"exploitation_category", "needs"} <= {d.local_field for d in result.dropped}
    safety = nigeria.to_shared(sample(MINOR), ["safety_assessment"])
    assert safety.payload["person"]["age"] == {"minor": True, "years": 13}
    assert any(d.local_field == "date_of_birth" and "age in years sent instead" in d.reason for d in safety.dropped)


def test_missing_values_sample(nigeria: MappingAdapter) -> None:
    p = nigeria.to_shared(sample("missing_values")).payload
    assert p["person"]["sex"] == "unknown"
    assert p["person"]["age"] == {"minor": True, "band": "unknown"}
    assert p["person"]["names"] == {"given": "Testfixture"}
    assert p["person"]["languages"] == ["yo"]
    for absent in ("nationality", "place_of_origin", "family_contacts"):
        assert absent not in p["person"]
    assert "needs" not in p and "safety_concerns" not in p and "urgency" not in p
    assert p["exploitation"] == [{"type": "undetermined", "intended": False}]
    assert "identified_on" not in p["identification"] and "identified_by" not in p["identification"]
    assert p["consent"]["decision_maker"] == "guardian_with_child_protection"
    assert nigeria.from_shared(p)["gender"] == "U"


@pytest.mark.parametrize("name", [n for n in example_names() if n.startswith("referral.request")])
def test_every_shared_example_survives_the_local_format(nigeria: MappingAdapter, name: str) -> None:
    variant = name.removeprefix("referral.request").removeprefix(".") or None
    payload = load_example("referral.request", variant)
    assert nigeria.to_shared(nigeria.from_shared(payload)).payload == payload


def test_safety_assessment_only_drops_identity_and_reports_it(nigeria: MappingAdapter) -> None:
    result = nigeria.to_shared(sample(MINOR), ["safety_assessment"])
    person = result.payload["person"]
    assert "names" not in person and "family_contacts" not in person and "place_of_origin" not in person
    dropped = {d.local_field: d for d in result.dropped}
    assert {"surname", "first_name", "state_of_origin", "lga", "family_contacts", "exploitation_category", "needs"} <= set(dropped)
    assert dropped["surname"].shared_path == "person.names.family"
    assert dropped["first_name"].shared_path == "person.names.given"
    assert all(d.reason.startswith("not allowed for purposes [safety_assessment]")
               for k, d in dropped.items() if k not in ("case_number", "zonal_office", "remarks", "age_basis"))


# --- the cross-country trip --------------------------------------------------------------


def test_niger_record_through_the_nigerian_format() -> None:
    """A Niger fiche -> shared -> NAPTIP record -> shared: the same payload, nothing lost."""
    niger, nigeria = get_adapter("niger"), get_adapter("nigeria")
    fiche = json.loads((ROOT / "adapters" / "niger" / "samples" / "adulte_nigeriane_securite_recherche.json").read_text(encoding="utf-8"))
    fiche["consentement"]["finalites"].append("assistance")  # so exploitation and needs travel too
    shared = niger.to_shared(fiche).payload
    assert {d.local_field for d in niger.to_shared(fiche).dropped} <= {"numero_dossier", "observations"}
    local = nigeria.from_shared(shared)
    assert local["gender"] == "F" and local["nationality"] == "Nigeria" and local["estimated_age"] == 22
    assert local["exploitation_category"] == [{"code": "SEXEXP", "intended": "no"}, {"code": "DOMSERV", "intended": "yes"}]
    assert local["consent"]["given_by"] == "victim"
    again = nigeria.to_shared(local, shared["purposes"]).payload
    assert again == shared
    assert again["exploitation"] == [{"type": "sexual_exploitation", "intended": False}, {"type": "domestic_servitude", "intended": True}]
    assert again["person"]["nationality"] == "NG" and again["person"]["sex"] == "female"
    assert again["person"]["age"] == {"minor": False, "years": 22, "estimated": False}
    assert again["consent"] == shared["consent"] and again["consent"]["decision_maker"] == "self"
    # and back into Niger's format
    assert niger.to_shared(niger.from_shared(again), shared["purposes"]).payload == shared


# --- spelling, missing values, errors --------------------------------------------------


@pytest.mark.parametrize(
    ("spelling", "code"),
    [("Nigerian", "NG"), ("NIGERIA", "NG"), ("ng", "NG"), ("Niger", "NE"), ("Nigerien", "NE"), ("Beninese", "BJ"),
     ("Benin", "BJ"), ("Ghanaian", "GH"), ("Côte d'Ivoire", "CI"), ("Ivory Coast", "CI"), ("Mali", "ML"), ("Libya", "LY")],
)
def test_nationality_spellings(nigeria: MappingAdapter, spelling: str, code: str) -> None:
    assert nigeria.to_shared(sample(ADULT) | {"nationality": spelling}).payload["person"]["nationality"] == code


@pytest.mark.parametrize(
    ("items", "expected"),
    [
        (["SEXEXP", "FORLAB", "DOMSERV", "BEGG", "SLAV", "FORCRIM", "ORGAN", "FORMAR", "CHSOLD", "OTHER", "UNDET"],
         [{"type": t, "intended": False} for t in ("sexual_exploitation", "forced_labour", "domestic_servitude", "forced_begging",
                                                   "slavery_servitude", "forced_criminal_activity", "organ_removal",
                                                   "forced_marriage", "child_soldiering", "other", "undetermined")]),
        (["sexexp", {"code": "forlab", "intended": True, "sectors": ["Mining"], "countries": ["Niger"]}],
         [{"type": "sexual_exploitation", "intended": False},
          {"type": "forced_labour", "intended": True, "labour_sectors": ["mining_drilling"], "countries": ["NE"]}]),
        (["unknown"], [{"type": "undetermined", "intended": False}]),
    ],
)
def test_exploitation_categories(nigeria: MappingAdapter, items: list[Any], expected: list[Any]) -> None:
    rec = sample(ADULT) | {"exploitation_category": items}
    assert nigeria.to_shared(rec, ["assistance"]).payload["exploitation"] == expected


@pytest.mark.parametrize(("status", "code"), [("presumed", "presumed"), ("CONFIRMED", "confirmed"), ("denied", "self_denies")])
def test_identification_status(nigeria: MappingAdapter, status: str, code: str) -> None:
    assert nigeria.to_shared(sample(ADULT) | {"identification_status": status}).payload["identification"]["status"] == code


@pytest.mark.parametrize(
    ("given_by", "code"),
    [("victim", "self"), ("parent", "parent_guardian"), ("guardian", "parent_guardian"),
     ("child_protection", "guardian_with_child_protection"), ("judge", "judge_of_minors")],
)
def test_consent_given_by(nigeria: MappingAdapter, given_by: str, code: str) -> None:
    rec = sample("missing_values")
    rec["consent"]["given_by"] = given_by
    if code == "self":
        rec |= {"minor": "no", "estimated_age": 30}
    assert nigeria.to_shared(rec).payload["consent"]["decision_maker"] == code


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        ({"exploitation_category": ["SEXEXP", "FISHING"]}, UnmappableValueError,
         "exploitation_category[1]: 'FISHING' is not in the code list for exploitation category"),
        ({"gender": "X"}, UnmappableValueError, "gender: 'X' is not in the code list for sex"),
        ({"nationality": "Atlantis"}, UnmappableValueError, "nationality: 'Atlantis' is not in the code list for country"),
        ({"identification_status": "unknown"}, MissingFieldError, "identification_status: is required and has no value"),
        ({"referral_source": "nil"}, MissingFieldError, "referral_source: is required and has no value"),
        ({"estimated_age": 15}, UnmappableValueError, "minor: contradicts estimated_age"),
        ({"minor": "unknown", "estimated_age": "unknown"}, MissingFieldError, "minor: is needed when the age is unknown"),
        ({"date_identified": "31/02/2026"}, UnmappableValueError, "date_identified: is not a calendar date"),
        ({"zonal_office": "Timbuktu"}, UnmappableValueError, "zonal_office: 'Timbuktu' is not in the code list for NAPTIP zonal command"),
        ({"family_contacts": [{"surname": "Testfixture"}]}, MissingFieldError,
         "family_contacts[0].relationship: is required when family_contacts[0] is given"),
        ({"colour": "blue"}, AdapterError, "colour: is not a field of the local format"),
        ({"languages": ["klingon"]}, UnmappableValueError, "languages[0]: 'klingon' is not in the code list for language"),
    ],
)
def test_errors_name_the_local_field_and_why(nigeria: MappingAdapter, change: dict[str, Any], error: type, message: str) -> None:
    rec = sample(ADULT) | change
    rec["consent"]["purposes"] += ["family tracing", "safety assessment"]  # so that no field is dropped
    with pytest.raises(error) as info:
        nigeria.to_shared(rec)
    assert str(info.value).startswith(message)


def test_consent_rules(nigeria: MappingAdapter) -> None:
    minor = sample(MINOR)
    minor["consent"]["given_by"] = "victim"
    with pytest.raises(UnmappableValueError, match=r"^consent.given_by: a minor cannot consent alone"):
        nigeria.to_shared(minor)
    with pytest.raises(PurposesError, match=r"^consent.purposes: 'assistance' not consented"):
        nigeria.to_shared(sample(MINOR), ["assistance"])
    rec = sample(ADULT)
    del rec["consent"]["given_by"]
    with pytest.raises(MissingFieldError, match=r"^consent.given_by: is required"):
        nigeria.to_shared(rec)


SECRET = "Zyxwvutsrqname"


@pytest.mark.parametrize(
    "breakage",
    [
        {"gender": "???x"},
        {"date_of_birth": "45/13/2001"},
        {"minor": "no", "date_of_birth": "unknown", "estimated_age": 15},
        {"nationality": "Wakanda"},
        {"state_of_origin": SECRET},
        {"lga": SECRET, "state_of_origin": "unknown"},
        {"family_contacts": [{"relationship": "neighbour", "surname": SECRET, "phone": "+234"}]},
        {"family_contacts": [{"relationship": "mother", "surname": SECRET, "first_name": SECRET, "phone": SECRET}]},
        {"family_contacts": [{"surname": SECRET, "location": {"town": SECRET}}]},
        {"identification_status": SECRET},  # a name typed into a coded field is quoted: that is the rule
        {"identity_documents": [{"type": "passport", "number": SECRET}],  # no issuing country; documents go with a return
         "consent": {"given_by": "guardian", "date": "22/01/2026", "expiry": "31/12/2027", "purposes": ["AVR"], "recipient_countries": ["NG"]}},
        {"first_name": SECRET + " " * 300},
        {"consent": {"given_by": "victim", "date": "99/99/2026", "expiry": "01/01/2030", "purposes": ["assistance"]}},
    ],
)
def test_errors_never_contain_a_name_from_the_record(nigeria: MappingAdapter, breakage: dict[str, Any]) -> None:
    rec = sample(MINOR) | {"surname": SECRET, "first_name": SECRET, "other_names": SECRET} | breakage
    with pytest.raises(AdapterError) as info:
        nigeria.to_shared(rec)
    shown = str(info.value)
    if "identification_status" in breakage:
        assert shown.startswith("identification_status: 'Zyxwvutsrqname' is not in the code list")
        return
    assert_hides(shown, SECRET)


# --- fuzzing ---------------------------------------------------------------------------

LOCAL_SCHEMA = json.loads((SCHEMA_FILE).read_text(encoding="utf-8"))
OVERRIDES = day_month_year_overrides("unknown", "datetime")


@settings(max_examples=scaled(300), deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_fuzz_valid_payload_or_adapter_error(data: st.DataObject) -> None:
    nigeria = get_adapter("nigeria")
    assert isinstance(nigeria, MappingAdapter)
    fuzz_local_record(data, nigeria, LOCAL_SCHEMA, OVERRIDES, minor="minor", birth="date_of_birth",
                      birth_dates=local_dates("%d/%m/%Y", date(1940, 1, 1), date(2025, 12, 31)), drop=("requested_purposes", "zonal_office"))


@settings(max_examples=scaled(200), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_fuzz_good_spellings_map_and_round_trip(data: st.DataObject) -> None:
    """Samples with their coded fields re-drawn from the code lists (any case): valid or a named error."""
    nigeria = get_adapter("nigeria")
    assert isinstance(nigeria, MappingAdapter)
    fuzz_respelled_sample(data, nigeria, LOCAL_SCHEMA, [p.stem for p in SAMPLES], sample, minor="minor",
                          refusable={"requested_purposes", "consent.purposes", "minor"})



# --- as staff use the form (issue 11) --------------------------------------------------


@pytest.mark.parametrize("name", handwritten_names("nigeria"))
def test_hand_written_record_converts_on_the_first_try(nigeria: MappingAdapter, name: str) -> None:
    converts_first_time(nigeria, name)


def test_english_form_errors_show_english_date_hints(nigeria: MappingAdapter) -> None:
    rec = sample(ADULT) | {"date_identified": "2026-03-04", "languages": ["English", "Klingon"], "surname": "Zyxwvuta"}
    rec["consent"]["expiry"] = "31/02/2030"
    rec["family_contacts"][0]["phone"] = "0803"
    with pytest.raises(RecordErrors) as info:
        nigeria.to_shared(rec)
    found = {e.local_field: e.reason for e in info.value.errors}
    assert found == {
        "date_identified": "is written year first: write the date as DD/MM/YYYY",
        "family_contacts[0].phone": "is too short for a phone number of NG",
        "languages[1]": "'Klingon' is not in the code list for language (see the code list 'language' in docs/adapters.md)",
        "consent.expiry": "is not a calendar date (DD/MM/YYYY)",
    }
    assert "JJ" not in str(info.value) and "Zyxwvuta" not in str(info.value)


def test_zonal_office_is_checked_with_every_other_error(nigeria: MappingAdapter) -> None:
    rec = sample(ADULT) | {"zonal_office": "Atlantis", "gender": "Q"}
    with pytest.raises(RecordErrors) as info:
        nigeria.to_shared(rec)
    assert [e.local_field for e in info.value.errors] == ["zonal_office", "gender"]  # the form's order


def test_meaning_is_kept_on_the_way_back(nigeria: MappingAdapter) -> None:
    """"guardian" does not come back as "parent"; NIS/NSCDC not as "police"; "declared" not as "estimated"."""
    record, _ = handwritten("nigeria_02_minor_guardian_nscdc")
    result = nigeria.to_shared(record)
    local = nigeria.from_shared(result.payload)
    assert local["consent"]["given_by"] == "parent or guardian"
    assert local["referral_source"] == "law enforcement"
    assert local["family_contacts"][0]["relationship"] == "legal guardian"
    assert "age_basis" not in local
    record, _ = handwritten("nigeria_01_returnee_benin")
    local = nigeria.from_shared(nigeria.to_shared(record).payload)
    assert local["identified_by"] == "immigration service" and local["referral_source"] == "law enforcement"


@pytest.mark.parametrize(("typed", "codes"), [
    ("Esan, Pidgin", ["ish", "pcm"]), ("Urhobo and Isoko", ["urh", "iso"]), ("Itsekiri/Ijaw", ["its", "ijc"]),
    (["Hausa, Yoruba", "English"], ["ha", "yo", "en"]),
])
def test_several_languages_in_one_field(nigeria: MappingAdapter, typed: Any, codes: list[str]) -> None:
    assert nigeria.trace(sample(ADULT) | {"languages": typed})["languages"] == codes


@pytest.mark.parametrize("name", handwritten_names("nigeria"))
def test_hand_written_record_as_schema_v2(nigeria: MappingAdapter, name: str) -> None:
    converts_to_v2_and_back(nigeria, name)


def test_v2_keeps_a_faith_based_source_and_iso_639_3_languages(nigeria: MappingAdapter) -> None:
    payload = converts_to_v2_and_back(nigeria, "nigeria_04_ijaw_child_church")
    assert payload["identification"]["referral_source"] == "faith_based_organisation"  # v1 could only say ngo
    assert payload["person"]["languages"] == ["ijc", "eng"]
    assert nigeria.from_shared(payload)["referral_source"] == "faith-based organisation"


def test_a_consent_that_does_not_cover_the_recipient_is_named(nigeria: MappingAdapter) -> None:
    record, _ = handwritten("nigeria_01_returnee_benin")
    with pytest.raises(MissingFieldError, match=r"^consent.recipient_agencies: does not name the recipient agency"):
        nigeria.to_shared_v2(record, recipient="NE-ANLTP", recipient_country="NE")
