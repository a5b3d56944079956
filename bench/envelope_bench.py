"""Envelope cost per message: gateway seal/open against raw PyNaCl calls, in one run.

    .venv/bin/python bench/envelope_bench.py [--n 2000] [--json out.json]

Baseline ("raw"): the libsodium work the wire format needs, called directly — two Ed25519
signatures plus one sealed-box encryption (seal side); two verifications plus one
sealed-box decryption (open side) — on a payload of the same size. The gateway adds
canonical JSON, header checks, directory key lookup and JSON Schema validation.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nacl.public import SealedBox  # noqa: E402

from gateway.canonical import canonical_bytes  # noqa: E402
from gateway.envelope import open_sealed, seal  # noqa: E402
from gateway.schema import load_example, validate_payload  # noqa: E402
from testkit.envelope_world import NOW, build_world  # noqa: E402


def per_call_us(fn: Callable[[], object], n: int, repeats: int = 5) -> float:
    """Best-of-``repeats`` mean time per call in microseconds."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - start) / n)
    return best * 1e6


def main() -> None:
    """Run the benchmark and print a table (optionally JSON)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    world = build_world()
    payload = load_example("referral.request")
    p = canonical_bytes(payload)
    enc_sk = next(iter(world.nigeria.encryption_keys.values()))
    sk, vk = world.niger.signing_key, world.niger.signing_key.verify_key
    box_to, box_open = SealedBox(enc_sk.public_key), SealedBox(enc_sk)
    header_like = b"x" * 400  # a canonical header is ~350-400 bytes

    def raw_seal() -> bytes:
        inner = sk.sign(header_like + p).signature
        c = box_to.encrypt(inner + p)
        return sk.sign(header_like + c).signature

    inner_sig = sk.sign(header_like + p).signature
    c = box_to.encrypt(inner_sig + p)
    outer_sig = sk.sign(header_like + c).signature

    def raw_open() -> bytes:
        vk.verify(header_like + c, outer_sig)
        pt = box_open.decrypt(c)
        vk.verify(header_like + pt[64:], pt[:64])
        return pt

    def gw_seal() -> bytes:
        return seal(payload, message_type="referral.request", sender=world.niger, recipient="NG-NAPTIP",
                    directory=world.directory, case_ref="ne-ng-benchcase0001", now=NOW)[1]

    wire = gw_seal()

    def gw_open() -> object:
        return open_sealed(wire, recipient=world.nigeria, directory=world.directory, replay_guard=None, now=NOW)

    def validate() -> None:
        validate_payload("referral.request", payload)

    rows = {
        "raw_seal_us": per_call_us(raw_seal, args.n),
        "gateway_seal_us": per_call_us(gw_seal, args.n),
        "raw_open_us": per_call_us(raw_open, args.n),
        "gateway_open_us": per_call_us(gw_open, args.n),
        "schema_validate_us": per_call_us(validate, args.n),
    }
    result = {
        "payload_bytes": len(p),
        "envelope_bytes": len(wire),
        "n": args.n,
        "python": platform.python_version(),
        "machine": platform.machine(),
        **{k: round(v, 1) for k, v in rows.items()},
        "seal_ratio": round(rows["gateway_seal_us"] / rows["raw_seal_us"], 2),
        "open_ratio": round(rows["gateway_open_us"] / rows["raw_open_us"], 2),
    }
    print(f"payload {len(p)} B, envelope {len(wire)} B, best of 5 x {args.n} calls")
    print(f"{'operation':<34}{'us/msg':>10}{'msg/s':>10}{'x raw':>8}")
    for label, key, base in (
        ("raw PyNaCl: 2 sign + seal", "raw_seal_us", "raw_seal_us"),
        ("gateway seal (validate+sign+enc)", "gateway_seal_us", "raw_seal_us"),
        ("raw PyNaCl: 2 verify + open", "raw_open_us", "raw_open_us"),
        ("gateway open (verify+dec+valid.)", "gateway_open_us", "raw_open_us"),
        ("  of which schema validation", "schema_validate_us", "raw_open_us"),
    ):
        us = rows[key]
        print(f"{label:<34}{us:>10.1f}{1e6 / us:>10.0f}{us / rows[base]:>8.2f}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
