"""canonical_bytes is RFC 8785: the stdlib fast path must equal the reference encoder."""

from __future__ import annotations

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.canonical import DuplicateKeyError, canonical_bytes, strict_loads
from tests.support.hypothesis_profiles import scaled

text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**60), 2**60) | st.floats(allow_nan=False, allow_infinity=False) | text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=scaled(1500), deadline=None)
@given(json_values)
def test_matches_reference_encoder(value) -> None:
    try:
        expected = rfc8785.dumps(value)
    except rfc8785.CanonicalizationError:
        with pytest.raises(ValueError):
            canonical_bytes(value)
        return
    assert canonical_bytes(value) == expected


def test_known_rfc8785_cases() -> None:
    # Control characters, escapes, non-ASCII kept raw, UTF-16 ordering of names.
    value = {"\U0001f600": 1, "\ufb33": 2, "a\nb": "\x01\x1f\"\\/é", "n": [True, None, -0]}
    assert canonical_bytes(value) == rfc8785.dumps(value)
    assert canonical_bytes({"b": 1, "a": 2}) == b'{"a":2,"b":1}'


def test_unsafe_integers_are_refused() -> None:
    with pytest.raises(ValueError):
        canonical_bytes({"n": 2**53})


def test_strict_loads_refuses_duplicates_and_constants() -> None:
    with pytest.raises(DuplicateKeyError):
        strict_loads(b'{"a":1,"a":2}')
    with pytest.raises(ValueError):
        strict_loads(b'{"a":NaN}')
    with pytest.raises(ValueError):
        strict_loads(b'"\\xff"'.replace(b"\\xff", b"\xff"))
