"""The HTCDS adapter (HTCDS 2.0 record + x_rgw_ extensions): the standard, samples, round trips, drops, errors, fuzzing."""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from adapters import AdapterError, MissingFieldError, PurposesError, UnmappableValueError, available_formats, get_adapter
from adapters.base import MappingAdapter, _walk_rules, shared_request_fields
from adapters.htcds import HtcdsAdapter
from adapters.htcds import standard
from adapters.htcds.adapter import V2_TARGETS
from gateway.schema import SCHEMA_DIR, example_names, find_violations, load_example
from gateway.schema_versions import upgrade_to_v2
from tests.support.adapter_checks import assert_hides, fuzz_local_record, fuzz_respelled_sample
from tests.support.adapter_checks import mostly
from tests.support.hypothesis_profiles import scaled

FOLDER = Path(__file__).resolve().parent.parent / "adapters" / "htcds"
SCHEMA_FILE = FOLDER / "htcds.schema.json"
SAMPLES = sorted((FOLDER / "samples").glob("*.json"))
ADULT = "adult_woman_safety_tracing"
MINOR = "minor_assisted_return_guardian"
MISSING = "missing_values"
COMPLETE = "htcds_2_0_complete"
# ../shared beside the main checkout (/work/main -> /work/shared), or beside a worktree's parent
REFERENCE = next((p / "shared" / "reference" / "htcds" / "htcds_2.0_fields.txt" for p in Path(__file__).resolve().parents[2:4]
                  if (p / "shared" / "reference" / "htcds" / "htcds_2.0_fields.txt").exists()), Path("/nonexistent"))


@pytest.fixture(scope="module")
def htcds() -> MappingAdapter:
    adapter = get_adapter("htcds")
    assert isinstance(adapter, HtcdsAdapter)
    return adapter


def sample(name: str) -> dict[str, Any]:
    return json.loads((FOLDER / "samples" / f"{name}.json").read_text(encoding="utf-8"))


def without(trace: dict[str, Any], prefixes: set[str]) -> dict[str, Any]:
    """A trace minus the local fields under any of these prefixes (dropped fields)."""
    return {k: v for k, v in trace.items() if not any(k == p or k.startswith((p + ".", p + "[")) for p in prefixes)}


# --- the local format ------------------------------------------------------------------


def test_registered() -> None:
    assert "htcds" in available_formats()


def _v2_request_leaves() -> set[str]:
    """Every leaf path a v2 referral.request can carry (schema_version aside)."""
    fields = shared_request_fields("2")
    return {f for f in fields if not any(g.startswith(f + ".") for g in fields)} - {"schema_version"}


def test_the_mapping_covers_every_field_of_the_v2_request(htcds: MappingAdapter) -> None:
    mapped = {shared for _, _, shared in _walk_rules(htcds.table.rules)}
    expanded = {f for f in _v2_request_leaves() if any(f == m or f.startswith(m + ".") for m in mapped)}
    assert _v2_request_leaves() - expanded == set()


def test_htcds_fields_the_shared_schema_does_not_carry_are_local_only(htcds: MappingAdapter) -> None:
    assert {"cas_Status", "cco_CaseComment", "prs_MobilePhone", "hte_Country"} <= set(htcds.table.local_only)


# --- samples ---------------------------------------------------------------------------


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.stem)
def test_sample_round_trip_preserves_every_carried_field(htcds: MappingAdapter, path: Path) -> None:
    local = json.loads(path.read_text(encoding="utf-8"))
    result = htcds.to_shared(local)
    assert result.payload["schema_version"] == "2"
    assert find_violations("referral.request", result.payload) == []
    back = htcds.from_shared(result.payload)
    assert list(Draft202012Validator(htcds.local_schema).iter_errors(back)) == []
    dropped = {d.local_field for d in result.dropped}
    before, after = without(htcds.trace(local), dropped), htcds.trace(back)
    for field, value in before.items():
        assert after.get(field) == value, field
    assert htcds.to_shared(back, result.payload["purposes"]).payload == result.payload


def test_adult_woman(htcds: MappingAdapter) -> None:
    result = htcds.to_shared(sample(ADULT))
    p = result.payload
    assert p["purposes"] == ["safety_assessment", "family_tracing"]
    assert p["identification"]["status"] == "possible_victim_of_trafficking"
    assert p["person"]["nationality"] == "NG" and p["person"]["sex"] == "female"
    assert p["person"]["names"] == {"given": "Amaka", "middle": "Joy", "family": "Testfixture"}
    assert p["person"]["age"] == {"minor": False, "years": 22, "estimated": False}
    assert p["person"]["languages"] == ["eng", "pcm"]
    assert p["person"]["place_of_origin"] == {"country": "NG", "admin1": "Edo", "admin2": "Oredo", "locality": "Benin City"}
    assert p["person"]["family_contacts"][0]["phone"] == "+2348000000001"
    assert p["consent"]["given_at"] == "2026-03-06T10:15:00Z"  # 11:15 at UTC+1
    assert p["consent"]["expires_at"] == "2030-12-31T23:59:59Z"  # a date alone: end of day
    assert p["consent"]["recipients"] == [{"agency": "NG-NAPTIP", "purposes": ["safety_assessment", "family_tracing"]}]
    assert "exploitation" not in p and "needs" not in p and "methods_of_control" not in p
    reasons = {d.local_field: d.reason for d in result.dropped}
    assert reasons["vic_TypeOfExploitation"] == "not allowed for purposes [safety_assessment, family_tracing]"
    assert reasons["vic_MethodsOfControl"] == reasons["x_rgw_Needs"] == reasons["vic_TypeOfExploitation"]
    assert reasons["x_rgw_AgeBand"].startswith("superseded by person.age.years")
    assert reasons["cas_Status"].startswith("local only") and reasons["cco_CaseComment"].startswith("local only")
    rec = sample(ADULT)
    rec["x_rgw_ConsentPurposes"].append("Assistance")
    assert htcds.to_shared(rec, ["assistance"]).payload["exploitation"] == [
        {"type": "sexual_exploitation", "intended": False}, {"type": "domestic_servitude", "intended": True}]


def test_safety_assessment_only_drops_identity_and_reports_it(htcds: MappingAdapter) -> None:
    result = htcds.to_shared(sample(ADULT), ["safety_assessment"])
    person = result.payload["person"]
    assert set(person) == {"sex", "age", "nationality", "languages"}
    dropped = {d.local_field: d for d in result.dropped}
    assert {"prs_FirstName", "prs_MiddleName", "prs_SecondName", "x_rgw_PlaceOfOrigin", "x_rgw_FamilyContacts",
            "vic_TypeOfExploitation", "x_rgw_Needs", "vic_MethodsOfControl"} <= set(dropped)
    assert dropped["prs_SecondName"].shared_path == "person.names.family"


@pytest.mark.parametrize("purposes", [["assistance"], ["safety_assessment"], ["family_tracing"], ["assisted_return"],
                                      ["reintegration_handover"], ["international_protection"]])
def test_investigative_data_travels_only_with_criminal_justice_cooperation(htcds: MappingAdapter, purposes: list[str]) -> None:
    rec = sample(MINOR)
    rec["x_rgw_ConsentPurposes"] = purposes
    result = htcds.to_shared(rec, purposes)
    dropped = {d.local_field for d in result.dropped}
    assert {"x_rgw_Acts", "x_rgw_Means"} <= dropped
    for field in ("acts", "means", "methods_of_control", "narrative", "criminal_justice"):
        assert field not in result.payload


def test_criminal_justice_cooperation(htcds: MappingAdapter) -> None:
    rec = sample(COMPLETE) | {"x_rgw_CooperationDecision": "Agrees", "x_rgw_CooperationDecidedOn": "2026-02-15",
                              "x_rgw_ProtectionMeasuresRequested": ["Anonymity", "video_testimony"],
                              "x_rgw_ConsentPurposes": ["Assistance", "CriminalJusticeCooperation"]}
    result = htcds.to_shared(rec, ["criminal_justice_cooperation"])
    p = result.payload
    assert p["criminal_justice"] == {"cooperation_decision": "agrees", "decided_on": "2026-02-15",
                                     "protection_measures_requested": ["anonymity", "video_testimony"]}
    assert p["methods_of_control"] == ["debt_bondage", "withholds_documents", "threats_law_enforcement"]
    assert p["narrative"] == "Synthetic test narrative."
    back = htcds.from_shared(p)
    assert back["x_rgw_CooperationDecision"] == "Agrees" and back["x_rgw_ProtectionMeasuresRequested"] == ["Anonymity", "VideoTestimony"]
    assistance = htcds.to_shared(rec, ["assistance"])  # the same record, assistance only: no investigative data
    assert not {"criminal_justice", "methods_of_control", "narrative"} & set(assistance.payload)
    with pytest.raises(PurposesError, match=r"^x_rgw_CooperationDecision: criminal_justice_cooperation needs the person's agreement"):
        htcds.to_shared(rec | {"x_rgw_CooperationDecision": "Declines"}, ["criminal_justice_cooperation"])
    declined = htcds.to_shared(rec | {"x_rgw_CooperationDecision": "Declines"}, ["assistance"])
    assert declined.payload["purposes"] == ["assistance"]  # declining keeps assistance
    without_decision = {k: v for k, v in rec.items() if not k.startswith(("x_rgw_Cooperation", "x_rgw_Protection"))}
    with pytest.raises(MissingFieldError, match=r"^x_rgw_CooperationDecision: is required for the purpose criminal_justice"):
        htcds.to_shared(without_decision, ["criminal_justice_cooperation"])


def test_minor_with_guardian_and_child_protection(htcds: MappingAdapter) -> None:
    rec = sample(MINOR) | {"x_rgw_CareStatus": "Unaccompanied", "x_rgw_GuardianRole": "ChildProtectionSocialWorker",
                           "x_rgw_GuardianAgency": "ml-dnpef", "x_rgw_GuardianOrganisationType": "CentralGovernmentOrganisation",
                           "x_rgw_GuardianFirstName": "Awa", "x_rgw_GuardianSecondName": "Testfixture",
                           "x_rgw_BestInterestsStatus": "Completed", "x_rgw_BestInterestsOutcome": "ReturnToFamily",
                           "x_rgw_BestInterestsDecidedOn": "2026-01-20", "x_rgw_BestInterestsDecidedBy": "ML-DNPEF"}
    result = htcds.to_shared(rec)
    p = result.payload
    assert p["purposes"] == ["assisted_return", "family_tracing"]
    assert p["person"]["age"] == {"minor": True, "date_of_birth": "2009-05-02"}
    assert p["consent"]["decision_maker"] == "parent_guardian"
    assert p["child_protection"] == {
        "care_status": "unaccompanied",
        "guardian": {"role": "child_protection_social_worker", "agency": "ML-DNPEF",
                     "organisation_type": "central_government_organisation", "names": {"given": "Awa", "family": "Testfixture"}},
        "best_interests": {"status": "completed", "outcome": "return_to_family", "decided_on": "2026-01-20", "decided_by": "ML-DNPEF"}}
    assert htcds.to_shared(htcds.from_shared(p), p["purposes"]).payload == p
    safety = htcds.to_shared(rec, ["safety_assessment"])
    assert "names" not in safety.payload["child_protection"]["guardian"]  # guardian names only for tracing and return
    assert {(d.local_field, d.shared_path) for d in safety.dropped} >= {
        ("x_rgw_GuardianFirstName", "child_protection.guardian.names.given"),
        ("x_rgw_GuardianSecondName", "child_protection.guardian.names.family")}
    with pytest.raises(MissingFieldError, match=r"^x_rgw_CareStatus: is required when any of x_rgw_CareStatus, x_rgw_GuardianRole"):
        htcds.to_shared(sample(MINOR) | {"x_rgw_GuardianRole": "Parent"})
    with pytest.raises(MissingFieldError) as info:
        htcds.to_shared(sample(MINOR) | {"x_rgw_CareStatus": "Separated", "x_rgw_BestInterestsOutcome": "Pending"})
    assert str(info.value) == ("x_rgw_BestInterestsStatus: is required when any of x_rgw_BestInterestsStatus, "
                               "x_rgw_BestInterestsOutcome, x_rgw_BestInterestsDecidedOn, x_rgw_BestInterestsDecidedBy is given")
    with pytest.raises(UnmappableValueError, match=r"^x_rgw_CareStatus: child protection fields are for a minor only"):
        htcds.to_shared(sample(ADULT) | {"x_rgw_CareStatus": "Separated"})


def test_needs_and_accompanying_children(htcds: MappingAdapter) -> None:
    rec = sample(MINOR) | {"x_rgw_MedicalUrgency": "Urgent", "x_rgw_MedicalCategory": "Injury;MentalHealth",
                           "x_rgw_FitToTravel": "WithMedicalEscort", "x_rgw_Pregnant": "No", "x_rgw_Disability": ["Hearing"],
                           "x_rgw_AccessNeeds": ["SignLanguage"], "x_rgw_InterpreterNeeded": "Yes",
                           "x_rgw_InterpreterLanguage": "ish", "x_rgw_AccompanyingChildren": 2}
    p = htcds.to_shared(rec).payload
    assert p["needs"] == {"services": ["medical", "psychosocial", "documentation", "return"], "medical_urgency": "urgent",
                          "medical_category": ["injury", "mental_health"], "fit_to_travel": "with_medical_escort",
                          "pregnant": False, "disability": ["hearing"], "access_needs": ["sign_language"],
                          "interpreter": {"needed": True, "language": "ish"}}
    assert p["person"]["accompanying_children"] == [
        {"age_band": "unknown", "documents": "unknown", "needs_escort": True, "relationship": "child"}] * 2
    back = htcds.from_shared(p)
    assert back["x_rgw_AccompanyingChildren"] == 2 and back["x_rgw_InterpreterLanguage"] == "ish"
    children = [{"AgeBand": "0-8", "Documents": "Missing", "NeedsEscort": "Yes", "Relationship": "Sibling"}]
    q = htcds.to_shared(rec | {"x_rgw_AccompanyingChildren": children}).payload
    assert q["person"]["accompanying_children"] == [{"age_band": "0-8", "documents": "missing", "needs_escort": True,
                                                     "relationship": "sibling"}]
    assert htcds.from_shared(q)["x_rgw_AccompanyingChildren"] == children


def test_consent_is_scoped_to_recipient_agencies(htcds: MappingAdapter) -> None:
    """NAPTIP's consent for protection work does not cover a police agency of the same country."""
    rec = sample(ADULT)
    for name in ("x_rgw_ConsentRecipientAgencies", "x_rgw_ConsentPurposes"):
        del rec[name]
    rec["x_rgw_ConsentRecipients"] = [{"Agency": "NG-NAPTIP", "Purposes": ["SafetyAssessment", "FamilyTracing"]},
                                      {"Agency": "NG-POLICE", "Purposes": ["CriminalJusticeCooperation"]}]
    p = htcds.to_shared(rec, ["safety_assessment"]).payload
    assert p["consent"]["recipients"] == [{"agency": "NG-NAPTIP", "purposes": ["safety_assessment", "family_tracing"]},
                                          {"agency": "NG-POLICE", "purposes": ["criminal_justice_cooperation"]}]
    back = htcds.from_shared(p)
    assert back["x_rgw_ConsentRecipients"] == rec["x_rgw_ConsentRecipients"] and "x_rgw_ConsentPurposes" not in back
    with pytest.raises(PurposesError, match=r"^x_rgw_ConsentRecipients: 'assistance' not consented for any recipient"):
        htcds.to_shared(rec, ["assistance"])
    with pytest.raises(MissingFieldError, match=r"^x_rgw_ConsentPurposes: is required when x_rgw_ConsentRecipientAgencies"):
        htcds.to_shared({k: v for k, v in sample(ADULT).items() if k != "x_rgw_ConsentPurposes"})


def test_missing_values_sample(htcds: MappingAdapter) -> None:
    p = htcds.to_shared(sample(MISSING)).payload
    assert p["person"]["sex"] == "unknown"
    assert p["person"]["age"] == {"minor": True, "band": "unknown"}
    assert p["person"]["names"] == {"given": "Testfixture"}
    assert p["person"]["languages"] == ["hau"]
    for absent in ("nationality", "place_of_origin", "family_contacts"):
        assert absent not in p["person"]
    assert "needs" not in p and "safety_concerns" not in p and "urgency" not in p
    assert p["exploitation"] == [{"type": "undetermined", "intended": False}]


@pytest.mark.parametrize("name", [n for n in example_names("2") if n.startswith("referral.request")])
def test_every_v2_example_survives_the_local_format(htcds: MappingAdapter, name: str) -> None:
    variant = name.removeprefix("referral.request").removeprefix(".") or None
    payload = load_example("referral.request", variant, "2")
    local = htcds.from_shared(payload)
    assert list(Draft202012Validator(htcds.local_schema).iter_errors(local)) == []
    assert set(local) <= set(standard.fields()) | {k for k in local if k.startswith(standard.EXTENSION_PREFIX)}
    assert htcds.to_shared(local, payload["purposes"]).payload == payload


@pytest.mark.parametrize("name", ["all_purposes", "minor_guardian", "safety_assessment_only"])
def test_v1_payloads_are_read_through_the_v2_upgrade(htcds: MappingAdapter, name: str) -> None:
    v1 = load_example("referral.request", name)
    v2 = upgrade_to_v2(v1, "referral.request").payload
    local = htcds.from_shared(v1)
    assert local == htcds.from_shared(v2)
    assert htcds.to_shared(local, v2["purposes"]).payload == v2


# --- HTCDS 2.0 exactly -----------------------------------------------------------------


def test_the_vendored_standard_agrees_with_the_reference_field_list() -> None:
    """htcds_2.0.json (from the .ods) has the fields, types and picklist values of the reference list."""
    if not REFERENCE.exists():
        pytest.skip("the shared HTCDS reference lists are not beside this checkout")
    rows = [line.split(" | ") for line in REFERENCE.read_text(encoding="utf-8").splitlines()
            if " | " in line and not line.startswith(("HDR", "N/A"))]
    assert [r[1] for r in rows] == list(standard.fields())
    for status, name, kind, values in rows:
        field = standard.fields()[name]
        assert (field.status, field.type) == (status, kind), name
        if field.values:
            # the reference list cuts long lines at 400 characters
            assert " / ".join(field.values).startswith(values.rstrip(" /")), name


def test_complete_htcds_2_0_record_adapts_unchanged_and_back(htcds: MappingAdapter) -> None:
    """Every HTCDS 2.0 field with a valid value: accepted as it is, and written back with the same names and values."""
    record = sample(COMPLETE)
    assert set(standard.fields()) <= set(record)
    result = htcds.to_shared(record, ["assistance", "family_tracing"])
    p = result.payload
    assert p["identification"]["status"] == "actual_victim_of_trafficking" and p["identification"]["identified_by"] == "ngo"
    assert p["person"]["sex"] == "female" and p["person"]["nationality"] == "NG" and p["person"]["languages"] == ["eng", "pcm"]
    assert p["exploitation"] == [
        {"type": "forced_labour", "intended": False, "labour_sectors": ["accommodation_and_food_service_activities"]},
        {"type": "sexual_exploitation", "intended": False}]
    local_only = {d.local_field for d in result.dropped if d.reason.startswith("local only")}
    assert local_only == {name for name in htcds.table.local_only if not htcds.table.is_missing(record[name])}
    rec = record | {"x_rgw_ConsentPurposes": ["Assistance", "FamilyTracing", "CriminalJusticeCooperation"],
                    "x_rgw_CooperationDecision": "Agrees", "x_rgw_CooperationDecidedOn": "2026-02-15"}
    full = htcds.to_shared(rec, ["assistance", "family_tracing", "criminal_justice_cooperation"]).payload
    assert full["methods_of_control"] == ["debt_bondage", "withholds_documents", "threats_law_enforcement"]
    back = htcds.from_shared(full)
    carried = {k for k in back if k in standard.fields()}
    assert {k: back[k] for k in carried} == {k: rec[k] for k in carried}
    assert carried == set(standard.fields()) - set(htcds.table.local_only)


def test_the_field_table_cites_only_htcds_2_0_names_or_extensions(htcds: MappingAdapter) -> None:
    names = set(standard.fields())
    top = {rule.local for rule in htcds.table.rules}
    schema = set(htcds.local_schema["properties"]) if htcds.local_schema else set()
    for name in top | set(htcds.table.local_only) | schema:
        assert name in names or name.startswith(standard.EXTENSION_PREFIX), name
    assert names <= schema  # every 2.0 field is accepted
    assert set(htcds.table.local_only) <= names
    assert not set(standard.LEGACY_FIELDS) & schema


def _picklist(field: str) -> list[tuple[str, str]]:
    f = standard.fields()[field]
    return [(field, v) for v in f.values] + [(field, label) for label in f.labels]


#: HTCDS 2.0 picklist field -> (code list, where the value lands in a payload built from the complete sample)
MAPPED_PICKLISTS: dict[str, tuple[str, Any]] = {
    "org_Type": ("organisation_type", lambda p: p["identification"]["identified_by"]),
    "prs_Gender": ("gender", lambda p: p["person"]["sex"]),
    "vic_TraffickingStatus": ("trafficking_status", lambda p: p["identification"]["status"]),
    "vic_TypeOfExploitation": ("type_of_exploitation", lambda p: p["exploitation"][0]["type"]),
    "vic_MethodsOfControl": ("method_of_control", lambda p: p["methods_of_control"][0]),
    "vic_ForcedLabourIndustry": ("forced_labour_industry", lambda p: p["exploitation"][0]["labour_sectors"][0]),
    "cas_ReasonForOutgoingReferral": ("outgoing_reason", None),
}


@pytest.mark.parametrize(("field", "value"), [fv for f in MAPPED_PICKLISTS for fv in _picklist(f)])
def test_every_picklist_value_of_the_standard_is_accepted_and_written_back(htcds: MappingAdapter, field: str, value: str) -> None:
    rec = sample(COMPLETE) | {"x_rgw_ConsentPurposes": ["Assistance", "AssistedReturn", "CriminalJusticeCooperation"],
                              "x_rgw_CooperationDecision": "Agrees", "x_rgw_CooperationDecidedOn": "2026-02-15"}
    multiselect = standard.fields()[field].multiselect
    rec[field] = [value] if multiselect else value
    if field == "vic_TypeOfExploitation":
        rec["vic_ForcedLabourIndustry"] = "Unknown"
    purposes = None if field == "cas_ReasonForOutgoingReferral" else ["assistance", "criminal_justice_cooperation"]
    p = htcds.to_shared(rec, purposes).payload
    assert find_violations("referral.request", p) == []
    name = standard.fields()[field].values[list(standard.fields()[field].labels).index(value)] \
        if value in standard.fields()[field].labels else value
    where = MAPPED_PICKLISTS[field][1]
    if where is not None:
        expected = standard.snake_case(name)
        if field == "prs_Gender":
            expected = {"feminine": "female", "masculine": "male", "non_specified_unknown": "unknown"}.get(expected, "other")
        assert where(p) == standard.V2_SPELLING.get(expected, expected)
    back = htcds.from_shared(p)
    written = back[field][0] if multiselect else back[field]
    if field == "prs_Gender" and name in ("TransgenderFeminine", "TransgenderMasculine"):
        assert written == "NonConforming"  # the shared schema carries sex, not gender identity
    elif field == "cas_ReasonForOutgoingReferral" and name == "Other":
        assert written == "AdditionalServicesRequired"  # "Other": every consented purpose, assistance among them
    else:
        assert written == name  # the standard's value name, whatever spelling came in


@pytest.mark.parametrize("field", [f for f in MAPPED_PICKLISTS if f not in ("prs_Gender", "cas_ReasonForOutgoingReferral")])
def test_v2_enums_hold_the_snake_case_of_every_htcds_value(htcds: MappingAdapter, field: str) -> None:
    target = {"org_Type": "organisation_type", "vic_TraffickingStatus": "identification_status",
              "vic_TypeOfExploitation": "exploitation_type", "vic_MethodsOfControl": "method_of_control",
              "vic_ForcedLabourIndustry": "labour_sector"}[field]
    enum = json.loads((SCHEMA_DIR / "v2" / "common.schema.json").read_text(encoding="utf-8"))["$defs"][target]["enum"]
    spelled = [standard.snake_case(v) for v in standard.fields()[field].values]
    assert [s for s in spelled if s not in enum] == [s for s in spelled if s in standard.V2_SPELLING]
    for s in spelled:  # each deviation is still needed, and maps to a real v2 code
        if s in standard.V2_SPELLING:
            assert standard.V2_SPELLING[s] in enum


@pytest.mark.parametrize(("field", "value"), [fv for f in standard.fields() if f not in MAPPED_PICKLISTS
                                              for fv in _picklist(f)])
def test_picklists_of_local_only_fields_are_checked_against_the_standard(htcds: MappingAdapter, field: str, value: str) -> None:
    rec = sample(COMPLETE) | {field: [value] if standard.fields()[field].multiselect else value}
    htcds.to_shared(rec)
    with pytest.raises(UnmappableValueError, match=rf"^{field}(\[0\])?: 'Bogus' is not in the HTCDS 2.0 picklist"):
        htcds.to_shared(rec | {field: ["Bogus"] if standard.fields()[field].multiselect else "Bogus"})


@pytest.mark.parametrize(
    ("legacy", "use"),
    [("prs_LastName", "prs_SecondName"), ("prs_BirthDate", "prs_Birthdate"), ("prs_Nationality", "prs_Citizenship"),
     ("vic_IdentificationStatus", "vic_TraffickingStatus"), ("vic_TypeOfLabourExploitation", "vic_ForcedLabourIndustry"),
     ("con_UseOfData", "con_Consent"), ("cns_Purposes", "x_rgw_ConsentPurposes"), ("prs_Languages", "prs_PrimaryLanguage"),
     ("x_rgw_ConsentRecipientCountries", "x_rgw_ConsentRecipientAgencies")],
)
def test_older_htcds_field_names_are_refused_naming_the_2_0_field(htcds: MappingAdapter, legacy: str, use: str) -> None:
    with pytest.raises(AdapterError) as info:
        htcds.to_shared(sample(COMPLETE) | {legacy: "x"})
    assert str(info.value).startswith(f"{legacy}: is not an HTCDS 2.0 field: use {use}")


@pytest.mark.parametrize(
    ("codes", "expected"),
    [(("hau", "eng"), ["hau", "eng"]), (("fre", None), ["fra"]), (("fra", "ger"), ["fra", "deu"]), (("ha", "yo"), ["hau", "yor"]),
     (("dje", "urh"), ["dje", "urh"]), (("Hausa", "Nigerian Pidgin"), ["hau", "pcm"]), (("bam", "ish"), ["bam", "ish"]),
     (("ijc", "its"), ["ijc", "its"]), (("mis: Bobo Madaré", None), [{"code": "mis", "name": "Bobo Madaré"}])],
)
def test_iso_639_2_languages_become_iso_639_3(htcds: MappingAdapter, codes: tuple[str, str | None], expected: list[Any]) -> None:
    rec = sample(COMPLETE) | {"prs_PrimaryLanguage": codes[0]}
    rec.pop("prs_SecondaryLanguage")
    if codes[1]:
        rec["prs_SecondaryLanguage"] = codes[1]
    p = htcds.to_shared(rec).payload
    assert p["person"]["languages"] == expected
    back = htcds.from_shared(p)
    first = expected[0]
    assert back["prs_PrimaryLanguage"] == (first if isinstance(first, str) else f"mis:{first['name']}")  # ISO 639-2/T = 639-3


def test_more_languages_and_several_citizenships(htcds: MappingAdapter) -> None:
    rec = sample(COMPLETE) | {"x_rgw_OtherLanguages": "hau;yor", "prs_Citizenship": "NG;NE"}
    result = htcds.to_shared(rec)
    assert result.payload["person"]["languages"] == ["eng", "pcm", "hau", "yor"]
    assert result.payload["person"]["nationality"] == "NG"
    assert any(d.local_field == "prs_Citizenship" and "one nationality" in d.reason for d in result.dropped)
    assert htcds.from_shared(result.payload)["x_rgw_OtherLanguages"] == ["hau", "yor"]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"vic_TypeOfExploitation": "ForcedLabour;ChildLabour"},
         [{"type": "forced_labour", "intended": False, "labour_sectors": ["accommodation_and_food_service_activities"]},
          {"type": "child_labour", "intended": False, "labour_sectors": ["accommodation_and_food_service_activities"]}]),
        ({"vic_TypeOfExploitation": ["SexualExploitation"], "x_rgw_IntendedExploitation": ["SexualExploitation", "ForcedLabour"],
          "vic_ForcedLabourIndustry": "A", "x_rgw_ExploitationCountries": ["Libya"]},
         [{"type": "sexual_exploitation", "intended": True, "countries": ["LY"]},
          {"type": "forced_labour", "intended": True, "labour_sectors": ["agriculture_forestry_and_fishing"], "countries": ["LY"]}]),
        ({"vic_TypeOfExploitation": ["ForcedBegging"], "vic_ForcedLabourIndustry": "Unknown", "x_rgw_LabourSectors": ["Begging"]},
         [{"type": "forced_begging", "intended": False, "labour_sectors": ["begging"]}]),
        ({"vic_TypeOfExploitation": "Unknown", "vic_ForcedLabourIndustry": "B_MiningAndQuarrying"},
         [{"type": "undetermined", "intended": False, "labour_sectors": ["mining_and_quarrying"]}]),
        ({"vic_TypeOfExploitation": ["Surrogacy", "ForcedAdoption", "ForcedMilitaryByNonStateActors"], "vic_ForcedLabourIndustry": "U"},
         [{"type": t, "intended": False, "labour_sectors": ["activities_of_extraterritorial_organisations_and_bodies"]}
          for t in ("surrogacy", "forced_adoption", "forced_military_by_non_state_actors")]),
    ],
)
def test_exploitation_from_the_flat_fields(htcds: MappingAdapter, change: dict[str, Any], expected: list[Any]) -> None:
    result = htcds.to_shared(sample(COMPLETE) | change)
    assert result.payload["exploitation"] == expected
    assert htcds.to_shared(htcds.from_shared(result.payload), result.payload["purposes"]).payload == result.payload


def test_item_by_item_exploitation_is_written_only_when_the_flat_fields_cannot_say_it(htcds: MappingAdapter) -> None:
    flat = htcds.from_shared(htcds.to_shared(sample(COMPLETE)).payload)
    assert "x_rgw_Exploitation" not in flat
    detailed = htcds.from_shared(load_example("referral.request", "all_purposes", "2"))
    assert detailed["vic_TypeOfExploitation"] == ["SexualExploitation", "DomesticServitude"]
    assert len(detailed["x_rgw_Exploitation"]) == 3
    with pytest.raises(UnmappableValueError, match=r"^vic_TypeOfExploitation: disagrees with x_rgw_Exploitation"):
        htcds.to_shared(detailed | {"vic_TypeOfExploitation": ["ForcedLabour"]})
    with pytest.raises(UnmappableValueError, match=r"^x_rgw_ExploitationCountries: disagrees with x_rgw_Exploitation"):
        htcds.to_shared(detailed | {"x_rgw_ExploitationCountries": ["ML"]})


@pytest.mark.parametrize(
    ("reason", "purposes"),
    [("AdditionalServicesRequired", ["assistance"]), ("MigrationOrChangeOfLocation", ["assisted_return"]),
     ("Other", ["assistance", "assisted_return"]), ("Migration or Change of Location", ["assisted_return"])],
)
def test_reason_for_outgoing_referral(htcds: MappingAdapter, reason: str, purposes: list[str]) -> None:
    rec = sample(COMPLETE) | {"cas_ReasonForOutgoingReferral": reason, "x_rgw_ConsentPurposes": ["Assistance", "AssistedReturn"]}
    assert htcds.to_shared(rec).payload["purposes"] == purposes  # "Other": every consented purpose


def test_con_consent(htcds: MappingAdapter) -> None:
    with pytest.raises(UnmappableValueError, match=r"^con_Consent: is false"):
        htcds.to_shared(sample(COMPLETE) | {"con_Consent": False})
    with pytest.raises(UnmappableValueError, match=r"^con_Consent: must be a checkbox value"):
        htcds.to_shared(sample(COMPLETE) | {"con_Consent": "perhaps"})
    assert htcds.to_shared(sample(COMPLETE) | {"con_Consent": "true"}).payload["consent"]["decision_maker"] == "self"


def test_snake_case_of_the_standard_values() -> None:
    assert standard.snake_case("ForcedMilitaryByNonStateActors") == "forced_military_by_non_state_actors"
    assert standard.snake_case("ThreatsLawEnforcement") == "threats_law_enforcement"
    assert standard.snake_case("HealthServiceOrganisation") == "health_service_organisation"
    assert standard.snake_case("A_AgricultureForestryAndFishing") == "agriculture_forestry_and_fishing"
    assert standard.snake_case("NGO") == "ngo"


@settings(max_examples=scaled(100), deadline=None)
@given(st.lists(st.sampled_from(standard.fields()["vic_TypeOfExploitation"].values), min_size=1, max_size=5, unique=True),
       st.lists(st.sampled_from(standard.fields()["vic_MethodsOfControl"].values), min_size=1, max_size=6, unique=True),
       st.sampled_from(standard.fields()["vic_ForcedLabourIndustry"].values),
       st.sampled_from(standard.fields()["org_Type"].values), st.sampled_from(standard.fields()["vic_TraffickingStatus"].values))
def test_htcds_values_round_trip(types: list[str], methods: list[str], industry: str, org: str, status: str) -> None:
    """Any combination of HTCDS 2.0 values goes out and comes back as the same HTCDS values."""
    htcds = get_adapter("htcds")
    rec = sample(COMPLETE) | {"vic_TypeOfExploitation": types, "vic_MethodsOfControl": methods, "vic_ForcedLabourIndustry": industry,
                              "org_Type": org, "vic_TraffickingStatus": status, "x_rgw_CooperationDecision": "Agrees",
                              "x_rgw_CooperationDecidedOn": "2026-02-15",
                              "x_rgw_ConsentPurposes": ["Assistance", "CriminalJusticeCooperation"]}
    p = htcds.to_shared(rec, ["assistance", "criminal_justice_cooperation"]).payload
    back = htcds.from_shared(p)
    assert (back["vic_TypeOfExploitation"], back["vic_MethodsOfControl"], back["org_Type"], back["vic_TraffickingStatus"]) == (
        types, methods, org, status)
    assert back["vic_ForcedLabourIndustry"] == industry


# --- spelling, missing values, errors --------------------------------------------------


@pytest.mark.parametrize(
    ("spelling", "code"),
    [("NG", "NG"), ("ng", "NG"), ("Nigeria", "NG"), ("NIGERIA", "NG"), ("Nigerian", "NG"), ("NGA", "NG"),
     ("Niger", "NE"), ("Nigerien", "NE"), ("Benin", "BJ"), ("Mali", "ML"), ("Côte d'Ivoire", "CI"), ("Burkina Faso", "BF")],
)
def test_citizenship_spellings(htcds: MappingAdapter, spelling: str, code: str) -> None:
    assert htcds.to_shared(sample(ADULT) | {"prs_Citizenship": [spelling]}).payload["person"]["nationality"] == code


@pytest.mark.parametrize(
    ("spelling", "code"),
    [("Feminine", "female"), ("FEMININE", "female"), ("Masculine", "male"), ("TransgenderFeminine", "other"),
     ("Transgender Masculine", "other"), ("NonConforming", "other"), ("Non-Conforming", "other"),
     ("NonSpecifiedUnknown", "unknown"), ("Not Specified/Unknown", "unknown"), ("Female", "female"), ("", "unknown")],
)
def test_gender_picklist(htcds: MappingAdapter, spelling: str, code: str) -> None:
    assert htcds.to_shared(sample(ADULT) | {"prs_Gender": spelling}).payload["person"]["sex"] == code


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        ({"vic_TypeOfExploitation": ["SexualExploitation", "Fishing"]}, UnmappableValueError,
         "vic_TypeOfExploitation[1]: 'Fishing' is not in the code list for exploitation type"),
        ({"vic_ForcedLabourIndustry": "Piracy"}, UnmappableValueError,
         "vic_ForcedLabourIndustry: 'Piracy' is not in the code list for forced labour industry"),
        ({"vic_MethodsOfControl": ["DebtBondage", "Hypnosis"]}, UnmappableValueError,
         "vic_MethodsOfControl[1]: 'Hypnosis' is not in the code list for method of control"),
        ({"prs_Gender": "X"}, UnmappableValueError, "prs_Gender: 'X' is not in the code list for sex"),
        ({"prs_Citizenship": ["NG", "Atlantis"]}, UnmappableValueError, "prs_Citizenship[1]: 'Atlantis' is not in the code list for country"),
        ({"prs_SecondaryLanguage": "Xyzzy"}, UnmappableValueError, "prs_SecondaryLanguage: is not an ISO 639 language code"),
        ({"cas_Status": "Pending"}, UnmappableValueError, "cas_Status: 'Pending' is not in the HTCDS 2.0 picklist for cas_Status"),
        ({"cas_ReasonForOutgoingReferral": "Holiday"}, UnmappableValueError,
         "cas_ReasonForOutgoingReferral: 'Holiday' is not in the HTCDS 2.0 picklist"),
        ({"x_rgw_ReferralSource": "Aliens"}, UnmappableValueError, "x_rgw_ReferralSource: 'Aliens' is not in the code list for referral source"),
        ({"vic_TraffickingStatus": "Unknown"}, MissingFieldError, "vic_TraffickingStatus: is required and has no value"),
        ({"x_rgw_Age": 15, "x_rgw_AgeBand": "Unknown"}, UnmappableValueError, "x_rgw_IsMinor: contradicts x_rgw_Age"),
        ({"x_rgw_IdentificationDate": "2026-02-31"}, UnmappableValueError, "x_rgw_IdentificationDate: is not a calendar date"),
        ({"x_rgw_PlaceOfOriginCountry": "Unknown"}, MissingFieldError,
         "x_rgw_PlaceOfOriginCountry: is required when any of x_rgw_PlaceOfOriginCountry"),
        ({"x_rgw_InterpreterLanguage": "hau"}, MissingFieldError, "x_rgw_InterpreterNeeded: is required when any of"),
        ({"x_rgw_BestInterestsStatus": "Finished", "x_rgw_CareStatus": "Separated", "x_rgw_IsMinor": "Yes"}, UnmappableValueError,
         "x_rgw_BestInterestsStatus: 'Finished' is not in the code list for best-interests status"),
        ({"x_rgw_MedicalCategory": ["Injury"]}, MissingFieldError, "x_rgw_MedicalUrgency: must be other than None"),
        ({"x_rgw_InterpreterNeeded": "Yes"}, MissingFieldError, "x_rgw_InterpreterLanguage: is required when x_rgw_InterpreterNeeded is Yes"),
        ({"x_rgw_CareStatus": "Separated", "x_rgw_IsMinor": "Yes", "x_rgw_Age": 16, "x_rgw_BestInterestsStatus": "Completed",
          "x_rgw_ConsentDecisionMaker": "ParentGuardian"},
         MissingFieldError, "x_rgw_BestInterestsOutcome: is required (and not Pending)"),
        ({"x_rgw_CareStatus": "Separated", "x_rgw_IsMinor": "Yes", "x_rgw_Age": 16, "x_rgw_BestInterestsStatus": "InProgress",
          "x_rgw_BestInterestsDecidedBy": "ML-DNPEF", "x_rgw_ConsentDecisionMaker": "ParentGuardian"}, UnmappableValueError,
         "x_rgw_BestInterestsDecidedBy: is given only once x_rgw_BestInterestsStatus is Completed"),
        ({"colour": "blue"}, AdapterError, "colour: is not a field of the local format"),
        # the hint is the standard's own way of writing a date; a year-first date is not told "year first"
        ({"prs_Birthdate": "09/04/2003"}, AdapterError, "prs_Birthdate: must be written as YYYY-MM-DD"),
        ({"prs_Birthdate": "2003-4-9"}, AdapterError, "prs_Birthdate: must be written as YYYY-MM-DD"),
        ({"x_rgw_ConsentGivenAt": "12/02/2026 09:00"}, AdapterError,
         "x_rgw_ConsentGivenAt: must be written as YYYY-MM-DD[THH:MM[:SS]][Z|+HH:MM]"),
    ],
)
def test_errors_name_the_local_field_and_why(htcds: MappingAdapter, change: dict[str, Any], error: type, message: str) -> None:
    rec = sample(ADULT) | change
    rec["x_rgw_ConsentPurposes"] = rec["x_rgw_ConsentPurposes"] + ["Assistance", "CriminalJusticeCooperation"]
    rec |= {"x_rgw_CooperationDecision": "Agrees", "x_rgw_CooperationDecidedOn": "2026-03-05"}  # so that no field is dropped
    with pytest.raises(AdapterError) as info:
        htcds.to_shared(rec)
    # every problem of the record is reported at once: the one this change makes is among them
    found = [e for e in getattr(info.value, "errors", (info.value,)) if str(e).startswith(message)]
    assert found, str(info.value)
    assert isinstance(found[0], error)


def test_consent_rules(htcds: MappingAdapter) -> None:
    minor = sample(MINOR) | {"x_rgw_ConsentDecisionMaker": "Self"}
    with pytest.raises(UnmappableValueError, match=r"^x_rgw_ConsentDecisionMaker: a minor cannot consent alone"):
        htcds.to_shared(minor)
    with pytest.raises(PurposesError, match=r"^x_rgw_ConsentRecipients: 'assistance' not consented"):
        htcds.to_shared(sample(ADULT), ["assistance"])


SECRET = "Zyxwvutsrqname"


@pytest.mark.parametrize(
    "breakage",
    [
        {"prs_Gender": "???x"},
        {"prs_Birthdate": "2001-13-45"},
        {"prs_Citizenship": ["Wakanda"]},
        {"prs_PrimaryLanguage": SECRET},
        {"x_rgw_FamilyContacts": [{"Relationship": "Mother", "LastName": SECRET, "FirstName": SECRET, "Phone": SECRET}]},
        {"x_rgw_PlaceOfOriginCity": SECRET, "x_rgw_PlaceOfOriginCountry": "Unknown"},
        {"x_rgw_GuardianFirstName": SECRET, "x_rgw_GuardianRole": "Parent"},
        {"prs_FirstName": SECRET + " " * 300},
        {"con_Consent": SECRET},
        {"x_rgw_ConsentGivenAt": "2026-99-99"},
    ],
)
def test_errors_never_contain_a_name_from_the_record(htcds: MappingAdapter, breakage: dict[str, Any]) -> None:
    rec = sample(MINOR) | {"prs_SecondName": SECRET, "prs_FirstName": SECRET, "prs_MiddleName": SECRET} | breakage
    with pytest.raises(AdapterError) as info:
        htcds.to_shared(rec)
    assert_hides(str(info.value), SECRET)


def test_from_shared_writes_htcds_2_0_spellings(htcds: MappingAdapter) -> None:
    local = htcds.from_shared(load_example("referral.request", "all_purposes", "2"))
    assert local["prs_Gender"] == "Feminine" and local["prs_Citizenship"] == ["NG"]
    assert local["vic_TraffickingStatus"] == "ActualVictimOfTrafficking"
    assert local["prs_PrimaryLanguage"] == "hau"
    assert local["con_Consent"] is True


# --- fuzzing ---------------------------------------------------------------------------


def _dates(low: date = date(1930, 1, 1), high: date = date(2035, 12, 31)) -> st.SearchStrategy[str]:
    return st.dates(low, high).map(lambda d: d.isoformat())


_TIMES = st.tuples(st.integers(0, 23), st.integers(0, 59), st.sampled_from(["", "Z", "+01:00", "-05:30"]))

LOCAL_SCHEMA = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
OVERRIDES = {
    "date": mostly(_dates(), st.sampled_from(["Unknown", "", "2020-02-31", "1899-01-01"])),
    "datetime": mostly(
        st.one_of(_dates(), st.tuples(_dates(), _TIMES).map(lambda t: f"{t[0]}T{t[1][0]:02d}:{t[1][1]:02d}{t[1][2]}")),
        st.sampled_from(["Unknown", "2026-12-25T24:00", "2026-12-25T10:00+15:00"]),
    ),
}


@settings(max_examples=scaled(300), deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_fuzz_valid_payload_or_adapter_error(data: st.DataObject) -> None:
    htcds = get_adapter("htcds")
    assert isinstance(htcds, MappingAdapter)
    fuzz_local_record(data, htcds, LOCAL_SCHEMA, OVERRIDES, minor="x_rgw_IsMinor", birth="prs_Birthdate",
                      birth_dates=_dates(date(1940, 1, 1), date(2025, 12, 31)),
                      drop=("cas_ReasonForOutgoingReferral", "x_rgw_Purposes", "x_rgw_Exploitation"),
                      defaults={"x_rgw_ConsentRecipientAgencies": ["NG-NAPTIP"]})


@settings(max_examples=scaled(200), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_fuzz_good_spellings_map_and_round_trip(data: st.DataObject) -> None:
    """Samples with their coded fields re-drawn from the code lists (any case): valid or a named error."""
    htcds = get_adapter("htcds")
    assert isinstance(htcds, MappingAdapter)
    fuzz_respelled_sample(data, htcds, LOCAL_SCHEMA, [p.stem for p in SAMPLES], sample, minor="x_rgw_IsMinor",
                          refusable={"x_rgw_Purposes", "cas_ReasonForOutgoingReferral", "x_rgw_ConsentRecipients", "x_rgw_IsMinor",
                                     "x_rgw_ConsentDecisionMaker", "x_rgw_CareStatus", "x_rgw_CooperationDecision",
                                     "x_rgw_MedicalUrgency", "x_rgw_InterpreterLanguage", "x_rgw_BestInterestsOutcome",
                                     "x_rgw_BestInterestsDecidedOn", "x_rgw_BestInterestsDecidedBy", "x_rgw_BestInterestsStatus",
                                     "x_rgw_GuardianRole", "x_rgw_InterpreterNeeded", "x_rgw_CooperationDecidedOn"})


@settings(max_examples=scaled(150), deadline=None)
@given(
    nationality=st.sampled_from(["Nigerian", "Nigeria", "NG", "Niger", "Benin", "Mali", "Chad", "Ghana"]),
    case=st.sampled_from([str.upper, str.lower, str.title, lambda s: s]),
    age=st.integers(0, 90),
    days=st.integers(0, 3000),
    purposes=st.lists(st.sampled_from(["safety_assessment", "family_tracing", "assisted_return"]), min_size=1, unique=True),
)
def test_fuzz_sample_variants_always_map(nationality: str, case: Any, age: int, days: int, purposes: list[str]) -> None:
    htcds = get_adapter("htcds")
    rec = sample(MINOR)
    del rec["prs_Birthdate"]
    rec |= {"prs_Citizenship": [case(nationality)], "x_rgw_Age": age, "x_rgw_IsMinor": "Yes" if age < 18 else "No"}
    rec["x_rgw_ConsentGivenAt"] = (date(2026, 1, 1) + timedelta(days=days)).isoformat()
    result = htcds.to_shared(rec, purposes)
    assert find_violations("referral.request", result.payload) == []
    assert result.payload["person"]["age"]["years"] == age


# --- through the API -------------------------------------------------------------------


async def test_an_htcds_record_goes_out_as_v2_and_comes_back_as_htcds(tmp_path: Path) -> None:
    from testkit.gateway_pair import NIGERIA, eventually
    from tests.test_api_world import api_pair

    htcds = get_adapter("htcds")
    record = sample(COMPLETE) | {"x_rgw_ConsentPurposes": ["Assistance", "FamilyTracing"]}
    async with api_pair(tmp_path) as (ne, ng):
        body = {"recipient": NIGERIA, "local_case_id": "NE-HTCDS-2026-0001", "format": "htcds", "record": record}
        status, queued = await ne.call("POST", "/referrals", json=body)
        assert status == 202, queued
        assert {"cco_CaseComment", "prs_MobilePhone"} <= {d["local_field"] for d in queued["dropped"]}
        mid = queued["message_id"]

        async def arrived() -> bool:
            return (await ng.call("GET", f"/inbox/{mid}", params={"purpose": "assistance"}))[0] == 200
        await eventually(arrived)
        status, shared = await ng.call("GET", f"/inbox/{mid}", params={"purpose": "assistance"})
        assert shared["header"]["schema"] == "2"
        assert shared["payload"] == htcds.to_shared(record, None).payload
        status, local = await ng.call("GET", f"/inbox/{mid}", params={"purpose": "assistance", "format": "htcds"})
        assert status == 200 and local["format"] == "htcds"
        back = local["record"]
        for field in ("org_Type", "prs_Gender", "vic_TraffickingStatus", "vic_TypeOfExploitation", "vic_ForcedLabourIndustry",
                      "prs_Citizenship", "prs_PrimaryLanguage", "cas_ReasonForOutgoingReferral"):
            assert back[field] == record[field], field


@pytest.mark.parametrize("name", sorted(V2_TARGETS))
def test_every_v2_code_is_written_back_in_a_spelling_that_reads_back(htcds: MappingAdapter, name: str) -> None:
    """No code is written as a missing-value spelling ("Unknown", "None") unless missing means that code."""
    codes = htcds.table.code_lists[name]
    means_missing = {"sex": "unknown", "age_band": "unknown", "exploitation_type": "undetermined",
                     "accompanying_child": "unknown"}.get(V2_TARGETS[name][0])
    for code in codes.codes.values():
        spelled = codes.to_local(code)
        if htcds.table.is_missing(spelled):
            assert code == means_missing, (code, spelled)
        else:
            assert codes.to_shared(spelled) == code


def test_semicolons_split_multiselect_fields_only(htcds: MappingAdapter) -> None:
    rec = sample(MINOR) | {"x_rgw_CareStatus": "Separated", "x_rgw_GuardianRole": "Parent",
                           "x_rgw_GuardianFirstName": "Awa;Binta", "x_rgw_ConsentRecipientAgencies": "NG-NAPTIP;NG-IOM"}
    p = htcds.to_shared(rec).payload
    assert p["child_protection"]["guardian"]["names"] == {"given": "Awa;Binta"}
    assert [r["agency"] for r in p["consent"]["recipients"]] == ["NG-NAPTIP", "NG-IOM"]
