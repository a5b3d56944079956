"""gateway.audit.merkle against published known answers: the RFC 6962 reference tree as
transparency-dev/merkle publishes it (tests/vectors/rfc6962-merkle.json, with its source).

tests/test_audit_merkle.py compares merkle.py with a transcription of RFC 9162 written in
this repository; these constants come from outside it, so a shared misreading of the RFC
would fail here. The tampered proofs are the kinds transparency-dev/merkle probes
(proof/verify_test.go; testdata/inclusion and testdata/consistency): every one must fail.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from gateway.audit import merkle

VECTORS = json.loads((Path(__file__).parent / "vectors" / "rfc6962-merkle.json").read_text(encoding="utf-8"))
LEAVES = [hashlib.sha256(b"\x00" + bytes.fromhex(d)).digest() for d in VECTORS["leaf_data"]]
ROOTS = [bytes.fromhex(r) for r in VECTORS["roots_by_size"]]
SOME_HASH = bytes.fromhex("abacaba000000000000000000000000000000000000000000060061e00123456")


def _proof(item: dict) -> list[bytes]:
    return [bytes.fromhex(h) for h in item["proof"]]


def _plain_mth(hashes: list[bytes]) -> bytes:
    """MTH of RFC 9162 §2.1.1 in its recursive form, to check the transcribed constants."""
    if not hashes:
        return hashlib.sha256(b"").digest()
    if len(hashes) == 1:
        return hashes[0]
    k = 1 << ((len(hashes) - 1).bit_length() - 1)
    return hashlib.sha256(b"\x01" + _plain_mth(hashes[:k]) + _plain_mth(hashes[k:])).digest()


def test_the_transcribed_constants_agree_with_the_rfc_definition() -> None:
    assert len(ROOTS) == len(LEAVES) + 1 == 9
    assert [_plain_mth(LEAVES[:n]) for n in range(9)] == ROOTS
    assert ROOTS[8].hex() == "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"


@pytest.mark.parametrize("size", range(9))
def test_root_of_every_prefix_is_the_published_one(size: int) -> None:
    assert merkle.root(LEAVES[:size]) == ROOTS[size]
    assert merkle.MerkleFrontier.from_hashes(LEAVES[:size]).root() == ROOTS[size]


@pytest.mark.parametrize("item", VECTORS["inclusion"], ids=lambda v: f"{v['index']}-of-{v['tree_size']}")
def test_inclusion_proofs_are_the_published_ones(item: dict) -> None:
    index, size, published = item["index"], item["tree_size"], _proof(item)
    assert merkle.inclusion_proof(LEAVES[:size], index) == published
    assert merkle.verify_inclusion(LEAVES[index], index, size, published, ROOTS[size])


def _tampered_inclusion(index: int, size: int, proof: list[bytes], root: bytes, leaf: bytes):
    yield "index - 1", (leaf, index - 1, size, proof, root)
    yield "index + 1", (leaf, index + 1, size, proof, root)
    yield "index ^ 2", (leaf, index ^ 2, size, proof, root)
    yield "size * 2", (leaf, index, size * 2, proof, root)
    yield "size / 2", (leaf, index, size // 2, proof, root)
    yield "wrong leaf", (b"WrongLeaf", index, size, proof, root)
    yield "empty root", (leaf, index, size, proof, merkle.EMPTY_ROOT)
    yield "random root", (leaf, index, size, proof, SOME_HASH)
    yield "trailing garbage", (leaf, index, size, [*proof, b""], root)
    yield "trailing root", (leaf, index, size, [*proof, root], root)
    yield "preceding garbage", (leaf, index, size, [b"", *proof], root)
    yield "preceding root", (leaf, index, size, [root, *proof], root)
    for i in range(len(proof)):
        flipped = list(proof)
        flipped[i] = bytes([flipped[i][0] ^ 8]) + flipped[i][1:]
        yield f"proof[{i}] bit 3 flipped", (leaf, index, size, flipped, root)
    if proof:
        yield "removed component", (leaf, index, size, proof[:-1], root)
    if len(proof) > 1:
        yield "inserted component", (leaf, index, size, [proof[0], SOME_HASH, *proof[1:]], root)


@pytest.mark.parametrize("item", VECTORS["inclusion"], ids=lambda v: f"{v['index']}-of-{v['tree_size']}")
def test_every_tampered_inclusion_proof_fails(item: dict) -> None:
    index, size = item["index"], item["tree_size"]
    probes = dict(_tampered_inclusion(index, size, _proof(item), ROOTS[size], LEAVES[index]))
    assert len(probes) >= 12
    assert [name for name, args in probes.items() if merkle.verify_inclusion(*args)] == []


@pytest.mark.parametrize("item", VECTORS["consistency"], ids=lambda v: f"{v['old_size']}-to-{v['new_size']}")
def test_consistency_proofs_are_the_published_ones(item: dict) -> None:
    old, new, published = item["old_size"], item["new_size"], _proof(item)
    assert merkle.consistency_proof(LEAVES[:new], old) == published
    assert merkle.verify_consistency(old, new, ROOTS[old], ROOTS[new], published)


def _tampered_consistency(old: int, new: int, root1: bytes, root2: bytes, proof: list[bytes]):
    yield "old - 1", (old - 1, new, root1, root2, proof)
    yield "old + 1", (old + 1, new, root1, root2, proof)
    yield "old ^ 2", (old ^ 2, new, root1, root2, proof)
    yield "new * 2", (old, new * 2, root1, root2, proof)
    yield "new / 2", (old, new // 2, root1, root2, proof)
    yield "wrong old root", (old, new, b"WrongRoot", root2, proof)
    yield "wrong new root", (old, new, root1, b"WrongRoot", proof)
    yield "swapped roots", (old, new, root2, root1, proof)
    yield "empty proof", (old, new, root1, root2, [])
    yield "trailing garbage", (old, new, root1, root2, [*proof, b""])
    yield "trailing old root", (old, new, root1, root2, [*proof, root1])
    yield "trailing new root", (old, new, root1, root2, [*proof, root2])
    yield "preceding garbage", (old, new, root1, root2, [b"", *proof])
    yield "preceding old root", (old, new, root1, root2, [root1, *proof])
    yield "preceding new root", (old, new, root1, root2, [root2, *proof])
    yield "preceding proof[0]", (old, new, root1, root2, [proof[0], *proof])
    yield "truncated", (old, new, root1, root2, proof[:-1])
    for i in range(len(proof)):
        flipped = list(proof)
        flipped[i] = bytes([flipped[i][0] ^ 16]) + flipped[i][1:]
        yield f"proof[{i}] bit 4 flipped", (old, new, root1, root2, flipped)


@pytest.mark.parametrize("item", [v for v in VECTORS["consistency"] if v["proof"]],
                         ids=lambda v: f"{v['old_size']}-to-{v['new_size']}")
def test_every_tampered_consistency_proof_fails(item: dict) -> None:
    old, new = item["old_size"], item["new_size"]
    probes = dict(_tampered_consistency(old, new, ROOTS[old], ROOTS[new], _proof(item)))
    assert len(probes) >= 18
    assert [name for name, args in probes.items() if merkle.verify_consistency(*args)] == []


def test_sizes_that_are_always_consistent_and_those_never() -> None:
    """The edge cases of transparency-dev's TestVerifyConsistency, on the published roots."""
    assert merkle.verify_consistency(0, 0, merkle.EMPTY_ROOT, merkle.EMPTY_ROOT, [])
    assert merkle.verify_consistency(1, 1, ROOTS[1], ROOTS[1], [])
    assert merkle.verify_consistency(0, 8, merkle.EMPTY_ROOT, ROOTS[8], [])
    assert not merkle.verify_consistency(1, 1, ROOTS[1], ROOTS[2], [])  # same size, other root
    assert not merkle.verify_consistency(2, 1, ROOTS[2], ROOTS[1], [])  # time travel
    assert not merkle.verify_consistency(1, 2, ROOTS[1], ROOTS[2], [])  # empty proof
    assert not merkle.verify_consistency(1, 1, ROOTS[1], ROOTS[1], [merkle.EMPTY_ROOT])  # proof not empty
