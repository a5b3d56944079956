"""The authority's tooling (issue 12, part 2): draft-init, add-agency, vocabularies, implied
control types, serial rules of sign-directory, publish-directory's local checks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gateway import keyfile
from gateway.directory import (
    ACCEPTABLE_PURPOSES,
    ACCEPTABLE_TYPES,
    IMPLIED_TYPES,
    MAX_SERIAL,
    ORG_TYPES,
    ROLES,
    load_directory,
    parse_document,
)
from gateway.errors import MalformedDirectoryError
from gateway.schema import MESSAGE_TYPES, PURPOSES

from tests.test_cli_keys import Clock, authority_key_file, clock, fails, kids, ok  # noqa: F401 - fixture

DRAFT_AGENCY = ["--agency", "NG-NAPTIP", "--name", "National Agency for the Prohibition of Trafficking in Persons",
                "--org-type", "law_enforcement", "--role", "law_enforcement", "--role", "shelter",
                "--accepts", "referral.request", "--purpose", "assistance"]


def _signed(path: Path, auth: Path) -> Any:
    _, key = keyfile.parse_authority_public((auth / "authority.pub.json").read_bytes())
    return load_directory(path.read_bytes(), [key])


@pytest.fixture
def authority(tmp_path: Path, capsys: pytest.CaptureFixture[str], clock: Clock) -> Path:  # noqa: F811
    ok(capsys, "authority-generate", "--out", tmp_path / "auth", "--name", "TEST-AUTHORITY")
    return tmp_path


def test_the_authority_walkthrough_from_an_empty_draft(authority: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tmp = authority
    draft, signed = tmp / "draft.json", tmp / "directory.json"
    ok(capsys, "draft-init", "--out", draft, "--authority", "TEST-AUTHORITY")
    doc = json.loads(draft.read_text())
    assert doc["serial"] == 0 and doc["agencies"] == [] and doc["demo"] is False
    parse_document(doc, draft=True)  # a valid draft
    with pytest.raises(MalformedDirectoryError, match=r"\$\.serial"):
        parse_document(doc)  # but never a signable directory as such: serial 0 is for drafts only
    assert "already exists" in fails(capsys, "draft-init", "--out", draft, "--authority", "TEST-AUTHORITY")

    out = ok(capsys, "add-agency", "--draft", draft, *DRAFT_AGENCY)
    assert "receipt" in out and "consent.withdrawal.ack" in out  # says what is implied
    ok(capsys, "generate", "--agency", "NG-NAPTIP", "--out", tmp / "ng")
    ok(capsys, "add-keys", "--draft", draft, "--agency", "NG-NAPTIP", "--public", tmp / "ng" / "public.json")
    assert json.loads(draft.read_text())["serial"] == 0

    ok(capsys, "sign-directory", "--draft", draft, "--authority-key", authority_key_file(tmp), "--out", signed)
    first = _signed(signed, tmp / "auth")
    assert first.serial == 1 == json.loads(draft.read_text())["serial"]
    naptip = first.agency("NG-NAPTIP")
    # Listed: referral.request only. Implied: the control types, and the withdrawal of consent.
    assert naptip.message_types == {"referral.request", "consent.withdrawal"} | IMPLIED_TYPES
    assert first.may_receive("NG-NAPTIP", "consent.withdrawal.ack")
    assert not first.may_receive("NG-NAPTIP", "case.followup")

    # Signing the same draft again (e.g. to refresh it before it goes stale) takes the next serial.
    ok(capsys, "sign-directory", "--draft", draft, "--authority-key", authority_key_file(tmp), "--out", signed)
    assert _signed(signed, tmp / "auth").serial == 2


def test_sign_directory_goes_above_the_previous_publication(authority: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    tmp = authority
    draft, signed = tmp / "draft.json", tmp / "directory.json"
    ok(capsys, "draft-init", "--out", draft, "--authority", "TEST-AUTHORITY")
    ok(capsys, "add-agency", "--draft", draft, *DRAFT_AGENCY)
    for _ in range(3):
        ok(capsys, "sign-directory", "--draft", draft, "--authority-key", authority_key_file(tmp), "--out", signed)
    # An old copy of the draft (serial 1) must not produce serial 2 again: --out holds serial 3.
    old = json.loads(draft.read_text()) | {"serial": 1}
    (tmp / "old-draft.json").write_text(json.dumps(old))
    out = ok(capsys, "sign-directory", "--draft", tmp / "old-draft.json", "--authority-key", authority_key_file(tmp),
             "--out", signed)
    assert "serial 4" in out and _signed(signed, tmp / "auth").serial == 4
    # Writing elsewhere: --previous names the last publication.
    other = tmp / "elsewhere.json"
    ok(capsys, "sign-directory", "--draft", tmp / "old-draft.json", "--authority-key", authority_key_file(tmp),
       "--out", other, "--previous", signed)
    assert _signed(other, tmp / "auth").serial == 5
    assert "does not exist" in fails(capsys, "sign-directory", "--draft", draft, "--authority-key",
                                     authority_key_file(tmp), "--out", other, "--previous", tmp / "missing.json")
    # A previous publication that does not verify is not silently ignored.
    signed.write_bytes(signed.read_bytes().replace(b'"serial":4', b'"serial":9'))
    assert "does not verify" in fails(capsys, "sign-directory", "--draft", draft, "--authority-key",
                                      authority_key_file(tmp), "--out", signed)


@pytest.mark.parametrize(("option", "value", "expected"), [
    ("--accepts", "referral.requests", "--accepts #2: not a known message type"),
    ("--purpose", "asistance", "--purpose #2: not a known purpose"),
    ("--role", "police", "--role #3: not a known role"),
])
def test_add_agency_refuses_words_outside_the_vocabularies(authority: Path, capsys: pytest.CaptureFixture[str],
                                                           option: str, value: str, expected: str) -> None:
    draft = authority / "draft.json"
    ok(capsys, "draft-init", "--out", draft, "--authority", "TEST-AUTHORITY")
    before = draft.read_bytes()
    err = fails(capsys, "add-agency", "--draft", draft, *DRAFT_AGENCY, option, value)
    assert expected in err
    assert value not in err.split("expected one of")[0]  # the error never quotes the input
    assert draft.read_bytes() == before


def test_add_agency_refuses_an_unknown_org_type_and_a_second_entry(authority: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    draft = authority / "draft.json"
    ok(capsys, "draft-init", "--out", draft, "--authority", "TEST-AUTHORITY")
    args = [a if a != "law_enforcement" else "police_force" for a in DRAFT_AGENCY[:6]] + DRAFT_AGENCY[6:]
    assert "--org-type: not a known organisation type" in fails(capsys, "add-agency", "--draft", draft, *args)
    ok(capsys, "add-agency", "--draft", draft, *DRAFT_AGENCY)
    assert "already in" in fails(capsys, "add-agency", "--draft", draft, *DRAFT_AGENCY)


def _entry(**accepts: Any) -> dict[str, Any]:
    return {"id": "NG-NAPTIP", "country": "NG", "name": "NAPTIP", "org_type": "law_enforcement",
            "roles": ["law_enforcement"], "accepts": {"message_types": ["referral.request"],
                                                      "purposes": ["assistance"]} | accepts, "keys": []}


def _doc(entry: dict[str, Any]) -> dict[str, Any]:
    return {"format": "rgw-directory/1", "authority": "A", "serial": 1, "issued": "2026-01-01T00:00:00Z",
            "demo": False, "agencies": [entry], "revocations": []}


@pytest.mark.parametrize(("member", "value", "path"), [
    ("message_types", ["referral.request", "referral.requests"], r"\$\.agencies\[0\]\.accepts\.message_types\[1\]: "
                                                                  r"not a known message type"),
    ("message_types", ["Receipt"], r"message_types\[0\]: not a known message type"),
    ("message_types", "referral.request", r"message_types: must be an array"),
    ("purposes", ["assistance", 7], r"purposes: must be an array of strings"),
    ("purposes", ["family tracing"], r"purposes\[0\]: not a known purpose"),
])
def test_accepts_is_checked_against_the_vocabularies(member: str, value: Any, path: str) -> None:
    with pytest.raises(MalformedDirectoryError, match=path):
        parse_document(_doc(_entry(**{member: value})))


def test_the_vocabularies_are_the_schemas() -> None:
    assert ACCEPTABLE_TYPES == set(MESSAGE_TYPES) and len(MESSAGE_TYPES) == 12
    assert ACCEPTABLE_PURPOSES == set(PURPOSES)
    assert IMPLIED_TYPES == {"receipt", "consent.withdrawal.ack", "audit.checkpoint"}
    assert "ngo" in ORG_TYPES and "ngo" in ROLES


def test_an_entry_accepting_only_control_types_is_not_given_withdrawals() -> None:
    directory = parse_document(_doc(_entry(message_types=["receipt"], purposes=[])))
    assert directory.agency("NG-NAPTIP").message_types == IMPLIED_TYPES
    assert not directory.may_receive("NG-NAPTIP", "consent.withdrawal")


def test_serial_bounds() -> None:
    with pytest.raises(MalformedDirectoryError, match=r"\$\.serial"):
        parse_document(_doc(_entry()) | {"serial": MAX_SERIAL + 1})
    assert parse_document(_doc(_entry()) | {"serial": MAX_SERIAL}).serial == MAX_SERIAL
    with pytest.raises(MalformedDirectoryError, match=r"\$\.serial"):
        parse_document(_doc(_entry()) | {"serial": -1}, draft=True)


def test_publish_directory_refuses_what_gateways_would_refuse(authority: Path, capsys: pytest.CaptureFixture[str],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    tmp = authority
    draft, signed = tmp / "draft.json", tmp / "directory.json"
    ok(capsys, "draft-init", "--out", draft, "--authority", "TEST-AUTHORITY")
    ok(capsys, "add-agency", "--draft", draft, *DRAFT_AGENCY)
    ok(capsys, "sign-directory", "--draft", draft, "--authority-key", authority_key_file(tmp), "--out", signed)
    monkeypatch.delenv("AUTHORITY_AMQP_URL", raising=False)
    assert "AUTHORITY_AMQP_URL is not set" in fails(
        capsys, "publish-directory", "--directory", signed, "--authority-pub", tmp / "auth" / "authority.pub.json",
        "--amqp-url-env", "AUTHORITY_AMQP_URL")
    signed.write_bytes(signed.read_bytes().replace(b'"serial":1', b'"serial":2'))
    monkeypatch.setenv("AUTHORITY_AMQP_URL", "amqp://nobody:x@127.0.0.1:1/")
    assert "directory_bad_signature" in fails(
        capsys, "publish-directory", "--directory", signed, "--authority-pub", tmp / "auth" / "authority.pub.json",
        "--amqp-url-env", "AUTHORITY_AMQP_URL")
