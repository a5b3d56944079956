"""Audit checkpoints exchanged between gateways: a partner keeps them and notices a rewrite."""

from __future__ import annotations

import json

from gateway.audit import merkle
from gateway.audit.checkpoint import sign_checkpoint
from gateway.b64 import b64url_encode
from gateway.envelope import seal
from gateway.schema import load_example
from gateway.service import Actor
from gateway.transport import Delivery

from .gateway_pair import NIGER, NIGERIA, eventually, gateway_pair

WORKER = Actor("amina.caseworker", "caseworker")


async def _partner_has(ng, size):
    async def check():
        latest = await ng.store.latest_checkpoint(NIGER)
        return latest is not None and latest.tree_size >= size
    await eventually(check)


async def test_partner_stores_consistent_checkpoints(tmp_path) -> None:
    async with gateway_pair(tmp_path, checkpoint_interval_seconds=0, audit_partners=(NIGERIA,)) as (ne, ng):
        await ne.submit("referral.request", load_example("referral.request"), recipient=NIGERIA,
                        case_ref="ne-ng-checkpoint01", actor=WORKER)
        first = await ne.checkpoint_and_share()
        await _partner_has(ng, first.tree_size)
        await ne.submit("referral.request", load_example("referral.request"), recipient=NIGERIA,
                        case_ref="ne-ng-checkpoint02", actor=WORKER)
        second = await ne.checkpoint_and_share()
        assert second.tree_size > first.tree_size
        await _partner_has(ng, second.tree_size)

        stored = await ng.store.list_checkpoints(NIGER)
        assert [(c.tree_size, c.root_hash) for c in stored] == [
            (first.tree_size, first.root_hash), (second.tree_size, second.root_hash)]
        assert stored[-1].note == second.note  # the exact signed bytes, verifiable offline
        events = [e.event_type for e in await ng.store.read_audit(1, 1000)]
        assert events.count("audit.checkpoint_received") == 2 and "audit.fork_detected" not in events
        # The root matches NE's own log.
        assert second.root_hash == merkle.root(await ne.audit_log.leaf_hashes(second.tree_size))


async def test_rewritten_history_is_detected_by_the_partner(tmp_path) -> None:
    async with gateway_pair(tmp_path, checkpoint_interval_seconds=0, audit_partners=(NIGERIA,)) as (ne, ng):
        await ne.submit("referral.request", load_example("referral.request"), recipient=NIGERIA,
                        case_ref="ne-ng-checkpoint03", actor=WORKER)
        honest = await ne.checkpoint_and_share()
        await _partner_has(ng, honest.tree_size)

        # NE "rewrites" its log: a new checkpoint whose tree does not extend the one it signed.
        hashes = await ne.audit_log.leaf_hashes(honest.tree_size)
        hashes[0] = bytes(32)  # the first entry replaced
        forged_root = merkle.root(hashes + [bytes([7]) * 32])
        note = json.loads(sign_checkpoint(ne.identity, honest.tree_size + 1, forged_root, ne.clock()))
        payload = {**note, "consistency": {
            "from_size": honest.tree_size, "from_root": b64url_encode(honest.root_hash),
            "proof": [b64url_encode(h) for h in merkle.consistency_proof(hashes + [bytes([7]) * 32], honest.tree_size)]}}
        header, envelope = seal(payload, message_type="audit.checkpoint", sender=ne.identity, recipient=NIGERIA,
                                directory=ne.directory, case_ref="audit-log", now=ne.clock())
        await ng.handle_delivery(Delivery(header.id, NIGER, NIGERIA, envelope, {}, False))

        forks = [e for e in await ng.store.read_audit(1, 1000) if e.event_type == "audit.fork_detected"]
        assert len(forks) == 1
        assert json.loads(forks[0].detail_json)["problems"] == ["consistency_proof_invalid"]
        assert ng.metrics.value("audit_fork_detected_total", origin=NIGER) == 1
        # The evidence is kept: both signed checkpoints are in NG's store.
        assert {c.tree_size for c in await ng.store.list_checkpoints(NIGER)} == {honest.tree_size, honest.tree_size + 1}


async def test_checkpoint_signed_by_someone_else_is_rejected(tmp_path) -> None:
    async with gateway_pair(tmp_path, checkpoint_interval_seconds=0) as (ne, ng):
        # NG's own key signs a checkpoint claiming to be NE's: the origin does not match the sender.
        note = json.loads(sign_checkpoint(ng.identity, 1, bytes(32), ng.clock()))
        header, envelope = seal(note, message_type="audit.checkpoint", sender=ne.identity, recipient=NIGERIA,
                                directory=ne.directory, case_ref="audit-log", now=ne.clock())
        await ng.handle_delivery(Delivery(header.id, NIGER, NIGERIA, envelope, {}, False))
        events = [(e.event_type, e.detail_json) for e in await ng.store.read_audit(1, 1000)]
        assert any(t == "audit.checkpoint_rejected" and "checkpoint_wrong_origin" in d for t, d in events)
        assert await ng.store.latest_checkpoint(NIGER) is None
