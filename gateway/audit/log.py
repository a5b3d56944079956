"""The gateway's audit log as a Merkle tree: signed checkpoints and proofs over the store.

Entries are appended by the service (one store transaction with the change they record,
which also stores the perfect subtrees the entry completes); this class only reads them.
Roots and proofs are assembled from O(log n) stored subtree hashes (one store read, at
most O(log n) hashing for the partial right edge), so a checkpoint or a proof costs the
same at a million entries as at ten. See docs/audit.md, "Tree and proofs".
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime
from typing import Callable, Sequence

from gateway.audit import merkle
from gateway.audit.checkpoint import parse_checkpoint, sign_checkpoint, to_record
from gateway.errors import GatewayError
from gateway.keys import AgencyIdentity
from gateway.store import CheckpointRecord, Store, StoreError

_PAGE = 10_000


class ProofRequestError(GatewayError):
    """A proof was asked for sizes or entries the log does not have."""

    code = "invalid_proof_request"


@dataclass(frozen=True)
class InclusionProof:
    """Entry ``seq`` (leaf ``seq - 1``) in the tree of ``tree_size``: its leaf hash, its
    audit path (leaf-side first) and the root it leads to."""

    seq: int
    tree_size: int
    leaf_hash: bytes
    proof: list[bytes]
    root_hash: bytes


@dataclass(frozen=True)
class ConsistencyProof:
    """The tree of ``first`` is a prefix of the tree of ``second``: the proof and both roots."""

    first: int
    second: int
    proof: list[bytes]
    first_root: bytes
    second_root: bytes


class AuditLog:
    """Checkpoints and proofs for one gateway's audit log."""

    def __init__(self, store: Store, identity: AgencyIdentity, clock: Callable[[], datetime]) -> None:
        self.store = store
        self.identity = identity
        self.clock = clock
        self._lock = asyncio.Lock()

    async def size(self) -> int:
        """Entries in the log now."""
        return await self.store.audit_size()

    async def checkpoint(self, *, force: bool = False) -> CheckpointRecord | None:
        """Sign and store a checkpoint if the log grew since the last one (or ``force``)."""
        async with self._lock:
            size = await self.store.audit_size()
            latest = await self.store.latest_checkpoint(self.identity.agency_id)
            if latest is not None and latest.tree_size >= size and not force:
                return None
            (root_hash,) = await self._range_roots([(0, size)])
            signed_at = self.clock().replace(microsecond=0)
            note = sign_checkpoint(self.identity, size, root_hash, signed_at)
            record = to_record(parse_checkpoint(note), note, self.clock())
            await self.store.add_checkpoint(record)
            return record

    async def latest(self) -> CheckpointRecord | None:
        """Our latest signed checkpoint."""
        return await self.store.latest_checkpoint(self.identity.agency_id)

    async def leaf_hashes(self, tree_size: int) -> list[bytes]:
        """The first ``tree_size`` leaf hashes, read from the store in pages (O(n): for
        exports and checks against the leaves, not for proofs)."""
        hashes: list[bytes] = []
        while len(hashes) < tree_size:
            page = await self.store.audit_hashes(len(hashes) + 1, min(_PAGE, tree_size - len(hashes)))
            if not page:
                break
            hashes.extend(page)
        if len(hashes) != tree_size:
            raise ProofRequestError(f"the log has {len(hashes)} entries, fewer than tree size {tree_size}")
        return hashes

    async def root(self, tree_size: int) -> bytes:
        """Root hash of the tree of the first ``tree_size`` entries."""
        (root_hash,) = await self._range_roots([(0, await self._size_ok(tree_size))])
        return root_hash

    async def inclusion(self, seq: int, tree_size: int) -> InclusionProof:
        """Leaf hash, audit path and root proving entry ``seq`` is in the tree of ``tree_size``."""
        await self._size_ok(tree_size)
        if isinstance(seq, bool) or not isinstance(seq, int) or not 1 <= seq <= tree_size:
            raise ProofRequestError(f"seq must be in 1..{tree_size}")
        path = merkle.inclusion_ranges(seq - 1, tree_size)
        leaf, *proof, root_hash = await self._range_roots([(seq - 1, seq), *path, (0, tree_size)])
        return InclusionProof(seq, tree_size, leaf, proof, root_hash)

    async def inclusion_proofs(self, seqs: Sequence[int], tree_size: int) -> dict[int, list[bytes]]:
        """Audit paths of several entries in the tree of ``tree_size``, from one store read."""
        await self._size_ok(tree_size)
        for seq in seqs:
            if isinstance(seq, bool) or not isinstance(seq, int) or not 1 <= seq <= tree_size:
                raise ProofRequestError(f"seq must be in 1..{tree_size}")
        paths = {seq: merkle.inclusion_ranges(seq - 1, tree_size) for seq in seqs}
        roots = iter(await self._range_roots([r for path in paths.values() for r in path]))
        return {seq: [next(roots) for _ in path] for seq, path in paths.items()}

    async def inclusion_proof(self, seq: int, tree_size: int) -> tuple[bytes, list[bytes]]:
        """(leaf hash, audit path) proving entry ``seq`` is in the tree of ``tree_size``."""
        found = await self.inclusion(seq, tree_size)
        return found.leaf_hash, found.proof

    async def consistency(self, first: int, second: int) -> ConsistencyProof:
        """RFC 9162 consistency proof between the trees of sizes ``first`` <= ``second``, with both roots."""
        await self._size_ok(second)
        if isinstance(first, bool) or not isinstance(first, int) or not 1 <= first <= second:
            raise ProofRequestError(f"first must be in 1..{second}")
        ranges = merkle.consistency_ranges(first, second)
        first_root, *proof, second_root = await self._range_roots([(0, first), *ranges, (0, second)])
        return ConsistencyProof(first, second, proof, first_root, second_root)

    async def consistency_proof(self, first: int, second: int) -> list[bytes]:
        """RFC 9162 consistency proof between the trees of sizes ``first`` <= ``second``."""
        return (await self.consistency(first, second)).proof

    async def _size_ok(self, tree_size: int) -> int:
        size = await self.store.audit_size()
        if isinstance(tree_size, bool) or not isinstance(tree_size, int) or not 0 <= tree_size <= size:
            raise ProofRequestError(f"tree_size must be in 0..{size}")
        return tree_size

    async def _range_roots(self, ranges: list[tuple[int, int]]) -> list[bytes]:
        """MTH of each leaf range (an empty one is the empty tree), from one store read of
        the perfect subtrees they are made of. Every range must lie within the log."""
        ids = {node_id for lo, hi in ranges if hi > lo for node_id in merkle.perfect_subtrees(lo, hi)}
        nodes = await self.store.audit_nodes(sorted(ids))
        missing = ids - nodes.keys()
        if missing:
            # Only a store that lost rows (or skipped its migration) gets here: say which, once.
            level, index = min(missing)
            raise StoreError(f"the store lacks {len(missing)} Merkle subtree hash(es) of the audit log, "
                             f"e.g. level {level} index {index}")
        return [merkle.range_root(nodes, lo, hi) if hi > lo else merkle.EMPTY_ROOT for lo, hi in ranges]
