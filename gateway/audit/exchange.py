"""Checkpoint exchange between gateways: each partner keeps our signed checkpoints and checks
that every new one extends the last one it holds, so a rewritten history is detectable
by the other country. See docs/audit.md, "Checkpoint exchange between gateways".

Sending: with each new checkpoint go consistency proofs from a few earlier checkpoints
(the previous one, then 2, 4, 8, ... back), so a partner that missed some (expired while
its gateway was down) can still link the new one to the last one it holds.

Receiving: the checkpoint's signature (origin = sender, not from the future), every
proof, and the roots we hold at the same sizes are checked. A proof that fails or a root
that differs is a fork (``audit.fork_detected``); a new checkpoint no proof links to our
latest one is a gap (``audit.checkpoint_gap``), reported but not called a fork.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog

from gateway.actors import SYSTEM_ACTOR
from gateway.audit import merkle
from gateway.audit.checkpoint import CheckpointError, parse_checkpoint, to_record, verify_checkpoint
from gateway.audit.log import AuditLog
from gateway.b64 import b64url_decode, b64url_encode
from gateway.canonical import canonical_bytes
from gateway.collaborators import MakeEntry, Submit
from gateway.directory import Directory
from gateway.envelope import OpenedMessage
from gateway.message_ids import derived_message_id
from gateway.metrics import Metrics
from gateway.store.base import CheckpointRecord, Store

log = structlog.get_logger("gateway.audit.exchange")

#: Case pseudonym of checkpoint messages (they belong to no case); checkpoint traffic is
#: recognised by it, so it alone never triggers another checkpoint.
AUDIT_CASE = "audit-log"
MAX_PROOFS = 16
#: How many earlier checkpoints to look through for the partner's last confirmed one.
LOOKBACK = 256
#: Outbox statuses that mean the partner's gateway stored the message (its receipt came back).
CONFIRMED = frozenset({"delivered", "read", "accepted", "declined", "more_info_requested"})


def _spaced(count: int) -> list[int]:
    """Indexes 0, 1, 3, 7, 15, ... below ``count`` (newest first): the previous checkpoint,
    then ones 2, 4, 8, ... back, at most MAX_PROOFS."""
    picked: list[int] = []
    step = 1
    while step - 1 < count and len(picked) < MAX_PROOFS:
        picked.append(step - 1)
        step *= 2
    return picked


def checkpoint_message_id(agency_id: str, size: int, root: bytes, partner: str) -> str:
    """The id of our checkpoint message of this size and root to ``partner`` (one per pair)."""
    return derived_message_id("checkpoint", agency_id, str(size), b64url_encode(root), partner)


def is_gap(latest: CheckpointRecord | None, tree_size: int, proven: Mapping[int, bytes]) -> bool:
    """True if a new checkpoint of ``tree_size`` is larger than the ``latest`` one we hold but
    no valid proof (``proven``: from-size → from-root) links it to that one."""
    return latest is not None and latest.tree_size < tree_size and proven.get(latest.tree_size) != latest.root_hash


def linked_to(latest: CheckpointRecord | None, tree_size: int) -> int | None:
    """The size of the checkpoint a consistent new one of ``tree_size`` extends, if any."""
    return latest.tree_size if latest is not None and latest.tree_size < tree_size else None


@dataclass(frozen=True)
class CheckpointExchange:
    """Sharing our checkpoints with ``partners`` and checking theirs, with what it needs from
    the gateway passed in."""

    store: Store
    audit_log: AuditLog
    directory: Directory
    agency_id: str
    partners: tuple[str, ...]
    submit: Submit
    entry: MakeEntry
    metrics: Metrics

    async def share(self) -> CheckpointRecord | None:
        """Sign a checkpoint if the log grew by more than checkpoint traffic, and send it to every partner."""
        if not await self._grew_beyond_checkpoint_traffic():
            return None
        record = await self.audit_log.checkpoint()
        if record is None or not self.partners:
            return record
        cp = parse_checkpoint(record.note)
        doc = json.loads(record.note)
        earlier = [c for c in await self.store.list_checkpoints(self.agency_id, newest_first=True,
                                                                limit=2 ** MAX_PROOFS)
                   if 0 < c.tree_size < cp.tree_size]
        spaced = [earlier[i] for i in _spaced(len(earlier))]
        for partner in self.partners:
            message_id = checkpoint_message_id(self.agency_id, cp.tree_size, cp.root_hash, partner)
            if await self.store.get_outgoing(message_id) is not None:
                continue
            # The newest checkpoint this partner confirmed storing (its receipt came back) is the
            # one it will compare with; the spaced ones cover checkpoints still in flight.
            confirmed = await self._last_confirmed(earlier, partner)
            picked = ([confirmed] if confirmed is not None else []) + [c for c in spaced if c is not confirmed]
            payload: dict[str, Any] = {"checkpoint": doc["checkpoint"], "signature": doc["signature"]}
            if picked:
                payload["consistency"] = [
                    {"from_size": c.tree_size, "from_root": b64url_encode(c.root_hash),
                     "proof": [b64url_encode(h)
                               for h in await self.audit_log.consistency_proof(c.tree_size, cp.tree_size)]}
                    for c in picked[:MAX_PROOFS]
                ]
            await self.submit("audit.checkpoint", payload, recipient=partner, case_ref=AUDIT_CASE,
                              actor=SYSTEM_ACTOR, message_id=message_id)
        return record

    async def _last_confirmed(self, earlier: list[CheckpointRecord], partner: str) -> CheckpointRecord | None:
        for c in earlier[:LOOKBACK]:
            sent = await self.store.get_outgoing(checkpoint_message_id(self.agency_id, c.tree_size, c.root_hash,
                                                                       partner))
            if sent is not None and sent.status in CONFIRMED:
                return c
        return None

    async def receive(self, opened: OpenedMessage, received_at: datetime) -> None:
        """Check and keep a partner's checkpoint; audit a fork or a gap."""
        header, payload = opened.header, opened.payload
        note = canonical_bytes({"checkpoint": payload["checkpoint"], "signature": payload["signature"]})
        try:
            cp = verify_checkpoint(note, self.directory, expected_origin=header.sender, now=received_at)
        except CheckpointError as exc:
            await self.store.append_audit(self.entry("audit.checkpoint_rejected", SYSTEM_ACTOR, header,
                                                     {"reason": exc.code}))
            return
        if await self._holds(cp.origin, cp.tree_size, cp.root_hash):
            return  # a redelivery: checked and recorded before
        problems: list[str] = []
        proofs: dict[int, bytes] = {}
        for item in payload.get("consistency", []):
            from_root = b64url_decode(item["from_root"])
            proof = [b64url_decode(h) for h in item["proof"]]
            if not merkle.verify_consistency(item["from_size"], cp.tree_size, from_root, cp.root_hash, proof):
                problems.append("consistency_proof_invalid")
                continue
            proofs[item["from_size"]] = from_root
            held = await self._held_at(cp.origin, item["from_size"])
            if any(c.root_hash != from_root for c in held):
                problems.append("previous_root_differs")
        if any(c.root_hash != cp.root_hash for c in await self._held_at(cp.origin, cp.tree_size)):
            problems.append("root_differs_at_same_size")
        latest = await self.store.latest_checkpoint(cp.origin)
        gap = is_gap(latest, cp.tree_size, proofs)
        await self.store.add_checkpoint(to_record(cp, note, received_at))  # kept even when inconsistent: evidence
        detail: dict[str, Any] = {"origin": cp.origin, "tree_size": cp.tree_size}
        if problems:
            await self.store.append_audit(self.entry("audit.fork_detected", SYSTEM_ACTOR, header,
                                                     {**detail, "problems": sorted(set(problems))}))
            self.metrics.inc("audit_fork_detected_total", origin=cp.origin)
            log.error("audit.fork_detected", origin=cp.origin, tree_size=cp.tree_size,
                      problems=sorted(set(problems)))
        elif gap:
            # Not provably a fork (we may have missed checkpoints), not provably consistent either.
            await self.store.append_audit(self.entry("audit.checkpoint_gap", SYSTEM_ACTOR, header,
                                                     {**detail, "latest_held": latest.tree_size if latest else 0}))
            self.metrics.inc("audit_checkpoint_gaps_total", origin=cp.origin)
        else:
            await self.store.append_audit(self.entry("audit.checkpoint_received", SYSTEM_ACTOR, header,
                                                     {**detail, "linked_to": linked_to(latest, cp.tree_size)}))

    async def _held_at(self, origin: str, size: int) -> list[CheckpointRecord]:
        return [c for c in await self.store.list_checkpoints(origin, min_size=size, limit=64) if c.tree_size == size]

    async def _holds(self, origin: str, size: int, root: bytes) -> bool:
        return any(c.root_hash == root for c in await self._held_at(origin, size))

    async def _grew_beyond_checkpoint_traffic(self) -> bool:
        latest = await self.store.latest_checkpoint(self.agency_id)
        size = await self.store.audit_size()
        if latest is None:
            return size > 0
        seq = latest.tree_size + 1
        while seq <= size:
            page = await self.store.read_audit(seq, 1000)
            if not page:
                return False
            if any(e.case_ref != AUDIT_CASE for e in page):
                return True
            seq = page[-1].seq + 1
        return False
