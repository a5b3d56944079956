"""Minimal data, version 1: a referral.request carries only the subject fields its purposes allow.

Version 2 has its own tests (tests/test_schema_minimal_data_v2.py)."""

from __future__ import annotations

import copy
from itertools import combinations
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway import schema
from gateway.errors import Violation
from tests.support.hypothesis_profiles import scaled

FULL = schema.load_example("referral.request", "all_purposes")
TABLE = schema.minimal_data_table("1")
PURPOSES = schema.PURPOSES_BY_VERSION["1"]
RESTRICTED = sorted({f for fields in TABLE["allowed_by_purpose"].values() for f in fields})
SUBSETS = [c for n in range(1, len(PURPOSES) + 1) for c in combinations(PURPOSES, n)]


def _get(payload: dict[str, Any], dotted: str) -> Any:
    for part in dotted.split("."):
        payload = payload[part]
    return payload


def _delete(payload: dict[str, Any], dotted: str) -> None:
    *parents, last = dotted.split(".")
    for part in parents:
        payload = payload[part]
    payload.pop(last, None)


def _put(payload: dict[str, Any], dotted: str) -> None:
    """Copy one field from the full example into the payload."""
    *parents, last = dotted.split(".")
    for part in parents:
        payload = payload[part]
    if dotted == "person.age.date_of_birth":
        payload.pop("years", None)  # age carries exactly one of years, date_of_birth, band
    payload[last] = copy.deepcopy(_get(FULL, dotted))


def _request(purposes: tuple[str, ...], fields: set[str]) -> dict[str, Any]:
    """The full example cut down to these purposes and these restricted fields."""
    payload = copy.deepcopy(FULL)
    payload["purposes"] = list(purposes)
    payload["consent"]["purposes"] = list(purposes)
    payload["person"]["age"] = {"minor": False, "years": 22}
    for field in RESTRICTED:
        _delete(payload, field)
    for field in sorted(fields):
        _put(payload, field)
    return payload


def _forbidden(field: str) -> Violation:
    name = field.rsplit(".", 1)[-1]
    allowing = [p for p in PURPOSES if field in TABLE["allowed_by_purpose"][p]]
    return Violation(
        schema.json_path(field.split(".")),
        "false",
        f"property '{name}' is not allowed: {field} is only allowed when purposes include one of: "
        + ", ".join(allowing),
    )


def test_full_example_carries_every_restricted_field() -> None:
    for field in RESTRICTED:
        _get(FULL, field)


@pytest.mark.parametrize("purposes", SUBSETS, ids="+".join)
def test_allowed_fields_pass(purposes: tuple[str, ...]) -> None:
    allowed = set(RESTRICTED) & schema.allowed_person_fields(purposes)
    assert schema.find_violations("referral.request", _request(purposes, allowed)) == []


@pytest.mark.parametrize("purposes", SUBSETS, ids="+".join)
def test_each_disallowed_field_fails_with_rule_false(purposes: tuple[str, ...]) -> None:
    allowed = set(RESTRICTED) & schema.allowed_person_fields(purposes)
    disallowed = schema.disallowed_person_fields(purposes)
    assert disallowed == set(RESTRICTED) - allowed
    for field in sorted(disallowed):
        payload = _request(purposes, allowed | {field})
        assert schema.find_violations("referral.request", payload) == [_forbidden(field)], field


def test_safety_assessment_only_request_with_names_fails_at_person_names() -> None:
    payload = schema.load_example("referral.request", "safety_assessment_only")
    payload["person"]["names"] = {"given": "Amaka", "family": "Testfixture"}
    (violation,) = schema.find_violations("referral.request", payload)
    assert (violation.path, violation.rule) == ("$.person.names", "false")
    assert "family_tracing" in violation.message


@pytest.mark.parametrize("field", ["narrative", "exploitation", "methods_of_control", "acts", "means", "needs"])
def test_no_assistance_or_exploitation_data_without_an_assistance_purpose(field: str) -> None:
    # Law enforcement and tracing agencies receive these purposes: no assistance data.
    for purposes in [("safety_assessment",), ("family_tracing",), ("safety_assessment", "family_tracing")]:
        payload = _request(purposes, set())
        _put(payload, field)
        assert [(v.path, v.rule) for v in schema.find_violations("referral.request", payload)] == [
            (f"$.{field}", "false")
        ]


def test_request_without_purposes_carries_no_restricted_field() -> None:
    payload = _request(("assistance",), {"narrative"})
    del payload["purposes"]
    found = {(v.path, v.rule) for v in schema.find_violations("referral.request", payload)}
    assert found == {("$.purposes", "required"), ("$.narrative", "false")}


def test_allowed_person_fields_is_the_union() -> None:
    tracing = schema.allowed_person_fields(["family_tracing"])
    assistance = schema.allowed_person_fields(["assistance"])
    assert schema.allowed_person_fields(["family_tracing", "assistance"]) == tracing | assistance
    assert "person.names" in tracing and "person.names" not in assistance
    assert "narrative" in assistance and "narrative" not in tracing
    assert schema.allowed_person_fields([]) == frozenset(TABLE["always_allowed"])
    with pytest.raises(ValueError):
        schema.allowed_person_fields(["prosecution"])


@settings(max_examples=scaled(150), deadline=None)
@given(
    purposes=st.lists(st.sampled_from(PURPOSES), min_size=1, unique=True),
    fields=st.sets(st.sampled_from(RESTRICTED)),
)
def test_random_purposes_and_fields_match_the_table(purposes: list[str], fields: set[str]) -> None:
    payload = _request(tuple(purposes), fields)
    expected = sorted(
        (_forbidden(f) for f in fields - schema.allowed_person_fields(purposes)),
        key=lambda v: v.path,
    )
    found = schema.find_violations("referral.request", payload)
    assert sorted(found, key=lambda v: v.path) == expected
