"""gateway/b64.py decodes exactly what the straightforward strict decoder it replaced decodes."""

from __future__ import annotations

import base64
import binascii
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.b64 import b64url_decode, b64url_encode
from tests.support.hypothesis_profiles import scaled

_ALPHABET = re.compile(r"^[A-Za-z0-9_-]*$")


def _reference(text: object) -> bytes:
    # The earlier implementation: alphabet by regex, canonical form by re-encoding.
    if not isinstance(text, str) or not _ALPHABET.fullmatch(text) or len(text) % 4 == 1:
        raise ValueError("not unpadded base64url")
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except binascii.Error as exc:
        raise ValueError("not unpadded base64url") from exc
    if b64url_encode(data) != text:
        raise ValueError("non-canonical base64url")
    return data


def _outcome(decode, text: object) -> bytes | None:
    try:
        return decode(text)
    except ValueError:
        return None


@settings(max_examples=scaled(2000))
@given(st.binary(max_size=12), st.integers(0, 20), st.sampled_from(list("Aa0-_+/= \n\t\u00e9\x00")))
def test_same_answers_as_the_reference(data: bytes, where: int, char: str) -> None:
    text = b64url_encode(data)
    assert b64url_decode(text) == data
    changed = text[:where] + char + text[where + 1:]
    assert _outcome(b64url_decode, changed) == _outcome(_reference, changed)


@pytest.mark.parametrize("text", ["QQ", "QR", "QUE", "QUF", "QUI=", "Q", "QQ==", "Q+", "Q/", "", None, b"QQ"])
def test_cases(text: object) -> None:
    assert _outcome(b64url_decode, text) == _outcome(_reference, text)
