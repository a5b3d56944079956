"""The gateway service: wires envelope + directory + store + transport.

Sending: ``submit`` validates, seals and stores the envelope in the outbox, then returns
(the API answers 202). The outbox publisher publishes due messages until the broker
confirms, with backoff; a message whose envelope expired is marked failed.

Receiving: ``handle_delivery`` verifies, decrypts and validates each delivery, stores the
still-encrypted envelope in the inbox (deduplicated by message id and content) and only
then acks. Anything that fails verification goes to quarantine with a reason code. A
handler failure that is not transient (store unavailable, broker away) is counted per
message by this process and the message quarantined as ``handler_failed`` after
``delivery_max_attempts``; transient failures are requeued with back-off. Every stored
message that is not itself a receipt is answered with a signed ``receipt`` (delivered),
and later ``read``; receipts and responses move the sender's outbox status forward.

Nothing here logs, audits or raises with personal data: ids, codes and agency ids only.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import dataclasses
import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, AsyncIterator, Awaitable, Callable, cast

import structlog

from gateway.actors import SYSTEM, SYSTEM_ACTOR, Actor
from gateway.at_rest import (
    CONTROL_TYPES,
    AtRest,
    AtRestError,
    PayloadShreddedError,
    StoredEnvelope,
    envelope_digest,
    needs_transport_key,
    stored_digest,
)
from gateway.audit.exchange import CheckpointExchange
from gateway.audit.log import AuditLog
from gateway.case_locks import CaseLocks
from gateway.clock import format_ts, utcnow
from gateway.consent import ConsentRefusedError, check_referral_consent, v1_consent_covers
from gateway.retention import Retention
from gateway.key_lifecycle import (EncryptionKeyLifecycle, KeySource, current_key_long_lived, next_key_missing,
                                   next_key_unpublished)
from gateway.outbox_body import body_sha256, digest_record, is_deleted, outbox_header
from gateway.quarantine_vault import KEY_HEADER, QuarantineBodyDestroyedError, QuarantineVault, sealed_key_id
from gateway.withdrawal import CASE_DATA_TYPES, WithdrawalFlow, WithdrawalResult, blocks_referral, check_withdrawn_at
from gateway.directory import Directory
from gateway.directory import AGENCY_ID
from gateway.directory_updates import DirectoryKeeper, Offer
from gateway.transport.directory_feed import DirectoryFeed
from gateway.delivery_health import DeliveryHealth
from gateway.envelope import (
    DEFAULT_POLICY,
    Header,
    OpenedMessage,
    RecipientRefusesError,
    open_sealed,
    parse_envelope,
    parse_sealed,
    seal,
)
from gateway.errors import (
    ConflictError,
    EncryptionKeyDestroyedError,
    EnvelopeError,
    GatewayError,
    HandlerFailedError,
    InvalidPurposeError,
    NotFoundError,
    ReferenceMismatchError,
    ReplayedMessageError,
)
from gateway.failure_site import failure_code, failure_site
from gateway.message_ids import derived_message_id, uuid_or_none
from gateway.schema import PURPOSES, payload_version, validate_payload
from gateway.schema_versions import Upgraded, convert, negotiate
from gateway.keys import AgencyIdentity
from gateway.metrics import Metrics
from gateway.settings import Settings
from gateway.store import (
    AuditEntry,
    AuditQuery,
    AuditRecord,
    Case,
    IncomingMessage,
    InboxRecord,
    IncomingStatus,
    MessageConflictError,
    MessageNotFoundError,
    CheckpointRecord as CheckpointRecordT,
    DataKeyExistsError,
    OutboxEntry,
    OutboxRecord,
    OutgoingStatus,
    Store,
    StoreError,
    StoreUnavailableError,
    Withdrawal,
)
from gateway.transport import (
    Delivery,
    Disposition,
    TopologyError,
    Transport,
    TransportError,
    WireMessage,
)
from gateway.transport.attempts import AttemptCounter, delivery_key

log = structlog.get_logger("gateway.service")

#: referral.response decisions → the sender-side status they produce.
DECISION_STATUS: dict[str, OutgoingStatus] = {"accepted": "accepted", "declined": "declined", "more_information_needed": "more_info_requested"}

#: Names other modules and the tests import from here; they live in leaf modules
#: (gateway/actors.py, gateway/errors.py, gateway/message_ids.py) so the flows need not import the service.
__all__ = [
    "SYSTEM", "SYSTEM_ACTOR", "Actor", "ConflictError", "Gateway", "HandlerFailedError", "InvalidPurposeError",
    "NotFoundError", "READ_PURPOSES", "ReferenceMismatchError", "derived_message_id",
]

#: Why a user may read a received message: the referral purposes plus case follow-up.
READ_PURPOSES = (*PURPOSES, "case_followup")
FINAL_DECISIONS = ("accepted", "declined")

#: Failures that say nothing about the message: requeued with back-off, never counted
#: towards quarantine (the store or the broker is away; every message would fail).
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (StoreUnavailableError, TransportError)


async def _together(*steps: Awaitable[Any]) -> list[Any]:
    """Run independent steps concurrently; once all have ended, raise the first failure,
    else return their results in order."""
    outcomes = await asyncio.gather(*steps, return_exceptions=True)
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome
    return outcomes


@dataclass(frozen=True)
class RedrivenDelivery(Delivery):
    """A quarantine copy re-driven by an operator, opened for verification; ``sealed_body``
    is the copy as it was quarantined (under its first day's quarantine key)."""

    sealed_body: bytes = field(default=b"", repr=False)


@dataclass
class _Progress:
    """How far one delivery got: its header once parsed, and whether its signature was
    checked (only then are the header's sender and case facts, not claims)."""

    header: Header | None = None
    verified: bool = False


class Gateway:
    """One agency's gateway: send, receive, read, respond; outbox publishing in the background."""

    def __init__(
        self,
        settings: Settings,
        identity: AgencyIdentity,
        directory: Directory,
        store: Store,
        transport: Transport,
        *,
        clock: Callable[[], datetime] = utcnow,
        metrics: Metrics | None = None,
        directory_keeper: DirectoryKeeper | None = None,
        directory_feed: DirectoryFeed | None = None,
        key_source: KeySource | None = None,
    ) -> None:
        self.settings = settings
        self.identity = identity
        self.directory = directory
        self.store = store
        self.transport = transport
        self.clock = clock
        self.metrics = metrics or Metrics()
        self.agency_id = identity.agency_id
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        #: Outbox messages being published now (message id -> task), and whether more were
        #: due than ``outbox_batch`` allows in flight (a finished publish wakes the loop).
        self._publishing: dict[str, asyncio.Task[bool]] = {}
        self._publishing_full = False
        #: Messages whose last attempt failed unexpectedly, and the loop time before which
        #: they are not tried again.
        self._cooling: dict[str, float] = {}
        #: One set per outbox read in progress: the messages whose publish ended while it
        #: ran, so that its (older) answer does not start them again.
        self._ended_during_reads: dict[int, set[str]] = {}
        self._read_tokens = itertools.count()
        self._transport_ready = asyncio.Event()
        self._stopping = False
        #: Where encryption keys generated ahead come from and where destroyed ones are
        #: deleted (the key directory; None: keys live in memory only, demo and tests).
        self.key_source = key_source
        #: Key files that could not be read (kid -> error code), across retention passes.
        self.key_load_failures: dict[str, str] = {}
        self.key_load_lock = asyncio.Lock()
        # The clock is looked up on each call: tests and fault harnesses replace it on a running gateway.
        self.at_rest = AtRest(identity, store, lambda: self.clock(), reload_keys=self._reload_keys)
        self.quarantine_vault = QuarantineVault(self.at_rest, store)
        self._legacy_restored = False
        self.case_locks = CaseLocks()
        self.audit_log = AuditLog(store, identity, clock)
        #: Failed handler runs per message (id + body digest), counted here: never taken
        #: from a header the publisher could set. In memory, per process: see
        #: deploy/rabbitmq/README.md ("Poison messages") for why that bound suffices.
        self.attempts = AttemptCounter()
        self.delivery_health = DeliveryHealth(settings.degraded_after_failures, settings.degraded_window_seconds)
        self.metrics.gauge("deliveries_degraded", lambda: float(self.delivery_health.degraded),
                           "1 while the delivery handler keeps failing (/readyz check deliveries), else 0")
        self._retry_backoff_now = False
        #: Hot reload (docs/keys.md "Distribution"): without a keeper the directory is fixed.
        self.directory_keeper = directory_keeper
        self.directory_feed = directory_feed
        self._stale_serial: int | None = None
        self._stale_logged_at: datetime | None = None
        self.metrics.gauge("directory_serial", lambda: float(self.directory.serial),
                           "Serial of the signed directory in force")
        self.metrics.gauge("directory_age_seconds", lambda: self.directory_age().total_seconds(),
                           "Seconds since the directory in force was issued")
        self.metrics.gauge("directory_stale", lambda: float(self.directory_stale()),
                           "1 while the directory in force is older than directory_max_age_hours, else 0")
        self.metrics.gauge("enc_key_files_unreadable", lambda: float(len(self.key_load_failures)),
                           "Files in the key directory that could not be read (audited as keys.load_failed)")
        self.metrics.gauge("enc_key_next_missing", lambda: float(self.next_enc_key_missing()),
                           "1 while no held encryption key covers the next key period, else 0")
        self.metrics.gauge("enc_key_next_unpublished", lambda: float(self.next_enc_key_unpublished()),
                           "1 while the directory in force lists no encryption key of this agency valid one key "
                           "period from now, else 0")
        self.metrics.gauge("enc_key_long_lived", lambda: float(self.enc_key_long_lived()),
                           "1 while the encryption key valid now ends more than enc_key_period_days from now, "
                           "else 0")
        on_reconnect = getattr(transport, "on_reconnect", None)
        if on_reconnect is not None:
            on_reconnect(self._broker_back)
        self._describe_metrics()

    # --- lifecycle --------------------------------------------------------------------

    async def start(self) -> None:
        """Start the outbox publisher and (in the background, retrying) the transport and consumer."""
        self._stopping = False
        await self._record_keys()
        self._tasks.append(asyncio.create_task(self._connect_and_consume(), name="gateway-connect"))
        self._tasks.append(asyncio.create_task(self._outbox_loop(), name="gateway-outbox"))
        self._tasks.append(asyncio.create_task(
            self._every(self.settings.retention_poll_seconds, self.apply_retention), name="gateway-retention"))
        if self.settings.checkpoint_interval_seconds:
            self._tasks.append(asyncio.create_task(
                self._every(self.settings.checkpoint_interval_seconds, self.checkpoint_and_share),
                name="gateway-checkpoint"))
        self._tasks.append(asyncio.create_task(
            self._every(self.settings.directory_check_seconds, self.check_directory), name="gateway-directory"))
        if self.directory_feed is not None:
            self._tasks.append(asyncio.create_task(self._follow_directory_feed(), name="gateway-directory-feed"))
        # Answers that failed before (e.g. under an older directory) get another chance now.
        self._tasks.append(asyncio.create_task(self._retry_unanswered_logged(), name="gateway-unanswered"))

    async def stop(self) -> None:
        """Stop consuming and publishing; unacked deliveries return to the broker."""
        self._stopping = True
        self._wake.set()
        try:
            await self.transport.stop_consuming()
        except TransportError:
            pass
        if self.directory_feed is not None:
            await self.directory_feed.close()
        tasks = [*self._tasks, *self._publishing.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()
        await self.transport.close()

    async def _record_keys(self) -> None:
        """Audit the key ids this gateway runs with, and ``key.rotated`` when they changed."""
        await self._encryption_keys().remember_destroyed()
        now_using = {"sig": self.identity.signing_kid, "enc": sorted(self.identity.encryption_keys)}
        last: dict[str, Any] | None = None
        after = 0
        while True:  # the latest keys.in_use entry (there is one per start with new keys)
            page = await self.store.query_audit(AuditQuery(event_types=("keys.in_use",), after_seq=after), 500)
            if not page:
                break
            last, after = json.loads(page[-1].detail_json), page[-1].seq
        if last == now_using:
            return
        if last is not None:
            await self.audit_event("key.rotated", SYSTEM_ACTOR, {"from": last, "to": now_using})
        await self.audit_event("keys.in_use", SYSTEM_ACTOR, now_using)

    async def _connect_and_consume(self) -> None:
        delay = self.settings.retry_initial_seconds
        failed = False
        while not self._stopping:
            try:
                await self.transport.start()
                await self.transport.consume(self.agency_id, self.handle_delivery)
            except TransportError as exc:
                # The API keeps accepting referrals into the outbox while the broker is away.
                log.warning("transport.connect_failed", agency_id=self.agency_id, error=exc.code, retry_in=delay)
                failed = True
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.settings.retry_max_seconds)
                continue
            self._transport_ready.set()
            if failed:
                self._broker_back()
            self._wake.set()
            log.info("gateway.consuming", agency_id=self.agency_id)
            return

    async def _follow_directory_feed(self) -> None:
        assert self.directory_feed is not None
        delay = self.settings.retry_initial_seconds
        while not self._stopping:
            try:
                await self.directory_feed.start(self.receive_directory)
                return
            except TopologyError as exc:
                # The gateway runs on with the directory it has; an operator must import the feed's queue.
                log.error("directory_feed.topology_missing", error=exc.code, retry_in=delay,
                          hint="import deploy/rabbitmq/definitions.json (queue directory.<agency_id>)")
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.settings.retry_max_seconds)
            except TransportError as exc:
                log.warning("directory_feed.connect_failed", error=exc.code, retry_in=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.settings.retry_max_seconds)

    def _broker_back(self) -> None:
        """The broker connection is back: publish what waits in back-off now, not when due."""
        self._retry_backoff_now = True
        self._wake.set()

    async def wait_ready(self, timeout: float = 30.0) -> None:
        """Wait until the transport is connected and consuming."""
        await asyncio.wait_for(self._transport_ready.wait(), timeout)

    @property
    def transport_ready(self) -> bool:
        """True once the transport has connected and the consumer runs."""
        return self._transport_ready.is_set()

    @property
    def outbox_running(self) -> bool:
        """True while the outbox publisher task is alive (readiness)."""
        return any(t.get_name() == "gateway-outbox" and not t.done() for t in self._tasks)

    # --- sending ----------------------------------------------------------------------

    async def submit(
        self,
        message_type: str,
        payload: dict[str, Any],
        *,
        recipient: str,
        case_ref: str,
        actor: Actor,
        in_reply_to: str | None = None,
        message_id: str | None = None,
        negotiated: bool = False,
    ) -> Header:
        """Validate, seal and store a message in the outbox; it is published in the background.

        The payload (v1 or v2) is sent in the schema version negotiated with the recipient
        (:meth:`for_recipient`). ``negotiated``: the payload is already what
        :meth:`for_recipient` made of it for this recipient (the API's submission path), so it
        is not validated and converted a second time; sealing still validates it and checks
        the recipient's directory entry.
        """
        now = self.clock()
        if not negotiated:
            payload = self.for_recipient(message_type, payload, recipient).payload
        if (message_type == "referral.request"
                and payload_version(payload) not in self.directory.schema_versions(recipient)):
            # A v1 referral whose consent does not cover the recipient is left in v1
            # (for_recipient); for a recipient that takes only v2, the consent check must
            # refuse it by its cause (audited consent.refused) before sealing refuses the version.
            async with self.case_locks.hold(case_ref):
                await self._check_case_consent(message_type, payload, recipient=recipient, case_ref=case_ref,
                                               actor=actor, now=now)
        header, envelope = seal(
            payload, message_type=message_type, sender=self.identity, recipient=recipient,
            directory=self.directory, case_ref=case_ref, now=now,
            lifetime=timedelta(days=self.settings.message_lifetime_days),
            in_reply_to=in_reply_to, message_id=message_id,
        )
        outgoing = OutboxEntry(header.id, case_ref, recipient, message_type, envelope, now)
        # The audit entries commit with the outbox row: no message without its entries, and
        # no failure answered after the message is already durable.
        created = self.entry("message.created", actor, header, {"type": message_type, "recipient": recipient},
                             agency=recipient)
        if message_type == "referral.request" or message_type in CASE_DATA_TYPES:
            # Consent decision and storing under the case lock, so a withdrawal of the case
            # is either seen here or sees this message (gateway/withdrawal.py).
            async with self.case_locks.hold(case_ref):
                checked = await self._check_case_consent(message_type, payload, recipient=recipient,
                                                         case_ref=case_ref, actor=actor, now=now)
                claimed = self._publish_room()
                queued = await self.store.add_outgoing(outgoing, audit=[*checked, created], claim=claimed)
        else:
            claimed = self._publish_room()
            queued = await self.store.add_outgoing(outgoing, audit=created, claim=claimed)
        self.metrics.inc("messages_submitted_total", type=message_type)
        log.info("message.queued", message_id=header.id, type=message_type, recipient=recipient, case=case_ref)
        if queued:  # not a retry of a message queued before (that one is the loop's)
            self._publish_new(OutboxRecord(header.id, case_ref, recipient, message_type, envelope, "queued",
                                           0, now, None, now, now), claimed)
        else:
            self._wake.set()
        return header

    def schema_version_for(self, recipient: str) -> str:
        """The payload schema version to send to ``recipient``: the highest both directory entries list."""
        version = negotiate(self.directory.schema_versions(self.agency_id), self.directory.schema_versions(recipient))
        if version is None:
            raise RecipientRefusesError(f"{recipient} lists no payload schema version this gateway writes")
        return version

    def for_recipient(self, message_type: str, payload: dict[str, Any], recipient: str) -> Upgraded:
        """The payload in the version negotiated with ``recipient``, and what an upgrade left out.

        The submitted payload is validated in its own version first, so violations name its
        own paths; a v2 payload that v1 cannot carry raises DowngradeError (its fields listed).
        """
        validate_payload(message_type, payload)
        purposes = payload.get("purposes", []) if message_type == "referral.request" else []
        if not self.directory.may_receive(recipient, message_type, purposes):
            raise RecipientRefusesError(f"{recipient} does not accept {message_type} for purposes {sorted(purposes)}")
        country = self.directory.agency(recipient).country
        version = self.schema_version_for(recipient)
        if (version != payload_version(payload) and message_type == "referral.request"
                and payload_version(payload) == "1" and not v1_consent_covers(payload, recipient, country)):
            # It cannot be sent at all: left as written, so the consent check refuses it by its cause.
            version = "1"
        return convert(payload, message_type, version, recipient=recipient, recipient_country=country)

    async def publish_due(self, *, include_backoff: bool = False) -> int:
        """Publish every due outbox message once (those not being published already) and
        wait for them; return how many the broker confirmed.

        ``include_backoff``: also those waiting out a retry back-off (the broker just came
        back). Every back-off is at most ``retry_max_seconds``, so that horizon covers them."""
        tasks, _ = await self._start_publishing(include_backoff=include_backoff)
        results = await asyncio.gather(*tasks)
        return sum(results)

    async def _start_publishing(self, *, include_backoff: bool) -> tuple[list[asyncio.Task[bool]], bool]:
        """Start publishing due messages, up to ``outbox_batch`` in flight; return the tasks
        started and whether more were due than there was room for."""
        room = self.settings.outbox_batch - len(self._publishing)
        if room <= 0:
            return [], True
        now = self.clock()
        horizon = now + timedelta(seconds=self.settings.retry_max_seconds) if include_backoff else now
        clock = asyncio.get_running_loop().time()
        self._cooling = {mid: until for mid, until in self._cooling.items() if until > clock}
        # Rows being published, or resting after a failed attempt, are still queued: asked
        # for as well and skipped, so they are neither published twice nor crowd out new ones.
        wanted = room + len(self._publishing) + len(self._cooling)
        ended: set[str] = set()
        token = next(self._read_tokens)
        self._ended_during_reads[token] = ended
        try:
            due = await self.store.due_outgoing(horizon, wanted)
        finally:
            del self._ended_during_reads[token]
        room = self.settings.outbox_batch - len(self._publishing)  # submits may have started some meanwhile
        # A row whose publish ended during the read may be answered as still queued (read
        # before its mark_sent): it was published, and is not published twice.
        fresh = [record for record in due if record.message_id not in self._publishing
                 and record.message_id not in self._cooling and record.message_id not in ended][:max(room, 0)]
        return [self._start_publish(record, now) for record in fresh], len(due) == wanted

    def _start_publish(self, record: OutboxRecord, now: datetime) -> asyncio.Task[bool]:
        task = asyncio.create_task(self._publish_one(record, now), name="gateway-publish")
        self._publishing[record.message_id] = task
        task.add_done_callback(functools.partial(self._published, record.message_id))
        return task

    def _publish_room(self) -> bool:
        """True if a message queued now can be published at once."""
        return not self._stopping and len(self._publishing) < self.settings.outbox_batch

    def _publish_new(self, record: OutboxRecord, claimed: bool) -> None:
        """Hand a message just queued to the publisher: published now if it was queued as
        ``claimed`` (no wake-up and no store read on the way), else by the loop."""
        if not claimed or self._stopping or record.message_id in self._publishing:
            self._wake.set()
            return
        self._start_publish(record, record.created_at)

    def _published(self, message_id: str, task: asyncio.Task[bool]) -> None:
        self._publishing.pop(message_id, None)
        for ended in self._ended_during_reads.values():
            ended.add(message_id)
        if not task.cancelled() and (exc := task.exception()) is not None:
            # Store unavailable, or a bug: the row stays queued and is tried again, after
            # outbox_poll_seconds (a store that reads but cannot write must not make the
            # loop republish it at once, over and over). The kind only: texts could quote data.
            self._cooling[message_id] = asyncio.get_running_loop().time() + self.settings.outbox_poll_seconds
            log.warning("outbox.publish_failed", message_id=message_id,
                        error=getattr(exc, "code", type(exc).__name__))
            return
        if self._publishing_full:
            self._wake.set()  # a slot is free for what is still due

    async def _publish_one(self, record: OutboxRecord, now: datetime) -> bool:
        if is_deleted(record.envelope):
            # Only a withdrawal deletes a body before delivery, and it gives the message up
            # first; a queued digest record can only be a race with it: nothing to publish.
            await self.store.mark_failed(record.message_id, "body_deleted", at=now)
            return False
        header, _, _ = parse_envelope(record.envelope)
        if now > header.expires:
            await self.store.mark_failed(record.message_id, "expired", at=now)
            await self._audit("message.failed", SYSTEM_ACTOR, header, {"reason": "expired"})
            self.metrics.inc("publish_failures_total", reason="expired")
            return False
        try:
            await self.transport.publish(WireMessage(
                message_id=record.message_id, sender=self.agency_id, recipient=record.recipient,
                body=record.envelope, headers={"type": record.message_type, "schema": header.schema},
            ))
        except TransportError as exc:
            delay = min(self.settings.retry_initial_seconds * 2 ** record.attempts, self.settings.retry_max_seconds)
            await self.store.mark_retry(record.message_id, now + timedelta(seconds=delay), exc.code, at=now)
            self.metrics.inc("publish_failures_total", reason=exc.code)
            log.warning("message.publish_retry", message_id=record.message_id, error=exc.code,
                        attempts=record.attempts + 1, retry_in=delay)
            return False
        # The status and its audit entry are one write (the entry only if the status moved:
        # a receipt may have moved it past "sent" already).
        sent = self.entry("message.sent", SYSTEM_ACTOR, header, {"attempts": record.attempts + 1})
        await self.store.mark_sent(record.message_id, self.clock(), audit=sent)
        self.metrics.inc("messages_published_total", type=record.message_type)
        return True

    async def _outbox_loop(self) -> None:
        # Publishing is continuous: a message submitted while others wait for their broker
        # confirm starts at once, instead of after the whole previous round.
        catching_up = False
        while not self._stopping:
            self._wake.clear()
            if self._retry_backoff_now:
                self._retry_backoff_now, catching_up = False, True
                log.info("outbox.retry_after_reconnect")
            try:
                _, more = await self._start_publishing(include_backoff=catching_up)
            except Exception as exc:  # noqa: BLE001 - the publisher must outlive any one bad pass
                # Store unavailable, or a bug: log the kind only (texts could quote data) and retry.
                log.warning("outbox.pass_failed", error=getattr(exc, "code", type(exc).__name__))
                more = False
            self._publishing_full = more
            if not more:
                catching_up = False
            if more and len(self._publishing) < self.settings.outbox_batch:
                continue  # more are due and there is room for them
            try:
                await asyncio.wait_for(self._wake.wait(), self.settings.outbox_poll_seconds)
            except asyncio.TimeoutError:
                pass

    # --- the directory in force (docs/keys.md "Distribution") ----------------------------

    async def receive_directory(self, data: bytes) -> Offer:
        """A directory published by the authority: verified, checked against the serial in
        force, recorded and swapped in for every later send and open (in-flight work finishes
        with the directory it started with)."""
        if self.directory_keeper is None:
            raise GatewayError("this gateway was built without a directory keeper")
        offer = await self.directory_keeper.offer(data, "broker")
        if offer.outcome == "updated":
            self._directory_changed(self.directory_keeper.current.directory)
        elif offer.outcome == "refused":
            self.metrics.inc("directory_refusals_total", reason=offer.reason or "other")
        return offer

    async def check_directory(self) -> None:
        """Periodic: take a newer directory another process of this agency accepted, and warn
        while the one in force is older than ``directory_max_age_hours``."""
        if self.directory_keeper is not None:
            newer = await self.directory_keeper.newer_in_store()
            if newer is not None:
                self._directory_changed(newer)
        if self.directory_stale():
            now = self.clock()
            age_hours = round(self.directory_age().total_seconds() / 3600, 1)
            if self._stale_logged_at is None or now - self._stale_logged_at >= timedelta(hours=1):
                self._stale_logged_at = now
                log.warning("directory.stale", serial=self.directory.serial, age_hours=age_hours,
                            max_age_hours=self.settings.directory_max_age_hours)
            if self._stale_serial != self.directory.serial:
                self._stale_serial = self.directory.serial
                await self.audit_event("directory.stale", SYSTEM_ACTOR,
                                       {"serial": self.directory.serial, "age_hours": age_hours})

    def _directory_changed(self, directory: Directory) -> None:
        self.directory = directory
        self._stale_logged_at = None
        self.metrics.inc("directory_updates_total")
        self._tasks.append(asyncio.create_task(self._retry_unanswered_logged(), name="gateway-unanswered"))
        self._tasks[:] = [t for t in self._tasks if not t.done()]

    def directory_age(self) -> timedelta:
        """Time since the directory in force was issued."""
        return self.clock() - self.directory.issued

    def directory_stale(self) -> bool:
        """True if the directory in force is older than ``directory_max_age_hours`` (0: never)."""
        limit = self.settings.directory_max_age_hours
        return bool(limit) and self.directory_age() > timedelta(hours=limit)

    def directory_status(self) -> dict[str, Any]:
        """Serial, age and freshness of the directory in force (for /readyz)."""
        digest = self.directory_keeper.current.digest if self.directory_keeper is not None else None
        return {"serial": self.directory.serial, "issued": format_ts(self.directory.issued),
                "age_seconds": int(self.directory_age().total_seconds()), "digest": digest,
                "stale": self.directory_stale(), "max_age_hours": self.settings.directory_max_age_hours}

    async def _retry_unanswered_logged(self) -> None:
        try:
            answered = await self.retry_unanswered()
        except Exception as exc:  # noqa: BLE001 - the next directory or start tries again
            log.warning("unanswered.retry_failed", error=getattr(exc, "code", type(exc).__name__))
            return
        if answered:
            log.info("unanswered.retried", answered=answered)

    async def retry_unanswered(self) -> int:
        """Make the receipts and withdrawal acknowledgements that could not be sealed before
        (``receipt.failed``, ``consent.withdrawal_ack_failed``), if the directory now allows
        them; return how many are queued now. Failing again is audited again; nothing is lost."""
        pending: dict[tuple[str, str], AuditRecord] = {}
        after = 0
        while True:
            page = await self.store.query_audit(AuditQuery(
                event_types=("receipt.failed", "consent.withdrawal_ack_failed"), after_seq=after), 500)
            if not page:
                break
            after = page[-1].seq
            for record in page:
                if record.message_id is None:
                    continue
                status = json.loads(record.detail_json).get("status", "ack")
                pending.setdefault((record.message_id, status), record)
        answered = 0
        for (message_id, status), record in pending.items():
            answer_id = (derived_message_id("withdrawal-ack", message_id, self.agency_id) if status == "ack"
                         else derived_message_id("receipt", message_id, status, self.agency_id))
            if await self.store.get_outgoing(answer_id) is not None:
                continue
            incoming = await self.store.get_incoming(message_id)
            if incoming is None:
                continue
            try:
                opened = self.open_stored(await self.at_rest.open(incoming), incoming.received_at)
            except (PayloadShreddedError, EnvelopeError) as exc:
                log.info("unanswered.unreadable", message_id=message_id, error=exc.code)
                continue
            # Only the answer that failed: re-running every effect of the old message would
            # roll back what later messages did since (the case state, for one).
            if status == "ack":
                # A recorded withdrawal is not applied again; only its acknowledgement is made.
                await self._withdrawals().apply(opened)
            else:
                await self._ensure_receipt(opened.header, status,
                                           record.at if status == "read" else incoming.received_at)
            if await self.store.get_outgoing(answer_id) is not None:
                answered += 1
        return answered

    # --- receiving --------------------------------------------------------------------

    async def handle_delivery(self, delivery: Delivery) -> Disposition:
        """Verify, store and acknowledge one delivery; quarantine what fails verification.

        Each delivery is handled on its own: a failure is either transient (re-raised: the
        transport requeues it with back-off) or counted against this message, which is
        retried at once and quarantined as ``handler_failed`` after ``delivery_max_attempts``.
        """
        progress = _Progress()
        try:
            disposition = await self._handle_delivery(delivery, progress)
        except asyncio.CancelledError:
            raise
        except TRANSIENT_ERRORS:
            self.delivery_health.failed()
            raise
        except Exception as exc:  # noqa: BLE001 - any other failure is this message's: count it
            self.delivery_health.failed()
            return await self._handler_failed(delivery, exc, progress)
        self.attempts.forget_delivery(delivery.message_id, delivery.body)
        self.delivery_health.succeeded()
        return disposition

    async def _handler_failed(self, delivery: Delivery, exc: Exception, progress: _Progress) -> Disposition:
        key = delivery_key(delivery.message_id, delivery.body)
        attempt = self.attempts.bump(key)
        limit = self.settings.delivery_max_attempts
        where, code = failure_site(exc), failure_code(exc)
        final = attempt >= limit
        # Location and code only: the exception text of a non-gateway error may quote data.
        log.error("transport.handler_failed", message_id=delivery.message_id, error=type(exc).__name__, code=code,
                  where=where, attempt=attempt, max_attempts=limit, next="quarantine" if final else "retry")
        self.metrics.inc("handler_failures_total", reason=code if len(code) <= 64 else "other")
        if not final:
            return Disposition.RETRY
        failed = HandlerFailedError(f"handler failed {attempt} times; last at {where} ({code})")
        disposition = await self._quarantine(delivery, failed, progress.header, verified=progress.verified)
        self.attempts.forget(key)
        return disposition

    async def _handle_delivery(self, delivery: Delivery, progress: _Progress) -> Disposition:
        now = self.clock()
        if sealed_key_id(delivery.body) is not None:
            # A quarantine copy re-driven by an operator: verified again from the start.
            try:
                delivery = RedrivenDelivery(**{f.name: getattr(delivery, f.name) for f in dataclasses.fields(delivery)},
                                            sealed_body=delivery.body)
                delivery = dataclasses.replace(delivery, body=await self.quarantine_vault.open(delivery.sealed_body))
            except PayloadShreddedError:
                return await self._quarantine(delivery, QuarantineBodyDestroyedError(
                    f"re-driven message {delivery.message_id}: its quarantine key was destroyed"), None)
            except AtRestError as exc:
                return await self._quarantine(delivery, exc, None)
        try:
            parsed = parse_sealed(delivery.body)
        except EnvelopeError as exc:
            return await self._quarantine(delivery, exc, None)
        header = progress.header = parsed.header
        referenced: OutboxRecord | None = None
        if header.type == "receipt" and header.in_reply_to:
            # The outbox row a receipt is about, looked up together with the inbox.
            existing, referenced = await asyncio.gather(self.store.get_incoming(header.id),
                                                        self.store.get_outgoing(header.in_reply_to))
        else:
            existing = await self.store.get_incoming(header.id)
        if existing is not None:
            if stored_digest(existing.envelope) != envelope_digest(delivery.body):
                return await self._quarantine_other_content(delivery, header)
            # Redelivery after a crash or a lost ack: the application saw it once already.
            try:
                opened = self.open_stored(await self.at_rest.open(existing), existing.received_at)
            except (PayloadShreddedError, EncryptionKeyDestroyedError):
                pass  # shredded (or its key destroyed) since: its effects ran before that
            else:
                await self._after_store(opened, existing.received_at)
            self.metrics.inc("duplicates_total")
            log.info("message.duplicate", message_id=header.id, sender=header.sender)
            return Disposition.ACK
        try:
            opened = open_sealed(parsed, recipient=self.identity, directory=self.directory,
                                 replay_guard=None, now=now)
        except EnvelopeError as exc:
            return await self._quarantine(delivery, exc, header)
        progress.verified = True
        try:
            self._check_accepts(opened)
            referenced = await self._check_reference(opened, referenced)
            if header.type == "consent.withdrawal":
                check_withdrawn_at(opened.payload, max(now, header.created))
        except (EnvelopeError, ReferenceMismatchError, RecipientRefusesError, ConsentRefusedError) as exc:
            return await self._quarantine(delivery, exc, header, verified=True)
        if header.type == "receipt":
            # Storing a receipt and moving its message's status are independent writes, and
            # the move is idempotent (re-run on a redelivery): issued together they share one
            # commit. The receipt was verified, so a copy that loses the race below (or has
            # other content and is quarantined) moved the status no further than it says.
            assert referenced is not None  # _check_reference found it
            stored, _ = await _together(self._store_received(opened, delivery.body, now), self._apply_status(
                opened.payload["message_id"], opened.payload["status"], header, record=referenced))
        elif header.type in CONTROL_TYPES:
            stored = await self._store_received(opened, delivery.body, now)
        else:
            # Consent decision, encryption and storing under the case lock (gateway/withdrawal.py).
            async with self.case_locks.hold(header.case):
                try:
                    if header.type == "referral.request":
                        await self._check_consent_received(opened, now)
                    else:
                        await self._withdrawals().refuse_if_closed(header.type, header.case, header.sender)
                except ConsentRefusedError as exc:
                    return await self._quarantine(delivery, exc, header, verified=True)
                try:
                    stored = await self._store_received(opened, delivery.body, now)
                except PayloadShreddedError:
                    # A crash left its message key under a case key destroyed since: the
                    # withdrawal covered it, so it is dropped, not stored readable.
                    await self.store.append_audit(self.entry("message.dropped", SYSTEM_ACTOR, header,
                                                             {"reason": "payload_shredded"}))
                    return Disposition.ACK
        if not stored:  # a concurrent copy won the race: the same bytes, or other content?
            winner = await self.store.get_incoming(header.id)
            if winner is not None and stored_digest(winner.envelope) != envelope_digest(delivery.body):
                return await self._quarantine_other_content(delivery, header)
            self.metrics.inc("duplicates_total")
            log.info("message.duplicate", message_id=header.id, sender=header.sender)
            return Disposition.ACK
        self.metrics.inc("messages_received_total", type=header.type)
        log.info("message.received", message_id=header.id, type=header.type, sender=header.sender, case=header.case)
        if header.type != "receipt":  # a receipt's effect ran with its storing
            await self._after_store(opened, now, first=True)
        return Disposition.ACK

    async def _store_received(self, opened: OpenedMessage, envelope: bytes, now: datetime) -> bool:
        header = opened.header
        # The decrypted inner part is kept (under the message key) so the message stays
        # readable for its retention period after the short-lived transport key is destroyed.
        plaintext = opened.payload_signature + opened.payload_bytes
        audit = self.entry("message.received", SYSTEM_ACTOR, header, {"type": header.type, "sender": header.sender},
                           agency=header.sender)
        blob, key, case_key = await self.at_rest.seal_new(header.id, header.case, header.type, envelope, now,
                                                          plaintext)
        incoming = IncomingMessage(header.id, header.sender, header.type, header.case, blob, now)
        if key is not None:
            # The message key (and a new case's key) and the inbox row in one write.
            try:
                return await self.store.add_incoming(incoming, audit=audit, data_key=key, case_key=case_key)
            except DataKeyExistsError:
                # An earlier attempt stored a key (or the message itself), or another process
                # of the agency gave the case its key first: seal under the stored keys (or
                # learn that the message was shredded), then store as before.
                incoming = dataclasses.replace(incoming, envelope=await self.at_rest.seal(
                    header.id, header.case, header.type, envelope, now, plaintext))
        return await self.store.add_incoming(incoming, audit=audit)

    def _check_accepts(self, opened: OpenedMessage) -> None:
        # The sender's gateway checks this too; a non-conforming sender must not get data
        # past our own directory entry (e.g. assistance data to a law-enforcement agency).
        header = opened.header
        purposes = opened.payload.get("purposes", []) if header.type == "referral.request" else []
        if not self.directory.may_receive(self.agency_id, header.type, purposes):
            raise RecipientRefusesError(f"{self.agency_id} does not accept {header.type} for purposes {sorted(purposes)}")

    def open_stored(self, stored: StoredEnvelope, received_at: datetime) -> OpenedMessage:
        """Re-open a stored message (signatures checked again, from the kept plaintext)."""
        # Checks are re-run as of the moment we accepted the message: it was valid then,
        # and expiry of the envelope or of a key since must not make stored data unreadable.
        return open_sealed(stored.envelope, recipient=self.identity, directory=self.directory,
                           replay_guard=None, now=received_at, stored_at=received_at, plaintext=stored.plaintext)

    async def _check_reference(self, opened: OpenedMessage,
                               looked_up: OutboxRecord | None = None) -> OutboxRecord | None:
        """The outbox row an answer refers to (``looked_up`` if it is that row), checked to be
        ours, sent to the answer's sender and of the type answered; None for other types."""
        header, payload = opened.header, opened.payload
        if header.type == "receipt":
            referenced = payload["message_id"]
        elif header.type == "referral.response":
            referenced = payload["request_message_id"]
        elif header.type == "consent.withdrawal.ack":
            referenced = payload["withdrawal_message_id"]
        else:
            return None
        if header.in_reply_to != referenced:
            raise ReferenceMismatchError(f"{header.type} {header.id}: in_reply_to does not match the payload reference")
        original = (looked_up if looked_up is not None and looked_up.message_id == referenced
                    else await self.store.get_outgoing(referenced))
        if original is None or original.recipient != header.sender:
            raise ReferenceMismatchError(f"{header.type} {header.id} refers to a message we did not send to {header.sender}")
        if header.type == "referral.response" and original.message_type != "referral.request":
            raise ReferenceMismatchError(f"referral.response {header.id} does not answer a referral.request")
        if header.type == "consent.withdrawal.ack" and original.message_type != "consent.withdrawal":
            raise ReferenceMismatchError(f"consent.withdrawal.ack {header.id} does not answer a consent.withdrawal")
        return original

    async def _after_store(self, opened: OpenedMessage, received_at: datetime, *, first: bool = False) -> None:
        """Effects of a stored message; idempotent, so a redelivery can safely re-run them.
        ``first``: the message was stored just now, so no receipt for it can exist yet."""
        header, payload = opened.header, opened.payload
        if header.type == "receipt":
            await self._apply_status(payload["message_id"], payload["status"], header)
            return
        if header.type == "referral.response":
            await self._apply_status(payload["request_message_id"], DECISION_STATUS[payload["decision"]], header)
        if header.type == "consent.withdrawal.ack":
            # "accepted": the recipient applied the withdrawal (its data keys are destroyed).
            await self._apply_status(payload["withdrawal_message_id"], "accepted", header)
            await self._audit("consent.withdrawal_acknowledged", SYSTEM_ACTOR, header, {
                "withdrawal": payload["withdrawal_message_id"],
                "messages_made_unreadable": payload["messages_made_unreadable"],
                "case_key_destroyed": payload["case_key_destroyed"]}, agency=header.sender)
            return
        if header.type == "audit.checkpoint":
            await self._checkpoints().receive(opened, received_at)
            # The receipt tells the sender which checkpoint we hold, so its next one comes
            # with a consistency proof from exactly that one.
            await self._ensure_receipt(header, "delivered", received_at)
            return
        case = Case(header.case, header.sender, f"received:{header.type}", received_at)
        if header.type == "consent.withdrawal":
            await self.store.upsert_case(case)
            await self._withdrawals().apply(opened)
            await self._ensure_receipt(header, "delivered", received_at)
            return
        # Two independent writes (neither audits): issued together they share one group
        # commit, instead of a commit (and its fsync) each, one after the other.
        await _together(self.store.upsert_case(case),
                        self._ensure_receipt(header, "delivered", received_at, look_first=not first))

    async def _apply_status(self, message_id: str, status: OutgoingStatus, header: Header, *,
                            record: OutboxRecord | None = None) -> None:
        # The status and its audit entry are one write: one commit instead of two, and a
        # crash cannot leave a status applied without its entry (a redelivery would not
        # re-audit it, since the status no longer moves).
        entry = self.entry("message.status", SYSTEM_ACTOR, header, {"of": message_id, "status": status})
        if record is None or record.message_id != message_id:
            record = await self.store.get_outgoing(message_id)
        if record is None:
            return  # checked in _check_reference; only a deleted row could get here

        async def move() -> bool:
            try:
                return await self.store.set_status(message_id, status, self.clock(), audit=entry)
            except MessageNotFoundError:
                return False

        # A signed receipt or answer from the recipient proves the envelope arrived: nothing
        # re-sends it any more, so the sealed body goes (its digest stays). Also on a redelivered
        # receipt, so a crash between the status and the deletion is repaired. The two writes
        # are independent: issued together, they share one commit.
        applied, _ = await _together(move(), self._delete_body(record, "delivered"))
        if applied:
            log.info("message.status", message_id=message_id, status=status, via=header.id)

    async def delete_outgoing_body(self, message_id: str, reason: str) -> bool:
        """Replace the sealed body of an outbox message by its digest record
        (gateway/outbox_body.py); audited once. False if already deleted or unknown."""
        record = await self.store.get_outgoing(message_id)
        if record is None:
            return False
        return await self._delete_body(record, reason)

    async def _delete_body(self, record: OutboxRecord, reason: str) -> bool:
        message_id = record.message_id
        if is_deleted(record.envelope):
            return False
        header = outbox_header(record.envelope)
        entry = self.entry("message.body_deleted", SYSTEM_ACTOR, header,
                           {"reason": reason, "digest": body_sha256(record.envelope)})
        deleted = await self.store.replace_outgoing_body(message_id, digest_record(record.envelope, header),
                                                         audit=entry)
        if deleted:
            log.info("message.body_deleted", message_id=message_id, reason=reason)
        return deleted

    async def _ensure_receipt(self, about: Header, status: str, at: datetime, *, look_first: bool = True) -> None:
        receipt_id = derived_message_id("receipt", about.id, status, self.agency_id)
        # Looking first saves sealing a receipt made before; without the look, a second one
        # would only meet MessageConflictError below (its id is derived, its bytes differ).
        if look_first and await self.store.get_outgoing(receipt_id) is not None:
            return
        payload: dict[str, Any] = {"message_id": about.id, "status": status, "status_at": format_ts(at)}
        try:
            # Written in the version negotiated with the sender (a v2 receipt only adds the
            # version member), so submit need not validate and convert it before sealing does.
            version = self.schema_version_for(about.sender)
            if version == "2":
                payload = {"schema_version": version, **payload}
            await self.submit("receipt", payload, recipient=about.sender, case_ref=about.case,
                              actor=SYSTEM_ACTOR, in_reply_to=about.id, message_id=receipt_id,
                              negotiated=version in ("1", "2"))
        except MessageConflictError:
            pass  # a concurrent redelivery queued the same receipt first
        except StoreError:
            raise  # transient: the delivery is requeued and the receipt made on redelivery
        except GatewayError as exc:
            # The sender cannot be answered (its directory entry refuses receipts, or it has
            # no valid encryption key). The message itself is stored: never fail it for this.
            await self.store.append_audit(self.entry("receipt.failed", SYSTEM_ACTOR, about,
                                                      {"status": status, "reason": exc.code}))
            self.metrics.inc("receipt_failures_total", reason=exc.code)
            log.warning("receipt.failed", message_id=about.id, status=status, error=exc.code)

    async def _quarantine_other_content(self, delivery: Delivery, header: Header) -> Disposition:
        # Same id, other bytes: not a redelivery but a forgery or a colliding sender. Only
        # byte-identical copies are duplicates; every other one is quarantined and audited.
        return await self._quarantine(
            delivery, ReplayedMessageError(f"message id {header.id} was already received with other content"), header)

    async def _quarantine(self, delivery: Delivery, exc: GatewayError, header: Header | None, *,
                          verified: bool = False) -> Disposition:
        """Copy the delivery to this agency's quarantine queue (routed by the inbox it came
        from), audit it and ack it. Only a ``verified`` header (its signature checked) names
        the sender agency and the case; otherwise the sender is recorded as a claim."""
        # Error texts carry ids, codes and JSON paths only (see gateway/errors.py).
        detail = str(exc)[:400]
        if isinstance(exc, ConsentRefusedError) and header is not None:
            # Data its consent does not cover must not be kept, not even in quarantine: keep
            # the signed header (evidence of what was sent) and drop the encrypted payload.
            stub = {"header": header.to_json(), "payload_removed": exc.code}
            delivery = dataclasses.replace(delivery, body=json.dumps(stub, sort_keys=True).encode("utf-8"))
        # Kept encrypted under a quarantine key that retention destroys (gateway/quarantine_vault.py).
        if isinstance(delivery, RedrivenDelivery) and not (isinstance(exc, ConsentRefusedError) and header is not None):
            # Quarantined again after a re-drive: the copy stays under its first day's key, so
            # retention still destroys it on schedule (re-sealing would extend its life).
            sealed = delivery.sealed_body
        else:
            sealed = await self.quarantine_vault.seal(delivery.body, self.clock())
        headers = dict(delivery.headers)
        headers[KEY_HEADER] = sealed_key_id(sealed) or ""
        await self.transport.quarantine(dataclasses.replace(delivery, body=sealed, headers=headers), exc.code, detail)
        if verified and header is not None:
            entry = self.entry("message.quarantined", SYSTEM_ACTOR, header,
                               {"reason": exc.code, "sender": header.sender, "verified": True}, agency=header.sender)
            sender_fields: dict[str, Any] = {"sender": header.sender, "verified": True}
        else:
            # Whatever the publisher wrote (x-sender, or an unverified header): a claim, kept
            # only if shaped like an agency id, and never the entry's agency or case.
            claimed = header.sender if header is not None else delivery.sender
            claimed_sender = claimed if AGENCY_ID.fullmatch(claimed or "") else None
            message_id = header.id if header is not None else uuid_or_none(delivery.message_id)
            entry = AuditEntry(
                at=self.clock(), event_type="message.quarantined", actor=SYSTEM_ACTOR.name, message_id=message_id,
                detail_json=json.dumps({"reason": exc.code, "claimed_sender": claimed_sender, "verified": False},
                                       sort_keys=True))
            sender_fields = {"claimed_sender": claimed_sender, "verified": False}
        await self.store.append_audit(entry)
        self.metrics.inc("messages_quarantined_total", reason=exc.code)
        log.warning("message.quarantined", message_id=entry.message_id, reason=exc.code, **sender_fields)
        return Disposition.ACK

    # --- consent --------------------------------------------------------------------------

    async def _check_case_consent(
        self, message_type: str, payload: dict[str, Any], *, recipient: str, case_ref: str, actor: Actor, now: datetime
    ) -> list[AuditEntry]:
        """Refuse (audited) a message the case's consent does not allow; else the audit
        entries of the decision, to be written with the outbox row."""
        # After sealing, so schema and directory refusals come first and name their cause.
        if message_type == "referral.request":
            return [await self._check_consent_to_send(payload, recipient=recipient, case_ref=case_ref,
                                                      actor=actor, now=now)]
        try:
            await self._withdrawals().refuse_if_closed(message_type, case_ref, recipient)
        except ConsentRefusedError as exc:
            await self.audit_event("consent.refused", actor, {"reason": exc.code, "path": exc.path, "type": message_type},
                                   case_ref=case_ref, agency=recipient)
            self.metrics.inc("consent_refusals_total", reason=exc.code)
            raise
        return []

    async def _check_consent_to_send(
        self, payload: dict[str, Any], *, recipient: str, case_ref: str, actor: Actor, now: datetime
    ) -> AuditEntry:
        country = self.directory.agency(recipient).country
        # Our own withdrawals for the case: the person withdrew consent, whoever it went to.
        withdrawals = [w for w in await self.store.withdrawals_for_case(case_ref)
                       if w.direction == "outgoing" and blocks_referral(w)]
        try:
            check_referral_consent(payload, recipient=recipient, recipient_country=country, now=now,
                                   withdrawals=withdrawals)
        except ConsentRefusedError as exc:
            await self.audit_event("consent.refused", actor, {"reason": exc.code, "path": exc.path},
                                   case_ref=case_ref, agency=recipient)
            self.metrics.inc("consent_refusals_total", reason=exc.code)
            raise
        # Not appended here: it commits with the outbox row (one write, and no "checked"
        # entry for a message that was never stored).
        return self.entry("consent.checked", actor, None, {"purposes": sorted(payload.get("purposes", []))},
                          agency=recipient, case_ref=case_ref)

    async def _check_consent_received(self, opened: OpenedMessage, now: datetime) -> None:
        header = opened.header
        # As of the envelope's creation (a consent that expired in transit was valid when the
        # sender relied on it), but never earlier than one message lifetime ago: a sender
        # cannot backdate its way past an expiry.
        lifetime = timedelta(days=self.settings.message_lifetime_days)
        as_of = min(now, max(header.created, now - lifetime))
        # Only the sender's own withdrawals: another agency cannot block this sender's referrals.
        withdrawals = [w for w in await self.store.withdrawals_for_case(header.case)
                       if w.direction == "incoming" and w.counterpart == header.sender
                       and blocks_referral(w)]
        check_referral_consent(
            opened.payload, recipient=self.agency_id, recipient_country=self.directory.agency(self.agency_id).country,
            now=as_of, withdrawals=withdrawals)

    async def withdraw_consent(self, case_ref: str, withdrawal: dict[str, Any], *, actor: Actor) -> WithdrawalResult:
        """Withdraw consent for a case: stop queued referrals and tell every recipient to shred
        (gateway/withdrawal.py)."""
        return await self._withdrawals().withdraw(case_ref, withdrawal, actor=actor)

    async def apply_retention(self) -> int:
        """Destroy the keys of received messages past their retention period; return how many
        (gateway/retention.py)."""
        shredded = await Retention(self.store, self.clock, self.settings.retention_for, self.metrics).apply()
        await self.quarantine_vault.destroy_expired(
            self.clock(), timedelta(days=self.settings.quarantine_retention_days))
        await self._encryption_keys().apply()
        if self.next_enc_key_unpublished():
            log.warning("keys.none_published_ahead", serial=self.directory.serial,
                        period_days=self.settings.enc_key_period_days,
                        hint="send the agency's next encryption keys (gateway keys enc-ahead) to the authority")
        if self.enc_key_long_lived():
            kid = self.identity.current_encryption_kid(self.clock())
            log.warning("keys.long_lived", kid=kid, not_after=format_ts(self.identity.encryption_validity[kid][1]),
                        period_days=self.settings.enc_key_period_days,
                        hint="gateway keys enc-ahead --shorten-current, then publish (docs/keys.md)")
        return shredded

    async def checkpoint_and_share(self) -> CheckpointRecordT | None:
        """Sign a checkpoint if the log grew and send it to every audit partner (gateway/audit/exchange.py)."""
        return await self._checkpoints().share()

    # The flows are built per call from the gateway's current collaborators: a test, a fault
    # harness or a benchmark that replaces the store, the clock, the settings or ``submit``
    # on a running gateway reaches the flows too. Building one is a few attribute copies.

    def _withdrawals(self) -> WithdrawalFlow:
        return WithdrawalFlow(store=self.store, case_locks=self.case_locks, clock=self.clock,
                              agency_id=self.agency_id, submit=self.submit, entry=self.entry,
                              metrics=self.metrics, read_payload=self._stored_payload,
                              delete_body=self.delete_outgoing_body)

    def _encryption_keys(self) -> EncryptionKeyLifecycle:
        return EncryptionKeyLifecycle(
            identity=self.identity, at_rest=self.at_rest, store=self.store, clock=self.clock,
            source=self.key_source, max_lifetime=DEFAULT_POLICY.max_lifetime, skew=DEFAULT_POLICY.max_clock_skew,
            grace=timedelta(days=self.settings.enc_key_grace_days),
            period=timedelta(days=self.settings.enc_key_period_days), metrics=self.metrics,
            restore_legacy=self._restore_legacy_once, load_failures=self.key_load_failures,
            load_lock=self.key_load_lock)

    async def _reload_keys(self) -> None:
        # A case key wrapped by a key this process has not loaded yet (another process of
        # the agency picked it up first): read the key directory once more before failing.
        if self.key_source is not None:
            await self._encryption_keys().load_new()

    def next_enc_key_missing(self) -> bool:
        """True when no held encryption key covers the next key period (docs/keys.md)."""
        return next_key_missing(self.identity, self.clock(), timedelta(days=self.settings.enc_key_period_days))

    def next_enc_key_unpublished(self) -> bool:
        """True when the directory in force lists none of this agency's encryption keys valid
        one key period from now (docs/keys.md): senders will soon have nothing to seal to."""
        return next_key_unpublished(self.directory, self.identity, self.clock(),
                                    timedelta(days=self.settings.enc_key_period_days))

    def enc_key_long_lived(self) -> bool:
        """True when the encryption key valid now is not short-lived (docs/keys.md); never for
        a demo directory, whose keys anyone can derive anyway."""
        if self.directory.demo:
            return False
        return current_key_long_lived(self.identity, self.clock(), timedelta(days=self.settings.enc_key_period_days))

    async def _restore_legacy_once(self) -> int:
        if self._legacy_restored:
            return 0
        moved = await self.restore_legacy_inbox()
        self._legacy_restored = True
        return moved

    async def restore_legacy_inbox(self) -> int:
        """Re-store inbox rows kept in the at-rest format that re-opens only with the transport
        key, with their decrypted inner part (gateway/at_rest.py), so that destroying transport
        keys loses none of them; return how many."""
        offset, moved, skipped = 0, 0, 0
        while True:
            page = await self.store.list_incoming(500, offset)
            if not page:
                break
            offset += len(page)
            for record in page:
                if not needs_transport_key(record.envelope):
                    continue
                try:
                    stored = await self.at_rest.open(record)
                    opened = self.open_stored(stored, record.received_at)
                except PayloadShreddedError:
                    continue  # shredded: nothing left to keep
                except (AtRestError, EnvelopeError) as exc:
                    # Unreadable now and for good once its transport key is destroyed: say so.
                    skipped += 1
                    await self.store.append_audit(AuditEntry(
                        at=self.clock(), event_type="inbox.unrestorable", actor=SYSTEM_ACTOR.name,
                        message_id=record.message_id, case_ref=record.case_ref, agency=record.sender,
                        detail_json=json.dumps({"reason": exc.code}, sort_keys=True)))
                    continue
                blob = await self.at_rest.seal(record.message_id, record.case_ref, record.message_type,
                                               stored.envelope, record.received_at,
                                               opened.payload_signature + opened.payload_bytes)
                if await self.store.replace_incoming_envelope(record.message_id, record.envelope, blob):
                    moved += 1
        if moved:
            log.info("inbox.restored_for_key_destruction", messages=moved)
        if skipped:
            self.metrics.inc("inbox_unrestorable_total", float(skipped))
            log.warning("inbox.unrestorable", messages=skipped, hint="audit inbox.unrestorable names them")
        return moved

    def _checkpoints(self) -> CheckpointExchange:
        return CheckpointExchange(store=self.store, audit_log=self.audit_log, directory=self.directory,
                                  agency_id=self.agency_id, partners=self.settings.audit_partners,
                                  submit=self.submit, entry=self.entry, metrics=self.metrics)

    async def _stored_payload(self, record: InboxRecord) -> dict[str, Any]:
        """The payload of a received message as stored (PayloadShreddedError once its key is gone)."""
        return self.open_stored(await self.at_rest.open(record), record.received_at).payload

    async def _every(self, seconds: float, job: Callable[[], Any]) -> None:
        while not self._stopping:
            try:
                await job()
            except Exception as exc:  # noqa: BLE001 - a periodic task must outlive one bad pass
                log.warning("periodic.pass_failed", job=getattr(job, "__name__", "job"),
                            error=getattr(exc, "code", type(exc).__name__))
            await asyncio.sleep(seconds)

    # --- statistics ------------------------------------------------------------------------------

    async def received_payloads(self, message_type: str, *, since: datetime | None = None,
                                until: datetime | None = None) -> AsyncIterator[tuple[datetime, dict[str, Any]]]:
        """(received_at, payload) of every readable received message of a type (shredded ones
        skipped), received in [since, until) when given: others are not even decrypted."""
        offset = 0
        while True:
            page = await self.store.list_incoming(500, offset)
            if not page:
                return
            offset += len(page)
            for record in page:
                if record.message_type != message_type:
                    continue
                if (since is not None and record.received_at < since) or (until is not None and record.received_at >= until):
                    continue
                try:
                    stored = await self.at_rest.open(record)
                except PayloadShreddedError:
                    continue
                yield record.received_at, self.open_stored(stored, record.received_at).payload

    async def sent_requests(self) -> AsyncIterator[tuple[datetime, str, str]]:
        """(created_at, recipient, status) of every sent ``referral.request`` that statistics
        count: not given up (``failed``) and not covered by a consent withdrawal we sent.

        Outbox metadata only: the envelope is sealed to the recipient and we cannot open it.
        A withdrawal covers the referrals to its recipient that existed when it was recorded
        (only those it lists, if it lists some); a ``some_purposes`` one covers them all,
        because we cannot read which purposes each referral named (as when withdrawing)."""
        # Every recorded withdrawal has its consent.withdrawn audit entry (same transaction),
        # so one pass over those finds the few cases to look at, not one query per referral.
        withdrawn_cases: set[str] = set()
        after = 0
        while entries := await self.store.query_audit(AuditQuery(event_types=("consent.withdrawn",), after_seq=after),
                                                      500):
            withdrawn_cases.update(entry.case_ref for entry in entries if entry.case_ref)
            after = entries[-1].seq
        withdrawals: dict[str, list[Withdrawal]] = {}
        offset = 0
        while page := await self.store.list_outgoing(500, offset, "referral.request"):
            offset += len(page)
            for record in page:
                if record.status == "failed":
                    continue
                if record.case_ref in withdrawn_cases:
                    if record.case_ref not in withdrawals:
                        withdrawals[record.case_ref] = [w for w in await self.store.withdrawals_for_case(record.case_ref)
                                                        if w.direction == "outgoing"]
                    if any(w.counterpart == record.recipient and w.recorded_at >= record.created_at
                           and (not w.request_message_ids or record.message_id in w.request_message_ids)
                           for w in withdrawals[record.case_ref]):
                        continue
                yield record.created_at, record.recipient, record.status

    # --- reading and responding ---------------------------------------------------------

    async def list_inbox(self, *, limit: int = 50, offset: int = 0, status: str | None = None) -> list[Any]:
        """Inbox rows (metadata only, still encrypted), oldest first."""
        # The API takes ``status`` only from INCOMING_STATUSES (gateway/api/inbox.py).
        return await self.store.list_incoming(limit, offset, cast("IncomingStatus | None", status))

    async def read_incoming(self, message_id: str, *, actor: Actor, purpose: str) -> OpenedMessage:
        """Decrypt a received message for a user; audited with the user and the purpose."""
        if purpose not in READ_PURPOSES:
            raise InvalidPurposeError(f"purpose must be one of {list(READ_PURPOSES)}")
        record = await self.store.get_incoming(message_id)
        if record is None:
            raise NotFoundError(f"no received message {message_id}")
        try:
            opened = self.open_stored(await self.at_rest.open(record), record.received_at)
        except PayloadShreddedError as exc:
            await self.store.append_audit(AuditEntry(
                at=self.clock(), event_type="message.read_refused", actor=actor.name, case_ref=record.case_ref,
                message_id=record.message_id, agency=record.sender,
                detail_json=json.dumps({"purpose": purpose, "role": actor.role, "reason": exc.code}, sort_keys=True)))
            raise
        await self._audit("message.read", actor, opened.header, {"purpose": purpose, "role": actor.role},
                          agency=opened.header.sender)
        await self.store.set_incoming_status(message_id, "read", self.clock())
        if opened.header.type != "receipt":
            await self._ensure_receipt(opened.header, "read", self.clock())
        return opened

    async def respond(self, message_id: str, answer: dict[str, Any], *, actor: Actor) -> Header:
        """Answer a received referral.request (accepted / declined / more information needed).

        Idempotent: the response id is derived from the request and the decision, so a
        client retrying after a timeout gets the same response, not a second one. After a
        final decision (accepted or declined) a different answer is a conflict.
        """
        record = await self.store.get_incoming(message_id)
        if record is None:
            raise NotFoundError(f"no received message {message_id}")
        if record.message_type != "referral.request":
            raise ConflictError(f"message {message_id} is a {record.message_type}, not a referral.request")
        decision = str(answer.get("decision"))
        response_id = derived_message_id("response", message_id, decision, self.agency_id)
        existing = await self.store.get_outgoing(response_id)
        if existing is not None:
            return outbox_header(existing.envelope)
        for final in FINAL_DECISIONS:
            if await self.store.get_outgoing(derived_message_id("response", message_id, final, self.agency_id)):
                raise ConflictError(f"referral {message_id} was already answered: {final}")
        payload = dict(answer, request_message_id=message_id)
        header = await self.submit("referral.response", payload, recipient=record.sender, case_ref=record.case_ref,
                                   actor=actor, in_reply_to=message_id, message_id=response_id)
        try:
            await self.store.set_incoming_status(message_id, "responded", self.clock())
        except StoreError as exc:  # the response is durable; the inbox status is cosmetic
            log.warning("inbox.status_failed", message_id=message_id, error=exc.code)
        return header

    async def outgoing_status(self, message_id: str) -> tuple[Any, list[Any]]:
        """The outbox record of a sent message and its status trail."""
        record = await self.store.get_outgoing(message_id)
        if record is None:
            raise NotFoundError(f"no sent message {message_id}")
        return record, await self.store.status_trail(message_id)

    # --- audit and metrics -----------------------------------------------------------------

    def entry(self, event: str, actor: Actor, header: Header | None, detail: dict[str, Any], *,
               agency: str | None = None, case_ref: str | None = None) -> AuditEntry:
        if agency is None and header is not None:
            # The other agency of the message: its recipient if we sent it, else its sender.
            agency = header.recipient if header.sender == self.agency_id else header.sender
        return AuditEntry(
            at=self.clock(), event_type=event, actor=actor.name,
            case_ref=header.case if header else case_ref, message_id=header.id if header else None,
            detail_json=json.dumps(detail, sort_keys=True), agency=agency,
        )

    async def _audit(self, event: str, actor: Actor, header: Header, detail: dict[str, Any], *,
                     agency: str | None = None) -> None:
        await self.store.append_audit(self.entry(event, actor, header, detail, agency=agency))

    async def audit_event(self, event: str, actor: Actor, detail: dict[str, Any], *,
                          case_ref: str | None = None, agency: str | None = None) -> None:
        """Append an audit entry that is not about one message (an authentication failure, an export)."""
        await self.store.append_audit(self.entry(event, actor, None, detail, agency=agency, case_ref=case_ref))

    def _describe_metrics(self) -> None:
        for name, text in (
            ("messages_submitted_total", "Messages accepted into the outbox, by type"),
            ("messages_published_total", "Outbox messages confirmed by the broker, by type"),
            ("publish_failures_total", "Failed publish attempts, by reason code"),
            ("messages_received_total", "Verified messages stored in the inbox, by type"),
            ("messages_quarantined_total", "Deliveries sent to quarantine, by reason code"),
            ("duplicates_total", "Redelivered messages recognised by id and content and not delivered again"),
            ("handler_failures_total", "Delivery handler failures counted towards quarantine, by reason code"),
            ("receipt_failures_total", "Receipts that could not be sealed to the sender, by reason code"),
            ("consent_refusals_total", "Referrals refused before sending because of their consent, by reason code"),
            ("retention_shredded_total", "Received messages made unreadable because their retention ended"),
            ("enc_keys_destroyed_total", "Private encryption keys destroyed because no message sealed to them can be valid"),
            ("inbox_unrestorable_total", "Stored messages in the older at-rest format that could not be re-stored before their transport key was destroyed"),
            ("audit_fork_detected_total", "Partner checkpoints inconsistent with what the partner signed before"),
        ):
            self.metrics.describe(name, text)
