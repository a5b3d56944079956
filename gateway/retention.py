"""Retention: received messages past their retention period (per message type) are made
unreadable by destroying their message keys (docs/consent.md, "Retention")."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog

from gateway.actors import SYSTEM_ACTOR
from gateway.at_rest import CONTROL_TYPES
from gateway.metrics import Metrics
from gateway.schema import MESSAGE_TYPES
from gateway.store.base import AuditEntry, InboxRecord, Store

log = structlog.get_logger("gateway.retention")
PAGE = 500


def retained_types(message_types: Iterable[str] = MESSAGE_TYPES) -> list[str]:
    """The message types retention applies to: those carrying personal data under a message
    key (control traffic has neither)."""
    return [t for t in message_types if t not in CONTROL_TYPES]


def retention_cutoff(now: datetime, days: int) -> datetime:
    """Messages received before this moment are past a retention period of ``days``."""
    return now - timedelta(days=days)


def shred_entries(due: Iterable[InboxRecord], message_type: str, now: datetime) -> list[AuditEntry]:
    """One ``data.shredded`` audit entry per message, written in the transaction that destroys its key."""
    return [AuditEntry(at=now, event_type="data.shredded", actor=SYSTEM_ACTOR.name, case_ref=r.case_ref,
                       message_id=r.message_id, agency=r.sender,
                       detail_json=json.dumps({"reason": "retention", "type": message_type}, sort_keys=True))
            for r in due]


@dataclass(frozen=True)
class Retention:
    """One retention pass over the store; ``retention_days`` gives each type's period (settings)."""

    store: Store
    clock: Callable[[], datetime]
    retention_days: Callable[[str], int]
    metrics: Metrics

    async def apply(self) -> int:
        """Destroy the keys of received messages past their retention period; return how many."""
        now, total = self.clock(), 0
        # Idempotency-Key records past the message lifetime (gateway/api/idempotency.py) go with the same pass.
        if pruned := await self.store.prune_idempotency_keys(now):
            log.info("idempotency.pruned", keys=pruned)
        for message_type in retained_types():
            cutoff = retention_cutoff(now, self.retention_days(message_type))
            while True:
                due = await self.store.retention_due(message_type, cutoff, PAGE)
                if not due:
                    break
                entries = shred_entries(due, message_type, now)
                shredded = await self.store.shred_data_keys([r.message_id for r in due], "retention", now,
                                                            audit=entries)
                total += len(shredded)
                if len(shredded) < len(due):
                    break  # someone else shredded some meanwhile; the next pass picks up the rest
        if total:
            log.info("retention.applied", shredded=total)
            self.metrics.inc("retention_shredded_total", total)
        return total
