"""Signed checkpoints: sign, parse strictly, verify against the directory."""

from __future__ import annotations

import copy
import hashlib
import json
from datetime import datetime, timedelta, timezone

import pytest
from nacl.signing import SigningKey

from gateway.audit import checkpoint as ckpt
from gateway.b64 import b64url_decode, b64url_encode
from gateway.canonical import canonical_bytes
from gateway.demo_identities import demo_authority_key, demo_directory_document, demo_identity
from gateway.directory import Directory, load_directory, sign_directory
from gateway.keys import AgencyIdentity

NIGER = "NE-ANLTP-TIM"
NIGERIA = "NG-NAPTIP"
AT = datetime(2026, 3, 1, 9, 0, 0, tzinfo=timezone.utc)
ROOT = hashlib.sha256(b"some root").digest()


def directory_from(doc: dict) -> Directory:
    authority = demo_authority_key()
    return load_directory(sign_directory(doc, authority), [bytes(authority.verify_key)])


@pytest.fixture(scope="module")
def directory() -> Directory:
    return directory_from(demo_directory_document())


def test_sign_and_verify(directory: Directory) -> None:
    identity = demo_identity(NIGER)
    note = ckpt.sign_checkpoint(identity, 42, ROOT, AT)
    cp = ckpt.verify_checkpoint(note, directory, expected_origin=NIGER, now=AT)
    assert (cp.origin, cp.tree_size, cp.root_hash, cp.signed_at, cp.kid) == (NIGER, 42, ROOT, AT, identity.signing_kid)
    assert ckpt.parse_checkpoint(note) == cp
    record = ckpt.to_record(cp, note, AT + timedelta(seconds=5))
    assert (record.origin, record.tree_size, record.root_hash, record.note) == (NIGER, 42, ROOT, note)


def test_exact_signed_bytes(directory: Directory) -> None:
    """The documented construction, rebuilt by hand (as another implementation would)."""
    identity = demo_identity(NIGER)
    note = ckpt.sign_checkpoint(identity, 7, ROOT, AT)
    body = (
        '{"format":"referral-gateway-checkpoint/1","kid":"' + identity.signing_kid + '",'
        '"origin":"NE-ANLTP-TIM","root_hash":"' + b64url_encode(ROOT) + '",'
        '"signed_at":"2026-03-01T09:00:00Z","tree_size":7}'
    ).encode()
    signature = identity.signing_key.sign(b"RGW1-CHECKPOINT\x00" + body).signature
    assert note == b'{"checkpoint":' + body + b',"signature":"' + b64url_encode(signature).encode() + b'"}'
    identity.signing_key.verify_key.verify(b"RGW1-CHECKPOINT\x00" + body, signature)


def test_empty_tree_checkpoint(directory: Directory) -> None:
    note = ckpt.sign_checkpoint(demo_identity(NIGER), 0, hashlib.sha256(b"").digest(), AT)
    assert ckpt.verify_checkpoint(note, directory).tree_size == 0


def test_other_agency_and_wrong_key(directory: Directory) -> None:
    note = ckpt.sign_checkpoint(demo_identity(NIGERIA), 3, ROOT, AT)
    assert ckpt.verify_checkpoint(note, directory).origin == NIGERIA
    with pytest.raises(ckpt.CheckpointOriginError) as exc:
        ckpt.verify_checkpoint(note, directory, expected_origin=NIGER)
    assert exc.value.code == "checkpoint_wrong_origin"

    # Nigeria's key but claiming to be Niger (kid of Nigeria): the kid is not Niger's.
    doc = json.loads(note)
    doc["checkpoint"]["origin"] = NIGER
    with pytest.raises(ckpt.CheckpointUnknownKeyError):
        ckpt.verify_checkpoint(canonical_bytes(doc), directory)

    # A stranger's key, labelled with Niger's kid: signature fails.
    imposter = AgencyIdentity.create(NIGER, SigningKey(b"\x01" * 32))
    forged = json.loads(ckpt.sign_checkpoint(imposter, 3, ROOT, AT))
    forged["checkpoint"]["kid"] = demo_identity(NIGER).signing_kid
    with pytest.raises(ckpt.CheckpointSignatureError) as exc2:
        ckpt.verify_checkpoint(canonical_bytes(forged), directory)
    assert exc2.value.code == "checkpoint_bad_signature"

    # An agency not in the directory at all.
    stranger = AgencyIdentity.create("ML-NOBODY", SigningKey(b"\x02" * 32))
    with pytest.raises(ckpt.CheckpointUnknownKeyError):
        ckpt.verify_checkpoint(ckpt.sign_checkpoint(stranger, 1, ROOT, AT), directory)


def test_changed_fields_break_the_signature(directory: Directory) -> None:
    note = ckpt.sign_checkpoint(demo_identity(NIGER), 10, ROOT, AT)
    for name, value in (("tree_size", 11), ("root_hash", b64url_encode(hashlib.sha256(b"x").digest())),
                        ("signed_at", "2026-03-01T09:00:01Z")):
        doc = json.loads(note)
        doc["checkpoint"][name] = value
        with pytest.raises(ckpt.CheckpointSignatureError):
            ckpt.verify_checkpoint(canonical_bytes(doc), directory)


def test_every_bit_flip_is_rejected(directory: Directory) -> None:
    note = ckpt.sign_checkpoint(demo_identity(NIGER), 10, ROOT, AT)
    for i in range(len(note)):
        for bit in range(8):
            bad = bytearray(note)
            bad[i] ^= 1 << bit
            with pytest.raises(ckpt.CheckpointError):
                ckpt.verify_checkpoint(bytes(bad), directory, expected_origin=NIGER)


def test_key_validity(directory: Directory) -> None:
    identity = demo_identity(NIGER)
    doc = copy.deepcopy(demo_directory_document())
    niger = next(a for a in doc["agencies"] if a["id"] == NIGER)
    sig_key = next(k for k in niger["keys"] if k["use"] == "sig")
    sig_key["not_after"] = "2026-06-30T00:00:00Z"
    expired_later = directory_from(doc)
    # Signed while valid: still verifies after the key expired (no "now" check on keys).
    note = ckpt.sign_checkpoint(identity, 5, ROOT, AT)
    ckpt.verify_checkpoint(note, expired_later, now=datetime(2027, 1, 1, tzinfo=timezone.utc))
    # Dated after expiry: refused.
    late = ckpt.sign_checkpoint(identity, 5, ROOT, datetime(2026, 7, 1, tzinfo=timezone.utc))
    with pytest.raises(ckpt.CheckpointKeyExpiredError) as exc:
        ckpt.verify_checkpoint(late, expired_later)
    assert exc.value.code == "checkpoint_key_expired"
    # Dated before the key existed: refused.
    early = ckpt.sign_checkpoint(identity, 5, ROOT, datetime(2025, 1, 1, tzinfo=timezone.utc))
    with pytest.raises(ckpt.CheckpointKeyExpiredError):
        ckpt.verify_checkpoint(early, directory)
    # Revoked: refused whatever the date (a stolen key can back-date).
    doc["revocations"].append({"kid": identity.signing_kid, "revoked_at": "2026-05-01T00:00:00Z", "reason": "compromised"})
    revoked = directory_from(doc)
    with pytest.raises(ckpt.CheckpointKeyRevokedError) as exc2:
        ckpt.verify_checkpoint(note, revoked)
    assert exc2.value.code == "checkpoint_key_revoked"


def test_future_checkpoint(directory: Directory) -> None:
    note = ckpt.sign_checkpoint(demo_identity(NIGER), 5, ROOT, AT + timedelta(minutes=10))
    with pytest.raises(ckpt.CheckpointFromFutureError):
        ckpt.verify_checkpoint(note, directory, now=AT)
    ckpt.verify_checkpoint(note, directory, now=AT + timedelta(minutes=6))


def _mutated(note: bytes, mutate) -> bytes:
    doc = json.loads(note)
    mutate(doc)
    return canonical_bytes(doc)


@pytest.mark.parametrize(
    "mutate, where",
    [
        (lambda d: d.update(extra=1), "$: unexpected"),
        (lambda d: d.pop("signature"), "$: missing"),
        (lambda d: d["checkpoint"].update(note="x"), "$.checkpoint: unexpected"),
        (lambda d: d["checkpoint"].pop("kid"), "$.checkpoint: missing"),
        (lambda d: d["checkpoint"].update(format="referral-gateway-checkpoint/2"), "$.checkpoint.format"),
        (lambda d: d["checkpoint"].update(origin="ne-anltp-tim"), "$.checkpoint.origin"),
        (lambda d: d["checkpoint"].update(tree_size=-1), "$.checkpoint.tree_size"),
        (lambda d: d["checkpoint"].update(tree_size=True), "$.checkpoint.tree_size"),
        (lambda d: d["checkpoint"].update(tree_size="5"), "$.checkpoint.tree_size"),
        (lambda d: d["checkpoint"].update(root_hash=b64url_encode(b"\x00" * 31)), "$.checkpoint.root_hash"),
        (lambda d: d["checkpoint"].update(root_hash=b64url_encode(b"\x00" * 32) + "="), "$.checkpoint.root_hash"),
        (lambda d: d["checkpoint"].update(signed_at="2026-03-01T09:00:00.000Z"), "$.checkpoint.signed_at"),
        (lambda d: d["checkpoint"].update(signed_at="2026-03-01T09:00:00+00:00"), "$.checkpoint.signed_at"),
        (lambda d: d["checkpoint"].update(kid="ABC"), "$.checkpoint.kid"),
        (lambda d: d.update(signature=d["signature"][:-2]), "$.signature"),
        (lambda d: d.update(signature=None), "$.signature"),
        (lambda d: d.update(checkpoint=[]), "$.checkpoint: must be an object"),
    ],
)
def test_strict_parsing(mutate, where: str) -> None:
    note = ckpt.sign_checkpoint(demo_identity(NIGER), 10, ROOT, AT)
    with pytest.raises(ckpt.MalformedCheckpointError, match=__import__("re").escape(where)) as exc:
        ckpt.parse_checkpoint(_mutated(note, mutate))
    assert exc.value.code == "checkpoint_malformed"


def test_tree_size_beyond_json_safe_integers() -> None:
    note = ckpt.sign_checkpoint(demo_identity(NIGER), 10, ROOT, AT)
    bad = note.replace(b'"tree_size":10', b'"tree_size":9007199254740992')
    with pytest.raises(ckpt.MalformedCheckpointError, match="tree_size"):
        ckpt.parse_checkpoint(bad)


def test_non_canonical_and_non_json_notes() -> None:
    note = ckpt.sign_checkpoint(demo_identity(NIGER), 10, ROOT, AT)
    pretty = json.dumps(json.loads(note), indent=1).encode()
    for bad in (pretty, note + b"\n", b" " + note, b"", b"[]", b"\xff"):
        with pytest.raises(ckpt.MalformedCheckpointError):
            ckpt.parse_checkpoint(bad)
    dup = b'{"checkpoint":{},"checkpoint":{}}'
    with pytest.raises(ckpt.MalformedCheckpointError, match="not valid JSON"):
        ckpt.parse_checkpoint(dup)
    with pytest.raises(ckpt.MalformedCheckpointError):
        ckpt.parse_checkpoint("text")  # type: ignore[arg-type]


def test_sign_refuses_bad_arguments() -> None:
    identity = demo_identity(NIGER)
    with pytest.raises(ValueError):
        ckpt.sign_checkpoint(identity, -1, ROOT, AT)
    with pytest.raises(ValueError):
        ckpt.sign_checkpoint(identity, 1, ROOT[:31], AT)
    with pytest.raises(ValueError):
        ckpt.sign_checkpoint(identity, 1, ROOT, AT.replace(microsecond=5))
    with pytest.raises(ValueError):
        ckpt.sign_checkpoint(identity, 1, ROOT, datetime(2026, 1, 1))  # naive


def test_signature_is_over_context(directory: Directory) -> None:
    """Signing the bare body (no domain separation) must not verify."""
    identity = demo_identity(NIGER)
    note = ckpt.sign_checkpoint(identity, 10, ROOT, AT)
    doc = json.loads(note)
    doc["signature"] = b64url_encode(identity.signing_key.sign(canonical_bytes(doc["checkpoint"])).signature)
    with pytest.raises(ckpt.CheckpointSignatureError):
        ckpt.verify_checkpoint(canonical_bytes(doc), directory)
    assert len(b64url_decode(json.loads(note)["signature"])) == 64
