"""gateway.schema_versions: v1 → v2 upgrade, v2 → v1 downgrade, negotiation."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway import schema
from gateway.schema_versions import (
    EXPLOITATION_TYPE_V1_TO_V2,
    LABOUR_SECTOR_V1_TO_V2,
    METHOD_OF_CONTROL_V1_TO_V2,
    ORGANISATION_TYPE_V1_TO_V2,
    V2_ONLY_ORGANISATION_TYPES,
    V2_ONLY_PURPOSES,
    V2_ONLY_REFERRAL_SOURCES,
    DowngradeError,
    convert,
    Dropped,
    downgrade_to_v1,
    for_adapter,
    negotiate,
    normalise_to_v2,
    upgrade_to_v2,
)
from tests.support.hypothesis_profiles import scaled

CANARY = "Zebulon Quarantinovic"


def _common(version: str) -> dict[str, Any]:
    return json.loads((schema.version_dir(version) / "common.schema.json").read_text(encoding="utf-8"))["$defs"]


V1, V2 = _common("1"), _common("2")


def _examples(version: str) -> list[tuple[str, str, dict[str, Any]]]:
    out = []
    for name in schema.example_names(version):
        message_type = schema.example_message_type(name)
        out.append((name, message_type, schema.load_example(message_type, name[len(message_type) + 1:] or None,
                                                            version)))
    return out


# --- code tables ----------------------------------------------------------------------------


@pytest.mark.parametrize(("definition", "table"), [
    ("organisation_type", ORGANISATION_TYPE_V1_TO_V2),
    ("exploitation_type", EXPLOITATION_TYPE_V1_TO_V2),
    ("labour_sector", LABOUR_SECTOR_V1_TO_V2),
    ("method_of_control", METHOD_OF_CONTROL_V1_TO_V2),
])
def test_every_v1_code_has_a_v2_code(definition: str, table: dict[str, str]) -> None:
    for code in V1[definition]["enum"]:
        assert table.get(code, code) in V2[definition]["enum"], (definition, code)
    assert set(table) <= set(V1[definition]["enum"])


def test_v2_only_codes_are_not_v1_codes() -> None:
    assert not V2_ONLY_ORGANISATION_TYPES & set(V1["organisation_type"]["enum"])
    assert V2_ONLY_ORGANISATION_TYPES <= set(V2["organisation_type"]["enum"])
    assert set(V2["referral_source"]["enum"]) - set(V1["referral_source"]["enum"]) == V2_ONLY_REFERRAL_SOURCES
    assert set(V2["purpose"]["enum"]) - set(V1["purpose"]["enum"]) == V2_ONLY_PURPOSES


# --- examples -------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "message_type", "payload"), _examples("1"), ids=lambda x: x if isinstance(x, str) else "")
def test_every_v1_example_upgrades_to_a_valid_v2_payload(name: str, message_type: str, payload: dict) -> None:
    upgraded, dropped = upgrade_to_v2(payload, message_type, recipient="NG-NAPTIP", recipient_country="NG")
    assert upgraded["schema_version"] == "2"
    assert schema.find_violations(message_type, upgraded) == []
    if not dropped:  # nothing left out: the way back gives the v1 payload unchanged
        assert downgrade_to_v1(upgraded, message_type, recipient="NG-NAPTIP") == payload


@pytest.mark.parametrize(("name", "message_type", "payload"), _examples("2"), ids=lambda x: x if isinstance(x, str) else "")
def test_every_v2_example_downgrades_or_names_what_v1_cannot_carry(name: str, message_type: str, payload: dict) -> None:
    try:
        downgraded = downgrade_to_v1(payload, message_type, recipient="NG-NAPTIP")
    except DowngradeError as exc:
        assert exc.fields and all(f.path.startswith("$") and f.reason for f in exc.fields)
        return
    assert "schema_version" not in downgraded
    assert schema.find_violations(message_type, downgraded) == []
    assert upgrade_to_v2(downgraded, message_type, recipient="NG-NAPTIP", recipient_country="NG").payload == payload


def test_the_upgrade_keeps_the_input_unchanged() -> None:
    payload = schema.load_example("referral.request", "all_purposes")
    before = copy.deepcopy(payload)
    upgrade_to_v2(payload, "referral.request", recipient="NG-NAPTIP", recipient_country="NG")
    assert payload == before


def test_a_v2_payload_upgrades_to_itself_and_a_v1_payload_downgrades_to_itself() -> None:
    v2 = schema.load_example("referral.request", "minor_guardian", "2")
    assert upgrade_to_v2(v2, "referral.request") == (v2, ())
    v1 = schema.load_example("referral.request")
    assert downgrade_to_v1(v1, "referral.request") == v1


# --- referral.request, field by field ----------------------------------------------------------


def test_upgrade_maps_renamed_codes() -> None:
    payload = schema.load_example("referral.request", "all_purposes")
    payload["identification"]["identified_by"] = "health_service"
    payload["exploitation"] = [{"type": "slavery_servitude", "intended": False,
                                "labour_sectors": ["agriculture", "aquafarming", "domestic_work", "begging"]}]
    payload["methods_of_control"] = ["threats", "psychoactive_substances"]
    upgraded = upgrade_to_v2(payload, "referral.request", recipient="NG-NAPTIP", recipient_country="NG").payload
    assert upgraded["identification"] == {**payload["identification"], "status": "actual_victim_of_trafficking",
                                          "identified_by": "health_service_organisation"}
    assert upgraded["exploitation"] == [{"type": "servitude", "intended": False, "labour_sectors": [
        "agriculture_forestry_and_fishing", "activities_of_households_as_employers", "begging"]}]
    assert upgraded["person"]["languages"] == ["hau", "eng"]
    assert upgraded["person"]["accompanying_children"] == [
        {"age_band": "unknown", "documents": "unknown", "needs_escort": True, "relationship": "child"}]
    assert upgraded["needs"] == {"services": payload["needs"]}


def test_upgrade_drops_what_v2_keeps_for_criminal_justice_and_says_why() -> None:
    payload = schema.load_example("referral.request", "all_purposes")  # v1: narrative with assistance
    payload["narrative"] = f"{CANARY} told the officer."
    upgraded, dropped = upgrade_to_v2(payload, "referral.request", recipient="NG-NAPTIP", recipient_country="NG")
    paths = {d.path for d in dropped}
    assert {"$.acts", "$.means", "$.methods_of_control", "$.narrative"} <= paths
    assert not {"acts", "means", "methods_of_control", "narrative"} & set(upgraded)
    assert all("criminal_justice_cooperation" in d.reason for d in dropped if d.path == "$.narrative")
    assert CANARY not in repr(dropped)


@pytest.mark.parametrize(("consent", "recipients"), [
    ({"recipient_countries": ["NG"]}, [{"agency": "NG-NAPTIP", "purposes": ["safety_assessment", "family_tracing"]}]),
    ({"recipient_agencies": ["NG-IOM"]}, [{"agency": "NG-IOM", "purposes": ["safety_assessment", "family_tracing"]}]),
    ({"recipient_countries": ["NG"], "recipient_agencies": ["NG-IOM"]},
     [{"agency": "NG-IOM", "purposes": ["safety_assessment", "family_tracing"]},
      {"agency": "NG-NAPTIP", "purposes": ["safety_assessment", "family_tracing"]}]),
])
def test_v1_consent_becomes_a_consent_for_the_agencies_it_covers(consent: dict, recipients: list) -> None:
    payload = schema.load_example("referral.request")
    del payload["consent"]["recipient_countries"]
    payload["consent"].update(consent)
    upgraded = upgrade_to_v2(payload, "referral.request", recipient="NG-NAPTIP", recipient_country="NG").payload
    assert upgraded["consent"]["recipients"] == recipients
    assert "recipient_countries" not in upgraded["consent"] and "purposes" not in upgraded["consent"]


def test_a_v1_consent_for_a_country_does_not_reach_another_country_s_agency() -> None:
    payload = schema.load_example("referral.request")  # consent: recipient_countries NG
    upgraded = upgrade_to_v2(payload, "referral.request", recipient="NE-IOM", recipient_country="NE").payload
    assert "recipients" not in upgraded["consent"]
    assert ("$.consent.recipients", "required") in {(v.path, v.rule)
                                                    for v in schema.find_violations("referral.request", upgraded)}


def test_downgrade_refuses_what_v1_cannot_carry_without_quoting_values() -> None:
    payload = schema.load_example("referral.request", "minor_guardian", "2")
    payload["child_protection"]["guardian"]["names"]["given"] = CANARY
    payload["person"]["languages"] = [{"code": "mis", "name": CANARY}]
    with pytest.raises(DowngradeError) as info:
        downgrade_to_v1(payload, "referral.request", recipient="NG-NAPTIP")
    assert set(info.value.fields) >= {
        Dropped("$.child_protection", "v1 has no child_protection"),
        Dropped("$.person.languages[0]", "a language without an ISO 639 code has no v1 form"),
        Dropped("$.identification.referral_source", "v1 has no code for juvenile_judge"),
        Dropped("$.needs.medical_urgency", "v1 needs are a list of services only"),
    }
    assert info.value.code == "not_representable_in_v1"
    assert CANARY not in str(info.value)


def test_downgrade_of_per_agency_consent_needs_the_recipient() -> None:
    payload = schema.load_example("referral.request", "minor_guardian", "2")
    for drop in ("child_protection", "needs"):
        del payload[drop]
    payload["identification"]["referral_source"] = "state_social_services"
    with pytest.raises(DowngradeError) as info:
        downgrade_to_v1(payload, "referral.request")
    assert [f.path for f in info.value.fields] == ["$.consent.recipients"]
    # For one recipient: exactly what was granted to it, never what another agency got.
    v1 = downgrade_to_v1(payload, "referral.request", recipient="NG-IOM")
    assert v1["consent"]["recipient_agencies"] == ["NG-IOM"]
    assert v1["consent"]["purposes"] == ["assisted_return"]


def test_downgrade_narrows_a_consent_to_v1_purposes() -> None:
    payload = schema.load_example("referral.request", "safety_assessment_only", "2")
    payload["consent"]["recipients"][0]["purposes"] = ["safety_assessment", "criminal_justice_cooperation"]
    v1 = downgrade_to_v1(payload, "referral.request", recipient="NG-NAPTIP")
    assert v1["consent"]["purposes"] == ["safety_assessment"]
    assert schema.find_violations("referral.request", v1) == []


def test_downgrade_adds_up_several_entries_for_one_agency() -> None:
    """docs/schema.md: several entries for one agency add up. Two entries for the recipient
    (one per purpose) are one grant, not "purposes differ by recipient agency", and the v1
    consent names the agency once (recipient_agencies is uniqueItems)."""
    payload = schema.load_example("referral.request", "safety_assessment_only", "2")
    payload["consent"]["recipients"] = [{"agency": "NG-NAPTIP", "purposes": ["safety_assessment"]},
                                        {"agency": "NG-NAPTIP", "purposes": ["assistance"]}]
    assert schema.find_violations("referral.request", payload) == []
    for recipient in ("NG-NAPTIP", None):
        v1 = downgrade_to_v1(payload, "referral.request", recipient=recipient)
        assert v1["consent"]["recipient_agencies"] == ["NG-NAPTIP"]
        assert sorted(v1["consent"]["purposes"]) == ["assistance", "safety_assessment"]
        assert schema.find_violations("referral.request", v1) == []


@pytest.mark.parametrize(("minor", "expected"), [(True, "child_soldiering"), (False, "other")])
def test_forced_military_goes_back_to_child_soldiering_for_a_child_only(minor: bool, expected: str) -> None:
    payload = schema.load_example("referral.request", "interpreter_uncoded_language", "2")
    payload["person"]["languages"] = ["bam"]
    payload["needs"] = {"services": ["medical"]}
    payload["identification"]["referral_source"] = "ngo"
    payload["identification"]["identified_by"] = "ngo"
    payload["person"]["age"] = {"minor": minor, "band": "9-17" if minor else "24-26"}
    payload["consent"]["decision_maker"] = "parent_guardian" if minor else "self"
    payload["consent"]["explained_in"] = "bam"
    payload["exploitation"] = [{"type": "forced_military_by_non_state_actors", "intended": False}]
    v1 = downgrade_to_v1(payload, "referral.request", recipient="ML-DNPEF")
    assert v1["exploitation"] == [{"type": expected, "intended": False}]
    assert v1["person"]["languages"] == ["bm"] and v1["consent"]["explained_in"] == "bm"
    assert schema.find_violations("referral.request", v1) == []


def test_a_response_accepting_a_v2_only_purpose_is_refused_by_name() -> None:
    """A v2 answer accepting criminal_justice_cooperation cannot go to a v1-only agency:
    the downgrade says which field (not_representable_in_v1), instead of handing on a v1
    payload that fails its schema with an enum error."""
    payload = schema.load_example("referral.response", None, "2")
    payload["accepted_purposes"] = ["assistance", "criminal_justice_cooperation"]
    assert schema.find_violations("referral.response", payload) == []
    with pytest.raises(DowngradeError) as info:
        downgrade_to_v1(payload, "referral.response")
    assert [f.path for f in info.value.fields] == ["$.accepted_purposes"]


def _v1_able_request() -> dict[str, Any]:
    payload = schema.load_example("referral.request", "interpreter_uncoded_language", "2")
    payload["person"]["languages"] = ["bam"]
    payload["needs"] = {"services": ["medical"]}
    payload["identification"]["referral_source"] = "ngo"
    payload["identification"]["identified_by"] = "ngo"
    payload["consent"]["explained_in"] = "bam"
    return payload


def test_a_downgrade_reports_what_it_leaves_out_or_coarsens() -> None:
    """v1 counts accompanying children and has coarser codes: the details and the exact
    codes are lost on the way to a v1 recipient, so the conversion says so (the 202's
    ``converted``), as an upgrade does; paths and codes only."""
    payload = _v1_able_request()
    payload["person"]["accompanying_children"] = [
        {"age_band": "0-8", "documents": "missing", "needs_escort": True, "relationship": "child"}]
    payload["exploitation"] = [{"type": "child_labour", "intended": False,
                                "labour_sectors": ["education"]}]
    assert schema.find_violations("referral.request", payload) == []
    converted = convert(payload, "referral.request", "1", recipient="ML-DNPEF")
    assert schema.find_violations("referral.request", converted.payload) == []
    assert converted.payload["person"]["accompanying_children"] == 1
    paths = {d.path for d in converted.dropped}
    assert paths == {"$.person.accompanying_children", "$.exploitation[0].type", "$.exploitation[0].labour_sectors"}
    assert all("Testfixture" not in d.reason for d in converted.dropped)
    # What v1 carries as it is: nothing to report (the v1 default child comes back the same).
    plain = _v1_able_request()
    plain["person"]["accompanying_children"] = [
        {"age_band": "unknown", "documents": "unknown", "needs_escort": True, "relationship": "child"}]
    assert convert(plain, "referral.request", "1", recipient="ML-DNPEF").dropped == ()


def test_return_plan_and_response_keep_v2_only_data_from_a_v1_recipient() -> None:
    with pytest.raises(DowngradeError, match=r"\$\.child_protection"):
        downgrade_to_v1(schema.load_example("return.plan", None, "2"), "return.plan")
    with pytest.raises(DowngradeError, match=r"\$\.best_interests"):
        downgrade_to_v1(schema.load_example("referral.response", "best_interests", "2"), "referral.response")


# --- properties -----------------------------------------------------------------------------

V1_LANGUAGES = ["ha", "fr", "en", "yo", "bm", "ff", "ar", "pcm", "dje", "ish", "urh", "ijc", "its", "emk"]


@settings(max_examples=scaled(100), deadline=None)
@given(
    languages=st.lists(st.sampled_from(V1_LANGUAGES), min_size=1, max_size=5, unique=True),
    children=st.integers(0, 20),
    methods=st.lists(st.sampled_from([m for m in V1["method_of_control"]["enum"]]), min_size=1, unique=True),
    exploitation=st.sampled_from([t for t in V1["exploitation_type"]["enum"]]),
    organisation=st.sampled_from(V1["organisation_type"]["enum"]),
)
def test_v1_to_v2_to_v1_round_trip(languages, children, methods, exploitation, organisation) -> None:
    # The payload as the v2 table allows it for reintegration_handover (no narrative etc.).
    payload = schema.load_example("referral.request", "all_purposes")
    payload["purposes"] = payload["consent"]["purposes"] = ["assistance", "reintegration_handover", "assisted_return"]
    for field in ("acts", "means", "methods_of_control", "narrative"):
        del payload[field]
    del payload["consent"]["recipient_countries"]
    payload["person"]["languages"] = languages
    payload["person"]["accompanying_children"] = children
    payload["identification"]["identified_by"] = organisation
    payload["exploitation"] = [{"type": exploitation, "intended": False}]
    sent = copy.deepcopy(payload)  # the expectations below edit payload
    upgraded, dropped = upgrade_to_v2(payload, "referral.request", recipient="NG-NAPTIP")
    assert dropped == ()
    assert schema.find_violations("referral.request", upgraded) == []
    # Without a recipient the consent keeps all its agencies (they share the purposes).
    back = downgrade_to_v1(upgraded, "referral.request")
    if children == 0:
        del payload["person"]["accompanying_children"]  # no entries: no member
    if exploitation == "child_soldiering":
        payload["exploitation"][0]["type"] = "other"  # the person is an adult: v2 forced military, v1 other
    assert back == payload
    assert schema.find_violations("referral.request", back) == []
    # methods_of_control travels only with criminal_justice_cooperation in v2: check the codes alone.
    with_methods = upgrade_to_v2({**sent, "methods_of_control": methods}, "referral.request")
    assert [d.path for d in with_methods.dropped] == ["$.methods_of_control"]
    assert with_methods.payload == upgraded


@settings(max_examples=scaled(100), deadline=None)
@given(ours=st.sets(st.sampled_from(["1", "2"]), min_size=1), theirs=st.sets(st.sampled_from(["1", "2"]), min_size=1))
def test_negotiation_is_the_highest_common_version(ours: set[str], theirs: set[str]) -> None:
    chosen = negotiate(ours, theirs)
    assert chosen in theirs
    if ours & theirs:
        assert chosen == max(ours & theirs)
    else:
        assert chosen == max(theirs)


def test_negotiation_ignores_versions_this_code_does_not_know() -> None:
    assert negotiate({"1", "2"}, {"1", "3"}) == "1"
    assert negotiate({"1"}, {"3"}) is None


class _V1Adapter:
    pass


class _V2Adapter:
    schema_version = "2"


def test_readers_normalise_and_adapters_get_their_version() -> None:
    v1 = schema.load_example("referral.request")
    assert normalise_to_v2(v1, "referral.request")["schema_version"] == "2"
    v2 = schema.load_example("referral.request", None, "2")
    assert for_adapter(_V2Adapter(), v2) == v2
    assert "schema_version" not in for_adapter(_V1Adapter(), v2, recipient="NG-NAPTIP")


def test_copy_json_is_a_deep_copy() -> None:
    from gateway.schema_versions import copy_json

    original = {"a": [1, {"b": "c"}], "d": {"e": [True, None, 1.5]}, "t": (1, [2])}
    copied = copy_json(original)
    assert copied == original
    copied["a"][1]["b"] = "changed"
    copied["d"]["e"].append(0)
    copied["t"][1].append(3)
    assert original == {"a": [1, {"b": "c"}], "d": {"e": [True, None, 1.5]}, "t": (1, [2])}


class _MappingLikeAdapter:
    reads_v2_payloads = True  # like adapters.engine.MappingAdapter: reads v2 itself, writes v1 forms


def test_an_adapter_that_reads_v2_gets_the_v2_payload_with_the_recipients_consent() -> None:
    v2 = schema.load_example("referral.request", "minor_guardian", "2")
    assert len(v2["consent"]["recipients"]) == 2
    given = for_adapter(_MappingLikeAdapter(), v2, recipient="NG-NAPTIP")
    assert given["child_protection"] == v2["child_protection"]  # not refused as a v1 downgrade would
    naptip = [e for e in v2["consent"]["recipients"] if e["agency"] == "NG-NAPTIP"]
    assert given["consent"]["recipients"] == naptip
    schema.validate_payload("referral.request", given)
    assert len(v2["consent"]["recipients"]) == 2  # the input is not changed
    assert for_adapter(_MappingLikeAdapter(), v2) == v2  # no recipient: the consent as it is
    v1 = schema.load_example("referral.request")
    assert for_adapter(_MappingLikeAdapter(), v1) == v1
