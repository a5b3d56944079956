"""The RabbitMQ edge of the transport (aio-pika). Decisions live in ``base``; this module
only maps them onto AMQP 0-9-1 and broker errors onto ``TransportError`` subclasses.

Topology (see deploy/rabbitmq/README.md for why): a durable topic exchange routing by
recipient agency id into per-agency quorum inboxes, which dead-letter (at-least-once,
delivery limit) into a topic DLX routing into per-agency quorum quarantine queues.

Channels: one publisher-confirm channel for publish/quarantine/redrive (mandatory flag,
returns raise), one channel per consumer (its own ``basic.qos`` prefetch, so closing it
returns exactly that consumer's unacked messages), and short-lived channels for the
quarantine peek/redrive scans (closing them returns everything they fetched).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from typing import Any, AsyncIterator

import aio_pika
import aiormq.exceptions
from aio_pika.abc import (
    AbstractChannel,
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustConnection,
    DeliveryMode,
    ExchangeType,
)
from yarl import URL

from gateway.transport.attempts import AttemptCounter
from gateway.transport.directory_feed import FeedNames
from gateway.transport.base import (
    H_RECIPIENT,
    H_SENDER,
    Delivery,
    Handler,
    WireMessage,
    PublishRejectedError,
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
    header_text,
    log,
    quarantine_copy,
    redrive_wire_headers,
    settle,
    wire_headers,
)

_GET_TIMEOUT = 5.0


def _safe_url(url: str) -> str:
    """``host:port/vhost`` for messages and logs: never the credentials."""
    parsed = URL(url)
    return f"{parsed.host}:{parsed.port}{parsed.path or '/'}"


def _inbox_arguments(config: TransportConfig) -> dict[str, Any]:
    return {
        "x-queue-type": "quorum",
        "x-dead-letter-exchange": config.dead_letter_exchange,
        # Without at-least-once the broker dead-letters without confirms and may drop
        # messages on the way to quarantine; it requires overflow=reject-publish.
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",
        "x-delivery-limit": config.delivery_limit,
    }


_QUARANTINE_ARGUMENTS: dict[str, Any] = {"x-queue-type": "quorum"}


class _Consumer:
    """One ``basic.consume`` on its own channel; tracks running handler tasks."""

    def __init__(self, transport: AmqpTransport, agency_id: str, handler: Handler) -> None:
        self.transport = transport
        self.agency_id = agency_id
        self.handler = handler
        self.channel: AbstractChannel | None = None
        self.queue: AbstractQueue | None = None
        self.tag: str | None = None
        self.tasks: set[asyncio.Task[Any]] = set()
        self.returns = AttemptCounter()

    async def start(self) -> None:
        cfg = self.transport.config
        assert self.transport._connection is not None
        self.channel = await self.transport._connection.channel(publisher_confirms=False)
        await self.channel.set_qos(prefetch_count=cfg.prefetch)
        self.queue = await self.transport._declare_agency(self.channel, self.agency_id)
        self.tag = await self.queue.consume(self.on_message, no_ack=False)

    async def on_message(self, message: AbstractIncomingMessage) -> None:
        task = asyncio.current_task()
        if task is not None:
            self.tasks.add(task)
        try:
            headers = message.headers or {}
            claimed = header_text(headers.get(H_RECIPIENT))
            delivery = Delivery(
                message_id=message.message_id or "",
                sender=header_text(headers.get(H_SENDER)),
                # The queue we consume is the recipient; the publisher's header is a claim.
                recipient=self.agency_id,
                body=message.body,
                headers=application_headers(headers),
                redelivered=bool(message.redelivered),
                claimed_recipient=claimed if claimed and claimed != self.agency_id else None,
            )
            ack = await settle(
                self.transport, self.handler, delivery, returns=self.returns, config=self.transport.config
            )
            try:
                if ack:
                    await message.ack()
                else:
                    await message.nack(requeue=True)
            except (aiormq.exceptions.AMQPError, ConnectionError, RuntimeError) as exc:
                # The channel went away (reconnect, stop): the broker has already
                # returned the message and will deliver it again.
                log.warning("transport.settle_failed", message_id=delivery.message_id, error=type(exc).__name__)
        finally:
            if task is not None:
                self.tasks.discard(task)

    async def stop(self, grace: float) -> None:
        if self.queue is not None and self.tag is not None:
            try:
                await self.queue.cancel(self.tag)
            except Exception as exc:  # noqa: BLE001 - the channel close below suffices
                log.debug("transport.cancel_failed", agency_id=self.agency_id, error=type(exc).__name__)
        running = {t for t in self.tasks if t is not asyncio.current_task()}
        if running:
            await asyncio.wait(running, timeout=grace)
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
        if self.channel is not None and not self.channel.is_closed:
            # Closing the channel makes the broker return every unacked message
            # (redelivered=True), so nothing a stopped handler held is lost.
            await self.channel.close()


class AmqpTransport:
    """Transport over RabbitMQ (AMQP 0-9-1, aio-pika robust connection)."""

    def __init__(
        self, url: str, config: TransportConfig | None = None, *, connection_name: str = "referral-gateway"
    ) -> None:
        self._url = url
        self.config = config or TransportConfig()
        self._connection_name = connection_name
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractChannel | None = None
        self._exchange: AbstractExchange | None = None
        self._dlx: AbstractExchange | None = None
        self._consumers: list[_Consumer] = []
        self._reconnect_listeners: list[Callable[[], None]] = []

    def on_reconnect(self, listener: Callable[[], None]) -> None:
        self._reconnect_listeners.append(listener)

    def _reconnected(self, *_: Any) -> None:
        # aio-pika calls this once the robust connection and its channels are restored.
        log.info("transport.reconnected", broker=_safe_url(self._url))
        for listener in list(self._reconnect_listeners):
            try:
                listener()
            except Exception as exc:  # noqa: BLE001 - one listener must not stop the others
                log.warning("transport.reconnect_listener_failed", error=type(exc).__name__)

    # -- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        if self._connection is None or self._connection.is_closed:
            try:
                self._connection = await aio_pika.connect_robust(
                    self._url,
                    timeout=self.config.connect_timeout,
                    reconnect_interval=self.config.reconnect_interval,
                    client_properties={"connection_name": self._connection_name},
                )
            except asyncio.CancelledError:
                raise
            except (aio_pika.exceptions.AMQPError, OSError, asyncio.TimeoutError, RuntimeError) as exc:
                raise TransportUnavailableError(
                    f"cannot connect to the broker at {_safe_url(self._url)}: {type(exc).__name__}"
                ) from exc
            self._connection.reconnect_callbacks.add(self._reconnected)
        try:
            await self._declare_topology()
        except BaseException:
            await self.close()
            raise
        log.info("transport.started", broker=_safe_url(self._url), exchange=self.config.exchange)

    async def _declare_topology(self) -> None:
        cfg = self.config
        assert self._connection is not None
        passive = not cfg.declare_topology
        if self._channel is not None and not self._channel.is_closed:
            await self._channel.close()
        channel = await self._connection.channel(publisher_confirms=True, on_return_raises=True)
        self._channel = channel
        try:
            self._exchange = await channel.declare_exchange(
                cfg.exchange, ExchangeType.TOPIC, durable=True, passive=passive
            )
            self._dlx = await channel.declare_exchange(
                cfg.dead_letter_exchange, ExchangeType.TOPIC, durable=True, passive=passive
            )
        except aiormq.exceptions.ChannelNotFoundEntity as exc:
            raise TopologyError(f"exchange missing on {_safe_url(self._url)}: {exc}") from exc
        except aiormq.exceptions.AMQPChannelError as exc:
            raise TopologyError(f"cannot declare exchanges on {_safe_url(self._url)}: {exc}") from exc
        for agency in cfg.topology_agencies():
            # Each on its own channel: a failed passive declare closes the channel.
            async with self._temporary_channel() as scratch:
                await self._declare_agency(scratch, agency)

    async def _declare_agency(self, channel: AbstractChannel, agency_id: str) -> AbstractQueue:
        """Declare (or, passively, check) an agency's inbox and quarantine; returns the inbox."""
        cfg = self.config
        passive = not cfg.declare_topology
        check_agency_id(agency_id)
        try:
            inbox = await channel.declare_queue(
                cfg.inbox(agency_id),
                durable=True,
                passive=passive,
                arguments=None if passive else _inbox_arguments(cfg),
            )
            quarantine = await channel.declare_queue(
                cfg.quarantine_queue(agency_id),
                durable=True,
                passive=passive,
                arguments=None if passive else _QUARANTINE_ARGUMENTS,
            )
            if not passive:
                await inbox.bind(cfg.exchange, routing_key=agency_id)
                await quarantine.bind(cfg.dead_letter_exchange, routing_key=agency_id)
        except aiormq.exceptions.ChannelNotFoundEntity as exc:
            raise TopologyError(f"queues of {agency_id} missing: {exc}") from exc
        except aiormq.exceptions.AMQPChannelError as exc:
            # e.g. PRECONDITION_FAILED: an existing queue with other arguments.
            raise TopologyError(f"cannot declare queues of {agency_id}: {exc}") from exc
        return inbox

    async def close(self) -> None:
        await self.stop_consuming()
        connection, self._connection = self._connection, None
        self._channel = self._exchange = self._dlx = None
        if connection is not None and not connection.is_closed:
            await connection.close()

    async def is_healthy(self) -> bool:
        connection, channel = self._connection, self._channel
        return (
            connection is not None
            and not connection.is_closed
            and connection.connected.is_set()
            and channel is not None
            and not channel.is_closed
        )

    # -- publishing ------------------------------------------------------------------

    async def publish(self, message: WireMessage) -> None:
        await self._publish_confirmed(
            self._exchange, message.message_id, message.body, wire_headers(message), message.recipient
        )
        log.debug("transport.published", message_id=message.message_id, recipient=message.recipient)

    async def quarantine(self, delivery: Delivery, reason_code: str, detail: str) -> None:
        body, headers = quarantine_copy(delivery, reason_code, detail, self.config)
        await self._publish_confirmed(self._dlx, delivery.message_id, body, headers, delivery.recipient)
        log.warning(
            "transport.quarantined", message_id=delivery.message_id, recipient=delivery.recipient, reason=reason_code
        )

    async def _publish_confirmed(
        self,
        exchange: AbstractExchange | None,
        message_id: str,
        body: bytes,
        headers: dict[str, Any],
        routing_key: str,
    ) -> None:
        if exchange is None or self._connection is None:
            raise TransportUnavailableError("transport not started")
        amqp_message = aio_pika.Message(
            body,
            message_id=message_id,
            headers=headers,
            delivery_mode=DeliveryMode.PERSISTENT,
            content_type="application/octet-stream",
            timestamp=datetime.now(timezone.utc),
            app_id="referral-gateway",
        )
        timeout = self.config.publish_timeout
        try:
            # The whole attempt is bounded, including waiting for a reconnect: while
            # the broker is away we fail fast and the service's outbox retries.
            await asyncio.wait_for(
                exchange.publish(amqp_message, routing_key=routing_key, mandatory=True, timeout=timeout),
                timeout=timeout,
            )
        except aiormq.exceptions.PublishError as exc:  # basic.return: no queue bound
            raise UnroutableMessageError(
                f"no inbox for recipient {routing_key!r} on exchange {exchange.name!r}"
            ) from exc
        except aiormq.exceptions.DeliveryError as exc:  # basic.nack
            raise PublishRejectedError(f"broker refused message {message_id} for {routing_key!r}") from exc
        except asyncio.CancelledError:
            raise
        except (aiormq.exceptions.AMQPError, OSError, RuntimeError, asyncio.TimeoutError) as exc:
            raise TransportUnavailableError(
                f"publish of {message_id} to {routing_key!r} not confirmed within {timeout}s: {type(exc).__name__}"
            ) from exc

    # -- consuming -------------------------------------------------------------------

    async def consume(self, agency_id: str, handler: Handler) -> None:
        if self._connection is None:
            raise TransportUnavailableError("transport not started")
        check_agency_id(agency_id)
        consumer = _Consumer(self, agency_id, handler)
        try:
            await consumer.start()
        except TransportError:
            await consumer.stop(0)
            raise
        except (aiormq.exceptions.AMQPError, OSError, RuntimeError) as exc:
            await consumer.stop(0)
            raise TransportUnavailableError(f"cannot consume inbox of {agency_id}: {type(exc).__name__}") from exc
        self._consumers.append(consumer)
        log.info("transport.consuming", agency_id=agency_id, prefetch=self.config.prefetch)

    async def stop_consuming(self) -> None:
        consumers, self._consumers = self._consumers, []
        await asyncio.gather(*(c.stop(self.config.stop_grace) for c in consumers), return_exceptions=True)

    # -- quarantine administration ---------------------------------------------------

    @asynccontextmanager
    async def _temporary_channel(self) -> AsyncIterator[AbstractChannel]:
        if self._connection is None:
            raise TransportUnavailableError("transport not started")
        channel = await self._connection.channel(publisher_confirms=False)
        try:
            yield channel
        finally:
            if not channel.is_closed:
                # Anything fetched on this channel and not acked returns to its queue.
                await channel.close()

    async def list_quarantine(self, limit: int) -> list[QuarantinedMessage]:
        """Peek: ``basic.get`` without ack holds each message so the next get returns the
        next one; closing the channel then returns them all. Nothing is acked, so a crash
        mid-listing loses nothing (republishing copies instead could duplicate or reorder).
        Side effect: entries get ``redelivered``/``x-delivery-count`` bumps, which is why
        quarantine queues have no delivery limit."""
        name = self.config.quarantine_queue(self.config.own_agency())
        found: list[QuarantinedMessage] = []
        async with self._temporary_channel() as channel:
            queue = await self._passive_queue(channel, name)
            while len(found) < limit:
                message = await queue.get(no_ack=False, fail=False, timeout=_GET_TIMEOUT)
                if message is None:
                    break
                found.append(
                    describe_quarantined(
                        message.message_id or "", message.headers or {}, message.routing_key or "", len(message.body)
                    )
                )
        return found

    async def redrive(self, message_id: str) -> bool:
        """Scan the quarantine holding each message unacked; republish the match to its
        recipient's inbox (confirmed), then ack it. A crash in between can only duplicate
        (receivers de-duplicate by id), never lose; the rest returns on channel close."""
        agency = self.config.own_agency()
        name = self.config.quarantine_queue(agency)
        async with self._temporary_channel() as channel:
            queue = await self._passive_queue(channel, name)
            for _ in range(self.config.redrive_scan_limit):
                message = await queue.get(no_ack=False, fail=False, timeout=_GET_TIMEOUT)
                if message is None:
                    return False
                if message.message_id != message_id:
                    continue
                headers = message.headers or {}
                check_redrivable(message_id, headers)
                # Back to our own inbox, whatever the headers say: this quarantine only holds
                # what our inbox received, and a message the broker dead-lettered still carries
                # the headers its publisher wrote (an x-original-recipient naming another agency
                # would otherwise be re-sent there with our broker rights).
                await self._publish_confirmed(
                    self._exchange, message_id, message.body, redrive_wire_headers(headers, agency), agency,
                )
                await message.ack()
                log.info("transport.redriven", message_id=message_id, recipient=agency)
                return True
        return False

    async def _passive_queue(self, channel: AbstractChannel, name: str) -> AbstractQueue:
        try:
            return await channel.declare_queue(name, passive=True)
        except aiormq.exceptions.ChannelNotFoundEntity as exc:
            raise TopologyError(f"queue {name!r} does not exist") from exc


__all__ = ["AmqpTransport"]


async def delete_topology(url: str, config: TransportConfig) -> None:
    """Delete the exchanges and agency queues named by ``config`` (demo and test clean-up only)."""
    connection = await aio_pika.connect(url, timeout=config.connect_timeout)
    async with connection:
        channel = await connection.channel()
        # The directory feed's names share the queue prefix the inbox names carry.
        queue_prefix = config.inbox_prefix.removesuffix("inbox.")
        for agency in config.topology_agencies():
            await channel.queue_delete(config.inbox(agency))
            await channel.queue_delete(config.quarantine_queue(agency))
            await channel.queue_delete(FeedNames.for_agency(config.exchange, queue_prefix, agency, declare=False).queue)
        for exchange in (config.exchange, config.dead_letter_exchange, config.exchange + ".directory"):
            await channel.exchange_delete(exchange)
