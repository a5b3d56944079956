"""Signed checkpoints: an agency's signature over (tree size, root hash) of its audit log.

The note is the canonical JSON (RFC 8785) of ``{"checkpoint": body, "signature": sig}``;
``sig`` is Ed25519 over ``SIGNING_CONTEXT || canonical(body)``, base64url without padding.
Notes are stored and exchanged byte for byte, so parsing insists on the canonical form:
one checkpoint has exactly one note. See docs/audit.md for the exact bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from nacl.exceptions import BadSignatureError as NaclBadSignature

from gateway.b64 import b64url_decode, b64url_encode
from gateway.canonical import canonical_bytes, strict_loads
from gateway.clock import format_ts, parse_ts
from gateway.directory import AGENCY_ID, KID, Directory
from gateway.errors import GatewayError, KeyExpiredError, KeyRevokedError, UnknownSenderError
from gateway.keys import AgencyIdentity
from gateway.store.base import CheckpointRecord

FORMAT = "referral-gateway-checkpoint/1"
#: Domain separation: a checkpoint signature can never pass for a directory or envelope signature.
SIGNING_CONTEXT = b"RGW1-CHECKPOINT\x00"
#: A checkpoint may claim to be signed at most this far in the future of the verifier's clock.
MAX_CLOCK_SKEW = timedelta(minutes=5)
#: Tree sizes stay exact in every JSON implementation (IEEE doubles).
MAX_TREE_SIZE = 2**53 - 1

_BODY_KEYS = frozenset({"format", "origin", "tree_size", "root_hash", "signed_at", "kid"})


class CheckpointError(GatewayError):
    """A checkpoint was rejected; the subclass says why."""

    code = "checkpoint_error"


class MalformedCheckpointError(CheckpointError):
    """The note is not a well-formed, canonical checkpoint (JSON, members, types, encodings)."""

    code = "checkpoint_malformed"


class CheckpointSignatureError(CheckpointError):
    """The signature does not verify with the key the checkpoint names."""

    code = "checkpoint_bad_signature"


class CheckpointOriginError(CheckpointError):
    """The checkpoint is signed by another agency than the one expected."""

    code = "checkpoint_wrong_origin"


class CheckpointUnknownKeyError(CheckpointError):
    """The origin agency, or its signing key ``kid``, is not in the directory."""

    code = "checkpoint_unknown_key"


class CheckpointKeyRevokedError(CheckpointError):
    """The signing key was revoked: nothing it signed is trusted any more."""

    code = "checkpoint_key_revoked"


class CheckpointKeyExpiredError(CheckpointError):
    """The signing key was not valid at the checkpoint's ``signed_at``."""

    code = "checkpoint_key_expired"


class CheckpointFromFutureError(CheckpointError):
    """``signed_at`` is later than the verifier's clock allows."""

    code = "checkpoint_from_future"


@dataclass(frozen=True)
class Checkpoint:
    """A parsed checkpoint: who signed which tree, when, with which key."""

    origin: str
    tree_size: int
    root_hash: bytes
    signed_at: datetime
    kid: str
    signature: bytes

    def body(self) -> dict[str, Any]:
        """The signed JSON object."""
        return _body(self.origin, self.tree_size, self.root_hash, self.signed_at, self.kid)

    def signed_bytes(self) -> bytes:
        """Exactly the bytes the signature covers."""
        return SIGNING_CONTEXT + canonical_bytes(self.body())

    def describe(self) -> str:
        """A short label for messages: origin, size, signing time (no hashes)."""
        return f"checkpoint of {self.origin} at tree size {self.tree_size} signed {format_ts(self.signed_at)}"


def _body(origin: str, tree_size: int, root_hash: bytes, signed_at: datetime, kid: str) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "origin": origin,
        "tree_size": tree_size,
        "root_hash": b64url_encode(root_hash),
        "signed_at": format_ts(signed_at),
        "kid": kid,
    }


def sign_checkpoint(identity: AgencyIdentity, tree_size: int, root_hash: bytes, signed_at: datetime) -> bytes:
    """Sign (tree size, root hash) as ``identity`` and return the note bytes."""
    if not isinstance(tree_size, int) or isinstance(tree_size, bool) or not 0 <= tree_size <= MAX_TREE_SIZE:
        raise ValueError("tree_size must be an integer in 0..2**53-1")
    if not isinstance(root_hash, bytes) or len(root_hash) != 32:
        raise ValueError("root_hash must be 32 bytes")
    if signed_at.microsecond:
        raise ValueError("signed_at must be whole seconds (it is signed as YYYY-MM-DDTHH:MM:SSZ)")
    body = _body(identity.agency_id, tree_size, root_hash, signed_at, identity.signing_kid)
    signature = identity.signing_key.sign(SIGNING_CONTEXT + canonical_bytes(body)).signature
    note = canonical_bytes({"checkpoint": body, "signature": b64url_encode(signature)})
    parse_checkpoint(note)  # never hand out a note we would refuse to read
    return note


def parse_checkpoint(note: bytes) -> Checkpoint:
    """Parse a note strictly (canonical JSON, exact members and types); does not verify it."""
    if not isinstance(note, bytes):
        raise MalformedCheckpointError("a checkpoint note is bytes")
    try:
        doc = strict_loads(note)
    except (ValueError, RecursionError):
        raise MalformedCheckpointError("checkpoint note is not valid JSON") from None
    _exact(doc, {"checkpoint", "signature"}, "$")
    body = doc["checkpoint"]
    _exact(body, set(_BODY_KEYS), "$.checkpoint")
    if body["format"] != FORMAT:
        raise MalformedCheckpointError(f"$.checkpoint.format: expected {FORMAT!r}")
    origin = body["origin"]
    if not isinstance(origin, str) or not AGENCY_ID.fullmatch(origin):
        raise MalformedCheckpointError("$.checkpoint.origin: must be an agency id")
    size = body["tree_size"]
    if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size <= MAX_TREE_SIZE:
        raise MalformedCheckpointError("$.checkpoint.tree_size: must be an integer in 0..2**53-1")
    root_hash = _b64(body["root_hash"], "$.checkpoint.root_hash", 32)
    try:
        signed_at = parse_ts(body["signed_at"])
    except ValueError:
        raise MalformedCheckpointError("$.checkpoint.signed_at: must look like YYYY-MM-DDTHH:MM:SSZ") from None
    kid = body["kid"]
    if not isinstance(kid, str) or not KID.fullmatch(kid):
        raise MalformedCheckpointError("$.checkpoint.kid: must be 32 lowercase hex digits")
    signature = _b64(doc["signature"], "$.signature", 64)
    if _canonical_or_none(doc) != note:
        # Same content, other bytes (spacing, member order, escapes): refuse, so a stored
        # or exchanged note is always the one form that was signed.
        raise MalformedCheckpointError("checkpoint note is not in RFC 8785 canonical form")
    return Checkpoint(origin, size, root_hash, signed_at, kid, signature)


def verify_checkpoint(
    note: bytes, directory: Directory, *, expected_origin: str | None = None, now: datetime | None = None
) -> Checkpoint:
    """Parse ``note`` and verify its signature with the origin's key from ``directory``.

    The key must belong to the origin, be a signing key, be valid at ``signed_at`` (it may
    have expired since: old checkpoints stay verifiable) and never have been revoked
    (a revoked key may have signed anything, with any date). With ``now``, ``signed_at``
    may be at most MAX_CLOCK_SKEW in the future.
    """
    cp = parse_checkpoint(note)
    if expected_origin is not None and cp.origin != expected_origin:
        raise CheckpointOriginError(f"checkpoint is signed by {cp.origin}, expected {expected_origin}")
    if now is not None and cp.signed_at > now + MAX_CLOCK_SKEW:
        raise CheckpointFromFutureError(f"{cp.describe()} is dated in the future")
    try:
        key = directory.sender_key(cp.origin, cp.kid, created=cp.signed_at, now=cp.signed_at)
    except KeyRevokedError:
        raise CheckpointKeyRevokedError(f"signing key {cp.kid} of {cp.origin} was revoked") from None
    except KeyExpiredError:
        raise CheckpointKeyExpiredError(
            f"signing key {cp.kid} of {cp.origin} was not valid at {format_ts(cp.signed_at)}"
        ) from None
    except UnknownSenderError as exc:
        raise CheckpointUnknownKeyError(str(exc)) from None
    try:
        key.verify(cp.signed_bytes(), cp.signature)
    except NaclBadSignature:
        raise CheckpointSignatureError(f"signature of the {cp.describe()} does not verify") from None
    return cp


def to_record(cp: Checkpoint, note: bytes, recorded_at: datetime) -> CheckpointRecord:
    """The store row for a verified checkpoint and its note."""
    return CheckpointRecord(
        origin=cp.origin,
        tree_size=cp.tree_size,
        root_hash=cp.root_hash,
        signed_at=cp.signed_at,
        note=note,
        recorded_at=recorded_at,
    )


def _canonical_or_none(doc: Any) -> bytes | None:
    try:
        return canonical_bytes(doc)
    except (ValueError, TypeError):  # e.g. a number JSON cannot carry exactly
        return None


def _exact(value: Any, expected: set[str], path: str) -> None:
    if not isinstance(value, dict):
        raise MalformedCheckpointError(f"{path}: must be an object")
    missing, extra = expected - value.keys(), value.keys() - expected
    if missing:
        raise MalformedCheckpointError(f"{path}: missing member(s) {sorted(missing)}")
    if extra:
        raise MalformedCheckpointError(f"{path}: unexpected member(s) {sorted(extra)}")


def _b64(value: Any, path: str, size: int) -> bytes:
    try:
        raw = b64url_decode(value)
    except ValueError:
        raise MalformedCheckpointError(f"{path}: not unpadded base64url") from None
    if len(raw) != size:
        raise MalformedCheckpointError(f"{path}: must decode to {size} bytes")
    return raw
