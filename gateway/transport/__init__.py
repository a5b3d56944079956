"""Message transport between agency gateways: a small interface, an in-memory stand-in
(demo, unit tests) and the RabbitMQ edge. See ``base`` for the guarantees."""

from typing import TYPE_CHECKING, Any

from gateway.transport.base import (
    Delivery,
    Disposition,
    Handler,
    OutgoingMessage,
    PublishRejectedError,
    QuarantinedMessage,
    TopologyError,
    Transport,
    TransportConfig,
    TransportError,
    TransportUnavailableError,
    UnroutableMessageError,
    WireMessage,
)
from gateway.transport.memory import MemoryBroker, MemoryTransport

__all__ = [
    "AmqpTransport",
    "Delivery",
    "Disposition",
    "Handler",
    "MemoryBroker",
    "MemoryTransport",
    "OutgoingMessage",
    "PublishRejectedError",
    "QuarantinedMessage",
    "TopologyError",
    "Transport",
    "TransportConfig",
    "TransportError",
    "TransportUnavailableError",
    "UnroutableMessageError",
    "WireMessage",
    "delete_topology",
]

if TYPE_CHECKING:
    from gateway.transport.amqp import AmqpTransport, delete_topology


def __getattr__(name: str) -> Any:
    """The RabbitMQ edge on first use: the in-memory transport must not load aio-pika."""
    if name in {"AmqpTransport", "delete_topology"}:
        from gateway.transport import amqp

        return getattr(amqp, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
