"""Consent withdrawal: sending it (stop queued referrals, tell every recipient) and applying
one received from a partner (destroy the data keys it covers, acknowledge). See docs/consent.md.

Both sides take the case's lock (gateway/case_locks.py) around their decision, and the
service takes it around every consent check + store of case data, so a referral and a
withdrawal of one case are always ordered: either the referral is stored first and the
withdrawal covers it, or the withdrawal is recorded first and the referral is refused.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import structlog

from gateway.at_rest import CONTROL_TYPES, AtRestError, PayloadShreddedError
from gateway.clock import format_ts, parse_ts
from gateway.consent import ConsentRefusedError, ConsentWithdrawnError
from gateway.envelope import Header, OpenedMessage, parse_envelope
from gateway.errors import GatewayError
from gateway.store import AuditEntry, MessageConflictError, StoreError, Withdrawal

if TYPE_CHECKING:
    from gateway.service import Actor, Gateway

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


def blocks_referral(withdrawal: Withdrawal) -> bool:
    """True if the withdrawal can refuse a later referral's consent (not one naming request ids:
    those withdraw consent for the listed requests only)."""
    return not withdrawal.request_message_ids


async def withdrawal_closes_case(gw: "Gateway", case_ref: str, counterpart: str) -> str | None:
    """The id of an all-purposes withdrawal between us and ``counterpart`` for the case that is
    later than every referral between us since; None if case data may still flow."""
    closing = [w for w in await gw.store.withdrawals_for_case(case_ref)
               if w.counterpart == counterpart and w.scope == "all_purposes" and not w.request_message_ids]
    if not closing:
        return None
    latest = max(closing, key=lambda w: w.recorded_at)
    sent = [r.created_at for r in await gw.store.list_outgoing_for_case(case_ref)
            if r.recipient == counterpart and r.message_type == "referral.request" and r.status != "failed"]
    received = [r.received_at for r in await gw.store.list_incoming_for_case(case_ref)
                if r.sender == counterpart and r.message_type == "referral.request"]
    reopened = [t for t in sent + received if t > latest.recorded_at]
    return None if reopened else latest.message_id


async def refuse_if_closed(gw: "Gateway", message_type: str, case_ref: str, counterpart: str) -> None:
    """ConsentWithdrawnError for case data to or from an agency whose case consent was withdrawn."""
    if message_type not in CASE_DATA_TYPES:
        return
    closed_by = await withdrawal_closes_case(gw, case_ref, counterpart)
    if closed_by is not None:
        raise ConsentWithdrawnError("$", f"consent for this case was withdrawn (withdrawal {closed_by}); "
                                         "a new referral under a new consent is needed first")


async def withdraw(gw: "Gateway", case_ref: str, payload: dict[str, Any], *, actor: "Actor") -> WithdrawalResult:
    """Withdraw consent for a case: give up queued referrals and send a signed withdrawal to
    every agency that was sent one. Idempotent for the same content; a withdrawal that
    expired undelivered is sent again under a new id."""
    from gateway.service import NotFoundError, derived_message_id

    now = gw.clock()
    withdrawn_at = check_withdrawn_at(payload, now)
    wanted = set(payload.get("request_message_ids") or ())
    plans: list[tuple[str, dict[str, Any], str, Any]] = []
    async with gw.case_locks.hold(case_ref):
        requests = [r for r in await gw.store.list_outgoing_for_case(case_ref) if r.message_type == "referral.request"]
        if wanted:
            unknown = wanted - {r.message_id for r in requests}
            if unknown:
                raise NotFoundError(f"request_message_ids name {len(unknown)} referral(s) not sent for this case")
            requests = [r for r in requests if r.message_id in wanted]
        if not requests:
            raise NotFoundError(f"no referral was sent for case {case_ref}")
        for record in requests:
            # The sender cannot read its own sealed envelopes to compare purposes, so a
            # partial withdrawal also stops every queued referral of the case: the safe side.
            if record.status == "queued" and await gw.store.mark_failed(record.message_id, "consent_withdrawn", at=now):
                await gw.audit_event("message.failed", actor, {"reason": "consent_withdrawn"}, case_ref=case_ref,
                                     agency=record.recipient)
        # Every recipient, even of a referral given up just now: a publish may have reached
        # the broker before its confirm was lost, and a withdrawal to an agency holding
        # nothing costs one acknowledgement of zero messages.
        for recipient in sorted({r.recipient for r in requests}):
            own = dict(payload)
            if wanted:
                own["request_message_ids"] = sorted(r.message_id for r in requests if r.recipient == recipient)
            base = derived_message_id("withdrawal", case_ref, recipient, json.dumps(own, sort_keys=True))
            message_id, existing, attempt = base, await gw.store.get_outgoing(base), 0
            while existing is not None and existing.status == "failed":
                attempt += 1  # it expired (or was refused) undelivered: a fresh one, same content
                message_id = derived_message_id("withdrawal", base, str(attempt))
                existing = await gw.store.get_outgoing(message_id)
            withdrawal = Withdrawal(
                message_id=message_id, case_ref=case_ref, direction="outgoing", counterpart=recipient,
                withdrawn_at=withdrawn_at, scope=own["scope"], purposes=tuple(own.get("purposes", ())),
                request_message_ids=tuple(own.get("request_message_ids", ())), recorded_at=now)
            await gw.store.add_withdrawal(withdrawal, audit=AuditEntry(
                at=now, event_type="consent.withdrawn", actor=actor.name, case_ref=case_ref, message_id=message_id,
                agency=recipient, detail_json=json.dumps(
                    {"scope": withdrawal.scope, "purposes": list(withdrawal.purposes),
                     "erasure_requested": bool(own.get("erasure_requested"))}, sort_keys=True)))
            plans.append((recipient, own, message_id, existing))
    result = WithdrawalResult()
    for recipient, own, message_id, existing in plans:
        if existing is not None:
            result.headers.append(parse_envelope(existing.envelope)[0])
            continue
        try:
            result.headers.append(await gw.submit("consent.withdrawal", own, recipient=recipient, case_ref=case_ref,
                                                  actor=actor, message_id=message_id))
        except StoreError:
            raise
        except GatewayError as exc:  # this recipient cannot be addressed; the others still are
            result.failures.append({"recipient": recipient, "error": exc.code})
            await gw.audit_event("consent.withdrawal_failed", actor, {"reason": exc.code},
                                 case_ref=case_ref, agency=recipient)
    return result


async def apply(gw: "Gateway", opened: OpenedMessage) -> None:
    """A partner withdrew consent: destroy the keys of what it sent us that the withdrawal
    covers, record it, then acknowledge.

    Keys are destroyed before the withdrawal is recorded, and a recorded withdrawal is never
    applied again: a crash in between re-applies it on redelivery, while a replay of an old
    withdrawal (a requeue, or the same bytes sent again) cannot touch data that arrived
    later under a new consent.
    """
    from gateway.service import SYSTEM_ACTOR, derived_message_id

    header, payload = opened.header, opened.payload
    async with gw.case_locks.hold(header.case):
        known = [w for w in await gw.store.withdrawals_for_case(header.case)
                 if w.message_id == header.id and w.direction == "incoming"]
        incoming = await gw.store.list_incoming_for_case(header.case)
        cutoff = known[0].recorded_at if known else None
        # Only what the withdrawing agency sent us (and, once recorded, what had arrived by then).
        targets = [r for r in incoming if r.sender == header.sender and r.message_type not in CONTROL_TYPES
                   and (cutoff is None or r.received_at <= cutoff) and await _covered(gw, r, payload)]
        others = {r.sender for r in incoming if r.message_type not in CONTROL_TYPES} - {header.sender}
        whole_case = payload["scope"] == "all_purposes" and not payload.get("request_message_ids")
        case_key_destroyed = whole_case and not others
        if not known:
            key_ids = [r.message_id for r in targets]
            if case_key_destroyed:
                live = await gw.store.live_case_key(header.case)
                key_ids = ([live.key_id] if live is not None else []) + key_ids
            entry = gw.entry("data.shredded", SYSTEM_ACTOR, header, {"reason": "consent_withdrawn", "keys": len(key_ids)})
            shredded = await gw.store.shred_data_keys(key_ids, "consent_withdrawn", gw.clock(), audit=[entry])
            cutoff = gw.clock()
            await gw.store.add_withdrawal(Withdrawal(
                message_id=header.id, case_ref=header.case, direction="incoming", counterpart=header.sender,
                withdrawn_at=parse_ts(payload["withdrawn_at"]), scope=payload["scope"],
                purposes=tuple(payload.get("purposes", ())),
                request_message_ids=tuple(payload.get("request_message_ids", ())), recorded_at=cutoff))
            if shredded:
                log.info("consent.withdrawal_applied", message_id=header.id, case=header.case, keys=len(shredded))
    ack_id = derived_message_id("withdrawal-ack", header.id, gw.agency_id)
    if await gw.store.get_outgoing(ack_id) is not None:
        return
    # Set on both paths above: recorded_at of the known withdrawal, or the moment it was applied.
    assert cutoff is not None
    ack = {"withdrawal_message_id": header.id, "applied_at": format_ts(cutoff),
           "messages_made_unreadable": len(targets), "case_key_destroyed": case_key_destroyed}
    try:
        await gw.submit("consent.withdrawal.ack", ack, recipient=header.sender, case_ref=header.case,
                        actor=SYSTEM_ACTOR, in_reply_to=header.id, message_id=ack_id)
    except MessageConflictError:
        pass  # a concurrent redelivery queued it first
    except StoreError:
        raise  # transient: the delivery is requeued and the ack made on redelivery
    except GatewayError as exc:
        # The keys are destroyed; only the answer cannot be sealed (the sender's directory
        # entry refuses it or has no valid key). Audited, never looped.
        await gw.store.append_audit(gw.entry("consent.withdrawal_ack_failed", SYSTEM_ACTOR, header, {"reason": exc.code}))
        gw.metrics.inc("receipt_failures_total", reason=exc.code)


async def _covered(gw: "Gateway", record: Any, payload: dict[str, Any]) -> bool:
    ids = payload.get("request_message_ids")
    if ids:
        return record.message_id in ids
    if payload["scope"] == "all_purposes":
        return True
    # some_purposes: the requests naming a withdrawn purpose (other case data stays).
    if record.message_type != "referral.request":
        return False
    try:
        purposes = gw.open_stored(await gw.at_rest.open(record), record.received_at).payload["purposes"]
    except (PayloadShreddedError, AtRestError):
        return True  # unreadable already (or corrupt): destroying its key changes nothing it could still tell
    return bool(set(purposes) & set(payload.get("purposes", ())))
