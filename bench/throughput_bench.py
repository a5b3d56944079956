"""Referrals per second end to end through two gateways on the real RabbitMQ, against raw
aio-pika with the same delivery guarantees, in one run.

    .venv/bin/python bench/throughput_bench.py [--n 1000] [--batch 50] [--json out.json]
        [--amqp-url amqp://guest:guest@127.0.0.1:5672/] [--profile]

Gateway: NE (this process) submits ``--n`` referral.requests, ``--batch`` at a time
concurrently, to NG (its own process, ``testkit/ng_process.py``). Timed from the first
submit until NG's inbox holds all of them and every NE outbox status is ``delivered`` (NG's
signed receipt came back), counted from the two SQLite stores. Each referral is two broker
messages (request + delivered receipt); the SQLite writes of concurrent handlers share
fsync'd group commits.

Raw: the same number of messages of the same size (the sealed envelope's size) through a
durable topic exchange into a quorum queue: persistent, mandatory, publisher confirms
(batches of ``outbox_batch`` awaited together, as the outbox does), consumed with manual
acks at the gateway's prefetch, in one process. Timed from first publish to last ack.

Also measured: the SQLite store's commit latency on this disk, NE's store operations per
referral, and for each gateway its process CPU time per referral (target 1 of issue 14),
the store thread's group commits, writes, reads and CPU. ``--profile`` adds cProfile of
both gateways.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import os
import platform
import pstats
import signal
import sqlite3
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import aio_pika  # noqa: E402
from aio_pika import DeliveryMode, ExchangeType  # noqa: E402

from gateway import event_loop  # noqa: E402
from gateway.bootstrap import read_directory  # noqa: E402
from gateway.heap import settle_heap  # noqa: E402
from gateway.logs import configure_logging  # noqa: E402
from gateway.settings import EVENT_LOOPS, Settings  # noqa: E402
from gateway.store import AuditEntry, open_store  # noqa: E402
from testkit.harness import (  # noqa: E402
    BusyMeter,
    GatewayProcess,
    db_path,
    in_process_gateway,
    submit_referrals,
)
from testkit.gateway_pair import NIGER, NIGERIA, delete_broker_names, settings_for  # noqa: E402

WRITES = {"add_outgoing", "mark_sent", "mark_retry", "mark_failed", "set_status", "add_incoming",
          "set_incoming_status", "upsert_case", "append_audit", "remember_message_id"}


class CountingStore:
    """Counts calls per store method (to report store operations per referral), and keeps
    the size of the sealed referral envelopes as they enter the outbox (once delivered,
    the outbox keeps only a digest record of the body)."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.calls: Counter[str] = Counter()
        self.envelope_bytes = 0

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if not callable(attr) or name.startswith("_"):
            return attr

        async def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] += 1
            if name == "add_outgoing" and args[0].message_type == "referral.request":
                self.envelope_bytes = len(args[0].envelope)
            return await attr(*args, **kwargs)

        return counted


#: CPU seconds the benchmark's own progress counting took (in this process, beside NE's
#: gateway): subtracted from this process's CPU to give NE's.
_counting_cpu = 0.0


def _count(path: Path, sql: str) -> int:
    global _counting_cpu
    began = time.thread_time()
    conn = sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True)
    try:
        return conn.execute(sql).fetchone()[0]
    finally:
        conn.close()
        _counting_cpu += time.thread_time() - began


async def _wait_counts(ne_db: Path, ng_db: Path, n: int, started: float, timeout: float) -> tuple[float, float]:
    """Seconds from ``started`` until NG's inbox has ``n`` requests, and until NE has ``n`` delivered."""
    inbox_done = delivered_done = 0.0
    while not delivered_done:
        await asyncio.sleep(0.02)
        now = time.perf_counter() - started
        if now > timeout:
            raise SystemExit(f"not done within {timeout}s")
        # Counting off the event loop: a scan of the outbox takes milliseconds.
        if not inbox_done and await asyncio.to_thread(
            _count, ng_db, "SELECT count(*) FROM inbox WHERE message_type='referral.request'"
        ) >= n:
            inbox_done = now
        if inbox_done and await asyncio.to_thread(
            _count, ne_db, "SELECT count(*) FROM outbox WHERE message_type='referral.request' AND status='delivered'"
        ) >= n:
            delivered_done = now
    return inbox_done, delivered_done


async def gateway_run(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    run_id = uuid.uuid4().hex[:10]
    busy_out = tmp / "ng.busy.json"
    ng = GatewayProcess(tmp, run_id, args.amqp_url, profile_out=tmp / "ng.prof" if args.profile else None,
                        extra_args=("--log-level", "warning", "--busy-out", str(busy_out),
                                    "--event-loop", args.event_loop))
    meter = BusyMeter().install(asyncio.get_running_loop())
    ne_db, ng_db = db_path(tmp, NIGER), db_path(tmp, NIGERIA)
    profiler = cProfile.Profile() if args.profile else None
    await ng.start()
    try:
        async with in_process_gateway(tmp, run_id, args.amqp_url) as ne:
            # Warm-up: connections, schema compilation, first-use caches.
            warm = args.warmup
            await submit_referrals(ne, warm, batch=args.batch, tag="warmup")
            await _wait_counts(ne_db, ng_db, warm, time.perf_counter(), 120)
            settle_heap()  # as gateway serve does once it is up (NG's process does the same)
            counting = CountingStore(ne.store)
            ne.store = counting  # type: ignore[assignment]
            await _ng_busy(ng, busy_out)  # resets NG's meter
            meter.reset()
            counting_cpu_before = _counting_cpu
            if profiler:
                profiler.enable()
            started = time.perf_counter()
            ids = await submit_referrals(ne, args.n, batch=args.batch, tag="bench")
            submitted = time.perf_counter() - started
            inbox_done, delivered_done = await _wait_counts(ne_db, ng_db, warm + args.n, started, 600)
            if profiler:
                profiler.disable()
            ne_busy, ng_busy = meter.snapshot(), await _ng_busy(ng, busy_out)
            ne_busy["process_cpu_seconds"] = round(
                ne_busy["process_cpu_seconds"] - (_counting_cpu - counting_cpu_before), 3)
            envelope_bytes = counting.envelope_bytes
            ne.store = counting._inner
        assert await ng.stop() == 0
    finally:
        if ng.running:
            await ng.kill()
        directory = read_directory(settings_for(NIGER, tmp, transport="amqp", amqp_url=args.amqp_url, run_id=run_id))
        await delete_broker_names(args.amqp_url, run_id, directory.agencies)
    calls = dict(counting.calls)
    writes = sum(v for k, v in calls.items() if k in WRITES)
    result = {
        "n": args.n,
        "envelope_bytes": envelope_bytes,
        "submit_seconds": round(submitted, 3),
        "all_in_ng_inbox_seconds": round(inbox_done, 3),
        "all_delivered_at_ne_seconds": round(delivered_done, 3),
        "referrals_per_second": round(args.n / delivered_done, 1),
        "broker_messages_per_second": round(2 * args.n / delivered_done, 1),
        "ne_store_calls": calls,
        "ne_store_writes_per_referral": round(writes / args.n, 2),
        "ne_store_calls_per_referral": round(sum(calls.values()) / args.n, 2),
        "ne_busy": ne_busy,
        "ng_busy": ng_busy,
        # Target 1 of issue 14: gateway CPU per referral per side (all threads of the process).
        "ne_cpu_ms_per_referral": round(ne_busy["process_cpu_seconds"] * 1000 / args.n, 2),
        "ng_cpu_ms_per_referral": round(ng_busy["process_cpu_seconds"] * 1000 / args.n, 2),
    }
    if profiler:
        result["profile_ne"] = _top(pstats.Stats(profiler))
        result["profile_ng"] = _top(pstats.Stats(str(tmp / "ng.prof")))
    return result


async def _ng_busy(ng: GatewayProcess, path: Path) -> dict[str, float]:
    """NG's loop/store busy seconds since the last call (SIGUSR1 makes it write them)."""
    path.unlink(missing_ok=True)
    os.kill(ng.pid, signal.SIGUSR1)
    for _ in range(200):
        await asyncio.sleep(0.02)
        if path.exists() and path.stat().st_size:
            return json.loads(path.read_text())
    raise SystemExit("NG did not report its busy times")


def _top(stats: pstats.Stats, count: int = 18) -> str:
    out = io.StringIO()
    stats.stream = out  # type: ignore[attr-defined]
    stats.sort_stats("tottime").print_stats(count)
    return out.getvalue()


async def raw_run(args: argparse.Namespace, size: int) -> dict[str, Any]:
    """Publish→consume of ``n`` messages of ``size`` bytes with the gateway's guarantees."""
    defaults = Settings(agency_id=NIGERIA, demo_keys=True)
    name = f"bench-raw-{uuid.uuid4().hex[:10]}"
    body = os.urandom(size)
    publisher = await aio_pika.connect(args.amqp_url)
    consumer = await aio_pika.connect(args.amqp_url)
    try:
        pub_channel = await publisher.channel(publisher_confirms=True, on_return_raises=True)
        exchange = await pub_channel.declare_exchange(name, ExchangeType.TOPIC, durable=True)
        queue = await pub_channel.declare_queue(name, durable=True, arguments={"x-queue-type": "quorum"})
        await queue.bind(exchange, routing_key=NIGERIA)

        con_channel = await consumer.channel()
        await con_channel.set_qos(prefetch_count=defaults.prefetch)
        con_queue = await con_channel.declare_queue(name, passive=True)
        done = asyncio.Event()
        received = 0

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            nonlocal received
            await message.ack()
            received += 1
            if received >= args.n:
                done.set()

        await con_queue.consume(on_message, no_ack=False)
        started, cpu_started = time.perf_counter(), time.process_time()
        for first in range(0, args.n, defaults.outbox_batch):
            await asyncio.gather(*(
                exchange.publish(
                    aio_pika.Message(body, message_id=str(uuid.uuid4()), delivery_mode=DeliveryMode.PERSISTENT,
                                     headers={"type": "referral.request", "x-sender": NIGER, "x-recipient": NIGERIA}),
                    routing_key=NIGERIA, mandatory=True,
                )
                for _ in range(first, min(first + defaults.outbox_batch, args.n))
            ))
        published = time.perf_counter() - started
        await asyncio.wait_for(done.wait(), 300)
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
        await con_channel.close()
        await pub_channel.queue_delete(name)
        await pub_channel.exchange_delete(name)
    finally:
        await consumer.close()
        await publisher.close()
    return {
        "n": args.n,
        "message_bytes": size,
        "publish_confirmed_seconds": round(published, 3),
        "all_acked_seconds": round(elapsed, 3),
        "messages_per_second": round(args.n / elapsed, 1),
        # Publisher and consumer together, in this one process.
        "cpu_ms_per_message": round(cpu * 1000 / args.n, 3),
        "prefetch": defaults.prefetch,
        "publish_batch": defaults.outbox_batch,
    }


async def commit_latency(tmp: Path, count: int = 300) -> float:
    """Mean seconds of one store write transaction (append_audit) on this disk."""
    store = await open_store(f"sqlite:///{tmp / 'commit-latency.db'}")
    try:
        entry = AuditEntry(at=__import__("datetime").datetime.now(__import__("datetime").timezone.utc),
                           event_type="stats.read", actor="bench", detail_json="{}")
        await store.append_audit(entry)
        started = time.perf_counter()
        for _ in range(count):
            await store.append_audit(entry)
        return (time.perf_counter() - started) / count
    finally:
        await store.close()


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="throughput-bench-") as tmp_name:
        tmp = Path(tmp_name)
        latency = await commit_latency(tmp)
        gateway = await gateway_run(args, tmp)
        raw = await raw_run(args, gateway["envelope_bytes"])
    writes = gateway["ne_store_writes_per_referral"]
    return {
        "python": platform.python_version(),
        "event_loop": event_loop.loop_name(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "store_commit_ms": round(latency * 1000, 3),
        "ne_store_ceiling_referrals_per_second": round(1 / (writes * latency), 1) if writes else None,
        "gateway": gateway,
        "raw": raw,
        "ratio_raw_msgs_per_gateway_referral": round(raw["messages_per_second"] / gateway["referrals_per_second"], 1),
        "ratio_raw_per_gateway_broker_message": round(
            raw["messages_per_second"] / gateway["broker_messages_per_second"], 1),
    }


def print_table(result: dict[str, Any]) -> None:
    g, r = result["gateway"], result["raw"]
    print(f"{g['n']} messages of {r['message_bytes']} B; Python {result['python']} ({result['event_loop']} loop), "
          f"{result['cpus']} CPUs")
    print(f"{'path':<52}{'seconds':>9}{'per s':>9}")
    rows = [
        ("raw aio-pika: confirmed publish -> manual ack", r["all_acked_seconds"], r["messages_per_second"]),
        ("gateway: submit into NE outbox (202 point)", g["submit_seconds"], g["n"] / g["submit_seconds"]),
        ("gateway: all stored in NG inbox", g["all_in_ng_inbox_seconds"], g["n"] / g["all_in_ng_inbox_seconds"]),
        ("gateway: all delivered at NE (receipt back)", g["all_delivered_at_ne_seconds"], g["referrals_per_second"]),
    ]
    for label, seconds, rate in rows:
        print(f"{label:<52}{seconds:>9.2f}{rate:>9.0f}")
    print(f"ratio raw msg/s : gateway referral/s           {result['ratio_raw_msgs_per_gateway_referral']:>6.1f}x")
    print(f"ratio raw msg/s : gateway broker msg/s (2/ref)  {result['ratio_raw_per_gateway_broker_message']:>6.1f}x")
    print(f"store: {result['store_commit_ms']:.2f} ms per fsync'd commit; NE does "
          f"{g['ne_store_writes_per_referral']:.1f} writes ({g['ne_store_calls_per_referral']:.1f} calls) per referral "
          f"on one writer thread -> ceiling ~{result['ne_store_ceiling_referrals_per_second']:.0f} referrals/s")
    print(f"CPU per referral (process CPU time / referrals): NE {g['ne_cpu_ms_per_referral']:.2f} ms, "
          f"NG {g['ng_cpu_ms_per_referral']:.2f} ms; raw aio-pika {r['cpu_ms_per_message']:.2f} ms per message "
          "(publish + consume)")
    print(f"{'during the gateway run (seconds; counts)':<40}{'wall':>7}{'loop':>7}{'store':>7}{'st.cpu':>7}"
          f"{'commits':>8}{'w.jobs':>8}{'reads':>7}")
    for side in ("ne", "ng"):
        b = g[f"{side}_busy"]
        print(f"  {side.upper() + (' (in-process, submits)' if side == 'ne' else ' (subprocess)'):<38}"
              f"{b['wall_seconds']:>7.2f}{b['loop_busy_seconds']:>7.2f}{b['store_thread_busy_seconds']:>7.2f}"
              f"{b['store_thread_cpu_seconds']:>7.2f}{b['store_commits']:>8}{b['store_write_jobs']:>8}{b['store_reads']:>7}")
    for side in ("ne", "ng"):
        b = g[f"{side}_busy"]
        print(f"  {side.upper()} store per referral: {b['store_commits'] / g['n']:.2f} group commits "
              f"({b['store_write_jobs'] / g['n']:.1f} writes), {b['store_reads'] / g['n']:.1f} reads, "
              f"{b['store_thread_cpu_seconds'] * 1000 / g['n']:.2f} ms store-thread CPU; ceiling "
              f"~{g['n'] / max(b['store_thread_busy_seconds'], 1e-9):.0f} referrals/s "
              f"(store busy {b['store_thread_busy_seconds'] / b['wall_seconds']:.0%} of wall)")
    if "profile_ne" in g:
        print("\n--- cProfile NE (this process, event-loop thread, by tottime) ---")
        print(g["profile_ne"])
        print("--- cProfile NG (subprocess, event-loop thread, by tottime) ---")
        print(g["profile_ng"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=50, help="referrals submitted concurrently at a time")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--amqp-url", default=os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/"))
    parser.add_argument("--profile", action="store_true", help="cProfile both gateways (slower)")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--event-loop", default="auto", choices=EVENT_LOOPS,
                        help="event loop of both gateways and of the raw baseline (the event_loop setting)")
    args = parser.parse_args()
    configure_logging("warning")  # JSON lines on stderr, as in production; info would cost time
    result = event_loop.run(main_async(args), args.event_loop)
    print_table(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
