"""Message transport between agency gateways: a small interface, an in-memory stand-in
(demo, unit tests) and the RabbitMQ edge. See ``base`` for the guarantees."""

from gateway.transport.amqp import AmqpTransport, delete_topology
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
    "delete_topology",
]
