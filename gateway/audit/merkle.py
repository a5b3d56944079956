"""RFC 9162 §2.1 Merkle tree over leaf hashes: roots, inclusion and consistency proofs.

Inputs are already-hashed leaves (``SHA-256(0x00 || leaf data)``, see leaf.py); interior
nodes are ``SHA-256(0x01 || left || right)``. Everything walks index ranges of the one
hash list instead of slicing it, so a proof over n leaves costs O(n) hashing and O(log n)
memory beyond the list: the reference the tests hold the stored path to.

The store keeps the hash of every perfect subtree as it completes (:func:`completed_nodes`,
in the append's transaction), and a gateway assembles any root or proof from O(log n) of
them (:func:`inclusion_ranges`, :func:`consistency_ranges`, :func:`range_root`), hashing at
most O(log n) for the partial right edge. :class:`MerkleFrontier` keeps only the O(log n)
roots of the perfect subtrees ("compact range"), so a verifier can extend a tree over an
export without storing it. See docs/audit.md.
"""

from __future__ import annotations

import hashlib
from typing import Callable, Iterable, Mapping, Sequence

from gateway.audit.leaf import NODE_PREFIX

HASH_SIZE = 32
#: MTH({}) = SHA-256 of the empty string (RFC 9162 §2.1.1).
EMPTY_ROOT = hashlib.sha256(b"").digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """Interior node hash: SHA-256(0x01 || left || right)."""
    return hashlib.sha256(NODE_PREFIX + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two smaller than ``n`` (n >= 2): the size of the left subtree."""
    return 1 << ((n - 1).bit_length() - 1)


def _range_root(hashes: Sequence[bytes], lo: int, hi: int) -> bytes:
    """MTH of ``hashes[lo:hi]`` (hi > lo) without copying the range."""
    # Fold perfect subtrees as they complete (binary counter), then join them right to
    # left: exactly the RFC's recursive split, since each left part is a perfect subtree.
    stack: list[tuple[bytes, int]] = []
    for i in range(lo, hi):
        h, size = hashes[i], 1
        while stack and stack[-1][1] == size:
            h = node_hash(stack.pop()[0], h)
            size *= 2
        stack.append((h, size))
    h = stack.pop()[0]
    while stack:
        h = node_hash(stack.pop()[0], h)
    return h


def root(hashes: Sequence[bytes]) -> bytes:
    """MTH(D[n]) of a list of leaf hashes; the empty tree's root is SHA-256("")."""
    if not hashes:
        return EMPTY_ROOT
    return _range_root(hashes, 0, len(hashes))


def inclusion_ranges(index: int, size: int) -> list[tuple[int, int]]:
    """The leaf ranges [lo, hi) whose MTHs make up PATH(index, D[size]), leaf-side first.

    Pure index arithmetic: a proof is these ranges' roots, whether they are hashed from the
    leaves (:func:`inclusion_proof`) or assembled from stored subtree hashes (:func:`range_root`)."""
    if not 0 <= index < size:
        raise ValueError(f"leaf index {index} is outside a tree of size {size}")
    ranges: list[tuple[int, int]] = []  # collected root-side first, reversed at the end
    lo, hi = 0, size
    while hi - lo > 1:
        k = _split(hi - lo)
        if index < lo + k:
            ranges.append((lo + k, hi))
            hi = lo + k
        else:
            ranges.append((lo, lo + k))
            lo += k
    ranges.reverse()
    return ranges


def consistency_ranges(old_size: int, new_size: int) -> list[tuple[int, int]]:
    """The leaf ranges [lo, hi) whose MTHs make up PROOF(old_size, D[new_size]), in proof order.

    Empty when ``old_size`` is 0 or ``new_size`` (nothing to prove)."""
    if not 0 <= old_size <= new_size:
        raise ValueError(f"old size {old_size} is outside 0..{new_size}")
    if old_size in (0, new_size):
        return []
    ranges: list[tuple[int, int]] = []  # SUBPROOF appends on the way back up: collect, then reverse
    lo, hi, m, complete = 0, new_size, old_size, True
    while m != hi - lo:
        k = _split(hi - lo)
        if m <= k:
            ranges.append((lo + k, hi))
            hi = lo + k
        else:
            ranges.append((lo, lo + k))
            lo, m, complete = lo + k, m - k, False
    if not complete:
        ranges.append((lo, hi))
    ranges.reverse()
    return ranges


def inclusion_proof(hashes: Sequence[bytes], index: int) -> list[bytes]:
    """PATH(index, D[n]) (RFC 9162 §2.1.3.1), leaf-side sibling first."""
    return [_range_root(hashes, lo, hi) for lo, hi in inclusion_ranges(index, len(hashes))]


def consistency_proof(hashes: Sequence[bytes], old_size: int) -> list[bytes]:
    """PROOF(old_size, D[n]) (RFC 9162 §2.1.4.1) where n = len(hashes).

    Empty when ``old_size`` is 0 or n: there is nothing to prove (the verifier then just
    compares roots)."""
    return [_range_root(hashes, lo, hi) for lo, hi in consistency_ranges(old_size, len(hashes))]


# --- proofs from stored perfect-subtree hashes ---------------------------------------------
# A perfect subtree is named (level, index): the 2**level leaves from index * 2**level. Level
# 0 is a leaf. Every range a proof or a root needs ([lo, hi) with lo a multiple of a power of
# two >= hi - lo) is a run of such subtrees of strictly decreasing size, so its MTH is
# O(log n) stored hashes folded right to left: no leaf beyond them is read.

NodeId = tuple[int, int]


def perfect_subtrees(lo: int, hi: int) -> list[NodeId]:
    """The (level, index) of the perfect subtrees that make up [lo, hi), largest first.

    ValueError unless [lo, hi) is a range of the RFC's recursive split (the subtree sizes
    then strictly decrease, and the fold of :func:`range_root` is its MTH)."""
    if not 0 <= lo < hi:
        raise ValueError(f"[{lo}, {hi}) is not a non-empty range")
    ids: list[NodeId] = []
    while lo < hi:
        level = (hi - lo).bit_length() - 1  # the largest power of two that fits...
        if lo:
            level = min(level, (lo & -lo).bit_length() - 1)  # ...and that lo is aligned to
        if ids and level >= ids[-1][0]:
            raise ValueError(f"[{lo}, {hi}) is not a subtree range of an RFC 9162 tree")
        ids.append((level, lo >> level))
        lo += 1 << level
    return ids


def range_root(nodes: Mapping[NodeId, bytes], lo: int, hi: int) -> bytes:
    """MTH of leaves [lo, hi) from stored perfect-subtree hashes (see :func:`perfect_subtrees`)."""
    ids = perfect_subtrees(lo, hi)
    h = nodes[ids[-1]]
    for node_id in reversed(ids[:-1]):
        h = node_hash(nodes[node_id], h)
    return h


def completed_nodes(index: int, leaf_hash: bytes, left: Callable[[int, int], bytes]) -> list[tuple[int, int, bytes]]:
    """The perfect subtrees that appending leaf ``index`` completes: (level, index, hash),
    lowest first (none when ``index`` is even; amortised one per append).

    ``left(level, index)`` returns a stored hash: each new node's left child, which is
    complete already."""
    out: list[tuple[int, int, bytes]] = []
    h, i, level = leaf_hash, index, 0
    while i & 1:
        h = node_hash(left(level, i - 1), h)
        level, i = level + 1, i >> 1
        out.append((level, i, h))
    return out


def _is_hash(value: object) -> bool:
    return isinstance(value, bytes) and len(value) == HASH_SIZE


def verify_inclusion(leaf_hash: bytes, index: int, tree_size: int, proof: Sequence[bytes], root_hash: bytes) -> bool:
    """True if ``proof`` shows leaf ``index`` of a tree of ``tree_size`` is ``leaf_hash`` (§2.1.3.2)."""
    if not (_is_hash(leaf_hash) and _is_hash(root_hash) and all(_is_hash(p) for p in proof)):
        return False
    if not (isinstance(index, int) and isinstance(tree_size, int) and 0 <= index < tree_size):
        return False
    fn, sn, r = index, tree_size - 1, leaf_hash
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root_hash


def verify_consistency(old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]) -> bool:
    """True if ``proof`` shows the tree of ``old_size`` is a prefix of the tree of ``new_size`` (§2.1.4.2)."""
    if not (_is_hash(old_root) and _is_hash(new_root) and all(_is_hash(p) for p in proof)):
        return False
    if not (isinstance(old_size, int) and isinstance(new_size, int) and 0 <= old_size <= new_size):
        return False
    if old_size == new_size:
        return not proof and old_root == new_root
    if old_size == 0:
        # Every tree extends the empty one; the claimed old root must still be the empty root.
        return not proof and old_root == EMPTY_ROOT
    if not proof:
        return False
    path = list(proof)
    if old_size & (old_size - 1) == 0:  # an exact power of two: the old root is a node of the new tree
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return fr == old_root and sr == new_root and sn == 0


class MerkleFrontier:
    """Compact range of a growing tree: the roots of its perfect subtrees, largest first.

    ``append`` is amortised O(1) and ``root`` O(log n); the state (``size``, ``nodes``) is
    small enough to persist and restore with :meth:`from_nodes`.
    """

    __slots__ = ("_size", "_nodes")

    def __init__(self) -> None:
        self._size = 0
        self._nodes: list[bytes] = []

    @classmethod
    def from_hashes(cls, hashes: Iterable[bytes]) -> "MerkleFrontier":
        """Rebuild the frontier of a tree from all its leaf hashes in order."""
        frontier = cls()
        frontier.extend(hashes)
        return frontier

    @classmethod
    def from_nodes(cls, size: int, nodes: Sequence[bytes]) -> "MerkleFrontier":
        """Restore a frontier saved as (``size``, ``nodes``)."""
        if not isinstance(size, int) or size < 0:
            raise ValueError("size must be a non-negative integer")
        if len(nodes) != bin(size).count("1") or not all(_is_hash(h) for h in nodes):
            raise ValueError("nodes must be one 32-byte hash per set bit of size")
        frontier = cls()
        frontier._size, frontier._nodes = size, list(nodes)
        return frontier

    @property
    def size(self) -> int:
        """Number of leaves appended so far."""
        return self._size

    @property
    def nodes(self) -> tuple[bytes, ...]:
        """Roots of the perfect subtrees, left (largest) to right."""
        return tuple(self._nodes)

    def append(self, leaf_hash: bytes) -> None:
        """Add one leaf hash at index ``size``."""
        self.append_nodes(leaf_hash)

    def append_nodes(self, leaf_hash: bytes) -> list[tuple[int, int, bytes]]:
        """Add one leaf hash at index ``size``; return the perfect subtrees it completed as
        (level, index, hash), lowest first (what a store keeps: see :func:`completed_nodes`)."""
        if not _is_hash(leaf_hash):
            raise ValueError("a leaf hash is 32 bytes")
        h, n, level = leaf_hash, self._size, 0
        completed: list[tuple[int, int, bytes]] = []
        while n & 1:  # each trailing 1 bit is a perfect subtree of the same size: merge it
            h = node_hash(self._nodes.pop(), h)
            n >>= 1
            level += 1
            completed.append((level, n, h))
        self._nodes.append(h)
        self._size += 1
        return completed

    def extend(self, leaf_hashes: Iterable[bytes]) -> None:
        """Append several leaf hashes in order."""
        for h in leaf_hashes:
            self.append(h)

    def root(self) -> bytes:
        """MTH of the leaves appended so far."""
        if not self._nodes:
            return EMPTY_ROOT
        h = self._nodes[-1]
        for left in reversed(self._nodes[:-1]):
            h = node_hash(left, h)
        return h

    def copy(self) -> "MerkleFrontier":
        """An independent copy (to compute a root "as if" without changing this one)."""
        return MerkleFrontier.from_nodes(self._size, self._nodes)
