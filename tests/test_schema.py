"""gateway.schema: examples, closed objects, consent rules and safe error messages."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from gateway import schema
from gateway.errors import SchemaInvalidError, Violation

EXTRA = "x_unexpected_property"
SECRET = "ZQXJ-Secret-Adaeze-7731"


def _examples() -> list[tuple[str, str]]:
    return [(name, schema.example_message_type(name)) for name in schema.example_names()]


def _load(name: str) -> dict[str, Any]:
    message_type = schema.example_message_type(name)
    variant = name[len(message_type) + 1 :] or None
    return schema.load_example(message_type, variant)


def _object_paths(value: Any, path: tuple[str | int, ...] = ()) -> Iterator[tuple[str | int, ...]]:
    if isinstance(value, dict):
        yield path
        for key, member in value.items():
            yield from _object_paths(member, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _object_paths(item, (*path, index))


def _at(payload: Any, path: tuple[str | int, ...]) -> Any:
    for part in path:
        payload = payload[part]
    return payload


def _violations(message_type: str, payload: object) -> list[Violation]:
    with pytest.raises(SchemaInvalidError) as info:
        schema.validate_payload(message_type, payload)
    assert info.value.message_type == message_type
    assert info.value.violations == schema.find_violations(message_type, payload)
    return info.value.violations


def _where(violations: list[Violation]) -> set[tuple[str, str]]:
    return {(v.path, v.rule) for v in violations}


# --- constants --------------------------------------------------------------------------


def test_public_constants() -> None:
    assert schema.SCHEMA_VERSION == "1"
    assert schema.MESSAGE_TYPES == (
        "referral.request",
        "referral.response",
        "safety_assessment.result",
        "family_tracing.result",
        "return.plan",
        "return.arrival",
        "case.followup",
        "case.closure",
        "consent.withdrawal",
        "receipt",
        "consent.withdrawal.ack",
        "audit.checkpoint",
    )
    assert schema.SCHEMA_VERSIONS == ("1", "2")
    assert schema.PURPOSES_BY_VERSION["1"] == (
        "assistance",
        "safety_assessment",
        "family_tracing",
        "assisted_return",
        "reintegration_handover",
    )
    assert schema.PURPOSES == schema.PURPOSES_BY_VERSION["2"] == (
        *schema.PURPOSES_BY_VERSION["1"],
        "criminal_justice_cooperation",
        "international_protection",
    )


# --- examples ---------------------------------------------------------------------------


@pytest.mark.parametrize("message_type", schema.MESSAGE_TYPES)
def test_every_message_type_has_a_valid_example(message_type: str) -> None:
    schema.validate_payload(message_type, schema.load_example(message_type))


@pytest.mark.parametrize(("name", "message_type"), _examples())
def test_every_example_is_valid(name: str, message_type: str) -> None:
    assert schema.find_violations(message_type, _load(name)) == []


def test_example_names_start_with_a_message_type() -> None:
    assert {schema.example_message_type(n) for n in schema.example_names()} == set(schema.MESSAGE_TYPES)
    with pytest.raises(ValueError):
        schema.example_message_type("referral.requests")


def test_load_example_returns_a_fresh_copy() -> None:
    first = schema.load_example("receipt")
    first["status"] = "read"
    assert schema.load_example("receipt")["status"] == "delivered"


def test_examples_use_synthetic_family_names_only() -> None:
    for name, _ in _examples():
        payload = _load(name)
        for path in _object_paths(payload):
            node = _at(payload, path)
            if path and path[-1] == "names":
                assert node.get("family") == "Testfixture", f"{name}: {path}"


# --- every object is closed -------------------------------------------------------------


_EXTRA_CASES = [
    pytest.param(name, message_type, path, id=f"{name}:{schema.json_path(path)}")
    for name, message_type in _examples()
    for path in _object_paths(_load(name))
]


@pytest.mark.parametrize(("name", "message_type", "path"), _EXTRA_CASES)
def test_extra_property_at_any_object_level_fails(name: str, message_type: str, path: tuple) -> None:
    payload = _load(name)
    _at(payload, path)[EXTRA] = "x"
    violations = _violations(message_type, payload)
    assert violations == [
        Violation(schema.json_path([*path, EXTRA]), "additionalProperties", f"unexpected property '{EXTRA}'")
    ]


# --- consent ----------------------------------------------------------------------------


def test_missing_consent_fails_at_its_path() -> None:
    payload = schema.load_example("referral.request")
    del payload["consent"]
    assert _where(_violations("referral.request", payload)) == {("$.consent", "required")}


@pytest.mark.parametrize("field", ["decision_maker", "given_at", "expires_at", "purposes"])
def test_consent_record_parts_are_required(field: str) -> None:
    payload = schema.load_example("referral.request")
    del payload["consent"][field]
    assert ("$.consent." + field, "required") in _where(_violations("referral.request", payload))


def test_consent_names_recipient_countries_or_agencies() -> None:
    payload = schema.load_example("referral.request", "all_purposes")
    del payload["consent"]["recipient_agencies"]
    schema.validate_payload("referral.request", payload)
    payload["consent"]["recipient_agencies"] = ["NG-NAPTIP"]
    del payload["consent"]["recipient_countries"]
    schema.validate_payload("referral.request", payload)
    del payload["consent"]["recipient_agencies"]
    (violation,) = _violations("referral.request", payload)
    assert (violation.path, violation.rule) == ("$.consent", "anyOf")
    assert "recipient_countries" in violation.message and "recipient_agencies" in violation.message


def test_consent_must_cover_every_requested_purpose() -> None:
    payload = schema.load_example("referral.request")
    payload["consent"]["purposes"] = ["safety_assessment"]
    (violation,) = _violations("referral.request", payload)
    assert (violation.path, violation.rule) == ("$.consent.purposes", "contains")
    assert '"family_tracing"' in violation.message


def test_minor_with_self_as_decision_maker_fails() -> None:
    payload = schema.load_example("referral.request", "minor_guardian")
    payload["consent"]["decision_maker"] = "self"
    (violation,) = _violations("referral.request", payload)
    assert (violation.path, violation.rule) == ("$.consent.decision_maker", "not")
    assert "minor" in violation.message


@pytest.mark.parametrize("maker", ["parent_guardian", "guardian_with_child_protection", "judge_of_minors"])
def test_minor_with_a_guardian_role_passes(maker: str) -> None:
    payload = schema.load_example("referral.request", "minor_guardian")
    payload["consent"]["decision_maker"] = maker
    schema.validate_payload("referral.request", payload)


def test_adult_may_consent_for_themselves() -> None:
    payload = schema.load_example("referral.request")
    assert payload["person"]["age"]["minor"] is False
    assert payload["consent"]["decision_maker"] == "self"
    schema.validate_payload("referral.request", payload)


@pytest.mark.parametrize(
    ("age", "path"),
    [
        ({"minor": False, "years": 16}, "$.person.age.minor"),
        ({"minor": True, "years": 30}, "$.person.age.minor"),
        ({"minor": False, "band": "9-17"}, "$.person.age.minor"),
        ({"minor": True, "band": "21-23"}, "$.person.age.minor"),
    ],
)
def test_minor_flag_must_agree_with_the_stated_age(age: dict, path: str) -> None:
    payload = schema.load_example("referral.request", "safety_assessment_only")
    payload["person"]["age"] = age
    if age["minor"]:
        payload["consent"]["decision_maker"] = "parent_guardian"
    assert _where(_violations("referral.request", payload)) == {(path, "const")}


@pytest.mark.parametrize(
    "age",
    [{"minor": True}, {"minor": False, "years": 30, "band": "30-38"}],
)
def test_age_has_exactly_one_of_years_date_of_birth_band(age: dict) -> None:
    payload = schema.load_example("referral.request", "safety_assessment_only")
    payload["person"]["age"] = age
    payload["consent"]["decision_maker"] = "parent_guardian"
    assert ("$.person.age", "oneOf") in _where(_violations("referral.request", payload))


def test_age_unknown_is_allowed() -> None:
    payload = schema.load_example("referral.request", "safety_assessment_only")
    payload["person"]["age"] = {"minor": True, "band": "unknown"}
    payload["consent"]["decision_maker"] = "judge_of_minors"
    schema.validate_payload("referral.request", payload)


# --- other message-type rules -----------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "change", "expected"),
    [
        ("referral.response.declined", {"decline_reason": None}, ("$.decline_reason", "required")),
        ("referral.response", {"decline_reason": "no_capacity"}, ("$.decline_reason", "false")),
        ("referral.response.more_information", {"information_needed": None}, ("$.information_needed", "required")),
        ("return.plan.blocked", {"hold": None}, ("$.hold", "required")),
        ("return.plan", {"hold": {"authority": "law_enforcement", "reason": "investigation"}}, ("$.hold", "false")),
        ("return.plan", {"escort": {"needed": False}}, ("$.escort.needed", "const")),
        ("return.plan", {"return_decision": {"decision_maker": "self", "decided_at": "2024-03-29T11:00:00Z"}},
         ("$.return_decision.decision_maker", "not")),
        ("return.plan.blocked", {"travel_document": {"status": "issued"}}, ("$.travel_document.status", "const")),
        ("case.closure", {"referred_to": "NG-IOM"}, ("$.referred_to", "false")),
        ("case.closure.referred", {"referred_to": None}, ("$.referred_to", "required")),
        ("case.followup", {"case_status": "closed"}, ("$.case_status", "enum")),
        ("consent.withdrawal", {"purposes": None}, ("$.purposes", "required")),
        ("family_tracing.result", {"outcome": "family_not_found"}, ("$.relatives_found", "false")),
        ("safety_assessment.result", {"conditions": None}, ("$.conditions", "required")),
        ("receipt", {"message_id": "not-a-uuid"}, ("$.message_id", "pattern")),
    ],
)
def test_message_type_rules(name: str, change: dict, expected: tuple[str, str]) -> None:
    payload = _load(name)
    for key, value in change.items():
        if value is None:
            del payload[key]
        else:
            payload[key] = value
    assert expected in _where(_violations(schema.example_message_type(name), payload))


def test_receipt_carries_no_person_data() -> None:
    payload = schema.load_example("receipt")
    payload["person"] = schema.load_example("referral.request")["person"]
    assert _where(_violations("receipt", payload)) == {("$.person", "additionalProperties")}


@pytest.mark.parametrize("value", ["2024-02-30", "2024-13-01", "24-01-01", "2024-01-01T00:00:00Z"])
def test_dates_are_calendar_dates(value: str) -> None:
    payload = schema.load_example("case.closure")
    payload["closed_on"] = value
    assert {v.path for v in _violations("case.closure", payload)} == {"$.closed_on"}


@pytest.mark.parametrize(
    "value", ["2024-02-30T10:00:00Z", "2024-01-01T10:00:00+01:00", "2024-01-01 10:00:00Z", "2024-01-01T24:00:00Z"]
)
def test_date_times_are_utc_rfc3339(value: str) -> None:
    payload = schema.load_example("receipt")
    payload["status_at"] = value
    assert {v.path for v in _violations("receipt", payload)} == {"$.status_at"}


@pytest.mark.parametrize("value", ["NE-ANLTP-TIM", "NG-NAPTIP", "NE-IOM", "NG-IOM", "ML-DNPEF"])
def test_agency_ids(value: str) -> None:
    payload = schema.load_example("case.closure", "referred")
    payload["referred_to"] = value
    schema.validate_payload("case.closure", payload)
    payload["referred_to"] = value.lower()
    assert _where(_violations("case.closure", payload)) == {("$.referred_to", "pattern")}


# --- violations: where, which rule, and never the value ---------------------------------


def test_unknown_message_type() -> None:
    with pytest.raises(SchemaInvalidError) as info:
        schema.validate_payload("referral.gossip", {})
    assert [(v.path, v.rule) for v in info.value.violations] == [("$", "message_type")]


def test_payload_must_be_an_object() -> None:
    assert _where(_violations("receipt", ["x"])) == {("$", "type")}


def test_paths_name_array_indexes_and_nested_properties() -> None:
    payload = schema.load_example("referral.request", "all_purposes")
    payload["exploitation"][1]["type"] = "gardening"
    payload["person"]["names"]["given"] = 7
    assert _where(_violations("referral.request", payload)) == {
        ("$.exploitation[1].type", "enum"),
        ("$.person.names.given", "type"),
    }


def test_json_path_quotes_odd_names() -> None:
    assert schema.json_path(["person", "names", "given"]) == "$.person.names.given"
    assert schema.json_path(["exploitation", 1, "type"]) == "$.exploitation[1].type"
    assert schema.json_path(["a b", "it's"]) == "$['a b']['it\\'s']"


def test_violations_are_sorted_by_path_and_deduplicated() -> None:
    payload = schema.load_example("referral.request", "all_purposes")
    countries = ["NE", "NG", "ML", "BJ", "LR", "CM", "GM", "SD", "TD", "CI", "GH"]
    payload["exploitation"] = [{"type": "other", "intended": False, "countries": [c]} for c in countries]
    payload["exploitation"][10]["type"] = "gardening"
    payload["exploitation"][2]["type"] = "gardening"
    payload["acts"] = ["nothing"]
    payload["person"]["sex"] = "x"
    violations = _violations("referral.request", payload)
    assert [v.path for v in violations] == [
        "$.acts[0]",
        "$.exploitation[2].type",
        "$.exploitation[10].type",
        "$.person.sex",
    ]
    assert len(set(violations)) == len(violations)


def test_all_violations_are_reported() -> None:
    payload = schema.load_example("referral.request")
    payload["person"]["sex"] = "x"
    payload["identification"]["status"] = "victim"
    del payload["consent"]["given_at"]
    payload["urgency"] = "whenever"
    assert _where(_violations("referral.request", payload)) == {
        ("$.consent.given_at", "required"),
        ("$.identification.status", "enum"),
        ("$.person.sex", "enum"),
        ("$.urgency", "enum"),
    }


def _secret_everywhere() -> list[tuple[str, object]]:
    """(message type, payload) pairs with SECRET in many wrong places."""
    request = schema.load_example("referral.request", "safety_assessment_only")
    request["person"]["sex"] = SECRET
    request["person"]["nationality"] = SECRET
    request["person"]["languages"] = [SECRET]
    request["person"]["age"] = {"minor": SECRET, "years": SECRET}
    request["person"]["names"] = {"given": SECRET, "family": SECRET}
    request["person"]["place_of_origin"] = {"country": "NG", "locality": SECRET}
    request["narrative"] = SECRET * 200
    request["needs"] = [SECRET, SECRET]
    request["identification"]["identified_on"] = SECRET
    request["consent"]["recipient_agencies"] = [SECRET]
    request["consent"]["given_at"] = SECRET
    request["consent"]["expires_at"] = 12345
    request[SECRET[:8]] = SECRET
    request["safety_concerns"] = SECRET

    minor = schema.load_example("referral.request", "minor_guardian")
    minor["consent"]["decision_maker"] = "self"
    minor["person"]["names"]["given"] = {"nested": SECRET}
    minor["person"]["family_contacts"][0]["phone"] = SECRET

    plan = schema.load_example("return.plan")
    plan["escort"]["needed"] = SECRET
    plan["minor"] = SECRET
    plan["reception"]["receiving_agency"] = SECRET
    return [
        ("referral.request", request),
        ("referral.request", minor),
        ("return.plan", plan),
        ("receipt", {"message_id": SECRET, "status": SECRET, "status_at": SECRET}),
        ("receipt", SECRET),
        ("case.followup", {"followed_up_on": SECRET, "method": [SECRET], "case_status": {SECRET[:8]: SECRET}}),
    ]


@pytest.mark.parametrize(("message_type", "payload"), _secret_everywhere())
def test_no_violation_message_contains_the_instance_value(message_type: str, payload: object) -> None:
    with pytest.raises(SchemaInvalidError) as info:
        schema.validate_payload(message_type, payload)
    violations = info.value.violations
    assert violations
    shown = [str(info.value), repr(info.value), *map(str, violations), *map(repr, violations)]
    assert not [text for text in shown if SECRET in text or "Secret" in text or "Adaeze" in text]


def test_long_unexpected_property_names_are_cut() -> None:
    payload = schema.load_example("receipt")
    payload["k" * 500] = 1
    (violation,) = _violations("receipt", payload)
    assert violation.rule == "additionalProperties"
    assert len(violation.path) < 100 and len(violation.message) < 120


def test_validators_are_compiled_once() -> None:
    assert schema._validator("referral.request", "1") is schema._validator("referral.request", "1")
    assert schema._validator("referral.request", "2") is schema._validator("referral.request", "2")
