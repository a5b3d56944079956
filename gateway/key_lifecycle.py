"""Short-lived encryption keys on the receiving side: pick up keys generated ahead, destroy
keys no valid message can still be sealed to (docs/keys.md, "Short-lived encryption keys").

A message sealed to encryption key K is refused once ``created`` is later than K's
``not_after`` + the clock skew allowed (gateway/envelope.py), and every message expires
at most ``max_lifetime`` after its ``created``. So from ``not_after + skew + max_lifetime``
no message sealed to K can be accepted any more; after a further ``grace`` (clocks, a
delivery being retried) the retention pass destroys K's private key:

1. inbox rows stored in the older at-rest format (``RGAR1``/``RGAR0``, which re-open only
   with the transport key) are re-stored with their decrypted inner part, and case keys of
   the inbox still wrapped by K are re-wrapped under the newest held key
   (gateway/at_rest.py), so stored messages stay readable for their retention period;
2. ``key.destroyed`` is audited (the kid and dates, never key material);
3. K leaves memory and its key file is overwritten and deleted.

From then on the sender's outbox copy, any broker, backup or quarantine copy of an
envelope sealed to K opens with no key anyone holds; a late copy arriving is quarantined
as ``enc_key_destroyed``.
"""

from __future__ import annotations

import asyncio
import json
import os
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Awaitable, Callable, Protocol

import structlog

from gateway.actors import SYSTEM_ACTOR
from gateway.at_rest import AtRest
from gateway.clock import format_ts
from gateway.directory import Directory
from gateway.errors import KeyFileError
from gateway.keyfile import KEY_SUFFIX, KeyPair, read_key_file
from gateway.keys import AgencyIdentity
from gateway.metrics import Metrics
from gateway.store.base import AuditEntry, AuditQuery, Store

log = structlog.get_logger("gateway.key_lifecycle")


def destruction_due(not_after: datetime, *, max_lifetime: timedelta, skew: timedelta, grace: timedelta) -> datetime:
    """When the private half of an encryption key ending at ``not_after`` may be destroyed."""
    return not_after + skew + max_lifetime + grace


def next_key_missing(identity: AgencyIdentity, now: datetime, period: timedelta) -> bool:
    """True when the held encryption keys cover less than one ``period`` ahead of ``now``."""
    ends = [not_after for _, not_after in identity.encryption_validity.values()]
    return bool(ends) and max(ends) - now < period


def next_key_unpublished(directory: Directory, identity: AgencyIdentity, now: datetime, period: timedelta) -> bool:
    """True when the directory in force lists no encryption key of this agency (not revoked)
    that is still valid one ``period`` from now: once the listed keys end, senders holding
    this directory cannot seal to the agency at all (``no_valid_key``). A listed key this
    gateway holds ends when its own record says (a key cut by ``enc-ahead --shorten-current``
    but listed uncut is refused as ``enc_key_expired`` after the cut)."""
    if identity.agency_id not in directory.agencies:
        return False
    ends = [min(k.not_after, identity.encryption_validity.get(k.kid, (k.not_before, k.not_after))[1])
            for k in directory.agency(identity.agency_id).keys
            if k.use == "enc" and k.kid not in directory.revocations]
    return not ends or max(ends) - now < period


def current_key_long_lived(identity: AgencyIdentity, now: datetime, period: timedelta) -> bool:
    """True when the encryption key valid now ends more than one ``period`` after ``now``: a
    key off the short-lived schedule (``gateway keys generate --valid-days 365`` never followed
    by ``enc-ahead --shorten-current``, or ``rotate --use enc``), so envelopes sealed to it stay
    readable far longer than docs/consent.md promises."""
    if not identity.encryption_keys:
        return False
    validity = identity.encryption_validity.get(identity.current_encryption_kid(now))
    return validity is not None and validity[1] - now > period


class KeySource(Protocol):
    """Where the gateway's private keys live (its key directory)."""

    async def kids(self) -> list[str]:
        """Ids of the keys now in the store (blocking I/O runs off the event loop)."""

    async def read(self, kid: str) -> KeyPair:
        """One key (a passphrase-protected file costs an Argon2id run: only new keys are read)."""

    async def destroy(self, kid: str) -> bool:
        """Overwrite and delete the private key ``kid``; False if it was not there."""

    async def changed(self, kid: str) -> bool:
        """True if the key ``kid`` may have changed since this source last read it (or it never did)."""


@dataclass(frozen=True)
class KeyDirectory:
    """A key directory of ``<kid>.key`` files (gateway/keyfile.py) as a KeySource."""

    path: Path
    passphrase: bytes | None = field(default=None, repr=False)
    #: Kids of signing keys read once: not read again on every pass.
    _signing: set[str] = field(default_factory=set, repr=False)
    #: (mtime_ns, size) of each key file when it was last read, to notice a rewritten file
    #: (``enc-ahead --shorten-current``) without paying an Argon2id run on every pass.
    _stamps: dict[str, tuple[int, int]] = field(default_factory=dict, repr=False)

    async def kids(self) -> list[str]:
        """The kids of the ``<kid>.key`` files (signing keys already seen left out), off the event loop."""
        return [kid for kid in await asyncio.to_thread(_key_file_kids, self.path) if kid not in self._signing]

    async def read(self, kid: str) -> KeyPair:
        """Read and check one key file off the event loop."""
        stamp = await asyncio.to_thread(_stamp, self.path / f"{kid}{KEY_SUFFIX}")
        pair = await asyncio.to_thread(read_key_file, self.path / f"{kid}{KEY_SUFFIX}", self.passphrase)
        if stamp is not None:
            self._stamps[kid] = stamp
        if pair.kid != kid:
            raise KeyFileError(f"key file {kid}{KEY_SUFFIX} holds key {pair.kid}; the file name must be its kid")
        if pair.use == "sig":
            self._signing.add(kid)
        return pair

    async def changed(self, kid: str) -> bool:
        """True if the key file was rewritten since it was last read here (or never read here)."""
        stamp = await asyncio.to_thread(_stamp, self.path / f"{kid}{KEY_SUFFIX}")
        return stamp is not None and self._stamps.get(kid) != stamp

    async def destroy(self, kid: str) -> bool:
        """Overwrite the key file with zeros, fsync, then delete it (off the event loop)."""
        return await asyncio.to_thread(_shred_file, self.path / f"{kid}{KEY_SUFFIX}")


def _key_file_kids(path: Path) -> list[str]:
    if not path.is_dir():
        raise KeyFileError(f"key directory {path} does not exist")
    return sorted(p.name[: -len(KEY_SUFFIX)] for p in path.glob(f"*{KEY_SUFFIX}"))


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        status = path.stat()
    except FileNotFoundError:
        return None
    return status.st_mtime_ns, status.st_size


def _shred_file(path: Path) -> bool:
    # Overwriting first helps where the file system writes in place (ext4 data=ordered,
    # xfs); on copy-on-write or flash storage old blocks may survive: docs/keys.md says so.
    try:
        fd = os.open(path, os.O_WRONLY | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        return False
    try:
        size = os.fstat(fd).st_size
        os.write(fd, b"\0" * size)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.unlink(path)
    return True


@dataclass(frozen=True)
class EncryptionKeyLifecycle:
    """One pass over the gateway's encryption keys (run by the retention task)."""

    identity: AgencyIdentity
    at_rest: AtRest
    store: Store
    clock: Callable[[], datetime]
    source: KeySource | None
    #: Longest envelope lifetime and clock skew the receiver accepts (EnvelopePolicy).
    max_lifetime: timedelta
    skew: timedelta
    grace: timedelta
    #: The key period (``enc_key_period_days``): warn when less than one period is covered ahead.
    period: timedelta
    metrics: Metrics
    #: Re-stores inbox rows kept in the older at-rest format (which needs the transport key)
    #: with their decrypted inner part; run before the first destruction (Gateway).
    restore_legacy: Callable[[], Awaitable[int]] | None = None
    #: Key files that could not be read, kid -> error code (kept by the Gateway across
    #: passes, so each failure is audited once and counted in /metrics and /readyz).
    load_failures: dict[str, str] | None = None
    #: One pass reads the key directory at a time (held by the Gateway): a second pass
    #: must not return before the first one's ``keys.loaded`` entry is written.
    load_lock: asyncio.Lock | None = None

    async def remember_destroyed(self) -> None:
        """Learn from the audit log which of our keys were destroyed before (at start)."""
        after = 0
        while True:
            page = await self.store.query_audit(AuditQuery(event_types=("key.destroyed",), after_seq=after), 500)
            if not page:
                return
            for record in page:
                kid = json.loads(record.detail_json).get("kid")
                if isinstance(kid, str):
                    self.identity.forget_encryption_key(kid)
            after = page[-1].seq

    async def apply(self) -> list[str]:
        """Load keys generated ahead, destroy the keys past due; return the kids destroyed."""
        now = self.clock()
        if self.source is not None:
            await self.load_new()
        destroyed: list[str] = []
        wrapping = self.identity.current_encryption_kid(now)
        for kid, (not_before, not_after) in sorted(self.identity.encryption_validity.items()):
            due = destruction_due(not_after, max_lifetime=self.max_lifetime, skew=self.skew, grace=self.grace)
            if now < due or kid == wrapping:
                continue  # the key valid now is never destroyed: new case keys need a wrapping key
            if self.restore_legacy is not None and not destroyed:
                await self.restore_legacy()
            await self._destroy(kid, not_after, due, now)
            destroyed.append(kid)
        if next_key_missing(self.identity, now, self.period):
            # Senders switch to the next key only if it is in the directory before it starts.
            ends = [na for _, na in self.identity.encryption_validity.values()]
            log.warning("keys.none_ahead", held=len(self.identity.encryption_keys),
                        covered_until=format_ts(max(ends)) if ends else None)
        return destroyed

    async def load_new(self) -> list[str]:
        """Read the key files added since the last pass (one unreadable file does not stop
        the others); return the kids of the encryption keys added."""
        if self.load_lock is None:
            return await self._load_new()
        async with self.load_lock:
            return await self._load_new()

    async def _load_new(self) -> list[str]:
        assert self.source is not None
        added: list[str] = []
        failures = self.load_failures if self.load_failures is not None else {}
        try:
            kids = await self.source.kids()
        except KeyFileError as exc:
            log.warning("keys.load_failed", error=exc.code)
            return added
        for kid in kids:
            if kid in self.identity.destroyed_encryption_kids:
                # A deletion that failed after its audit entry, or a file restored from a backup.
                await self.source.destroy(kid)
                continue
            if kid == self.identity.signing_kid:
                continue
            held = kid in self.identity.encryption_keys
            if held and not await self.source.changed(kid):
                continue
            try:
                pair = await self.source.read(kid)
            except KeyFileError as exc:
                if failures.get(kid) != exc.code:
                    # Once per file and error, not on every pass: the kid and a code, never the key.
                    failures[kid] = exc.code
                    await self.store.append_audit(self._entry("keys.load_failed", {"kid": kid, "error": exc.code}))
                log.warning("keys.load_failed", kid=kid, error=exc.code)
                continue
            failures.pop(kid, None)
            if not held and kid in self.identity.encryption_keys:
                continue  # a concurrent pass (the retention task, an unwrap miss) added it meanwhile
            if held:
                await self._shorten_if_cut(pair)
            elif pair.use == "enc" and pair.agency_id == self.identity.agency_id:
                added.append(self.identity.add_encryption_key(pair.private_key(), pair.not_before, pair.not_after))
        for kid in set(failures) - set(kids):
            del failures[kid]  # the file was removed or replaced under another name
        if added:
            await self.store.append_audit(self._entry("keys.loaded", {"enc": sorted(added)}))
            log.info("keys.loaded", enc=sorted(added))
        return added

    async def _shorten_if_cut(self, pair: KeyPair) -> None:
        # A held key whose file now ends earlier (``enc-ahead --shorten-current``): it ends
        # (and is destroyed) on the new schedule without a restart. A file can only cut a
        # validity short here, never extend it: a longer life needs a restart.
        validity = self.identity.encryption_validity.get(pair.kid)
        if pair.use != "enc" or validity is None or pair.not_after >= validity[1]:
            return
        self.identity.encryption_validity[pair.kid] = (validity[0], pair.not_after)
        await self.store.append_audit(self._entry("key.shortened", {
            "kid": pair.kid, "not_after": format_ts(pair.not_after), "previous_not_after": format_ts(validity[1])}))
        log.info("key.shortened", kid=pair.kid, not_after=format_ts(pair.not_after))

    async def _destroy(self, kid: str, not_after: datetime, due: datetime, now: datetime) -> None:
        moved = await self.at_rest.rewrap_case_keys(kid)
        await self.store.append_audit(self._entry("key.destroyed", {
            "kid": kid, "not_after": format_ts(not_after), "due": format_ts(due), "case_keys_rewrapped": moved}))
        self.identity.forget_encryption_key(kid)
        if self.source is not None:
            await self.source.destroy(kid)
        self.metrics.inc("enc_keys_destroyed_total")
        log.info("key.destroyed", kid=kid, case_keys_rewrapped=moved)

    def _entry(self, event: str, detail: dict[str, object]) -> AuditEntry:
        return AuditEntry(at=self.clock(), event_type=event, actor=SYSTEM_ACTOR.name,
                          detail_json=json.dumps(detail, sort_keys=True))
