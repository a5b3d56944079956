"""Message transport between agency gateways: a small interface, an in-memory stand-in
(demo, unit tests) and the RabbitMQ edge. See ``base`` for the guarantees.

The RabbitMQ edge (``AmqpTransport``, ``delete_topology``) is loaded on first use, so the
in-memory transport and the interface never import aio_pika."""

import importlib
from typing import TYPE_CHECKING

from gateway.transport.base import (
    Delivery,
    Disposition,
    Handler,
    OutgoingMessage,  # noqa: F401 - the former name of WireMessage, kept for code written against it
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

if TYPE_CHECKING:
    from gateway.transport.amqp import AmqpTransport, delete_topology

__all__ = [
    "AmqpTransport",
    "Delivery",
    "Disposition",
    "Handler",
    "MemoryBroker",
    "MemoryTransport",
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

_AMQP_NAMES = frozenset({"AmqpTransport", "delete_topology"})


def __getattr__(name: str) -> object:
    """The RabbitMQ edge's names, imported (with aio_pika) on first use."""
    if name in _AMQP_NAMES:
        return getattr(importlib.import_module("gateway.transport.amqp"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
