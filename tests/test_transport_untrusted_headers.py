"""What a publisher writes into AMQP headers is a claim: it never names where a message is
re-driven, never reaches the quarantine listing or log lines as free text (review of issue 15)."""

from __future__ import annotations

import uuid

from gateway.transport import Delivery, MemoryBroker, MemoryTransport, TransportConfig
from gateway.transport.base import describe_quarantined
from gateway.transport.memory import _Message

A, B = "NG-NAPTIP", "NE-ANLTP-TIM"
NAME = "Aisha Bello"  # a personal value a forger might put in a header


def test_a_delivery_keeps_publisher_values_only_in_their_shape() -> None:
    forged = Delivery(f"id of {NAME}", f"sender {NAME}", A, b"x", {}, False, claimed_recipient=NAME)
    assert (forged.message_id, forged.sender, forged.claimed_recipient) == ("", "", None)
    mid = str(uuid.uuid4())
    fine = Delivery(mid, B, A, b"x", {}, False, claimed_recipient="XX-NOBODY")
    assert (fine.message_id, fine.sender, fine.claimed_recipient) == (mid, B, "XX-NOBODY")


def test_a_dead_lettered_message_is_described_from_the_brokers_record_only() -> None:
    headers = {
        "x-quarantine-reason": "verified_ok", "x-quarantine-detail": f"looks fine, {NAME}",
        "x-original-recipient": B, "x-sender": f"{NAME}",
        "x-death": [{"reason": "delivery_limit", "queue": f"inbox.{A}", "routing-keys": [A]}],
    }
    entry = describe_quarantined(str(uuid.uuid4()), headers, A, 10)
    assert (entry.reason_code, entry.recipient, entry.sender) == ("delivery_limit", A, "")
    assert NAME not in entry.detail and "verified_ok" not in repr(entry)


def test_a_reason_that_is_not_a_code_is_shown_as_unknown() -> None:
    entry = describe_quarantined(str(uuid.uuid4()), {"x-quarantine-reason": NAME, "x-quarantine-detail": NAME}, A, 1)
    assert (entry.reason_code, entry.detail) == ("unknown", "")


async def test_redrive_goes_back_to_our_own_inbox_whatever_the_headers_say() -> None:
    broker = MemoryBroker()
    config = TransportConfig(agency_id=A, agencies=(A, B))
    transport = MemoryTransport(broker, config)
    await transport.start()
    mid = str(uuid.uuid4())
    # As the broker dead-letters it: the publisher's own headers, plus x-death.
    broker.publish(config.dead_letter_exchange, A, _Message(mid, b"body", {
        "x-original-recipient": B, "x-recipient": B, "x-sender": NAME,
        "x-death": [{"reason": "delivery_limit", "queue": f"inbox.{A}", "routing-keys": [A]}]}, A))
    assert await transport.redrive(mid)
    ours, theirs = broker._queues[config.inbox(A)].ready, broker._queues[config.inbox(B)].ready
    assert [m.message_id for m in ours] == [mid] and not theirs
    assert ours[0].headers["x-sender"] == ""  # the forged sender is not re-emitted
    await transport.close()
