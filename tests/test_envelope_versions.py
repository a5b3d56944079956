"""Envelopes carry v1 and v2 payloads; the header ``schema`` must equal the payload's version."""

from __future__ import annotations

import pytest

from gateway import errors, schema
from gateway.canonical import canonical_bytes
from gateway.envelope import RecipientRefusesError, open_sealed, seal

from testkit.envelope_world import NOW, World, build_world, forge, header_for

CANARY = "Zebulon Quarantinovic"


@pytest.fixture(scope="module")
def world() -> World:
    return build_world()


def _seal(world: World, payload: dict, message_type: str = "referral.request", recipient: str = "NG-NAPTIP"):
    return seal(payload, message_type=message_type, sender=world.niger, recipient=recipient,
                directory=world.directory, case_ref="case-ne-ng-0001", now=NOW)


def _open(world: World, data: bytes):
    return open_sealed(data, recipient=world.nigeria, directory=world.directory, replay_guard=None, now=NOW)


def _forged(world: World, payload: dict, schema_header: str) -> bytes:
    return forge(header_for(world, schema=schema_header), canonical_bytes(payload), signer=world.niger.signing_key,
                 seal_to=next(iter(world.nigeria.encryption_keys.values())).public_key)


@pytest.mark.parametrize("name", schema.example_names("2"))
def test_every_v2_example_seals_with_header_2_and_opens(world: World, name: str) -> None:
    message_type = schema.example_message_type(name)
    payload = schema.load_example(message_type, name[len(message_type) + 1:] or None, "2")
    header, data = _seal(world, payload, message_type)
    assert header.schema == "2"
    opened = _open(world, data)
    assert opened.header.schema == "2" and opened.payload == payload


def test_v1_payload_still_seals_with_header_1(world: World) -> None:
    header, data = _seal(world, schema.load_example("referral.request"))
    assert header.schema == "1"
    assert _open(world, data).header.schema == "1"


@pytest.mark.parametrize(("version", "header"), [("1", "2"), ("2", "1")])
def test_header_and_payload_versions_must_agree_on_opening(world: World, version: str, header: str) -> None:
    payload = schema.load_example("referral.request", None, version)
    with pytest.raises(errors.SchemaInvalidError) as info:
        _open(world, _forged(world, payload, header))
    (violation,) = info.value.violations
    assert violation.path == "$.schema_version" and violation.rule == "schema_version"
    assert f"version {version} payload" in violation.message and f"version {header}" in violation.message


def test_unknown_payload_version_under_header_2_is_a_schema_violation(world: World) -> None:
    payload = schema.load_example("referral.request", None, "2")
    payload["schema_version"] = "3"
    with pytest.raises(errors.SchemaInvalidError) as info:
        _open(world, _forged(world, payload, "2"))
    assert [(v.path, v.rule) for v in info.value.violations] == [("$.schema_version", "schema_version")]


def test_v2_minimal_data_is_enforced_on_opening(world: World) -> None:
    # A non-conforming sender puts the narrative in an assistance referral: refused, unquoted.
    payload = schema.load_example("referral.request", "interpreter_uncoded_language", "2")
    payload["narrative"] = f"{CANARY} told us everything."
    with pytest.raises(errors.SchemaInvalidError) as info:
        _open(world, _forged(world, payload, "2"))
    assert [(v.path, v.rule) for v in info.value.violations] == [("$.narrative", "false")]
    assert CANARY not in str(info.value)


def test_sealing_checks_the_version_against_the_payload(world: World) -> None:
    payload = schema.load_example("referral.request", None, "2")
    payload["schema_version"] = "1"
    with pytest.raises(errors.SchemaInvalidError) as info:
        _seal(world, payload)
    assert [(v.path, v.rule) for v in info.value.violations] == [("$.schema_version", "schema_version")]
    assert "no schema_version member" in str(info.value)


def test_seal_refuses_a_version_the_recipient_does_not_list(world: World) -> None:
    # Mali's directory entry lists no schema_versions: version 1 only.
    assert world.directory.schema_versions("ML-DNPEF") == {"1"}
    with pytest.raises(RecipientRefusesError, match="schema version 2"):
        _seal(world, schema.load_example("referral.request", None, "2"), recipient="ML-DNPEF")
    header, _ = _seal(world, schema.load_example("referral.request"), recipient="ML-DNPEF")
    assert header.schema == "1"
