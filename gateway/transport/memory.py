"""In-process broker stand-in with RabbitMQ's semantics, for the demo and unit tests.

``MemoryBroker`` plays the broker (one per process, shared by every gateway in the demo);
``MemoryTransport`` plays one gateway's connection to it. What it mimics, because the
service relies on it: routing by recipient into per-agency inboxes, unroutable publishes
raising, unacked messages coming back with ``redelivered=True`` when a consumer stops,
quorum-queue delivery limits dead-lettering into the recipient's quarantine queue, and a
publish "confirm" meaning the message is stored. Nothing survives the process.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gateway.transport.attempts import AttemptCounter
from gateway.transport.base import (
    DELIVERY_LIMIT,
    H_RECIPIENT,
    H_SENDER,
    Delivery,
    Handler,
    WireMessage,
    QuarantinedMessage,
    TopologyError,
    TransportConfig,
    TransportError,
    TransportUnavailableError,
    UnroutableMessageError,
    application_headers,
    check_agency_id,
    check_redrivable,
    describe_quarantined,
    log,
    quarantine_copy,
    redrive_wire_headers,
    settle,
    wire_headers,
)


@dataclass
class _Message:
    message_id: str
    body: bytes
    headers: dict[str, Any]
    routing_key: str
    redelivered: bool = False
    #: How often it was returned to the queue (RabbitMQ's ``x-delivery-count``).
    delivery_count: int = 0


@dataclass
class _Queue:
    name: str
    dead_letter_exchange: str | None
    delivery_limit: int | None
    ready: deque[_Message] = field(default_factory=deque)
    unacked: dict[int, _Message] = field(default_factory=dict)
    #: Set whenever a message becomes ready; consumers wait on it.
    changed: asyncio.Event = field(default_factory=asyncio.Event)


class MemoryBroker:
    """The shared "server": exchanges with exact-match bindings and durable-ish queues."""

    def __init__(self) -> None:
        self._bindings: dict[str, dict[str, set[str]]] = {}
        self._queues: dict[str, _Queue] = {}
        self._tags = itertools.count(1)
        self._available = True
        self._reconnect_listeners: list[Callable[[], None]] = []

    @property
    def available(self) -> bool:
        """Set to False to simulate an outage: publishes and declares then fail. Setting it
        back to True is a "reconnect": every transport's reconnect listeners are called."""
        return self._available

    @available.setter
    def available(self, value: bool) -> None:
        back = value and not self._available
        self._available = value
        if back:
            for listener in list(self._reconnect_listeners):
                listener()

    # -- topology ----------------------------------------------------------------------

    def declare_exchange(self, name: str, *, passive: bool) -> None:
        self._check_available()
        if name not in self._bindings:
            if passive:
                raise TopologyError(f"exchange {name!r} does not exist")
            self._bindings[name] = {}

    def declare_queue(
        self, name: str, *, passive: bool, dead_letter_exchange: str | None = None, delivery_limit: int | None = None
    ) -> None:
        self._check_available()
        if name not in self._queues:
            if passive:
                raise TopologyError(f"queue {name!r} does not exist")
            self._queues[name] = _Queue(name, dead_letter_exchange, delivery_limit)

    def bind(self, queue: str, exchange: str, routing_key: str) -> None:
        self._bindings[exchange].setdefault(routing_key, set()).add(queue)

    def queue_length(self, name: str) -> int:
        """Ready plus unacked messages (for tests and the demo's status output)."""
        queue = self._queues[name]
        return len(queue.ready) + len(queue.unacked)

    # -- messages ----------------------------------------------------------------------

    def publish(self, exchange: str, routing_key: str, message: _Message) -> None:
        """Store the message in every bound queue, or raise: the "publisher confirm"."""
        self._check_available()
        if exchange not in self._bindings:
            raise TopologyError(f"exchange {exchange!r} does not exist")
        targets = self._bindings[exchange].get(routing_key, set())
        if not targets:
            raise UnroutableMessageError(f"no queue bound to {exchange!r} for recipient {routing_key!r}")
        for name in sorted(targets):
            queue = self._queues[name]
            copy = _Message(message.message_id, message.body, dict(message.headers), routing_key)
            queue.ready.append(copy)
            self._notify(queue)

    async def take(self, name: str) -> tuple[int, _Message]:
        """Wait for the next ready message of a queue and hold it as unacked."""
        queue = self._queues[name]
        while not queue.ready:
            queue.changed.clear()
            await queue.changed.wait()
        message = queue.ready.popleft()
        tag = next(self._tags)
        queue.unacked[tag] = message
        return tag, message

    def get(self, name: str) -> tuple[int, _Message] | None:
        queue = self._queues[name]
        if not queue.ready:
            return None
        tag = next(self._tags)
        queue.unacked[tag] = message = queue.ready.popleft()
        return tag, message

    def ack(self, name: str, tag: int) -> None:
        self._queues[name].unacked.pop(tag, None)

    def give_back(self, name: str, tag: int) -> None:
        """Return an unacked message (nack with requeue, or its consumer went away).

        Like a quorum queue: returns count towards the delivery limit; past it the
        message is dead-lettered (at-least-once) instead of requeued. Returned messages
        are delivered again before new ones.
        """
        queue = self._queues[name]
        message = queue.unacked.pop(tag, None)
        if message is None:
            return
        message.delivery_count += 1
        message.redelivered = True
        if queue.delivery_limit is not None and message.delivery_count > queue.delivery_limit:
            self._dead_letter(queue, message, DELIVERY_LIMIT)
        else:
            queue.ready.appendleft(message)
            self._notify(queue)

    def _dead_letter(self, queue: _Queue, message: _Message, reason: str) -> None:
        death = {"reason": reason, "queue": queue.name, "routing-keys": [message.routing_key], "count": 1}
        headers = {**message.headers, "x-death": [death]}
        dead = _Message(message.message_id, message.body, headers, message.routing_key)
        if queue.dead_letter_exchange is None:
            return  # like RabbitMQ without a DLX: dropped. Our queues always have one.
        try:
            self.publish(queue.dead_letter_exchange, message.routing_key, dead)
        except TransportError:
            # At-least-once dead-lettering keeps the message rather than dropping it.
            queue.ready.append(message)

    def _notify(self, queue: _Queue) -> None:
        queue.changed.set()

    def _check_available(self) -> None:
        if not self.available:
            raise TransportUnavailableError("in-memory broker is unavailable (simulated outage)")


class _Consumer:
    def __init__(self, transport: MemoryTransport, agency_id: str, handler: Handler) -> None:
        self.transport = transport
        self.agency_id = agency_id
        self.queue = transport.config.inbox(agency_id)
        self.handler = handler
        self.returns = AttemptCounter()
        self.slots = asyncio.Semaphore(transport.config.prefetch)
        self.unacked: set[int] = set()
        self.handlers: set[asyncio.Task[None]] = set()
        self.dispatcher = asyncio.get_running_loop().create_task(self._dispatch())

    async def _dispatch(self) -> None:
        broker = self.transport.broker
        while True:
            await self.slots.acquire()
            try:
                tag, message = await broker.take(self.queue)
            except BaseException:
                self.slots.release()
                raise
            self.unacked.add(tag)
            task = asyncio.get_running_loop().create_task(self._handle(tag, message))
            self.handlers.add(task)
            task.add_done_callback(self.handlers.discard)

    async def _handle(self, tag: int, message: _Message) -> None:
        broker = self.transport.broker
        try:
            claimed = str(message.headers.get(H_RECIPIENT, ""))
            delivery = Delivery(
                message_id=message.message_id,
                sender=str(message.headers.get(H_SENDER, "")),
                recipient=self.agency_id,  # the inbox it came from, never the header
                body=message.body,
                headers=application_headers(message.headers),
                redelivered=message.redelivered,
                claimed_recipient=claimed if claimed and claimed != self.agency_id else None,
            )
            ack = await settle(
                self.transport, self.handler, delivery, returns=self.returns, config=self.transport.config
            )
            if tag in self.unacked:
                self.unacked.discard(tag)
                if ack:
                    broker.ack(self.queue, tag)
                else:
                    broker.give_back(self.queue, tag)
        finally:
            self.slots.release()

    async def stop(self, grace: float) -> None:
        self.dispatcher.cancel()
        await asyncio.gather(self.dispatcher, return_exceptions=True)
        if self.handlers:
            await asyncio.wait(set(self.handlers), timeout=grace)
        for task in list(self.handlers):
            task.cancel()
        await asyncio.gather(*self.handlers, return_exceptions=True)
        # Like a channel closing: whatever is still unacked goes back to the queue.
        for tag in sorted(self.unacked):
            self.transport.broker.give_back(self.queue, tag)
        self.unacked.clear()


class MemoryTransport:
    """One gateway's connection to a ``MemoryBroker``."""

    def __init__(self, broker: MemoryBroker | None = None, config: TransportConfig | None = None) -> None:
        self.broker = broker if broker is not None else MemoryBroker()
        self.config = config or TransportConfig()
        self._started = False
        self._consumers: list[_Consumer] = []

    def on_reconnect(self, listener: Callable[[], None]) -> None:
        self.broker._reconnect_listeners.append(listener)

    async def start(self) -> None:
        cfg, passive = self.config, not self.config.declare_topology
        self.broker.declare_exchange(cfg.exchange, passive=passive)
        self.broker.declare_exchange(cfg.dead_letter_exchange, passive=passive)
        for agency in cfg.topology_agencies():
            self._declare_agency(agency)
        self._started = True

    def _declare_agency(self, agency_id: str) -> None:
        cfg, passive = self.config, not self.config.declare_topology
        inbox, quarantine = cfg.inbox(agency_id), cfg.quarantine_queue(agency_id)
        self.broker.declare_queue(
            inbox, passive=passive, dead_letter_exchange=cfg.dead_letter_exchange, delivery_limit=cfg.delivery_limit
        )
        self.broker.declare_queue(quarantine, passive=passive)
        if not passive:
            self.broker.bind(inbox, cfg.exchange, agency_id)
            self.broker.bind(quarantine, cfg.dead_letter_exchange, agency_id)

    async def close(self) -> None:
        await self.stop_consuming()
        self._started = False

    def _require_started(self) -> None:
        if not self._started:
            raise TransportUnavailableError("transport not started")

    async def publish(self, message: WireMessage) -> None:
        self._require_started()
        stored = _Message(message.message_id, message.body, wire_headers(message), message.recipient)
        self.broker.publish(self.config.exchange, message.recipient, stored)
        log.debug("transport.published", message_id=message.message_id, recipient=message.recipient)

    async def consume(self, agency_id: str, handler: Handler) -> None:
        self._require_started()
        check_agency_id(agency_id)
        self._declare_agency(agency_id)
        self._consumers.append(_Consumer(self, agency_id, handler))
        log.info("transport.consuming", agency_id=agency_id, prefetch=self.config.prefetch)

    async def quarantine(self, delivery: Delivery, reason_code: str, detail: str) -> None:
        self._require_started()
        body, headers = quarantine_copy(delivery, reason_code, detail, self.config)
        stored = _Message(delivery.message_id, body, headers, delivery.recipient)
        self.broker.publish(self.config.dead_letter_exchange, delivery.recipient, stored)
        log.warning(
            "transport.quarantined", message_id=delivery.message_id, recipient=delivery.recipient, reason=reason_code
        )

    async def stop_consuming(self) -> None:
        consumers, self._consumers = self._consumers, []
        await asyncio.gather(*(c.stop(self.config.stop_grace) for c in consumers))

    async def is_healthy(self) -> bool:
        return self._started and self.broker.available

    async def list_quarantine(self, limit: int) -> list[QuarantinedMessage]:
        self._require_started()
        name = self.config.quarantine_queue(self.config.own_agency())
        self.broker.declare_queue(name, passive=True)
        # Peek: nothing is taken out, so nothing can be lost.
        return [
            describe_quarantined(m.message_id, m.headers, m.routing_key, len(m.body))
            for m in list(self.broker._queues[name].ready)[: max(limit, 0)]
        ]

    async def redrive(self, message_id: str) -> bool:
        self._require_started()
        agency = self.config.own_agency()
        name = self.config.quarantine_queue(agency)
        self.broker.declare_queue(name, passive=True)
        queue = self.broker._queues[name]
        for message in list(queue.ready)[: self.config.redrive_scan_limit]:
            if message.message_id != message_id:
                continue
            check_redrivable(message_id, message.headers)
            # Back to our own inbox, whatever the message's headers say: this quarantine only
            # ever holds what our inbox received (see AmqpTransport.redrive).
            fresh = _Message(message.message_id, message.body, redrive_wire_headers(message.headers, agency), agency)
            self.broker.publish(self.config.exchange, agency, fresh)  # raises: stays quarantined
            queue.ready.remove(message)
            log.info("transport.redriven", message_id=message_id, recipient=agency)
            return True
        return False


__all__ = ["MemoryBroker", "MemoryTransport"]
