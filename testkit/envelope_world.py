"""A small, self-contained trust world for envelope tests: agencies, keys, a signed directory."""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from nacl.public import PrivateKey, PublicKey, SealedBox
from nacl.signing import SigningKey

from gateway.b64 import b64url_encode
from gateway.canonical import canonical_bytes
from gateway.clock import format_ts
from gateway.directory import Directory, load_directory, sign_directory
from gateway.envelope import ENVELOPE_CONTEXT, FORMAT, PAYLOAD_CONTEXT
from gateway.keys import AgencyIdentity, key_id
from gateway.schema import MESSAGE_TYPES, PURPOSES

ROOT = Path(__file__).resolve().parent.parent
NOW = datetime(2026, 11, 23, 12, 0, 0, tzinfo=timezone.utc)
VALID_FROM = datetime(2026, 1, 1, tzinfo=timezone.utc)
VALID_TO = datetime(2028, 1, 1, tzinfo=timezone.utc)


def example_payload(message_type: str = "referral.request") -> dict[str, Any]:
    """The committed schema example for a message type."""
    return json.loads((ROOT / "schemas" / "examples" / f"{message_type}.json").read_text(encoding="utf-8"))


def _seed(label: str) -> bytes:
    return (label.encode() * 32)[:32]


def _key_entry(public: bytes, use: str, not_before: datetime, not_after: datetime) -> dict[str, str]:
    return {
        "kid": key_id(public),
        "use": use,
        "alg": "Ed25519" if use == "sig" else "X25519",
        "public_key": b64url_encode(public),
        "not_before": format_ts(not_before),
        "not_after": format_ts(not_after),
    }


@dataclass
class World:
    """Identities, extra keys and the verified directory that lists them."""

    authority: SigningKey
    niger: AgencyIdentity
    nigeria: AgencyIdentity
    mali: AgencyIdentity
    outsider: AgencyIdentity  # valid keys, but not in the directory
    revoked_sig: SigningKey  # a Niger signing key revoked by the authority
    expired_sig: SigningKey  # a Niger signing key valid only in 2024
    directory: Directory
    directory_bytes: bytes


def build_world() -> World:
    """Create deterministic keys and a signed directory for NE-ANLTP-TIM, NG-NAPTIP and ML-DNPEF."""
    authority = SigningKey(_seed("authority"))
    ids = {
        aid: AgencyIdentity.create(aid, SigningKey(_seed(aid + "/sig")), PrivateKey(_seed(aid + "/enc")))
        for aid in ("NE-ANLTP-TIM", "NG-NAPTIP", "ML-DNPEF", "XX-OUTSIDER")
    }
    revoked_sig = SigningKey(_seed("NE-ANLTP-TIM/revoked"))
    expired_sig = SigningKey(_seed("NE-ANLTP-TIM/expired"))
    agencies = []
    for aid, country in (("NE-ANLTP-TIM", "NE"), ("NG-NAPTIP", "NG"), ("ML-DNPEF", "ML")):
        ident = ids[aid]
        keys = [_key_entry(bytes(ident.signing_key.verify_key), "sig", VALID_FROM, VALID_TO)]
        keys += [_key_entry(bytes(k.public_key), "enc", VALID_FROM, VALID_TO) for k in ident.encryption_keys.values()]
        if aid == "NE-ANLTP-TIM":
            keys.append(_key_entry(bytes(revoked_sig.verify_key), "sig", VALID_FROM, VALID_TO))
            keys.append(
                _key_entry(
                    bytes(expired_sig.verify_key), "sig",
                    datetime(2024, 1, 1, tzinfo=timezone.utc), datetime(2024, 12, 31, tzinfo=timezone.utc),
                )
            )
        entry = {
            "id": aid,
            "country": country,
            "name": f"Test agency {aid}",
            "org_type": "central_government",
            "roles": ["national_referral_mechanism"],
            "accepts": {"message_types": list(MESSAGE_TYPES), "purposes": list(PURPOSES)},
            "keys": keys,
        }
        # Niger and Nigeria take v1 and v2 payloads; Mali's entry predates v2 (v1 only).
        if aid != "ML-DNPEF":
            entry["schema_versions"] = ["1", "2"]
        agencies.append(entry)
    document = {
        "format": "rgw-directory/1",
        "authority": "TEST-AUTHORITY",
        "serial": 1,
        "issued": format_ts(VALID_FROM),
        "demo": True,
        "agencies": agencies,
        "revocations": [
            {"kid": key_id(bytes(revoked_sig.verify_key)), "revoked_at": "2026-06-01T00:00:00Z", "reason": "key_compromise"}
        ],
    }
    signed = sign_directory(document, authority)
    directory = load_directory(signed, [bytes(authority.verify_key)])
    return World(
        authority, ids["NE-ANLTP-TIM"], ids["NG-NAPTIP"], ids["ML-DNPEF"], ids["XX-OUTSIDER"],
        revoked_sig, expired_sig, directory, signed,
    )


def header_for(world: World, **overrides: Any) -> dict[str, str]:
    """A valid NE-ANLTP-TIM → NG-NAPTIP referral.request header, with overrides."""
    header = {
        "id": "7d4f1a52-3c1b-4e0f-9a57-2f9c8d0b6e11",
        "type": "referral.request",
        "schema": "1",
        "sender": "NE-ANLTP-TIM",
        "recipient": "NG-NAPTIP",
        "created": format_ts(NOW),
        "expires": format_ts(NOW + timedelta(days=7)),
        "sig_kid": world.niger.signing_kid,
        "enc_kid": next(iter(world.nigeria.encryption_keys)),
        "case": "case-ne-ng-0001",
    }
    header.update(overrides)
    return {k: v for k, v in header.items() if v is not None}


def forge(
    header: dict[str, str],
    payload_bytes: bytes,
    *,
    signer: SigningKey,
    inner_signer: SigningKey | None = None,
    seal_to: PublicKey,
) -> bytes:
    """Build an envelope by hand, step by step as docs/wire-format.md describes, bypassing every check."""
    h = canonical_bytes(header)
    inner_input = PAYLOAD_CONTEXT + struct.pack(">I", len(h)) + h + struct.pack(">I", len(payload_bytes)) + payload_bytes
    inner = (inner_signer or signer).sign(inner_input).signature
    ciphertext = SealedBox(seal_to).encrypt(inner + payload_bytes)
    outer_input = ENVELOPE_CONTEXT + struct.pack(">I", len(h)) + h + struct.pack(">I", len(ciphertext)) + ciphertext
    outer = signer.sign(outer_input).signature
    return canonical_bytes(
        {"format": FORMAT, "header": header, "ciphertext": b64url_encode(ciphertext), "signature": b64url_encode(outer)}
    )
