"""Minimal data, version 2: a referral.request carries only the subject fields its purposes allow.

Checked for every purpose and for random purpose sets and field sets, at both ends: the
schema itself, the send path (sealing refuses) and the receive path (opening a forged
envelope from a non-conforming sender refuses, without quoting a value).
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway import errors, schema
from gateway.canonical import canonical_bytes
from gateway.envelope import open_sealed, seal
from gateway.errors import Violation
from tests.support.hypothesis_profiles import scaled

from testkit.envelope_world import NOW, World, build_world, forge, header_for

PURPOSES = schema.PURPOSES_BY_VERSION["2"]
TABLE = schema.minimal_data_table("2")
RESTRICTED = sorted({f for fields in TABLE["allowed_by_purpose"].values() for f in fields})
CANARY = "Zebulon Quarantinovic"


def _full() -> dict[str, Any]:
    """Every restricted field at once: the all-purposes example, for a child with a named guardian."""
    payload = schema.load_example("referral.request", "all_purposes", "2")
    payload["child_protection"] = copy.deepcopy(
        schema.load_example("referral.request", "minor_guardian", "2")["child_protection"])
    payload["child_protection"]["guardian"]["names"] = {"given": CANARY, "family": "Testfixture"}
    payload["person"]["names"]["given"] = CANARY
    payload["narrative"] = f"Synthetic narrative naming {CANARY}."
    return payload


FULL = _full()


def _get(payload: dict[str, Any], dotted: str) -> Any:
    for part in dotted.split("."):
        payload = payload[part]
    return payload


def _delete(payload: dict[str, Any], dotted: str) -> None:
    *parents, last = dotted.split(".")
    for part in parents:
        payload = payload.get(part, {})
    payload.pop(last, None)


def _put(payload: dict[str, Any], dotted: str) -> None:
    *parents, last = dotted.split(".")
    for part in parents:
        payload = payload[part]
    if dotted == "person.age.date_of_birth":
        payload.pop("band", None)  # age carries exactly one of years, date_of_birth, band
    payload[last] = copy.deepcopy(_get(FULL, dotted))


def request(purposes: tuple[str, ...] | list[str], fields: set[str]) -> dict[str, Any]:
    """The full payload cut down to these purposes and these restricted fields.

    The person is a child (so child_protection may travel) consented for by a guardian with
    the child protection service; criminal_justice_cooperation always brings its decision.
    """
    payload = copy.deepcopy(FULL)
    payload["purposes"] = list(purposes)
    payload["consent"]["recipients"] = [{"agency": "NG-NAPTIP", "purposes": list(purposes)}]
    payload["consent"]["decision_maker"] = "guardian_with_child_protection"
    payload["person"]["age"] = {"minor": True, "band": "9-17"}
    for field in RESTRICTED:
        _delete(payload, field)
    wanted = set(fields) | ({"criminal_justice"} if "criminal_justice_cooperation" in purposes else set())
    for field in sorted(wanted):
        _put(payload, field)
    return payload


def forbidden(field: str) -> Violation:
    name = field.rsplit(".", 1)[-1]
    allowing = [p for p in PURPOSES if field in TABLE["allowed_by_purpose"][p]]
    return Violation(schema.json_path(field.split(".")), "false",
                     f"property '{name}' is not allowed: {field} is only allowed when purposes include one of: "
                     + ", ".join(allowing))


def expected_violations(purposes: list[str], fields: set[str]) -> list[Violation]:
    allowed = schema.allowed_person_fields(purposes, "2")
    return sorted((forbidden(f) for f in fields - allowed), key=lambda v: v.path)


@pytest.fixture(scope="module")
def world() -> World:
    return build_world()


# --- the table itself ----------------------------------------------------------------------


def test_full_payload_carries_every_restricted_field() -> None:
    for field in RESTRICTED:
        _get(FULL, field)


def test_acts_means_control_and_narrative_travel_only_for_criminal_justice() -> None:
    for field in ("acts", "means", "methods_of_control", "narrative", "criminal_justice"):
        assert [p for p in PURPOSES if field in schema.allowed_person_fields([p], "2")] == [
            "criminal_justice_cooperation"], field


def test_guardian_names_only_for_tracing_and_return() -> None:
    allowing = [p for p in PURPOSES if "child_protection.guardian.names" in schema.allowed_person_fields([p], "2")]
    assert allowing == ["family_tracing", "assisted_return"]


def test_international_protection_carries_no_family_contacts_or_offence_data() -> None:
    allowed = schema.allowed_person_fields(["international_protection"], "2")
    assert not {"person.family_contacts", "acts", "means", "methods_of_control", "narrative"} & allowed
    assert {"person.names", "person.identity_documents", "needs", "child_protection"} <= allowed


def test_every_allowed_field_has_a_reason() -> None:
    for purpose in PURPOSES:
        for field in TABLE["allowed_by_purpose"][purpose]:
            assert schema.minimal_data_reason(purpose, field).strip()
    for field in TABLE["always_allowed"]:
        assert schema.minimal_data_reason(None, field).strip()


# --- every purpose's minimal set -----------------------------------------------------------


@pytest.mark.parametrize("purpose", PURPOSES)
def test_each_purpose_passes_with_exactly_its_fields(purpose: str) -> None:
    allowed = set(RESTRICTED) & schema.allowed_person_fields([purpose], "2")
    assert schema.find_violations("referral.request", request([purpose], allowed)) == []


@pytest.mark.parametrize("purpose", PURPOSES)
def test_each_purpose_refuses_every_other_field(purpose: str) -> None:
    allowed = set(RESTRICTED) & schema.allowed_person_fields([purpose], "2")
    disallowed = schema.disallowed_person_fields([purpose], "2")
    assert disallowed == set(RESTRICTED) - allowed
    for field in sorted(disallowed):
        payload = request([purpose], allowed | {field})
        assert schema.find_violations("referral.request", payload) == [forbidden(field)], field


def test_child_protection_only_for_a_minor() -> None:
    payload = request(["assistance"], set())
    payload["person"]["age"] = {"minor": False, "years": 30}
    payload["consent"]["decision_maker"] = "self"
    assert [(v.path, v.rule) for v in schema.find_violations("referral.request", payload)] == [
        ("$.child_protection", "false")]


# --- random purpose sets and field sets, at the schema and at both ends ----------------------

purpose_sets = st.lists(st.sampled_from(PURPOSES), min_size=1, unique=True)
field_sets = st.sets(st.sampled_from(RESTRICTED))


@settings(max_examples=scaled(200), deadline=None)
@given(purposes=purpose_sets, fields=field_sets)
def test_random_purposes_and_fields_match_the_table(purposes: list[str], fields: set[str]) -> None:
    found = schema.find_violations("referral.request", request(purposes, fields))
    assert sorted(found, key=lambda v: v.path) == expected_violations(purposes, fields)


@settings(max_examples=scaled(100), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(purposes=purpose_sets, fields=field_sets)
def test_send_path_seals_only_allowed_fields(world: World, purposes: list[str], fields: set[str]) -> None:
    payload = request(purposes, fields)
    expected = expected_violations(purposes, fields)
    if expected:
        with pytest.raises(errors.SchemaInvalidError) as info:
            seal(payload, message_type="referral.request", sender=world.niger, recipient="NG-NAPTIP",
                 directory=world.directory, case_ref="case-ne-ng-0001", now=NOW)
        assert sorted(info.value.violations, key=lambda v: v.path) == expected
        assert CANARY not in str(info.value)
    else:
        header, _ = seal(payload, message_type="referral.request", sender=world.niger, recipient="NG-NAPTIP",
                         directory=world.directory, case_ref="case-ne-ng-0001", now=NOW)
        assert header.schema == "2"


@settings(max_examples=scaled(100), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(purposes=purpose_sets, fields=field_sets)
def test_receive_path_opens_only_allowed_fields(world: World, purposes: list[str], fields: set[str]) -> None:
    # A non-conforming sender seals whatever it likes: the recipient checks again.
    payload = request(purposes, fields)
    data = forge(header_for(world, schema="2"), canonical_bytes(payload), signer=world.niger.signing_key,
                 seal_to=next(iter(world.nigeria.encryption_keys.values())).public_key)
    expected = expected_violations(purposes, fields)
    if expected:
        with pytest.raises(errors.SchemaInvalidError) as info:
            open_sealed(data, recipient=world.nigeria, directory=world.directory, replay_guard=None, now=NOW)
        assert sorted(info.value.violations, key=lambda v: v.path) == expected
        assert CANARY not in str(info.value)
    else:
        opened = open_sealed(data, recipient=world.nigeria, directory=world.directory, replay_guard=None, now=NOW)
        assert opened.payload == payload
