"""Private key files: permissions, passphrase encryption, strict parsing, identities."""

from __future__ import annotations

import json
import os
import stat
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

import pytest

from gateway import keyfile
from gateway.b64 import b64url_encode
from gateway.clock import format_ts
from gateway.directory import parse_document
from gateway.errors import KeyFileError
from gateway.keyfile import INTERACTIVE, KeyPair
from gateway.keys import key_id

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
T1 = datetime(2027, 1, 1, tzinfo=timezone.utc)
PASS = b"correct horse battery staple"


def pair(use: str = "sig", seed: int = 7, agency: str = "NE-ANLTP-TIM", not_before: datetime = T0,
         not_after: datetime = T1) -> KeyPair:
    return KeyPair(agency, use, bytes([seed]) * 32, not_before, not_after)  # type: ignore[arg-type]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --- generation and export --------------------------------------------------------------


def test_generate_agency_keys() -> None:
    sig, enc = keyfile.generate_agency_keys("NG-NAPTIP", not_before=T0, valid_days=90)
    assert (sig.use, sig.alg, enc.use, enc.alg) == ("sig", "Ed25519", "enc", "X25519")
    assert sig.not_before == enc.not_before == T0
    assert sig.not_after == enc.not_after == T0 + timedelta(days=90)
    assert sig.kid != enc.kid and sig.secret != enc.secret
    assert sig.kid == key_id(bytes(sig.signing_key().verify_key))
    assert enc.kid == key_id(bytes(enc.private_key().public_key))


def test_generate_refuses_empty_validity() -> None:
    with pytest.raises(KeyFileError):
        keyfile.generate_agency_keys("NG-NAPTIP", not_before=T0, valid_days=0)


def test_keypair_refuses_inverted_validity() -> None:
    with pytest.raises(ValueError):
        pair(not_before=T1, not_after=T0)


def test_wrong_use_accessors() -> None:
    with pytest.raises(KeyFileError):
        pair("enc").signing_key()
    with pytest.raises(KeyFileError):
        pair("sig").private_key()


def test_repr_never_shows_the_secret() -> None:
    key = pair(seed=0x41)
    assert "AAAA" not in repr(key) and "\\x41" not in repr(key) and key.kid in repr(key)


def test_public_entry_is_a_directory_key_entry() -> None:
    sig, enc = pair("sig"), pair("enc", seed=8)
    entry = keyfile.public_entry(sig)
    assert entry == {
        "kid": sig.kid, "use": "sig", "alg": "Ed25519", "public_key": b64url_encode(sig.public_key),
        "not_before": "2026-01-01T00:00:00Z", "not_after": "2027-01-01T00:00:00Z",
    }
    doc = {
        "format": "rgw-directory/1", "authority": "A", "serial": 1, "issued": format_ts(T0), "demo": False,
        "agencies": [{
            "id": "NE-ANLTP-TIM", "country": "NE", "name": "ANLTP-TIM", "org_type": "central_government",
            "roles": ["shelter"], "accepts": {"message_types": [], "purposes": []},
            "keys": keyfile.public_document("NE-ANLTP-TIM", [sig, enc])["keys"],
        }],
        "revocations": [],
    }
    assert {k.kid for k in parse_document(doc).agency("NE-ANLTP-TIM").keys} == {sig.kid, enc.kid}


# --- permissions ------------------------------------------------------------------------


def test_key_file_is_created_0600_even_with_a_permissive_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        keyfile.write_key_file(tmp_path / "k.key", pair())
    finally:
        os.umask(old)
    assert mode(tmp_path / "k.key") == 0o600


def test_key_file_is_never_chmodded_after_the_fact(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_: Any, **__: Any) -> None:
        raise AssertionError("key files must be created 0600, not chmodded")
    monkeypatch.setattr(os, "chmod", refuse)
    monkeypatch.setattr(os, "fchmod", refuse)
    monkeypatch.setattr(Path, "chmod", refuse)
    old = os.umask(0)
    try:
        keyfile.write_key_file(tmp_path / "k.key", pair())
    finally:
        os.umask(old)
    assert mode(tmp_path / "k.key") == 0o600


def test_rewriting_a_key_file_keeps_0600(tmp_path: Path) -> None:
    path = tmp_path / "k.key"
    keyfile.write_key_file(path, pair())
    keyfile.write_key_file(path, keyfile.shorten(pair(), T0 + timedelta(days=3)))
    assert mode(path) == 0o600
    assert keyfile.read_key_file(path).not_after == T0 + timedelta(days=3)
    assert [p.name for p in tmp_path.iterdir()] == ["k.key"]  # no temporary file left behind


@pytest.mark.parametrize("loose", [0o644, 0o640, 0o604, 0o620, 0o602, 0o660])
def test_loose_permissions_are_refused(tmp_path: Path, loose: int) -> None:
    path = tmp_path / "k.key"
    keyfile.write_key_file(path, pair())
    path.chmod(loose)
    with pytest.raises(KeyFileError, match=f"accessible by group or others \\(mode {loose:04o}\\).*0600"):
        keyfile.read_key_file(path)


@pytest.mark.parametrize("tight", [0o600, 0o400])
def test_owner_only_permissions_are_accepted(tmp_path: Path, tight: int) -> None:
    path = tmp_path / "k.key"
    keyfile.write_key_file(path, pair())
    path.chmod(tight)
    assert keyfile.read_key_file(path) == pair()


def test_missing_key_file(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="cannot open"):
        keyfile.read_key_file(tmp_path / "absent.key")


def test_symlinked_key_file_is_refused(tmp_path: Path) -> None:
    keyfile.write_key_file(tmp_path / "real.key", pair())
    (tmp_path / "link.key").symlink_to(tmp_path / "real.key")
    with pytest.raises(KeyFileError):
        keyfile.read_key_file(tmp_path / "link.key")


# --- plain and passphrase-protected round trips -----------------------------------------


@pytest.mark.parametrize("use", ["sig", "enc"])
def test_plain_round_trip(tmp_path: Path, use: str) -> None:
    key = pair(use)
    keyfile.write_key_file(tmp_path / "k.key", key)
    doc = json.loads((tmp_path / "k.key").read_text())
    assert set(doc) == {"format", "agency", "use", "alg", "kid", "not_before", "not_after", "private_key"}
    assert doc["format"] == "rgw-private-key/1" and doc["kid"] == key.kid
    assert keyfile.read_key_file(tmp_path / "k.key") == key


@pytest.mark.parametrize("use", ["sig", "enc"])
def test_passphrase_round_trip(tmp_path: Path, use: str) -> None:
    key = pair(use)
    keyfile.write_key_file(tmp_path / "k.key", key, PASS, limits=INTERACTIVE)
    text = (tmp_path / "k.key").read_text()
    doc = json.loads(text)
    assert "private_key" not in doc and b64url_encode(key.secret) not in text
    enc = doc["encrypted"]
    assert enc["kdf"] == "argon2id13" and enc["cipher"] == "xsalsa20poly1305"
    assert (enc["opslimit"], enc["memlimit"]) == (INTERACTIVE.opslimit, INTERACTIVE.memlimit)
    assert keyfile.read_key_file(tmp_path / "k.key", PASS) == key


def test_same_key_same_passphrase_gives_different_files() -> None:
    a = keyfile.encode_key_file(pair(), PASS, limits=INTERACTIVE)
    b = keyfile.encode_key_file(pair(), PASS, limits=INTERACTIVE)
    assert json.loads(a)["encrypted"]["salt"] != json.loads(b)["encrypted"]["salt"]


def test_default_limits_are_moderate() -> None:
    doc = json.loads(keyfile.encode_key_file(pair(), PASS))
    assert (doc["encrypted"]["opslimit"], doc["encrypted"]["memlimit"]) == (
        keyfile.MODERATE.opslimit, keyfile.MODERATE.memlimit)
    assert keyfile.MODERATE.memlimit == 256 * 1024 * 1024


def test_wrong_passphrase(tmp_path: Path) -> None:
    key = pair()
    keyfile.write_key_file(tmp_path / "k.key", key, PASS, limits=INTERACTIVE)
    with pytest.raises(KeyFileError, match="wrong passphrase or corrupted key file") as info:
        keyfile.read_key_file(tmp_path / "k.key", b"Tr0ub4dor&3")
    message = str(info.value)
    assert b64url_encode(key.secret) not in message and "Tr0ub4dor" not in message
    assert PASS.decode() not in message


def test_tampered_ciphertext_is_refused() -> None:
    doc = json.loads(keyfile.encode_key_file(pair(), PASS, limits=INTERACTIVE))
    raw = bytearray(doc["encrypted"]["ciphertext"].encode())
    raw[-2] = ord("A") if raw[-2] != ord("A") else ord("B")
    doc["encrypted"]["ciphertext"] = raw.decode()
    with pytest.raises(KeyFileError):
        keyfile.decode_key_file(json.dumps(doc).encode(), PASS)


def test_encrypted_file_without_passphrase(tmp_path: Path) -> None:
    keyfile.write_key_file(tmp_path / "k.key", pair(), PASS, limits=INTERACTIVE)
    with pytest.raises(KeyFileError, match="passphrase-protected"):
        keyfile.read_key_file(tmp_path / "k.key")


def test_empty_passphrase_is_refused() -> None:
    with pytest.raises(KeyFileError):
        keyfile.encode_key_file(pair(), b"", limits=INTERACTIVE)


# --- strict parsing ---------------------------------------------------------------------


def _plain() -> dict[str, Any]:
    return json.loads(keyfile.encode_key_file(pair()))


def _encrypted() -> dict[str, Any]:
    return json.loads(keyfile.encode_key_file(pair(), PASS, limits=INTERACTIVE))


BAD_FILES: dict[str, tuple[Callable[[], dict[str, Any]], Callable[[dict[str, Any]], Any], str]] = {
    "unknown member": (_plain, lambda d: d.update(comment="x"), "unexpected"),
    "missing member": (_plain, lambda d: d.pop("kid"), "missing"),
    "format": (_plain, lambda d: d.update(format="rgw-private-key/2"), "format"),
    "use": (_plain, lambda d: d.update(use="auth"), "use"),
    "alg for use": (_plain, lambda d: d.update(alg="X25519"), "alg"),
    "agency": (_plain, lambda d: d.update(agency=""), "agency"),
    "not_before": (_plain, lambda d: d.update(not_before="2026-01-01"), "YYYY"),
    "inverted validity": (_plain, lambda d: d.update(not_after="2025-01-01T00:00:00Z"), "not_after"),
    "kid mismatch": (_plain, lambda d: d.update(kid="0" * 32), "kid does not match"),
    "private key b64": (_plain, lambda d: d.update(private_key="AAAA===="), "base64url"),
    "private key length": (_plain, lambda d: d.update(private_key=b64url_encode(b"\x07" * 31)), "32 bytes"),
    "both secrets": (_encrypted, lambda d: d.update(private_key=b64url_encode(b"\x07" * 32)), "exactly one"),
    "no secret": (_plain, lambda d: d.pop("private_key"), "exactly one"),
    "kdf": (_encrypted, lambda d: d["encrypted"].update(kdf="scrypt"), "unsupported"),
    "cipher": (_encrypted, lambda d: d["encrypted"].update(cipher="aes-gcm"), "unsupported"),
    "opslimit huge": (_encrypted, lambda d: d["encrypted"].update(opslimit=10**6), "opslimit"),
    "opslimit bool": (_encrypted, lambda d: d["encrypted"].update(opslimit=True), "opslimit"),
    "memlimit huge": (_encrypted, lambda d: d["encrypted"].update(memlimit=1 << 40), "memlimit"),
    "memlimit tiny": (_encrypted, lambda d: d["encrypted"].update(memlimit=1), "memlimit"),
    "salt length": (_encrypted, lambda d: d["encrypted"].update(salt=b64url_encode(b"\x00" * 8)), "salt"),
    "encrypted extra": (_encrypted, lambda d: d["encrypted"].update(nonce="AA"), "unexpected"),
    "encrypted not object": (_encrypted, lambda d: d.update(encrypted="x"), "object"),
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_malformed_key_file_is_refused(name: str) -> None:
    make, mutate, message = BAD_FILES[name]
    doc = make()
    mutate(doc)
    with pytest.raises(KeyFileError, match=message):
        keyfile.decode_key_file(json.dumps(doc).encode(), PASS)


@pytest.mark.parametrize("data", [b"{", b"[]", b'{"format": 1, "format": 2}'])
def test_key_file_not_a_json_object(data: bytes) -> None:
    with pytest.raises(KeyFileError):
        keyfile.decode_key_file(data)


def test_encrypted_kid_is_checked_after_decryption() -> None:
    doc = _encrypted()
    doc["kid"] = pair(seed=9).kid
    with pytest.raises(KeyFileError, match="kid does not match"):
        keyfile.decode_key_file(json.dumps(doc).encode(), PASS)


# --- key directories and identities -----------------------------------------------------


def write_dir(key_dir: Path, *pairs: KeyPair) -> None:
    key_dir.mkdir(exist_ok=True)
    for p in pairs:
        keyfile.write_key_file(keyfile.key_path(key_dir, p), p)


ROT = T0 + timedelta(days=300)


def rotated() -> list[KeyPair]:
    old_end = ROT + timedelta(days=30)
    return [
        pair("sig", 1, not_after=old_end), pair("enc", 2, not_after=old_end),
        pair("sig", 3, not_before=ROT, not_after=ROT + timedelta(days=365)),
        pair("enc", 4, not_before=ROT, not_after=ROT + timedelta(days=365)),
    ]


def test_load_identity_during_the_overlap(tmp_path: Path) -> None:
    old_sig, old_enc, new_sig, new_enc = rotated()
    write_dir(tmp_path, old_sig, old_enc, new_sig, new_enc)
    identity = keyfile.load_identity(tmp_path, at=ROT + timedelta(days=1))
    assert identity.agency_id == "NE-ANLTP-TIM"
    assert identity.signing_kid == new_sig.kid
    assert set(identity.encryption_keys) == {old_enc.kid, new_enc.kid}


def test_load_identity_before_and_after_the_overlap(tmp_path: Path) -> None:
    old_sig, old_enc, new_sig, new_enc = rotated()
    write_dir(tmp_path, old_sig, old_enc, new_sig, new_enc)
    before = keyfile.load_identity(tmp_path, at=ROT - timedelta(days=1))
    assert before.signing_kid == old_sig.kid
    after = keyfile.load_identity(tmp_path, at=ROT + timedelta(days=31))
    assert after.signing_kid == new_sig.kid
    # Every encryption key still on disk opens what was sealed to it, expired or not:
    # messages stored in the inbox must stay readable after a rotation.
    assert set(before.encryption_keys) == set(after.encryption_keys) == {old_enc.kid, new_enc.kid}


def test_load_identity_with_passphrase(tmp_path: Path) -> None:
    sig, enc = pair("sig"), pair("enc", 8)
    for p in (sig, enc):
        keyfile.write_key_file(keyfile.key_path(tmp_path, p), p, PASS, limits=INTERACTIVE)
    identity = keyfile.load_identity(tmp_path, at=T0, passphrase=PASS)
    assert identity.signing_kid == sig.kid and list(identity.encryption_keys) == [enc.kid]


def test_load_identity_without_a_valid_key(tmp_path: Path) -> None:
    write_dir(tmp_path, pair("sig"), pair("enc", 8))
    with pytest.raises(KeyFileError, match="no signing key"):
        keyfile.load_identity(tmp_path, at=T1 + timedelta(days=1))
    write_dir(tmp_path / "only-sig", pair("sig"))
    with pytest.raises(KeyFileError, match="no encryption key"):
        keyfile.load_identity(tmp_path / "only-sig", at=T0)


def test_load_identity_with_several_agencies(tmp_path: Path) -> None:
    write_dir(tmp_path, pair("sig"), pair("enc", 8), pair("sig", 9, agency="NG-NAPTIP"), pair("enc", 10, agency="NG-NAPTIP"))
    with pytest.raises(KeyFileError, match="say which agency"):
        keyfile.load_identity(tmp_path, at=T0)
    assert keyfile.load_identity(tmp_path, at=T0, agency_id="NG-NAPTIP").signing_kid == pair("sig", 9).kid


def test_key_dir_file_name_must_be_the_kid(tmp_path: Path) -> None:
    keyfile.write_key_file(tmp_path / "renamed.key", pair())
    with pytest.raises(KeyFileError, match="file name must be its kid"):
        keyfile.read_key_dir(tmp_path)


def test_empty_or_missing_key_dir(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="no \\*.key files"):
        keyfile.read_key_dir(tmp_path)
    with pytest.raises(KeyFileError, match="does not exist"):
        keyfile.read_key_dir(tmp_path / "absent")


def test_shorten() -> None:
    key = pair()
    assert keyfile.shorten(key, T1 + timedelta(days=1)) is key  # never extends
    assert keyfile.shorten(key, T0 + timedelta(days=1)).not_after == T0 + timedelta(days=1)
    with pytest.raises(KeyFileError, match="revoke it instead"):
        keyfile.shorten(key, T0)


# --- authority public key ---------------------------------------------------------------


def test_authority_public_round_trip() -> None:
    public = pair().public_key
    doc = keyfile.authority_public_document("TEST-AUTHORITY", public)
    assert keyfile.parse_authority_public(json.dumps(doc).encode()) == ("TEST-AUTHORITY", public)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d.update(kid="0" * 32),
        lambda d: d.update(public_key=b64url_encode(b"\x00" * 16)),
        lambda d: d.update(authority=""),
        lambda d: d.update(extra=1),
        lambda d: d.pop("kid"),
    ],
    ids=["kid", "length", "authority", "extra", "missing"],
)
def test_authority_public_is_strict(mutate: Callable[[dict[str, Any]], Any]) -> None:
    doc = keyfile.authority_public_document("TEST-AUTHORITY", pair().public_key)
    mutate(doc)
    with pytest.raises(KeyFileError):
        keyfile.parse_authority_public(json.dumps(doc).encode())
