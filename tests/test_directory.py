"""The signed directory: every check in gateway/directory.py has a test that fails without it."""

from __future__ import annotations

import copy
import json
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

import pytest
from nacl.public import PrivateKey
from nacl.signing import SigningKey

from gateway.b64 import b64url_encode
from gateway.canonical import canonical_bytes, strict_loads
from gateway.clock import format_ts
from gateway.directory import SIGNING_CONTEXT, load_directory, parse_document, sign_directory
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

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
T1 = datetime(2027, 1, 1, tzinfo=timezone.utc)
MID = datetime(2026, 6, 1, tzinfo=timezone.utc)
AUTHORITY = SigningKey(b"\x01" * 32)


def key_entry(public_key: bytes, use: str, not_before: datetime = T0, not_after: datetime = T1) -> dict[str, str]:
    return {
        "kid": key_id(public_key),
        "use": use,
        "alg": "Ed25519" if use == "sig" else "X25519",
        "public_key": b64url_encode(public_key),
        "not_before": format_ts(not_before),
        "not_after": format_ts(not_after),
    }


def sig_entry(seed: int, **kw: Any) -> dict[str, str]:
    return key_entry(bytes(SigningKey(bytes([seed]) * 32).verify_key), "sig", **kw)


def enc_entry(seed: int, **kw: Any) -> dict[str, str]:
    return key_entry(bytes(PrivateKey(bytes([seed]) * 32).public_key), "enc", **kw)


def agency(agency_id: str, keys: list[dict[str, str]]) -> dict[str, Any]:
    return {
        "id": agency_id,
        "country": agency_id[:2],
        "name": f"Agency {agency_id}",
        "org_type": "central_government",
        "roles": ["national_referral_mechanism"],
        "accepts": {"message_types": ["referral.request", "receipt"], "purposes": ["assistance", "family_tracing"]},
        "keys": keys,
    }


def document(**overrides: Any) -> dict[str, Any]:
    doc = {
        "format": "rgw-directory/1",
        "authority": "TEST-AUTHORITY",
        "serial": 1,
        "issued": format_ts(T0),
        "demo": False,
        "agencies": [
            agency("NE-ANLTP-TIM", [sig_entry(10), enc_entry(11)]),
            agency("NG-NAPTIP", [sig_entry(20), enc_entry(21)]),
        ],
        "revocations": [],
    }
    doc.update(overrides)
    return doc


def signed(doc: dict[str, Any] | None = None) -> bytes:
    return sign_directory(doc or document(), AUTHORITY)


def load(data: bytes) -> Any:
    return load_directory(data, [bytes(AUTHORITY.verify_key)])


def resign(doc: dict[str, Any]) -> bytes:
    """Sign without sign_directory's pre-check, to reach load-time checks."""
    sig = AUTHORITY.sign(SIGNING_CONTEXT + canonical_bytes(doc)).signature
    return canonical_bytes({
        "directory": doc,
        "signature": {"alg": "Ed25519", "kid": key_id(bytes(AUTHORITY.verify_key)), "value": b64url_encode(sig)},
    })


NE_SIG = sig_entry(10)["kid"]
NE_ENC = enc_entry(11)["kid"]
NG_SIG = sig_entry(20)["kid"]


# --- signature and trust ----------------------------------------------------------------


def test_round_trip() -> None:
    directory = load(signed())
    assert directory.serial == 1 and directory.authority == "TEST-AUTHORITY" and directory.demo is False
    assert set(directory.agencies) == {"NE-ANLTP-TIM", "NG-NAPTIP"}


def test_every_byte_of_the_document_is_covered_by_the_signature() -> None:
    data = signed()
    outer = strict_loads(data)
    inner = canonical_bytes(outer["directory"])
    prefix, suffix = data.split(inner)
    still_json = 0
    for i in range(len(inner)):
        mutated = inner[:i] + bytes([inner[i] ^ 0x01]) + inner[i + 1:]
        tampered = prefix + mutated + suffix
        try:
            strict_loads(tampered)
        except ValueError:
            with pytest.raises(MalformedDirectoryError):
                load(tampered)
            continue
        still_json += 1
        with pytest.raises(DirectorySignatureError):
            load(tampered)
    assert still_json > len(inner) // 2  # most flips keep valid JSON, so the signature is what caught them


def test_tampered_signature_value() -> None:
    outer = json.loads(signed())
    outer["signature"]["value"] = b64url_encode(b"\x00" * 64)
    with pytest.raises(DirectorySignatureError, match="does not verify"):
        load(json.dumps(outer).encode())
    outer["signature"]["value"] = "not base64!"
    with pytest.raises(DirectorySignatureError):
        load(json.dumps(outer).encode())


def test_signature_covers_the_context_string() -> None:
    doc = document()
    sig = AUTHORITY.sign(canonical_bytes(doc)).signature  # no domain-separation prefix
    data = json.dumps({
        "directory": doc,
        "signature": {"alg": "Ed25519", "kid": key_id(bytes(AUTHORITY.verify_key)), "value": b64url_encode(sig)},
    }).encode()
    with pytest.raises(DirectorySignatureError):
        load(data)


def test_untrusted_authority() -> None:
    other = SigningKey(b"\x02" * 32)
    with pytest.raises(DirectorySignatureError, match="untrusted authority"):
        load_directory(sign_directory(document(), other), [bytes(AUTHORITY.verify_key)])
    with pytest.raises(DirectorySignatureError):
        load_directory(signed(), [])


def test_trusts_any_of_several_authority_keys() -> None:
    other = SigningKey(b"\x02" * 32)
    assert load_directory(signed(), [bytes(other.verify_key), bytes(AUTHORITY.verify_key)]).serial == 1


@pytest.mark.parametrize("data", [b"{", b"\xff", b'{"directory": {}, "directory": {}}', b"[]", b'{"a": NaN}'])
def test_not_json_or_not_an_object(data: bytes) -> None:
    with pytest.raises(MalformedDirectoryError):
        load(data)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda s: s.pop("signature"),
        lambda s: s.update(extra=1),
        lambda s: s["signature"].pop("kid"),
        lambda s: s["signature"].update(extra=1),
        lambda s: s["signature"].update(alg="EdDSA"),
        lambda s: s["signature"].update(kid=["not", "a", "string"]),
        lambda s: s.update(signature="Ed25519"),
    ],
    ids=["no-signature", "outer-extra", "sig-no-kid", "sig-extra", "sig-alg", "sig-kid-type", "sig-not-object"],
)
def test_signed_wrapper_is_strict(mutate: Callable[[dict[str, Any]], Any]) -> None:
    outer = json.loads(signed())
    mutate(outer)
    with pytest.raises(MalformedDirectoryError):
        load(json.dumps(outer).encode())


def test_sign_directory_refuses_an_invalid_document() -> None:
    with pytest.raises(MalformedDirectoryError):
        sign_directory(document(serial=0), AUTHORITY)


# --- document structure -----------------------------------------------------------------


def _set(path: list[Any], value: Any) -> Callable[[dict[str, Any]], None]:
    def apply(doc: dict[str, Any]) -> None:
        target = doc
        for step in path[:-1]:
            target = target[step]
        target[path[-1]] = value
    return apply


def _drop(path: list[Any]) -> Callable[[dict[str, Any]], None]:
    def apply(doc: dict[str, Any]) -> None:
        target = doc
        for step in path[:-1]:
            target = target[step]
        del target[path[-1]]
    return apply


A0 = ["agencies", 0]
K0 = ["agencies", 0, "keys", 0]
REVOKE = {"kid": NE_SIG, "revoked_at": format_ts(MID), "reason": "key compromised"}

BAD_DOCUMENTS: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "unknown member": (_set(["extra"], 1), r"unexpected member"),
    "missing member": (_drop(["revocations"]), r"missing member"),
    "format": (_set(["format"], "rgw-directory/2"), r"\$\.format"),
    "serial zero": (_set(["serial"], 0), r"\$\.serial"),
    "serial bool": (_set(["serial"], True), r"\$\.serial"),
    "serial string": (_set(["serial"], "1"), r"\$\.serial"),
    "demo not bool": (_set(["demo"], "yes"), r"\$\.demo"),
    "authority empty": (_set(["authority"], " "), r"\$\.authority"),
    "issued": (_set(["issued"], "2026-01-01"), r"\$\.issued"),
    "agencies not list": (_set(["agencies"], {}), r"\$\.agencies"),
    "revocations not list": (_set(["revocations"], {}), r"\$\.revocations"),
    "agency unknown member": (_set(A0 + ["extra"], 1), r"agencies\[0\].*unexpected"),
    "agency not object": (_set(A0, "NE-ANLTP-TIM"), r"agencies\[0\]"),
    "agency id": (_set(A0 + ["id"], "ne-anltp"), r"agencies\[0\]\.id"),
    "country": (_set(A0 + ["country"], "NER"), r"agencies\[0\]\.country"),
    "id not in country": (_set(A0 + ["country"], "ML"), r"country code ML"),
    "org_type": (_set(A0 + ["org_type"], "ministry"), r"org_type"),
    "roles empty": (_set(A0 + ["roles"], []), r"roles"),
    "role unknown": (_set(A0 + ["roles"], ["spy"]), r"roles"),
    "role not a string": (_set(A0 + ["roles"], [{"role": "shelter"}]), r"roles"),
    "name empty": (_set(A0 + ["name"], ""), r"agencies\[0\]\.name"),
    "accepts unknown member": (_set(A0 + ["accepts", "extra"], []), r"accepts"),
    "message_types not strings": (_set(A0 + ["accepts", "message_types"], [1]), r"message_types"),
    "purposes not list": (_set(A0 + ["accepts", "purposes"], "assistance"), r"purposes"),
    "key unknown member": (_set(K0 + ["extra"], 1), r"keys\[0\].*unexpected"),
    "key use": (_set(K0 + ["use"], "auth"), r"keys\[0\]\.use"),
    "wrong alg for use": (_set(K0 + ["alg"], "X25519"), r"keys\[0\]\.alg"),
    "public key not b64": (_set(K0 + ["public_key"], "AAA="), r"public_key"),
    "public key length": (_set(K0 + ["public_key"], b64url_encode(b"\x00" * 31)), r"32 bytes"),
    "kid mismatch": (_set(K0 + ["kid"], NG_SIG), r"kid: does not match"),
    "not_before": (_set(K0 + ["not_before"], "yesterday"), r"not_before"),
    "not_after before not_before": (_set(K0 + ["not_after"], format_ts(T0)), r"not_after"),
    "revocation unknown member": (_set(["revocations"], [dict(REVOKE, extra=1)]), r"revocations\[0\]"),
    "revocation kid": (_set(["revocations"], [dict(REVOKE, kid="ABC")]), r"revocations\[0\]\.kid"),
    "revocation time": (_set(["revocations"], [dict(REVOKE, revoked_at="now")]), r"revoked_at"),
    "revocation reason": (_set(["revocations"], [dict(REVOKE, reason="")]), r"reason"),
    "schema_versions empty": (_set(A0 + ["schema_versions"], []), r"agencies\[0\]\.schema_versions"),
    "schema_versions unknown": (_set(A0 + ["schema_versions"], ["1", "3"]), r"schema_versions"),
    "schema_versions twice": (_set(A0 + ["schema_versions"], ["2", "2"]), r"schema_versions"),
    "schema_versions not strings": (_set(A0 + ["schema_versions"], [2]), r"schema_versions"),
    "schema_versions not list": (_set(A0 + ["schema_versions"], "2"), r"schema_versions"),
}


@pytest.mark.parametrize("name", sorted(BAD_DOCUMENTS))
def test_malformed_document_is_refused(name: str) -> None:
    mutate, message = BAD_DOCUMENTS[name]
    doc = document()
    mutate(doc)
    with pytest.raises(MalformedDirectoryError, match=message):
        parse_document(doc)
    # ... also when it arrives correctly signed: the signature does not make it acceptable.
    with pytest.raises(MalformedDirectoryError, match=message):
        load(resign(doc))


def test_duplicate_kid_within_an_agency() -> None:
    doc = document()
    doc["agencies"][0]["keys"].append(copy.deepcopy(doc["agencies"][0]["keys"][0]))
    with pytest.raises(MalformedDirectoryError, match="listed twice"):
        parse_document(doc)


def test_duplicate_kid_across_agencies() -> None:
    doc = document()
    doc["agencies"][1]["keys"].append(sig_entry(10))
    with pytest.raises(MalformedDirectoryError, match="listed twice"):
        parse_document(doc)


def test_duplicate_agency() -> None:
    doc = document()
    doc["agencies"].append(agency("NE-ANLTP-TIM", []))
    with pytest.raises(MalformedDirectoryError, match="duplicate agency"):
        parse_document(doc)


def test_an_agency_without_keys_is_allowed() -> None:
    doc = document()
    doc["agencies"].append(agency("ML-DNPEF", []))
    assert parse_document(doc).agency("ML-DNPEF").keys == ()


# --- lookups ----------------------------------------------------------------------------


def test_unknown_agency() -> None:
    directory = load(signed())
    with pytest.raises(UnknownAgencyError):
        directory.agency("BJ-OCRTEH")
    with pytest.raises(UnknownAgencyError):
        directory.may_receive("BJ-OCRTEH", "receipt")
    with pytest.raises(UnknownAgencyError):
        directory.encryption_key("BJ-OCRTEH", at=MID)


def test_may_receive() -> None:
    directory = load(signed())
    assert directory.may_receive("NG-NAPTIP", "referral.request", ["assistance", "family_tracing"])
    assert directory.may_receive("NG-NAPTIP", "receipt")
    assert not directory.may_receive("NG-NAPTIP", "return.plan")
    assert not directory.may_receive("NG-NAPTIP", "referral.request", ["assistance", "assisted_return"])


def test_sender_key_valid() -> None:
    directory = load(signed())
    verify_key = directory.sender_key("NE-ANLTP-TIM", NE_SIG, created=MID, now=MID)
    assert bytes(verify_key) == bytes(SigningKey(b"\x0a" * 32).verify_key)


def test_sender_key_unknown_agency() -> None:
    with pytest.raises(UnknownSenderError, match="BJ-OCRTEH"):
        load(signed()).sender_key("BJ-OCRTEH", NE_SIG, created=MID, now=MID)


def test_sender_key_of_another_agency() -> None:
    with pytest.raises(UnknownSenderError, match="not a key of NE-ANLTP-TIM"):
        load(signed()).sender_key("NE-ANLTP-TIM", NG_SIG, created=MID, now=MID)


def test_encryption_key_is_not_a_signing_key() -> None:
    with pytest.raises(UnknownSenderError):
        load(signed()).sender_key("NE-ANLTP-TIM", NE_ENC, created=MID, now=MID)


def test_sender_key_unknown_kid() -> None:
    with pytest.raises(UnknownSenderError):
        load(signed()).sender_key("NE-ANLTP-TIM", "0" * 32, created=MID, now=MID)


@pytest.mark.parametrize("revoked_at", [T0 - timedelta(days=400), MID, T1 + timedelta(days=400)])
def test_revoked_key_is_refused_whatever_the_time(revoked_at: datetime) -> None:
    doc = document(revocations=[{"kid": NE_SIG, "revoked_at": format_ts(revoked_at), "reason": "compromised"}])
    directory = load(signed(doc))
    with pytest.raises(KeyRevokedError):
        directory.sender_key("NE-ANLTP-TIM", NE_SIG, created=MID, now=MID)
    # The other agency is unaffected.
    directory.sender_key("NG-NAPTIP", NG_SIG, created=MID, now=MID)


def test_key_not_valid_at_creation_time() -> None:
    """A message back-dated before the key existed, checked while the key is valid."""
    with pytest.raises(KeyExpiredError, match="creation time"):
        load(signed()).sender_key("NE-ANLTP-TIM", NE_SIG, created=T0 - timedelta(days=1), now=MID)


def test_key_expired_at_creation_time() -> None:
    """Created after the key expired (future-dated); the skew check is elsewhere, this one still holds."""
    with pytest.raises(KeyExpiredError, match="creation time"):
        load(signed()).sender_key("NE-ANLTP-TIM", NE_SIG, created=T1 + timedelta(seconds=1), now=MID)


def test_key_expired_at_current_time() -> None:
    """A stolen expired key cannot be used by back-dating ``created`` into its validity."""
    with pytest.raises(KeyExpiredError, match="current time"):
        load(signed()).sender_key("NE-ANLTP-TIM", NE_SIG, created=MID, now=T1 + timedelta(seconds=1))


def test_key_not_yet_valid() -> None:
    early = T0 - timedelta(days=1)
    with pytest.raises(KeyExpiredError):
        load(signed()).sender_key("NE-ANLTP-TIM", NE_SIG, created=early, now=early)


def test_validity_bounds_are_inclusive() -> None:
    directory = load(signed())
    directory.sender_key("NE-ANLTP-TIM", NE_SIG, created=T0, now=T1)


# --- rotation overlap -------------------------------------------------------------------

ROTATED = T0 + timedelta(days=300)
OVERLAP_END = ROTATED + timedelta(days=30)


def rotated_document(**overrides: Any) -> dict[str, Any]:
    doc = document(**overrides)
    doc["agencies"][0]["keys"] = [
        sig_entry(10, not_after=OVERLAP_END), enc_entry(11, not_after=OVERLAP_END),
        sig_entry(12, not_before=ROTATED, not_after=ROTATED + timedelta(days=365)),
        enc_entry(13, not_before=ROTATED, not_after=ROTATED + timedelta(days=365)),
    ]
    return doc


def test_both_signing_keys_verify_during_the_overlap() -> None:
    directory = load(signed(rotated_document()))
    during = ROTATED + timedelta(days=1)
    directory.sender_key("NE-ANLTP-TIM", NE_SIG, created=during, now=during)
    directory.sender_key("NE-ANLTP-TIM", sig_entry(12)["kid"], created=during, now=during)
    after = OVERLAP_END + timedelta(seconds=1)
    with pytest.raises(KeyExpiredError):
        directory.sender_key("NE-ANLTP-TIM", NE_SIG, created=during, now=after)


def test_encryption_key_picks_the_newest_during_the_overlap() -> None:
    directory = load(signed(rotated_document()))
    new = enc_entry(13)["kid"]
    assert directory.encryption_key("NE-ANLTP-TIM", at=ROTATED - timedelta(days=1)).kid == NE_ENC
    assert directory.encryption_key("NE-ANLTP-TIM", at=ROTATED + timedelta(days=1)).kid == new
    assert directory.encryption_key("NE-ANLTP-TIM", at=OVERLAP_END + timedelta(days=1)).kid == new


def test_encryption_key_skips_a_revoked_newest_key() -> None:
    new = enc_entry(13)["kid"]
    doc = rotated_document(revocations=[{"kid": new, "revoked_at": format_ts(ROTATED), "reason": "lost laptop"}])
    record = load(signed(doc)).encryption_key("NE-ANLTP-TIM", at=ROTATED + timedelta(days=1))
    assert record.kid == NE_ENC and record.use == "enc"


def test_encryption_key_none_valid() -> None:
    directory = load(signed())
    with pytest.raises(NoValidKeyError):
        directory.encryption_key("NE-ANLTP-TIM", at=T1 + timedelta(days=1))
    doc = document(revocations=[{"kid": NE_ENC, "revoked_at": format_ts(MID), "reason": "compromised"}])
    with pytest.raises(NoValidKeyError):
        load(signed(doc)).encryption_key("NE-ANLTP-TIM", at=MID)


def test_encryption_key_never_returns_a_signing_key() -> None:
    doc = document()
    doc["agencies"][0]["keys"] = [sig_entry(10)]
    with pytest.raises(NoValidKeyError):
        load(signed(doc)).encryption_key("NE-ANLTP-TIM", at=MID)


def test_key_status() -> None:
    doc = document(revocations=[{"kid": NG_SIG, "revoked_at": format_ts(MID), "reason": "compromised"}])
    directory = load(signed(doc))
    assert directory.key_status(NE_SIG, at=MID) == "valid"
    assert directory.key_status(NE_SIG, at=T1 + timedelta(days=1)) == "expired"
    assert directory.key_status(NG_SIG, at=MID) == "revoked"
    assert directory.key_status("0" * 32, at=MID) == "unknown"


def test_schema_versions_default_to_version_1_only() -> None:
    doc = document()
    doc["agencies"][1]["schema_versions"] = ["2", "1"]
    directory = load(signed(doc))
    assert directory.schema_versions("NE-ANLTP-TIM") == {"1"}
    assert directory.schema_versions("NG-NAPTIP") == {"1", "2"}
    with pytest.raises(UnknownAgencyError):
        directory.schema_versions("BJ-OCRTEH")
