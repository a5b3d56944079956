"""Quarantined bodies at rest: encrypted under a per-day quarantine key that retention destroys.

A quarantine copy sits in the broker's quarantine queue (and in every broker backup) for as
long as nobody re-drives or purges it. So the gateway does not hand the broker the body
itself but::

    "RGQ1" || len(key id) (1 byte) || key id || nonce || XChaCha20-Poly1305(body)

with AAD ``"rgw-quarantine\\0" || key id``, under the quarantine key of the day (UTC) the
message was quarantined: a data key of scope ``quarantine:YYYY-MM-DD``, wrapped by the
gateway's own encryption key like a case key (gateway/at_rest.py). The retention pass
shreds the keys of days older than ``quarantine_retention_days``; from then on the queued
copies are opaque to everyone, and ``GET /quarantine`` and ``gateway quarantine list``
say ``body: destroyed``.

Re-driving moves the copy back to the inbox unchanged; the consumer recognises the format,
decrypts it while the day's key lives and verifies the envelope as if it had just arrived.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Literal

from nacl.exceptions import CryptoError
from nacl.secret import Aead

from gateway.actors import SYSTEM_ACTOR
from gateway.at_rest import AtRest, AtRestError, PayloadShreddedError
from gateway.errors import GatewayError
from gateway.store.base import AuditEntry, Store

MAGIC = b"RGQ1"
SCOPE_PREFIX = "quarantine:"
#: Application header naming the key a quarantine copy is sealed under (for listings).
KEY_HEADER = "rgw-quarantine-key"
#: How many days before the cutoff each pass looks at (the pass runs hourly; a gateway that
#: was down longer than this leaves older keys for an operator: docs/operations.md).
LOOKBACK_DAYS = 60

BodyState = Literal["encrypted", "destroyed", "clear"]
#: The only key ids :meth:`QuarantineVault.seal` writes (gateway/at_rest.py data key ids).
_KEY_ID = re.compile(r"case-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def day_scope(moment: datetime) -> str:
    """The key scope of the UTC day ``moment`` falls on."""
    return f"{SCOPE_PREFIX}{moment.date().isoformat()}"


def sealed_key_id(body: bytes) -> str | None:
    """The quarantine key id a body is sealed under; None for a body in another format,
    including one that merely starts with the magic (anyone can publish that: its bytes are
    then an unverified envelope like any other, never a key id quoted or looked up)."""
    if body[:4] != MAGIC or len(body) < 5:
        return None
    size = body[4]
    if len(body) < 5 + size:
        return None
    key_id = body[5 : 5 + size].decode("ascii", "replace")
    return key_id if _KEY_ID.fullmatch(key_id) else None


class QuarantineVault:
    """Seal quarantine bodies, open them for a re-drive, destroy the keys of old days."""

    def __init__(self, at_rest: AtRest, store: Store) -> None:
        self.at_rest = at_rest
        self.store = store
        #: The current day's (scope, key id, key): a burst of poison messages must not cost a
        #: store round trip each. Only past days' keys are ever destroyed, so it stays valid.
        self._today: tuple[str, str, bytes] | None = None

    async def seal(self, body: bytes, at: datetime) -> bytes:
        """The body to hand to the quarantine queue (an already sealed body is kept as is)."""
        if sealed_key_id(body) is not None:
            return body  # quarantined again after a re-drive: still under its first day's key
        scope = day_scope(at)
        if self._today is None or self._today[0] != scope:
            key_id, key = await self.at_rest.scope_key(scope, at)
            self._today = (scope, key_id, key)
        _, key_id, key = self._today
        kid = key_id.encode("ascii")
        return MAGIC + bytes([len(kid)]) + kid + bytes(Aead(key).encrypt(body, _aad(kid)))

    async def open(self, body: bytes) -> bytes:
        """The original body of a sealed quarantine copy; PayloadShreddedError once its key
        is destroyed. A body in another format is returned unchanged."""
        key_id = sealed_key_id(body)
        if key_id is None:
            return body
        try:
            key = await self.at_rest.key_by_id(key_id)
        except AtRestError:
            raise AtRestError("quarantined body names a quarantine key this gateway never made") from None
        if key is None:
            raise PayloadShreddedError("quarantined body was under a quarantine key destroyed since")
        kid = key_id.encode("ascii")
        try:
            return bytes(Aead(key).decrypt(body[5 + len(kid) :], _aad(kid)))
        except CryptoError:
            raise AtRestError("quarantined body fails authentication under its quarantine key") from None

    async def state(self, key_id: str | None) -> BodyState:
        """Whether a listed quarantine copy's body can still be read by this gateway."""
        return await body_state(self.store, key_id)

    async def destroy_expired(self, now: datetime, retention: timedelta) -> int:
        """Shred the quarantine keys of days older than ``retention``; return how many."""
        cutoff = (now - retention).date()
        destroyed = 0
        for back in range(1, LOOKBACK_DAYS + 1):
            scope = f"{SCOPE_PREFIX}{(cutoff - timedelta(days=back)).isoformat()}"
            live = await self.store.live_case_key(scope)
            if live is None:
                continue
            entry = AuditEntry(at=now, event_type="data.shredded", actor=SYSTEM_ACTOR.name,
                               detail_json='{"keys": 1, "reason": "quarantine_expired"}')
            destroyed += len(await self.store.shred_data_keys([live.key_id], "quarantine_expired", now,
                                                              audit=[entry]))
        return destroyed


async def body_state(store: Store, key_id: str | None) -> BodyState:
    """``encrypted`` (re-drivable), ``destroyed`` (its key is shredded) or ``clear`` (quarantined
    before bodies were sealed, or dead-lettered by the broker) for a copy's key id header."""
    if not key_id:
        return "clear"
    key = await store.get_data_key(key_id)
    return "encrypted" if key is not None and key.wrapped is not None else "destroyed"


class QuarantineBodyDestroyedError(GatewayError):
    """A re-driven quarantine copy whose quarantine key was destroyed: nobody can read it."""

    code = "quarantine_body_destroyed"


def _aad(kid: bytes) -> bytes:
    return b"rgw-quarantine\x00" + kid
