"""Scale-out of one agency: 1, 2, 4, … gateway processes of NG-NAPTIP on one shared
PostgreSQL store, consuming one inbox queue (docs/operations.md, "Several processes").

    .venv/bin/python bench/scaleout_bench.py [--n 3000] [--processes 1 2 4] [--warmup 600]
        [--amqp-url URL] [--pg-dsn postgresql://postgres@127.0.0.1:5432/test] [--json out.json]

For each process count, in one run:

1. NE-ANLTP-TIM (in this process, SQLite) submits ``--n`` referral requests while no NG
   process runs, and waits until every one is confirmed by the broker into NG's durable
   inbox queue; then NE stops (its receipts wait in its own queue, so NE takes no CPU
   from NG while NG is measured).
2. ``k`` NG processes start on a fresh PostgreSQL schema (migrated once beforehand) and
   compete for the queue. Once all are consuming, the benchmark counts the stored
   referrals (``inbox`` rows) at that moment and again when all ``--n`` are stored:
   referrals/s over that window, and the CPU of each NG process over it
   (``/proc/<pid>/stat``), so process start-up is not counted.

Every referral handled by an NG process is verified, decrypted, validated, stored with
its audit entry and receipted, exactly as with one process. The table reports
referrals/s, its ratio to one process, and CPU ms per referral (all NG processes).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import asyncpg  # noqa: E402

from gateway.bootstrap import read_directory  # noqa: E402
from gateway.logs import configure_logging  # noqa: E402
from gateway.store import open_store  # noqa: E402
from testkit.gateway_pair import NIGER, NIGERIA, delete_broker_names, settings_for  # noqa: E402
from testkit.harness import GatewayProcess, in_process_gateway, submit_referrals  # noqa: E402
from testkit.pg_schemas import create_schema, drop_schema  # noqa: E402

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


async def _stored(dsn: str, schema: str) -> int:
    conn = await asyncpg.connect(dsn, server_settings={"search_path": schema})
    try:
        return int(await conn.fetchval("SELECT count(*) FROM inbox WHERE message_type = 'referral.request'"))
    finally:
        await conn.close()


async def _queue_referrals(tmp: Path, run_id: str, amqp_url: str, n: int) -> None:
    """NE submits ``n`` referrals and waits until the broker confirmed every one."""
    async with in_process_gateway(tmp, run_id, amqp_url) as ne:
        await submit_referrals(ne, n, batch=50, tag=f"scale{run_id[:4]}")
        deadline = time.monotonic() + 600
        while True:
            # Nothing queued, nor waiting out a retry back-off: the broker confirmed them all.
            if not await ne.store.due_outgoing(ne.clock() + timedelta(minutes=5), 1):
                break
            if time.monotonic() > deadline:
                raise SystemExit("NE did not publish everything within 600 s")
            await asyncio.sleep(0.2)


async def one_count(args: argparse.Namespace, processes: int) -> dict[str, Any]:
    """Referrals/s and CPU of ``processes`` NG processes on one shared store."""
    run_id = uuid.uuid4().hex[:10]
    schema = await create_schema(args.pg_dsn, "scaleout_")
    store_url = f"{args.pg_dsn}?search_path={schema}"
    with tempfile.TemporaryDirectory(prefix="scaleout-") as tmp_name:
        tmp = Path(tmp_name)
        # Migrate once, so the processes do not queue on the migration lock at start.
        await (await open_store(store_url)).close()
        group: list[GatewayProcess] = []
        try:
            await _queue_referrals(tmp, run_id, args.amqp_url, args.n)
            for i in range(processes):
                home = tmp / f"ng{i}"
                home.mkdir()
                group.append(GatewayProcess(home, run_id, args.amqp_url,
                                            extra_args=("--log-level", "warning", "--store-url", store_url)))
            await asyncio.gather(*(p.start(timeout=120) for p in group))
            began, first = time.perf_counter(), await _stored(args.pg_dsn, schema)
            cpu_before = [_cpu_seconds(p.pid) for p in group]
            if first >= args.n:
                raise SystemExit("every referral was stored before all processes were up: raise --n")
            while (done := await _stored(args.pg_dsn, schema)) < args.n:
                if time.perf_counter() - began > 600:
                    raise SystemExit(f"only {done} of {args.n} stored within 600 s")
                await asyncio.sleep(0.05)
            seconds = time.perf_counter() - began
            cpu = [_cpu_seconds(p.pid) - before for p, before in zip(group, cpu_before)]
            for p in group:
                assert await p.stop() == 0
        finally:
            for p in group:
                if p.running:
                    await p.kill()
            directory = read_directory(settings_for(NIGER, tmp, transport="amqp", amqp_url=args.amqp_url,
                                                    run_id=run_id))
            await delete_broker_names(args.amqp_url, run_id, directory.agencies)
            await drop_schema(args.pg_dsn, schema)
    handled = args.n - first
    return {"processes": processes, "measured_referrals": handled, "seconds": round(seconds, 3),
            "referrals_per_second": round(handled / seconds, 1),
            "cpu_ms_per_referral": round(sum(cpu) * 1000 / handled, 2),
            "cpu_share_per_process": [round(c / seconds, 2) for c in cpu]}


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    configure_logging("error")
    # A discarded warm-up round: the first round of a run was measured up to 2.6x slower
    # than the same round later (PostgreSQL's and the broker's caches, first connections).
    await one_count(argparse.Namespace(**{**vars(args), "n": args.warmup}), 1)
    rows = [await one_count(args, k) for k in args.processes]
    base = rows[0]["referrals_per_second"]
    print(f"{args.n} referrals queued for {NIGERIA}, shared PostgreSQL store; "
          f"Python {platform.python_version()}, {os.cpu_count()} CPUs")
    print(f"{'processes':>9}  {'measured':>8}  {'referrals/s':>11}  {'x one':>6}  {'CPU ms/ref':>10}  CPU share per process")
    for row in rows:
        print(f"{row['processes']:>9}  {row['measured_referrals']:>8}  {row['referrals_per_second']:>11}  "
              f"{row['referrals_per_second'] / base:>5.2f}x  {row['cpu_ms_per_referral']:>10}  "
              f"{row['cpu_share_per_process']}")
    return {"n": args.n, "cpus": os.cpu_count(), "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=3000)
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--warmup", type=int, default=600, help="referrals of the discarded warm-up round")
    parser.add_argument("--amqp-url", default=os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/"))
    parser.add_argument("--pg-dsn", default=os.environ.get("POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test"))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    result = asyncio.run(main_async(args))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
