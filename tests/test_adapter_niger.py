"""The Niger adapter (ANLTP-TIM fiche de référencement): samples, round trips, drops, errors, fuzzing."""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters import AdapterError, MissingFieldError, PurposesError, RecordErrors, UnmappableValueError, get_adapter
from adapters.base import MappingAdapter, _walk_rules, shared_request_fields
from adapters.niger import NigerAdapter
from gateway.schema import example_names, find_violations, load_example
from tests.support.adapter_checks import (
    assert_hides, converts_first_time, converts_to_v2_and_back, day_month_year_overrides, fuzz_local_record, fuzz_respelled_sample,
    handwritten, handwritten_names, local_dates,
)
from tests.support.hypothesis_profiles import scaled

FOLDER = Path(__file__).resolve().parent.parent / "adapters" / "niger"
SAMPLES = sorted((FOLDER / "samples").glob("*.json"))


@pytest.fixture(scope="module")
def niger() -> MappingAdapter:
    adapter = get_adapter("niger")
    assert isinstance(adapter, NigerAdapter)
    return adapter


def sample(name: str) -> dict[str, Any]:
    return json.loads((FOLDER / "samples" / f"{name}.json").read_text(encoding="utf-8"))


def without(trace: dict[str, Any], prefixes: set[str]) -> dict[str, Any]:
    """A trace minus the local fields under any of these prefixes (dropped fields)."""
    return {k: v for k, v in trace.items() if not any(k == p or k.startswith((p + ".", p + "[")) for p in prefixes)}


# --- the local format ------------------------------------------------------------------


def test_the_mapping_covers_every_field_the_shared_schema_carries(niger: MappingAdapter) -> None:
    mapped = {shared for _, _, shared in _walk_rules(niger.table.rules)}
    leaves = {f for f in shared_request_fields() if not any(g.startswith(f + ".") for g in shared_request_fields())}
    # person.names given/middle come from one local field (prenom -> split_names).
    covered = mapped | {"person.names.given", "person.names.middle",
                        "person.family_contacts.names.given", "person.family_contacts.names.middle"}
    expanded = {f for f in leaves if any(f == m or f.startswith(m + ".") for m in covered)}
    assert leaves - expanded == set()


# --- samples ---------------------------------------------------------------------------


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.stem)
def test_sample_round_trip_preserves_every_carried_field(niger: MappingAdapter, path: Path) -> None:
    local = json.loads(path.read_text(encoding="utf-8"))
    result = niger.to_shared(local)
    assert find_violations("referral.request", result.payload) == []
    back = niger.from_shared(result.payload)
    dropped = {d.local_field for d in result.dropped}
    before, after = without(niger.trace(local), dropped), niger.trace(back)
    for field, value in before.items():
        assert after.get(field) == value, field
    # and the shared side is a fixed point
    assert niger.to_shared(back, result.payload["purposes"]).payload == result.payload


def test_adult_woman_from_nigeria(niger: MappingAdapter) -> None:
    result = niger.to_shared(sample("adulte_nigeriane_securite_recherche"))
    p = result.payload
    assert p["purposes"] == ["safety_assessment", "family_tracing"]
    assert p["person"]["nationality"] == "NG" and p["person"]["sex"] == "female"
    assert p["person"]["names"] == {"given": "Amaka", "middle": "Joy", "family": "Testfixture"}
    assert p["person"]["place_of_origin"] == {"country": "NG", "admin1": "Edo", "admin2": "Oredo", "locality": "Benin City"}
    assert p["person"]["family_contacts"][0]["phone"] == "+2348000000001"
    assert p["identification"]["identified_on"] == "2026-03-04"
    assert p["consent"]["given_at"] == "2026-03-06T10:15:00Z"  # 11:15 in Niamey (UTC+1)
    # exploitation and needs are assistance data: not for a safety assessment or family tracing
    assert "exploitation" not in p and "needs" not in p
    reasons = {d.local_field: d.reason for d in result.dropped}
    assert reasons["type_exploitation"] == "not allowed for purposes [safety_assessment, family_tracing]"
    assert reasons["besoins"] == reasons["type_exploitation"]
    assert reasons["numero_dossier"].startswith("local only")


def test_safety_assessment_only_drops_identity_and_reports_it(niger: MappingAdapter) -> None:
    result = niger.to_shared(sample("adulte_nigeriane_securite_recherche"), ["safety_assessment"])
    person = result.payload["person"]
    assert set(person) == {"sex", "age", "nationality", "languages"}
    dropped = {d.local_field: d for d in result.dropped}
    assert {"nom", "prenom", "lieu_origine", "contacts_famille", "type_exploitation", "besoins"} <= set(dropped)
    assert dropped["nom"].shared_path == "person.names.family"
    assert dropped["prenom"].shared_path == "person.names"
    assert all(d.reason == "not allowed for purposes [safety_assessment]"
               for k, d in dropped.items() if k not in ("numero_dossier", "observations"))


def test_minor_with_guardian_consent_for_assisted_return(niger: MappingAdapter) -> None:
    result = niger.to_shared(sample("mineure_retour_tuteur"), ["assisted_return"])
    p = result.payload
    assert p["person"]["age"] == {"minor": True, "date_of_birth": "2009-05-02"}
    assert p["consent"]["decision_maker"] == "parent_guardian"
    assert p["person"]["identity_documents"] == [{"type": "birth_certificate", "issuing_country": "NG", "held_by_person": False}]
    assert p["needs"] == ["medical", "psychosocial", "documentation", "return"]
    # the same child for a safety assessment: no date of birth, an age in years instead
    safety = niger.to_shared(sample("mineure_retour_tuteur"), ["safety_assessment"])
    assert safety.payload["person"]["age"] == {"minor": True, "years": 16}
    assert any(d.local_field == "date_naissance" and "age in years sent instead" in d.reason for d in safety.dropped)


def test_missing_values_sample(niger: MappingAdapter) -> None:
    p = niger.to_shared(sample("valeurs_manquantes")).payload
    assert p["person"]["sex"] == "unknown"
    assert p["person"]["age"] == {"minor": True, "band": "unknown"}
    assert p["person"]["names"] == {"given": "Testfixture"}
    assert p["person"]["languages"] == ["ha"]
    for absent in ("nationality", "place_of_origin", "family_contacts"):
        assert absent not in p["person"]
    assert "needs" not in p and "safety_concerns" not in p and "urgency" not in p
    assert p["exploitation"] == [{"type": "undetermined", "intended": False}]
    assert "identified_on" not in p["identification"] and "identified_by" not in p["identification"]


@pytest.mark.parametrize("name", [n for n in example_names() if n.startswith("referral.request")])
def test_every_shared_example_survives_the_local_format(niger: MappingAdapter, name: str) -> None:
    """Nothing the shared schema carries is lost by a trip through the fiche."""
    variant = name.removeprefix("referral.request").removeprefix(".") or None
    payload = load_example("referral.request", variant)
    assert niger.to_shared(niger.from_shared(payload)).payload == payload


# --- spelling, missing values, errors --------------------------------------------------


@pytest.mark.parametrize(
    ("spelling", "code"),
    [("nigériane", "NG"), ("nigeriane", "NG"), ("NIGÉRIANE", "NG"), ("Nigeria", "NG"), ("Nigéria", "NG"),
     ("nigérienne", "NE"), ("Niger", "NE"), ("Bénin", "BJ"), ("benin", "BJ"), ("béninoise", "BJ"), ("Mali", "ML"),
     ("malienne", "ML"), ("Côte d'Ivoire", "CI"), ("cote d’ivoire", "CI"), ("burkinabè", "BF"), ("NG", "NG")],
)
def test_nationality_spellings(niger: MappingAdapter, spelling: str, code: str) -> None:
    assert niger.to_shared(sample("adulte_nigeriane_securite_recherche") | {"nationalite": spelling}).payload["person"]["nationality"] == code


@pytest.mark.parametrize(
    ("items", "expected"),
    [
        (["mendicité forcée"], [{"type": "forced_begging", "intended": False}]),
        (["MENDICITE FORCEE", "Exploitation Sexuelle (intentionnelle)"],
         [{"type": "forced_begging", "intended": False}, {"type": "sexual_exploitation", "intended": True}]),
        ([{"type": "travail forcé", "intentionnelle": True, "secteurs": ["Orpaillage"], "pays": ["Libye"]}],
         [{"type": "forced_labour", "intended": True, "labour_sectors": ["mining_drilling"], "countries": ["LY"]}]),
        (["esclavage", "mariage forcé", "criminalité forcée", "prélèvement d'organes", "travail domestique"],
         [{"type": t, "intended": False} for t in
          ("slavery_servitude", "forced_marriage", "forced_criminal_activity", "organ_removal", "domestic_servitude")]),
        (["inconnu"], [{"type": "undetermined", "intended": False}]),
    ],
)
def test_exploitation_types(niger: MappingAdapter, items: list[Any], expected: list[Any]) -> None:
    rec = sample("adulte_nigeriane_securite_recherche") | {"type_exploitation": items}
    rec["consentement"]["finalites"].append("assistance")
    assert niger.to_shared(rec, ["assistance"]).payload["exploitation"] == expected


@pytest.mark.parametrize(
    ("statut", "code"), [("présumée", "presumed"), ("PRESUMEE", "presumed"), ("confirmée", "confirmed"), ("refusée", "self_denies")]
)
def test_identification_status(niger: MappingAdapter, statut: str, code: str) -> None:
    rec = sample("adulte_nigeriane_securite_recherche") | {"statut_identification": statut}
    assert niger.to_shared(rec).payload["identification"]["status"] == code


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        ({"type_exploitation": ["exploitation sexuelle", "pêche"]}, UnmappableValueError,
         "type_exploitation[1]: 'pêche' is not in the code list for exploitation type"),
        ({"sexe": "X"}, UnmappableValueError, "sexe: 'X' is not in the code list for sex"),
        ({"nationalite": "Atlantide"}, UnmappableValueError, "nationalite: 'Atlantide' is not in the code list for country"),
        ({"statut_identification": "inconnu"}, MissingFieldError, "statut_identification: is required and has no value"),
        ({"age_estime": 15}, UnmappableValueError, "mineur: contradicts age_estime"),
        ({"mineur": "inconnu", "age_estime": "NSP"}, MissingFieldError, "mineur: is needed when the age is unknown"),
        ({"date_identification": "31/02/2026"}, UnmappableValueError, "date_identification: is not a calendar date"),
        ({"lieu_origine": {"ville": "Benin City"}}, MissingFieldError,
         "lieu_origine.pays: is required when lieu_origine is given"),
        ({"contacts_famille": [{"nom": "Testfixture"}]}, MissingFieldError,
         "contacts_famille[0].lien: is required when contacts_famille[0] is given"),
        ({"couleur": "bleu"}, AdapterError, "couleur: is not a field of the local format"),
        ({"langues": ["klingon"]}, UnmappableValueError, "langues[0]: 'klingon' is not in the code list for language"),
    ],
)
def test_errors_name_the_local_field_and_why(niger: MappingAdapter, change: dict[str, Any], error: type, message: str) -> None:
    rec = sample("adulte_nigeriane_securite_recherche") | change
    rec["consentement"]["finalites"].append("assistance")  # so that no field is dropped
    with pytest.raises(error) as info:
        niger.to_shared(rec)
    assert str(info.value).startswith(message)


def test_consent_rules(niger: MappingAdapter) -> None:
    minor = sample("mineure_retour_tuteur")
    minor["consentement"]["donne_par"] = "victime"
    with pytest.raises(UnmappableValueError, match=r"^consentement.donne_par: a minor cannot consent alone"):
        niger.to_shared(minor)
    with pytest.raises(PurposesError, match=r"^consentement.finalites: 'assistance' not consented"):
        niger.to_shared(sample("adulte_nigeriane_securite_recherche"), ["assistance"])
    rec = sample("adulte_nigeriane_securite_recherche")
    del rec["consentement"]["donne_par"]
    with pytest.raises(MissingFieldError, match=r"^consentement.donne_par: is required"):
        niger.to_shared(rec)


SECRET = "Zyxwvutsrqname"


@pytest.mark.parametrize(
    "breakage",
    [
        {"sexe": "???x"},
        {"date_naissance": "45/13/2001"},
        {"mineur": "non", "date_naissance": "inconnue", "age_estime": 15},
        {"nationalite": "Wakanda"},
        {"contacts_famille": [{"lien": "voisin", "nom": SECRET, "telephone": "+234"}]},
        {"contacts_famille": [{"lien": "mère", "nom": SECRET, "prenom": SECRET, "telephone": SECRET}]},
        {"statut_identification": SECRET},  # a name typed into a coded field is quoted: that is the rule
        {"lieu_origine": {"ville": SECRET}},
        {"documents_identite": [{"type": "passeport", "numero": SECRET}]},
        {"prenom": SECRET + " " * 300},
        {"consentement": {"donne_par": "victime", "date": "99/99/2026", "expiration": "01/01/2030", "finalites": ["assistance"]}},
    ],
)
def test_errors_never_contain_a_name_from_the_record(niger: MappingAdapter, breakage: dict[str, Any]) -> None:
    rec = sample("mineure_retour_tuteur") | {"nom": SECRET, "prenom": SECRET} | breakage
    with pytest.raises(AdapterError) as info:
        niger.to_shared(rec)
    shown = str(info.value)
    if "statut_identification" in breakage:
        assert shown.startswith("statut_identification: 'Zyxwvutsrqname' is not in the code list")
        return
    assert_hides(shown, SECRET)


# --- fuzzing ---------------------------------------------------------------------------

LOCAL_SCHEMA = json.loads((FOLDER / "fiche.schema.json").read_text(encoding="utf-8"))
OVERRIDES = day_month_year_overrides("inconnue", "date_heure")


@settings(max_examples=scaled(300), deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_fuzz_valid_payload_or_adapter_error(data: st.DataObject) -> None:
    niger = get_adapter("niger")
    assert isinstance(niger, MappingAdapter)
    fuzz_local_record(data, niger, LOCAL_SCHEMA, OVERRIDES, minor="mineur", birth="date_naissance",
                      birth_dates=local_dates("%d/%m/%Y", date(1940, 1, 1), date(2025, 12, 31)), drop=("finalites_demandees",))


@settings(max_examples=scaled(200), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_fuzz_good_spellings_map_and_round_trip(data: st.DataObject) -> None:
    """Samples with their coded fields re-drawn from the code lists (any case): valid or a named error."""
    niger = get_adapter("niger")
    assert isinstance(niger, MappingAdapter)
    fuzz_respelled_sample(data, niger, LOCAL_SCHEMA, [p.stem for p in SAMPLES], sample, minor="mineur",
                          refusable={"finalites_demandees", "consentement.finalites", "mineur"})


@settings(max_examples=scaled(150), deadline=None)
@given(
    nationalite=st.sampled_from(["nigériane", "Nigeria", "Niger", "Bénin", "Mali", "Tchad", "Ghana"]),
    case=st.sampled_from([str.upper, str.lower, str.title, lambda s: s]),
    age=st.integers(0, 90),
    days=st.integers(0, 3000),
    purposes=st.lists(st.sampled_from(["safety_assessment", "family_tracing", "assisted_return"]), min_size=1, unique=True),
)
def test_fuzz_sample_variants_always_map(nationalite: str, case: Any, age: int, days: int, purposes: list[str]) -> None:
    """Realistic variations of a good record always produce a valid payload."""
    niger = get_adapter("niger")
    rec = sample("mineure_retour_tuteur")
    del rec["date_naissance"]
    rec |= {"nationalite": case(nationalite), "age_estime": age, "mineur": "oui" if age < 18 else "non"}
    rec["consentement"]["date"] = (date(2026, 1, 1) + timedelta(days=days)).strftime("%d/%m/%Y")
    result = niger.to_shared(rec, purposes)
    assert find_violations("referral.request", result.payload) == []
    assert result.payload["person"]["age"]["years"] == age


# --- as staff use the form (issue 11) --------------------------------------------------


@pytest.mark.parametrize("name", handwritten_names("niger"))
def test_hand_written_fiche_converts_on_the_first_try(niger: MappingAdapter, name: str) -> None:
    converts_first_time(niger, name)


def test_every_error_of_a_fiche_is_reported_at_once(niger: MappingAdapter) -> None:
    rec = sample("mineure_retour_tuteur")
    rec |= {"sexe": "Q", "date_identification": "2026-01-18", "nationalite": "Atlantide",
            "langues": ["anglais", "klingon"], "nom": "Zyxwvuta"}
    rec["contacts_famille"][0]["telephone"] = "+227 12"
    rec["consentement"]["expiration"] = "31/02/2030"
    with pytest.raises(RecordErrors) as info:
        niger.to_shared(rec)
    found = {e.local_field: e for e in info.value.errors}
    assert set(found) == {"sexe", "date_identification", "nationalite", "langues[1]", "contacts_famille[0].telephone",
                          "consentement.expiration"}
    assert found["date_identification"].reason == "is written year first: write the date as JJ/MM/AAAA"
    assert found["consentement.expiration"].reason == "is not a calendar date (JJ/MM/AAAA)"
    assert found["contacts_famille[0].telephone"].reason_code == "phone_too_short"
    assert found["sexe"].params["accepted"][:2] == ["F", "M"]
    text = str(info.value) + json.dumps(info.value.as_dict(), ensure_ascii=False)
    assert_hides(text, "Zyxwvuta")
    assert "+227 12" not in text and "^" not in text  # no phone number, no regular expression


def test_an_iso_date_gets_a_french_hint_not_a_regex(niger: MappingAdapter) -> None:
    rec = sample("mineure_retour_tuteur") | {"date_naissance": "2009-05-02"}
    with pytest.raises(AdapterError) as info:
        niger.to_shared(rec)
    assert str(info.value) == "date_naissance: is written year first: write the date as JJ/MM/AAAA"
    assert info.value.params == {"hint": "JJ/MM/AAAA"}
    rec = sample("mineure_retour_tuteur") | {"date_naissance": "2 mai 2009"}
    with pytest.raises(AdapterError, match=r"^date_naissance: must be written as JJ/MM/AAAA$"):
        niger.to_shared(rec)


@pytest.mark.parametrize(("typed", "e164"), [
    ("+234 (0) 803 555 0142", "+2348035550142"),
    ("+227 (0) 96 12 34 56", "+22796123456"),
    ("96 12 34 56", "+22796123456"),          # national: Niger is the form's country
    ("00227 97 65 43 21", "+22797654321"),
    ("+223 76.12.34.56", "+22376123456"),
])
def test_phone_numbers_as_staff_write_them(niger: MappingAdapter, typed: str, e164: str) -> None:
    rec = sample("mineure_retour_tuteur")
    rec["contacts_famille"][0]["telephone"] = typed
    assert niger.to_shared(rec).payload["person"]["family_contacts"][0]["phone"] == e164


@pytest.mark.parametrize(("typed", "reason"), [
    ("+227 96 12", "is too short for a phone number of NE"),
    ("+227 96 12 34 56 78", "is too long for a phone number of NE"),
    ("+234 803 555 0142 99", "is not a number in use in NG's numbering plan"),
    ("+999 1234567", "has no valid country code"),
    ("-", None),                                # a missing value, not an error
])
def test_bad_phone_numbers_get_a_precise_reason(niger: MappingAdapter, typed: str, reason: str | None) -> None:
    rec = sample("mineure_retour_tuteur")
    rec["contacts_famille"][0]["telephone"] = typed
    if reason is None:
        assert "phone" not in niger.to_shared(rec).payload["person"]["family_contacts"][0]
        return
    with pytest.raises(UnmappableValueError) as info:
        niger.to_shared(rec)
    assert str(info.value) == f"contacts_famille[0].telephone: {reason}"


@pytest.mark.parametrize(("field", "typed", "code"), [
    ("nationalite", "Niger Republic", "NE"),
    ("nationalite", "République du Niger", "NE"),
    ("nationalite", "republique  du NIGER", "NE"),
    ("moyens", ["abus de vulnérabilité"], ["abuse_of_vulnerability"]),
    ("methodes_controle", ["violences physiques", "Violence Physique"], ["physical_abuse"]),
    ("langues", "haoussa et zarma", ["ha", "dje"]),
    ("langues", ["Hausa, Yoruba"], ["ha", "yo"]),
    ("langues", "français / Haoussa ; ZARMA", ["fr", "ha", "dje"]),
])
def test_common_local_spellings_are_accepted(niger: MappingAdapter, field: str, typed: Any, code: Any) -> None:
    rec = sample("adulte_nigeriane_securite_recherche") | {field: typed}
    assert niger.trace(rec)[field] == code


def test_a_list_spelling_that_holds_a_separator_stays_whole(niger: MappingAdapter) -> None:
    """Only the languages field splits; "pêche et pisciculture" is one sector."""
    rec = sample("mineure_retour_tuteur")
    rec["type_exploitation"][0]["secteurs"] = ["pêche et pisciculture"]
    assert niger.trace(rec)["type_exploitation[0].secteurs"] == ["aquafarming"]
    with pytest.raises(UnmappableValueError, match=r"^langues\[0\]: 'klingon' is not in the code list for language"):
        niger.to_shared(sample("mineure_retour_tuteur") | {"langues": "haoussa et klingon"})


def test_meaning_is_kept_on_the_way_back(niger: MappingAdapter) -> None:
    """A guardian's consent is not written back as a parent's; a minors' brigade not as the police."""
    record, _ = handwritten("niger_02_mineure_tuteur_legal")
    local = niger.from_shared(niger.to_shared(record).payload)
    assert local["consentement"]["donne_par"] == "parent ou tuteur"
    assert local["source_referencement"] == "forces de l'ordre"
    assert local["contacts_famille"][0]["lien"] == "tuteur légal"
    # the minors' brigade as the identifying organisation too (it was refused there)
    minors = sample("mineure_retour_tuteur") | {"identifie_par": "Brigade des mineurs"}
    result = niger.to_shared(minors)
    assert result.payload["identification"]["identified_by"] == "law_enforcement"
    assert niger.from_shared(result.payload)["identifie_par"] == "forces de l'ordre"
    record, _ = handwritten("niger_04_garcon_talibe")
    result = niger.to_shared(record)
    assert "estimated" not in result.payload["person"]["age"]  # "déclaré" is not "estimé"
    assert "methode_age" not in niger.from_shared(result.payload)


@pytest.mark.parametrize("name", handwritten_names("niger"))
def test_hand_written_record_as_schema_v2(niger: MappingAdapter, name: str) -> None:
    converts_to_v2_and_back(niger, name)


def test_languages_of_malian_migrants_in_one_field(niger: MappingAdapter) -> None:
    """A person from Mali met in Niger: Malinké has a code (Manding), Dogon is carried by name in v2."""
    record = sample("mineure_retour_tuteur") | {"langues": "bambara, dogon et malinké"}
    payload = niger.to_shared_v2(record, None, recipient="NG-NAPTIP", recipient_country="NG").payload
    assert payload["person"]["languages"] == ["bam", "man", {"code": "mis", "name": "Dogon"}]
    assert niger.from_shared(payload)["langues"] == ["bambara", "malinké", "dogon"]
    v1 = niger.to_shared(record, None)
    assert v1.payload["person"]["languages"] == ["bm", "man"]
    assert [d.local_field for d in v1.dropped if d.local_field.startswith("langues")] == ["langues[0]"]
