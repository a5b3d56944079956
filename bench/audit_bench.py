"""Audit log: append rate against the store's raw insert rate, and proof cost at 13,000 and 1,000,000 entries.

    .venv/bin/python bench/audit_bench.py [--n 3000] [--concurrency 64] [--sizes 13000,1000000]
        [--proofs 1000] [--legacy-proofs 5] [--pg-url postgresql://postgres@127.0.0.1:5432/test]
        [--json out.json]

Appends. Same run, same disk, same SQLite settings (WAL, synchronous=FULL), same row size:

* **raw insert**: plain sqlite3 ``INSERT`` of an audit-shaped row into a table without
  triggers, one transaction (one fsync) per row, from one thread: the floor of what a
  durable append costs here;
* **raw insert, batched**: the same rows, 64 per transaction: what group commit can reach;
* **audit append, sequential**: ``AuditEntry`` built (RFC 8785 leaf data + SHA-256 leaf
  hash) and ``Store.append_audit`` awaited one at a time (the entry and the Merkle
  subtrees it completes, in one transaction);
* **audit append, concurrent**: the same with ``--concurrency`` appends in flight, which
  the store group-commits, as when many deliveries are audited at once.

Proofs, for each of ``--sizes`` (and each backend: SQLite always, PostgreSQL with
``--pg-url``, in a throw-away schema): a log of that many entries is built through the
store's own append statement (``_insert_audit`` / ``_INSERT_AUDIT``, which also write the
completed subtrees) with 10,000 entries per transaction instead of one, so the tables are
exactly what appends leave, only with fewer commits. Then ``--proofs`` random inclusion
proofs (random entry, tree size = the log) and as many consistency proofs (random first
size, second = the log) through ``AuditLog`` (size check + one read of O(log n) stored
subtree hashes + hashing the partial right edge), each verified; median and p99 wall time,
mean CPU time. ``--legacy-proofs`` proofs are also built the way the gateway did before
subtrees were stored (read every leaf hash, hash O(n)): the same-run "before". Finally
5,000 more entries are appended 64 in flight to the large log: the append rate at that size.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.audit import merkle  # noqa: E402
from gateway.audit.leaf import leaf_hash  # noqa: E402
from gateway.audit.log import AuditLog  # noqa: E402
from gateway.demo_identities import demo_identity  # noqa: E402
from gateway.store import AuditEntry, open_store  # noqa: E402
from testkit.pg_schemas import create_schema, drop_schema  # noqa: E402

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
    return await append_rate(store, n, concurrency), store


async def append_rate(store: Any, n: int, concurrency: int) -> float:
    """Entries/s of ``n`` appends to an open store, ``concurrency`` in flight."""
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
    return n / (time.perf_counter() - started)


_BUILD_BATCH = 10_000


async def build_log(store: Any, n: int) -> float:
    """Append ``n`` entries through the store's own append statement, 10,000 per
    transaction; returns the seconds it took."""
    started = time.perf_counter()
    done = await store.audit_size()
    while done < n:
        batch = [entry(i) for i in range(done, min(n, done + _BUILD_BATCH))]
        if type(store).__name__ == "SQLiteStore":
            from gateway.store.sqlite import _insert_audit

            await store._in_write(lambda conn, b=batch: [_insert_audit(conn, e) for e in b])
        else:
            from gateway.store.postgres import _INSERT_AUDIT

            rows = [(e.at, e.event_type, e.actor, e.case_ref, e.message_id, e.agency, e.detail_json, e.entry_hash)
                    for e in batch]
            await store._run("bench", lambda conn, r=rows: conn.executemany(_INSERT_AUDIT, r), transaction=True)
        done += len(batch)
    return time.perf_counter() - started


def _stats(walls: list[float], cpus: list[float]) -> dict[str, float]:
    ordered = sorted(walls)
    return {"median_ms": statistics.median(ordered) * 1e3,
            "p99_ms": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1e3,
            "cpu_mean_ms": statistics.fmean(cpus) * 1e3}


async def time_proofs(store: Any, n: int, count: int, legacy: int, rng: random.Random) -> dict[str, Any]:
    """Random inclusion and consistency proofs over a log of ``n`` entries (each verified)."""
    log = AuditLog(store, demo_identity("NE-ANLTP-TIM"), lambda: datetime.now(timezone.utc))
    out: dict[str, Any] = {}
    walls: list[float] = []
    cpus: list[float] = []
    for _ in range(count):
        seq = rng.randint(1, n)
        t0, c0 = time.perf_counter(), time.process_time()
        found = await log.inclusion(seq, n)
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
        assert merkle.verify_inclusion(found.leaf_hash, seq - 1, n, found.proof, found.root_hash)
    out["inclusion"] = _stats(walls, cpus)
    root = found.root_hash
    walls, cpus = [], []
    for _ in range(count):
        first = rng.randint(1, n - 1)
        t0, c0 = time.perf_counter(), time.process_time()
        c = await log.consistency(first, n)
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
        assert c.second_root == root and merkle.verify_consistency(first, n, c.first_root, root, c.proof)
    out["consistency"] = _stats(walls, cpus)
    if legacy:
        # What AuditLog did before subtrees were stored: every leaf hash read, O(n) hashing.
        walls, cpus = [], []
        for _ in range(legacy):
            seq = rng.randint(1, n)
            t0, c0 = time.perf_counter(), time.process_time()
            hashes = await log.leaf_hashes(n)
            p = await asyncio.to_thread(merkle.inclusion_proof, hashes, seq - 1)
            walls.append(time.perf_counter() - t0)
            cpus.append(time.process_time() - c0)
            assert merkle.verify_inclusion(hashes[seq - 1], seq - 1, n, p, root)  # same tree as the stored path
        out["legacy_inclusion"] = _stats(walls, cpus)
        walls, cpus = [], []
        for _ in range(legacy):
            first = rng.randint(1, n - 1)
            t0, c0 = time.perf_counter(), time.process_time()
            hashes = await log.leaf_hashes(n)
            p = await asyncio.to_thread(merkle.consistency_proof, hashes, first)
            walls.append(time.perf_counter() - t0)
            cpus.append(time.process_time() - c0)
            assert p == (await log.consistency(first, n)).proof  # the stored path gives the same proof
        out["legacy_consistency"] = _stats(walls, cpus)
    return out


async def proof_runs(backend: str, url: str, sizes: list[int], args: argparse.Namespace) -> list[dict[str, Any]]:
    """Build each size (growing one log), then time proofs and appends at that size."""
    results = []
    store = await open_store(url)
    try:
        for n in sizes:
            build_s = await build_log(store, n)
            run = {"backend": backend, "size": n, "build_s": build_s,
                   **await time_proofs(store, n, args.proofs, args.legacy_proofs, random.Random(n))}
            if n == sizes[-1]:
                run["append_64_in_flight_per_s"] = await append_rate(store, 5000, 64)
            results.append(run)
    finally:
        await store.close()
    return results


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
            await log.checkpoint(force=True)
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
        sizes = sorted(int(x) for x in args.sizes.split(",") if x)
        proofs = await proof_runs("sqlite", f"sqlite:///{tmp / 'proofs.db'}", sizes, args) if sizes else []
    if sizes and args.pg_url:
        schema = await create_schema(args.pg_url, "audit_bench_")
        try:
            sep = "&" if "?" in args.pg_url else "?"
            proofs += await proof_runs("postgresql", f"{args.pg_url}{sep}search_path={schema}", sizes, args)
        finally:
            await drop_schema(args.pg_url, schema)
    return {
        "python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count(),
        "n": args.n, "concurrency": args.concurrency,
        "raw_insert_per_s": raw_1, "raw_insert_batched64_per_s": raw_64,
        "audit_append_sequential_per_s": seq_rate, "audit_append_concurrent_per_s": conc_rate,
        "ratio_sequential_to_raw": seq_rate / raw_1, "ratio_concurrent_to_raw_batched": conc_rate / raw_64,
        "leaf_hash_us": leaf_us, "checkpoint_after_1000_ms": checkpoint_ms,
        "log_size_for_proofs": size, "inclusion_proof_ms": inclusion_ms, "consistency_proof_ms": consistency_ms,
        "proof_runs": proofs,
    }


def main() -> None:
    """Run the benchmark, print a table, optionally write JSON."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--sizes", default="13000,1000000", help="log sizes for the proof runs ('' for none)")
    parser.add_argument("--proofs", type=int, default=1000, help="random proofs of each kind per size")
    parser.add_argument("--legacy-proofs", type=int, default=5, help="proofs the pre-subtree way (O(n)) per size")
    parser.add_argument("--pg-url", help="also run the proof runs on this PostgreSQL (a throw-away schema)")
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
          f"proofs over {r['log_size_for_proofs']:,} entries: inclusion {r['inclusion_proof_ms']:.2f} ms, "
          f"consistency {r['consistency_proof_ms']:.2f} ms")
    for run in r["proof_runs"]:
        print(f"{run['backend']} log of {run['size']:,} entries (built in {run['build_s']:.0f} s):")
        for kind in ("inclusion", "consistency", "legacy_inclusion", "legacy_consistency"):
            if kind in run:
                st = run[kind]
                print(f"  {kind.replace('_', ' ') + ' proof':<28} median {st['median_ms']:9.3f} ms   "
                      f"p99 {st['p99_ms']:9.3f} ms   cpu {st['cpu_mean_ms']:9.3f} ms")
        if "append_64_in_flight_per_s" in run:
            print(f"  append at this size, 64 in flight: {run['append_64_in_flight_per_s']:,.0f} entries/s")
    if args.json:
        args.json.write_text(json.dumps(r, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
