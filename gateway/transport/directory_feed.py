"""The authority's directory feed over the broker: a fanout exchange, one durable queue per gateway.

The authority publishes each signed directory (persistent, confirmed, ``mandatory``) to the
fanout exchange ``<exchange>.directory``; every agency's queue ``directory.<AGENCY>`` is bound
to it, so a gateway that was down during a publish finds the directory waiting in its queue
when it comes back. The broker is only the courier: the gateway verifies the signature and
the serial of every file it takes (gateway/directory_updates.py). See docs/keys.md
"Distribution" and deploy/rabbitmq/README.md.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Protocol

import structlog

from gateway.transport.base import (
    TopologyError,
    TransportUnavailableError,
    UnroutableMessageError,
    check_agency_id,
)
from gateway.transport.memory import MemoryBroker, _Message

log = structlog.get_logger("gateway.transport.directory_feed")

#: Called with the bytes of each published directory. Returning acks it; raising returns it
#: to the queue (after a pause) so a store outage loses no update.
DirectoryHandler = Callable[[bytes], Awaitable[object]]

#: Pause before a directory whose handling failed is returned to the queue, doubled after
#: each failure in a row up to RETRY_MAX_SECONDS: a long store outage then costs few
#: redeliveries (a quorum queue's delivery limit, deploy/rabbitmq/README.md).
RETRY_SECONDS = 2.0
RETRY_MAX_SECONDS = 300.0


class RetryDelay:
    """The pause before returning a directory whose handling failed: doubles, reset on success."""

    def __init__(self) -> None:
        self.failures = 0

    def next(self) -> float:
        """The pause for one more failure in a row."""
        self.failures += 1
        return min(RETRY_SECONDS * 2 ** (self.failures - 1), RETRY_MAX_SECONDS)

    def reset(self) -> None:
        """A directory was handled: the next failure starts from RETRY_SECONDS again."""
        self.failures = 0


@dataclass(frozen=True)
class FeedNames:
    """The exchange the authority publishes to and this agency's queue on it."""

    exchange: str
    queue: str
    declare_topology: bool = False

    @classmethod
    def for_agency(cls, exchange: str, queue_prefix: str, agency_id: str, *, declare: bool) -> "FeedNames":
        """``<exchange>.directory`` and ``<prefix>directory.<agency_id>``."""
        check_agency_id(agency_id)
        return cls(exchange + ".directory", f"{queue_prefix}directory.{agency_id}", declare)


class DirectoryFeed(Protocol):
    """Consumes this agency's directory queue."""

    async def start(self, handler: DirectoryHandler) -> None: ...

    async def close(self) -> None: ...


async def _handle(handler: DirectoryHandler, body: bytes, delay: RetryDelay) -> bool:
    """True if the directory was handled (ack); False to return it to the queue.

    Every publication goes to the handler, oversize ones too: the keeper refuses and audits
    them (gateway/directory_updates.py) without parsing."""
    try:
        await handler(body)
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # noqa: BLE001 - requeue, never drop, a directory we could not handle
        pause = delay.next()
        log.warning("directory_feed.handler_failed", error=getattr(exc, "code", type(exc).__name__),
                    retry_in=pause, failures=delay.failures)
        await asyncio.sleep(pause)
        return False
    delay.reset()
    return True


# --- RabbitMQ ------------------------------------------------------------------------------


class AmqpDirectoryFeed:
    """The feed on RabbitMQ: its own robust connection, prefetch 1 (directories one at a time)."""

    def __init__(self, url: str, names: FeedNames, *, connection_name: str = "referral-gateway directory") -> None:
        self._url = url
        self.names = names
        self._connection_name = connection_name
        self._connection: Any = None

    async def start(self, handler: DirectoryHandler) -> None:
        """Connect, check (or declare) the exchange and queue, and consume."""
        import aio_pika
        import aiormq.exceptions
        from aio_pika.abc import AbstractIncomingMessage, ExchangeType

        try:
            self._connection = await aio_pika.connect_robust(
                self._url, client_properties={"connection_name": self._connection_name})
        except (aio_pika.exceptions.AMQPError, OSError, asyncio.TimeoutError) as exc:
            raise TransportUnavailableError(f"cannot connect to the broker for the directory feed: "
                                            f"{type(exc).__name__}") from exc
        channel = await self._connection.channel()
        await channel.set_qos(prefetch_count=1)
        passive = not self.names.declare_topology
        try:
            if passive:
                queue = await channel.declare_queue(self.names.queue, durable=True, passive=True)
            else:
                exchange = await channel.declare_exchange(self.names.exchange, ExchangeType.FANOUT, durable=True)
                queue = await channel.declare_queue(self.names.queue, durable=True,
                                                    arguments={"x-queue-type": "quorum"})
                await queue.bind(exchange)
        except aiormq.exceptions.AMQPChannelError as exc:
            await self.close()
            raise TopologyError(f"directory queue {self.names.queue} missing or not permitted: {exc}") from exc

        delay = RetryDelay()

        async def on_message(message: AbstractIncomingMessage) -> None:
            if await _handle(handler, message.body, delay):
                await message.ack()
            else:
                await message.nack(requeue=True)

        await queue.consume(on_message, no_ack=False)
        log.info("directory_feed.consuming", queue=self.names.queue)

    async def close(self) -> None:
        """Close the feed's connection (an unacked directory returns to the queue)."""
        connection, self._connection = self._connection, None
        if connection is not None and not connection.is_closed:
            await connection.close()


async def publish_directory_amqp(url: str, exchange: str, signed: bytes) -> None:
    """Publish a signed directory to the fanout exchange, confirmed and ``mandatory``."""
    import aio_pika
    import aiormq.exceptions
    from aio_pika.abc import DeliveryMode

    try:
        connection = await aio_pika.connect(url, client_properties={"connection_name": "directory authority"})
    except (aio_pika.exceptions.AMQPError, OSError, asyncio.TimeoutError) as exc:
        raise TransportUnavailableError(f"cannot connect to the broker: {type(exc).__name__}") from exc
    try:
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        try:
            target = await channel.get_exchange(exchange, ensure=True)
        except aiormq.exceptions.AMQPChannelError as exc:
            raise TopologyError(f"exchange {exchange!r} missing or not permitted: {exc}") from exc
        message = aio_pika.Message(signed, delivery_mode=DeliveryMode.PERSISTENT, message_id=str(uuid.uuid4()),
                                   content_type="application/json")
        try:
            await target.publish(message, routing_key="", mandatory=True)
        except aio_pika.exceptions.DeliveryError as exc:
            raise UnroutableMessageError(f"no gateway queue is bound to {exchange!r}: nothing received it") from exc
        except aiormq.exceptions.AMQPChannelError as exc:
            # e.g. ACCESS_REFUSED: this broker user may not publish directories.
            raise TopologyError(f"the broker refused the publish to {exchange!r}: {exc}") from exc
    finally:
        await connection.close()


# --- in process (demo, tests) ----------------------------------------------------------------


class MemoryDirectoryFeed:
    """The feed on the in-process broker (fanout: every queue bound with the empty key)."""

    def __init__(self, broker: MemoryBroker, names: FeedNames) -> None:
        self.broker = broker
        self.names = names
        self._task: asyncio.Task[None] | None = None

    async def start(self, handler: DirectoryHandler) -> None:
        """Declare the exchange and queue (always: it is the test double) and consume."""
        self.broker.declare_exchange(self.names.exchange, passive=False)
        self.broker.declare_queue(self.names.queue, passive=False)
        self.broker.bind(self.names.queue, self.names.exchange, "")
        self._task = asyncio.create_task(self._consume(handler), name=f"directory-feed {self.names.queue}")

    async def _consume(self, handler: DirectoryHandler) -> None:
        delay = RetryDelay()
        while True:
            tag, message = await self.broker.take(self.names.queue)
            try:
                handled = await _handle(handler, message.body, delay)
            except BaseException:
                self.broker.give_back(self.names.queue, tag)
                raise
            if handled:
                self.broker.ack(self.names.queue, tag)
            else:
                self.broker.give_back(self.names.queue, tag)

    async def close(self) -> None:
        """Stop consuming; an unacked directory returns to the queue."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


def publish_directory_memory(broker: MemoryBroker, exchange: str, signed: bytes) -> None:
    """Publish a signed directory on the in-process broker (demo, tests)."""
    broker.publish(exchange, "", _Message(str(uuid.uuid4()), signed, {}, ""))
