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
from gateway.directory import load_directory
from gateway.envelope import MemoryReplayGuard, open_sealed
from gateway.keys import AgencyIdentity
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
        open_sealed(case["envelope"].encode(), recipient=_recipient(), directory=_directory(),
                    replay_guard=guard, now=_ts(case["now"]))
    assert info.value.code == case["code"]


def test_rejection_vectors_cover_distinct_reasons() -> None:
    documented = {"malformed", "bad_signature", "unknown_sender", "key_revoked", "key_expired", "wrong_recipient",
                  "expired_message", "clock_skew", "replayed_message", "decryption_failed", "schema_invalid"}
    # Only "oversize" is missing: a 256 KiB envelope does not belong in a vector file.
    assert {c["code"] for c in VECTOR["rejections"]} == documented
