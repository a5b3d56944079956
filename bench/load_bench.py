"""Sustained load: referrals/s, end-to-end latency percentiles and memory growth of two
gateways (each in its own process, each on its own broker), against raw aio-pika on the
same broker path, in one run.

    .venv/bin/python bench/load_bench.py [--soak-seconds 600] [--quick] [--out FILE]
        [--topology auto|one-broker|two-brokers] [--window 64] [--seed 1]

Phases (see bench/README.md, "load_bench.py"):

1. **saturation** -- closed loop: ``--window`` referrals in flight end to end; a new one is
   submitted when a signed ``delivered`` receipt for an earlier one is back at NE. The
   completion rate over the second part of the phase is the *saturation rate*.
2. **open loop at 50% and 90%** of it -- Poisson arrivals at a fixed rate, each submitted at
   its scheduled time whatever happened to the earlier ones, latency measured from the
   scheduled time (no coordinated omission).
3. **soak** -- open loop at 50% for ``--soak-seconds``; RSS of both gateway processes
   (and of the broker VMs) sampled every ``--rss-interval`` seconds: start, end, max, least-squares slope MB/min.
4. **raw aio-pika** on the same path (publisher confirms, persistent, mandatory, quorum
   queues, manual acks at the gateway's prefetch, same message size): closed-loop
   throughput, and open-loop latency at the same absolute rates as phase 2.

Each gateway is a subprocess of this script (``--gateway-process``, internal) with the HTTP
API; the benchmark submits through ``POST /referrals`` as a case management system would.
Timings come from the gateways themselves: the store is wrapped so that NG writes
``stored referral.request <id> <monotonic time>`` when a referral is committed to its inbox
and NE writes ``status delivered <id> <t>`` when the receipt has moved the outbox row to
``delivered`` (CLOCK_MONOTONIC is one clock for all processes of the machine).

Two brokers: NE's gateway talks only to the system RabbitMQ, NG's only to a second node
started here (``testkit/rabbit_nodes.py``); each broker has its country's shipped topology
(``deploy/rabbitmq/countries``) and the shipped shovels move ``outbound.<C>`` to the
partner's ``referrals.ingress`` (ack-mode on-confirm), both ways. Without a
second node (``--topology one-broker``, or ``auto`` when it is unavailable), both gateways
share the system broker and the result says so.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import math
import os
import platform
import random
import secrets
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import aio_pika  # noqa: E402
import aiohttp  # noqa: E402
from aio_pika import DeliveryMode, ExchangeType  # noqa: E402

from gateway import event_loop  # noqa: E402
from gateway.heap import settle_heap  # noqa: E402
from gateway.bootstrap import read_directory  # noqa: E402
from gateway.logs import configure_logging  # noqa: E402
from gateway.schema import load_example  # noqa: E402
from gateway.settings import EVENT_LOOPS, Settings, User, with_overrides  # noqa: E402
from testkit.gateway_pair import NIGER, NIGERIA, delete_broker_names, settings_for  # noqa: E402
from testkit.lifeline import die_with_parent  # noqa: E402

DEFAULT_URL = os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
TOKEN_ENV, SECRET_ENV = "LOAD_BENCH_TOKEN", "LOAD_BENCH_PSEUDONYM_SECRET"


# --- the gateway subprocess ----------------------------------------------------------------

class TimingStore:
    """Wraps a gateway's store; writes one line per referral milestone to an events file.

    ``stored <type> <id> <t>`` once a new inbox row is committed (``add_incoming`` True) and
    ``status <status> <id> <t>`` once a receipt moved an outbox row (``set_status`` True).
    Line-buffered writes: constant memory, so they do not disturb the RSS measurement."""

    def __init__(self, inner: Any, events: Any) -> None:
        self._inner = inner
        self._events = events

    async def add_incoming(self, msg: Any, **kwargs: Any) -> bool:
        stored = await self._inner.add_incoming(msg, **kwargs)
        self._events.write(f"{'stored' if stored else 'dup'} {msg.message_type} {msg.message_id} {time.monotonic():.6f}\n")
        return stored

    async def set_status(self, message_id: str, status: str, at: datetime, **kwargs: Any) -> bool:
        applied = await self._inner.set_status(message_id, status, at, **kwargs)
        if applied:
            self._events.write(f"status {status} {message_id} {time.monotonic():.6f}\n")
        return applied

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


async def gateway_process(args: argparse.Namespace) -> None:
    """One agency's gateway with its HTTP API, as ``gateway serve`` runs it, plus timing."""
    from aiohttp import web

    from gateway.api import create_app
    from gateway.bootstrap import open_gateway

    token = os.environ[TOKEN_ENV]
    settings = settings_for(
        args.agency, Path(args.tmp), transport="amqp", amqp_url=args.amqp_url, run_id=args.run_id,
        users=(User("bench.caseworker", "caseworker", hashlib.sha256(token.encode()).hexdigest()),),
        pseudonym_secret_hex=os.environ[SECRET_ENV], http_port=args.http_port,
        declare_topology=not args.no_declare,
    )
    # settings_for shortens retries and the outbox poll for tests; run with production values.
    settings = with_overrides(settings, retry_initial_seconds=Settings.retry_initial_seconds,
                              retry_max_seconds=Settings.retry_max_seconds,
                              outbox_poll_seconds=Settings.outbox_poll_seconds)
    events = open(args.events_out, "a", buffering=1, encoding="utf-8")  # noqa: SIM115
    gateway = await open_gateway(settings)
    gateway.store = TimingStore(gateway.store, events)  # type: ignore[assignment]
    if args.heap == "settled":
        settle_heap()  # as gateway serve does, before the first delivery
    await gateway.start()
    await gateway.wait_ready(30)
    runner = web.AppRunner(create_app(gateway, settings), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, settings.http_host, settings.http_port).start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    print(f"READY {os.getpid()}", flush=True)
    await stop.wait()
    await runner.cleanup()
    await gateway.stop()
    Path(args.metrics_out).write_text(gateway.metrics.render(), encoding="utf-8")
    await gateway.store.close()
    events.close()


class GatewayProc:
    """A gateway subprocess (this script with ``--gateway-process``)."""

    def __init__(self, agency: str, tmp: Path, run_id: str, amqp_url: str, port: int, log_level: str,
                 declare_topology: bool = True, loop: str = "auto", heap: str = "settled") -> None:
        self.agency, self.tmp, self.port = agency, tmp, port
        self.events_path = tmp / f"{agency}.events"
        self.metrics_path = tmp / f"{agency}.metrics.txt"
        self.log_path = tmp / f"{agency}.log"
        self.args = ([sys.executable, str(Path(__file__).resolve()), "--gateway-process", "--agency", agency,
                      "--tmp", str(tmp), "--run-id", run_id, "--amqp-url", amqp_url, "--http-port", str(port),
                      "--events-out", str(self.events_path), "--metrics-out", str(self.metrics_path),
                      "--log-level", log_level, "--event-loop", loop, "--heap", heap]
                     + ([] if declare_topology else ["--no-declare"]))
        self.process: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None

    async def start(self, env: dict[str, str], timeout: float = 60) -> None:
        with open(self.log_path, "ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                *self.args, cwd=ROOT, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=log,
                env={**os.environ, **env, "PYTHONUNBUFFERED": "1"})
        assert self.process.stdout is not None
        try:
            line = await asyncio.wait_for(self.process.stdout.readline(), timeout)
        except asyncio.TimeoutError:
            await self.kill()
            raise SystemExit(f"{self.agency} gateway not ready in {timeout}s; see {self.log_path}") from None
        if not line.startswith(b"READY"):
            await asyncio.wait_for(self.process.wait(), 10)
            raise SystemExit(f"{self.agency} gateway failed: {self.log_path.read_text()[-3000:]}")

    async def stop(self, timeout: float = 60) -> int:
        assert self.process is not None
        if self.running:
            self.process.send_signal(signal.SIGTERM)
        try:
            return await asyncio.wait_for(self.process.wait(), timeout)
        except asyncio.TimeoutError:
            return await self.kill()

    async def kill(self) -> int:
        assert self.process is not None
        if self.running:
            os.kill(self.process.pid, signal.SIGKILL)
        return await asyncio.wait_for(self.process.wait(), 30)


# --- /proc readings ---------------------------------------------------------------------

def rss_mb(pid: int) -> float:
    """Resident set size of ``pid`` in MB (VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds used by ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_cpu() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


def machine_info() -> dict[str, Any]:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())
    mem_kb = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                  if line.startswith("MemTotal:"))
    return {"cpus": os.cpu_count(), "cpu_model": model, "memory_gb": round(mem_kb / 1024 / 1024, 1),
            "machine": platform.machine(), "kernel": platform.release(), "loadavg_start": os.getloadavg()}


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in ("aio-pika", "aiormq", "aiohttp", "pynacl", "jsonschema-rs", "uvloop"):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    try:
        found["git_commit"] = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                                             text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        found["git_dirty"] = "yes" if dirty else "no"
    except (OSError, subprocess.SubprocessError):
        pass
    return found


async def server_version(url: str) -> str:
    connection = await aio_pika.connect(url)
    try:
        props = connection.transport.connection.server_properties  # type: ignore[union-attr]
        return f"{props.get('product', 'RabbitMQ')} {props.get('version')} ({props.get('cluster_name')})"
    finally:
        await connection.close()


# --- statistics ---------------------------------------------------------------------------

def percentile(sorted_values: list[float], p: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    if not sorted_values:
        return float("nan")
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def summary_ms(values: list[float]) -> dict[str, Any]:
    """Latency summary in milliseconds."""
    ordered = sorted(values)
    if not ordered:
        return {"n": 0}
    return {"n": len(ordered), "p50": round(percentile(ordered, 50) * 1000, 1),
            "p95": round(percentile(ordered, 95) * 1000, 1), "p99": round(percentile(ordered, 99) * 1000, 1),
            "max": round(ordered[-1] * 1000, 1), "mean": round(sum(ordered) / len(ordered) * 1000, 1)}


def slope_per_minute(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, value) points, per minute."""
    if len(points) < 2:
        return 0.0
    n = len(points)
    mean_t = sum(t for t, _ in points) / n
    mean_v = sum(v for _, v in points) / n
    var = sum((t - mean_t) ** 2 for t, _ in points)
    if var == 0:
        return 0.0
    return sum((t - mean_t) * (v - mean_v) for t, v in points) / var * 60


# --- load generation ---------------------------------------------------------------------

class EventTail:
    """Follows the gateways' event files: when each referral was stored at NG / delivered at NE."""

    def __init__(self, ne_events: Path, ng_events: Path) -> None:
        self.paths = {"ne": ne_events, "ng": ng_events}
        self.offsets = {"ne": 0, "ng": 0}
        self.partial = {"ne": "", "ng": ""}
        self.stored: dict[str, float] = {}       # referral id -> stored in NG's inbox
        self.stored_copies: dict[str, int] = {}  # referral id -> add_incoming calls that stored it
        self.redeliveries: int = 0               # add_incoming calls that found the id already there
        self.delivered: dict[str, float] = {}    # referral id -> NE outbox row became 'delivered'
        self.waiters: dict[str, asyncio.Future[float]] = {}

    def poll(self) -> None:
        for side, path in self.paths.items():
            if not path.exists():
                continue
            with open(path, encoding="utf-8") as f:
                f.seek(self.offsets[side])
                chunk = f.read()
                self.offsets[side] = f.tell()
            text = self.partial[side] + chunk
            lines = text.split("\n")
            self.partial[side] = lines.pop()
            for line in lines:
                self._line(line.split())

    def _line(self, parts: list[str]) -> None:
        kind, what, message_id, at = parts[0], parts[1], parts[2], float(parts[3])
        if kind == "stored" and what == "referral.request":
            self.stored.setdefault(message_id, at)
            self.stored_copies[message_id] = self.stored_copies.get(message_id, 0) + 1
        elif kind == "dup" and what == "referral.request":
            self.redeliveries += 1
        elif kind == "status" and what == "delivered":
            self.delivered.setdefault(message_id, at)
            waiter = self.waiters.pop(message_id, None)
            if waiter is not None and not waiter.done():
                waiter.set_result(at)

    async def run(self, interval: float = 0.01) -> None:
        while True:
            self.poll()
            await asyncio.sleep(interval)

    def wait_delivered(self, message_id: str) -> asyncio.Future[float]:
        future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        if message_id in self.delivered:
            future.set_result(self.delivered[message_id])
        else:
            self.waiters[message_id] = future
        return future


@dataclass
class Submission:
    phase: str
    scheduled: float          # open loop: the arrival time; closed loop: when the slot freed
    posted: float = 0.0       # when the POST was started
    answered: float = 0.0     # when the 202 (or error) came back
    status: int = 0
    message_id: str = ""


@dataclass
class Client:
    """Submits referrals to NE's HTTP API like a case management system."""

    session: aiohttp.ClientSession
    base_url: str
    token: str
    tail: EventTail
    submissions: list[Submission] = field(default_factory=list)
    counter: int = 0

    def __post_init__(self) -> None:
        self.payload = load_example("referral.request")
        self.headers = {"Authorization": f"Bearer {self.token}"}

    async def submit(self, phase: str, scheduled: float) -> Submission:
        self.counter += 1
        sub = Submission(phase, scheduled)
        self.submissions.append(sub)
        body = {"recipient": NIGERIA, "local_case_id": f"NE-LOAD-{self.counter:07d}", "payload": self.payload}
        sub.posted = time.monotonic()
        try:
            async with self.session.post(f"{self.base_url}/referrals", json=body, headers=self.headers) as response:
                sub.status = response.status
                answer = await response.json() if response.status == 202 else {}
        except (aiohttp.ClientError, asyncio.TimeoutError):
            sub.status = -1
            answer = {}
        sub.answered = time.monotonic()
        sub.message_id = answer.get("message_id", "")
        return sub


async def closed_loop(client: Client, phase: str, window: int, seconds: float) -> tuple[float, float]:
    """``window`` submitters, each waiting for its referral's receipt before the next; (start, end)."""
    started = time.monotonic()
    deadline = started + seconds

    async def worker() -> None:
        while time.monotonic() < deadline:
            sub = await client.submit(phase, time.monotonic())
            if sub.status != 202:
                await asyncio.sleep(0.05)
                continue
            await asyncio.wait_for(client.tail.wait_delivered(sub.message_id), 300)

    await asyncio.gather(*(worker() for _ in range(window)))
    return started, deadline


async def open_loop(client: Client, phase: str, rate: float, seconds: float, rng: random.Random,
                    arrivals: str) -> tuple[float, float]:
    """Submit at ``rate``/s for ``seconds``, each at its scheduled time regardless of earlier
    answers (Poisson or evenly spaced arrivals); (start, end)."""
    started = time.monotonic()
    end = started + seconds
    tasks: set[asyncio.Task[Submission]] = set()
    next_at = started
    while True:
        next_at += rng.expovariate(rate) if arrivals == "poisson" else 1 / rate
        if next_at >= end:
            break
        delay = next_at - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(client.submit(phase, next_at))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    await asyncio.sleep(max(0.0, end - time.monotonic()))
    if tasks:
        await asyncio.gather(*tasks)
    return started, end


async def drain(client: Client, phase: str, timeout: float) -> float:
    """Wait until every accepted referral of ``phase`` is delivered at NE; seconds waited."""
    started = time.monotonic()
    pending = [s.message_id for s in client.submissions if s.phase == phase and s.status == 202]
    while any(m not in client.tail.delivered for m in pending):
        if time.monotonic() - started > timeout:
            missing = sum(m not in client.tail.delivered for m in pending)
            print(f"  ! {phase}: {missing} referrals not delivered after {timeout:.0f}s of draining", flush=True)
            break
        await asyncio.sleep(0.05)
    return time.monotonic() - started


class Probe:
    """Per-phase CPU of each gateway process and of the machine; RSS samples of both gateways."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.rss: list[dict[str, Any]] = []
        self.t0 = time.monotonic()

    def cpu(self) -> dict[str, Any]:
        return {"at": time.monotonic(), "machine": machine_cpu(),
                **{side: cpu_seconds(pid) for side, pid in {**self.pids, "bench": os.getpid()}.items()}}

    @staticmethod
    def cpu_delta(before: dict[str, Any], after: dict[str, Any], referrals: int, cpus: int) -> dict[str, Any]:
        wall = after["at"] - before["at"]
        busy = after["machine"][0] - before["machine"][0]
        total = after["machine"][1] - before["machine"][1]
        found: dict[str, Any] = {"machine_cpu_busy_share": round(busy / total, 3) if total else None}
        ours = 0.0
        for side in after:
            if side in ("at", "machine"):
                continue
            used = after[side] - before[side]
            ours += used
            found[f"{side}_cpu_share_of_one_core"] = round(used / wall, 3) if wall else None
            found[f"{side}_cpu_ms_per_referral"] = round(used / referrals * 1000, 2) if referrals else None
        # What the rest of the machine (other people's tests) took: the noise in this phase.
        if total and wall:
            found["other_processes_cpu_share_of_machine"] = round(max(0.0, busy / total - ours / (wall * cpus)), 3)
        return found

    def sample(self, phase: str) -> None:
        self.rss.append({"t": round(time.monotonic() - self.t0, 1), "phase": phase,
                         **{f"{side}_mb": round(rss_mb(pid), 2) for side, pid in self.pids.items()}})

    async def sample_every(self, interval: float, phase: Callable[[], str]) -> None:
        while True:
            self.sample(phase())
            await asyncio.sleep(interval)


def phase_result(client: Client, phase: str, start: float, end: float, drain_seconds: float,
                 measure_from: float | None = None) -> dict[str, Any]:
    """Rates and latencies of one phase, from the submissions and the gateways' timestamps."""
    tail = client.tail
    subs = [s for s in client.submissions if s.phase == phase]
    ok = [s for s in subs if s.status == 202]
    seconds = end - start
    window_from = start if measure_from is None else measure_from
    in_window = [s for s in ok if window_from <= tail.delivered.get(s.message_id, -1) <= end]
    stored_in_window = [s for s in ok if window_from <= tail.stored.get(s.message_id, -1) <= end]
    to_stored = [tail.stored[s.message_id] - s.scheduled for s in ok if s.message_id in tail.stored]
    to_delivered = [tail.delivered[s.message_id] - s.scheduled for s in ok if s.message_id in tail.delivered]
    return {
        "seconds": round(seconds, 2),
        "submitted": len(subs),
        "accepted_202": len(ok),
        "http_errors": len(subs) - len(ok),
        "offered_per_second": round(len(subs) / seconds, 1),
        "delivered_per_second_in_window": round(len(in_window) / (end - window_from), 1),
        "stored_per_second_in_window": round(len(stored_in_window) / (end - window_from), 1),
        "measured_from_second": round(window_from - start, 2),
        # Every accepted referral of the phase over the time from the phase start to the last
        # receipt: equals the offered rate when the gateways keep up, falls below it when not.
        "completed_per_second": round(len(to_delivered) / (max(tail.delivered[s.message_id] for s in ok
                                                                if s.message_id in tail.delivered) - start), 1)
        if to_delivered else 0.0,
        "not_stored_at_ng": sum(s.message_id not in tail.stored for s in ok),
        "not_delivered_at_ne": sum(s.message_id not in tail.delivered for s in ok),
        "drain_seconds_after_last_arrival": round(drain_seconds, 2),
        "latency_ms_submit_to_202": summary_ms([s.answered - s.scheduled for s in subs]),
        "latency_ms_submit_to_stored_at_ng": summary_ms(to_stored),
        "latency_ms_submit_to_delivered_at_ne": summary_ms(to_delivered),
        "client_lag_ms_schedule_to_post": summary_ms([s.posted - s.scheduled for s in subs]),
    }


def minute_series(client: Client, phase: str, start: float, end: float, step: float = 60.0) -> list[dict[str, Any]]:
    """Per-``step`` arrivals, delivered and p99 submit->delivered latency (drift over a soak)."""
    series = []
    at = start
    while at < end - 1e-9:
        upto = min(at + step, end)
        subs = [s for s in client.submissions if s.phase == phase and s.status == 202 and at <= s.scheduled < upto]
        lat = sorted(client.tail.delivered[s.message_id] - s.scheduled for s in subs
                     if s.message_id in client.tail.delivered)
        series.append({"from_s": round(at - start), "arrivals": len(subs),
                       "p50_ms": round(percentile(lat, 50) * 1000, 1) if lat else None,
                       "p99_ms": round(percentile(lat, 99) * 1000, 1) if lat else None})
        at = upto
    return series


# --- brokers ------------------------------------------------------------------------------

@dataclass
class Brokers:
    """Where each gateway connects, and how to build a raw queue path equal to the gateways'."""

    topology: str
    ne_url: str
    ng_url: str
    description: str
    #: Two brokers: the gateways find the shipped country topology (declare_topology false).
    declare_topology: bool = True
    #: ``async with raw_path(name)`` -> (publish exchange name, consume queue name) for raw aio-pika.
    raw_path: Callable[[str], Any] | None = None
    broker_pids: dict[str, int] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    #: Two brokers: ``await prepare(run_id)`` provisions the topology the gateways will use.
    prepare: Callable[[str], Awaitable[None]] | None = None


async def _system_broker_pid(amqp_url: str) -> int | None:
    """OS pid of the system broker's VM (to sample its RSS/CPU), or None if rabbitmqctl cannot tell."""
    try:
        from testkit.rabbit_nodes import system_node

        return int((await system_node(amqp_url).ctl("eval", "os:getpid().", timeout=30)).strip().strip('"'))
    except Exception:  # noqa: BLE001 - optional information
        return None


@asynccontextmanager
async def one_broker(args: argparse.Namespace, why: str = "") -> AsyncIterator[Brokers]:
    """Both gateways on the system broker; raw path: a topic exchange into a quorum queue."""
    @asynccontextmanager
    async def raw_path(name: str) -> AsyncIterator[tuple[str, str]]:
        connection = await aio_pika.connect(args.amqp_url)
        try:
            channel = await connection.channel()
            exchange = await channel.declare_exchange(name, ExchangeType.TOPIC, durable=True)
            queue = await channel.declare_queue(name, durable=True, arguments={"x-queue-type": "quorum"})
            await queue.bind(exchange, routing_key=NIGERIA)
            yield name, name
            await channel.queue_delete(name)
            await channel.exchange_delete(name)
        finally:
            await connection.close()

    pid = await _system_broker_pid(args.amqp_url)
    yield Brokers("one-broker", args.amqp_url, args.amqp_url,
                  "ONE broker (the system RabbitMQ) shared by both gateways" + (f"; {why}" if why else ""),
                  raw_path=raw_path, broker_pids={"broker": pid} if pid else {})


@asynccontextmanager
async def brokers(args: argparse.Namespace, tmp: Path) -> AsyncIterator[Brokers]:
    """The system broker only, or two nodes joined by shovels (testkit/rabbit_nodes.py)."""
    if args.topology == "one-broker":
        async with one_broker(args) as found:
            yield found
        return
    try:
        from testkit import rabbit_nodes
    except ImportError:
        rabbit_nodes = None  # type: ignore[assignment]
    why = "testkit/rabbit_nodes.py not available" if rabbit_nodes is None else rabbit_nodes.rabbit_available()
    if why:
        if args.topology == "two-brokers":
            raise SystemExit(f"cannot run two brokers: {why}")
        print(f"{why}: falling back to one broker", flush=True)
        async with one_broker(args, why) as found:
            yield found
        return
    async with two_brokers(args, tmp) as found:
        yield found


async def _shovel_states(node: Any) -> dict[str, str]:
    """``{shovel name: state}`` of the dynamic shovels on ``node`` (running, starting, ...)."""
    import re

    out = await node.ctl("eval", "[{N, case S of {St, _} -> St; St -> St end} || "
                                 "{{_, N}, dynamic, S, _} <- rabbit_shovel_status:status()].")
    return dict(re.findall(r'<<"([^"]+)">>\s*,\s*(\w+)', out))


def shovel_uri(amqp_url: str) -> str:
    """``amqp_url`` as a shovel URI: in the AMQP URI spec a bare ``/`` path names the vhost
    "" (not "/"), which aio-pika forgives and the shovel does not."""
    from urllib.parse import urlparse

    parsed = urlparse(amqp_url)
    return parsed._replace(path="/%2F" if parsed.path in ("", "/") else parsed.path).geturl()


@asynccontextmanager
async def two_brokers(args: argparse.Namespace, tmp: Path) -> AsyncIterator[Brokers]:
    """NE's broker is the system RabbitMQ; NG's is a second node started here. Each is given
    its country's shipped topology (deploy/rabbitmq/countries) under this run's names, and
    the shipped shovels (``outbound.<C>`` -> partner's ``referrals.ingress``, ack-mode
    on-confirm) are set on both, pointing straight at the other node (no proxy)."""
    from testkit.rabbit_nodes import delete_shovel, provision_country, set_shovel, start_node, system_node

    system = system_node(args.amqp_url)
    await system.ensure_plugin("rabbitmq_shovel")
    print("starting a second RabbitMQ node (NG's broker)", flush=True)
    node = await start_node(tmp / "ng-broker", name="ng-bench")
    made: list[tuple[Any, str]] = []
    provisioned: list[Any] = []

    async def link(run_id: str) -> None:
        """Provision both countries under ``run_id`` and shovel their outbound queues across."""
        ne = await provision_country(system, "NE", run_id)
        provisioned.append(ne)
        ng = await provision_country(node, "NG", run_id)
        provisioned.append(ng)
        for here, there, shovels in ((system, node, ne.shovels("NG")), (node, system, ng.shovels("NE"))):
            for name, value in shovels:
                await set_shovel(here, name, {**value, "dest-uri": shovel_uri(there.amqp_url)})
                made.append((here, name))
        deadline = time.monotonic() + 60
        while True:
            states = {**await _shovel_states(system), **await _shovel_states(node)}
            if all(states.get(name) == "running" for _, name in made):
                return
            if time.monotonic() > deadline:
                raise SystemExit(f"shovels not running after 60 s: {states}")
            await asyncio.sleep(0.5)

    @asynccontextmanager
    async def raw_path(name: str) -> AsyncIterator[tuple[str, str]]:
        raw_id = uuid.uuid4().hex[:10]
        await link(raw_id)
        yield f"test-{raw_id}", f"test-{raw_id}.inbox.{NIGERIA}"

    try:
        ne_pid = await _system_broker_pid(args.amqp_url)
        found = Brokers("two-brokers", args.amqp_url, node.amqp_url,
                        "TWO brokers: NE gateway -> system RabbitMQ -> shovel -> second node -> NG gateway "
                        "(receipts back the same way)", declare_topology=False, raw_path=raw_path,
                        broker_pids={"ne_broker": ne_pid, "ng_broker": node.pid} if ne_pid else {"ng_broker": node.pid},
                        details={"ng_node": node.node, "ng_node_start_seconds": node.start_seconds,
                                 "shovel": "shipped deploy/rabbitmq/countries shovels, ack-mode on-confirm, "
                                           "src-prefetch-count 100, dest-uri straight to the other node"})
        found.prepare = link
        yield found
    finally:
        for here, name in made:
            try:
                await delete_shovel(here, name)
            except Exception as exc:  # noqa: BLE001 - report, keep cleaning
                print(f"  ! could not delete shovel {name}: {exc}", flush=True)
        for topology in provisioned:
            try:
                await topology.remove()
            except Exception as exc:  # noqa: BLE001
                print(f"  ! could not remove {topology.country} topology: {exc}", flush=True)
        await node.stop()


# --- raw aio-pika baseline ---------------------------------------------------------------

@asynccontextmanager
async def raw_path(found: Brokers, stack_name: str) -> AsyncIterator[tuple[Any, Any]]:
    """(publish exchange, consume queue) on the same path as the gateways' requests:
    topic exchange -> quorum queue [-> shovel -> ingress exchange -> quorum queue]."""
    defaults = Settings(agency_id=NIGERIA, demo_keys=True)
    assert found.raw_path is not None
    async with found.raw_path(stack_name) as (exchange_name, queue_name):
        publisher = await aio_pika.connect(found.ne_url)
        consumer = await aio_pika.connect(found.ng_url)
        try:
            pub_channel = await publisher.channel(publisher_confirms=True, on_return_raises=True)
            exchange = await pub_channel.get_exchange(exchange_name, ensure=True)
            con_channel = await consumer.channel()
            await con_channel.set_qos(prefetch_count=defaults.prefetch)
            queue = await con_channel.get_queue(queue_name, ensure=True)
            yield exchange, queue
            await con_channel.close()
        finally:
            await consumer.close()
            await publisher.close()


def raw_message(body: bytes, scheduled: float) -> aio_pika.Message:
    return aio_pika.Message(body, message_id=str(uuid.uuid4()), delivery_mode=DeliveryMode.PERSISTENT,
                            headers={"type": "referral.request", "x-sender": NIGER, "x-recipient": NIGERIA,
                                     "x-scheduled": f"{scheduled:.6f}"})


async def raw_throughput(found: Brokers, n: int, size: int) -> dict[str, Any]:
    """Closed loop: ``n`` messages, confirms awaited per outbox-sized batch, as fast as possible."""
    defaults = Settings(agency_id=NIGERIA, demo_keys=True)
    body = os.urandom(size)
    async with raw_path(found, f"bench-raw-{uuid.uuid4().hex[:10]}") as (exchange, queue):
        done = asyncio.Event()
        received = 0

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            nonlocal received
            await message.ack()
            received += 1
            if received >= n:
                done.set()

        await queue.consume(on_message, no_ack=False)
        started = time.monotonic()
        for first in range(0, n, defaults.outbox_batch):
            await asyncio.gather(*(exchange.publish(raw_message(body, started), routing_key=NIGERIA, mandatory=True)
                                   for _ in range(first, min(first + defaults.outbox_batch, n))))
        published = time.monotonic() - started
        await asyncio.wait_for(done.wait(), 600)
        elapsed = time.monotonic() - started
    return {"n": n, "message_bytes": size, "publish_confirmed_seconds": round(published, 3),
            "all_acked_seconds": round(elapsed, 3), "messages_per_second": round(n / elapsed, 1),
            "prefetch": defaults.prefetch, "publish_batch": defaults.outbox_batch}


async def raw_latency(found: Brokers, rate: float, seconds: float, size: int, rng: random.Random,
                      arrivals: str) -> dict[str, Any]:
    """Open loop at ``rate``: each message published (confirmed) at its scheduled time; latency
    from the scheduled time to the consumer's ack."""
    body = os.urandom(size)
    async with raw_path(found, f"bench-rawlat-{uuid.uuid4().hex[:10]}") as (exchange, queue):
        latencies: list[float] = []
        sent = 0

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            await message.ack()
            latencies.append(time.monotonic() - float(message.headers["x-scheduled"]))  # type: ignore[arg-type]

        await queue.consume(on_message, no_ack=False)
        started = time.monotonic()
        end = started + seconds
        tasks: set[asyncio.Task[Any]] = set()
        next_at = started
        while True:
            next_at += rng.expovariate(rate) if arrivals == "poisson" else 1 / rate
            if next_at >= end:
                break
            delay = next_at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(exchange.publish(raw_message(body, next_at), routing_key=NIGERIA, mandatory=True))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            sent += 1
        if tasks:
            await asyncio.gather(*tasks)
        waited = time.monotonic()
        while len(latencies) < sent and time.monotonic() - waited < 120:
            await asyncio.sleep(0.05)
    return {"rate": round(rate, 1), "seconds": seconds, "sent": sent, "acked": len(latencies),
            "latency_ms_publish_to_ack": summary_ms(latencies)}


# --- the run ------------------------------------------------------------------------------

def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def store_checks(tmp: Path, accepted_ids: set[str]) -> dict[str, Any]:
    """Loss and duplicates, counted from the two SQLite stores after both gateways stopped."""
    def rows(path: Path, sql: str) -> list[tuple[Any, ...]]:
        conn = sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True)
        try:
            return conn.execute(sql).fetchall()
        finally:
            conn.close()

    ne_db, ng_db = tmp / f"{NIGER}.db", tmp / f"{NIGERIA}.db"
    ne_out = dict(rows(ne_db, "SELECT status, count(*) FROM outbox WHERE message_type='referral.request' GROUP BY status"))
    ne_ids = {r[0] for r in rows(ne_db, "SELECT message_id FROM outbox WHERE message_type='referral.request'")}
    ng_ids = {r[0] for r in rows(ng_db, "SELECT message_id FROM inbox WHERE message_type='referral.request'")}
    received_twice = rows(ng_db, "SELECT count(*) FROM (SELECT message_id FROM audit_entries "
                                 "WHERE event_type='message.received' AND message_id IS NOT NULL "
                                 "GROUP BY message_id HAVING count(*) > 1)")[0][0]
    receipts_at_ne = rows(ne_db, "SELECT count(*) FROM inbox WHERE message_type='receipt'")[0][0]
    receipts_sent_by_ng = rows(ng_db, "SELECT count(*) FROM outbox WHERE message_type='receipt'")[0][0]
    return {
        "accepted_202": len(accepted_ids),
        "ne_outbox_referrals": len(ne_ids),
        "ne_outbox_by_status": ne_out,
        "ng_inbox_referrals": len(ng_ids),
        "accepted_but_missing_in_ne_outbox": len(accepted_ids - ne_ids),
        "lost_never_stored_at_ng": len(ne_ids - ng_ids),
        "at_ng_but_not_sent_by_ne": len(ng_ids - ne_ids),
        "ng_message_received_audited_twice": received_twice,
        "ng_receipts_queued": receipts_sent_by_ng,
        "ne_receipts_stored": receipts_at_ne,
    }


def metric_sum(text: str, name: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(f"gateway_{name}{{") or line.startswith(f"gateway_{name} "):
            total += float(line.rsplit(" ", 1)[1])
    return total


async def run(args: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(args.seed)
    token, secret = secrets.token_urlsafe(24), secrets.token_hex(32)
    env = {TOKEN_ENV: token, SECRET_ENV: secret}
    result: dict[str, Any] = {
        "benchmark": "load_bench", "started_utc": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": machine_info(), "versions": versions(), "event_loop": event_loop.loop_name(),
        "parameters": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
                       if k not in {"gateway_process", "agency", "tmp", "run_id", "events_out", "metrics_out",
                                    "http_port", "no_declare"}},
    }
    phase_name = "start"
    with tempfile.TemporaryDirectory(prefix="load-bench-") as tmp_name:
        tmp = Path(tmp_name)
        run_id = uuid.uuid4().hex[:10]
        async with AsyncExitStack() as stack:
            found = await stack.enter_async_context(brokers(args, tmp))
            result["topology"] = {"kind": found.topology, "description": found.description,
                                  "ne_broker": await server_version(found.ne_url),
                                  "ng_broker": await server_version(found.ng_url), **found.details}
            print(f"topology: {found.description}", flush=True)
            directory = read_directory(settings_for(NIGER, tmp, transport="amqp", amqp_url=found.ne_url, run_id=run_id))

            async def clean_gateway_names() -> None:
                for url in {found.ne_url, found.ng_url}:
                    await delete_broker_names(url, run_id, directory.agencies)

            if found.declare_topology:  # the gateways declare their names: delete them afterwards
                stack.push_async_callback(clean_gateway_names)
            if found.prepare is not None:  # two brokers: the country topology under this run's names
                await found.prepare(run_id)
            ng = GatewayProc(NIGERIA, tmp, run_id, found.ng_url, free_port(), args.log_level, found.declare_topology,
                             args.event_loop, args.heap)
            ne = GatewayProc(NIGER, tmp, run_id, found.ne_url, free_port(), args.log_level, found.declare_topology,
                             args.event_loop, args.heap)

            async def stop_gateways() -> None:
                for proc in (ne, ng):
                    if proc.running:
                        await proc.stop()

            stack.push_async_callback(stop_gateways)
            await ng.start(env)
            await ne.start(env)
            pids = {"ne": ne.pid, "ng": ng.pid, **found.broker_pids}
            probe = Probe(pids)
            probe.sample("started")
            tail = EventTail(ne.events_path, ng.events_path)
            tail_task = asyncio.create_task(tail.run())
            sampler = asyncio.create_task(probe.sample_every(args.rss_interval, lambda: phase_name))
            session = await stack.enter_async_context(aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=args.max_connections),
                timeout=aiohttp.ClientTimeout(total=120)))
            client = Client(session, f"http://127.0.0.1:{ne.port}", token, tail)
            phases: dict[str, Any] = {}
            cpus = os.cpu_count() or 1
            try:
                # Warm-up: connections, schema compilation, first-use caches.
                phase_name = "warmup"
                print(f"warm-up: {args.warmup_seconds:.0f}s closed loop", flush=True)
                start, end = await closed_loop(client, "warmup", args.window, args.warmup_seconds)
                await drain(client, "warmup", 120)
                envelope_bytes = sqlite3.connect(f"{(tmp / f'{NIGER}.db').absolute().as_uri()}?mode=ro", uri=True) \
                    .execute("SELECT length(envelope) FROM outbox WHERE message_type='referral.request' LIMIT 1") \
                    .fetchone()[0]

                # 1. Saturation: closed loop.
                phase_name = "saturation"
                print(f"saturation: closed loop, {args.window} in flight, {args.saturation_seconds:.0f}s", flush=True)
                before = probe.cpu()
                start, end = await closed_loop(client, "saturation", args.window, args.saturation_seconds)
                after = probe.cpu()
                drained = await drain(client, "saturation", 120)
                measure_from = start + args.saturation_seconds * 0.25
                sat = phase_result(client, "saturation", start, end, drained, measure_from)
                sat.update(Probe.cpu_delta(before, after, sat["accepted_202"], cpus))
                sat["window"] = args.window
                phases["saturation"] = sat
                saturation = sat["delivered_per_second_in_window"]
                print(f"  saturation: {saturation:.1f} referrals/s delivered end to end", flush=True)
                if saturation <= 0:
                    raise SystemExit("no referral was delivered during the saturation phase")

                # 2. Open loop at fractions of saturation.
                for fraction in args.fractions:
                    name = f"open_{round(fraction * 100)}pct"
                    phase_name = name
                    rate = saturation * fraction
                    print(f"{name}: open loop ({args.arrivals}) at {rate:.1f}/s for {args.open_seconds:.0f}s", flush=True)
                    before = probe.cpu()
                    start, end = await open_loop(client, name, rate, args.open_seconds, rng, args.arrivals)
                    after = probe.cpu()
                    drained = await drain(client, name, 300)
                    res = phase_result(client, name, start, end, drained)
                    res.update(Probe.cpu_delta(before, after, res["accepted_202"], cpus))
                    res.update({"fraction_of_saturation": fraction, "target_rate": round(rate, 1)})
                    phases[name] = res
                    print(f"  p50/p95/p99 submit->delivered "
                          f"{res['latency_ms_submit_to_delivered_at_ne'].get('p50')}/"
                          f"{res['latency_ms_submit_to_delivered_at_ne'].get('p95')}/"
                          f"{res['latency_ms_submit_to_delivered_at_ne'].get('p99')} ms", flush=True)

                # 3. Soak: open loop at the first fraction, RSS sampled.
                phase_name = "soak"
                soak_rate = saturation * args.soak_fraction
                print(f"soak: open loop at {soak_rate:.1f}/s for {args.soak_seconds:.0f}s, RSS every "
                      f"{args.rss_interval:.0f}s", flush=True)
                sampler.cancel()
                soak_samples_from = len(probe.rss)
                probe.sample("soak")
                sampler = asyncio.create_task(probe.sample_every(args.rss_interval, lambda: phase_name))
                before = probe.cpu()
                start, end = await open_loop(client, "soak", soak_rate, args.soak_seconds, rng, args.arrivals)
                after = probe.cpu()
                probe.sample("soak")
                sampler.cancel()
                phase_name = "after"
                drained = await drain(client, "soak", 300)
                soak = phase_result(client, "soak", start, end, drained)
                soak.update(Probe.cpu_delta(before, after, soak["accepted_202"], cpus))
                soak.update({"fraction_of_saturation": args.soak_fraction, "target_rate": round(soak_rate, 1),
                             "per_minute": minute_series(client, "soak", start, end,
                                                         60.0 if args.soak_seconds >= 120 else 10.0)})
                samples = [s for s in probe.rss[soak_samples_from:] if s["phase"] == "soak"]
                t_first = samples[0]["t"]
                memory = {}
                for side in pids:
                    values = [s[f"{side}_mb"] for s in samples]
                    memory[side] = {
                        "start_mb": values[0], "end_mb": values[-1], "max_mb": max(values),
                        "slope_mb_per_minute": round(slope_per_minute([(s["t"] - t_first, s[f"{side}_mb"])
                                                                       for s in samples]), 3),
                        "samples": len(values),
                    }
                soak["rss"] = memory
                phases["soak"] = soak
            finally:
                tail_task.cancel()
                sampler.cancel()
            result["rss_samples"] = probe.rss
            result["envelope_bytes"] = envelope_bytes
            result["saturation_referrals_per_second"] = saturation
            result["phases"] = phases

            # Stop both gateways gracefully, then count loss and duplicates from the stores.
            await session.close()
            codes = {"ne": await ne.stop(), "ng": await ng.stop()}
            tail.poll()
            result["gateway_exit_codes"] = codes
            checks = store_checks(tmp, {s.message_id for s in client.submissions if s.status == 202})
            ng_metrics = ng.metrics_path.read_text() if ng.metrics_path.exists() else ""
            ne_metrics = ne.metrics_path.read_text() if ne.metrics_path.exists() else ""
            checks.update({
                "ng_duplicates_total_metric": metric_sum(ng_metrics, "duplicates_total"),
                "ne_duplicates_total_metric": metric_sum(ne_metrics, "duplicates_total"),
                "ng_quarantined_total_metric": metric_sum(ng_metrics, "messages_quarantined_total"),
                "ne_quarantined_total_metric": metric_sum(ne_metrics, "messages_quarantined_total"),
                "ne_publish_failures_total_metric": metric_sum(ne_metrics, "publish_failures_total"),
                "ng_redeliveries_seen_by_timing_hook": tail.redeliveries,
                "referrals_stored_more_than_once": sum(1 for c in tail.stored_copies.values() if c > 1),
                "http_errors": sum(1 for s in client.submissions if s.status != 202),
            })
            result["loss_and_duplicates"] = checks
            if found.declare_topology:
                await clean_gateway_names()

            # 4. Raw aio-pika on the same path, same size.
            print("raw aio-pika: closed-loop throughput", flush=True)
            raw = await raw_throughput(found, args.raw_n, envelope_bytes)
            raw["open_loop"] = {}
            for fraction in args.fractions:
                rate = saturation * fraction
                print(f"raw aio-pika: open loop at {rate:.1f}/s for {args.raw_open_seconds:.0f}s", flush=True)
                raw["open_loop"][f"open_{round(fraction * 100)}pct"] = await raw_latency(
                    found, rate, args.raw_open_seconds, envelope_bytes, rng, args.arrivals)
            result["raw"] = raw
    result["machine"]["loadavg_end"] = os.getloadavg()
    result["ratio_raw_msgs_per_gateway_referral"] = round(raw["messages_per_second"] / saturation, 1)
    result["ratio_raw_per_gateway_broker_message"] = round(raw["messages_per_second"] / (2 * saturation), 1)
    result["finished_utc"] = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return result


def print_table(result: dict[str, Any]) -> None:
    m, p, raw = result["machine"], result["phases"], result["raw"]
    print()
    print(f"load_bench {result['started_utc']}: {result['topology']['description']}")
    print(f"{m['cpus']} CPUs ({m['cpu_model']}), load avg start {m['loadavg_start'][0]:.2f} end "
          f"{m['loadavg_end'][0]:.2f}; envelope {result['envelope_bytes']} B; Python {result['versions']['python']} "
          f"({result['event_loop']} loop)")
    print("deliv/s: saturation = receipts back at NE per second over the last 75% of the phase; open loop = all "
          "of the phase's referrals / (phase start -> last receipt)")
    print("gw cpu ms/ref: CPU of the NE + NG gateway processes per referral; others: share of the machine's CPU "
          "taken by processes that are not this benchmark's (the noise)")
    print(f"{'phase':<26}{'offered/s':>10}{'deliv/s':>9}"
          f"{'to NG inbox p50/p95/p99 ms':>30}{'receipt at NE p50/p95/p99 ms':>32}{'gw cpu ms/ref':>15}"
          f"{'others':>8}")
    for name, res in p.items():
        a, b = res["latency_ms_submit_to_stored_at_ng"], res["latency_ms_submit_to_delivered_at_ne"]
        label = name if name != "saturation" else f"saturation (closed, {res['window']})"
        rate = res["delivered_per_second_in_window"] if name == "saturation" else res["completed_per_second"]
        print(f"{label:<26}{res['offered_per_second']:>10.1f}{rate:>9.1f}"
              f"{a.get('p50', 0):>12.0f}{a.get('p95', 0):>9.0f}{a.get('p99', 0):>9.0f}"
              f"{b.get('p50', 0):>14.0f}{b.get('p95', 0):>9.0f}{b.get('p99', 0):>9.0f}"
              f"{res['ne_cpu_ms_per_referral']:>8.1f}+{res['ng_cpu_ms_per_referral']:<6.1f}"
              f"{res.get('other_processes_cpu_share_of_machine', 0):>8.0%}")
    print(f"{'raw aio-pika (closed)':<26}{'':>10}{raw['messages_per_second']:>9.1f}")
    for name, res in raw["open_loop"].items():
        lat = res["latency_ms_publish_to_ack"]
        print(f"{'raw ' + name:<26}{res['rate']:>10.1f}{'':>9}{'':>12}{'':>9}{'':>9}"
              f"{lat.get('p50', 0):>14.0f}{lat.get('p95', 0):>9.0f}{lat.get('p99', 0):>9.0f}")
    print(f"ratio raw msg/s : gateway referral/s at saturation   {result['ratio_raw_msgs_per_gateway_referral']:>6.1f}x")
    print(f"ratio raw msg/s : gateway broker msg/s (2/referral)  {result['ratio_raw_per_gateway_broker_message']:>6.1f}x")
    soak = p.get("soak")
    if soak:
        print(f"soak {soak['seconds']:.0f}s at {soak['target_rate']:.1f}/s: RSS (MB) start / end / max / slope MB/min")
        labels = {"ne": "NE gateway process", "ng": "NG gateway process", "broker": "broker (shared, system)",
                  "ne_broker": "NE broker (system, shared)", "ng_broker": "NG broker (second node)"}
        for side, mem in soak["rss"].items():
            print(f"  {labels.get(side, side):<28}{mem['start_mb']:>7.1f} {mem['end_mb']:>7.1f} "
                  f"{mem['max_mb']:>7.1f} {mem['slope_mb_per_minute']:>+8.3f}  ({mem['samples']} samples)")
    c = result["loss_and_duplicates"]
    print(f"loss/duplicates: {c['accepted_202']} accepted, {c['ng_inbox_referrals']} in NG inbox, "
          f"lost {c['lost_never_stored_at_ng']}, audited twice {c['ng_message_received_audited_twice']}, "
          f"redeliveries {c['ng_duplicates_total_metric']:.0f}, HTTP errors {c['http_errors']}; "
          f"NE outbox {c['ne_outbox_by_status']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--soak-seconds", type=float, default=600)
    parser.add_argument("--quick", action="store_true", help="short phases for a smoke run (soak 20 s)")
    parser.add_argument("--out", type=Path, help="JSON result (default bench/results/load-<UTC>.json)")
    parser.add_argument("--topology", choices=("auto", "one-broker", "two-brokers"), default="auto")
    parser.add_argument("--amqp-url", default=DEFAULT_URL, help="the system broker (one-broker topology)")
    parser.add_argument("--window", type=int, default=64, help="referrals in flight in the closed loop")
    parser.add_argument("--warmup-seconds", type=float, default=10)
    parser.add_argument("--saturation-seconds", type=float, default=60)
    parser.add_argument("--open-seconds", type=float, default=60)
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.5, 0.9])
    parser.add_argument("--soak-fraction", type=float, default=0.5)
    parser.add_argument("--arrivals", choices=("poisson", "uniform"), default="poisson")
    parser.add_argument("--rss-interval", type=float, default=10)
    parser.add_argument("--raw-n", type=int, default=3000)
    parser.add_argument("--raw-open-seconds", type=float, default=20)
    parser.add_argument("--max-connections", type=int, default=256)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--log-level", default="warning", help="gateways' log level (info costs throughput)")
    parser.add_argument("--event-loop", default="auto", choices=EVENT_LOOPS,
                        help="event loop of the gateways and of this script (the event_loop setting)")
    parser.add_argument("--heap", default="settled", choices=("settled", "default"),
                        help="settled: the gateways freeze their start-up heap as gateway serve does "
                             "(gateway/heap.py); default: Python's collector settings")
    # Internal: run one gateway (started by the benchmark itself).
    parser.add_argument("--gateway-process", action="store_true", help=argparse.SUPPRESS)
    for name in ("--agency", "--tmp", "--run-id", "--events-out", "--metrics-out"):
        parser.add_argument(name, help=argparse.SUPPRESS)
    parser.add_argument("--http-port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--no-declare", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    configure_logging(args.log_level)
    if args.gateway_process:
        die_with_parent()  # stdin is the benchmark's pipe: end with it, even if it is SIGKILLed
        event_loop.run(gateway_process(args), args.event_loop)
        return
    if args.quick:
        explicit = {a.split("=")[0] for a in sys.argv[1:] if a.startswith("--")}
        quick = {"soak_seconds": 20, "warmup_seconds": 3, "saturation_seconds": 10, "open_seconds": 10,
                 "rss_interval": 2, "raw_n": 500, "raw_open_seconds": 5}
        for name, value in quick.items():
            if f"--{name.replace('_', '-')}" not in explicit:
                setattr(args, name, value)
    result = event_loop.run(run(args), args.event_loop)
    print_table(result)
    out = args.out or ROOT / "bench" / "results" / f"load-{result['started_utc'].replace(':', '')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"result: {out}")


if __name__ == "__main__":
    main()
