"""Key identities: key ids and an agency's own private key set."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timezone

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
    #: Encryption private keys by key id: with short-lived keys the current one, the next
    #: ones generated ahead, and previous ones until no message sealed to them can be valid.
    encryption_keys: dict[str, PrivateKey]
    #: ``(not_before, not_after)`` of each encryption key, where known (key files carry it;
    #: demo and test identities may not). Retention destroys a key only if its end is known.
    encryption_validity: dict[str, tuple[datetime, datetime]] = field(default_factory=dict)
    #: Key ids of our encryption keys destroyed so far (a message sealed to one is refused
    #: with its own reason, ``enc_key_destroyed``).
    destroyed_encryption_kids: set[str] = field(default_factory=set)

    @property
    def signing_kid(self) -> str:
        """Key id of the signing key."""
        return key_id(bytes(self.signing_key.verify_key))

    def newest_encryption_kid(self) -> str:
        """The held encryption key with the latest validity start (kid breaks ties; keys of
        unknown validity count as oldest)."""
        earliest = datetime.min.replace(tzinfo=timezone.utc)
        return max(self.encryption_keys, key=lambda kid: (self.encryption_validity.get(kid, (earliest,))[0], kid))

    def current_encryption_kid(self, now: datetime) -> str:
        """The held encryption key valid now with the latest validity start (kid breaks ties;
        keys of unknown validity count as oldest); if none has started yet, the soonest."""
        earliest = datetime.min.replace(tzinfo=timezone.utc)

        def start(kid: str) -> tuple[datetime, str]:
            return self.encryption_validity.get(kid, (earliest,))[0], kid

        started = [kid for kid in self.encryption_keys if start(kid)[0] <= now]
        return max(started, key=start) if started else min(self.encryption_keys, key=start)

    def add_encryption_key(self, private: PrivateKey, not_before: datetime, not_after: datetime) -> str:
        """Hold one more encryption private key (generated ahead); return its kid."""
        kid = key_id(bytes(private.public_key))
        self.encryption_keys[kid] = private
        self.encryption_validity[kid] = (not_before, not_after)
        return kid

    def forget_encryption_key(self, kid: str) -> None:
        """Drop a destroyed encryption key from memory (its file is deleted by the caller)."""
        self.encryption_keys.pop(kid, None)
        self.encryption_validity.pop(kid, None)
        self.destroyed_encryption_kids.add(kid)

    @classmethod
    def create(cls, agency_id: str, signing_key: SigningKey, *encryption_keys: PrivateKey) -> "AgencyIdentity":
        """Build an identity, computing key ids from the public halves."""
        return cls(
            agency_id=agency_id,
            signing_key=signing_key,
            encryption_keys={key_id(bytes(k.public_key)): k for k in encryption_keys},
        )
