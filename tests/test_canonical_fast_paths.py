"""The fast paths of gateway/canonical.py give the answers of the slow ones they replace."""

from __future__ import annotations

import json

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.canonical import (
    MAX_JSON_DEPTH,
    DuplicateKeyError,
    NestingTooDeepError,
    canonical_bytes,
    json_depth,
    loads_canonical,
    strict_loads,
)
from tests.support.hypothesis_profiles import scaled

text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**60), 2**60) | st.floats(allow_nan=False, allow_infinity=False) | text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
    max_leaves=20,
)


def _reference(value: object) -> bytes | None:
    try:
        return rfc8785.dumps(value)
    except rfc8785.CanonicalizationError:
        return None


@settings(max_examples=scaled(1000), deadline=None)
@given(json_values)
def test_loads_canonical_accepts_exactly_the_reference_bytes(value) -> None:
    expected = _reference(value)
    if expected is None:
        return
    reparsed = json.loads(expected)
    if _reference(reparsed) is None:
        # e.g. 2^53 as a float is written "9007199254740992", which parses as an integer
        # beyond 2^53: the reference encoder refuses it, and so does loads_canonical.
        with pytest.raises(ValueError):
            loads_canonical(expected)
        return
    parsed, canonical = loads_canonical(expected)
    assert canonical is True
    assert rfc8785.dumps(parsed) == expected
    # Any other spelling of the same value is parsed the same and is not canonical.
    spaced = json.dumps(value, ensure_ascii=True, indent=1).encode("utf-8")
    parsed_again, canonical_again = loads_canonical(spaced)
    assert rfc8785.dumps(parsed_again) == expected
    assert canonical_again is (spaced == expected)


@pytest.mark.parametrize("data, canonical", [
    (b'{"a":1.5}', True),
    (b'{"a":1.50}', False),
    (b'{"a":1e3}', False),
    (b'{"a":1000}', True),
    (b'{"n":9007199254740991}', True),
    (b'{"b":1,"a":2}', False),
    ('{"\U0001f600":1,"\ufb33":2}'.encode(), True),  # UTF-16 order: the emoji's surrogates sort first
    ('{"\ufb33":2,"\U0001f600":1}'.encode(), False),
    ('{"a":"\u00e9"}'.encode(), True),
    (b'{"a":"\\u00e9"}', False),
])
def test_loads_canonical_cases(data: bytes, canonical: bool) -> None:
    assert loads_canonical(data)[1] is canonical


def test_integers_beyond_2_53_are_refused_as_canonical_bytes_refuses_them() -> None:
    with pytest.raises(ValueError):
        loads_canonical(b'{"n":9007199254740993}')


def test_loads_canonical_refuses_what_strict_loads_refuses() -> None:
    for bad in (b'{"a":1,"a":2}', b'{"a":NaN}', b"\xff", b"\xef\xbb\xbf{}", b"[" * 40 + b"]" * 40):
        with pytest.raises(ValueError) as strict:
            strict_loads(bad)
        with pytest.raises(type(strict.value)):
            loads_canonical(bad)
    with pytest.raises(DuplicateKeyError):
        loads_canonical(b'{"x":{"a":1,"b":2,"a":3}}')


def test_depth_limit_with_brackets_inside_strings() -> None:
    # Many brackets, shallow value: the quick count cannot decide, the walk does.
    shallow = json.dumps({"a": "[" * 100 + "{" * 100}).encode()
    assert strict_loads(shallow) == {"a": "[" * 100 + "{" * 100}
    deep = b"[" * (MAX_JSON_DEPTH + 1) + b"]" * (MAX_JSON_DEPTH + 1)
    with pytest.raises(NestingTooDeepError):
        strict_loads(deep)
    at_limit = b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH
    assert json_depth(strict_loads(at_limit)) == MAX_JSON_DEPTH


def test_shared_and_cyclic_containers() -> None:
    shared = ["x"]
    assert canonical_bytes({"a": shared, "b": shared}) == b'{"a":["x"],"b":["x"]}'
    cyclic: list[object] = []
    cyclic.append(cyclic)
    with pytest.raises((ValueError, RecursionError)):
        canonical_bytes(cyclic)


def test_non_string_member_names_go_to_the_reference_encoder() -> None:
    with pytest.raises(ValueError):
        canonical_bytes({1: "a"})
