"""Audit checkpoints exchanged between gateways: a partner keeps them and notices a rewrite."""

from __future__ import annotations

import dataclasses
import json

from gateway.audit import merkle
from gateway.audit.checkpoint import sign_checkpoint
from gateway.b64 import b64url_encode
from gateway.schema import load_example
from gateway.service import Actor

from testkit.gateway_pair import NIGER, NIGERIA, deliver_sealed, eventually, gateway_pair

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
        payload = {**note, "consistency": [{
            "from_size": honest.tree_size, "from_root": b64url_encode(honest.root_hash),
            "proof": [b64url_encode(h) for h in merkle.consistency_proof(hashes + [bytes([7]) * 32], honest.tree_size)]}]}
        header, envelope = await deliver_sealed(ne, ng, "audit.checkpoint", payload, case_ref="audit-log")

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
        header, envelope = await deliver_sealed(ne, ng, "audit.checkpoint", note, case_ref="audit-log")
        events = [(e.event_type, e.detail_json) for e in await ng.store.read_audit(1, 1000)]
        assert any(t == "audit.checkpoint_rejected" and "checkpoint_wrong_origin" in d for t, d in events)
        assert await ng.store.latest_checkpoint(NIGER) is None


async def test_a_partner_that_missed_checkpoints_still_links_the_next_one(tmp_path) -> None:
    async with gateway_pair(tmp_path, checkpoint_interval_seconds=0, audit_partners=(NIGERIA,)) as (ne, ng):
        sizes = []
        for n in range(4):
            await ne.submit("referral.request", load_example("referral.request"), recipient=NIGERIA,
                            case_ref=f"ne-ng-checkpoint1{n}", actor=WORKER)
            if n in (1, 2):  # these two never reach NG (say they expired while NG was down)
                ne.settings = dataclasses.replace(ne.settings, audit_partners=())
            record = await ne.checkpoint_and_share()
            ne.settings = dataclasses.replace(ne.settings, audit_partners=(NIGERIA,))
            sizes.append(record.tree_size)
            if n == 0:  # NG's receipt for it is back: NE knows NG holds this one
                await _partner_has(ng, record.tree_size)
                sent = (await ne.store.list_outgoing_for_case("audit-log"))[0]

                async def receipted() -> bool:
                    return (await ne.store.get_outgoing(sent.message_id)).status == "delivered"
                await eventually(receipted)
        await _partner_has(ng, sizes[-1])
        received = [json.loads(e.detail_json) for e in await ng.store.read_audit(1, 1000)
                    if e.event_type == "audit.checkpoint_received"]
        assert [(r["tree_size"], r["linked_to"]) for r in received] == [(sizes[0], None), (sizes[3], sizes[0])]


async def test_a_rewrite_proved_only_from_a_checkpoint_the_partner_never_saw_is_a_gap(tmp_path) -> None:
    async with gateway_pair(tmp_path, checkpoint_interval_seconds=0, audit_partners=(NIGERIA,)) as (ne, ng):
        await ne.submit("referral.request", load_example("referral.request"), recipient=NIGERIA,
                        case_ref="ne-ng-checkpoint21", actor=WORKER)
        held = await ne.checkpoint_and_share()
        await _partner_has(ng, held.tree_size)
        # A rewritten log, with a (valid) proof from a smaller size NG never held.
        hashes = await ne.audit_log.leaf_hashes(held.tree_size)
        hashes[0] = bytes(32)
        hashes += [bytes([9]) * 32]
        root = merkle.root(hashes)
        note = json.loads(sign_checkpoint(ne.identity, len(hashes), root, ne.clock()))
        small = 2
        payload = {**note, "consistency": [{"from_size": small, "from_root": b64url_encode(merkle.root(hashes[:small])),
                                            "proof": [b64url_encode(h) for h in merkle.consistency_proof(hashes, small)]}]}
        header, envelope = await deliver_sealed(ne, ng, "audit.checkpoint", payload, case_ref="audit-log")
        gaps = [json.loads(e.detail_json) for e in await ng.store.read_audit(1, 1000)
                if e.event_type == "audit.checkpoint_gap"]
        assert gaps == [{"origin": NIGER, "tree_size": len(hashes), "latest_held": held.tree_size}]


async def test_checkpoint_traffic_alone_does_not_make_new_checkpoints(tmp_path) -> None:
    async with gateway_pair(tmp_path, checkpoint_interval_seconds=0, audit_partners=(NIGERIA,)) as (ne, ng):
        header = await ne.submit("referral.request", load_example("referral.request"), recipient=NIGERIA,
                                 case_ref="ne-ng-checkpoint31", actor=WORKER)

        async def delivered() -> bool:
            return (await ne.store.get_outgoing(header.id)).status == "delivered"
        await eventually(delivered)
        first = await ne.checkpoint_and_share()
        await _partner_has(ng, first.tree_size)

        async def receipted() -> bool:  # the checkpoint message and its receipt add entries at NE
            sent = (await ne.store.list_outgoing_for_case("audit-log"))[0]
            return (await ne.store.get_outgoing(sent.message_id)).status == "delivered"
        await eventually(receipted)
        assert await ne.store.audit_size() > first.tree_size
        assert await ne.checkpoint_and_share() is None
