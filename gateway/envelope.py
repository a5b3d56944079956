"""Envelopes: seal (sign + encrypt) and open (verify + decrypt + validate). Pure, no I/O.

Wire format (normative description in docs/wire-format.md)::

    {"format": "rgw-envelope/1", "header": {...}, "ciphertext": b64url, "signature": b64url}

* ``header`` carries no personal data: ids, type, agencies, times, key ids, case pseudonym.
* ``ciphertext`` = libsodium sealed box (X25519 + XSalsa20-Poly1305) to the recipient's
  encryption key, of ``inner_signature (64 bytes) || P`` where P is the RFC 8785 bytes of
  the payload.
* ``signature`` (outer) = Ed25519 over ``"RGW1-ENVELOPE\\0" || len(H) || H || len(C) || C``:
  lets anyone holding the directory (a relay, an auditor) check origin without decrypting.
* inner signature = Ed25519 over ``"RGW1-PAYLOAD\\0" || len(H) || H || len(P) || P``: after
  decryption the recipient keeps proof that the sender signed this plaintext for this
  header (non-repudiation; the plaintext cannot be re-sealed to someone else unnoticed).

H is the RFC 8785 bytes of the header; lengths are 4-byte big-endian unsigned integers.
"""

from __future__ import annotations

import base64
import re
import struct
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Callable, Mapping, Protocol

from nacl.exceptions import BadSignatureError as NaclBadSignature
from nacl.exceptions import CryptoError
from nacl.public import PublicKey, SealedBox
from nacl.signing import VerifyKey

from gateway.b64 import b64url_decode
from gateway.canonical import canonical_bytes, loads_canonical, strict_loads
from gateway.clock import format_ts, parse_ts, utcnow
from gateway.directory import AGENCY_ID, KID, Directory
from gateway.errors import (
    BadSignatureError,
    ClockSkewError,
    DecryptionError,
    EncryptionKeyDestroyedError,
    EncryptionKeyExpiredError,
    EnvelopeError,
    ExpiredMessageError,
    GatewayError,
    MalformedEnvelopeError,
    SchemaInvalidError,
    OversizeEnvelopeError,
    ReplayedMessageError,
    WrongRecipientError,
)
from gateway.keys import AgencyIdentity
from gateway.schema import MESSAGE_TYPES, SCHEMA_VERSIONS, payload_version, validate_payload, version_violations

FORMAT = "rgw-envelope/1"
ENVELOPE_CONTEXT = b"RGW1-ENVELOPE\x00"
PAYLOAD_CONTEXT = b"RGW1-PAYLOAD\x00"
SIGNATURE_BYTES = 64
#: crypto_box_SEALBYTES: 32-byte ephemeral public key + 16-byte Poly1305 tag.
SEAL_OVERHEAD = 48

CASE_REF = re.compile(r"^[A-Za-z0-9._-]{8,64}$")
#: Random (version 4, RFC 9562 variant) UUID in lowercase: ids carry no time or host information.
UUID_TEXT = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
_SAFE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,31}$")
_REQUIRED = ("id", "type", "schema", "sender", "recipient", "created", "expires", "sig_kid", "enc_kid", "case")
_OPTIONAL = ("in_reply_to",)


class RecipientRefusesError(GatewayError):
    """The directory says the recipient does not accept this message type or purpose."""

    code = "recipient_refuses"


@dataclass(frozen=True)
class EnvelopePolicy:
    """Limits applied when sealing and opening; defaults suit referral traffic."""

    #: Largest envelope accepted on the wire, checked before parsing anything.
    max_envelope_bytes: int = 256 * 1024
    #: Largest canonical payload that may be sealed.
    max_payload_bytes: int = 64 * 1024
    #: How far in the future ``created`` may be (clocks of two agencies differ).
    max_clock_skew: timedelta = timedelta(minutes=5)
    #: Longest allowed ``expires - created``; bounds replay-cache size and key-expiry abuse.
    max_lifetime: timedelta = timedelta(days=30)


DEFAULT_POLICY = EnvelopePolicy()


@dataclass(frozen=True)
class Header:
    """The clear, signed, non-personal part of an envelope."""

    id: str
    type: str
    schema: str
    sender: str
    recipient: str
    created: datetime
    expires: datetime
    sig_kid: str
    enc_kid: str
    case: str
    in_reply_to: str | None = None

    def to_json(self) -> dict[str, str]:
        """Return the header as the JSON object that is canonicalised and signed."""
        out = {
            "id": self.id,
            "type": self.type,
            "schema": self.schema,
            "sender": self.sender,
            "recipient": self.recipient,
            "created": format_ts(self.created),
            "expires": format_ts(self.expires),
            "sig_kid": self.sig_kid,
            "enc_kid": self.enc_kid,
            "case": self.case,
        }
        if self.in_reply_to is not None:
            out["in_reply_to"] = self.in_reply_to
        return out


@dataclass(frozen=True)
class OpenedMessage:
    """A verified, decrypted, schema-valid message plus the proof of who signed it."""

    header: Header
    payload: dict[str, Any]
    #: RFC 8785 payload bytes exactly as signed, and the inner signature over them:
    #: keep both to prove later what the sender sent (non-repudiation).
    payload_bytes: bytes = field(repr=False)
    payload_signature: bytes = field(repr=False)


class ReplayGuard(Protocol):
    """Remembers accepted message ids until they expire."""

    def seen(self, message_id: str) -> bool:
        """True if this id was already accepted."""

    def remember(self, message_id: str, expires: datetime) -> None:
        """Record an accepted id; it may be forgotten after ``expires``."""


class MemoryReplayGuard:
    """In-memory ReplayGuard; ids are pruned once their message has expired."""

    def __init__(self) -> None:
        self._ids: dict[str, datetime] = {}

    def seen(self, message_id: str) -> bool:
        """True if this id was already accepted."""
        return message_id in self._ids

    def remember(self, message_id: str, expires: datetime) -> None:
        """Record an accepted id until ``expires``."""
        self._ids[message_id] = expires

    def prune(self, now: datetime) -> int:
        """Forget ids of expired messages (they are refused as expired anyway)."""
        old = [mid for mid, exp in self._ids.items() if exp < now]
        for mid in old:
            del self._ids[mid]
        return len(old)


def _framed(context: bytes, first: bytes, second: bytes) -> bytes:
    # Length prefixes make the split between header and body unambiguous.
    return context + struct.pack(">I", len(first)) + first + struct.pack(">I", len(second)) + second


def envelope_signing_input(header_bytes: bytes, ciphertext: bytes) -> bytes:
    """Bytes covered by the outer signature."""
    return _framed(ENVELOPE_CONTEXT, header_bytes, ciphertext)


def payload_signing_input(header_bytes: bytes, payload_bytes: bytes) -> bytes:
    """Bytes covered by the inner signature."""
    return _framed(PAYLOAD_CONTEXT, header_bytes, payload_bytes)


# --- sealing -----------------------------------------------------------------------------


def seal(
    payload: Mapping[str, Any],
    *,
    message_type: str,
    sender: AgencyIdentity,
    recipient: str,
    directory: Directory,
    case_ref: str,
    now: datetime | None = None,
    lifetime: timedelta = timedelta(days=7),
    message_id: str | None = None,
    in_reply_to: str | None = None,
    policy: EnvelopePolicy = DEFAULT_POLICY,
) -> tuple[Header, bytes]:
    """Validate, sign and encrypt a payload for ``recipient``; return the header and envelope bytes."""
    now = now or utcnow()
    # Our own key must pass the recipient's checks, or the message would only be quarantined there.
    directory.sender_key(sender.agency_id, sender.signing_kid, created=now, now=now)
    validate_payload(message_type, payload)
    version = payload_version(payload)
    purposes = payload.get("purposes", []) if message_type == "referral.request" else []
    if not directory.may_receive(recipient, message_type, purposes):
        raise RecipientRefusesError(f"{recipient} does not accept {message_type} for purposes {sorted(purposes)}")
    if version not in directory.schema_versions(recipient):
        raise RecipientRefusesError(
            f"{recipient} does not accept schema version {version} (its directory entry lists "
            f"{', '.join(sorted(directory.schema_versions(recipient)))}); convert the payload first")
    if lifetime <= timedelta(0) or lifetime > policy.max_lifetime:
        raise ValueError(f"lifetime must be positive and at most {policy.max_lifetime}")
    enc_key = directory.encryption_key(recipient, at=now)
    header = Header(
        id=message_id or str(uuid.uuid4()),
        type=message_type,
        schema=version,
        sender=sender.agency_id,
        recipient=recipient,
        created=now.replace(microsecond=0),
        expires=(now + lifetime).replace(microsecond=0),
        sig_kid=sender.signing_kid,
        enc_kid=enc_key.kid,
        case=case_ref,
        in_reply_to=in_reply_to,
    )
    header_json = header.to_json()
    _check_header(header_json)  # never emit what we would refuse to open
    header_bytes = canonical_bytes(header_json)
    payload_bytes = canonical_bytes(dict(payload))
    if len(payload_bytes) > policy.max_payload_bytes:
        raise OversizeEnvelopeError(f"payload is {len(payload_bytes)} bytes; limit {policy.max_payload_bytes}")
    inner = sender.signing_key.sign(payload_signing_input(header_bytes, payload_bytes)).signature
    ciphertext = SealedBox(PublicKey(enc_key.public_key)).encrypt(inner + payload_bytes)
    outer = sender.signing_key.sign(envelope_signing_input(header_bytes, ciphertext)).signature
    return header, envelope_bytes(header_bytes, ciphertext, outer)


def envelope_bytes(header_bytes: bytes, ciphertext: bytes, signature: bytes) -> bytes:
    """The RFC 8785 bytes of ``{"format", "header", "ciphertext", "signature"}``, written
    directly: members in RFC 8785 order, the header's canonical bytes as they were signed,
    and base64url text, which needs no escaping (tests check it equals ``canonical_bytes``)."""
    return b"".join((
        b'{"ciphertext":"', _b64url_bytes(ciphertext), b'","format":"', FORMAT.encode("ascii"), b'","header":',
        header_bytes, b',"signature":"', _b64url_bytes(signature), b'"}',
    ))


def _b64url_bytes(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


# --- opening -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ParsedEnvelope:
    """An envelope parsed and checked for structure (no crypto yet): ``open_sealed`` takes
    it instead of the bytes, so a receiver that looked at the header first parses once."""

    header: Header
    header_bytes: bytes = field(repr=False)
    ciphertext: bytes = field(repr=False)
    signature: bytes = field(repr=False)


def parse_envelope(data: bytes, policy: EnvelopePolicy = DEFAULT_POLICY) -> tuple[Header, bytes, bytes]:
    """Parse envelope bytes strictly; return (header, ciphertext, outer signature). No crypto."""
    parsed = _parse(data, policy)
    return parsed.header, parsed.ciphertext, parsed.signature


def parse_sealed(data: bytes, policy: EnvelopePolicy = DEFAULT_POLICY) -> ParsedEnvelope:
    """Parse envelope bytes strictly, as ``parse_envelope``; the result opens with ``open_sealed``."""
    return _parse(data, policy)


def _parse(data: bytes, policy: EnvelopePolicy) -> ParsedEnvelope:
    if not isinstance(data, (bytes, bytearray)):
        raise MalformedEnvelopeError("envelope must be bytes")
    if len(data) > policy.max_envelope_bytes:
        raise OversizeEnvelopeError(f"envelope is {len(data)} bytes; limit {policy.max_envelope_bytes}")
    try:
        doc = strict_loads(bytes(data))
    except (ValueError, RecursionError) as exc:
        raise MalformedEnvelopeError(f"envelope is not valid JSON ({type(exc).__name__})") from None
    _members(doc, {"format", "header", "ciphertext", "signature"}, set(), "$")
    if doc["format"] != FORMAT:
        raise MalformedEnvelopeError(f"$.format: expected {FORMAT!r}")
    header = _check_header(doc["header"])
    ciphertext = _b64(doc["ciphertext"], "$.ciphertext")
    signature = _b64(doc["signature"], "$.signature")
    if len(signature) != SIGNATURE_BYTES:
        raise MalformedEnvelopeError(f"$.signature: must decode to {SIGNATURE_BYTES} bytes")
    if not SEAL_OVERHEAD + SIGNATURE_BYTES < len(ciphertext) <= SEAL_OVERHEAD + SIGNATURE_BYTES + policy.max_payload_bytes:
        raise MalformedEnvelopeError("$.ciphertext: length outside the allowed range")
    return ParsedEnvelope(header, canonical_bytes(doc["header"]), ciphertext, signature)


def parse_header(raw: Any) -> Header:
    """Check a header object (as decoded from JSON) strictly and return it."""
    return _check_header(raw)


def _check_header(raw: Any) -> Header:
    _members(raw, set(_REQUIRED), set(_OPTIONAL), "$.header")
    if not all(isinstance(v, str) for v in raw.values()):
        raise MalformedEnvelopeError("$.header: every member must be a string")
    _field(raw["id"], UUID_TEXT, "$.header.id", "a lowercase version-4 UUID")
    if raw["type"] not in MESSAGE_TYPES:
        raise MalformedEnvelopeError(f"$.header.type: unknown message type; expected one of {list(MESSAGE_TYPES)}")
    if raw["schema"] not in SCHEMA_VERSIONS:
        raise MalformedEnvelopeError(
            f"$.header.schema: unsupported schema version; this gateway speaks {', '.join(map(repr, SCHEMA_VERSIONS))}")
    _field(raw["sender"], AGENCY_ID, "$.header.sender", "an agency id")
    _field(raw["recipient"], AGENCY_ID, "$.header.recipient", "an agency id")
    _field(raw["sig_kid"], KID, "$.header.sig_kid", "a key id (32 hex digits)")
    _field(raw["enc_kid"], KID, "$.header.enc_kid", "a key id (32 hex digits)")
    _field(raw["case"], CASE_REF, "$.header.case", "a case pseudonym (8-64 of A-Z a-z 0-9 . _ -)")
    if "in_reply_to" in raw:
        _field(raw["in_reply_to"], UUID_TEXT, "$.header.in_reply_to", "a lowercase version-4 UUID")
    try:
        created, expires = parse_ts(raw["created"]), parse_ts(raw["expires"])
    except ValueError as exc:
        raise MalformedEnvelopeError(f"$.header.created/expires: {exc}") from None
    if expires <= created:
        raise MalformedEnvelopeError("$.header.expires: must be later than created")
    return Header(
        id=raw["id"], type=raw["type"], schema=raw["schema"], sender=raw["sender"], recipient=raw["recipient"],
        created=created, expires=expires, sig_kid=raw["sig_kid"], enc_kid=raw["enc_kid"], case=raw["case"],
        in_reply_to=raw.get("in_reply_to"),
    )


def _verify_outer(parsed: ParsedEnvelope, directory: Directory, now: datetime, stored_at: datetime | None = None) -> VerifyKey:
    header = parsed.header
    verify_key = directory.sender_key(header.sender, header.sig_kid, created=header.created, now=now,
                                      stored_at=stored_at)
    try:
        verify_key.verify(envelope_signing_input(parsed.header_bytes, parsed.ciphertext), parsed.signature)
    except NaclBadSignature:
        raise BadSignatureError(f"outer signature of message {header.id} from {header.sender} does not verify") from None
    return verify_key


def verify_origin(
    data: bytes, directory: Directory, *, now: datetime | None = None, policy: EnvelopePolicy = DEFAULT_POLICY
) -> Header:
    """Check structure, sender key and outer signature without decrypting (what a relay can do)."""
    parsed = _parse(data, policy)
    _verify_outer(parsed, directory, now or utcnow())
    return parsed.header


def open_sealed(
    data: bytes | ParsedEnvelope,
    *,
    recipient: AgencyIdentity,
    directory: Directory,
    replay_guard: ReplayGuard | None,
    now: datetime | None = None,
    policy: EnvelopePolicy = DEFAULT_POLICY,
    validate: Callable[[str, Any], None] = validate_payload,
    stored_at: datetime | None = None,
    plaintext: bytes | None = None,
) -> OpenedMessage:
    """Verify, decrypt and validate an envelope addressed to ``recipient``.

    Checks run in the order documented in docs/wire-format.md; each failure raises its
    own EnvelopeError subclass. ``replay_guard=None`` means the caller deduplicates.
    To re-open a message stored earlier, pass ``now=stored_at=`` the time it was stored:
    every check then runs as of that moment (see Directory.sender_key). ``plaintext`` is
    the ``inner signature || payload`` the recipient kept at rest when it first opened the
    envelope (gateway/at_rest.py): given, no private key is needed (it may be destroyed by
    now) and every signature is still checked. ``data`` may be the envelope already parsed
    by ``parse_sealed`` (with the same ``policy``).
    """
    now = now or utcnow()
    parsed = data if isinstance(data, ParsedEnvelope) else _parse(data, policy)
    header = parsed.header
    verify_key = _verify_outer(parsed, directory, now, stored_at)
    if header.recipient != recipient.agency_id:
        raise WrongRecipientError(f"message {header.id} is addressed to {header.recipient}, not {recipient.agency_id}")
    private_key = recipient.encryption_keys.get(header.enc_kid)
    if private_key is None and plaintext is None:
        if header.enc_kid in recipient.destroyed_encryption_kids:
            raise EncryptionKeyDestroyedError(
                f"message {header.id} is sealed to encryption key {header.enc_kid} of {recipient.agency_id}, "
                "destroyed because every message sealed to it has expired")
        raise WrongRecipientError(f"message {header.id} is sealed to key {header.enc_kid}, which {recipient.agency_id} does not hold")
    validity = recipient.encryption_validity.get(header.enc_kid)
    if validity is not None and header.created > validity[1] + policy.max_clock_skew:
        raise EncryptionKeyExpiredError(
            f"message {header.id} was created {format_ts(header.created)}, after encryption key {header.enc_kid} "
            f"ended ({format_ts(validity[1])}); the sender must seal to the key valid at sending time")
    if now > header.expires:
        raise ExpiredMessageError(f"message {header.id} expired at {format_ts(header.expires)}")
    if header.created > now + policy.max_clock_skew:
        raise ClockSkewError(
            f"message {header.id} created {format_ts(header.created)}, more than {policy.max_clock_skew} after our clock"
        )
    if header.expires - header.created > policy.max_lifetime:
        raise MalformedEnvelopeError(f"$.header.expires: lifetime exceeds the allowed {policy.max_lifetime}")
    if replay_guard is not None and replay_guard.seen(header.id):
        raise ReplayedMessageError(f"message id {header.id} was already accepted")
    if plaintext is None:
        assert private_key is not None  # checked above
        try:
            plaintext = SealedBox(private_key).decrypt(parsed.ciphertext)
        except CryptoError:
            raise DecryptionError(f"message {header.id} does not decrypt with key {header.enc_kid}") from None
    inner, payload_bytes = plaintext[:SIGNATURE_BYTES], plaintext[SIGNATURE_BYTES:]
    try:
        verify_key.verify(payload_signing_input(parsed.header_bytes, payload_bytes), inner)
    except NaclBadSignature:
        raise BadSignatureError(f"inner signature of message {header.id} from {header.sender} does not verify") from None
    payload = _decode_payload(payload_bytes, header.id)
    # The signed header names the payload's version; a payload of another version is a
    # schema violation (quarantined like any other), not something to guess around.
    mismatch = version_violations(payload, header.schema)
    if mismatch:
        raise SchemaInvalidError(header.type, mismatch)
    validate(header.type, payload)
    if replay_guard is not None:
        replay_guard.remember(header.id, header.expires)
    return OpenedMessage(header, payload, payload_bytes, inner)


def _decode_payload(payload_bytes: bytes, message_id: str) -> dict[str, Any]:
    try:
        # One byte string per payload: what was signed is exactly what is re-serialised and stored.
        payload, canonical = loads_canonical(payload_bytes)
    except (ValueError, RecursionError):  # includes rfc8785's out-of-range numbers
        raise MalformedEnvelopeError(f"payload of message {message_id} is not valid JSON") from None
    if not isinstance(payload, dict):
        raise MalformedEnvelopeError(f"payload of message {message_id} must be a JSON object")
    if not canonical:
        raise MalformedEnvelopeError(f"payload of message {message_id} is not RFC 8785 canonical")
    return payload


def _members(value: Any, required: set[str], optional: set[str], path: str) -> None:
    if not isinstance(value, dict):
        raise MalformedEnvelopeError(f"{path}: must be an object")
    missing = required - value.keys()
    extra = value.keys() - required - optional
    if missing:
        raise MalformedEnvelopeError(f"{path}: missing member(s) {sorted(missing)}")
    if extra:
        # Only identifier-like names are echoed: a name with spaces could be someone's name,
        # and error text ends up in logs and quarantine records.
        shown = sorted(k for k in extra if _SAFE_NAME.fullmatch(k))
        hidden = len(extra) - len(shown)
        raise MalformedEnvelopeError(
            f"{path}: unexpected member(s) {shown}" + (f" and {hidden} not shown" if hidden else "")
        )


def _field(value: str, pattern: re.Pattern[str], path: str, what: str) -> None:
    if not pattern.fullmatch(value):
        raise MalformedEnvelopeError(f"{path}: must be {what}")


def _b64(value: Any, path: str) -> bytes:
    try:
        return b64url_decode(value)
    except ValueError:
        raise MalformedEnvelopeError(f"{path}: must be unpadded base64url") from None


__all__ = [
    "DEFAULT_POLICY", "EnvelopeError", "EnvelopePolicy", "FORMAT", "Header", "MemoryReplayGuard",
    "OpenedMessage", "ParsedEnvelope", "RecipientRefusesError", "ReplayGuard", "envelope_bytes", "open_sealed",
    "parse_envelope", "parse_header", "parse_sealed", "seal", "verify_origin",
]
