"""What the fault tests share: a gateway in a subprocess, NE in-process, a TCP proxy, store counts."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import sqlite3
import sys
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, AsyncIterator

from gateway.bootstrap import open_gateway
from gateway.schema import load_example
from gateway.service import Actor, Gateway
from gateway.store import Store, open_store

from testkit.gateway_pair import NIGER, NIGERIA, ROOT, settings_for

WORKER = Actor("amina.caseworker", "caseworker")


def db_path(tmp: Path, agency: str) -> Path:
    """Where ``settings_for`` puts an agency's SQLite store."""
    return tmp / f"{agency}.db"


class GatewayProcess:
    """A gateway in its own OS process (``testkit/ng_process.py``), started and stopped
    (SIGTERM), or killed (SIGKILL) by the test. Each start appends to one log file."""

    def __init__(self, tmp: Path, run_id: str, amqp_url: str, *, agency: str = NIGERIA,
                 crash_marker: Path | None = None, prefetch: int = 0, profile_out: Path | None = None,
                 extra_args: tuple[str, ...] = ()) -> None:
        self.tmp, self.run_id, self.amqp_url, self.agency = tmp, run_id, amqp_url, agency
        self.crash_marker, self.prefetch, self.profile_out = crash_marker, prefetch, profile_out
        self.extra_args = extra_args
        self.log_path = tmp / f"{agency}.process.log"
        self.metrics_path = tmp / f"{agency}.metrics.txt"
        self.process: asyncio.subprocess.Process | None = None
        self.starts = 0

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None

    async def start(self, timeout: float = 60.0) -> None:
        """Start the process and wait until it consumes (it prints ``READY``)."""
        assert not self.running, "already running"
        # --profile-out: run under cProfile (written when the process stops gracefully).
        profiler = ["-m", "cProfile", "-o", str(self.profile_out)] if self.profile_out else []
        args = [sys.executable, *profiler, "-m", "testkit.ng_process", "--tmp", str(self.tmp), "--run-id", self.run_id,
                "--amqp-url", self.amqp_url, "--agency", self.agency, "--metrics-out", str(self.metrics_path),
                "--die-with-parent"]
        if self.crash_marker is not None:
            args += ["--crash-marker", str(self.crash_marker)]
        if self.prefetch:
            args += ["--prefetch", str(self.prefetch)]
        args += self.extra_args
        self.starts += 1
        with open(self.log_path, "ab") as log:
            log.write(f"--- start {self.starts}\n".encode())
            log.flush()
            self.process = await asyncio.create_subprocess_exec(
                # stdin: a pipe this process never writes to; its EOF (this process ended, even
                # by SIGKILL) ends the gateway process too (--die-with-parent).
                *args, cwd=ROOT, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=log,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        assert self.process.stdout is not None
        try:
            line = await asyncio.wait_for(self.process.stdout.readline(), timeout)
        except asyncio.TimeoutError:
            await self.kill()
            raise AssertionError(f"{self.agency} process not ready in {timeout}s; see {self.log_path}") from None
        if not line.startswith(b"READY"):
            await self.wait(10)
            raise AssertionError(f"{self.agency} process failed to start ({self.process.returncode}): "
                                 f"{self.log_path.read_text()[-2000:]}")

    async def wait(self, timeout: float) -> int:
        """Wait for the process to end by itself; its exit code."""
        assert self.process is not None
        return await asyncio.wait_for(self.process.wait(), timeout)

    async def stop(self, timeout: float = 30.0) -> int:
        """Graceful stop (SIGTERM): unacked deliveries return to the broker."""
        assert self.process is not None
        if self.running:
            self.process.send_signal(signal.SIGTERM)
        return await self.wait(timeout)

    async def kill(self) -> int:
        """``kill -9``: no cleanup of any kind in the gateway."""
        assert self.process is not None
        if self.running:
            os.kill(self.process.pid, signal.SIGKILL)
        return await self.wait(30)

    def metrics(self) -> str:
        """The metrics text written by the last graceful stop."""
        return self.metrics_path.read_text(encoding="utf-8")


def metric(text: str, name: str) -> float:
    """Sum of every series of counter ``gateway_<name>`` in a Prometheus text."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith(f"gateway_{name}{{") or line.startswith(f"gateway_{name} "):
            total += float(line.rsplit(" ", 1)[1])
    return total


@asynccontextmanager
async def in_process_gateway(tmp: Path, run_id: str, amqp_url: str, *, agency: str = NIGER, store_query: str = "",
                             **extra: Any) -> AsyncIterator[Gateway]:
    """A started gateway in this process, on the run's exchange and queues (``store_query``:
    store URL options such as ``?mode=ro``)."""
    settings = settings_for(agency, tmp, transport="amqp", amqp_url=amqp_url, run_id=run_id, **extra)
    if store_query:
        settings = dataclasses.replace(settings, store_url=settings.store_url + store_query)
    gateway = await open_gateway(settings)
    try:
        await gateway.start()
        await gateway.wait_ready(30)
        yield gateway
    finally:
        # Bounded, so that a gateway that cannot stop fails the test instead of hanging CI.
        await asyncio.wait_for(gateway.stop(), 60)
        await gateway.store.close()


@asynccontextmanager
async def observer(path: Path) -> AsyncIterator[Store]:
    """A read-only view of another process's store (SQLite WAL: readers never block it)."""
    store = await open_store(f"sqlite:///{path}?mode=ro")
    try:
        yield store
    finally:
        await store.close()


def table_counts(path: Path) -> dict[str, dict[tuple[str, str], int]]:
    """``{table: {(message_type, status): rows}}`` for outbox and inbox, read straight from the
    file: a cross-check that no rows exist beyond those the test looks up by id."""
    conn = sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True)
    try:
        return {
            table: {(t, s): n for t, s, n in conn.execute(
                f"SELECT message_type, status, count(*) FROM {table} GROUP BY message_type, status")}
            for table in ("outbox", "inbox")
        }
    finally:
        conn.close()


async def submit_referrals(gateway: Gateway, count: int, *, batch: int = 50, tag: str = "fault") -> list[str]:
    """Submit ``count`` referral.requests from ``gateway`` to NG, ``batch`` at a time concurrently."""
    payload = load_example("referral.request")
    ids: list[str] = []
    for start in range(0, count, batch):
        headers = await asyncio.gather(*(
            gateway.submit("referral.request", payload, recipient=NIGERIA, case_ref=f"ne-ng-{tag}{i:06d}",
                           actor=WORKER)
            for i in range(start, min(start + batch, count))
        ))
        ids += [h.id for h in headers]
    return ids


async def wait_until(check, timeout: float, interval: float = 0.1, what: str = "condition") -> float:
    """Poll ``await check()`` until true; seconds it took. Fails after ``timeout``."""
    started = time.monotonic()
    while not await check():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"{what} not met within {timeout}s")
        await asyncio.sleep(interval)
    return time.monotonic() - started


async def statuses(store: Store, ids: list[str]) -> dict[str, str]:
    """Outbox status of each id (``missing`` if the store has no such row)."""
    found: dict[str, str] = {}
    for message_id in ids:
        record = await store.get_outgoing(message_id)
        found[message_id] = record.status if record is not None else "missing"
    return found


async def received_audit_counts(store: Store) -> dict[str, int]:
    """How many ``message.received`` audit entries each message id has."""
    counts: dict[str, int] = {}
    seq = 1
    while batch := await store.read_audit(seq, 1000):
        for entry in batch:
            if entry.event_type == "message.received" and entry.message_id:
                counts[entry.message_id] = counts.get(entry.message_id, 0) + 1
        seq = batch[-1].seq + 1
    return counts


class BusyMeter:
    """Where a gateway process spends its time (benchmark only; uses private hooks):
    the event loop's busy time (wall time minus time blocked in ``select``), the SQLite
    store thread's busy and CPU time with its reads (``sqlite._guarded``) and group commits
    (``sqlite._write_batch``), and the CPU time of the whole process."""

    def __init__(self) -> None:
        self.reset()

    def install(self, loop: asyncio.AbstractEventLoop) -> "BusyMeter":
        from gateway.store import sqlite as sqlite_store

        guarded, write_batch = sqlite_store._guarded, sqlite_store._write_batch
        # uvloop has no selector to wrap: its loop busy time is then not measured (reported
        # as the whole wall time).
        selector = getattr(loop, "_selector", None)
        select = selector.select if selector is not None else None

        def timed_select(timeout: float | None = None):  # type: ignore[no-untyped-def]
            began = time.perf_counter()
            try:
                return select(timeout)
            finally:
                self.idle += time.perf_counter() - began

        def timed_guarded(*args: Any) -> Any:
            began, cpu = time.perf_counter(), time.thread_time()
            try:
                return guarded(*args)
            finally:
                self.store_busy += time.perf_counter() - began
                self.store_cpu += time.thread_time() - cpu
                self.store_reads += 1

        def timed_write_batch(conn: Any, where: str, jobs: list[Any]) -> Any:
            began, cpu = time.perf_counter(), time.thread_time()
            try:
                return write_batch(conn, where, jobs)
            finally:
                self.store_busy += time.perf_counter() - began
                self.store_cpu += time.thread_time() - cpu
                self.store_commits += 1
                self.store_write_jobs += len(jobs)

        if selector is not None:
            selector.select = timed_select
        sqlite_store._guarded = timed_guarded
        sqlite_store._write_batch = timed_write_batch
        return self

    def reset(self) -> None:
        self.idle = self.store_busy = self.store_cpu = 0.0
        self.store_reads = self.store_commits = self.store_write_jobs = 0
        self.started = time.perf_counter()
        self.cpu_started = time.process_time()

    def snapshot(self) -> dict[str, float]:
        wall = time.perf_counter() - self.started
        # CPU of every thread of the process (event loop, store writer, executor): what the
        # process costs the machine, whatever else competes for the cores.
        return {"wall_seconds": round(wall, 3), "loop_busy_seconds": round(wall - self.idle, 3),
                "store_thread_busy_seconds": round(self.store_busy, 3),
                "store_thread_cpu_seconds": round(self.store_cpu, 3),
                "store_transactions": self.store_reads + self.store_commits,
                "store_reads": self.store_reads, "store_commits": self.store_commits,
                "store_write_jobs": self.store_write_jobs,
                "process_cpu_seconds": round(time.process_time() - self.cpu_started, 3)}
