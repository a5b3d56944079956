"""The Mali adapter (DNPEF child referral form): samples, round trips, drops, errors, fuzzing."""

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
from adapters.mali import MaliAdapter
from gateway.schema import example_names, find_violations, load_example
from tests.support.adapter_checks import (
    assert_hides, converts_first_time, converts_to_v2_and_back, day_month_year_overrides, fuzz_local_record, fuzz_respelled_sample,
    handwritten, handwritten_names, local_dates,
)
from tests.support.hypothesis_profiles import scaled

FOLDER = Path(__file__).resolve().parent.parent / "adapters" / "mali"
SAMPLES = sorted((FOLDER / "samples").glob("*.json"))


@pytest.fixture(scope="module")
def mali() -> MappingAdapter:
    adapter = get_adapter("mali")
    assert isinstance(adapter, MaliAdapter)
    return adapter


def sample(name: str) -> dict[str, Any]:
    return json.loads((FOLDER / "samples" / f"{name}.json").read_text(encoding="utf-8"))


def without(trace: dict[str, Any], prefixes: set[str]) -> dict[str, Any]:
    """A trace minus the local fields under any of these prefixes (dropped fields)."""
    return {k: v for k, v in trace.items() if not any(k == p or k.startswith((p + ".", p + "[")) for p in prefixes)}


# --- the local format ------------------------------------------------------------------


def test_the_mapping_covers_every_field_the_shared_schema_carries(mali: MappingAdapter) -> None:
    mapped = {shared for _, _, shared in _walk_rules(mali.table.rules)}
    leaves = {f for f in shared_request_fields() if not any(g.startswith(f + ".") for g in shared_request_fields())}
    # person.names given/middle come from one local field (prenom -> split_names); same for tuteur[].prenom.
    covered = mapped | {"person.names.given", "person.names.middle",
                        "person.family_contacts.names.given", "person.family_contacts.names.middle"}
    expanded = {f for f in leaves if any(f == m or f.startswith(m + ".") for m in covered)}
    assert leaves - expanded == set()


# --- samples ---------------------------------------------------------------------------

GIRL, BOY, MISSING = "fillette_recherche_retour", "garcon_mendicite_assistance", "valeurs_manquantes"


def test_country_names_come_from_the_niger_list(mali: MappingAdapter) -> None:
    """pays.json is shared with Niger (referenced, not copied)."""
    spec = json.loads((FOLDER / "mapping.json").read_text(encoding="utf-8"))
    assert spec["code_lists"]["pays"]["file"] == "../niger/pays.json"
    assert not (FOLDER / "pays.json").exists()
    niger = get_adapter("niger")
    assert isinstance(niger, MappingAdapter)
    assert dict(mali.table.code_lists["pays"].codes) == dict(niger.table.code_lists["pays"].codes)


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.stem)
def test_sample_round_trip_preserves_every_carried_field(mali: MappingAdapter, path: Path) -> None:
    local = json.loads(path.read_text(encoding="utf-8"))
    result = mali.to_shared(local)
    assert find_violations("referral.request", result.payload) == []
    back = mali.from_shared(result.payload)
    dropped = {d.local_field for d in result.dropped}
    before, after = without(mali.trace(local), dropped), mali.trace(back)
    for field, value in before.items():
        assert after.get(field) == value, field
    # and the shared side is a fixed point
    assert mali.to_shared(back, result.payload["purposes"]).payload == result.payload


def test_girl_for_family_tracing_and_assisted_return(mali: MappingAdapter) -> None:
    result = mali.to_shared(sample(GIRL))
    p = result.payload
    assert p["purposes"] == ["family_tracing", "assisted_return"]
    assert p["person"]["age"] == {"minor": True, "date_of_birth": "2011-08-12"}
    assert p["person"]["names"] == {"given": "Blessing", "middle": "Ada", "family": "Testfixture"}
    assert p["person"]["place_of_origin"] == {"country": "NG", "admin1": "Edo", "admin2": "Oredo", "locality": "Benin City"}
    assert p["person"]["family_contacts"] == [{
        "relationship": "mother", "names": {"given": "Grace", "family": "Testfixture"},
        "last_known_place": {"country": "NG", "admin1": "Edo", "locality": "Benin City"}, "phone": "+2348000000002"}]
    assert p["consent"]["decision_maker"] == "guardian_with_child_protection"
    assert p["consent"]["given_at"] == "2026-02-21T10:30:00Z"  # Bamako is UTC+0
    assert p["consent"]["expires_at"] == "2027-12-31T23:59:59Z"
    assert p["needs"] == ["medical", "psychosocial", "family_tracing", "return"]
    assert "exploitation" not in p
    reasons = {d.local_field: d for d in result.dropped}
    assert reasons["forme_exploitation"].reason == "not allowed for purposes [family_tracing, assisted_return]"
    # the best-interests determination is not carried by referral.request: reported as local only
    assert reasons["evaluation_interet_superieur"].shared_path is None
    assert reasons["evaluation_interet_superieur"].reason.startswith("local only: the best-interests determination")
    assert reasons["numero_dossier"].reason.startswith("local only")
    # the guardian block comes back as one block
    assert mali.from_shared(p)["tuteur"]["lien"] == "mère"


def test_safety_assessment_only_drops_identity_and_the_guardian(mali: MappingAdapter) -> None:
    rec = sample(GIRL)
    rec["consentement"]["finalites"].append("évaluation de sécurité")
    result = mali.to_shared(rec, ["safety_assessment"])
    person = result.payload["person"]
    assert set(person) == {"sex", "age", "nationality", "languages"}
    assert person["age"] == {"minor": True, "years": 14}  # a dropped date of birth becomes years
    dropped = {d.local_field: d for d in result.dropped}
    assert {"nom", "prenom", "pays_origine", "region_origine", "cercle", "commune", "tuteur", "besoins",
            "forme_exploitation", "date_naissance"} <= set(dropped)
    assert dropped["tuteur"].shared_path == "person.family_contacts"
    assert dropped["cercle"].shared_path == "person.place_of_origin.admin2"
    assert "age in years sent instead" in dropped["date_naissance"].reason


def test_boy_in_forced_begging_for_assistance_with_judge_consent(mali: MappingAdapter) -> None:
    result = mali.to_shared(sample(BOY))
    p = result.payload
    assert p["purposes"] == ["assistance"]
    assert p["person"]["sex"] == "male" and p["person"]["nationality"] == "GN"
    assert p["person"]["age"] == {"minor": True, "years": 16, "estimated": True}
    assert p["consent"]["decision_maker"] == "judge_of_minors"
    assert p["exploitation"] == [{"type": "forced_begging", "intended": False, "labour_sectors": ["begging"], "countries": ["ML"]}]
    assert p["methods_of_control"] == ["takes_earnings", "physical_abuse", "withholds_necessities"]
    assert "names" not in p["person"] and "family_contacts" not in p["person"] and "place_of_origin" not in p["person"]
    dropped = {d.local_field for d in result.dropped}
    assert {"nom", "prenom", "tuteur", "pays_origine", "region_origine", "evaluation_interet_superieur"} <= dropped


def test_missing_values_sample(mali: MappingAdapter) -> None:
    p = mali.to_shared(sample(MISSING)).payload
    assert p["person"]["sex"] == "unknown"
    assert p["person"]["age"] == {"minor": True, "band": "unknown"}
    assert p["person"]["names"] == {"given": "Testfixture"}
    assert p["person"]["languages"] == ["bm"]
    for absent in ("nationality", "place_of_origin", "family_contacts"):
        assert absent not in p["person"]
    assert "needs" not in p and "safety_concerns" not in p and "urgency" not in p
    assert p["exploitation"] == [{"type": "undetermined", "intended": False}]
    assert "identified_on" not in p["identification"] and "identified_by" not in p["identification"]


@pytest.mark.parametrize("name", [n for n in example_names() if n.startswith("referral.request")])
def test_every_shared_example_survives_the_local_format(mali: MappingAdapter, name: str) -> None:
    """Nothing the shared schema carries is lost by a trip through the fiche."""
    variant = name.removeprefix("referral.request").removeprefix(".") or None
    payload = load_example("referral.request", variant)
    assert mali.to_shared(mali.from_shared(payload)).payload == payload


def test_several_guardian_blocks_stay_a_list(mali: MappingAdapter) -> None:
    rec = sample(GIRL) | {"tuteur": [{"lien": "mère"}, {"lien": "oncle", "lieu": {"pays": "Nigeria", "cercle": "Oredo"}}]}
    p = mali.to_shared(rec).payload
    assert p["person"]["family_contacts"] == [
        {"relationship": "mother"}, {"relationship": "aunt_uncle", "last_known_place": {"country": "NG", "admin2": "Oredo"}}]
    back = mali.from_shared(p)
    assert isinstance(back["tuteur"], list) and len(back["tuteur"]) == 2
    assert mali.to_shared(back).payload == p


# --- spelling, missing values, errors --------------------------------------------------


@pytest.mark.parametrize(
    ("spelling", "code"),
    [("malienne", "ML"), ("MALIENNE", "ML"), ("Mali", "ML"), ("nigériane", "NG"), ("nigeriane", "NG"), ("Nigeria", "NG"),
     ("guinéenne", "GN"), ("burkinabè", "BF"), ("nigérienne", "NE"), ("Côte d'Ivoire", "CI"), ("ML", "ML")],
)
def test_nationality_spellings(mali: MappingAdapter, spelling: str, code: str) -> None:
    assert mali.to_shared(sample(GIRL) | {"nationalite": spelling}).payload["person"]["nationality"] == code


@pytest.mark.parametrize(
    ("lien", "code"),
    [("père", "father"), ("mère", "mother"), ("oncle", "aunt_uncle"), ("Tante", "aunt_uncle"),
     ("tuteur légal", "legal_guardian"), ("TUTEUR LEGAL", "legal_guardian"), ("service social", "other")],
)
def test_guardian_relationship(mali: MappingAdapter, lien: str, code: str) -> None:
    rec = sample(GIRL) | {"tuteur": {"lien": lien}}
    assert mali.to_shared(rec).payload["person"]["family_contacts"] == [{"relationship": code}]


@pytest.mark.parametrize(
    ("donne_par", "code"),
    [("enfant", None), ("parent", "parent_guardian"), ("tuteur", "parent_guardian"),
     ("service de protection de l'enfance", "guardian_with_child_protection"),
     ("Service de Protection de l’Enfance", "guardian_with_child_protection"), ("juge des enfants", "judge_of_minors")],
)
def test_consent_decision_maker(mali: MappingAdapter, donne_par: str, code: str | None) -> None:
    rec = sample(BOY)
    rec["consentement"]["donne_par"] = donne_par
    if code is None:  # a child consenting alone
        with pytest.raises(UnmappableValueError) as info:
            mali.to_shared(rec)
        assert info.value.local_field == "consentement.donne_par"
        assert str(info.value).startswith("consentement.donne_par: a minor cannot consent alone")
        return
    assert mali.to_shared(rec).payload["consent"]["decision_maker"] == code


def test_an_adult_may_consent_alone(mali: MappingAdapter) -> None:
    rec = sample(BOY) | {"mineur": "non", "age_estime": 19}
    rec["consentement"]["donne_par"] = "personne concernée"
    assert mali.to_shared(rec).payload["consent"]["decision_maker"] == "self"


@pytest.mark.parametrize(
    ("items", "expected"),
    [
        (["mendicité forcée"], [{"type": "forced_begging", "intended": False}]),
        (["MENDICITE FORCEE", {"type": "Exploitation Sexuelle", "intentionnelle": "oui"}],
         [{"type": "forced_begging", "intended": False}, {"type": "sexual_exploitation", "intended": True}]),
        ([{"type": "travail forcé", "secteurs": ["Orpaillage"], "pays": ["Côte d'Ivoire"]}],
         [{"type": "forced_labour", "intended": False, "labour_sectors": ["mining_drilling"], "countries": ["CI"]}]),
        (["travail domestique", "mariage forcé", "enrôlement dans les groupes armés"],
         [{"type": t, "intended": False} for t in ("domestic_servitude", "forced_marriage", "child_soldiering")]),
        (["inconnu"], [{"type": "undetermined", "intended": False}]),
    ],
)
def test_exploitation_forms(mali: MappingAdapter, items: list[Any], expected: list[Any]) -> None:
    rec = sample(BOY) | {"forme_exploitation": items}
    assert mali.to_shared(rec).payload["exploitation"] == expected


@pytest.mark.parametrize(
    ("statut", "code"), [("présumée", "presumed"), ("PRESUME", "presumed"), ("confirmée", "confirmed"), ("refusé", "self_denies")]
)
def test_identification_status(mali: MappingAdapter, statut: str, code: str) -> None:
    rec = sample(BOY) | {"statut_identification": statut}
    assert mali.to_shared(rec).payload["identification"]["status"] == code


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        ({"forme_exploitation": ["mendicité forcée", "pêche"]}, UnmappableValueError,
         "forme_exploitation[1]: 'pêche' is not in the code list for exploitation type"),
        ({"sexe": "X"}, UnmappableValueError, "sexe: 'X' is not in the code list for sex"),
        ({"nationalite": "Atlantide"}, UnmappableValueError, "nationalite: 'Atlantide' is not in the code list for country"),
        ({"statut_identification": "inconnu"}, MissingFieldError, "statut_identification: is required and has no value"),
        ({"date_naissance": "inconnue", "age_estime": 19}, UnmappableValueError, "mineur: contradicts age_estime"),
        ({"mineur": "inconnu", "date_naissance": "NSP", "age_estime": "NSP"}, MissingFieldError, "mineur: is needed when the age is unknown"),
        ({"mineur": "peut-être"}, UnmappableValueError, "mineur: 'peut-être' is not in the code list for yes/no"),
        ({"date_identification": "31/02/2026"}, UnmappableValueError, "date_identification: is not a calendar date"),
        ({"pays_origine": "inconnu"}, MissingFieldError,
         "pays_origine: is required when region_origine, cercle or commune is given"),
        ({"tuteur": {"nom": "Testfixture"}}, MissingFieldError, "tuteur[0].lien: is required when tuteur[0] is given"),
        ({"tuteur": {"lien": "voisin"}}, UnmappableValueError, "tuteur[0].lien: 'voisin' is not in the code list for relationship"),
        ({"tuteur": {"lien": "mère", "lieu": {"cercle": "Oredo"}}}, MissingFieldError,
         "tuteur[0].lieu.pays: is required when tuteur[0]"),
        ({"couleur": "bleu"}, AdapterError, "couleur: is not a field of the local format"),
        ({"langues": ["klingon"]}, UnmappableValueError, "langues[0]: 'klingon' is not in the code list for language"),
        ({"besoins": ["médical", "argent de poche"]}, UnmappableValueError,
         "besoins[1]: 'argent de poche' is not in the code list for need"),
    ],
)
def test_errors_name_the_local_field_and_why(mali: MappingAdapter, change: dict[str, Any], error: type, message: str) -> None:
    rec = sample(GIRL) | change
    rec["consentement"]["finalites"].append("assistance")  # so that no field is dropped
    with pytest.raises(error) as info:
        mali.to_shared(rec)
    assert str(info.value).startswith(message)


def test_a_broken_place_of_origin_does_not_block_a_purpose_that_drops_it(mali: MappingAdapter) -> None:
    rec = sample(BOY) | {"pays_origine": "inconnu", "cercle": "Labé"}
    result = mali.to_shared(rec)  # assistance: the place of origin is not sent anyway
    assert "place_of_origin" not in result.payload["person"]
    assert {"region_origine", "cercle"} <= {d.local_field for d in result.dropped}


def test_consent_rules(mali: MappingAdapter) -> None:
    girl = sample(GIRL)
    girl["consentement"]["donne_par"] = "enfant"
    with pytest.raises(UnmappableValueError, match=r"^consentement.donne_par: a minor cannot consent alone"):
        mali.to_shared(girl)
    # presumed minor (age unknown, flag set): the child still cannot consent alone
    unknown_age = sample(MISSING)
    unknown_age["consentement"]["donne_par"] = "l'enfant"
    with pytest.raises(UnmappableValueError, match=r"^consentement.donne_par: a minor cannot consent alone"):
        mali.to_shared(unknown_age)
    with pytest.raises(PurposesError, match=r"^consentement.finalites: 'assistance' not consented"):
        mali.to_shared(sample(GIRL), ["assistance"])
    rec = sample(GIRL)
    del rec["consentement"]["donne_par"]
    with pytest.raises(MissingFieldError, match=r"^consentement.donne_par: is required"):
        mali.to_shared(rec)
    rec = sample(GIRL)
    rec["consentement"]["donne_par"] = "le voisin"
    with pytest.raises(UnmappableValueError, match=r"^consentement.donne_par: 'le voisin' is not in the code list for consent decision maker"):
        mali.to_shared(rec)


SECRET = "Zyxwvutsrqname"


@pytest.mark.parametrize(
    "breakage",
    [
        {"sexe": "???x"},
        {"date_naissance": "45/13/2001"},
        {"mineur": "non", "date_naissance": "inconnue", "age_estime": 15},
        {"nationalite": "Wakanda"},
        {"tuteur": {"lien": "voisin", "nom": SECRET, "telephone": "+234"}},
        {"tuteur": {"lien": "mère", "nom": SECRET, "prenom": SECRET, "telephone": SECRET}},
        {"tuteur": [{"lien": "mère"}, {"nom": SECRET, "prenom": SECRET}]},
        {"statut_identification": SECRET},  # a name typed into a coded field is quoted: that is the rule
        {"pays_origine": "inconnu", "commune": SECRET},
        {"region_origine": SECRET + " " * 300},
        {"documents_identite": [{"type": "passeport", "numero": SECRET}]},
        {"prenom": SECRET + " " * 300},
        {"consentement": {"donne_par": "enfant", "date": "01/01/2026", "expiration": "01/01/2030", "finalites": ["recherche familiale"],
                          "pays_destinataires": ["Nigeria"]}},
        {"consentement": {"donne_par": "juge des enfants", "date": "99/99/2026", "expiration": "01/01/2030", "finalites": ["assistance"]}},
    ],
)
def test_errors_never_contain_a_name_from_the_record(mali: MappingAdapter, breakage: dict[str, Any]) -> None:
    rec = sample(GIRL) | {"nom": SECRET, "prenom": SECRET} | breakage
    with pytest.raises(AdapterError) as info:
        mali.to_shared(rec)
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
    mali = get_adapter("mali")
    assert isinstance(mali, MappingAdapter)
    fuzz_local_record(data, mali, LOCAL_SCHEMA, OVERRIDES, minor="mineur", birth="date_naissance",
                      birth_dates=local_dates("%d/%m/%Y", date(1940, 1, 1), date(2025, 12, 31)), drop=("finalites_demandees",))


@settings(max_examples=scaled(200), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_fuzz_good_spellings_map_and_round_trip(data: st.DataObject) -> None:
    """Samples with their coded fields re-drawn from the code lists (any case): valid or a named error."""
    mali = get_adapter("mali")
    assert isinstance(mali, MappingAdapter)
    fuzz_respelled_sample(data, mali, LOCAL_SCHEMA, [p.stem for p in SAMPLES], sample, minor="mineur",
                          refusable={"finalites_demandees", "consentement.finalites", "mineur", "consentement.donne_par"})


@settings(max_examples=scaled(150), deadline=None)
@given(
    nationalite=st.sampled_from(["malienne", "Mali", "nigériane", "Guinée", "burkinabè", "Sénégal", "Niger"]),
    case=st.sampled_from([str.upper, str.lower, str.title, lambda s: s]),
    age=st.integers(0, 90),
    days=st.integers(0, 3000),
    purposes=st.lists(st.sampled_from(["assistance"]), min_size=1, unique=True),
)
def test_fuzz_sample_variants_always_map(nationalite: str, case: Any, age: int, days: int, purposes: list[str]) -> None:
    """Realistic variations of a good record always produce a valid payload."""
    mali = get_adapter("mali")
    rec = sample(BOY)
    rec |= {"nationalite": case(nationalite), "age_estime": age, "mineur": "oui" if age < 18 else "non"}
    rec["consentement"]["date"] = (date(2026, 1, 1) + timedelta(days=days)).strftime("%d/%m/%Y")
    result = mali.to_shared(rec, purposes)
    assert find_violations("referral.request", result.payload) == []
    assert result.payload["person"]["age"]["years"] == age


# --- as staff use the form (issue 11) --------------------------------------------------


@pytest.mark.parametrize("name", handwritten_names("mali"))
def test_hand_written_fiche_converts_on_the_first_try(mali: MappingAdapter, name: str) -> None:
    converts_first_time(mali, name)


def test_best_interests_conclusion_is_a_coded_field(mali: MappingAdapter) -> None:
    """Not sent, but checked: an unknown conclusion is refused with the accepted values."""
    rec = sample("garcon_mendicite_assistance")
    rec["evaluation_interet_superieur"]["conclusion"] = "à voir"
    with pytest.raises(UnmappableValueError) as info:
        mali.to_shared(rec)
    assert str(info.value) == ("evaluation_interet_superieur.conclusion: 'à voir' is not in the code list for "
                               "best-interests conclusion (accepted: retour recommandé, retour non recommandé, en cours)")
    assert info.value.params["accepted"] == ["retour recommandé", "retour non recommandé", "en cours"]
    rec["evaluation_interet_superieur"]["conclusion"] = "Retour  recommandé"
    mali.to_shared(rec)
    rec["evaluation_interet_superieur"]["conclusion"] = "NSP"
    mali.to_shared(rec)


def test_every_error_of_a_fiche_is_reported_at_once(mali: MappingAdapter) -> None:
    rec = sample("garcon_mendicite_assistance")
    rec |= {"date_identification": "2026-03-03", "moyens": ["tromperie", "ruse"], "prenom": "Zyxwvuta",
            "tuteur": {"lien": "voisin", "telephone": "+223 7"}}
    rec["evaluation_interet_superieur"]["conclusion"] = "peut-être"
    with pytest.raises(RecordErrors) as info:
        mali.to_shared(rec)
    # in the form's order; the guardian block is not sent for assistance, so its errors do not block
    assert [e.local_field for e in info.value.errors] == [
        "date_identification", "evaluation_interet_superieur.conclusion", "moyens[1]"]
    assert info.value.errors[0].reason == "is written year first: write the date as JJ/MM/AAAA"
    assert_hides(str(info.value), "Zyxwvuta")
    with pytest.raises(RecordErrors) as info:
        mali.to_shared(rec, ["family_tracing"])
    assert {"tuteur[0].lien", "tuteur[0].telephone"} <= {e.local_field for e in info.value.errors}


def test_meaning_is_kept_on_the_way_back(mali: MappingAdapter) -> None:
    """"brigade des mineurs" does not come back as "police", a declared age not as "estimé"."""
    record, _ = handwritten("mali_01_talibe_retour")
    result = mali.to_shared(record)
    local = mali.from_shared(result.payload)
    assert local["source_referencement"] == "forces de l'ordre"
    assert local["identifie_par"] == "forces de l'ordre"
    assert "methode_age" not in local
    assert any(d.local_field == "methode_age" for d in result.dropped)
    record, _ = handwritten("mali_02_fillette_domestique")
    assert mali.from_shared(mali.to_shared(record).payload)["consentement"]["donne_par"] == "parent ou tuteur"


@pytest.mark.parametrize("name", handwritten_names("mali"))
def test_hand_written_record_as_schema_v2(mali: MappingAdapter, name: str) -> None:
    converts_to_v2_and_back(mali, name)


def test_v2_carries_the_guardian_role_and_the_best_interests_determination(mali: MappingAdapter) -> None:
    """A DNPEF social worker is a guardian role with an agency, not a family contact "other"."""
    record, _ = handwritten("mali_03_garcon_orpaillage")
    payload = converts_to_v2_and_back(mali, "mali_03_garcon_orpaillage")
    assert payload["child_protection"]["guardian"] == {"role": "child_protection_social_worker", "agency": "ML-DNPEF"}
    # "retour non recommandé" names no solution, which a completed v2 determination needs: reported, not sent
    result = mali.to_shared_v2(record, recipient="ML-DNPEF", recipient_country="ML")
    assert "best_interests" not in result.payload["child_protection"]
    assert any(d.local_field == "evaluation_interet_superieur.conclusion" for d in result.dropped)
    assert mali.from_shared(payload)["tuteur"]["lien"] == "service social"
    payload = converts_to_v2_and_back(mali, "mali_01_talibe_retour")
    assert payload["child_protection"]["best_interests"] == {
        "status": "completed", "outcome": "return_to_family", "decided_on": "2026-01-20", "decided_by": "ML-DNPEF"}
    local = mali.from_shared(payload)
    assert local["evaluation_interet_superieur"] == {"conclusion": "retour recommandé", "date": "20/01/2026"}
    assert local["tuteur"]["lien"] == "oncle ou tante"  # a relative stays a family contact


def test_a_v2_only_code_reads_back_in_the_forms_words(mali: MappingAdapter) -> None:
    payload = converts_to_v2_and_back(mali, "mali_02_fillette_domestique")
    payload["identification"]["referral_source"] = "juvenile_judge"
    payload["identification"]["identified_by"] = "court_or_prosecution"
    local = mali.from_shared(payload)
    assert (local["source_referencement"], local["identifie_par"]) == ("juge des mineurs", "tribunal ou parquet")
    again = mali.to_shared_v2(local, payload["purposes"], recipient="ML-DNPEF").payload
    assert again["identification"]["referral_source"] == "juvenile_judge"
    assert again["identification"]["identified_by"] == "court_or_prosecution"


@pytest.mark.parametrize(
    ("langues", "v2_languages"),
    [
        (["malinké"], ["man"]),  # the Manding macrolanguage: Kita, Western and Eastern Maninkakan
        (["Maninka"], ["man"]),
        (["bobo"], ["bbo"]),  # Northern Bobo Madaré (Mali, Burkina Faso)
        (["bambara et dogon"], ["bam", {"code": "mis", "name": "Dogon"}]),
        (["tommo so"], ["dto"]),
        (["Sénoufo", "supyiré"], [{"code": "mis", "name": "Senufo"}, "spp"]),
        (["senoufo"], [{"code": "mis", "name": "Senufo"}]),
    ],
)
def test_languages_of_mali_are_expressible(mali: MappingAdapter, langues: list[str], v2_languages: list[Any]) -> None:
    """Dogon and Sénoufo are clusters of languages with no one ISO 639-3 code: v2 carries them by name
    (``mis``), v1 cannot and reports them; the coded ones (Malinké, Bobo, Tommo So...) travel as codes."""
    record = sample("fillette_recherche_retour") | {"langues": langues}
    payload = mali.to_shared_v2(record, None, recipient="NG-NAPTIP", recipient_country="NG").payload
    assert sorted(map(json.dumps, payload["person"]["languages"])) == sorted(map(json.dumps, v2_languages))
    back = mali.from_shared(payload)
    assert mali.to_shared_v2(back, None, recipient="NG-NAPTIP", recipient_country="NG").payload == payload
    uncoded = [lang for lang in v2_languages if isinstance(lang, dict)]
    v1 = mali.to_shared(record, None)
    assert all(isinstance(code, str) for code in v1.payload["person"].get("languages", []))
    assert bool(uncoded) == any(d.local_field.startswith("langues") for d in v1.dropped)


def test_an_uncoded_language_of_the_consent_and_back(mali: MappingAdapter) -> None:
    record = sample("fillette_recherche_retour")
    record["consentement"]["langue_explication"] = "dogon"
    result = mali.to_shared_v2(record, None, recipient="NG-NAPTIP", recipient_country="NG")
    assert result.payload["consent"]["explained_in"] == {"code": "mis", "name": "Dogon"}
    assert not any(d.local_field == "consentement.langue_explication" for d in result.dropped)
    assert mali.from_shared(result.payload)["consentement"]["langue_explication"] == "dogon"
    # v1 cannot name it: not sent, and said so
    v1 = mali.to_shared(record, None)
    assert "explained_in" not in v1.payload["consent"]
    assert any(d.local_field == "consentement.langue_explication" for d in v1.dropped)


def test_uncoded_languages_must_be_spellings_the_code_list_does_not_send() -> None:
    from adapters.errors import MappingDefinitionError
    from adapters.table import MappingTable
    spec = json.loads((FOLDER / "mapping.json").read_text(encoding="utf-8"))
    spec["uncoded_languages"] = {"bambara": "Bambara"}  # has a code: it is not uncoded
    with pytest.raises(MappingDefinitionError, match="uncoded_languages.bambara"):
        MappingTable.from_dict(spec, FOLDER)


@pytest.mark.parametrize(("situation", "care_status", "written_back"), [
    ("non accompagnée", "unaccompanied", "non accompagné"),
    ("Enfant séparé", "separated", "séparé"),
    ("avec ses parents", "with_parent_or_legal_guardian", "avec parent ou tuteur légal"),
])
def test_the_childs_care_status(mali: MappingAdapter, situation: str, care_status: str, written_back: str) -> None:
    """Unaccompanied or separated: the form says it, v2 carries it, v1 cannot (reported)."""
    record = sample("fillette_recherche_retour") | {"situation_enfant": situation}
    result = mali.to_shared_v2(record, None, recipient="NG-NAPTIP", recipient_country="NG")
    assert result.payload["child_protection"]["care_status"] == care_status
    assert not any(d.local_field == "situation_enfant" for d in result.dropped)
    back = mali.from_shared(result.payload)
    assert back["situation_enfant"] == written_back
    assert mali.to_shared_v2(back, None, recipient="NG-NAPTIP", recipient_country="NG").payload == result.payload
    v1 = mali.to_shared(record, None)
    assert "child_protection" not in v1.payload
    assert any(d.local_field == "situation_enfant" and d.shared_path is None for d in v1.dropped)
    assert "situation_enfant" not in mali.from_shared(v1.payload)


def test_an_unknown_care_status_is_refused_with_the_accepted_values(mali: MappingAdapter) -> None:
    with pytest.raises(UnmappableValueError, match=r"situation_enfant: 'perdu' is not in the code list .*"
                                                   r"\(accepted: non accompagné, séparé, avec parent ou tuteur légal\)"):
        mali.to_shared(sample("fillette_recherche_retour") | {"situation_enfant": "perdu"})
