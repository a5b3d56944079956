"""Received envelopes at rest: encrypted under per-message keys wrapped by per-case keys.

Key hierarchy (docs/consent.md has the picture):

* a **case key** (32 random bytes) per case pseudonym, stored only wrapped: sealed
  (libsodium sealed box) to one of the gateway's own X25519 keys;
* a **message key** (32 random bytes) per stored message, stored only wrapped by its
  case key (XChaCha20-Poly1305, AAD = ``"rgw-message-key\\0" + message id``);
* the stored blob: ``"RGAR1" || SHA-256(envelope) || nonce || XChaCha20-Poly1305(envelope)``
  under the message key, AAD = the message id.

Destroying the case key (consent withdrawn) makes every message of the case unreadable;
destroying one message key (retention) makes that message unreadable. The digest stays,
so a redelivery of the same bytes is still recognised after shredding.

Control messages without personal data (receipts, withdrawals, their acknowledgements,
audit checkpoints) are stored as ``"RGAR0" || SHA-256(envelope) || envelope``: they must
stay processable after the case's data is shredded (a withdrawal is itself "case data").

Since encryption keys are short-lived (docs/keys.md, "Short-lived encryption keys"), the
transport key an envelope is sealed to is destroyed weeks after it arrived, while the inbox
keeps messages for their retention period. So the decrypted ``inner signature || payload``
is stored next to the envelope: ``"RGAR2" || SHA-256(envelope) || nonce || AEAD(frame)``
(keyed) or ``"RGAR3" || SHA-256(envelope) || frame`` (control types), where
``frame = len(envelope) (4 bytes, big-endian) || envelope || inner signature || payload``.
Re-opening checks both signatures again without the transport key. ``RGAR1``/``RGAR0``
blobs written before still open, while their transport key lives.
"""

from __future__ import annotations

import hashlib
import secrets
import struct
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Awaitable, Callable

from nacl.exceptions import CryptoError
from nacl.public import PublicKey, SealedBox
from nacl.secret import Aead

from gateway.clock import utcnow
from gateway.errors import GatewayError
from gateway.keys import AgencyIdentity, key_id
from gateway.store import DataKey, InboxRecord, Store

KEYED = b"RGAR1"
UNKEYED = b"RGAR0"
KEYED_WITH_PLAINTEXT = b"RGAR2"
UNKEYED_WITH_PLAINTEXT = b"RGAR3"
_FORMATS = (KEYED, UNKEYED, KEYED_WITH_PLAINTEXT, UNKEYED_WITH_PLAINTEXT)
_DIGEST = 32
#: Message types whose payloads never carry personal data (schema-checked).
CONTROL_TYPES = frozenset({"receipt", "consent.withdrawal", "consent.withdrawal.ack", "audit.checkpoint"})


class PayloadShreddedError(GatewayError):
    """The message's data key was destroyed (consent withdrawn or retention ended)."""

    code = "payload_shredded"


class AtRestError(GatewayError):
    """A stored blob or wrapped key is malformed or fails authentication (tampering, wrong key)."""

    code = "at_rest_corrupt"


def envelope_digest(envelope: bytes) -> bytes:
    """SHA-256 of an envelope as kept beside every stored blob."""
    return hashlib.sha256(envelope).digest()


def needs_transport_key(blob: bytes) -> bool:
    """True for a blob in the older formats, which re-open only with the transport key."""
    return blob[:5] in (KEYED, UNKEYED)


@dataclass(frozen=True)
class StoredEnvelope:
    """A received envelope as kept at rest, and (for blobs written since short-lived keys)
    the ``inner signature || payload`` it decrypted to, so it re-opens without the
    transport key (gateway/envelope.py ``open_sealed(plaintext=...)``)."""

    envelope: bytes = field(repr=False)
    plaintext: bytes | None = field(default=None, repr=False)


def stored_digest(blob: bytes) -> bytes:
    """The envelope digest a stored blob carries (readable after shredding)."""
    if blob[:5] not in _FORMATS or len(blob) < 5 + _DIGEST:
        raise AtRestError("stored blob has an unknown format")
    return blob[5 : 5 + _DIGEST]


def _unkeyed_blob(envelope: bytes, plaintext: bytes | None) -> bytes:
    """A control message's blob: digest and content, no key (nothing personal in it)."""
    content = envelope if plaintext is None else _frame(envelope, plaintext)
    return (UNKEYED if plaintext is None else UNKEYED_WITH_PLAINTEXT) + envelope_digest(envelope) + content


def _keyed_blob(message_key: bytes, message_id: str, envelope: bytes, plaintext: bytes | None) -> bytes:
    """A message's blob: digest, then the content encrypted under its message key."""
    content = envelope if plaintext is None else _frame(envelope, plaintext)
    prefix = KEYED if plaintext is None else KEYED_WITH_PLAINTEXT
    return prefix + envelope_digest(envelope) + bytes(Aead(message_key).encrypt(content, message_id.encode("ascii")))


def _new_message_key(case_key: "_CaseKey", message_id: str, case_ref: str, at: datetime) -> tuple[bytes, DataKey]:
    """A fresh message key, and its row wrapped under ``case_key``."""
    message_key = secrets.token_bytes(Aead.KEY_SIZE)
    wrapped = bytes(Aead(case_key.key).encrypt(message_key, _key_aad(message_id)))
    return message_key, DataKey(key_id=message_id, case_ref=case_ref, kind="message", wrapped=wrapped,
                                created_at=at, parent_key_id=case_key.key_id)


class AtRest:
    """Encrypts envelopes for the inbox and opens them again while their keys live."""

    def __init__(self, identity: AgencyIdentity, store: Store, clock: Callable[[], datetime] = utcnow,
                 reload_keys: Callable[[], Awaitable[object]] | None = None) -> None:
        self.identity = identity
        self.store = store
        self.clock = clock
        #: Reads keys added to the key directory since the last pass (another process of the
        #: agency may have wrapped a case key under a key this one has not loaded yet).
        self.reload_keys = reload_keys

    async def seal_new(self, message_id: str, case_ref: str, message_type: str, envelope: bytes, at: datetime,
                       plaintext: bytes | None = None) -> tuple[bytes, DataKey | None, DataKey | None]:
        """The blob to store for a message seen for the first time, its new message key
        (None for types kept without one) and, for a case with no live case key, the new
        case key (else None): the caller stores the keys in the same write as the blob
        (``Store.add_incoming(data_key=, case_key=)``). If that write finds a key already
        stored (DataKeyExistsError), :meth:`seal` makes the blob under the stored keys instead."""
        if message_type in CONTROL_TYPES:
            return _unkeyed_blob(envelope, plaintext), None, None
        live = await self.store.live_case_key(case_ref)
        if live is None:
            # Not stored here: the message's write stores it, so a new case costs one write.
            case_key, new_case_key = self._new_case_key(case_ref, at)
        else:
            case_key, new_case_key = _CaseKey(live.key_id, await self._unwrap_case_key(live)), None
        message_key, key = _new_message_key(case_key, message_id, case_ref, at)
        return _keyed_blob(message_key, message_id, envelope, plaintext), key, new_case_key

    async def seal(self, message_id: str, case_ref: str, message_type: str, envelope: bytes, at: datetime,
                   plaintext: bytes | None = None) -> bytes:
        """The blob to store for ``envelope`` (and its decrypted ``plaintext``, if given);
        creates (or reuses) the case and message keys."""
        if message_type in CONTROL_TYPES:
            return _unkeyed_blob(envelope, plaintext)
        left = await self.store.get_data_key(message_id)
        if left is not None:
            # An earlier attempt stored this message's key: seal under it, or learn that a
            # withdrawal shredded it, without making a case key for a case withdrawn since.
            return _keyed_blob(await self._left_message_key(left, case_ref), message_id, envelope, plaintext)
        case_key = await self._case_key(case_ref, at)
        message_key, key = _new_message_key(case_key, message_id, case_ref, at)
        stored = await self.store.add_data_key(key)
        if stored.wrapped != key.wrapped:
            # A concurrent attempt stored the message's key between the look and this write
            # (add_data_key keeps the first): the same as a key left before.
            return _keyed_blob(await self._left_message_key(stored, case_ref), message_id, envelope, plaintext)
        return _keyed_blob(message_key, message_id, envelope, plaintext)

    async def _left_message_key(self, key: DataKey, case_ref: str) -> bytes:
        """The message key an earlier attempt stored, unwrapped; PayloadShreddedError if it
        or its case key was destroyed since."""
        message_id = key.key_id
        if key.kind != "message" or key.case_ref != case_ref:
            raise AtRestError(f"data key {message_id} is not a message key of this case")
        if key.wrapped is None:
            raise PayloadShreddedError(f"message {message_id} was shredded before it was stored")
        parent = await self.store.get_data_key(key.parent_key_id or "")
        if parent is None or parent.kind != "case" or parent.case_ref != case_ref:
            raise AtRestError(f"message key {message_id} has no case key of its case")
        if parent.wrapped is None:
            raise PayloadShreddedError(f"message {message_id} was shredded before it was stored")
        return self._unwrap_message_key(key, await self._unwrap_case_key(parent), message_id)

    async def open(self, record: InboxRecord) -> StoredEnvelope:
        """The stored envelope of ``record``; PayloadShreddedError if its keys were destroyed."""
        blob = record.envelope
        stored_digest(blob)
        kind = blob[:5]
        if kind in (UNKEYED, UNKEYED_WITH_PLAINTEXT):
            return _unframe(blob[5 + _DIGEST :], kind == UNKEYED_WITH_PLAINTEXT, blob[5 : 5 + _DIGEST], record.message_id)
        message = await self.store.get_data_key(record.message_id)
        if message is None:
            raise AtRestError(f"no data key for message {record.message_id}")
        if message.wrapped is None:
            raise PayloadShreddedError(f"message {record.message_id} was shredded ({message.shred_reason})")
        case = await self.store.get_data_key(message.parent_key_id or "")
        if case is None:
            raise AtRestError(f"no case key for message {record.message_id}")
        if case.wrapped is None:
            raise PayloadShreddedError(f"message {record.message_id} was shredded ({case.shred_reason})")
        message_key = self._unwrap_message_key(message, await self._unwrap_case_key(case), record.message_id)
        try:
            content = bytes(Aead(message_key).decrypt(blob[5 + _DIGEST :], record.message_id.encode("ascii")))
        except CryptoError:
            raise AtRestError(f"stored message {record.message_id} fails authentication") from None
        return _unframe(content, kind == KEYED_WITH_PLAINTEXT, blob[5 : 5 + _DIGEST], record.message_id)

    async def rewrap_case_keys(self, old_kid: str, batch: int = 500) -> int:
        """Move every live case key wrapped by our key ``old_kid`` under the key valid now
        (before ``old_kid`` is destroyed); return how many were moved."""
        new_kid, public = self._wrapping_key()
        if new_kid == old_kid:
            raise AtRestError(f"key {old_kid} is the key valid now; it cannot be replaced by itself")
        moved = 0
        while True:
            due = await self.store.case_keys_wrapped_by(old_kid.encode("ascii"), batch)
            if not due:
                return moved
            progressed = False
            for key in due:
                rewrapped = new_kid.encode("ascii") + SealedBox(public).encrypt(await self._unwrap_case_key(key))
                if await self.store.rewrap_data_key(key.key_id, key.wrapped or b"", rewrapped):
                    moved += 1
                    progressed = True
            if not progressed and len(due) < batch:
                return moved  # the rest were shredded or moved by someone else meanwhile

    async def scope_key(self, scope: str, at: datetime) -> tuple[str, bytes]:
        """(key id, key) of the live key of a scope that is not a case (e.g. one day of
        quarantine), created on first use and wrapped like a case key."""
        key = await self._case_key(scope, at)
        return key.key_id, key.key

    async def key_by_id(self, key_id: str) -> bytes | None:
        """The unwrapped key ``key_id`` made by :meth:`scope_key`; None once it is shredded."""
        key = await self.store.get_data_key(key_id)
        if key is None:
            raise AtRestError(f"no data key {key_id}")
        return None if key.wrapped is None else await self._unwrap_case_key(key)

    async def _case_key(self, case_ref: str, at: datetime) -> "_CaseKey":
        live = await self.store.live_case_key(case_ref)
        if live is None:
            fresh, row = self._new_case_key(case_ref, at)
            live = await self.store.add_data_key(row)
            if live.wrapped == row.wrapped:
                # Ours was stored (no concurrent writer won): no need to unwrap what we just wrapped.
                return fresh
        return _CaseKey(live.key_id, await self._unwrap_case_key(live))

    def _new_case_key(self, case_ref: str, at: datetime) -> tuple["_CaseKey", DataKey]:
        """A fresh case key, and its row wrapped under our encryption key valid now (not stored)."""
        fresh = secrets.token_bytes(Aead.KEY_SIZE)
        kid, public = self._wrapping_key()
        row = DataKey(key_id=f"case-{uuid.uuid4()}", case_ref=case_ref, kind="case",
                      wrapped=kid.encode("ascii") + SealedBox(public).encrypt(fresh), created_at=at)
        return _CaseKey(row.key_id, fresh), row

    def _wrapping_key(self) -> tuple[str, PublicKey]:
        # The key valid now wraps new case keys, not one generated ahead: every process of
        # the agency (one shared store) holds it, while a key ahead reaches each process only
        # on its next pass over the key directory. Older held keys still unwrap old case keys
        # until they are re-wrapped and destroyed.
        kid = self.identity.current_encryption_kid(self.clock())
        private = self.identity.encryption_keys[kid]
        assert kid == key_id(bytes(private.public_key))
        return kid, private.public_key

    async def _unwrap_case_key(self, key: DataKey) -> bytes:
        wrapped = key.wrapped or b""
        kid, sealed = wrapped[:32].decode("ascii", "replace"), wrapped[32:]
        private = self.identity.encryption_keys.get(kid)
        if private is None and self.reload_keys is not None and kid not in self.identity.destroyed_encryption_kids:
            await self.reload_keys()
            private = self.identity.encryption_keys.get(kid)
        if private is None:
            raise AtRestError(f"case key {key.key_id} is wrapped by key {kid}, which this gateway no longer holds")
        try:
            return bytes(SealedBox(private).decrypt(sealed))
        except CryptoError:
            raise AtRestError(f"case key {key.key_id} fails authentication") from None

    @staticmethod
    def _unwrap_message_key(key: DataKey, case_key: bytes, message_id: str) -> bytes:
        try:
            return bytes(Aead(case_key).decrypt(key.wrapped or b"", _key_aad(message_id)))
        except CryptoError:
            raise AtRestError(f"message key {message_id} fails authentication") from None


class _CaseKey:
    __slots__ = ("key_id", "key")

    def __init__(self, key_id: str, key: bytes) -> None:
        self.key_id = key_id
        self.key = key


def _frame(envelope: bytes, plaintext: bytes) -> bytes:
    return struct.pack(">I", len(envelope)) + envelope + plaintext


def _unframe(content: bytes, framed: bool, digest: bytes, message_id: str) -> StoredEnvelope:
    if not framed:
        envelope, plaintext = content, None
    else:
        (size,) = struct.unpack(">I", content[:4]) if len(content) >= 4 else (len(content),)
        if len(content) < 4 + size:
            raise AtRestError(f"stored message {message_id} is truncated")
        envelope, plaintext = content[4 : 4 + size], content[4 + size :]
    if envelope_digest(envelope) != digest:
        raise AtRestError(f"stored message {message_id} does not match its digest")
    return StoredEnvelope(envelope, plaintext)


def _key_aad(message_id: str) -> bytes:
    return b"rgw-message-key\x00" + message_id.encode("ascii")
