"""Key identities: key ids and an agency's own private key set."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from nacl.public import PrivateKey
from nacl.signing import SigningKey


def key_id(public_key: bytes) -> str:
    """Key id: lowercase hex of the first 16 bytes of SHA-256 over the raw 32-byte public key."""
    if len(public_key) != 32:
        raise ValueError("public key must be 32 raw bytes")
    return hashlib.sha256(public_key).digest()[:16].hex()


@dataclass(frozen=True)
class AgencyIdentity:
    """What a gateway holds privately: its agency id, signing key and encryption key(s)."""

    agency_id: str
    signing_key: SigningKey
    #: Encryption private keys by key id; several during a rotation overlap.
    encryption_keys: dict[str, PrivateKey]

    @property
    def signing_kid(self) -> str:
        """Key id of the signing key."""
        return key_id(bytes(self.signing_key.verify_key))

    @classmethod
    def create(cls, agency_id: str, signing_key: SigningKey, *encryption_keys: PrivateKey) -> "AgencyIdentity":
        """Build an identity, computing key ids from the public halves."""
        return cls(
            agency_id=agency_id,
            signing_key=signing_key,
            encryption_keys={key_id(bytes(k.public_key)): k for k in encryption_keys},
        )
