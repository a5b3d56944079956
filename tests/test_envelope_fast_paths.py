"""The envelope's shortcuts give the bytes and answers of the general code they replace."""

from __future__ import annotations

import json

import pytest

from gateway import errors
from gateway.b64 import b64url_encode
from gateway.canonical import canonical_bytes, strict_loads
from gateway.envelope import FORMAT, ParsedEnvelope, envelope_bytes, open_sealed, parse_envelope, parse_sealed, seal
from gateway.outbox_body import digest_record, outbox_header

from testkit.envelope_world import NOW, World, build_world, example_payload


@pytest.fixture(scope="module")
def world() -> World:
    return build_world()


def _sealed(world: World, message_type: str = "referral.request") -> bytes:
    return seal(example_payload(message_type), message_type=message_type, sender=world.niger, recipient="NG-NAPTIP",
                directory=world.directory, case_ref="case-ne-ng-0001", now=NOW)[1]


def test_sealed_bytes_are_the_canonical_bytes_of_the_envelope(world: World) -> None:
    data = _sealed(world)
    doc = strict_loads(data)
    assert canonical_bytes(doc) == data
    header, ciphertext, signature = parse_envelope(data)
    rebuilt = {"format": FORMAT, "header": header.to_json(), "ciphertext": b64url_encode(ciphertext),
               "signature": b64url_encode(signature)}
    assert envelope_bytes(canonical_bytes(header.to_json()), ciphertext, signature) == canonical_bytes(rebuilt)


def test_a_parsed_envelope_opens_as_the_bytes_do(world: World) -> None:
    data = _sealed(world)
    parsed = parse_sealed(data)
    assert isinstance(parsed, ParsedEnvelope)
    assert (parsed.header, parsed.ciphertext, parsed.signature) == parse_envelope(data)
    from_bytes = open_sealed(data, recipient=world.nigeria, directory=world.directory, replay_guard=None, now=NOW)
    from_parsed = open_sealed(parsed, recipient=world.nigeria, directory=world.directory, replay_guard=None, now=NOW)
    assert from_parsed == from_bytes


def test_a_parsed_envelope_is_still_verified(world: World) -> None:
    parsed = parse_sealed(_sealed(world))
    forged = ParsedEnvelope(parsed.header, parsed.header_bytes, parsed.ciphertext, bytes(64))
    with pytest.raises(errors.BadSignatureError):
        open_sealed(forged, recipient=world.nigeria, directory=world.directory, replay_guard=None, now=NOW)


def test_non_canonical_payload_is_refused(world: World) -> None:
    # The payload check now happens while parsing: a payload with its members out of order
    # (same value, other bytes) is still refused.
    from gateway.envelope import _decode_payload

    payload = example_payload()
    good = canonical_bytes(payload)
    assert _decode_payload(good, "id") == payload
    reordered = json.dumps(dict(reversed(list(payload.items()))), separators=(",", ":"), ensure_ascii=False).encode()
    with pytest.raises(errors.MalformedEnvelopeError, match="not RFC 8785 canonical"):
        _decode_payload(reordered, "id")
    with pytest.raises(errors.MalformedEnvelopeError, match="not valid JSON"):
        _decode_payload(b'{"n":9007199254740993}', "id")


def test_digest_record_with_the_header_given(world: World) -> None:
    data = _sealed(world)
    assert digest_record(data, outbox_header(data)) == digest_record(data)
