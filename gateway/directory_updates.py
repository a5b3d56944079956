"""Which signed directory is in force: verify, refuse rollbacks, record, and report freshness.

A directory arrives from the file named by ``directory_path`` (at start-up) or from the
authority's broker feed (gateway/transport/directory_feed.py). Either way it must verify
against the pinned authority key(s) and carry a serial greater than every serial this
gateway accepted before; the store remembers those (``Store.accept_directory``), so a
restart with an older file does not roll the trust list back. See docs/keys.md
"Distribution" and "Rollback protection".
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Callable, Literal

import structlog

from gateway.actors import SYSTEM_ACTOR
from gateway.canonical import strict_loads
from gateway.directory import Directory, check_serial_advance, directory_digest, load_directory
from gateway.errors import DirectoryError, DirectoryRollbackError, DirectorySignatureError
from gateway.store import AuditEntry, DirectoryRecord, Store

log = structlog.get_logger("gateway.directory_updates")

Source = Literal["file", "broker"]

#: A signed directory is far below this; anything bigger is not one (refused unread).
MAX_DIRECTORY_BYTES = 4 * 1024 * 1024


class DemoDirectoryRefusedError(DirectoryError):
    """A demo directory offered to a gateway that does not allow one."""

    code = "directory_demo_refused"


class StoredDirectoryMismatchError(DirectoryError):
    """The stored directory row's serial or digest is not that of the signed bytes it holds."""

    code = "directory_store_mismatch"


class OwnAgencyMissingError(DirectoryError):
    """The directory does not list this gateway's own agency."""

    code = "directory_own_agency_missing"


@dataclass(frozen=True)
class InForce:
    """The directory in force with the digest of its signed file."""

    directory: Directory
    digest: str


@dataclass(frozen=True)
class Offer:
    """What became of one offered directory: ``updated``, ``unchanged`` (the same file again) or
    ``refused`` (with the reason code audited in ``directory.refused``)."""

    outcome: Literal["updated", "unchanged", "refused"]
    serial: int | None
    reason: str | None = None


class DirectoryKeeper:
    """Holds the directory in force and decides whether an offered one replaces it."""

    def __init__(self, store: Store, authority_keys: tuple[bytes, ...], *, agency_id: str, allow_demo: bool,
                 clock: Callable[[], datetime]) -> None:
        self.store = store
        self.authority_keys = authority_keys
        self.agency_id = agency_id
        self.allow_demo = allow_demo
        self.clock = clock
        self._current: InForce | None = None
        # One offer at a time per process: compare-and-record must not interleave.
        self._lock = asyncio.Lock()

    @property
    def current(self) -> InForce:
        """The directory in force (after ``startup``)."""
        if self._current is None:
            raise DirectoryError("no directory loaded yet")
        return self._current

    # --- verifying ------------------------------------------------------------------------

    def verify(self, data: bytes) -> Directory:
        """Signature, strict parsing, and this gateway's own conditions (CPU only)."""
        directory = load_directory(data, self.authority_keys)
        if directory.demo and not self.allow_demo:
            raise DemoDirectoryRefusedError("the directory is a demo directory; set allow_demo_directory = true "
                                            "to use it")
        if self.agency_id not in directory.agencies:
            raise OwnAgencyMissingError(f"this agency {self.agency_id} is not listed in directory serial {directory.serial}")
        return directory

    def _verify_stored(self, stored: DirectoryRecord) -> Directory:
        """Verify a stored directory row and bind its serial and digest to the signed bytes
        (the row's own columns are what rollback checks compare against: never trusted alone)."""
        directory = self.verify(stored.signed)
        if directory.serial != stored.serial or directory_digest(stored.signed) != stored.digest:
            raise StoredDirectoryMismatchError(
                f"the stored directory row claims serial {stored.serial} but its signed file is serial "
                f"{directory.serial} or has another digest: the store was altered or mis-restored; restore it "
                "or remove the directory rows and start with a current signed directory")
        return directory

    # --- start-up -------------------------------------------------------------------------

    async def startup(self, file_bytes: bytes) -> Directory:
        """The directory to start with: the file if it is newer than every accepted one, else
        the newest accepted one from the store (the file is then refused and audited).

        The file must verify (it is configuration); a stored directory that no longer verifies
        and is newer than the file stops the start (DirectoryRollbackError): install a newer one.
        """
        directory = await asyncio.to_thread(self.verify, file_bytes)
        digest = directory_digest(file_bytes)
        stored = await self.store.current_directory()
        if stored is None or directory.serial > stored.serial:
            if await self._record(directory, file_bytes, digest, "file", previous=stored.serial if stored else None):
                self._current = InForce(directory, digest)
                return directory
            # Another process of the agency recorded a directory meanwhile: decide against it.
            stored = await self.store.current_directory()
            assert stored is not None
        if directory.serial == stored.serial and digest == stored.digest:
            self._current = InForce(directory, digest)
            return directory
        try:
            kept = await asyncio.to_thread(self._verify_stored, stored)
        except StoredDirectoryMismatchError:
            raise
        except DirectoryError as exc:
            raise DirectoryRollbackError(
                f"the directory file has serial {directory.serial}, not newer than serial {stored.serial} this "
                f"gateway accepted before, and that stored directory no longer verifies ({exc.code}): install a "
                f"signed directory with serial {stored.serial + 1} or higher (directory_path)") from None
        await self._audit_refused("rollback", directory.serial, stored.serial, "file")
        log.warning("directory.file_refused", reason="rollback", file_serial=directory.serial,
                    serial=stored.serial, hint="starting with the newer directory accepted before")
        self._current = InForce(kept, stored.digest)
        return kept

    # --- updates --------------------------------------------------------------------------

    async def offer(self, data: bytes, source: Source) -> Offer:
        """Verify a published directory and make it the one in force if its serial is greater.

        Refusals are audited and logged, never raised; a store failure is raised (the caller
        retries: nothing is lost)."""
        async with self._lock:
            current = self.current
            if len(data) > MAX_DIRECTORY_BYTES:
                await self._audit_refused("oversize", None, current.directory.serial, source)
                log.warning("directory.refused", reason="oversize", source=source, size=len(data),
                            serial=current.directory.serial)
                return Offer("refused", None, "oversize")
            try:
                directory = await asyncio.to_thread(self.verify, data)
            except Exception as exc:  # noqa: BLE001 - whatever fails to verify is refused, never retried
                # Only store calls may raise out of an offer (and be retried): a publication
                # that cannot be verified would otherwise block the feed behind it forever.
                reason = _refusal_reason(exc)
                await self._audit_refused(reason, _claimed_serial(data), current.directory.serial, source)
                log.warning("directory.refused", reason=reason, source=source,
                            error=getattr(exc, "code", type(exc).__name__), serial=current.directory.serial)
                return Offer("refused", None, reason)
            digest = directory_digest(data)
            if directory.serial == current.directory.serial and digest == current.digest:
                return Offer("unchanged", directory.serial)  # the same publication again (redelivery)
            try:
                check_serial_advance(current.directory.serial, directory.serial)
            except DirectoryRollbackError:
                return await self._refuse_rollback(directory.serial, current.directory.serial, source)
            if not await self._record(directory, data, digest, source, previous=current.directory.serial):
                stored = await self.store.current_directory()
                if stored is not None and stored.serial == directory.serial and stored.digest == digest:
                    # This very file was recorded by an earlier try whose answer was lost
                    # (connection dropped after COMMIT), or by another process: take it.
                    self._current = InForce(directory, digest)
                    log.info("directory.updated", serial=directory.serial, digest=digest, source=source,
                             recorded="before")
                    return Offer("updated", directory.serial)
                if stored is not None:
                    try:
                        await asyncio.to_thread(self._verify_stored, stored)
                    except DirectoryError as exc:
                        # The row that outranks this file is not a directory we accepted.
                        await self._audit_refused("store_mismatch", directory.serial, current.directory.serial,
                                                  source)
                        log.error("directory.refused", reason="store_mismatch", source=source,
                                  offered_serial=directory.serial, error=exc.code)
                        return Offer("refused", directory.serial, "store_mismatch")
                # Another process of this agency recorded a newer one first.
                return await self._refuse_rollback(directory.serial, stored.serial if stored else 0, source)
            self._current = InForce(directory, digest)
            return Offer("updated", directory.serial)

    async def newer_in_store(self) -> Directory | None:
        """The newest accepted directory if another process of this agency recorded one this
        process does not run with yet (several processes share one store)."""
        stored = await self.store.current_directory()
        if stored is None or stored.serial <= self.current.directory.serial:
            return None
        async with self._lock:
            if stored.serial <= self.current.directory.serial:
                return None
            directory = await asyncio.to_thread(self._verify_stored, stored)
            self._current = InForce(directory, stored.digest)
            log.info("directory.reloaded", serial=directory.serial, digest=stored.digest)
            return directory

    # --- freshness ------------------------------------------------------------------------

    def age(self, now: datetime) -> timedelta:
        """How long ago the directory in force was issued."""
        return now - self.current.directory.issued

    # --- audit ----------------------------------------------------------------------------

    async def _record(self, directory: Directory, data: bytes, digest: str, source: Source, *,
                      previous: int | None) -> bool:
        now = self.clock()
        entry = AuditEntry(at=now, event_type="directory.updated", actor=SYSTEM_ACTOR.name, detail_json=json.dumps(
            {"serial": directory.serial, "digest": digest, "previous_serial": previous, "source": source},
            sort_keys=True))
        accepted = await self.store.accept_directory(
            DirectoryRecord(directory.serial, digest, data, directory.issued, now, source), audit=entry)
        if accepted:
            log.info("directory.updated", serial=directory.serial, previous_serial=previous, digest=digest,
                     source=source)
        return accepted

    async def _refuse_rollback(self, serial: int, current: int, source: Source) -> Offer:
        await self._audit_refused("rollback", serial, current, source)
        log.warning("directory.refused", reason="rollback", source=source, offered_serial=serial, serial=current)
        return Offer("refused", serial, "rollback")

    async def _audit_refused(self, reason: str, serial: int | None, current: int, source: Source) -> None:
        await self.store.append_audit(AuditEntry(
            at=self.clock(), event_type="directory.refused", actor=SYSTEM_ACTOR.name, detail_json=json.dumps(
                {"reason": reason, "serial": serial, "current_serial": current, "source": source}, sort_keys=True)))


def _refusal_reason(exc: Exception) -> str:
    if isinstance(exc, DirectorySignatureError):
        return "bad_signature"
    if isinstance(exc, DemoDirectoryRefusedError):
        return "demo_directory"
    if isinstance(exc, OwnAgencyMissingError):
        return "own_agency_missing"
    return "malformed"


def _claimed_serial(data: bytes) -> int | None:
    """The serial a refused file claims, for the audit entry only (never trusted)."""
    try:
        serial = strict_loads(data)["directory"]["serial"]
    except Exception:  # noqa: BLE001 - a refusal must never raise (deep nesting, odd shapes)
        return None
    return serial if isinstance(serial, int) and not isinstance(serial, bool) and 0 < serial < 2**53 else None
