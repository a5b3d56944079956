"""Consent withdrawal: sending it (stop queued referrals, tell every recipient) and applying
one received from a partner (destroy the data keys it covers, acknowledge). See docs/consent.md.

Both sides take the case's lock (gateway/case_locks.py) around their decision, and the
service takes it around every consent check + store of case data, so a referral and a
withdrawal of one case are always ordered: either the referral is stored first and the
withdrawal covers it, or the withdrawal is recorded first and the referral is refused.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import structlog

from gateway.actors import SYSTEM_ACTOR, Actor
from gateway.at_rest import CONTROL_TYPES, AtRestError, PayloadShreddedError
from gateway.case_locks import CaseLocks
from gateway.clock import format_ts, parse_ts
from gateway.collaborators import DeleteBody, MakeEntry, ReadPayload, Submit
from gateway.consent import ConsentRefusedError, ConsentWithdrawnError
from gateway.envelope import Header, OpenedMessage
from gateway.outbox_body import outbox_header
from gateway.errors import GatewayError, NotFoundError
from gateway.message_ids import derived_message_id
from gateway.metrics import Metrics
from gateway.store.base import (
    AuditEntry,
    InboxRecord,
    MessageConflictError,
    OutboxRecord,
    Store,
    StoreError,
    Withdrawal,
)

log = structlog.get_logger("gateway.withdrawal")

#: Case data that must not flow between two agencies after an all-purposes withdrawal
#: between them, until a new referral (under a new consent) reopens the case.
#: Responses and closures stay possible: closing a case *because* consent was withdrawn is
#: exactly what should happen next.
CASE_DATA_TYPES = frozenset({
    "safety_assessment.result", "family_tracing.result", "return.plan", "return.arrival", "case.followup"})
#: How far in the future a ``withdrawn_at`` may be (clock skew), at the sender and the receiver.
MAX_AHEAD = timedelta(minutes=5)
#: The earliest ``withdrawn_at`` taken (as for every date the API accepts; docs/api.md).
EARLIEST = datetime(1900, 1, 1, tzinfo=timezone.utc)


class WithdrawalTimeError(ConsentRefusedError):
    """``withdrawn_at`` lies in the future: a typo there would block every earlier consent."""

    code = "withdrawal_in_future"


class WithdrawalTooEarlyError(ConsentRefusedError):
    """``withdrawn_at`` lies before 1900: a typo, and a date no later read should have to handle."""

    code = "withdrawal_too_early"


@dataclass
class WithdrawalResult:
    """What ``withdraw`` queued, and the recipients it could not address (reason codes)."""

    headers: list[Header] = field(default_factory=list)
    failures: list[dict[str, str]] = field(default_factory=list)


def check_withdrawn_at(payload: dict[str, Any], now: datetime) -> datetime:
    """The withdrawal time; WithdrawalTimeError if it is in the future beyond clock skew,
    WithdrawalTooEarlyError if it is before 1900-01-01."""
    withdrawn_at = parse_ts(payload["withdrawn_at"])
    if withdrawn_at < EARLIEST:
        raise WithdrawalTooEarlyError("$.withdrawn_at", "must be on or after 1900-01-01")
    if withdrawn_at > now + MAX_AHEAD:
        raise WithdrawalTimeError("$.withdrawn_at", "is in the future")
    return withdrawn_at


# --- decisions (pure) -------------------------------------------------------------------


def blocks_referral(withdrawal: Withdrawal) -> bool:
    """True if the withdrawal can refuse a later referral's consent (not one naming request ids:
    those withdraw consent for the listed requests only)."""
    return not withdrawal.request_message_ids


def closes_case(withdrawal: Withdrawal, counterpart: str) -> bool:
    """True if the withdrawal stops case data between us and ``counterpart``: all purposes,
    for the whole case (no request ids named)."""
    return (withdrawal.counterpart == counterpart and withdrawal.scope == "all_purposes"
            and not withdrawal.request_message_ids)


def latest_closing(withdrawals: Iterable[Withdrawal], counterpart: str) -> Withdrawal | None:
    """The most recently recorded withdrawal that closes the case with ``counterpart``, if any."""
    closing = [w for w in withdrawals if closes_case(w, counterpart)]
    return max(closing, key=lambda w: w.recorded_at) if closing else None


def reopened_since(withdrawal: Withdrawal, counterpart: str, sent: Iterable[OutboxRecord],
                   received: Iterable[InboxRecord]) -> bool:
    """True if a referral between us and ``counterpart`` (sent and not failed, or received)
    is later than the withdrawal: a new consent reopened the case."""
    times = [r.created_at for r in sent
             if r.recipient == counterpart and r.message_type == "referral.request" and r.status != "failed"]
    times += [r.received_at for r in received if r.sender == counterpart and r.message_type == "referral.request"]
    return any(t > withdrawal.recorded_at for t in times)


def select_requests(requests: Sequence[OutboxRecord], wanted: set[str], case_ref: str) -> list[OutboxRecord]:
    """The sent referrals a withdrawal covers (all of them unless ``wanted`` names some);
    NotFoundError if it names one not sent for the case, or there is none."""
    selected = list(requests)
    if wanted:
        unknown = wanted - {r.message_id for r in selected}
        if unknown:
            raise NotFoundError(f"request_message_ids name {len(unknown)} referral(s) not sent for this case")
        selected = [r for r in selected if r.message_id in wanted]
    if not selected:
        raise NotFoundError(f"no referral was sent for case {case_ref}")
    return selected


def recipient_payload(payload: Mapping[str, Any], requests: Iterable[OutboxRecord], recipient: str,
                      wanted: set[str]) -> dict[str, Any]:
    """The withdrawal one recipient gets: naming only its own requests when some were named."""
    own = dict(payload)
    if wanted:
        own["request_message_ids"] = sorted(r.message_id for r in requests if r.recipient == recipient)
    return own


def withdraws_whole_case(payload: Mapping[str, Any]) -> bool:
    """True for a withdrawal of all purposes that names no request ids."""
    return payload["scope"] == "all_purposes" and not payload.get("request_message_ids")


def may_be_covered(record: InboxRecord, withdrawing_agency: str, cutoff: datetime | None) -> bool:
    """True if a received message can fall under a withdrawal: case data (not control traffic)
    the withdrawing agency sent us, and (once the withdrawal is recorded) had arrived by then."""
    return (record.sender == withdrawing_agency and record.message_type not in CONTROL_TYPES
            and (cutoff is None or record.received_at <= cutoff))


def covered_without_reading(payload: Mapping[str, Any], message_id: str, message_type: str) -> bool | None:
    """Whether a withdrawal covers a received message, when that follows from the withdrawal
    alone; None when it depends on the purposes of the referral (read them, then ask
    ``purposes_covered``)."""
    ids = payload.get("request_message_ids")
    if ids:
        return message_id in ids
    if payload["scope"] == "all_purposes":
        return True
    # some_purposes: the requests naming a withdrawn purpose (other case data stays).
    if message_type != "referral.request":
        return False
    return None


def purposes_covered(payload: Mapping[str, Any], purposes: Iterable[str] | None) -> bool:
    """True if a some-purposes withdrawal names one of the referral's ``purposes``; None for a
    referral that can no longer be read, which is covered: destroying its key changes nothing
    it could still tell."""
    if purposes is None:
        return True
    return bool(set(purposes) & set(payload.get("purposes", ())))


# --- the flow ---------------------------------------------------------------------------


@dataclass(frozen=True)
class WithdrawalFlow:
    """Sending and applying withdrawals, with what they need from the gateway passed in."""

    store: Store
    case_locks: CaseLocks
    clock: Callable[[], datetime]
    agency_id: str
    submit: Submit
    entry: MakeEntry
    metrics: Metrics
    read_payload: ReadPayload
    delete_body: DeleteBody

    async def withdrawal_closes_case(self, case_ref: str, counterpart: str) -> str | None:
        """The id of an all-purposes withdrawal between us and ``counterpart`` for the case that is
        later than every referral between us since; None if case data may still flow."""
        latest = latest_closing(await self.store.withdrawals_for_case(case_ref), counterpart)
        if latest is None:
            return None
        sent = await self.store.list_outgoing_for_case(case_ref)
        received = await self.store.list_incoming_for_case(case_ref)
        return None if reopened_since(latest, counterpart, sent, received) else latest.message_id

    async def refuse_if_closed(self, message_type: str, case_ref: str, counterpart: str) -> None:
        """ConsentWithdrawnError for case data to or from an agency whose case consent was withdrawn."""
        if message_type not in CASE_DATA_TYPES:
            return
        closed_by = await self.withdrawal_closes_case(case_ref, counterpart)
        if closed_by is not None:
            raise ConsentWithdrawnError("$", f"consent for this case was withdrawn (withdrawal {closed_by}); "
                                             "a new referral under a new consent is needed first")

    async def withdraw(self, case_ref: str, payload: dict[str, Any], *, actor: Actor) -> WithdrawalResult:
        """Withdraw consent for a case: give up queued referrals and send a signed withdrawal to
        every agency that was sent one. Idempotent for the same content; a withdrawal that
        expired undelivered is sent again under a new id."""
        now = self.clock()
        withdrawn_at = check_withdrawn_at(payload, now)
        wanted = set(payload.get("request_message_ids") or ())
        plans: list[tuple[str, dict[str, Any], str, OutboxRecord | None]] = []
        async with self.case_locks.hold(case_ref):
            sent = await self.store.list_outgoing_for_case(case_ref)
            requests = select_requests([r for r in sent if r.message_type == "referral.request"], wanted, case_ref)
            for record in requests:
                # The sender cannot read its own sealed envelopes to compare purposes, so a
                # partial withdrawal also stops every queued referral of the case: the safe side.
                await self._give_up(record, actor, now)
            # Every recipient, even of a referral given up just now: a publish may have reached
            # the broker before its confirm was lost, and a withdrawal to an agency holding
            # nothing costs one acknowledgement of zero messages.
            for recipient in sorted({r.recipient for r in requests}):
                own = recipient_payload(payload, requests, recipient, wanted)
                if withdraws_whole_case(own):
                    # Case data sent to this recipient is covered too (as at the receiver):
                    # queued, it is never published; on its way, its body goes now.
                    for record in sent:
                        if record.recipient == recipient and record.message_type in CASE_DATA_TYPES:
                            await self._give_up(record, actor, now)
                base = derived_message_id("withdrawal", case_ref, recipient, json.dumps(own, sort_keys=True))
                message_id, existing, attempt = base, await self.store.get_outgoing(base), 0
                while existing is not None and existing.status == "failed":
                    attempt += 1  # it expired (or was refused) undelivered: a fresh one, same content
                    message_id = derived_message_id("withdrawal", base, str(attempt))
                    existing = await self.store.get_outgoing(message_id)
                sent_withdrawal = Withdrawal(
                    message_id=message_id, case_ref=case_ref, direction="outgoing", counterpart=recipient,
                    withdrawn_at=withdrawn_at, scope=own["scope"], purposes=tuple(own.get("purposes", ())),
                    request_message_ids=tuple(own.get("request_message_ids", ())), recorded_at=now)
                await self.store.add_withdrawal(sent_withdrawal, audit=AuditEntry(
                    at=now, event_type="consent.withdrawn", actor=actor.name, case_ref=case_ref,
                    message_id=message_id, agency=recipient, detail_json=json.dumps(
                        {"scope": sent_withdrawal.scope, "purposes": list(sent_withdrawal.purposes),
                         "erasure_requested": bool(own.get("erasure_requested"))}, sort_keys=True)))
                plans.append((recipient, own, message_id, existing))
        result = WithdrawalResult()
        for recipient, own, message_id, existing in plans:
            if existing is not None:
                result.headers.append(outbox_header(existing.envelope))
                continue
            try:
                result.headers.append(await self.submit("consent.withdrawal", own, recipient=recipient,
                                                        case_ref=case_ref, actor=actor, message_id=message_id))
            except StoreError:
                raise
            except GatewayError as exc:  # this recipient cannot be addressed; the others still are
                result.failures.append({"recipient": recipient, "error": exc.code})
                await self._audit_event("consent.withdrawal_failed", actor, {"reason": exc.code},
                                        case_ref=case_ref, agency=recipient)
        return result

    async def _give_up(self, record: OutboxRecord, actor: Actor, now: datetime) -> None:
        if record.status == "queued" and await self.store.mark_failed(record.message_id, "consent_withdrawn", at=now):
            await self._audit_event("message.failed", actor, {"reason": "consent_withdrawn"},
                                    case_ref=record.case_ref, agency=record.recipient)
        # Queued or on its way: either way the sender keeps no readable copy from now on
        # (forward secrecy; docs/consent.md). Its digest stays for the audit trail.
        await self.delete_body(record.message_id, "consent_withdrawn")

    async def apply(self, opened: OpenedMessage) -> None:
        """A partner withdrew consent: destroy the keys of what it sent us that the withdrawal
        covers, record it, then acknowledge.

        Keys are destroyed before the withdrawal is recorded, and a recorded withdrawal is never
        applied again: a crash in between re-applies it on redelivery, while a replay of an old
        withdrawal (a requeue, or the same bytes sent again) cannot touch data that arrived
        later under a new consent.
        """
        header, payload = opened.header, opened.payload
        async with self.case_locks.hold(header.case):
            known = [w for w in await self.store.withdrawals_for_case(header.case)
                     if w.message_id == header.id and w.direction == "incoming"]
            incoming = await self.store.list_incoming_for_case(header.case)
            recorded_at = known[0].recorded_at if known else None
            # Only what the withdrawing agency sent us (and, once recorded, what had arrived by then).
            targets = [r for r in incoming
                       if may_be_covered(r, header.sender, recorded_at) and await self._covered(r, payload)]
            others = {r.sender for r in incoming if r.message_type not in CONTROL_TYPES} - {header.sender}
            case_key_destroyed = withdraws_whole_case(payload) and not others
            if recorded_at is not None:
                applied_at = recorded_at
            else:
                key_ids = [r.message_id for r in targets]
                if case_key_destroyed:
                    live = await self.store.live_case_key(header.case)
                    key_ids = ([live.key_id] if live is not None else []) + key_ids
                entry = self.entry("data.shredded", SYSTEM_ACTOR, header,
                                   {"reason": "consent_withdrawn", "keys": len(key_ids)})
                shredded = await self.store.shred_data_keys(key_ids, "consent_withdrawn", self.clock(), audit=[entry])
                applied_at = self.clock()
                await self.store.add_withdrawal(Withdrawal(
                    message_id=header.id, case_ref=header.case, direction="incoming", counterpart=header.sender,
                    withdrawn_at=parse_ts(payload["withdrawn_at"]), scope=payload["scope"],
                    purposes=tuple(payload.get("purposes", ())),
                    request_message_ids=tuple(payload.get("request_message_ids", ())), recorded_at=applied_at))
                if shredded:
                    log.info("consent.withdrawal_applied", message_id=header.id, case=header.case, keys=len(shredded))
        await self._acknowledge(header, applied_at, len(targets), case_key_destroyed)

    async def _acknowledge(self, header: Header, applied_at: datetime, made_unreadable: int,
                           case_key_destroyed: bool) -> None:
        ack_id = derived_message_id("withdrawal-ack", header.id, self.agency_id)
        if await self.store.get_outgoing(ack_id) is not None:
            return
        ack = {"withdrawal_message_id": header.id, "applied_at": format_ts(applied_at),
               "messages_made_unreadable": made_unreadable, "case_key_destroyed": case_key_destroyed}
        try:
            await self.submit("consent.withdrawal.ack", ack, recipient=header.sender, case_ref=header.case,
                              actor=SYSTEM_ACTOR, in_reply_to=header.id, message_id=ack_id)
        except MessageConflictError:
            pass  # a concurrent redelivery queued it first
        except StoreError:
            raise  # transient: the delivery is requeued and the ack made on redelivery
        except GatewayError as exc:
            # The keys are destroyed; only the answer cannot be sealed (the sender's directory
            # entry refuses it or has no valid key). Audited, never looped.
            await self.store.append_audit(self.entry("consent.withdrawal_ack_failed", SYSTEM_ACTOR, header,
                                                     {"reason": exc.code}))
            self.metrics.inc("receipt_failures_total", reason=exc.code)

    async def _covered(self, record: InboxRecord, payload: Mapping[str, Any]) -> bool:
        known = covered_without_reading(payload, record.message_id, record.message_type)
        if known is not None:
            return known
        try:
            purposes: list[str] | None = (await self.read_payload(record))["purposes"]
        except (PayloadShreddedError, AtRestError):
            purposes = None  # unreadable already (or corrupt)
        return purposes_covered(payload, purposes)

    async def _audit_event(self, event: str, actor: Actor, detail: dict[str, Any], *, case_ref: str,
                           agency: str) -> None:
        await self.store.append_audit(self.entry(event, actor, None, detail, agency=agency, case_ref=case_ref))
