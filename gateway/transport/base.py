"""The transport interface: what the gateway service needs from a message broker.

Two implementations keep the same semantics (one conformance suite runs against both):
``memory.MemoryTransport`` (in-process stand-in for the demo and unit tests) and
``amqp.AmqpTransport`` (RabbitMQ via aio-pika). Bodies are opaque envelope bytes:
already signed and encrypted, so the transport never parses, logs or inspects them.

Guarantees both implementations give:

* ``publish`` returns only once the broker has taken responsibility for the message
  (publisher confirm; routed to the recipient's durable inbox). Unknown recipients raise.
* Delivery is at-least-once: a message is removed from an inbox only when the handler
  returned ``Disposition.ACK``. Receivers must de-duplicate by ``message_id``.
* A message that keeps failing (handler raises or requeues) is dead-lettered to the
  recipient's quarantine queue after ``TransportConfig.delivery_limit`` returns. That is
  the broker's backstop; the gateway service counts failed attempts itself and quarantines
  a poison message long before (gateway/service.py, ``delivery_max_attempts``).
* A delivery's ``recipient`` is the agency whose inbox the consumer reads, never the
  publisher's ``x-recipient`` header; ``sender`` is the publisher's unverified claim.
* A quarantine copy never exceeds the broker's frame or message size: a body over
  ``quarantine_max_body_bytes`` is cut (its first ``quarantine_keep_body_bytes`` kept,
  with its size and SHA-256 in headers) and oversized headers are dropped.
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Protocol, runtime_checkable

import structlog

from gateway.errors import GatewayError
from gateway.message_ids import uuid_or_none
from gateway.failure_site import failure_code, failure_site
from gateway.transport.attempts import AttemptCounter, delivery_key

log = structlog.get_logger("gateway.transport")

#: Agency ids become routing keys, queue names and broker user names, so they are
#: restricted to characters with no meaning in topic routing (no ``.``, ``*``, ``#``).
AGENCY_ID_RE = re.compile(r"^[A-Z0-9][A-Z0-9_-]{0,62}$")
#: Quarantine reason codes are machine-readable (``GatewayError.code`` style).
REASON_CODE_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
#: Quarantine details are short, non-personal explanations (the caller guarantees it).
MAX_DETAIL_CHARS = 500

#: Transport-owned headers. Application headers may not start with ``x-``.
H_SENDER = "x-sender"
H_RECIPIENT = "x-recipient"
H_QUARANTINE_REASON = "x-quarantine-reason"
H_QUARANTINE_DETAIL = "x-quarantine-detail"
H_ORIGINAL_RECIPIENT = "x-original-recipient"
#: Set on a quarantine copy whose body was cut: the original's size and SHA-256 (hex).
H_BODY_CUT = "x-quarantine-body-cut"
H_BODY_SIZE = "x-quarantine-body-size"
H_BODY_SHA256 = "x-quarantine-body-sha256"
#: Set on a quarantine copy whose application headers were dropped: how many there were.
H_HEADERS_DROPPED = "x-quarantine-headers-dropped"
RESERVED_HEADER_PREFIX = "x-"

#: Reason used when a handler returns ``Disposition.QUARANTINE`` without calling
#: ``Transport.quarantine`` itself (which lets it give a specific reason).
HANDLER_REJECTED = "handler_rejected"
#: Reason the broker gives when a message exceeded the delivery limit.
DELIVERY_LIMIT = "delivery_limit"


# --- errors ---------------------------------------------------------------------------


class TransportError(GatewayError):
    """The message transport failed; the subclass says how."""

    code = "transport_error"


class TransportUnavailableError(TransportError):
    """The broker cannot be reached, or did not confirm in time. Retrying later is safe
    (a message may then arrive twice; receivers de-duplicate by message id)."""

    code = "transport_unavailable"


class UnroutableMessageError(TransportError):
    """The broker has no inbox for the recipient agency; the message was not stored."""

    code = "unroutable"


class PublishRejectedError(TransportError):
    """The broker refused to store the message (e.g. the inbox is full: reject-publish)."""

    code = "publish_rejected"


class TopologyError(TransportError):
    """An exchange or queue the gateway needs does not exist or cannot be declared."""

    code = "topology_error"


# --- values ---------------------------------------------------------------------------


def check_agency_id(agency_id: str, what: str = "agency id") -> str:
    if not isinstance(agency_id, str) or not AGENCY_ID_RE.fullmatch(agency_id):
        raise ValueError(f"{what} {agency_id!r} must match {AGENCY_ID_RE.pattern}")
    return agency_id


def _frozen_headers(headers: Mapping[str, str]) -> Mapping[str, str]:
    return MappingProxyType(dict(headers))


@dataclass(frozen=True)
class WireMessage:
    """What the service publishes. ``body`` is the sealed envelope (no plaintext)."""

    message_id: str
    sender: str
    recipient: str
    body: bytes
    #: Non-personal metadata only (message type, schema version). Keys must not start
    #: with ``x-`` (reserved for the transport and the broker).
    headers: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.message_id:
            raise ValueError("message_id must not be empty")
        check_agency_id(self.sender, "sender")
        check_agency_id(self.recipient, "recipient")
        if not isinstance(self.body, bytes | bytearray | memoryview):
            raise TypeError("body must be bytes")
        for key, value in self.headers.items():
            if not isinstance(key, str) or not isinstance(value, str):
                raise TypeError(f"header {key!r}: keys and values must be str")
            if key.lower().startswith(RESERVED_HEADER_PREFIX):
                raise ValueError(f"header {key!r}: the 'x-' prefix is reserved for the transport")
        object.__setattr__(self, "body", bytes(self.body))
        object.__setattr__(self, "headers", _frozen_headers(self.headers))


#: The former name (before issue 10), kept for code written against it: use WireMessage.
OutgoingMessage = WireMessage


@dataclass(frozen=True)
class Delivery:
    """A message handed to a consumer's handler."""

    message_id: str
    #: The publisher's ``x-sender`` header: a claim, unverified until the envelope's
    #: signature is checked.
    sender: str
    #: The agency whose inbox the message was consumed from (set by the consumer, never
    #: taken from the message): where its quarantine copy goes.
    recipient: str
    body: bytes = field(repr=False)
    headers: Mapping[str, str]
    #: True if the broker delivered this message before (to this or another consumer)
    #: without it being acked: the handler may already have stored it.
    redelivered: bool
    #: The publisher's ``x-recipient`` header, if it named another agency than the inbox
    #: (kept for the record only; nothing is routed by it).
    claimed_recipient: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "headers", _frozen_headers(self.headers))
        # These come from whoever published the message and go into log lines, quarantine
        # headers and audit entries: kept only in the shape they must have (a message id
        # is a UUID, an agency id matches AGENCY_ID_RE), never as free text.
        object.__setattr__(self, "message_id", safe_message_id(self.message_id))
        object.__setattr__(self, "sender", safe_agency_id(self.sender) or "")
        object.__setattr__(self, "claimed_recipient", safe_agency_id(self.claimed_recipient))


def safe_message_id(value: Any) -> str:
    """``value`` if it is a canonical (lower-case, hyphenated) UUID, else ``""``."""
    return uuid_or_none(value) or ""


def safe_agency_id(value: Any) -> str | None:
    """``value`` if it has the shape of an agency id, else None."""
    return value if isinstance(value, str) and AGENCY_ID_RE.fullmatch(value) else None


@dataclass(frozen=True)
class QuarantinedMessage:
    """One entry of an agency's quarantine queue, for the admin CLI. The body is not
    included (it is opaque ciphertext); ``size`` says how large it is."""

    message_id: str
    sender: str
    recipient: str
    reason_code: str
    detail: str
    size: int
    headers: Mapping[str, str]
    #: Set if the body was cut on its way to quarantine: the original's size and SHA-256.
    original_size: int | None = None
    original_sha256: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "headers", _frozen_headers(self.headers))


class Disposition(enum.Enum):
    """What the handler decided about a delivery."""

    #: Durably stored (or deliberately discarded): remove from the inbox.
    ACK = "ack"
    #: Could not process now (e.g. store down): give it back for a later redelivery.
    REQUEUE = "requeue"
    #: Never processable: move to the quarantine queue (reason ``handler_rejected``).
    #: For a specific reason call ``Transport.quarantine(...)`` and return ``ACK``.
    QUARANTINE = "quarantine"
    #: Failed, but the handler counts its attempts and will quarantine it soon: give it
    #: back at once, without the back-off (which would hold a prefetch slot meanwhile).
    RETRY = "retry"


Handler = Callable[[Delivery], Awaitable[Disposition]]


@dataclass(frozen=True)
class TransportConfig:
    """Names and limits of the transport. Defaults match ``deploy/rabbitmq``."""

    exchange: str = "referrals"
    dead_letter_exchange: str = "referrals.dlx"
    inbox_prefix: str = "inbox."
    quarantine_prefix: str = "quarantine."
    #: The agency this gateway runs for: whose quarantine ``list_quarantine`` and
    #: ``redrive`` work on, and whose inbox/quarantine ``start`` declares or checks.
    agency_id: str | None = None
    #: Further agencies whose inbox/quarantine queues ``start`` declares (demo, tests).
    #: In production the topology comes from deploy/rabbitmq/definitions.json.
    agencies: tuple[str, ...] = ()
    #: True: declare exchanges/queues (idempotent; needs ``configure`` permission).
    #: False: passive declares only check they exist (needs no permission at all).
    declare_topology: bool = True
    #: Upper bound of unacked deliveries (and concurrent handler calls) per consumer.
    prefetch: int = 32
    #: A message returned (requeued, handler raised, consumer died) more than this many
    #: times is dead-lettered to quarantine instead of looping forever (quorum queues).
    delivery_limit: int = 20
    #: Delay before a failed delivery is returned: ``initial * 2**deliveries``, capped.
    #: Keeps a store outage from burning the delivery limit in milliseconds.
    requeue_backoff_initial: float = 0.5
    requeue_backoff_max: float = 30.0
    connect_timeout: float = 5.0
    #: Longest ``publish``/``quarantine`` waits for the broker's confirm before raising
    #: ``TransportUnavailableError`` (the outbox retries).
    publish_timeout: float = 5.0
    #: Seconds between reconnection attempts of the robust connection.
    reconnect_interval: float = 2.0
    #: ``stop_consuming`` lets running handlers finish for this long, then cancels them
    #: (their messages are redelivered).
    stop_grace: float = 5.0
    #: ``redrive`` gives up after looking at this many quarantined messages.
    redrive_scan_limit: int = 10_000
    #: A quarantine copy of a larger body keeps only its first ``quarantine_keep_body_bytes``
    #: (plus the whole body's size and SHA-256), so it always fits the broker's
    #: ``max_message_size``. Envelopes are at most 256 KiB, so no valid message is ever cut.
    quarantine_max_body_bytes: int = 1024 * 1024
    quarantine_keep_body_bytes: int = 64 * 1024
    #: Application headers of a quarantine copy are dropped if together larger than this,
    #: so the copy's header frame always fits ``frame_max`` (RabbitMQ default 128 KiB).
    quarantine_max_header_bytes: int = 16 * 1024

    def __post_init__(self) -> None:
        object.__setattr__(self, "agencies", tuple(self.agencies))
        for agency in self.agencies:
            check_agency_id(agency)
        if self.agency_id is not None:
            check_agency_id(self.agency_id)
        if self.prefetch < 1:
            raise ValueError("prefetch must be at least 1")
        if self.delivery_limit < 1:
            raise ValueError("delivery_limit must be at least 1")
        if not 0 < self.quarantine_keep_body_bytes <= self.quarantine_max_body_bytes:
            raise ValueError("quarantine_keep_body_bytes must be positive and at most quarantine_max_body_bytes")
        for name in ("connect_timeout", "publish_timeout", "reconnect_interval"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if not self.exchange or not self.dead_letter_exchange or self.exchange == self.dead_letter_exchange:
            raise ValueError("exchange and dead_letter_exchange must be distinct, non-empty names")

    def inbox(self, agency_id: str) -> str:
        return self.inbox_prefix + check_agency_id(agency_id)

    def quarantine_queue(self, agency_id: str) -> str:
        return self.quarantine_prefix + check_agency_id(agency_id)

    def topology_agencies(self) -> tuple[str, ...]:
        """Agencies whose queues ``start`` declares (or checks), in a stable order."""
        agencies = list(self.agencies)
        if self.agency_id is not None and self.agency_id not in agencies:
            agencies.append(self.agency_id)
        return tuple(agencies)

    def own_agency(self) -> str:
        if self.agency_id is None:
            raise TransportError("TransportConfig.agency_id is not set: whose quarantine?")
        return self.agency_id

    def requeue_delay(self, previous_deliveries: int) -> float:
        if self.requeue_backoff_initial <= 0:
            return 0.0
        exponent = min(max(previous_deliveries, 0), 30)
        return min(self.requeue_backoff_initial * (2**exponent), self.requeue_backoff_max)


@runtime_checkable
class Transport(Protocol):
    """A durable, acknowledged message transport between agency gateways."""

    async def start(self) -> None:
        """Connect and declare (or check) the topology; idempotent."""

    async def close(self) -> None:
        """Stop consuming and disconnect."""

    async def publish(self, message: WireMessage) -> None:
        """Return once the broker confirmed it stored the message in the recipient's
        inbox. Raises ``UnroutableMessageError`` (no such inbox),
        ``PublishRejectedError`` or ``TransportUnavailableError``."""

    async def consume(self, agency_id: str, handler: Handler) -> None:
        """Start delivering ``inbox.<agency_id>`` to ``handler``; returns once consuming.

        Up to ``prefetch`` handler calls run concurrently. ``ACK`` removes the message,
        ``REQUEUE`` returns it, ``QUARANTINE`` moves it to quarantine; a handler that
        raises has its message returned (never lost)."""

    async def quarantine(self, delivery: Delivery, reason_code: str, detail: str) -> None:
        """Store the delivery in its recipient's quarantine queue with a reason (confirmed).
        The caller then acks the delivery (returns ``ACK``)."""

    async def stop_consuming(self) -> None:
        """Stop delivering; unacked messages go back to their inbox for redelivery."""

    async def is_healthy(self) -> bool:
        """Connected and able to publish (for ``/readyz``)."""

    async def list_quarantine(self, limit: int) -> list[QuarantinedMessage]:
        """Up to ``limit`` messages of this agency's quarantine, without removing any."""

    async def redrive(self, message_id: str) -> bool:
        """Move one quarantined message back to its original recipient's inbox.
        False if no quarantined message has this id. Raises ``TransportError`` for a
        copy whose body was cut (it is not the message any more)."""

    def on_reconnect(self, listener: Callable[[], None]) -> None:
        """Call ``listener()`` each time the broker connection comes back after a loss."""


# --- shared deciders and helpers ---------------------------------------------------------


def check_quarantine_reason(reason_code: str, detail: str) -> None:
    if not REASON_CODE_RE.fullmatch(reason_code):
        raise ValueError(f"reason_code {reason_code!r} must match {REASON_CODE_RE.pattern}")
    if len(detail) > MAX_DETAIL_CHARS:
        raise ValueError(f"quarantine detail longer than {MAX_DETAIL_CHARS} characters")


def wire_headers(message: WireMessage) -> dict[str, str]:
    """Headers as sent on the wire: application headers plus sender and recipient."""
    return {**message.headers, H_SENDER: message.sender, H_RECIPIENT: message.recipient}


def application_headers(headers: Mapping[str, Any] | None) -> dict[str, str]:
    """The application's headers: drop transport/broker ``x-`` headers and non-strings."""
    return {
        str(k): v
        for k, v in (headers or {}).items()
        if isinstance(v, str) and not str(k).lower().startswith(RESERVED_HEADER_PREFIX)
    }


def _header_bytes(headers: Mapping[str, str]) -> int:
    return sum(len(k.encode("utf-8")) + len(v.encode("utf-8")) + 8 for k, v in headers.items())


def quarantine_copy(
    delivery: Delivery, reason_code: str, detail: str, config: TransportConfig
) -> tuple[bytes, dict[str, str]]:
    """Body and headers of a delivery's quarantine copy, sized to fit the broker.

    A body over ``quarantine_max_body_bytes`` keeps its first ``quarantine_keep_body_bytes``
    and says so (``x-quarantine-body-cut: true``, the whole body's size and SHA-256).
    Application headers larger together than ``quarantine_max_header_bytes`` are dropped
    (``x-quarantine-headers-dropped: <count>``). The claimed sender is kept only if it is
    shaped like an agency id; the recipient is the inbox it came from."""
    check_quarantine_reason(reason_code, detail)
    body = delivery.body
    app = application_headers(delivery.headers)
    headers: dict[str, str] = {}
    if _header_bytes(app) <= config.quarantine_max_header_bytes:
        headers.update(app)
    else:
        headers[H_HEADERS_DROPPED] = str(len(app))
    if len(body) > config.quarantine_max_body_bytes:
        headers[H_BODY_CUT] = "true"
        headers[H_BODY_SIZE] = str(len(body))
        headers[H_BODY_SHA256] = hashlib.sha256(body).hexdigest()
        body = body[: config.quarantine_keep_body_bytes]
    headers.update({
        H_SENDER: safe_agency_id(delivery.sender) or "",
        H_RECIPIENT: delivery.recipient,
        H_ORIGINAL_RECIPIENT: delivery.recipient,
        H_QUARANTINE_REASON: reason_code,
        H_QUARANTINE_DETAIL: detail,
    })
    return body, headers


def check_redrivable(message_id: str, headers: Mapping[str, Any]) -> None:
    """Refuse to re-drive a quarantine copy whose body was cut: it is not the message."""
    if header_text(headers.get(H_BODY_CUT)) == "true":
        raise TransportError(f"quarantined message {message_id} was stored with its body cut; it cannot be re-driven")


def header_text(value: Any) -> str:
    """A header value as text (AMQP may hand us bytes or nothing)."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return "" if value is None else str(value)


def describe_quarantined(
    message_id: str, headers: Mapping[str, Any], routing_key: str, size: int
) -> QuarantinedMessage:
    """Decide what a quarantine entry is: quarantined by a gateway (our headers) or
    dead-lettered by the broker (``x-death``: ``delivery_limit``, ``rejected``, ...)."""
    deaths = headers.get("x-death")
    if isinstance(deaths, list | tuple) and deaths and isinstance(deaths[0], Mapping):
        # Dead-lettered by the broker: the message keeps the headers its publisher wrote, so
        # only the broker's own x-death record is believed (a publisher could have set
        # x-quarantine-* or x-original-recipient itself).
        death = deaths[0]
        reason = header_text(death.get("reason"))
        queue = header_text(death.get("queue"))
        detail = f"dead-lettered by the broker from {queue}" if REASON_CODE_RE.fullmatch(reason) else ""
        keys = death.get("routing-keys") or []
        recipient = header_text(keys[0]) if keys else ""
    else:
        # Quarantined by a gateway, which strips the publisher's x- headers from its copy.
        reason = header_text(headers.get(H_QUARANTINE_REASON))
        detail = header_text(headers.get(H_QUARANTINE_DETAIL))
        recipient = header_text(headers.get(H_ORIGINAL_RECIPIENT) or headers.get(H_RECIPIENT))
    if not REASON_CODE_RE.fullmatch(reason):
        reason, detail = "unknown", ""
    cut = header_text(headers.get(H_BODY_CUT)) == "true"
    original_size = header_text(headers.get(H_BODY_SIZE))
    return QuarantinedMessage(
        message_id=message_id,
        sender=safe_agency_id(header_text(headers.get(H_SENDER))) or "",
        recipient=safe_agency_id(recipient) or safe_agency_id(routing_key) or "",
        reason_code=reason or "unknown",
        detail=detail,
        size=size,
        headers=application_headers(headers),
        original_size=int(original_size) if cut and original_size.isdigit() else None,
        original_sha256=header_text(headers.get(H_BODY_SHA256)) or None if cut else None,
    )


def redrive_wire_headers(headers: Mapping[str, Any], recipient: str) -> dict[str, str]:
    """Headers of a re-driven message: the original ones, without quarantine marks."""
    return {
        **application_headers(headers),
        H_SENDER: safe_agency_id(header_text(headers.get(H_SENDER))) or "",
        H_RECIPIENT: recipient,
    }


async def settle(
    transport: Transport,
    handler: Handler,
    delivery: Delivery,
    *,
    returns: AttemptCounter,
    config: TransportConfig,
) -> bool:
    """Run the handler and decide the outcome: True = ack, False = return to the inbox.

    Shared by every transport, so the mapping from handler result to broker action is
    the same everywhere. ``returns`` is the consumer's own count of back-offs per message
    (the ``x-delivery-count`` header is not used: a publisher can set it). Logs ids,
    codes and the code location of a failure only: never the body, and never exception
    text from outside the gateway's own hierarchy (it may quote the payload).
    """
    def bound() -> Any:
        # Bound only when there is something to log: binding costs on every delivery.
        return log.bind(message_id=delivery.message_id, sender=delivery.sender, recipient=delivery.recipient)

    try:
        disposition = await handler(delivery)
    except asyncio.CancelledError:
        raise
    except GatewayError as exc:
        bound().warning("transport.handler_failed", error=type(exc).__name__, code=exc.code,
                        where=failure_site(exc), reason=str(exc)[:MAX_DETAIL_CHARS])
        disposition = None
    except Exception as exc:  # noqa: BLE001 - any handler bug: requeue, never lose
        bound().error("transport.handler_failed", error=type(exc).__name__, code=failure_code(exc),
                      where=failure_site(exc))
        disposition = None

    if disposition is Disposition.ACK:
        returns.forget_delivery(delivery.message_id, delivery.body)
        return True
    if disposition is Disposition.RETRY:
        bound().info("transport.retried")
        return False
    if disposition is Disposition.QUARANTINE:
        try:
            await transport.quarantine(delivery, HANDLER_REJECTED, "handler returned QUARANTINE")
        except TransportError as exc:
            bound().warning("transport.quarantine_failed", code=exc.code)
        else:
            returns.forget_delivery(delivery.message_id, delivery.body)
            return True
    elif disposition is not Disposition.REQUEUE and disposition is not None:
        bound().error("transport.handler_bad_result", result=type(disposition).__name__)

    key = delivery_key(delivery.message_id, delivery.body)
    previous = returns.get(key)
    delay = config.requeue_delay(previous)
    if delay:
        # The message stays unacked (and counts against prefetch) while we wait: natural
        # back-pressure while e.g. the store is down. Poison messages take RETRY instead.
        await asyncio.sleep(delay)
    returns.bump(key)
    bound().info("transport.requeued", previous_returns=previous)
    return False
