"""Hypothesis: the envelope parser never raises anything but the documented EnvelopeErrors."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway import errors
from gateway.envelope import MemoryReplayGuard, open_sealed, seal

from testkit.envelope_world import NOW, build_world, example_payload
from tests.support.hypothesis_profiles import scaled

WORLD = build_world()
VALID = seal(
    example_payload(), message_type="referral.request", sender=WORLD.niger, recipient="NG-NAPTIP",
    directory=WORLD.directory, case_ref="case-ne-ng-0001", now=NOW,
)[1]
EXPECTED = open_sealed(VALID, recipient=WORLD.nigeria, directory=WORLD.directory, replay_guard=None, now=NOW)

FUZZ = settings(max_examples=scaled(300), deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _open(data: bytes):
    return open_sealed(data, recipient=WORLD.nigeria, directory=WORLD.directory,
                       replay_guard=MemoryReplayGuard(), now=NOW)


def _only_documented_errors(data: bytes) -> None:
    try:
        opened = _open(data)
    except errors.EnvelopeError as exc:
        assert exc.code and str(exc)
    else:
        # Anything that opens must be exactly the original message: no mutation is silently accepted.
        assert opened.header == EXPECTED.header
        assert opened.payload_bytes == EXPECTED.payload_bytes


@FUZZ
@given(st.binary(max_size=4096))
def test_random_bytes(data: bytes) -> None:
    _only_documented_errors(data)


@FUZZ
@given(st.data())
def test_byte_mutations_of_a_valid_envelope(data) -> None:
    buf = bytearray(VALID)
    for _ in range(data.draw(st.integers(1, 8))):
        op = data.draw(st.sampled_from(["flip", "delete", "insert", "truncate"]))
        pos = data.draw(st.integers(0, max(len(buf) - 1, 0)))
        if op == "flip" and buf:
            buf[pos] ^= 1 << data.draw(st.integers(0, 7))
        elif op == "delete" and buf:
            del buf[pos]
        elif op == "insert":
            buf.insert(pos, data.draw(st.integers(0, 255)))
        elif op == "truncate":
            del buf[pos:]
    _only_documented_errors(bytes(buf))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)


@FUZZ
@given(st.data())
def test_structural_mutations_of_a_valid_envelope(data) -> None:
    doc = json.loads(VALID)
    target = data.draw(st.sampled_from(["top", "header"]))
    obj = doc if target == "top" else doc["header"]
    key = data.draw(st.sampled_from(sorted(obj)) | st.text(max_size=12))
    if data.draw(st.booleans()):
        obj.pop(key, None)
    else:
        obj[key] = data.draw(json_values)
    _only_documented_errors(json.dumps(doc).encode())


@pytest.mark.parametrize("value", ["header", "ciphertext", "signature", "format"])
def test_member_of_every_json_type_is_handled(value: str) -> None:
    for replacement in (None, True, 1, 1.5, "x", [], {}, [1], {"a": 1}):
        doc = json.loads(VALID)
        doc[value] = replacement
        with pytest.raises(errors.EnvelopeError):
            _open(json.dumps(doc).encode())
