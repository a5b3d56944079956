"""Audit append path: entries/s through the gateway's audit log against the store's raw insert rate.

    .venv/bin/python bench/audit_bench.py [--n 3000] [--concurrency 64] [--json out.json]

Same run, same disk, same SQLite settings (WAL, synchronous=FULL), same row size:

* **raw insert**: plain sqlite3 ``INSERT`` of an audit-shaped row into a table without
  triggers, one transaction (one fsync) per row, from one thread: the floor of what a
  durable append costs here;
* **raw insert, batched**: the same rows, 64 per transaction: what group commit can reach;
* **audit append, sequential**: ``AuditEntry`` built (RFC 8785 leaf data + SHA-256 leaf
  hash) and ``Store.append_audit`` awaited one at a time;
* **audit append, concurrent**: the same with ``--concurrency`` appends in flight, which
  the store group-commits, as when many deliveries are audited at once.

Also measured: the leaf hash alone, signing a checkpoint after 1,000 new entries
(incremental frontier), and an inclusion and a consistency proof over the whole log.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sqlite3
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.audit.leaf import leaf_hash  # noqa: E402
from gateway.audit.log import AuditLog  # noqa: E402
from gateway.demo_identities import demo_identity  # noqa: E402
from gateway.store import AuditEntry, open_store  # noqa: E402

DETAIL = json.dumps({"type": "referral.request", "recipient": "NG-NAPTIP"}, sort_keys=True)


def entry(i: int) -> AuditEntry:
    """An audit entry shaped like the service's message.created entries."""
    return AuditEntry(at=datetime.now(timezone.utc), event_type="message.created", actor="amina.caseworker",
                      case_ref=f"ne-ng-bench{i:08d}", message_id="5b0f8c1e-2d3a-4b5c-9d6e-7f8091a2b3c4",
                      agency="NG-NAPTIP", detail_json=DETAIL)


def raw_inserts(path: Path, n: int, batch: int) -> float:
    """Rows/s of plain durable inserts, ``batch`` rows per transaction."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("CREATE TABLE t (seq INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT, event_type TEXT, actor TEXT,"
                 " case_ref TEXT, message_id TEXT, detail_json TEXT, entry_hash BLOB, agency TEXT)")
    row = ("2026-11-23T12:00:00.000000Z", "message.created", "amina.caseworker", "ne-ng-bench00000001",
           "5b0f8c1e-2d3a-4b5c-9d6e-7f8091a2b3c4", DETAIL, b"\x00" * 32, "NG-NAPTIP")
    started = time.perf_counter()
    for start in range(0, n, batch):
        conn.execute("BEGIN IMMEDIATE")
        for _ in range(min(batch, n - start)):
            conn.execute("INSERT INTO t (at, event_type, actor, case_ref, message_id, detail_json, entry_hash, agency)"
                         " VALUES (?, ?, ?, ?, ?, ?, ?, ?)", row)
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - started
    conn.close()
    return n / elapsed


async def appends(url: str, n: int, concurrency: int) -> tuple[float, Any]:
    """Entries/s through ``AuditEntry`` + ``append_audit``; returns the open store too."""
    store = await open_store(url)
    started = time.perf_counter()
    if concurrency <= 1:
        for i in range(n):
            await store.append_audit(entry(i))
    else:
        pending: set[asyncio.Task[int]] = set()
        for i in range(n):
            if len(pending) >= concurrency:
                _, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            pending.add(asyncio.create_task(store.append_audit(entry(i))))
        await asyncio.gather(*pending)
    return n / (time.perf_counter() - started), store


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="audit-bench-") as tmp_name:
        tmp = Path(tmp_name)
        raw_1 = await asyncio.to_thread(raw_inserts, tmp / "raw1.db", args.n, 1)
        raw_64 = await asyncio.to_thread(raw_inserts, tmp / "raw64.db", args.n * 4, 64)
        seq_rate, store = await appends(f"sqlite:///{tmp / 'seq.db'}", args.n, 1)
        await store.close()
        conc_rate, store = await appends(f"sqlite:///{tmp / 'conc.db'}", args.n * 4, args.concurrency)
        try:
            sample = entry(0)
            t0 = time.perf_counter()
            for _ in range(2000):
                leaf_hash(sample)
            leaf_us = (time.perf_counter() - t0) / 2000 * 1e6

            log = AuditLog(store, demo_identity("NE-ANLTP-TIM"), lambda: datetime.now(timezone.utc))
            await log.checkpoint(force=True)  # builds the frontier once
            for i in range(1000):
                await store.append_audit(entry(i))
            t0 = time.perf_counter()
            await log.checkpoint()
            checkpoint_ms = (time.perf_counter() - t0) * 1e3
            size = await store.audit_size()
            t0 = time.perf_counter()
            await log.inclusion_proof(size // 3, size)
            inclusion_ms = (time.perf_counter() - t0) * 1e3
            t0 = time.perf_counter()
            await log.consistency_proof(size // 2, size)
            consistency_ms = (time.perf_counter() - t0) * 1e3
        finally:
            await store.close()
    return {
        "python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count(),
        "n": args.n, "concurrency": args.concurrency,
        "raw_insert_per_s": raw_1, "raw_insert_batched64_per_s": raw_64,
        "audit_append_sequential_per_s": seq_rate, "audit_append_concurrent_per_s": conc_rate,
        "ratio_sequential_to_raw": seq_rate / raw_1, "ratio_concurrent_to_raw_batched": conc_rate / raw_64,
        "leaf_hash_us": leaf_us, "checkpoint_after_1000_ms": checkpoint_ms,
        "log_size_for_proofs": size, "inclusion_proof_ms": inclusion_ms, "consistency_proof_ms": consistency_ms,
    }


def main() -> None:
    """Run the benchmark, print a table, optionally write JSON."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    r = asyncio.run(main_async(args))
    print(f"audit append benchmark ({r['cpus']} cpus, Python {r['python']}, SQLite WAL + synchronous=FULL)")
    print(f"{'path':<52}{'rows/s':>12}{'ratio':>10}")
    print(f"{'raw INSERT, 1 row per transaction':<52}{r['raw_insert_per_s']:>12,.0f}{'1.00':>10}")
    print(f"{'audit append (leaf hash + store), sequential':<52}{r['audit_append_sequential_per_s']:>12,.0f}"
          f"{r['ratio_sequential_to_raw']:>10.2f}")
    print(f"{'raw INSERT, 64 rows per transaction':<52}{r['raw_insert_batched64_per_s']:>12,.0f}{'1.00':>10}")
    print(f"{'audit append, ' + str(r['concurrency']) + ' in flight (group commit)':<52}"
          f"{r['audit_append_concurrent_per_s']:>12,.0f}{r['ratio_concurrent_to_raw_batched']:>10.2f}")
    print(f"leaf hash {r['leaf_hash_us']:.1f} µs; checkpoint after 1,000 new entries {r['checkpoint_after_1000_ms']:.1f} ms; "
          f"proofs over {r['log_size_for_proofs']:,} entries: inclusion {r['inclusion_proof_ms']:.0f} ms, "
          f"consistency {r['consistency_proof_ms']:.0f} ms")
    if args.json:
        args.json.write_text(json.dumps(r, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
