"""Message ids derived from their inputs, and the check for a canonical message id (a leaf)."""

from __future__ import annotations

import hashlib
import uuid


def derived_message_id(*parts: str) -> str:
    """A version-4-shaped UUID derived from ``parts``: the same inputs always give the same id.

    Receipts get derived ids so that re-processing a redelivered message re-creates the
    same receipt id, which the outbox then recognises instead of sending a second receipt.
    """
    digest = bytearray(hashlib.sha256("\x1f".join(parts).encode("utf-8")).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x40
    digest[8] = (digest[8] & 0x3F) | 0x80
    return str(uuid.UUID(bytes=bytes(digest)))


def uuid_or_none(value: str) -> str | None:
    """``value`` if it is a canonical UUID (a message id), else None (not kept anywhere)."""
    try:
        return value if str(uuid.UUID(value)) == value else None
    except (ValueError, TypeError, AttributeError):
        return None
