"""The gateway's audit log as a Merkle tree: signed checkpoints and proofs over the store.

Entries are appended by the service (one store transaction with the change they record);
this class only reads them. It keeps a Merkle frontier of the log in memory so that a
checkpoint costs O(new entries), and builds proofs from the leaf hashes in the store
(O(tree size) per proof: fine for the audit volumes of one agency, see docs/audit.md).
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Callable

from gateway.audit import merkle
from gateway.audit.checkpoint import parse_checkpoint, sign_checkpoint, to_record
from gateway.errors import GatewayError
from gateway.keys import AgencyIdentity
from gateway.store import CheckpointRecord, Store

_PAGE = 10_000


class ProofRequestError(GatewayError):
    """A proof was asked for sizes or entries the log does not have."""

    code = "invalid_proof_request"


class AuditLog:
    """Checkpoints and proofs for one gateway's audit log."""

    def __init__(self, store: Store, identity: AgencyIdentity, clock: Callable[[], datetime]) -> None:
        self.store = store
        self.identity = identity
        self.clock = clock
        self._frontier = merkle.MerkleFrontier()
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
            await self._advance(size)
            signed_at = self.clock().replace(microsecond=0)
            note = sign_checkpoint(self.identity, size, self._frontier.root(), signed_at)
            record = to_record(parse_checkpoint(note), note, self.clock())
            await self.store.add_checkpoint(record)
            return record

    async def latest(self) -> CheckpointRecord | None:
        """Our latest signed checkpoint."""
        return await self.store.latest_checkpoint(self.identity.agency_id)

    async def leaf_hashes(self, tree_size: int) -> list[bytes]:
        """The first ``tree_size`` leaf hashes, read from the store in pages."""
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
        hashes = await self.leaf_hashes(await self._size_ok(tree_size))
        return await asyncio.to_thread(merkle.root, hashes)  # O(n) hashing: off the event loop

    async def inclusion_proof(self, seq: int, tree_size: int) -> tuple[bytes, list[bytes]]:
        """(leaf hash, audit path) proving entry ``seq`` is in the tree of ``tree_size``."""
        await self._size_ok(tree_size)
        if not isinstance(seq, int) or not 1 <= seq <= tree_size:
            raise ProofRequestError(f"seq must be in 1..{tree_size}")
        hashes = await self.leaf_hashes(tree_size)
        return hashes[seq - 1], await asyncio.to_thread(merkle.inclusion_proof, hashes, seq - 1)

    async def consistency_proof(self, first: int, second: int) -> list[bytes]:
        """RFC 9162 consistency proof between the trees of sizes ``first`` <= ``second``."""
        await self._size_ok(second)
        if not isinstance(first, int) or not 1 <= first <= second:
            raise ProofRequestError(f"first must be in 1..{second}")
        hashes = await self.leaf_hashes(second)
        return await asyncio.to_thread(merkle.consistency_proof, hashes, first)

    async def _size_ok(self, tree_size: int) -> int:
        size = await self.store.audit_size()
        if not isinstance(tree_size, int) or not 0 <= tree_size <= size:
            raise ProofRequestError(f"tree_size must be in 0..{size}")
        return tree_size

    async def _advance(self, size: int) -> None:
        while self._frontier.size < size:
            page = await self.store.audit_hashes(self._frontier.size + 1, min(_PAGE, size - self._frontier.size))
            if not page:
                raise ProofRequestError(f"the log has fewer than {size} entries")
            self._frontier.extend(page)
