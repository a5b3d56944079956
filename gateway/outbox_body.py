"""What the sender keeps of a sealed envelope once it no longer needs the body.

The outbox holds the sealed envelope until the broker has it and the recipient's signed
``delivered`` receipt (or any later signed answer) proves it arrived; on a consent
withdrawal it is dropped at once. What stays in its place is a *digest record*::

    "RGWD1" || SHA-256(envelope) (32 bytes) || JCS(header)

The header is the envelope's signed clear header (ids, types, agencies, times, key ids,
case pseudonym; no personal data): the outbox row, its status trail, the API and the
audit trail keep working from it, and the digest proves which bytes were sent. Nothing
in the record can be decrypted by anyone. See docs/consent.md ("Who can read which copy").
"""

from __future__ import annotations

import hashlib

from gateway.canonical import canonical_bytes, strict_loads
from gateway.envelope import Header, parse_envelope, parse_header

DELETED = b"RGWD1"
_DIGEST = 32


def digest_record(envelope: bytes, header: Header | None = None) -> bytes:
    """The record that replaces a sealed envelope in the outbox (deterministic: deleting twice
    is a no-op). ``header``: the envelope's header, if the caller has parsed it already."""
    if header is None:
        header, _, _ = parse_envelope(envelope)
    return DELETED + hashlib.sha256(envelope).digest() + canonical_bytes(header.to_json())


def is_deleted(body: bytes) -> bool:
    """True if an outbox body is a digest record, not a sealed envelope."""
    return body[:5] == DELETED


def body_sha256(body: bytes) -> str:
    """Hex SHA-256 of the envelope an outbox body is, or was before it was deleted."""
    if is_deleted(body):
        return body[5 : 5 + _DIGEST].hex()
    return hashlib.sha256(body).hexdigest()


def outbox_header(body: bytes) -> Header:
    """The signed clear header of an outbox body, sealed or deleted."""
    if is_deleted(body):
        return parse_header(strict_loads(body[5 + _DIGEST :]))
    return parse_envelope(body)[0]
