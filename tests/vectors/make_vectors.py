"""Regenerate tests/vectors/envelope-v1.json: ``python -m tests.vectors.make_vectors``.

The output is reproducible byte for byte: Ed25519 is deterministic, and each sealed box is
made as ``crypto_box_seal`` makes it but with its ephemeral X25519 key derived from the
vector's name instead of drawn at random (``sealed_box`` below; docs/wire-format.md
"Sealed box"). Any other ephemeral key gives an equally valid ciphertext.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable

from nacl.bindings import crypto_box, crypto_box_seal_open, crypto_box_seed_keypair
from nacl.public import PrivateKey, PublicKey

from gateway.b64 import b64url_decode, b64url_encode
from gateway.canonical import MAX_JSON_DEPTH, canonical_bytes
from gateway.clock import format_ts
from gateway.directory import SIGNING_CONTEXT, sign_directory
from gateway.envelope import DEFAULT_POLICY, envelope_signing_input, payload_signing_input, seal
from gateway.keys import key_id
from gateway.pseudonym import case_pseudonym
from gateway.schema import find_violations, load_example

from testkit.envelope_world import NOW, World, build_world, example_payload, forge, header_for

OUT = Path(__file__).with_name("envelope-v1.json")
CASE = "ne-ng-vectorcase0001"
MAIN_ID = "3f0c2a9e-5b7d-4c1e-8f6a-1d2e3f4a5b6c"
MAX_SAFE_INTEGER = 2**53 - 1


def ephemeral_seed(label: str) -> bytes:
    """The 32-byte seed of a vector's ephemeral X25519 key (public knowledge, like every key here)."""
    return hashlib.sha256(b"rgw-vectors/ephemeral/" + label.encode("utf-8")).digest()


def sealed_box(message: bytes, recipient: PublicKey, label: str) -> bytes:
    """crypto_box_seal with a derived ephemeral key: epk || crypto_box(m, blake2b-24(epk || pk), pk, esk)."""
    epk, esk = crypto_box_seed_keypair(ephemeral_seed(label))
    nonce = hashlib.blake2b(epk + bytes(recipient), digest_size=24).digest()
    return epk + crypto_box(message, nonce, bytes(recipient), esk)


def sealer(label: str) -> Callable[[bytes, PublicKey], bytes]:
    """A forge() sealer for one vector."""
    return lambda message, recipient: sealed_box(message, recipient, label)


def big_payload(size: int) -> dict[str, Any]:
    """A schema-valid referral.request whose RFC 8785 form is exactly ``size`` bytes (≤ ~66,000).

    Every array is grown to its maxItems and every string to its maxLength, with control
    characters (6 bytes each once escaped: ``\\u0001``); the narrative is then trimmed.
    """
    t = "referral.request"
    p = load_example(t, "all_purposes")
    grown = True
    while grown:
        grown = False
        for path in list(_paths(p, list)):
            arr = _get(p, path)
            if arr:
                q = copy.deepcopy(p)
                _get(q, path).append(copy.deepcopy(arr[-1]))
                if not find_violations(t, q):
                    p, grown = q, True
    for i, path in enumerate(list(_paths(p, str))):
        for n in (4000, 1000, 200, 64):
            q = copy.deepcopy(p)
            _set(q, path, chr(1 + i % 31) * n)
            if not find_violations(t, q):
                p = q
                break
    over = len(canonical_bytes(p)) - size
    # Remove `a` escaped characters (6 bytes each) and turn `b` into a plain "a" (5 bytes saved each).
    b = next(b for b in range(6) if (over - 5 * b) % 6 == 0)
    a = (over - 5 * b) // 6
    narrative = p["narrative"]
    p["narrative"] = "a" * b + narrative[: len(narrative) - a - b]
    assert len(canonical_bytes(p)) == size and not find_violations(t, p)
    return p


def _paths(v: Any, kind: type, path: tuple[Any, ...] = ()) -> Any:
    if isinstance(v, kind):
        yield path
    if isinstance(v, dict):
        for k, x in v.items():
            yield from _paths(x, kind, path + (k,))
    elif isinstance(v, list):
        for i, x in enumerate(v):
            yield from _paths(x, kind, path + (i,))


def _get(v: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        v = v[part]
    return v


def _set(v: Any, path: tuple[Any, ...], value: Any) -> None:
    _get(v, path[:-1])[path[-1]] = value


def _nested(depth: int) -> bytes:
    """A payload object nesting ``depth`` levels: {"narrative": [[...]]} (the object is level 1)."""
    return b'{"narrative":' + b"[" * (depth - 1) + b"]" * (depth - 1) + b"}"


def _padded(wire: bytes, length: int) -> dict[str, Any]:
    """How to build an envelope of ``length`` bytes from the main one: spaces before its last byte."""
    spaces = length - len(wire)
    built = wire[:-1] + b" " * spaces + wire[-1:]
    assert len(built) == length
    return {"envelope_from": {"base": "envelope", "spaces_before_last_byte": spaces},
            "envelope_length": length, "envelope_sha256": hashlib.sha256(built).hexdigest()}


def main() -> None:
    """Write the vector file."""
    world = build_world()
    sender, recipient = world.niger, world.nigeria
    enc_kid, enc_sk = next(iter(recipient.encryption_keys.items()))
    seal_to = enc_sk.public_key
    payload = example_payload("referral.request")
    # seal() makes the header (and proves the gateway would send it); the sealed box is then
    # remade with a derived ephemeral key so the file is reproducible.
    header, _ = seal(payload, message_type="referral.request", sender=sender, recipient="NG-NAPTIP",
                     directory=world.directory, case_ref=CASE, now=NOW, message_id=MAIN_ID)
    p = canonical_bytes(payload)
    wire = forge(header.to_json(), p, signer=sender.signing_key, seal_to=seal_to, sealer=sealer("main"))
    env = json.loads(wire)
    h = canonical_bytes(env["header"])
    c = b64url_decode(env["ciphertext"])
    plaintext = crypto_box_seal_open(c, bytes(seal_to), bytes(enc_sk))
    epk, esk = crypto_box_seed_keypair(ephemeral_seed("main"))
    now = format_ts(NOW)
    later = format_ts(header.expires + timedelta(seconds=1))

    def doc(change: Callable[[dict[str, Any]], None]) -> str:
        d = json.loads(wire)
        change(d)
        return canonical_bytes(d).decode()

    def text(old: str, new: str) -> str:
        assert wire.decode().count(old) == 1
        return wire.decode().replace(old, new)

    def flip(d: dict[str, Any]) -> None:
        ct = bytearray(b64url_decode(d["ciphertext"]))
        ct[-1] ^= 0x01
        d["ciphertext"] = b64url_encode(bytes(ct))

    def forged(name: str, payload_bytes: bytes, *, signer: Any = None, inner_signer: Any = None,
               to: PublicKey | None = None, **header: Any) -> str:
        return forge(header_for(world, **{"case": CASE, **header}), payload_bytes, signer=signer or sender.signing_key,
                     inner_signer=inner_signer, seal_to=to or seal_to, sealer=sealer(name)).decode()

    def reject(name: str, code: str, envelope: str | None = None, *, at: str = now, **extra: Any) -> dict[str, Any]:
        case: dict[str, Any] = {"name": name, "code": code, "now": at}
        if envelope is not None:
            case["envelope"] = envelope
        case.update(extra)
        return case

    def payload_text(old: str, new: str) -> bytes:
        assert p.decode().count(old) == 1, old
        return p.decode().replace(old, new).encode()

    big = canonical_bytes(big_payload(DEFAULT_POLICY.max_payload_bytes))
    bigger = canonical_bytes(dict(json.loads(big), narrative="é" + json.loads(big)["narrative"][1:]))
    assert len(bigger) == DEFAULT_POLICY.max_payload_bytes + 1
    checkpoint = example_payload("audit.checkpoint")
    v2 = canonical_bytes(load_example("referral.request", None, "2"))

    def with_tree_size(n: int) -> bytes:
        doc_ = copy.deepcopy(checkpoint)
        doc_["checkpoint"]["tree_size"] = n
        return json.dumps(doc_, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()

    assert with_tree_size(MAX_SAFE_INTEGER) == canonical_bytes(json.loads(with_tree_size(MAX_SAFE_INTEGER)))
    max_env = DEFAULT_POLICY.max_envelope_bytes
    ack = example_payload("consent.withdrawal.ack")

    rejections = [
        reject("header schema 1 with a schema v2 payload", "schema_invalid", forged("v2-as-1", v2)),
        reject("header schema 2 with a v1 payload (no schema_version member)", "schema_invalid",
               forged("v1-as-2", p, schema="2")),
        reject("header schema 3 (unknown version)", "malformed", forged("v3", p, schema="3")),
        reject("ciphertext bit flipped", "bad_signature", doc(flip)),
        reject("header case changed after signing", "bad_signature",
               doc(lambda d: d["header"].update(case="ne-ng-othercase0002"))),
        reject("inner signature by another key", "bad_signature",
               forged("inner-by-mali", p, inner_signer=world.mali.signing_key)),
        reject("sealed to a key the recipient does not hold", "decryption_failed",
               forged("sealed-elsewhere", p, to=PrivateKey(b"\x07" * 32).public_key)),
        reject("opened one second after expiry", "expired_message", wire.decode(), at=later),
        reject("signed by a key the directory revoked", "key_revoked",
               forged("revoked", p, signer=world.revoked_sig, sig_kid=key_id(bytes(world.revoked_sig.verify_key)))),
        reject("signed by a key that expired in 2024", "key_expired",
               forged("expired-key", p, signer=world.expired_sig, sig_kid=key_id(bytes(world.expired_sig.verify_key)))),
        reject("sender not in the directory", "unknown_sender",
               forged("outsider", p, signer=world.outsider.signing_key, sender="XX-OUTSIDER",
                      sig_kid=world.outsider.signing_kid)),
        reject("addressed to ML-DNPEF", "wrong_recipient", forged("to-mali", p, recipient="ML-DNPEF")),
        reject("created 5 minutes and 1 second after now", "clock_skew",
               forged("skew+1", p, created=format_ts(NOW + timedelta(minutes=5, seconds=1)),
                      expires=format_ts(NOW + timedelta(days=7)))),
        reject("lifetime of 30 days and 1 second", "malformed",
               forged("lifetime+1", p, expires=format_ts(NOW + timedelta(days=30, seconds=1)))),
        reject("second delivery of the main envelope (replay)", "replayed_message", wire.decode(), replay_of_main=True),
        reject("payload not in RFC 8785 form", "malformed",
               forged("not-jcs", json.dumps(payload, indent=1).encode())),
        reject("payload breaks the referral.request schema", "schema_invalid",
               forged("schema", canonical_bytes(dict(payload, urgency="whenever")))),
        reject("agency id with a trailing newline", "malformed",
               doc(lambda d: d["header"].update(sender="NE-ANLTP-TIM\n"))),
        reject("version-1 UUID as message id", "malformed",
               doc(lambda d: d["header"].update(id="3f0c2a9e-5b7d-1c1e-8f6a-1d2e3f4a5b6c"))),
        reject("padded base64url signature", "malformed", doc(lambda d: d.update(signature=d["signature"] + "=="))),
        reject("unknown header member", "malformed", doc(lambda d: d["header"].update(note="x"))),
        # --- size limits: checks 1 and 2 ---
        reject(f"envelope of {max_env + 1} bytes (main envelope padded with spaces)", "oversize",
               **_padded(wire, max_env + 1)),
        reject(f"payload of {len(bigger)} bytes (ciphertext one byte too long)", "malformed",
               forged("payload+1", bigger)),
        # --- strict JSON, envelope level (check 2) ---
        reject("duplicate member in the header (same value twice)", "malformed",
               text(f'"case":"{CASE}"', f'"case":"{CASE}","case":"{CASE}"')),
        reject("duplicate top-level member", "malformed",
               text('"format":"rgw-envelope/1"', '"format":"rgw-envelope/1","format":"rgw-envelope/1"')),
        reject("lone surrogate escape in the header", "malformed",
               text(f'"case":"{CASE}"', '"case":"\\ud800ab12cd34"')),
        reject("byte order mark before the envelope", "malformed", "\ufeff" + wire.decode()),
        reject("NaN as a header value", "malformed", text(f'"case":"{CASE}"', '"case":NaN')),
        reject("Infinity as a top-level value", "malformed", text('"format":"rgw-envelope/1"', '"format":Infinity')),
        # --- strict JSON, payload level (check 14); each payload is otherwise the main one ---
        reject("duplicate member in the payload", "malformed",
               forged("p-duplicate", payload_text('"urgency":"routine"', '"urgency":"routine","urgency":"routine"'))),
        reject("lone surrogate escape in the payload", "malformed",
               forged("p-surrogate", payload_text('"admin1":"Edo","admin2"', '"admin1":"\\udc00","admin2"'))),
        reject("byte order mark before the payload", "malformed", forged("p-bom", b"\xef\xbb\xbf" + p)),
        reject("NaN in the payload", "malformed", forged("p-nan", payload_text('"years":22', '"years":NaN'))),
        reject("invalid UTF-8 in the payload", "malformed",
               forged("p-utf8", payload_text('"urgency":"routine"', '"urgency":"rou\xfftine"')
                      .replace("\xff".encode("utf-8"), b"\xff"))),
        reject("number written 22.0 (RFC 8785 writes 22)", "malformed",
               forged("p-float", payload_text('"years":22', '"years":22.0'))),
        reject("integer 2^53 (outside ±(2^53−1)) in audit.checkpoint tree_size", "malformed",
               forged("p-2^53", with_tree_size(MAX_SAFE_INTEGER + 1), type="audit.checkpoint", case="audit-log")),
        reject(f"payload nested {MAX_JSON_DEPTH + 1} levels deep", "malformed",
               forged("p-depth+1", _nested(MAX_JSON_DEPTH + 1))),
        reject(f"payload nested {MAX_JSON_DEPTH} levels deep (parses, then fails the schema)", "schema_invalid",
               forged("p-depth", _nested(MAX_JSON_DEPTH))),
        # --- JSON Schema formats (check 15) ---
        reject("format date: identified_on 2026-02-30", "schema_invalid",
               forged("p-date", payload_text('"identified_on":"2026-03-04"', '"identified_on":"2026-02-30"'))),
        reject("format date-time: given_at 2026-02-29T10:15:00Z (2026 is no leap year)", "schema_invalid",
               forged("p-date-time", payload_text('"given_at":"2026-03-06T10:15:00Z"',
                                                  '"given_at":"2026-02-29T10:15:00Z"'))),
    ]

    def accept(name: str, envelope: str | None, payload_bytes: bytes, *, at: str = now, **extra: Any) -> dict[str, Any]:
        case: dict[str, Any] = {"name": name, "now": at}
        if envelope is not None:
            case["envelope"] = envelope
        case.update(extra)
        case["P_sha256"] = hashlib.sha256(payload_bytes).hexdigest()
        return case

    skew = DEFAULT_POLICY.max_clock_skew
    acceptances = [
        accept("schema v2 referral.request (header schema 2)", forged("v2", v2, schema="2"), v2),
        accept("opened exactly at expires (now == expires)", wire.decode(), p, at=format_ts(header.expires)),
        accept("opened one second before expires", wire.decode(), p,
               at=format_ts(header.expires - timedelta(seconds=1))),
        accept("created exactly now + 5 minutes", forged("skew", p, created=format_ts(NOW + skew),
                                                         expires=format_ts(NOW + timedelta(days=7))), p),
        accept("created now + 5 minutes − 1 second",
               forged("skew-1", p, created=format_ts(NOW + skew - timedelta(seconds=1)),
                      expires=format_ts(NOW + timedelta(days=7))), p),
        accept("lifetime of exactly 30 days", forged("lifetime", p, expires=format_ts(NOW + timedelta(days=30))), p),
        accept(f"envelope of exactly {max_env} bytes (main envelope padded with spaces)", None, p,
               **_padded(wire, max_env)),
        accept(f"payload of exactly {len(big)} bytes", forged("payload", big), big),
        accept("integer 2^53−1 in audit.checkpoint tree_size", forged(
            "p-max-int", with_tree_size(MAX_SAFE_INTEGER), type="audit.checkpoint", case="audit-log"),
            with_tree_size(MAX_SAFE_INTEGER)),
        accept("envelope re-serialised: other member order, whitespace, \\u escapes", _reserialised(wire), p),
        accept("consent.withdrawal.ack (a control type)", forged(
            "ack", canonical_bytes(ack), type="consent.withdrawal.ack", in_reply_to=ack["withdrawal_message_id"]),
            canonical_bytes(ack)),
        accept("audit.checkpoint (a control type)", forged(
            "checkpoint", canonical_bytes(checkpoint), type="audit.checkpoint", case="audit-log"),
            canonical_bytes(checkpoint)),
    ]

    vector = {
        "description": "rgw-envelope/1 test vectors; see docs/wire-format.md. Test keys only: public knowledge.",
        "keys": {
            "sender_agency": sender.agency_id,
            "sender_ed25519_seed_hex": bytes(sender.signing_key).hex(),
            "sender_ed25519_public_hex": bytes(sender.signing_key.verify_key).hex(),
            "sender_sig_kid": sender.signing_kid,
            "recipient_agency": recipient.agency_id,
            "recipient_x25519_secret_hex": bytes(enc_sk).hex(),
            "recipient_x25519_public_hex": bytes(enc_sk.public_key).hex(),
            "recipient_enc_kid": enc_kid,
            "directory_authority_public_hex": bytes(world.authority.verify_key).hex(),
        },
        "directory": world.directory_bytes.decode(),
        "now": now,
        "header": env["header"],
        "H_hex": h.hex(),
        "payload": payload,
        "P_hex": p.hex(),
        "inner_input_hex": payload_signing_input(h, p).hex(),
        "inner_signature_hex": plaintext[:64].hex(),
        "plaintext_hex": plaintext.hex(),
        "sealed_box": {
            "ephemeral_x25519_secret_hex": esk.hex(),
            "ephemeral_x25519_public_hex": epk.hex(),
            "nonce_hex": hashlib.blake2b(epk + bytes(seal_to), digest_size=24).hexdigest(),
        },
        "ciphertext_hex": c.hex(),
        "outer_input_hex": envelope_signing_input(h, c).hex(),
        "outer_signature_hex": b64url_decode(env["signature"]).hex(),
        "envelope": wire.decode(),
        "rejections": rejections,
        "acceptances": acceptances,
        "pseudonyms": _pseudonyms(),
        "directory_rollback": _rollback(world),
        "directory_vocabularies": _vocabularies(world),
    }
    OUT.write_text(json.dumps(vector, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")


def _reserialised(wire: bytes) -> str:
    """The main envelope as another encoder might write it: still the same signed envelope."""
    d = json.loads(wire)
    text = json.dumps({"signature": d["signature"], "header": dict(reversed(list(d["header"].items()))),
                       "ciphertext": d["ciphertext"], "format": d["format"]}, indent=2)
    # \u0041 is "A": escapes do not matter, the canonical form of the parsed header is signed.
    assert '"NG-NAPTIP"' in text
    return text.replace('"NG-NAPTIP"', '"NG-N\\u0041PTIP"')


def _pseudonyms() -> list[dict[str, Any]]:
    """Case pseudonym vectors (gateway/pseudonym.py), with the HMAC input spelled out."""
    cases = [
        (bytes(range(32)), "NE-ZINDER-2026-0142", "NE", "NG"),
        (bytes(range(32)), "NE-ZINDER-2026-0142", "NE", "ML"),
        (bytes.fromhex("ff" * 40), "dossier n°17/Agadez", "ne", "ng"),
    ]
    out = []
    for secret, local_id, sender_country, recipient_country in cases:
        message = f"rgw-case-v1|{sender_country.upper()}|{recipient_country.upper()}|{local_id}".encode("utf-8")
        out.append({
            "secret_hex": secret.hex(), "local_case_id": local_id,
            "sender_country": sender_country, "recipient_country": recipient_country,
            "hmac_message_hex": message.hex(),
            "hmac_sha256_hex": hmac.new(secret, message, hashlib.sha256).hexdigest(),
            "pseudonym": case_pseudonym(secret, local_id, sender_country, recipient_country),
        })
    return out


def _rollback(world: World) -> dict[str, Any]:
    """Signed directories and the verdict for each (held serial, offered directory) pair."""
    document = json.loads(world.directory_bytes)["directory"]
    serial_2 = sign_directory(dict(document, serial=2, issued="2026-11-20T00:00:00Z"), world.authority).decode()
    other_2 = sign_directory(dict(document, serial=2, issued="2026-11-21T00:00:00Z"), world.authority).decode()
    serial_1 = world.directory_bytes.decode()
    return {
        "rule": "accept a verified directory only if no serial is held yet or its serial > the held serial",
        "directories": {"serial_1": serial_1, "serial_2": serial_2, "other_serial_2": other_2},
        "cases": [
            {"name": "first directory, nothing held", "held_serial": None, "offered": "serial_1",
             "verdict": "accepted"},
            {"name": "newer serial", "held_serial": 1, "offered": "serial_2", "verdict": "accepted"},
            {"name": "older serial (rollback)", "held_serial": 2, "offered": "serial_1",
             "verdict": "directory_rollback"},
            {"name": "same serial, other content", "held_serial": 2, "offered": "other_serial_2",
             "verdict": "directory_rollback"},
        ],
    }


def _signed_as_is(document: dict[str, Any], authority: Any) -> str:
    """Sign a document without checking it first (``sign_directory`` refuses a bad one)."""
    value = authority.sign(SIGNING_CONTEXT + canonical_bytes(document)).signature
    return (canonical_bytes({"directory": document, "signature": {
        "alg": "Ed25519", "kid": key_id(bytes(authority.verify_key)), "value": b64url_encode(value)}}) + b"\n").decode()


def _vocabularies(world: World) -> dict[str, Any]:
    """Signed directories whose ``accepts`` break or stretch the vocabularies, and what a
    gateway makes of each: refused, or accepted with the implied message types."""
    document = json.loads(world.directory_bytes)["directory"]

    def with_accepts(message_types: list[str], purposes: list[str]) -> dict[str, Any]:
        changed = copy.deepcopy(document)
        changed["serial"] = 3
        changed["agencies"][1]["accepts"] = {"message_types": message_types, "purposes": purposes}
        return changed

    agency = document["agencies"][1]["id"]
    cases = [
        ("a message type outside the vocabulary (typo)", ["referral.requests"], ["assistance"], "directory_malformed",
         None),
        ("a purpose outside the vocabulary", ["referral.request"], ["asistance"], "directory_malformed", None),
        ("only referral.request listed: control types and consent.withdrawal implied", ["referral.request"],
         ["assistance"], "accepted",
         ["audit.checkpoint", "consent.withdrawal", "consent.withdrawal.ack", "receipt", "referral.request"]),
        ("only control types listed: nothing else implied", ["receipt"], [], "accepted",
         ["audit.checkpoint", "consent.withdrawal.ack", "receipt"]),
    ]
    return {
        "rule": "accepts names come from the vocabularies; receipt, consent.withdrawal.ack and audit.checkpoint are "
                "always accepted; consent.withdrawal too when any other type is",
        "agency": agency,
        "cases": [{"name": name, "directory": _signed_as_is(with_accepts(types, purposes), world.authority),
                   "verdict": verdict, "accepted_types": accepted}
                  for name, types, purposes, verdict, accepted in cases],
    }


if __name__ == "__main__":
    main()
