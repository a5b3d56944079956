"""The agency directory (trust list): agencies, their public keys, revocations.

The directory document is signed by a directory authority and verified on load; nothing
in it is trusted before that. Parsing is strict: unknown members are rejected, so a
field added by a newer authority is noticed rather than silently ignored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType
from typing import Any, Iterable, Literal, Mapping

from nacl.exceptions import BadSignatureError as NaclBadSignature
from nacl.signing import SigningKey, VerifyKey

from gateway.b64 import b64url_decode, b64url_encode
from gateway.canonical import canonical_bytes, strict_loads
from gateway.clock import parse_ts
from gateway.errors import (
    DirectorySignatureError,
    KeyExpiredError,
    KeyRevokedError,
    MalformedDirectoryError,
    NoValidKeyError,
    UnknownAgencyError,
    UnknownSenderError,
)
from gateway.keys import key_id
from gateway.schema import SCHEMA_VERSIONS

FORMAT = "rgw-directory/1"
#: Domain separation: a directory signature can never be mistaken for an envelope signature.
SIGNING_CONTEXT = b"RGW1-DIRECTORY\x00"

AGENCY_ID = re.compile(r"^[A-Z]{2}-[A-Z0-9]+(?:-[A-Z0-9]+)*$")
COUNTRY = re.compile(r"^[A-Z]{2}$")
KID = re.compile(r"^[0-9a-f]{32}$")

ROLES = frozenset(
    {"law_enforcement", "child_protection", "shelter", "iom_mission", "social_services",
     "health_service", "legal_service", "ngo", "national_referral_mechanism", "unhcr"}
)
ORG_TYPES = frozenset(
    {"ngo", "law_enforcement", "health_service", "central_government", "local_government",
     "immigration_service", "legal_service", "international_organisation"}
)
KeyUse = Literal["sig", "enc"]
_ALG_FOR_USE = {"sig": "Ed25519", "enc": "X25519"}


@dataclass(frozen=True)
class KeyRecord:
    """A public key of an agency with its validity period."""

    kid: str
    agency_id: str
    use: KeyUse
    public_key: bytes
    not_before: datetime
    not_after: datetime

    def valid_at(self, moment: datetime) -> bool:
        """True if ``moment`` lies within [not_before, not_after]."""
        return self.not_before <= moment <= self.not_after


@dataclass(frozen=True)
class Revocation:
    """A key withdrawn by the authority; a revoked key is never accepted again."""

    kid: str
    revoked_at: datetime
    reason: str


@dataclass(frozen=True)
class Agency:
    """One agency: who it is, what it may receive, and its public keys."""

    id: str
    country: str
    name: str
    org_type: str
    roles: frozenset[str]
    message_types: frozenset[str]
    purposes: frozenset[str]
    keys: tuple[KeyRecord, ...]
    #: Payload schema versions the agency's gateway accepts (absent from the entry: version 1 only).
    schema_versions: frozenset[str] = frozenset({"1"})


@dataclass(frozen=True)
class Directory:
    """A verified directory: look up agencies and keys by id and time."""

    authority: str
    serial: int
    issued: datetime
    demo: bool
    agencies: Mapping[str, Agency]
    revocations: Mapping[str, Revocation]

    def agency(self, agency_id: str) -> Agency:
        """Return the agency with this id or raise UnknownAgencyError."""
        try:
            return self.agencies[agency_id]
        except KeyError:
            raise UnknownAgencyError(f"agency {agency_id!r} is not in directory serial {self.serial}") from None

    def may_receive(self, agency_id: str, message_type: str, purposes: Iterable[str] = ()) -> bool:
        """True if the agency accepts this message type and every listed purpose."""
        agency = self.agency(agency_id)
        return message_type in agency.message_types and set(purposes) <= agency.purposes

    def schema_versions(self, agency_id: str) -> frozenset[str]:
        """The payload schema versions the agency accepts (its entry's ``schema_versions``)."""
        return self.agency(agency_id).schema_versions

    def sender_key(
        self, agency_id: str, kid: str, *, created: datetime, now: datetime, stored_at: datetime | None = None
    ) -> VerifyKey:
        """Return the signing key ``kid`` of ``agency_id`` if usable for a message created at ``created``.

        A key must belong to that agency, be a signing key, not be revoked, and be valid
        both when the message says it was created and now (so a stolen expired key cannot
        be used by back-dating ``created``). ``stored_at`` is for re-opening a message this
        gateway verified and stored at that time: revocations dated later do not apply.
        """
        agency = self.agencies.get(agency_id)
        if agency is None:
            raise UnknownSenderError(f"sender agency {agency_id!r} is not in the directory")
        record = next((k for k in agency.keys if k.kid == kid and k.use == "sig"), None)
        if record is None:
            raise UnknownSenderError(f"signing key {kid} is not a key of {agency_id}")
        revocation = self.revocations.get(kid)
        if revocation is not None and (stored_at is None or revocation.revoked_at <= stored_at):
            raise KeyRevokedError(f"signing key {kid} of {agency_id} was revoked")
        for label, moment in (("creation time", created), ("current time", now)):
            if not record.valid_at(moment):
                raise KeyExpiredError(f"signing key {kid} of {agency_id} is not valid at the {label}")
        return VerifyKey(record.public_key)

    def encryption_key(self, agency_id: str, *, at: datetime) -> KeyRecord:
        """Return the encryption key to seal to: the newest one valid at ``at`` and not revoked."""
        agency = self.agency(agency_id)
        usable = [k for k in agency.keys if k.use == "enc" and k.valid_at(at) and k.kid not in self.revocations]
        if not usable:
            raise NoValidKeyError(f"{agency_id} has no valid encryption key")
        return max(usable, key=lambda k: (k.not_before, k.kid))

    def key_status(self, kid: str, *, at: datetime) -> str:
        """Describe a key id as ``valid``, ``revoked``, ``expired`` or ``unknown`` (for tooling)."""
        if kid in self.revocations:
            return "revoked"
        for agency in self.agencies.values():
            for record in agency.keys:
                if record.kid == kid:
                    return "valid" if record.valid_at(at) else "expired"
        return "unknown"


# --- signing and loading ----------------------------------------------------------------


def sign_directory(document: Mapping[str, Any], authority_key: SigningKey) -> bytes:
    """Check an unsigned directory document, sign it, and return the signed file's bytes."""
    parse_document(document)  # refuse to sign something we would refuse to load
    signature = authority_key.sign(SIGNING_CONTEXT + canonical_bytes(document)).signature
    signed = {
        "directory": document,
        "signature": {
            "alg": "Ed25519",
            "kid": key_id(bytes(authority_key.verify_key)),
            "value": b64url_encode(signature),
        },
    }
    return canonical_bytes(signed) + b"\n"


def load_directory(data: bytes, trusted_authority_keys: Iterable[bytes]) -> Directory:
    """Verify a signed directory against trusted authority public keys and parse it."""
    try:
        signed = strict_loads(data)
    except (ValueError, RecursionError) as exc:
        raise MalformedDirectoryError(f"directory is not valid JSON: {exc}") from None
    _exact_keys(signed, {"directory", "signature"}, "$")
    sig = signed["signature"]
    _exact_keys(sig, {"alg", "kid", "value"}, "$.signature")
    if sig["alg"] != "Ed25519":
        raise MalformedDirectoryError("$.signature.alg: must be 'Ed25519'")
    if not isinstance(sig["kid"], str):
        raise MalformedDirectoryError("$.signature.kid: must be a string")
    anchors = {key_id(raw): raw for raw in trusted_authority_keys}
    raw = anchors.get(sig["kid"])
    if raw is None:
        raise DirectorySignatureError(f"directory signed by untrusted authority key {sig['kid']!r}")
    try:
        value = b64url_decode(sig["value"])
        VerifyKey(raw).verify(SIGNING_CONTEXT + canonical_bytes(signed["directory"]), value)
    except (ValueError, NaclBadSignature):
        raise DirectorySignatureError("directory signature does not verify") from None
    return parse_document(signed["directory"])


def parse_document(doc: Any) -> Directory:
    """Parse an (already verified or about-to-be-signed) directory document strictly."""
    _exact_keys(doc, {"format", "authority", "serial", "issued", "demo", "agencies", "revocations"}, "$")
    if doc["format"] != FORMAT:
        raise MalformedDirectoryError(f"$.format: expected {FORMAT!r}")
    serial = doc["serial"]
    if not isinstance(serial, int) or isinstance(serial, bool) or serial < 1:
        raise MalformedDirectoryError("$.serial: must be a positive integer")
    if not isinstance(doc["demo"], bool):
        raise MalformedDirectoryError("$.demo: must be true or false")
    agencies: dict[str, Agency] = {}
    seen_kids: set[str] = set()
    for i, entry in enumerate(_list(doc["agencies"], "$.agencies")):
        agency = _parse_agency(entry, f"$.agencies[{i}]", seen_kids)
        if agency.id in agencies:
            raise MalformedDirectoryError(f"$.agencies[{i}].id: duplicate agency {agency.id}")
        agencies[agency.id] = agency
    revocations: dict[str, Revocation] = {}
    for i, entry in enumerate(_list(doc["revocations"], "$.revocations")):
        path = f"$.revocations[{i}]"
        _exact_keys(entry, {"kid", "revoked_at", "reason"}, path)
        kid = _match(entry["kid"], KID, f"{path}.kid")
        revocations[kid] = Revocation(kid, _ts(entry["revoked_at"], f"{path}.revoked_at"), _text(entry["reason"], f"{path}.reason"))
    return Directory(
        authority=_text(doc["authority"], "$.authority"),
        serial=serial,
        issued=_ts(doc["issued"], "$.issued"),
        demo=doc["demo"],
        agencies=MappingProxyType(agencies),
        revocations=MappingProxyType(revocations),
    )


def _parse_agency(entry: Any, path: str, seen_kids: set[str]) -> Agency:
    optional = {"schema_versions"} & (entry.keys() if isinstance(entry, dict) else set())
    _exact_keys(entry, {"id", "country", "name", "org_type", "roles", "accepts", "keys"} | optional, path)
    agency_id = _match(entry["id"], AGENCY_ID, f"{path}.id")
    country = _match(entry["country"], COUNTRY, f"{path}.country")
    if not agency_id.startswith(country + "-"):
        raise MalformedDirectoryError(f"{path}.id: must start with the country code {country}-")
    org_type = entry["org_type"]
    if org_type not in ORG_TYPES:
        raise MalformedDirectoryError(f"{path}.org_type: must be one of {sorted(ORG_TYPES)}")
    roles = frozenset(_strings(entry["roles"], f"{path}.roles"))
    if not roles or not roles <= ROLES:
        raise MalformedDirectoryError(f"{path}.roles: must be a non-empty subset of {sorted(ROLES)}")
    accepts = entry["accepts"]
    _exact_keys(accepts, {"message_types", "purposes"}, f"{path}.accepts")
    keys = []
    for j, key in enumerate(_list(entry["keys"], f"{path}.keys")):
        record = _parse_key(key, agency_id, f"{path}.keys[{j}]")
        if record.kid in seen_kids:
            raise MalformedDirectoryError(f"{path}.keys[{j}].kid: key {record.kid} listed twice")
        seen_kids.add(record.kid)
        keys.append(record)
    return Agency(
        id=agency_id,
        country=country,
        name=_text(entry["name"], f"{path}.name"),
        org_type=org_type,
        roles=roles,
        message_types=frozenset(_strings(accepts["message_types"], f"{path}.accepts.message_types")),
        purposes=frozenset(_strings(accepts["purposes"], f"{path}.accepts.purposes")),
        keys=tuple(keys),
        schema_versions=_schema_versions(entry.get("schema_versions", ["1"]), f"{path}.schema_versions"),
    )


def _schema_versions(value: Any, path: str) -> frozenset[str]:
    versions = _strings(value, path)
    if not versions or len(set(versions)) != len(versions) or not set(versions) <= set(SCHEMA_VERSIONS):
        raise MalformedDirectoryError(
            f"{path}: must be a non-empty list of distinct versions among {list(SCHEMA_VERSIONS)}")
    return frozenset(versions)


def _parse_key(key: Any, agency_id: str, path: str) -> KeyRecord:
    _exact_keys(key, {"kid", "use", "alg", "public_key", "not_before", "not_after"}, path)
    use = key["use"]
    if use not in _ALG_FOR_USE:
        raise MalformedDirectoryError(f"{path}.use: must be 'sig' or 'enc'")
    if key["alg"] != _ALG_FOR_USE[use]:
        raise MalformedDirectoryError(f"{path}.alg: a {use!r} key must be {_ALG_FOR_USE[use]}")
    try:
        public_key = b64url_decode(key["public_key"])
    except ValueError:
        raise MalformedDirectoryError(f"{path}.public_key: not unpadded base64url") from None
    if len(public_key) != 32:
        raise MalformedDirectoryError(f"{path}.public_key: must decode to 32 bytes")
    if key["kid"] != key_id(public_key):
        raise MalformedDirectoryError(f"{path}.kid: does not match the public key")
    not_before = _ts(key["not_before"], f"{path}.not_before")
    not_after = _ts(key["not_after"], f"{path}.not_after")
    if not_after <= not_before:
        raise MalformedDirectoryError(f"{path}.not_after: must be later than not_before")
    return KeyRecord(key["kid"], agency_id, use, public_key, not_before, not_after)


def _exact_keys(value: Any, expected: set[str], path: str) -> None:
    if not isinstance(value, dict):
        raise MalformedDirectoryError(f"{path}: must be an object")
    missing, extra = expected - value.keys(), value.keys() - expected
    if missing:
        raise MalformedDirectoryError(f"{path}: missing member(s) {sorted(missing)}")
    if extra:
        raise MalformedDirectoryError(f"{path}: unexpected member(s) {sorted(extra)}")


def _list(value: Any, path: str) -> list[Any]:
    if not isinstance(value, list):
        raise MalformedDirectoryError(f"{path}: must be an array")
    return value


def _strings(value: Any, path: str) -> list[str]:
    items = _list(value, path)
    if not all(isinstance(v, str) for v in items):
        raise MalformedDirectoryError(f"{path}: must be an array of strings")
    return items


def _text(value: Any, path: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise MalformedDirectoryError(f"{path}: must be a non-empty string")
    return value


def _match(value: Any, pattern: re.Pattern[str], path: str) -> str:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise MalformedDirectoryError(f"{path}: must match {pattern.pattern}")
    return value


def _ts(value: Any, path: str) -> datetime:
    try:
        return parse_ts(value)
    except ValueError as exc:
        raise MalformedDirectoryError(f"{path}: {exc}") from None
