"""The tamper-evident audit log: leaf encoding, Merkle tree, signed checkpoints, proofs,
exports and offline verification. See docs/audit.md."""
