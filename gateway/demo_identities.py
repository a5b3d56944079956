"""DEMO ONLY: deterministic agency identities and the demo directory.

!!! THESE PRIVATE KEYS ARE PUBLIC KNOWLEDGE. !!!

Every key here is derived from a string printed in this file, so anyone can recompute
every demo private key. They exist so that the demo and the tests need no private key
file in the repository, and they are only ever listed in a directory marked
``"demo": true`` signed by ``DEMO-AUTHORITY``. Never put one of these keys, or the demo
authority key, in a directory or trust store used for real referrals.

Derivation (documented so it can be checked independently)::

    seed = SHA-256(b"referral-gateway demo key v1|" + ID + b"|" + USE)

with ID the agency id (or ``DEMO-AUTHORITY``) and USE ``sig`` or ``enc``. A ``sig``
seed is an Ed25519 seed (``SigningKey(seed)``); an ``enc`` seed is used directly as the
X25519 private key (``PrivateKey(seed)``).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from nacl.public import PrivateKey
from nacl.signing import SigningKey

from gateway.b64 import b64url_encode
from gateway.directory import AGENCY_ID, FORMAT, sign_directory
from gateway.keyfile import authority_public_document
from gateway.schema import MESSAGE_TYPES, PURPOSES, PURPOSES_BY_VERSION
from gateway.keys import AgencyIdentity, key_id

SEED_PREFIX = b"referral-gateway demo key v1|"
AUTHORITY = "DEMO-AUTHORITY"
NOT_BEFORE = "2026-01-01T00:00:00Z"
NOT_AFTER = "2030-12-31T23:59:59Z"
ISSUED = "2026-01-01T00:00:00Z"
SERIAL = 1

# The risk evaluation is done by the other country's authorities, so IOM missions are
# not addressed for the safety_assessment purpose; they coordinate return and handover.
_IOM_PURPOSES = ("assistance", "family_tracing", "assisted_return", "reintegration_handover")

#: The demo agencies, in directory order: (id, country, name, org_type, roles, message types, purposes).
DEMO_AGENCIES: tuple[tuple[str, str, str, str, tuple[str, ...], tuple[str, ...], tuple[str, ...]], ...] = (
    (
        "NE-ANLTP-TIM", "NE",
        "Agence Nationale de Lutte contre la Traite des Personnes et le Trafic Illicite de Migrants (ANLTP-TIM)",
        "central_government", ("national_referral_mechanism", "law_enforcement", "shelter"),
        MESSAGE_TYPES, PURPOSES,
    ),
    (
        "NE-IOM", "NE", "International Organization for Migration (IOM), Mission in Niger",
        "international_organisation", ("iom_mission",), MESSAGE_TYPES, _IOM_PURPOSES,
    ),
    (
        "NG-NAPTIP", "NG", "National Agency for the Prohibition of Trafficking in Persons (NAPTIP)",
        "law_enforcement", ("law_enforcement", "shelter", "national_referral_mechanism"),
        MESSAGE_TYPES, PURPOSES,
    ),
    (
        "NG-IOM", "NG", "International Organization for Migration (IOM), Mission in Nigeria",
        "international_organisation", ("iom_mission",), MESSAGE_TYPES, _IOM_PURPOSES,
    ),
    (
        "ML-DNPEF", "ML", "Direction Nationale de la Promotion de l'Enfant et de la Famille (DNPEF)",
        "central_government", ("child_protection", "national_referral_mechanism"),
        MESSAGE_TYPES, PURPOSES_BY_VERSION["1"],
    ),
)
DEMO_AGENCY_IDS = tuple(entry[0] for entry in DEMO_AGENCIES)
#: Payload schema versions each demo agency's entry lists: Niger's and Nigeria's gateways
#: take v2 (they negotiate it); DNPEF's entry predates v2 and lists none (version 1 only).
DEMO_SCHEMA_VERSIONS: dict[str, tuple[str, ...]] = {
    "NE-ANLTP-TIM": ("1", "2"), "NE-IOM": ("1", "2"), "NG-NAPTIP": ("1", "2"), "NG-IOM": ("1", "2"),
}


def demo_seed(name: str, use: str) -> bytes:
    """DEMO ONLY, PUBLIC: the 32-byte seed of a demo key (see the module docstring)."""
    return hashlib.sha256(SEED_PREFIX + name.encode("ascii") + b"|" + use.encode("ascii")).digest()


def demo_identity(agency_id: str) -> AgencyIdentity:
    """DEMO ONLY, PUBLIC KEYS: the deterministic identity of a demo agency (anyone can derive it)."""
    if not isinstance(agency_id, str) or not AGENCY_ID.fullmatch(agency_id):
        raise ValueError(f"not an agency id: {agency_id!r}")
    return AgencyIdentity.create(
        agency_id, SigningKey(demo_seed(agency_id, "sig")), PrivateKey(demo_seed(agency_id, "enc"))
    )


def demo_authority_key() -> SigningKey:
    """DEMO ONLY, PUBLIC KEY: the deterministic signing key of ``DEMO-AUTHORITY``."""
    return SigningKey(demo_seed(AUTHORITY, "sig"))


def _key_entry(use: str, public_key: bytes) -> dict[str, str]:
    return {
        "kid": key_id(public_key),
        "use": use,
        "alg": "Ed25519" if use == "sig" else "X25519",
        "public_key": b64url_encode(public_key),
        "not_before": NOT_BEFORE,
        "not_after": NOT_AFTER,
    }


def demo_directory_document() -> dict[str, Any]:
    """The unsigned demo directory document (``demo: true``, authority ``DEMO-AUTHORITY``)."""
    agencies = []
    for agency_id, country, name, org_type, roles, message_types, purposes in DEMO_AGENCIES:
        identity = demo_identity(agency_id)
        (enc_key,) = identity.encryption_keys.values()
        agencies.append({
            "id": agency_id,
            "country": country,
            "name": name,
            "org_type": org_type,
            "roles": list(roles),
            "accepts": {"message_types": list(message_types), "purposes": list(purposes)},
            "keys": [
                _key_entry("sig", bytes(identity.signing_key.verify_key)),
                _key_entry("enc", bytes(enc_key.public_key)),
            ],
        })
        if agency_id in DEMO_SCHEMA_VERSIONS:
            agencies[-1]["schema_versions"] = list(DEMO_SCHEMA_VERSIONS[agency_id])
    return {
        "format": FORMAT,
        "authority": AUTHORITY,
        "serial": SERIAL,
        "issued": ISSUED,
        "demo": True,
        "agencies": agencies,
        "revocations": [],
    }


def demo_directory_files() -> dict[str, bytes]:
    """The committed demo files by name: the signed ``directory.json`` and ``authority.pub.json``."""
    authority = demo_authority_key()
    public = authority_public_document(AUTHORITY, bytes(authority.verify_key))
    return {
        "directory.json": sign_directory(demo_directory_document(), authority),
        "authority.pub.json": (json.dumps(public, indent=2) + "\n").encode("ascii"),
    }
