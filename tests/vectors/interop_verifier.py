"""A second rgw-envelope/1 receiver, written from docs/wire-format.md alone.

It imports nothing from ``gateway`` or ``testkit``: raw libsodium calls (PyNaCl's
``nacl.bindings``), ``hashlib``/``hmac``/``json`` from the standard library, its own RFC 8785
encoder, and, for check 15 only, the ``jsonschema`` package over the published
``schemas/v1`` and ``schemas/v2`` files. Where it disagrees with the gateway on a vector, the page is wrong
or incomplete. ``tests/test_interop_verifier.py`` runs it over every vector.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import struct
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from nacl.bindings import crypto_box, crypto_box_seal_open, crypto_sign_open
from nacl.exceptions import CryptoError

# --- the page's constants ----------------------------------------------------------------------

MAX_ENVELOPE = 256 * 1024
MAX_PAYLOAD = 64 * 1024
MAX_DEPTH = 32
MAX_SAFE = 2**53 - 1
SKEW = timedelta(minutes=5)
MAX_LIFETIME = timedelta(days=30)
TYPES = ("referral.request", "referral.response", "safety_assessment.result", "family_tracing.result",
         "return.plan", "return.arrival", "case.followup", "case.closure", "consent.withdrawal", "receipt",
         "consent.withdrawal.ack", "audit.checkpoint")
UUID4 = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
AGENCY = re.compile(r"[A-Z]{2}-[A-Z0-9]+(-[A-Z0-9]+)*")
KID = re.compile(r"[0-9a-f]{32}")
CASE = re.compile(r"[A-Za-z0-9._-]{8,64}")
TS = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z")
B64URL = re.compile(r"[A-Za-z0-9_-]*")
ORG_TYPES = {"central_government", "health_service", "immigration_service", "international_organisation",
             "law_enforcement", "legal_service", "local_government", "ngo"}
ROLES = {"child_protection", "health_service", "iom_mission", "law_enforcement", "legal_service",
         "national_referral_mechanism", "ngo", "shelter", "social_services", "unhcr"}
PURPOSES = {"assistance", "safety_assessment", "family_tracing", "assisted_return", "reintegration_handover",
            "criminal_justice_cooperation", "international_protection"}
SCHEMA_VERSIONS = {"1", "2"}
SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"


class Rejected(Exception):
    """The message (or directory) is refused; ``code`` is the page's code."""

    def __init__(self, code: str, why: str) -> None:
        super().__init__(f"{code}: {why}")
        self.code = code


# --- strict JSON and RFC 8785 -------------------------------------------------------------------


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    names = [name for name, _ in pairs]
    if len(set(names)) != len(names):
        raise ValueError("duplicate member name")
    return dict(pairs)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def strict_json(data: bytes) -> Any:
    """Parse per "JSON rules"; ValueError on anything the page refuses."""
    if data.startswith(b"\xef\xbb\xbf"):
        raise ValueError("byte order mark")
    try:
        value = json.loads(data.decode("utf-8"), object_pairs_hook=_pairs, parse_constant=_no_constant)
    except RecursionError:
        raise ValueError("too deep") from None
    stack = [(value, 0)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, (dict, list)):
            if depth + 1 > MAX_DEPTH:
                raise ValueError("too deep")
            items = list(node.items()) if isinstance(node, dict) else [(None, v) for v in node]
            for name, child in items:
                if name is not None:
                    _check_text(name)
                stack.append((child, depth + 1))
        elif isinstance(node, str):
            _check_text(node)
    return value


def _check_text(text: str) -> None:
    if any(0xD800 <= ord(ch) <= 0xDFFF for ch in text):
        raise ValueError("lone surrogate")


def jcs(value: Any) -> bytes:
    """RFC 8785 bytes of a parsed JSON value."""
    return _jcs(value).encode("utf-8")


def _jcs(value: Any) -> str:
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        if abs(value) > MAX_SAFE:
            raise ValueError("integer outside ±(2^53−1)")
        return str(value)
    if isinstance(value, float):
        return _es_number(value)
    if isinstance(value, str):
        return _jcs_string(value)
    if isinstance(value, list):
        return "[" + ",".join(_jcs(v) for v in value) + "]"
    if isinstance(value, dict):
        names = sorted(value, key=lambda k: k.encode("utf-16-be"))  # UTF-16 code unit order
        return "{" + ",".join(_jcs_string(k) + ":" + _jcs(value[k]) for k in names) + "}"
    raise ValueError("not a JSON value")


_SHORT = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


def _jcs_string(text: str) -> str:
    _check_text(text)
    out = []
    for ch in text:
        if ch in _SHORT:
            out.append(_SHORT[ch])
        elif ord(ch) < 0x20:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _es_number(x: float) -> str:
    """ECMAScript Number::toString, as RFC 8785 §3.2.2.3 requires."""
    if x != x or x in (float("inf"), float("-inf")):
        raise ValueError("not a finite number")
    if x == 0:
        return "0"
    sign, x = ("-" if x < 0 else ""), abs(x)
    mantissa, _, exp_text = repr(x).partition("e")
    whole, _, frac = mantissa.partition(".")
    exp = int(exp_text) if exp_text else 0
    if whole != "0":
        n = len(whole) + exp
        digits = (whole + frac).lstrip("0")
    else:
        n = exp - (len(frac) - len(frac.lstrip("0")))
        digits = frac.lstrip("0")
    digits = digits.rstrip("0")
    k = len(digits)
    if k <= n <= 21:
        return sign + digits + "0" * (n - k)
    if 0 < n <= 21:
        return sign + digits[:n] + "." + digits[n:]
    if -6 < n <= 0:
        return sign + "0." + "0" * (-n) + digits
    e = n - 1
    tail = ("+" if e >= 0 else "-") + str(abs(e))
    return sign + digits[0] + ("." + digits[1:] if k > 1 else "") + "e" + tail


def b64url(text: Any) -> bytes:
    """Unpadded base64url, canonical only (no padding, no stray trailing bits)."""
    if not isinstance(text, str) or not B64URL.fullmatch(text) or len(text) % 4 == 1:
        raise ValueError("not unpadded base64url")
    data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if base64.urlsafe_b64encode(data).rstrip(b"=").decode() != text:
        raise ValueError("non-canonical base64url")
    return data


def timestamp(text: Any) -> datetime:
    """``YYYY-MM-DDTHH:MM:SSZ`` and a real calendar time."""
    if not isinstance(text, str) or not TS.fullmatch(text):
        raise ValueError("not a timestamp")
    return datetime(int(text[0:4]), int(text[5:7]), int(text[8:10]), int(text[11:13]), int(text[14:16]),
                    int(text[17:19]), tzinfo=timezone.utc)


def key_id(public_key: bytes) -> str:
    """hex(SHA-256(raw public key)[0:16])."""
    return hashlib.sha256(public_key).digest()[:16].hex()


def verify(signature: bytes, message: bytes, public_key: bytes) -> bool:
    """crypto_sign_verify_detached, via the combined-mode binding."""
    try:
        return crypto_sign_open(signature + message, public_key) == message
    except CryptoError:
        return False


def framed(context: bytes, first: bytes, second: bytes) -> bytes:
    """context || u32be(len(first)) || first || u32be(len(second)) || second."""
    return context + struct.pack(">I", len(first)) + first + struct.pack(">I", len(second)) + second


# --- the directory ----------------------------------------------------------------------------


@dataclass
class Key:
    kid: str
    use: str
    public_key: bytes
    not_before: datetime
    not_after: datetime


@dataclass
class Directory:
    serial: int
    agencies: dict[str, dict[str, Any]]
    keys: dict[str, dict[str, Key]]  # agency id -> kid -> key
    revoked: set[str] = field(default_factory=set)


def _exact(value: Any, members: set[str], where: str) -> dict[str, Any]:
    if not isinstance(value, dict) or set(value) != members:
        raise Rejected("directory_malformed", f"{where}: members must be exactly {sorted(members)}")
    return value


def _blank(value: Any) -> bool:
    return not isinstance(value, str) or not value.strip()


def load_directory(data: bytes, authority_public_keys: list[bytes]) -> Directory:
    """Verify and parse a signed directory per "The agency directory"."""
    try:
        signed = strict_json(data)
    except ValueError:
        raise Rejected("directory_malformed", "not strict JSON") from None
    _exact(signed, {"directory", "signature"}, "$")
    sig = _exact(signed["signature"], {"alg", "kid", "value"}, "$.signature")
    if sig["alg"] != "Ed25519":
        raise Rejected("directory_malformed", "alg")
    pinned = {key_id(k): k for k in authority_public_keys}
    if sig["kid"] not in pinned:
        raise Rejected("directory_bad_signature", "unpinned authority key")
    try:
        value = b64url(sig["value"])
    except ValueError:
        raise Rejected("directory_bad_signature", "signature encoding") from None
    if not verify(value, b"RGW1-DIRECTORY\x00" + jcs(signed["directory"]), pinned[sig["kid"]]):
        raise Rejected("directory_bad_signature", "signature does not verify")
    d = _exact(signed["directory"], {"format", "authority", "serial", "issued", "demo", "agencies", "revocations"}, "$")
    serial = d["serial"]
    if d["format"] != "rgw-directory/1" or _blank(d["authority"]) or type(serial) is not int or serial < 1 \
            or not isinstance(d["demo"], bool):
        raise Rejected("directory_malformed", "format, authority, serial or demo")
    _ts(d["issued"])
    directory = Directory(serial, {}, {})
    seen: set[str] = set()
    for agency in _array(d["agencies"]):
        optional = {"schema_versions"} & set(agency) if isinstance(agency, dict) else set()
        a = _exact(agency, {"id", "country", "name", "org_type", "roles", "accepts", "keys"} | optional, "agency")
        versions = a.get("schema_versions", ["1"])
        if not isinstance(versions, list) or not versions or len(set(map(str, versions))) != len(versions) \
                or not all(isinstance(v, str) and v in SCHEMA_VERSIONS for v in versions):
            raise Rejected("directory_malformed", "schema_versions")
        if not (isinstance(a["id"], str) and AGENCY.fullmatch(a["id"]) and isinstance(a["country"], str)
                and re.fullmatch(r"[A-Z]{2}", a["country"]) and a["id"].startswith(a["country"] + "-")):
            raise Rejected("directory_malformed", "agency id or country")
        roles = _array(a["roles"])
        if _blank(a["name"]) or a["org_type"] not in ORG_TYPES or not roles or not set(roles) <= ROLES \
                or a["id"] in directory.agencies:
            raise Rejected("directory_malformed", "name, org_type, roles or duplicate agency")
        accepts = _exact(a["accepts"], {"message_types", "purposes"}, "accepts")
        if not all(isinstance(x, str) for x in _array(accepts["message_types"]) + _array(accepts["purposes"])) \
                or not set(accepts["message_types"]) <= set(TYPES) or not set(accepts["purposes"]) <= PURPOSES:
            raise Rejected("directory_malformed", "accepts")
        directory.agencies[a["id"]] = a
        keys = directory.keys.setdefault(a["id"], {})
        for entry in _array(a["keys"]):
            k = _exact(entry, {"kid", "use", "alg", "public_key", "not_before", "not_after"}, "key")
            try:
                raw = b64url(k["public_key"])
            except ValueError:
                raise Rejected("directory_malformed", "public_key") from None
            if (k["use"], k["alg"]) not in (("sig", "Ed25519"), ("enc", "X25519")) or len(raw) != 32 \
                    or k["kid"] != key_id(raw) or k["kid"] in seen:
                raise Rejected("directory_malformed", "key")
            seen.add(k["kid"])
            record = Key(k["kid"], k["use"], raw, _ts(k["not_before"]), _ts(k["not_after"]))
            if record.not_after <= record.not_before:
                raise Rejected("directory_malformed", "validity window")
            keys[k["kid"]] = record
    for entry in _array(d["revocations"]):
        r = _exact(entry, {"kid", "revoked_at", "reason"}, "revocation")
        if not (isinstance(r["kid"], str) and KID.fullmatch(r["kid"])) or _blank(r["reason"]):
            raise Rejected("directory_malformed", "revocation")
        _ts(r["revoked_at"])
        directory.revoked.add(r["kid"])
    return directory


def _array(value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise Rejected("directory_malformed", "must be an array")
    return value


def _ts(value: Any) -> datetime:
    try:
        return timestamp(value)
    except ValueError:
        raise Rejected("directory_malformed", "timestamp") from None


CONTROL_TYPES = {"receipt", "consent.withdrawal.ack", "audit.checkpoint"}


def accepted_types(directory: Directory, agency_id: str) -> set[str]:
    """The message types an agency receives: its list, the control types, and
    ``consent.withdrawal`` if it lists anything else ("The agency directory", ``accepts``)."""
    listed = set(directory.agencies[agency_id]["accepts"]["message_types"])
    implied = CONTROL_TYPES | ({"consent.withdrawal"} if listed - CONTROL_TYPES - {"consent.withdrawal"} else set())
    return listed | implied


def serial_verdict(held: int | None, offered: Directory) -> str:
    """"accepted" if the offered directory may replace the held one, else "directory_rollback"."""
    return "accepted" if held is None or offered.serial > held else "directory_rollback"


# --- opening an envelope ----------------------------------------------------------------------


@dataclass
class Opened:
    header: dict[str, str]
    payload: dict[str, Any]
    payload_bytes: bytes


def open_envelope(data: bytes, *, me: str, my_keys: dict[str, tuple[bytes, bytes]], directory: Directory,
                  now: datetime, seen_ids: set[str]) -> Opened:
    """Checks 1–15 in order; ``my_keys`` maps an enc key id to (public, secret)."""
    if len(data) > MAX_ENVELOPE:  # 1
        raise Rejected("oversize", "envelope too long")
    header, h, c, sig = _check_structure(data)  # 2
    created, expires = timestamp(header["created"]), timestamp(header["expires"])
    key = directory.keys.get(header["sender"], {}).get(header["sig_kid"])
    if key is None or key.use != "sig":  # 3
        raise Rejected("unknown_sender", "sender or signing key not in the directory")
    if key.kid in directory.revoked:  # 4
        raise Rejected("key_revoked", "signing key revoked")
    if not all(key.not_before <= t <= key.not_after for t in (created, now)):  # 5
        raise Rejected("key_expired", "signing key not valid at created or now")
    if not verify(sig, framed(b"RGW1-ENVELOPE\x00", h, c), key.public_key):  # 6
        raise Rejected("bad_signature", "outer")
    if header["recipient"] != me or header["enc_kid"] not in my_keys:  # 7
        raise Rejected("wrong_recipient", "not for us")
    if now > expires:  # 8
        raise Rejected("expired_message", "expired")
    if created > now + SKEW:  # 9
        raise Rejected("clock_skew", "created in the future")
    if expires - created > MAX_LIFETIME:  # 10
        raise Rejected("malformed", "lifetime")
    if header["id"] in seen_ids:  # 11
        raise Rejected("replayed_message", "id seen before")
    public, secret = my_keys[header["enc_kid"]]
    try:
        plaintext = crypto_box_seal_open(c, public, secret)  # 12
    except CryptoError:
        raise Rejected("decryption_failed", "sealed box does not open") from None
    inner, p = plaintext[:64], plaintext[64:]
    if not verify(inner, framed(b"RGW1-PAYLOAD\x00", h, p), key.public_key):  # 13
        raise Rejected("bad_signature", "inner")
    try:  # 14
        payload = strict_json(p)
        canonical = isinstance(payload, dict) and jcs(payload) == p
    except ValueError:
        raise Rejected("malformed", "payload is not strict JSON") from None
    if not canonical:
        raise Rejected("malformed", "payload is not an RFC 8785 object")
    # 15: a v2 payload says so (`schema_version` "2"); a v1 payload has no such member
    version = payload.get("schema_version", "1") if isinstance(payload, dict) else "1"
    if version != header["schema"] or not schema_valid(header["type"], payload, version):  # 15
        raise Rejected("schema_invalid", "payload breaks its schema")
    seen_ids.add(header["id"])
    return Opened(header, payload, p)


def _check_structure(data: bytes) -> tuple[dict[str, str], bytes, bytes, bytes]:
    def bad(why: str) -> Rejected:
        return Rejected("malformed", why)

    try:
        env = strict_json(data)
    except ValueError as exc:
        raise bad(str(exc)) from None
    if not isinstance(env, dict) or set(env) != {"format", "header", "ciphertext", "signature"}:
        raise bad("top-level members")
    if env["format"] != "rgw-envelope/1":
        raise bad("format")
    header = env["header"]
    required = {"id", "type", "schema", "sender", "recipient", "created", "expires", "sig_kid", "enc_kid", "case"}
    if not isinstance(header, dict) or not required <= set(header) <= required | {"in_reply_to"}:
        raise bad("header members")
    if not all(isinstance(v, str) for v in header.values()):
        raise bad("header values must be strings")
    rules = [("id", UUID4), ("sender", AGENCY), ("recipient", AGENCY), ("sig_kid", KID), ("enc_kid", KID),
             ("case", CASE), ("in_reply_to", UUID4)]
    for name, pattern in rules:
        if name in header and not pattern.fullmatch(header[name]):
            raise bad(name)
    if header["type"] not in TYPES or header["schema"] not in SCHEMA_VERSIONS:
        raise bad("type or schema")
    try:
        if timestamp(header["expires"]) <= timestamp(header["created"]):
            raise bad("expires must be later than created")
        c, sig = b64url(env["ciphertext"]), b64url(env["signature"])
    except ValueError as exc:
        raise bad(str(exc)) from None
    if len(sig) != 64 or not 48 + 64 < len(c) <= 48 + 64 + MAX_PAYLOAD:
        raise bad("signature or ciphertext length")
    return header, jcs(header), c, sig


# --- check 15: the published schemas ----------------------------------------------------------

_VALIDATORS: dict[str, dict[str, Any]] = {}


def schema_valid(message_type: str, payload: Any, version: str = "1") -> bool:
    """JSON Schema 2020-12 over schemas/v<version>, with `format` date/date-time as "the day exists"."""
    if version not in _VALIDATORS:
        _VALIDATORS[version] = _load_validators(SCHEMAS / f"v{version}")
    return bool(_VALIDATORS[version][message_type].is_valid(payload))


def _load_validators(folder: Path) -> dict[str, Any]:
    from jsonschema import Draft202012Validator, FormatChecker
    from referencing import Registry, Resource

    docs = [json.loads(p.read_text(encoding="utf-8")) for p in sorted(folder.glob("*.schema.json"))]
    registry = Registry().with_resources((d["$id"], Resource.from_contents(d)) for d in docs)
    formats = FormatChecker(formats=())
    formats.checks("date", raises=ValueError)(_real_date)
    formats.checks("date-time", raises=ValueError)(_real_date)
    validators: dict[str, Any] = {}
    for d in docs:
        validators[d["$id"].rsplit("/", 1)[1].removesuffix(".schema.json")] = Draft202012Validator(
            d, registry=registry, format_checker=formats)
    return validators


def _real_date(value: object) -> bool:
    # The pattern fixes the shape; `format` only asks that the day exists.
    if isinstance(value, str) and re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}(T.*)?", value):
        datetime(int(value[0:4]), int(value[5:7]), int(value[8:10]))
    return True


# --- case pseudonyms --------------------------------------------------------------------------


def case_pseudonym(secret: bytes, local_case_id: str, sender_country: str, recipient_country: str) -> str:
    """Steps 1–5 of "Case pseudonyms"."""
    s, r = sender_country.upper(), recipient_country.upper()
    mac = hmac.new(secret, f"rgw-case-v1|{s}|{r}|{local_case_id}".encode("utf-8"), hashlib.sha256).digest()
    return f"{s.lower()}-{r.lower()}-{base64.b32encode(mac[:15]).decode('ascii').lower()}"


# --- sealed box -------------------------------------------------------------------------------


def seal_with(message: bytes, recipient_public: bytes, ephemeral_secret: bytes, ephemeral_public: bytes) -> bytes:
    """crypto_box_seal with a given ephemeral key pair ("Sealed box")."""
    nonce = hashlib.blake2b(ephemeral_public + recipient_public, digest_size=24).digest()
    return ephemeral_public + crypto_box(message, nonce, recipient_public, ephemeral_secret)
