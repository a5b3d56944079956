"""The independent verifier (tests/vectors/interop_verifier.py, written from docs/wire-format.md alone)
gives the vector file's verdict on every case: the page is enough to interoperate."""

from __future__ import annotations

import ast
import hashlib
import json
from datetime import datetime, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.vectors import interop_verifier as iv
from tests.support.hypothesis_profiles import scaled

VECTOR = json.loads((Path(__file__).parent / "vectors" / "envelope-v1.json").read_text(encoding="utf-8"))
KEYS = VECTOR["keys"]
AUTHORITY = bytes.fromhex(KEYS["directory_authority_public_hex"])


def _now(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)


def _wire(case: dict) -> bytes:
    if "envelope" in case:
        return case["envelope"].encode("utf-8")
    recipe = case["envelope_from"]
    base = VECTOR[recipe["base"]].encode("utf-8")
    return base[:-1] + b" " * recipe["spaces_before_last_byte"] + base[-1:]


def _open(data: bytes, now: str, seen: set[str] | None = None) -> iv.Opened:
    my_keys = {KEYS["recipient_enc_kid"]: (bytes.fromhex(KEYS["recipient_x25519_public_hex"]),
                                           bytes.fromhex(KEYS["recipient_x25519_secret_hex"]))}
    return iv.open_envelope(data, me=KEYS["recipient_agency"], my_keys=my_keys,
                            directory=iv.load_directory(VECTOR["directory"].encode(), [AUTHORITY]),
                            now=_now(now), seen_ids=set() if seen is None else seen)


def test_the_verifier_uses_nothing_from_the_gateway() -> None:
    tree = ast.parse(Path(iv.__file__).read_text(encoding="utf-8"))
    modules = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    modules |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    roots = {m.split(".")[0] for m in modules if m}
    assert roots <= {"__future__", "base64", "hashlib", "hmac", "json", "re", "struct", "dataclasses", "datetime",
                     "pathlib", "typing", "nacl", "jsonschema", "referencing"}


def test_main_envelope_opens_with_the_documented_bytes() -> None:
    opened = _open(VECTOR["envelope"].encode(), VECTOR["now"])
    assert opened.payload == VECTOR["payload"]
    assert opened.payload_bytes.hex() == VECTOR["P_hex"]
    assert iv.jcs(opened.header).hex() == VECTOR["H_hex"]


def test_sealed_box_is_recomputed_from_the_ephemeral_key() -> None:
    box = VECTOR["sealed_box"]
    c = iv.seal_with(bytes.fromhex(VECTOR["plaintext_hex"]), bytes.fromhex(KEYS["recipient_x25519_public_hex"]),
                     bytes.fromhex(box["ephemeral_x25519_secret_hex"]),
                     bytes.fromhex(box["ephemeral_x25519_public_hex"]))
    assert c.hex() == VECTOR["ciphertext_hex"]


@pytest.mark.parametrize("case", VECTOR["rejections"], ids=lambda c: c["name"])
def test_rejections(case: dict) -> None:
    seen: set[str] = set()
    if case.get("replay_of_main"):
        _open(VECTOR["envelope"].encode(), VECTOR["now"], seen)
    with pytest.raises(iv.Rejected) as info:
        _open(_wire(case), case["now"], seen)
    assert info.value.code == case["code"]


@pytest.mark.parametrize("case", VECTOR["acceptances"], ids=lambda c: c["name"])
def test_acceptances(case: dict) -> None:
    opened = _open(_wire(case), case["now"])
    assert hashlib.sha256(opened.payload_bytes).hexdigest() == case["P_sha256"]


@pytest.mark.parametrize("case", VECTOR["pseudonyms"], ids=lambda c: c["local_case_id"] + "/" + c["recipient_country"])
def test_pseudonyms(case: dict) -> None:
    secret = bytes.fromhex(case["secret_hex"])
    assert iv.case_pseudonym(secret, case["local_case_id"], case["sender_country"], case["recipient_country"]) \
        == case["pseudonym"]


@pytest.mark.parametrize("case", VECTOR["directory_rollback"]["cases"], ids=lambda c: c["name"])
def test_directory_rollback(case: dict) -> None:
    offered = iv.load_directory(VECTOR["directory_rollback"]["directories"][case["offered"]].encode(), [AUTHORITY])
    assert iv.serial_verdict(case["held_serial"], offered) == case["verdict"]


@pytest.mark.parametrize("case", VECTOR["directory_vocabularies"]["cases"], ids=lambda c: c["name"])
def test_directory_vocabularies(case: dict) -> None:
    if case["verdict"] != "accepted":
        with pytest.raises(iv.Rejected) as info:
            iv.load_directory(case["directory"].encode(), [AUTHORITY])
        assert info.value.code == case["verdict"]
        return
    directory = iv.load_directory(case["directory"].encode(), [AUTHORITY])
    assert sorted(iv.accepted_types(directory, VECTOR["directory_vocabularies"]["agency"])) == case["accepted_types"]


def test_a_directory_signed_by_another_authority_is_refused() -> None:
    with pytest.raises(iv.Rejected) as info:
        iv.load_directory(VECTOR["directory"].encode(), [bytes(32)])
    assert info.value.code == "directory_bad_signature"


# The verifier's own RFC 8785 encoder must agree with the reference one, or its check 14
# could agree with the gateway only by luck on these vectors.
_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=8)
_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53 - 1), 2**53 - 1)
    | st.floats(allow_nan=False, allow_infinity=False) | _text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_text, inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=scaled(500), deadline=None)
@given(_values)
def test_its_rfc8785_encoder_matches_the_reference(value) -> None:
    import rfc8785

    assert iv.jcs(value) == rfc8785.dumps(value)
