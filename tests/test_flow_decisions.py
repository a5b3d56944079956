"""The decisions of the withdrawal, retention and checkpoint-exchange flows, as pure functions:
no gateway, no store, no clock."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import pytest

from gateway.audit.exchange import _spaced, checkpoint_message_id, is_gap, linked_to
from gateway.errors import NotFoundError
from gateway.retention import retained_types, retention_cutoff, shred_entries
from gateway.store.base import CheckpointRecord, InboxRecord, OutboxRecord, OutgoingStatus, Withdrawal
from gateway.withdrawal import (
    closes_case,
    covered_without_reading,
    latest_closing,
    may_be_covered,
    purposes_covered,
    recipient_payload,
    reopened_since,
    select_requests,
    withdraws_whole_case,
)

T0 = datetime(2026, 11, 20, 10, 0, tzinfo=timezone.utc)
CASE = "ne-ng-decisions01"
NG, NG_IOM, NE = "NG-NAPTIP", "NG-IOM", "NE-ANLTP"


def mid(n: int) -> str:
    return str(uuid.UUID(int=n, version=4))


def withdrawal(n: int, *, counterpart: str = NG, scope: str = "all_purposes", request_ids: tuple[str, ...] = (),
               recorded_at: datetime = T0) -> Withdrawal:
    return Withdrawal(message_id=mid(n), case_ref=CASE, direction="outgoing", counterpart=counterpart,
                      withdrawn_at=T0 - timedelta(days=1), scope=scope,  # type: ignore[arg-type]
                      purposes=("family_tracing",) if scope == "some_purposes" else (),
                      request_message_ids=request_ids, recorded_at=recorded_at)


def sent(n: int, at: datetime, *, recipient: str = NG, message_type: str = "referral.request",
         status: OutgoingStatus = "delivered") -> OutboxRecord:
    return OutboxRecord(message_id=mid(n), case_ref=CASE, recipient=recipient, message_type=message_type,
                        envelope=b"sealed", status=status, attempts=1, next_attempt_at=at, last_error=None,
                        created_at=at, updated_at=at)


def received(n: int, at: datetime, *, sender: str = NG, message_type: str = "referral.request") -> InboxRecord:
    return InboxRecord(message_id=mid(n), sender=sender, message_type=message_type, case_ref=CASE,
                       envelope=b"sealed", received_at=at, status="received", updated_at=at)


# --- does this withdrawal close the case? -----------------------------------------------


def test_only_a_whole_case_all_purposes_withdrawal_to_that_agency_closes_the_case() -> None:
    assert closes_case(withdrawal(1), NG)
    assert not closes_case(withdrawal(1), NG_IOM)  # another agency's case stays open
    assert not closes_case(withdrawal(1, scope="some_purposes"), NG)
    assert not closes_case(withdrawal(1, request_ids=(mid(9),)), NG)


def test_the_latest_recorded_closing_withdrawal_is_the_one_that_counts() -> None:
    older, newer = withdrawal(1, recorded_at=T0), withdrawal(2, recorded_at=T0 + timedelta(hours=1))
    partial = withdrawal(3, scope="some_purposes", recorded_at=T0 + timedelta(hours=2))
    assert latest_closing([newer, older, partial], NG) == newer
    assert latest_closing([partial, withdrawal(4, counterpart=NG_IOM)], NG) is None
    assert latest_closing([], NG) is None


def test_a_later_referral_between_the_two_agencies_reopens_the_case() -> None:
    closing = withdrawal(1, recorded_at=T0)
    before, after = T0 - timedelta(minutes=1), T0 + timedelta(minutes=1)
    assert not reopened_since(closing, NG, [sent(2, before)], [received(3, before)])
    assert reopened_since(closing, NG, [sent(2, after)], [])
    assert reopened_since(closing, NG, [], [received(3, after)])
    # Not a referral, failed, to or from someone else, or at the same instant: still closed.
    assert not reopened_since(closing, NG, [sent(4, after, message_type="case.followup"),
                                            sent(5, after, status="failed"), sent(6, after, recipient=NG_IOM)],
                              [received(7, after, sender=NG_IOM), received(8, T0)])


# --- which referrals does a sent withdrawal cover? -------------------------------------


def test_a_withdrawal_covers_every_sent_referral_or_the_named_ones() -> None:
    requests = [sent(1, T0), sent(2, T0, recipient=NG_IOM)]
    assert select_requests(requests, set(), CASE) == requests
    assert select_requests(requests, {mid(2)}, CASE) == [requests[1]]


def test_naming_a_referral_not_sent_for_the_case_or_having_none_is_not_found() -> None:
    with pytest.raises(NotFoundError, match="1 referral"):
        select_requests([sent(1, T0)], {mid(1), mid(7)}, CASE)
    with pytest.raises(NotFoundError, match=CASE):
        select_requests([], set(), CASE)


def test_each_recipient_is_told_only_of_its_own_named_referrals() -> None:
    payload = {"scope": "all_purposes", "withdrawn_at": "2026-11-20T10:00:00Z",
               "request_message_ids": [mid(2), mid(1)]}
    requests = [sent(1, T0), sent(2, T0, recipient=NG_IOM)]
    assert recipient_payload(payload, requests, NG, {mid(1), mid(2)})["request_message_ids"] == [mid(1)]
    assert recipient_payload(payload, requests, NG_IOM, {mid(1), mid(2)})["request_message_ids"] == [mid(2)]
    whole = {"scope": "all_purposes", "withdrawn_at": "2026-11-20T10:00:00Z"}
    assert recipient_payload(whole, requests, NG, set()) == whole


# --- is this received message covered by a partner's withdrawal? ------------------------


def test_what_the_withdrawal_alone_decides() -> None:
    named = {"scope": "some_purposes", "purposes": ["family_tracing"], "request_message_ids": [mid(1)]}
    assert covered_without_reading(named, mid(1), "referral.request") is True
    assert covered_without_reading(named, mid(2), "referral.request") is False
    assert covered_without_reading({"scope": "all_purposes"}, mid(2), "case.followup") is True
    some = {"scope": "some_purposes", "purposes": ["family_tracing"]}
    assert covered_without_reading(some, mid(2), "case.followup") is False  # other case data stays
    assert covered_without_reading(some, mid(2), "referral.request") is None  # depends on its purposes


def test_a_some_purposes_withdrawal_covers_referrals_naming_a_withdrawn_purpose() -> None:
    some = {"scope": "some_purposes", "purposes": ["family_tracing"]}
    assert purposes_covered(some, ["assistance", "family_tracing"])
    assert not purposes_covered(some, ["assistance"])
    assert purposes_covered(some, None)  # unreadable already: destroying its key tells nothing new


def test_only_case_data_from_the_withdrawing_agency_received_before_it_was_recorded_is_a_target() -> None:
    assert may_be_covered(received(1, T0), NG, None)
    assert may_be_covered(received(1, T0), NG, T0)
    assert not may_be_covered(received(1, T0 + timedelta(seconds=1)), NG, T0)  # arrived after: new consent
    assert not may_be_covered(received(1, T0, sender=NG_IOM), NG, None)
    assert not may_be_covered(received(1, T0, message_type="receipt"), NG, None)


def test_whole_case_means_all_purposes_and_no_named_requests() -> None:
    assert withdraws_whole_case({"scope": "all_purposes"})
    assert withdraws_whole_case({"scope": "all_purposes", "request_message_ids": []})
    assert not withdraws_whole_case({"scope": "all_purposes", "request_message_ids": [mid(1)]})
    assert not withdraws_whole_case({"scope": "some_purposes", "purposes": ["assistance"]})


# --- retention --------------------------------------------------------------------------


def test_retention_skips_control_traffic_and_counts_days_back_from_now() -> None:
    types = retained_types()
    assert "referral.request" in types and "case.followup" in types
    assert not {"receipt", "consent.withdrawal", "consent.withdrawal.ack", "audit.checkpoint"} & set(types)
    assert retention_cutoff(T0, 30) == T0 - timedelta(days=30)


def test_one_shred_entry_per_message_with_codes_only() -> None:
    entries = shred_entries([received(1, T0), received(2, T0, sender=NG_IOM)], "referral.request", T0)
    assert [(e.message_id, e.agency, e.event_type, e.actor) for e in entries] == [
        (mid(1), NG, "data.shredded", "system"), (mid(2), NG_IOM, "data.shredded", "system")]
    assert entries[0].detail_json == '{"reason": "retention", "type": "referral.request"}'


# --- checkpoint exchange ----------------------------------------------------------------


def checkpoint(size: int, root: bytes = b"\x01" * 32) -> CheckpointRecord:
    return CheckpointRecord(origin=NE, tree_size=size, root_hash=root, signed_at=T0, note=b"{}", recorded_at=T0)


def test_a_larger_checkpoint_no_proof_links_to_our_latest_is_a_gap() -> None:
    latest = checkpoint(10)
    assert is_gap(latest, 12, {})
    assert is_gap(latest, 12, {10: b"\x02" * 32})  # a proof from another root at that size
    assert not is_gap(latest, 12, {10: b"\x01" * 32})
    assert not is_gap(latest, 10, {})  # same size: compared by root, not a gap
    assert not is_gap(None, 12, {})  # the first one we hold
    assert linked_to(latest, 12) == 10 and linked_to(latest, 10) is None and linked_to(None, 3) is None


def test_proofs_go_from_the_previous_checkpoint_then_2_4_8_back() -> None:
    assert _spaced(0) == [] and _spaced(1) == [0] and _spaced(8) == [0, 1, 3, 7]
    assert len(_spaced(10 ** 6)) == 16


def test_checkpoint_message_ids_are_one_per_checkpoint_and_partner() -> None:
    one = checkpoint_message_id(NE, 5, b"\x01" * 32, NG)
    assert one == checkpoint_message_id(NE, 5, b"\x01" * 32, NG)
    assert len({one, checkpoint_message_id(NE, 5, b"\x01" * 32, NG_IOM), checkpoint_message_id(NE, 6, b"\x01" * 32, NG),
                checkpoint_message_id(NE, 5, b"\x02" * 32, NG)}) == 4
