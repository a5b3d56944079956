"""Base64url without padding (RFC 4648 §5), decoded strictly."""

from __future__ import annotations

import base64
import binascii

_VALUES = {char: value for value, char in
           enumerate("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")}


def b64url_encode(data: bytes) -> str:
    """Encode bytes as unpadded base64url text."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Decode unpadded base64url; reject padding, other alphabets and non-canonical forms."""
    # The "-_" alphabet is mapped onto "+/" before decoding, so those two (and padding) are
    # refused first; validate=True refuses every other character outside the alphabet.
    if not isinstance(text, str) or len(text) % 4 == 1 or "+" in text or "/" in text or "=" in text:
        raise ValueError("not unpadded base64url")
    try:
        data = base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError) as exc:  # ValueError: a non-ASCII character
        raise ValueError("not unpadded base64url") from exc
    # Unused trailing bits must be zero, so each byte string has exactly one encoding:
    # a last group of 2 characters leaves 4 spare bits, one of 3 leaves 2.
    left = len(text) % 4
    if left and _VALUES[text[-1]] & (0x0F if left == 2 else 0x03):
        raise ValueError("non-canonical base64url")
    return data
