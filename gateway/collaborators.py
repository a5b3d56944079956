"""What the flows (withdrawal, retention, checkpoint exchange) get from the Gateway besides
the store: the callables that seal-and-queue a message, make an audit entry and read a
stored payload. Typed here so each flow names exactly what it uses."""

from __future__ import annotations

from typing import Any, Awaitable, Callable, Protocol

from gateway.actors import Actor
from gateway.envelope import Header
from gateway.store.base import AuditEntry, InboxRecord


class Submit(Protocol):
    """Validate, seal and queue a message in the outbox (``Gateway.submit``)."""

    async def __call__(
        self,
        message_type: str,
        payload: dict[str, Any],
        *,
        recipient: str,
        case_ref: str,
        actor: Actor,
        in_reply_to: str | None = None,
        message_id: str | None = None,
    ) -> Header: ...


class MakeEntry(Protocol):
    """An audit entry about a message (``header``) or, without one, about a case or an agency
    (``Gateway.entry``)."""

    def __call__(
        self,
        event: str,
        actor: Actor,
        header: Header | None,
        detail: dict[str, Any],
        *,
        agency: str | None = None,
        case_ref: str | None = None,
    ) -> AuditEntry: ...


#: The decrypted payload of a received message as stored (raises PayloadShreddedError or
#: AtRestError when it can no longer be read).
ReadPayload = Callable[[InboxRecord], Awaitable[dict[str, Any]]]


#: Replace the sealed body of an outbox message by its digest record (``Gateway.delete_outgoing_body``):
#: message id and reason code; True if deleted now.
DeleteBody = Callable[[str, str], Awaitable[bool]]
