"""Regenerate tests/vectors/envelope-v1.json: ``python -m tests.vectors.make_vectors``.

The sealed box is randomised, so every run writes a different (equally valid) ciphertext;
commit a regenerated file only when the format changes.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

from nacl.public import PrivateKey, SealedBox

from gateway.b64 import b64url_decode, b64url_encode
from gateway.canonical import canonical_bytes
from gateway.clock import format_ts
from gateway.envelope import envelope_signing_input, payload_signing_input, seal
from gateway.keys import key_id

from testkit.envelope_world import NOW, build_world, example_payload, forge, header_for

OUT = Path(__file__).with_name("envelope-v1.json")


def main() -> None:
    """Write the vector file."""
    world = build_world()
    sender, recipient = world.niger, world.nigeria
    enc_kid, enc_sk = next(iter(recipient.encryption_keys.items()))
    payload = example_payload("referral.request")
    header, wire = seal(payload, message_type="referral.request", sender=sender, recipient="NG-NAPTIP",
                        directory=world.directory, case_ref="ne-ng-vectorcase0001", now=NOW,
                        message_id="3f0c2a9e-5b7d-4c1e-8f6a-1d2e3f4a5b6c")
    env = json.loads(wire)
    h = canonical_bytes(env["header"])
    p = canonical_bytes(payload)
    c = b64url_decode(env["ciphertext"])
    plaintext = SealedBox(enc_sk).decrypt(c)
    seal_to = enc_sk.public_key

    def doc(change):
        d = json.loads(wire)
        change(d)
        return canonical_bytes(d).decode()

    def flip(d):
        ct = bytearray(b64url_decode(d["ciphertext"]))
        ct[-1] ^= 0x01
        d["ciphertext"] = b64url_encode(bytes(ct))

    rejections = [
        {"name": "ciphertext bit flipped", "code": "bad_signature", "now": format_ts(NOW), "envelope": doc(flip)},
        {"name": "header case changed after signing", "code": "bad_signature", "now": format_ts(NOW),
         "envelope": doc(lambda d: d["header"].update(case="ne-ng-othercase0002"))},
        {"name": "inner signature by another key", "code": "bad_signature", "now": format_ts(NOW),
         "envelope": forge(header_for(world, case="ne-ng-vectorcase0001"), p, signer=sender.signing_key,
                           inner_signer=world.mali.signing_key, seal_to=seal_to).decode()},
        {"name": "sealed to a key the recipient does not hold", "code": "decryption_failed", "now": format_ts(NOW),
         "envelope": forge(header_for(world, case="ne-ng-vectorcase0001"), p, signer=sender.signing_key,
                           seal_to=PrivateKey(b"\x07" * 32).public_key).decode()},
        {"name": "opened one second after expiry", "code": "expired_message",
         "now": format_ts(header.expires + timedelta(seconds=1)), "envelope": wire.decode()},
        {"name": "signed by a key the directory revoked", "code": "key_revoked", "now": format_ts(NOW),
         "envelope": forge(header_for(world, case="ne-ng-vectorcase0001", sig_kid=key_id(bytes(world.revoked_sig.verify_key))),
                           p, signer=world.revoked_sig, seal_to=seal_to).decode()},
        {"name": "signed by a key that expired in 2024", "code": "key_expired", "now": format_ts(NOW),
         "envelope": forge(header_for(world, case="ne-ng-vectorcase0001", sig_kid=key_id(bytes(world.expired_sig.verify_key))),
                           p, signer=world.expired_sig, seal_to=seal_to).decode()},
        {"name": "sender not in the directory", "code": "unknown_sender", "now": format_ts(NOW),
         "envelope": forge(header_for(world, case="ne-ng-vectorcase0001", sender="XX-OUTSIDER",
                                      sig_kid=world.outsider.signing_kid),
                           p, signer=world.outsider.signing_key, seal_to=seal_to).decode()},
        {"name": "addressed to ML-DNPEF", "code": "wrong_recipient", "now": format_ts(NOW),
         "envelope": forge(header_for(world, case="ne-ng-vectorcase0001", recipient="ML-DNPEF"),
                           p, signer=sender.signing_key, seal_to=seal_to).decode()},
        {"name": "created 5 minutes and 1 second after now", "code": "clock_skew", "now": format_ts(NOW),
         "envelope": forge(header_for(world, case="ne-ng-vectorcase0001",
                                      created=format_ts(NOW + timedelta(minutes=5, seconds=1))),
                           p, signer=sender.signing_key, seal_to=seal_to).decode()},
        {"name": "lifetime of 30 days and 1 second", "code": "malformed", "now": format_ts(NOW),
         "envelope": forge(header_for(world, case="ne-ng-vectorcase0001",
                                      expires=format_ts(NOW + timedelta(days=30, seconds=1))),
                           p, signer=sender.signing_key, seal_to=seal_to).decode()},
        {"name": "second delivery of the main envelope (replay)", "code": "replayed_message", "now": format_ts(NOW),
         "replay_of_main": True, "envelope": wire.decode()},
        {"name": "payload not in RFC 8785 form", "code": "malformed", "now": format_ts(NOW),
         "envelope": forge(header_for(world, case="ne-ng-vectorcase0001"), json.dumps(payload, indent=1).encode(),
                           signer=sender.signing_key, seal_to=seal_to).decode()},
        {"name": "payload breaks the referral.request schema", "code": "schema_invalid", "now": format_ts(NOW),
         "envelope": forge(header_for(world, case="ne-ng-vectorcase0001"), canonical_bytes(dict(payload, urgency="whenever")),
                           signer=sender.signing_key, seal_to=seal_to).decode()},
        {"name": "agency id with a trailing newline", "code": "malformed", "now": format_ts(NOW),
         "envelope": doc(lambda d: d["header"].update(sender="NE-ANLTP-TIM\n"))},
        {"name": "version-1 UUID as message id", "code": "malformed", "now": format_ts(NOW),
         "envelope": doc(lambda d: d["header"].update(id="3f0c2a9e-5b7d-1c1e-8f6a-1d2e3f4a5b6c"))},
        {"name": "padded base64url signature", "code": "malformed", "now": format_ts(NOW),
         "envelope": doc(lambda d: d.update(signature=d["signature"] + "=="))},
        {"name": "unknown header member", "code": "malformed", "now": format_ts(NOW),
         "envelope": doc(lambda d: d["header"].update(note="x"))},
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
        "now": format_ts(NOW),
        "header": env["header"],
        "H_hex": h.hex(),
        "payload": payload,
        "P_hex": p.hex(),
        "inner_input_hex": payload_signing_input(h, p).hex(),
        "inner_signature_hex": plaintext[:64].hex(),
        "plaintext_hex": plaintext.hex(),
        "ciphertext_hex": c.hex(),
        "outer_input_hex": envelope_signing_input(h, c).hex(),
        "outer_signature_hex": b64url_decode(env["signature"]).hex(),
        "envelope": wire.decode(),
        "rejections": rejections,
    }
    OUT.write_text(json.dumps(vector, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
