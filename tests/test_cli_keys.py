"""``gateway keys ...`` end to end in a temporary directory, plus the committed demo directory."""

from __future__ import annotations

import json
import stat
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

import gateway.cli.keys as cli_keys
from gateway import keyfile
from gateway.cli import main
from gateway.clock import format_ts
from gateway.demo_identities import (
    DEMO_AGENCY_IDS,
    demo_authority_key,
    demo_directory_document,
    demo_directory_files,
    demo_identity,
)
from gateway.directory import Directory, load_directory
from gateway.errors import KeyExpiredError, KeyRevokedError

REPO = Path(__file__).resolve().parents[1]
DEMO_DIR = REPO / "keys" / "demo"
START = datetime(2026, 3, 1, 9, 0, 0, tzinfo=timezone.utc)


class Clock:
    """A settable clock patched into the CLI, so validity periods are deterministic."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock(START)
    monkeypatch.setattr(cli_keys, "utcnow", fake)
    # Passphrase-protected files in tests use the fast libsodium limits.
    monkeypatch.setattr(keyfile, "DEFAULT_LIMITS", keyfile.INTERACTIVE)
    return fake


def run(capsys: pytest.CaptureFixture[str], *argv: Any) -> tuple[int, str, str]:
    code = main(["keys", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def ok(capsys: pytest.CaptureFixture[str], *argv: Any) -> str:
    code, out, err = run(capsys, *argv)
    assert code == 0, err
    return out


def fails(capsys: pytest.CaptureFixture[str], *argv: Any) -> str:
    code, out, err = run(capsys, *argv)
    assert code == 1, out
    assert err.startswith("gateway: error: ") and err.count("\n") == 1, err  # one clear line
    return err


def agency_entry(agency_id: str, name: str, org_type: str, roles: list[str]) -> dict[str, Any]:
    return {
        "id": agency_id, "country": agency_id[:2], "name": name, "org_type": org_type, "roles": roles,
        "accepts": {"message_types": ["referral.request", "referral.response", "receipt"], "purposes": ["assistance"]},
        "keys": [],
    }


def write_draft(path: Path, authority: str = "TEST-AUTHORITY") -> None:
    draft = {
        "format": "rgw-directory/1", "authority": authority, "serial": 1, "issued": format_ts(START),
        "demo": False,
        "agencies": [
            agency_entry("NE-ANLTP-TIM", "Agence Nationale de Lutte contre la Traite des Personnes et le Trafic "
                         "Illicite de Migrants", "central_government", ["national_referral_mechanism"]),
            agency_entry("NG-NAPTIP", "National Agency for the Prohibition of Trafficking in Persons",
                         "law_enforcement", ["law_enforcement", "shelter"]),
        ],
        "revocations": [],
    }
    path.write_text(json.dumps(draft, indent=2))


def load_signed(tmp: Path) -> Directory:
    _, public_key = keyfile.parse_authority_public((tmp / "auth" / "authority.pub.json").read_bytes())
    return load_directory((tmp / "directory.json").read_bytes(), [public_key])


def kids(key_dir: Path, use: str) -> list[str]:
    doc = json.loads((key_dir / "public.json").read_text())
    return [k["kid"] for k in doc["keys"] if k["use"] == use]


def authority_key_file(tmp: Path) -> Path:
    (path,) = (tmp / "auth").glob("*.key")
    return path


# --- the operator walkthrough -----------------------------------------------------------


def test_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str], clock: Clock,
                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NG_KEY_PASSPHRASE", "naptip passphrase for tests")
    draft, signed = tmp_path / "draft.json", tmp_path / "directory.json"
    ne, ng, auth = tmp_path / "ne", tmp_path / "ng", tmp_path / "auth"
    write_draft(draft)

    ok(capsys, "authority-generate", "--out", auth, "--name", "TEST-AUTHORITY")
    authority_key = authority_key_file(tmp_path)
    assert stat.S_IMODE(authority_key.stat().st_mode) == 0o600
    assert set(json.loads((auth / "authority.pub.json").read_text())) == {"authority", "kid", "public_key"}

    ok(capsys, "generate", "--agency", "NE-ANLTP-TIM", "--out", ne, "--valid-days", "365")
    ok(capsys, "generate", "--agency", "NG-NAPTIP", "--out", ng, "--passphrase-env", "NG_KEY_PASSPHRASE")
    for key_dir in (ne, ng):
        key_files = sorted(key_dir.glob("*.key"))
        assert len(key_files) == 2
        assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in key_files)
        assert sorted(p.stem for p in key_files) == sorted(kids(key_dir, "sig") + kids(key_dir, "enc"))
    assert "encrypted" in json.loads(next(ng.glob("*.key")).read_text())
    exported = ok(capsys, "export", "--key-dir", ne)
    assert json.loads(exported) == json.loads((ne / "public.json").read_text())

    ok(capsys, "add-keys", "--draft", draft, "--agency", "NE-ANLTP-TIM", "--public", ne / "public.json")
    ok(capsys, "add-keys", "--draft", draft, "--agency", "NG-NAPTIP", "--public", ng / "public.json")
    assert json.loads(draft.read_text())["serial"] == 1  # edits leave the serial alone; signing sets it
    ok(capsys, "sign-directory", "--draft", draft, "--authority-key", authority_key, "--out", signed)
    out = ok(capsys, "verify-directory", "--directory", signed, "--authority-pub", auth / "authority.pub.json")
    (old_sig,) = kids(ne, "sig")
    (old_enc,) = kids(ne, "enc")
    (ng_sig,) = kids(ng, "sig")
    assert f"sig {old_sig} valid" in out and f"sig {ng_sig} valid" in out and "NG-NAPTIP" in out

    directory = load_signed(tmp_path)
    assert directory.serial == json.loads(draft.read_text())["serial"] == 2
    directory.sender_key("NE-ANLTP-TIM", old_sig, created=START, now=START)
    identity = keyfile.load_identity(ng, at=START, passphrase=b"naptip passphrase for tests")
    assert identity.signing_kid == ng_sig
    assert directory.encryption_key("NG-NAPTIP", at=START).kid in identity.encryption_keys

    # Rotate NE's keys 300 days later; the old ones stay valid for the 30-day overlap.
    clock.now = rotated_at = START + timedelta(days=300)
    ok(capsys, "rotate", "--key-dir", ne, "--use", "both", "--overlap-days", "30")
    new_sig = next(k for k in kids(ne, "sig") if k != old_sig)
    new_enc = next(k for k in kids(ne, "enc") if k != old_enc)
    assert len(list(ne.glob("*.key"))) == 4
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in ne.glob("*.key"))
    old_file = keyfile.read_key_file(ne / f"{old_sig}.key")
    assert old_file.not_after == rotated_at + timedelta(days=30)

    ok(capsys, "add-keys", "--draft", draft, "--agency", "NE-ANLTP-TIM", "--public", ne / "public.json")
    ok(capsys, "sign-directory", "--draft", draft, "--authority-key", authority_key, "--out", signed)
    directory = load_signed(tmp_path)
    during = rotated_at + timedelta(days=10)
    directory.sender_key("NE-ANLTP-TIM", old_sig, created=during, now=during)
    directory.sender_key("NE-ANLTP-TIM", new_sig, created=during, now=during)
    assert directory.encryption_key("NE-ANLTP-TIM", at=during).kid == new_enc
    identity = keyfile.load_identity(ne, at=during)
    assert identity.signing_kid == new_sig and set(identity.encryption_keys) == {old_enc, new_enc}
    after = rotated_at + timedelta(days=31)
    with pytest.raises(KeyExpiredError):  # the shortened not_after landed in the directory
        directory.sender_key("NE-ANLTP-TIM", old_sig, created=during, now=after)
    out = ok(capsys, "verify-directory", "--directory", signed, "--authority-pub", auth / "authority.pub.json",
             "--at", format_ts(after))
    assert f"sig {old_sig} expired" in out and f"sig {new_sig} valid" in out

    # Revoke the old signing key: refused from then on, whatever the time.
    ok(capsys, "revoke", "--draft", draft, "--kid", old_sig, "--reason", "laptop stolen")
    ok(capsys, "sign-directory", "--draft", draft, "--authority-key", authority_key, "--out", signed)
    directory = load_signed(tmp_path)
    with pytest.raises(KeyRevokedError):
        directory.sender_key("NE-ANLTP-TIM", old_sig, created=during, now=during)
    directory.sender_key("NE-ANLTP-TIM", new_sig, created=during, now=during)
    out = ok(capsys, "verify-directory", "--directory", signed, "--authority-pub", auth / "authority.pub.json")
    assert f"sig {old_sig} revoked" in out
    assert directory.serial == json.loads(draft.read_text())["serial"] == 4


def test_rotate_one_use_only(tmp_path: Path, capsys: pytest.CaptureFixture[str], clock: Clock) -> None:
    ok(capsys, "generate", "--agency", "NE-IOM", "--out", tmp_path)
    (old_sig,), (old_enc,) = kids(tmp_path, "sig"), kids(tmp_path, "enc")
    clock.now = START + timedelta(days=100)
    ok(capsys, "rotate", "--key-dir", tmp_path, "--use", "enc", "--overlap-days", "7", "--valid-days", "90")
    assert kids(tmp_path, "sig") == [old_sig] and len(kids(tmp_path, "enc")) == 2
    entries = {k["kid"]: k for k in json.loads((tmp_path / "public.json").read_text())["keys"]}
    assert entries[old_enc]["not_after"] == format_ts(clock.now + timedelta(days=7))
    assert entries[old_sig]["not_after"] == format_ts(START + timedelta(days=365))
    (new_enc,) = set(kids(tmp_path, "enc")) - {old_enc}
    assert entries[new_enc]["not_before"] == format_ts(clock.now)
    assert entries[new_enc]["not_after"] == format_ts(clock.now + timedelta(days=90))


def test_rotate_passphrase_protected_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str], clock: Clock) -> None:
    secret = tmp_path / "pass"
    secret.write_bytes(b"a passphrase from a file\n")
    secret.chmod(0o600)
    keys = tmp_path / "keys"
    ok(capsys, "generate", "--agency", "ML-DNPEF", "--out", keys, "--passphrase-file", secret)
    assert "passphrase-protected" in fails(capsys, "rotate", "--key-dir", keys, "--use", "sig")
    clock.now = START + timedelta(days=1)
    ok(capsys, "rotate", "--key-dir", keys, "--use", "sig", "--passphrase-file", secret)
    pairs = keyfile.read_key_dir(keys, b"a passphrase from a file")
    assert len(pairs) == 3
    assert all("encrypted" in json.loads(p.read_text()) for p in keys.glob("*.key"))


# --- refusals ---------------------------------------------------------------------------


def test_generate_refuses_a_dir_with_keys(tmp_path: Path, capsys: pytest.CaptureFixture[str], clock: Clock) -> None:
    ok(capsys, "generate", "--agency", "NE-IOM", "--out", tmp_path)
    assert "rotate" in fails(capsys, "generate", "--agency", "NE-IOM", "--out", tmp_path)


def test_generate_refuses_a_bad_agency_id(tmp_path: Path, capsys: pytest.CaptureFixture[str], clock: Clock) -> None:
    assert "--agency" in fails(capsys, "generate", "--agency", "naptip", "--out", tmp_path)


def test_passphrase_sources(tmp_path: Path, capsys: pytest.CaptureFixture[str], clock: Clock,
                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_SUCH_PASSPHRASE", raising=False)
    assert "NO_SUCH_PASSPHRASE" in fails(capsys, "generate", "--agency", "NE-IOM", "--out", tmp_path / "a",
                                         "--passphrase-env", "NO_SUCH_PASSPHRASE")
    loose = tmp_path / "pass"
    loose.write_text("shared passphrase")
    loose.chmod(0o644)
    assert "0644" in fails(capsys, "generate", "--agency", "NE-IOM", "--out", tmp_path / "b", "--passphrase-file", loose)
    empty = tmp_path / "empty"
    empty.write_text("\n")
    empty.chmod(0o600)
    assert "empty" in fails(capsys, "generate", "--agency", "NE-IOM", "--out", tmp_path / "c", "--passphrase-file", empty)
    with pytest.raises(SystemExit):  # argparse: the two sources are mutually exclusive
        main(["keys", "generate", "--agency", "NE-IOM", "--out", str(tmp_path / "d"),
              "--passphrase-env", "X", "--passphrase-file", str(empty)])


def test_loose_key_file_is_refused_by_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str], clock: Clock) -> None:
    ok(capsys, "generate", "--agency", "NE-IOM", "--out", tmp_path)
    next(tmp_path.glob("*.key")).chmod(0o644)
    assert "accessible by group or others" in fails(capsys, "export", "--key-dir", tmp_path)


@pytest.fixture
def published(tmp_path: Path, capsys: pytest.CaptureFixture[str], clock: Clock) -> Path:
    """A draft with both agencies' keys, signed once."""
    write_draft(tmp_path / "draft.json")
    ok(capsys, "authority-generate", "--out", tmp_path / "auth", "--name", "TEST-AUTHORITY")
    for agency_id, key_dir in (("NE-ANLTP-TIM", "ne"), ("NG-NAPTIP", "ng")):
        ok(capsys, "generate", "--agency", agency_id, "--out", tmp_path / key_dir)
        ok(capsys, "add-keys", "--draft", tmp_path / "draft.json", "--agency", agency_id,
           "--public", tmp_path / key_dir / "public.json")
    ok(capsys, "sign-directory", "--draft", tmp_path / "draft.json",
       "--authority-key", authority_key_file(tmp_path), "--out", tmp_path / "directory.json")
    return tmp_path


def test_add_keys_refusals(published: Path, capsys: pytest.CaptureFixture[str]) -> None:
    draft = published / "draft.json"
    before = draft.read_bytes()
    ne_public = published / "ne" / "public.json"
    assert "not of 'NG-NAPTIP'" in fails(capsys, "add-keys", "--draft", draft, "--agency", "NG-NAPTIP", "--public", ne_public)
    forged = json.loads(ne_public.read_text())
    forged["agency"] = "NG-NAPTIP"
    (published / "forged.json").write_text(json.dumps(forged))
    assert "already belongs to NE-ANLTP-TIM" in fails(
        capsys, "add-keys", "--draft", draft, "--agency", "NG-NAPTIP", "--public", published / "forged.json")
    unknown = dict(forged, agency="ML-DNPEF")
    (published / "unknown.json").write_text(json.dumps(unknown))
    assert "unknown_agency" in fails(
        capsys, "add-keys", "--draft", draft, "--agency", "ML-DNPEF", "--public", published / "unknown.json")
    bad = json.loads(ne_public.read_text())
    bad["keys"][0]["kid"] = "0" * 32
    (published / "bad.json").write_text(json.dumps(bad))
    assert "does not match" in fails(
        capsys, "add-keys", "--draft", draft, "--agency", "NE-ANLTP-TIM", "--public", published / "bad.json")
    assert "rgw-public-keys/1" in fails(
        capsys, "add-keys", "--draft", draft, "--agency", "NE-ANLTP-TIM", "--public", published / "directory.json")
    assert draft.read_bytes() == before  # nothing half-written


def test_add_keys_is_idempotent_per_kid(published: Path, capsys: pytest.CaptureFixture[str]) -> None:
    draft = published / "draft.json"
    ok(capsys, "add-keys", "--draft", draft, "--agency", "NE-ANLTP-TIM", "--public", published / "ne" / "public.json")
    doc = json.loads(draft.read_text())
    assert len(doc["agencies"][0]["keys"]) == 2 and doc["serial"] == 2  # as signed; edits do not bump it


def test_revoke_refusals(published: Path, capsys: pytest.CaptureFixture[str]) -> None:
    draft = published / "draft.json"
    assert "not listed" in fails(capsys, "revoke", "--draft", draft, "--kid", "0" * 32, "--reason", "x")
    assert "not a key id" in fails(capsys, "revoke", "--draft", draft, "--kid", "ABC", "--reason", "x")
    (sig,) = kids(published / "ne", "sig")
    ok(capsys, "revoke", "--draft", draft, "--kid", sig, "--reason", "compromised", "--at", "2026-02-01T00:00:00Z")
    revocation = json.loads(draft.read_text())["revocations"][0]
    assert revocation == {"kid": sig, "revoked_at": "2026-02-01T00:00:00Z", "reason": "compromised"}
    assert "already revoked" in fails(capsys, "revoke", "--draft", draft, "--kid", sig, "--reason", "again")
    assert "signed directory" in fails(
        capsys, "revoke", "--draft", published / "directory.json", "--kid", sig, "--reason", "x")


def test_verify_refuses_another_authority(published: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ok(capsys, "authority-generate", "--out", published / "other", "--name", "TEST-AUTHORITY")
    err = fails(capsys, "verify-directory", "--directory", published / "directory.json",
                "--authority-pub", published / "other" / "authority.pub.json")
    assert "untrusted authority" in err


def test_verify_refuses_a_tampered_directory(published: Path, capsys: pytest.CaptureFixture[str]) -> None:
    signed = published / "directory.json"
    signed.write_bytes(signed.read_bytes().replace(b'"serial":2', b'"serial":3'))
    err = fails(capsys, "verify-directory", "--directory", signed, "--authority-pub", published / "auth" / "authority.pub.json")
    assert "directory_bad_signature" in err


def test_verify_reports_not_yet_valid(published: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = ok(capsys, "verify-directory", "--directory", published / "directory.json",
             "--authority-pub", published / "auth" / "authority.pub.json", "--at", "2025-01-01T00:00:00Z")
    assert "not_yet_valid" in out and " valid " not in out


def test_verify_missing_file(published: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert "cannot read" in fails(capsys, "verify-directory", "--directory", published / "absent.json",
                                  "--authority-pub", published / "auth" / "authority.pub.json")


def test_sign_refuses_a_mismatched_or_expired_authority(published: Path, capsys: pytest.CaptureFixture[str],
                                                         clock: Clock) -> None:
    write_draft(published / "other-draft.json", authority="SOMEONE-ELSE")
    assert "SOMEONE-ELSE" in fails(capsys, "sign-directory", "--draft", published / "other-draft.json",
                                   "--authority-key", authority_key_file(published), "--out", published / "x.json")
    clock.now = START + timedelta(days=6 * 365)
    assert "not valid now" in fails(capsys, "sign-directory", "--draft", published / "draft.json",
                                    "--authority-key", authority_key_file(published), "--out", published / "x.json")
    assert not (published / "x.json").exists()


def test_sign_refuses_an_agency_key_file(published: Path, capsys: pytest.CaptureFixture[str]) -> None:
    enc = published / "ne" / f"{kids(published / 'ne', 'enc')[0]}.key"
    assert fails(capsys, "sign-directory", "--draft", published / "draft.json", "--authority-key", enc,
                 "--out", published / "x.json")


# --- the committed demo directory -------------------------------------------------------


def test_committed_demo_files_are_what_the_generator_produces() -> None:
    for name, data in demo_directory_files().items():
        assert (DEMO_DIR / name).read_bytes() == data, f"keys/demo/{name} is stale: run gateway keys demo-directory --out keys/demo"


def test_demo_directory_command_writes_the_same_bytes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ok(capsys, "demo-directory", "--out", tmp_path)
    for name in ("directory.json", "authority.pub.json"):
        assert (tmp_path / name).read_bytes() == (DEMO_DIR / name).read_bytes()


def test_committed_demo_directory_loads_with_the_committed_authority_key(capsys: pytest.CaptureFixture[str]) -> None:
    name, public_key = keyfile.parse_authority_public((DEMO_DIR / "authority.pub.json").read_bytes())
    assert name == "DEMO-AUTHORITY" and public_key == bytes(demo_authority_key().verify_key)
    directory = load_directory((DEMO_DIR / "directory.json").read_bytes(), [public_key])
    assert directory.demo is True and directory.authority == "DEMO-AUTHORITY"
    assert set(DEMO_AGENCY_IDS) <= set(directory.agencies)
    assert {"NE-ANLTP-TIM", "NE-IOM", "NG-NAPTIP", "NG-IOM", "ML-DNPEF"} <= set(directory.agencies)
    ok(capsys, "verify-directory", "--directory", DEMO_DIR / "directory.json",
       "--authority-pub", DEMO_DIR / "authority.pub.json", "--at", "2027-01-01T00:00:00Z")


def test_demo_identities_match_the_demo_directory() -> None:
    directory = load_directory(demo_directory_files()["directory.json"], [bytes(demo_authority_key().verify_key)])
    at = datetime(2027, 1, 1, tzinfo=timezone.utc)
    for agency_id in DEMO_AGENCY_IDS:
        identity = demo_identity(agency_id)
        verify_key = directory.sender_key(agency_id, identity.signing_kid, created=at, now=at)
        assert bytes(verify_key) == bytes(identity.signing_key.verify_key)
        assert directory.encryption_key(agency_id, at=at).kid in identity.encryption_keys
    assert demo_identity("NE-IOM").signing_kid == demo_identity("NE-IOM").signing_kid  # deterministic
    assert demo_identity("NE-IOM").signing_kid != demo_identity("NG-IOM").signing_kid


def test_demo_directory_content() -> None:
    doc = demo_directory_document()
    assert doc["demo"] is True and doc["authority"] == "DEMO-AUTHORITY"
    by_id = {a["id"]: a for a in doc["agencies"]}
    assert set(by_id["NE-ANLTP-TIM"]["roles"]) == {"national_referral_mechanism", "law_enforcement", "shelter"}
    assert by_id["NG-NAPTIP"]["org_type"] == "law_enforcement"
    assert set(by_id["ML-DNPEF"]["roles"]) == {"child_protection", "national_referral_mechanism"}
    for agency in doc["agencies"]:
        assert {"receipt", "referral.response", "consent.withdrawal"} <= set(agency["accepts"]["message_types"])
        for key in agency["keys"]:
            assert (key["not_before"], key["not_after"]) == ("2026-01-01T00:00:00Z", "2030-12-31T23:59:59Z")
    for iom in ("NE-IOM", "NG-IOM"):
        assert {"assisted_return", "reintegration_handover"} <= set(by_id[iom]["accepts"]["purposes"])


def test_demo_identity_refuses_a_non_agency_id() -> None:
    with pytest.raises(ValueError):
        demo_identity("not an agency")
