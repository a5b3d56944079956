"""The committed test vectors, checked twice: by raw libsodium calls following
docs/wire-format.md step by step (an independent reading of the spec), and by the gateway."""

from __future__ import annotations

import base64
import hashlib
import json
import struct
from datetime import datetime, timezone
from pathlib import Path

import pytest
import rfc8785
from nacl.bindings import crypto_box_seal_open, crypto_sign_open
from nacl.signing import SigningKey

from gateway import errors
from gateway.directory import check_serial_advance, load_directory
from gateway.envelope import MemoryReplayGuard, open_sealed
from gateway.keys import AgencyIdentity
from gateway.pseudonym import case_pseudonym
from nacl.bindings import crypto_box
from nacl.public import PrivateKey

VECTOR = json.loads((Path(__file__).parent / "vectors" / "envelope-v1.json").read_text(encoding="utf-8"))
ERRORS_BY_CODE = {cls.code: cls for cls in vars(errors).values()
                  if isinstance(cls, type) and issubclass(cls, errors.EnvelopeError)}


def _b64url(text: str) -> bytes:
    assert "=" not in text
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def crypto_sign_verify_detached(signature: bytes, message: bytes, public_key: bytes) -> bool:
    # libsodium's detached verify, expressed with the combined-mode binding PyNaCl exposes.
    return crypto_sign_open(signature + message, public_key) == message


def _frame(context: bytes, a: bytes, b: bytes) -> bytes:
    return context + struct.pack(">I", len(a)) + a + struct.pack(">I", len(b)) + b


def _ts(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)


def test_independent_reading_of_the_wire_format() -> None:
    keys = VECTOR["keys"]
    env = json.loads(VECTOR["envelope"])
    assert env["format"] == "rgw-envelope/1"
    h = rfc8785.dumps(env["header"])
    assert h.hex() == VECTOR["H_hex"]
    c = _b64url(env["ciphertext"])
    assert c.hex() == VECTOR["ciphertext_hex"]
    vk = bytes.fromhex(keys["sender_ed25519_public_hex"])
    assert hashlib.sha256(vk).digest()[:16].hex() == env["header"]["sig_kid"] == keys["sender_sig_kid"]
    outer_input = _frame(b"RGW1-ENVELOPE\x00", h, c)
    assert outer_input.hex() == VECTOR["outer_input_hex"]
    assert crypto_sign_verify_detached(_b64url(env["signature"]), outer_input, vk)

    pk = bytes.fromhex(keys["recipient_x25519_public_hex"])
    sk = bytes.fromhex(keys["recipient_x25519_secret_hex"])
    assert hashlib.sha256(pk).digest()[:16].hex() == env["header"]["enc_kid"]
    plaintext = crypto_box_seal_open(c, pk, sk)
    assert plaintext.hex() == VECTOR["plaintext_hex"]
    inner_sig, p = plaintext[:64], plaintext[64:]
    inner_input = _frame(b"RGW1-PAYLOAD\x00", h, p)
    assert inner_input.hex() == VECTOR["inner_input_hex"]
    assert crypto_sign_verify_detached(inner_sig, inner_input, vk)
    payload = json.loads(p)
    assert rfc8785.dumps(payload) == p
    assert payload == VECTOR["payload"] and p.hex() == VECTOR["P_hex"]

    # Ed25519 is deterministic: both signatures can be recomputed from the seed.
    signer = SigningKey(bytes.fromhex(keys["sender_ed25519_seed_hex"]))
    assert signer.sign(inner_input).signature.hex() == VECTOR["inner_signature_hex"]
    assert signer.sign(outer_input).signature.hex() == VECTOR["outer_signature_hex"]


def test_sealed_box_is_crypto_box_seal_with_the_given_ephemeral_key() -> None:
    # docs/wire-format.md "Sealed box": C = epk || crypto_box(m, blake2b-192(epk || pk), pk, esk).
    box = VECTOR["sealed_box"]
    esk = bytes.fromhex(box["ephemeral_x25519_secret_hex"])
    epk = bytes.fromhex(box["ephemeral_x25519_public_hex"])
    pk = bytes.fromhex(VECTOR["keys"]["recipient_x25519_public_hex"])
    nonce = hashlib.blake2b(epk + pk, digest_size=24).digest()
    assert nonce.hex() == box["nonce_hex"]
    c = epk + crypto_box(bytes.fromhex(VECTOR["plaintext_hex"]), nonce, pk, esk)
    assert c.hex() == VECTOR["ciphertext_hex"]


def envelope_bytes(case: dict) -> bytes:
    """The wire bytes of a vector case: given, or built from the main envelope as described."""
    if "envelope" in case:
        return case["envelope"].encode("utf-8")
    recipe = case["envelope_from"]
    base = VECTOR[recipe["base"]].encode("utf-8")
    built = base[:-1] + b" " * recipe["spaces_before_last_byte"] + base[-1:]
    assert len(built) == case["envelope_length"]
    assert hashlib.sha256(built).hexdigest() == case["envelope_sha256"]
    return built


def _recipient() -> AgencyIdentity:
    keys = VECTOR["keys"]
    enc = PrivateKey(bytes.fromhex(keys["recipient_x25519_secret_hex"]))
    return AgencyIdentity.create(keys["recipient_agency"], SigningKey.generate(), enc)


def _directory():
    return load_directory(VECTOR["directory"].encode(), [bytes.fromhex(VECTOR["keys"]["directory_authority_public_hex"])])


def test_gateway_opens_the_vector() -> None:
    opened = open_sealed(VECTOR["envelope"].encode(), recipient=_recipient(), directory=_directory(),
                         replay_guard=MemoryReplayGuard(), now=_ts(VECTOR["now"]))
    assert opened.payload == VECTOR["payload"]
    assert opened.header.id == VECTOR["header"]["id"]


@pytest.mark.parametrize("case", VECTOR["rejections"], ids=lambda c: c["name"])
def test_rejection_vectors(case) -> None:
    guard = MemoryReplayGuard()
    if case.get("replay_of_main"):
        open_sealed(VECTOR["envelope"].encode(), recipient=_recipient(), directory=_directory(),
                    replay_guard=guard, now=_ts(VECTOR["now"]))
    with pytest.raises(ERRORS_BY_CODE[case["code"]]) as info:
        open_sealed(envelope_bytes(case), recipient=_recipient(), directory=_directory(),
                    replay_guard=guard, now=_ts(case["now"]))
    assert info.value.code == case["code"]


def test_rejection_vectors_cover_distinct_reasons() -> None:
    documented = {"oversize", "malformed", "bad_signature", "unknown_sender", "key_revoked", "key_expired",
                  "wrong_recipient", "expired_message", "clock_skew", "replayed_message", "decryption_failed",
                  "schema_invalid"}
    assert {c["code"] for c in VECTOR["rejections"]} == documented


@pytest.mark.parametrize("case", VECTOR["acceptances"], ids=lambda c: c["name"])
def test_acceptance_vectors(case) -> None:
    opened = open_sealed(envelope_bytes(case), recipient=_recipient(), directory=_directory(),
                         replay_guard=MemoryReplayGuard(), now=_ts(case["now"]))
    assert hashlib.sha256(opened.payload_bytes).hexdigest() == case["P_sha256"]


def test_time_and_size_boundaries_are_covered_on_both_sides() -> None:
    accepted = {c["name"] for c in VECTOR["acceptances"]}
    rejected = {c["name"]: c["code"] for c in VECTOR["rejections"]}
    assert "opened exactly at expires (now == expires)" in accepted
    assert rejected["opened one second after expiry"] == "expired_message"
    assert "created exactly now + 5 minutes" in accepted
    assert rejected["created 5 minutes and 1 second after now"] == "clock_skew"
    assert "envelope of exactly 262144 bytes (main envelope padded with spaces)" in accepted
    assert rejected["envelope of 262145 bytes (main envelope padded with spaces)"] == "oversize"
    assert "payload of exactly 65536 bytes" in accepted
    assert rejected["payload of 65537 bytes (ciphertext one byte too long)"] == "malformed"


@pytest.mark.parametrize("case", VECTOR["pseudonyms"], ids=lambda c: c["local_case_id"] + "/" + c["recipient_country"])
def test_pseudonym_vectors(case) -> None:
    secret = bytes.fromhex(case["secret_hex"])
    assert case_pseudonym(secret, case["local_case_id"], case["sender_country"], case["recipient_country"]) \
        == case["pseudonym"]


@pytest.mark.parametrize("case", VECTOR["directory_rollback"]["cases"], ids=lambda c: c["name"])
def test_directory_rollback_vectors(case) -> None:
    rollback = VECTOR["directory_rollback"]
    offered = load_directory(rollback["directories"][case["offered"]].encode(),
                             [bytes.fromhex(VECTOR["keys"]["directory_authority_public_hex"])])
    if case["verdict"] == "accepted":
        check_serial_advance(case["held_serial"], offered.serial)
    else:
        with pytest.raises(errors.DirectoryRollbackError) as info:
            check_serial_advance(case["held_serial"], offered.serial)
        assert info.value.code == case["verdict"]


@pytest.mark.parametrize("case", VECTOR["directory_vocabularies"]["cases"], ids=lambda c: c["name"])
def test_directory_vocabulary_vectors(case) -> None:
    authority = [bytes.fromhex(VECTOR["keys"]["directory_authority_public_hex"])]
    if case["verdict"] != "accepted":
        with pytest.raises(errors.MalformedDirectoryError) as info:
            load_directory(case["directory"].encode(), authority)
        assert info.value.code == case["verdict"]
        return
    directory = load_directory(case["directory"].encode(), authority)
    agency = VECTOR["directory_vocabularies"]["agency"]
    assert sorted(directory.agency(agency).message_types) == case["accepted_types"]
    assert all(directory.may_receive(agency, t) for t in case["accepted_types"])


def test_the_generator_reproduces_the_committed_file(tmp_path, monkeypatch) -> None:
    # The file is deterministic (derived ephemeral keys), so any edit by hand or drift in the
    # code that made it shows up here.
    from tests.vectors import make_vectors

    out = tmp_path / "envelope-v1.json"
    monkeypatch.setattr(make_vectors, "OUT", out)
    make_vectors.main()
    assert out.read_bytes() == (Path(__file__).parent / "vectors" / "envelope-v1.json").read_bytes()
