"""Retention: received messages past their retention period (per message type) are made
unreadable by destroying their message keys (docs/consent.md, "Retention")."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import TYPE_CHECKING

import structlog

from gateway.at_rest import CONTROL_TYPES
from gateway.schema import MESSAGE_TYPES
from gateway.store import AuditEntry

if TYPE_CHECKING:
    from gateway.service import Gateway

log = structlog.get_logger("gateway.retention")
PAGE = 500


async def apply_retention(gw: "Gateway") -> int:
    """Destroy the keys of received messages past their retention period; return how many."""
    now, total = gw.clock(), 0
    # Idempotency-Key records past the message lifetime (gateway/api/idempotency.py) go with the same pass.
    if pruned := await gw.store.prune_idempotency_keys(now):
        log.info("idempotency.pruned", keys=pruned)
    for message_type in MESSAGE_TYPES:
        if message_type in CONTROL_TYPES:
            continue  # no personal data, no message key
        cutoff = now - timedelta(days=gw.settings.retention_for(message_type))
        while True:
            due = await gw.store.retention_due(message_type, cutoff, PAGE)
            if not due:
                break
            # One audit entry per message, written in the transaction that destroys its key.
            entries = [AuditEntry(at=now, event_type="data.shredded", actor="system", case_ref=r.case_ref,
                                  message_id=r.message_id, agency=r.sender,
                                  detail_json=json.dumps({"reason": "retention", "type": message_type}, sort_keys=True))
                       for r in due]
            shredded = await gw.store.shred_data_keys([r.message_id for r in due], "retention", now, audit=entries)
            total += len(shredded)
            if len(shredded) < len(due):
                break  # someone else shredded some meanwhile; the next pass picks up the rest
    if total:
        log.info("retention.applied", shredded=total)
        gw.metrics.inc("retention_shredded_total", total)
    return total
