"""gateway.audit.merkle against a literal transcription of RFC 9162 §2.1 (slicing recursion)."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.audit import merkle
from tests.support.hypothesis_profiles import scaled

# --- the RFC, written out as plainly as it reads (independent of merkle.py) --------------------


def sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def largest_pow2_below(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def mth(d: list[bytes]) -> bytes:
    """MTH(D[n]) over leaf *hashes* (the leaf step SHA-256(0x00||d) is already applied)."""
    n = len(d)
    if n == 0:
        return sha(b"")
    if n == 1:
        return d[0]
    k = largest_pow2_below(n)
    return sha(b"\x01" + mth(d[:k]) + mth(d[k:]))


def path(m: int, d: list[bytes]) -> list[bytes]:
    n = len(d)
    if n == 1:
        return []
    k = largest_pow2_below(n)
    if m < k:
        return path(m, d[:k]) + [mth(d[k:])]
    return path(m - k, d[k:]) + [mth(d[:k])]


def subproof(m: int, d: list[bytes], b: bool) -> list[bytes]:
    n = len(d)
    if m == n:
        return [] if b else [mth(d)]
    k = largest_pow2_below(n)
    if m <= k:
        return subproof(m, d[:k], b) + [mth(d[k:])]
    return subproof(m - k, d[k:], False) + [mth(d[:k])]


def proof(m: int, d: list[bytes]) -> list[bytes]:
    return subproof(m, d, True)


def leaves(n: int, salt: bytes = b"") -> list[bytes]:
    return [sha(b"\x00" + salt + i.to_bytes(4, "big")) for i in range(n)]


# --- exhaustive small trees ------------------------------------------------------------------

MAX = 70


@pytest.fixture(scope="module")
def trees() -> list[tuple[list[bytes], bytes]]:
    return [(leaves(n), mth(leaves(n))) for n in range(MAX + 1)]


def test_root_matches_rfc_for_every_size(trees) -> None:
    assert merkle.root([]) == hashlib.sha256(b"").digest() == merkle.EMPTY_ROOT
    for d, expected in trees:
        assert merkle.root(d) == expected
        assert merkle.MerkleFrontier.from_hashes(d).root() == expected


def test_frontier_root_after_every_append(trees) -> None:
    frontier = merkle.MerkleFrontier()
    assert frontier.root() == merkle.EMPTY_ROOT
    for n in range(1, MAX + 1):
        frontier.append(trees[MAX][0][n - 1])
        assert frontier.size == n
        assert frontier.root() == trees[n][1]
        assert len(frontier.nodes) == bin(n).count("1")
        restored = merkle.MerkleFrontier.from_nodes(frontier.size, frontier.nodes)
        assert restored.root() == trees[n][1]


def test_inclusion_for_every_size_and_index(trees) -> None:
    for n in range(1, MAX + 1):
        d, r = trees[n]
        for i in range(n):
            p = merkle.inclusion_proof(d, i)
            assert p == path(i, d), (n, i)
            assert merkle.verify_inclusion(d[i], i, n, p, r)
            # wrong leaf, wrong index, wrong root
            assert not merkle.verify_inclusion(sha(b"x"), i, n, p, r)
            if n > 1:
                assert not merkle.verify_inclusion(d[i], (i + 1) % n, n, p, r)
            # (A wrong tree_size may verify when both sizes give the path the same shape,
            # e.g. leaf 0 of sizes 3 and 4: the signed checkpoint binds the size, not the proof.)
            assert not merkle.verify_inclusion(d[i], i, n, p, sha(r))


def test_consistency_for_every_size_and_old_size(trees) -> None:
    for n in range(0, MAX + 1):
        d, r = trees[n]
        for m in range(0, n + 1):
            p = merkle.consistency_proof(d, m)
            if 0 < m < n:
                assert p == proof(m, d), (m, n)
            else:
                assert p == []
            old_root = trees[m][1]
            assert merkle.verify_consistency(m, n, old_root, r, p), (m, n)
            assert not merkle.verify_consistency(m, n, sha(old_root), r, p)
            if m > 0:  # every tree extends the empty tree, whatever its root
                assert not merkle.verify_consistency(m, n, old_root, sha(r), p)
            if 0 < m < n:
                assert not merkle.verify_consistency(m, n, old_root, r, [])


def test_every_single_bit_flip_in_proofs_fails() -> None:
    d = leaves(37)
    r = merkle.root(d)
    p = merkle.inclusion_proof(d, 21)
    c = merkle.consistency_proof(d, 13)
    old = merkle.root(d[:13])
    for i in range(len(p)):
        for bit in (0, 7 * 32 + 3, 255):
            bad = list(p)
            bad[i] = _flip(bad[i], bit)
            assert not merkle.verify_inclusion(d[21], 21, 37, bad, r)
    for i in range(len(c)):
        for bit in (0, 100, 255):
            bad = list(c)
            bad[i] = _flip(bad[i], bit)
            assert not merkle.verify_consistency(13, 37, old, r, bad)
    # truncated, extended, reordered
    assert not merkle.verify_inclusion(d[21], 21, 37, p[:-1], r)
    assert not merkle.verify_inclusion(d[21], 21, 37, p + [r], r)
    assert not merkle.verify_inclusion(d[21], 21, 37, p[::-1], r)
    assert not merkle.verify_consistency(13, 37, old, r, c[:-1])
    assert not merkle.verify_consistency(13, 37, old, r, c + [r])
    assert not merkle.verify_consistency(13, 37, old, r, c[::-1])


def _flip(h: bytes, bit: int) -> bytes:
    b = bytearray(h)
    b[bit // 8] ^= 1 << (bit % 8)
    return bytes(b)


def test_bad_arguments() -> None:
    d = leaves(5)
    r = merkle.root(d)
    with pytest.raises(ValueError):
        merkle.inclusion_proof(d, 5)
    with pytest.raises(ValueError):
        merkle.inclusion_proof(d, -1)
    with pytest.raises(ValueError):
        merkle.consistency_proof(d, 6)
    assert not merkle.verify_inclusion(d[0], -1, 5, [], r)
    assert not merkle.verify_inclusion(d[0], 0, 0, [], r)
    assert not merkle.verify_inclusion(d[0][:31], 0, 1, [], d[0][:31])
    assert not merkle.verify_consistency(6, 5, r, r, [])
    assert not merkle.verify_consistency(0, 5, r, r, [])  # the old root of size 0 is the empty root
    assert merkle.verify_consistency(0, 5, merkle.EMPTY_ROOT, r, [])
    with pytest.raises(ValueError):
        merkle.MerkleFrontier().append(b"short")
    with pytest.raises(ValueError):
        merkle.MerkleFrontier.from_nodes(3, [r])


# --- random trees ------------------------------------------------------------------------------


@settings(max_examples=scaled(60), deadline=None)
@given(n=st.integers(1, 300), data=st.data(), salt=st.binary(max_size=8))
def test_random_trees(n: int, data: st.DataObject, salt: bytes) -> None:
    d = leaves(n, salt)
    r = mth(d)
    assert merkle.root(d) == r
    assert merkle.MerkleFrontier.from_hashes(d).root() == r
    i = data.draw(st.integers(0, n - 1))
    p = merkle.inclusion_proof(d, i)
    assert p == path(i, d)
    assert merkle.verify_inclusion(d[i], i, n, p, r)
    m = data.draw(st.integers(1, n))
    c = merkle.consistency_proof(d, m)
    assert c == (proof(m, d) if m < n else [])
    assert merkle.verify_consistency(m, n, mth(d[:m]), r, c)
    # a proof for a different history does not verify
    other = list(d)
    j = data.draw(st.integers(0, m - 1))
    other[j] = sha(other[j])
    assert not merkle.verify_consistency(m, n, mth(other[:m]), r, c)


def test_large_tree_is_fast() -> None:
    d = leaves(200_000)
    frontier = merkle.MerkleFrontier.from_hashes(d)
    r = merkle.root(d)
    assert frontier.root() == r
    p = merkle.inclusion_proof(d, 123_457)
    assert merkle.verify_inclusion(d[123_457], 123_457, len(d), p, r)
    c = merkle.consistency_proof(d, 150_001)
    assert merkle.verify_consistency(150_001, len(d), merkle.root(d[:150_001]), r, c)


# --- proofs assembled from stored perfect-subtree hashes ---------------------------------------


def stored_nodes(d: list[bytes]) -> dict[tuple[int, int], bytes]:
    """What a store holds after appending ``d`` one leaf at a time: leaves plus completed subtrees."""
    nodes: dict[tuple[int, int], bytes] = {}
    for i, h in enumerate(d):
        nodes[(0, i)] = h
        for level, idx, node in merkle.completed_nodes(i, h, lambda lv, ix: nodes[(lv, ix)]):
            assert (level, idx) not in nodes  # each subtree is written once, when it completes
            nodes[(level, idx)] = node
    return nodes


def test_completed_nodes_are_the_frontier_merges_and_each_subtree_root() -> None:
    d = leaves(70)
    nodes = stored_nodes(d)
    frontier = merkle.MerkleFrontier()
    emitted = {}
    for h in d:
        emitted.update({(lv, ix): node for lv, ix, node in frontier.append_nodes(h)})
    assert emitted == {k: v for k, v in nodes.items() if k[0] > 0}
    assert set(nodes) == {(lv, ix) for lv in range(7) for ix in range(70 >> lv)}
    for (lv, ix), h in nodes.items():
        assert h == mth(d[ix << lv:(ix + 1) << lv])
    assert [len(merkle.completed_nodes(i, d[0], lambda lv, ix: d[0])) for i in range(8)] == [0, 1, 0, 2, 0, 1, 0, 3]


def test_every_proof_from_stored_nodes_up_to_70() -> None:
    d = leaves(70)
    nodes = stored_nodes(d)
    for n in range(1, 71):
        assert merkle.range_root(nodes, 0, n) == mth(d[:n])
        for i in range(n):
            ranges = merkle.inclusion_ranges(i, n)
            assert [merkle.range_root(nodes, lo, hi) for lo, hi in ranges] == path(i, d[:n])
            assert sum(len(merkle.perfect_subtrees(lo, hi)) for lo, hi in ranges) <= 2 * n.bit_length()
        for m in range(1, n + 1):
            got = [merkle.range_root(nodes, lo, hi) for lo, hi in merkle.consistency_ranges(m, n)]
            assert got == (proof(m, d[:n]) if m < n else [])


def test_perfect_subtrees_refuses_ranges_that_are_not_rfc_subtrees() -> None:
    assert merkle.perfect_subtrees(0, 13) == [(3, 0), (2, 2), (0, 12)]
    assert merkle.perfect_subtrees(8, 13) == [(2, 2), (0, 12)]
    for lo, hi in ((1, 4), (2, 7), (3, 3), (5, 2)):
        with pytest.raises(ValueError):
            merkle.perfect_subtrees(lo, hi)


@settings(max_examples=scaled(80), deadline=None)
@given(n=st.integers(1, 3000), data=st.data(), salt=st.binary(max_size=8))
def test_random_proofs_from_stored_nodes(n: int, data: st.DataObject, salt: bytes) -> None:
    d = leaves(n, salt)
    nodes = stored_nodes(d)
    size = data.draw(st.integers(1, n), label="tree size")
    i = data.draw(st.integers(0, size - 1), label="leaf index")
    m = data.draw(st.integers(0, size), label="old size")
    assert [merkle.range_root(nodes, lo, hi) for lo, hi in merkle.inclusion_ranges(i, size)] == \
        merkle.inclusion_proof(d[:size], i)
    assert [merkle.range_root(nodes, lo, hi) for lo, hi in merkle.consistency_ranges(m, size)] == \
        merkle.consistency_proof(d[:size], m)


def test_a_proof_at_a_million_reads_a_few_dozen_nodes() -> None:
    # O(log n) by construction: count the stored hashes a proof needs, without building the tree.
    n = 1_000_003
    for i in (0, 1, 499_999, 999_999, n - 1):
        ids = {x for lo, hi in merkle.inclusion_ranges(i, n) + [(0, n)] for x in merkle.perfect_subtrees(lo, hi)}
        assert len(ids) <= 2 * n.bit_length()
    for m in (1, 3, 524_289, 999_999, n - 1):
        ids = {x for lo, hi in merkle.consistency_ranges(m, n) + [(0, m), (0, n)] for x in merkle.perfect_subtrees(lo, hi)}
        assert len(ids) <= 3 * n.bit_length()
