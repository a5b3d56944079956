"""Run one gateway (default NG-NAPTIP) in its own process, for the fault tests and the benchmark.

    python -m testkit.ng_process --tmp DIR --run-id ID --amqp-url URL
        [--agency NG-NAPTIP] [--crash-marker PATH] [--metrics-out PATH] [--prefetch N]
        [--log-level info] [--busy-out PATH] [--http-port N] [--die-with-parent] [--store-url URL]

Prints ``READY <pid>`` on stdout once consuming. SIGTERM (or SIGINT) stops it gracefully:
``Gateway.stop()`` (unacked deliveries go back to the broker), metrics to ``--metrics-out``,
store closed, exit 0.

``--crash-marker PATH``: if PATH does not exist yet, the process dies with ``os._exit(137)``
right after the store has accepted the first new inbox message (``add_incoming`` returned
True) -- the message is stored, but not acked and not receipted. PATH is created first, so
a restart with the same arguments runs normally.

``--crash-after-outbox N`` (with ``--crash-marker``): die instead right after the N-th
referral.request was committed to the outbox (stored, its POST not answered).

``--die-with-parent``: stdin is a pipe from the parent that it never writes to; when it
closes (the parent ended, even by SIGKILL) this process kills itself (testkit/lifeline.py).

``--http-port N``: also serve the HTTP API on 127.0.0.1:N (as ``gateway serve`` does), with
one caseworker whose bearer token is the environment variable ``FAULT_API_TOKEN``.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import hashlib
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

from aiohttp import web

from gateway import event_loop
from gateway.bootstrap import open_gateway
from gateway.heap import settle_heap
from gateway.logs import configure_logging
from gateway.settings import EVENT_LOOPS, User
from gateway.store import IncomingMessage, Store

from testkit.harness import BusyMeter
from testkit.lifeline import die_with_parent
from testkit.gateway_pair import NIGERIA, settings_for


class CrashAfterFirstStore:
    """A store that kills the process once, between "stored in the inbox" and "acked"."""

    def __init__(self, inner: Store, marker: Path) -> None:
        self._inner = inner
        self._marker = marker

    async def add_incoming(self, msg: IncomingMessage, **kwargs: Any) -> bool:
        stored = await self._inner.add_incoming(msg, **kwargs)
        if stored and not self._marker.exists():
            self._marker.write_text(msg.message_id)
            os._exit(137)  # no finally blocks, no ack, no connection close: like kill -9
        return stored

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class CrashAfterOutbox:
    """A store that kills the process once, right after its ``after``-th referral was
    committed to the outbox: stored, but its POST never answered (the sender-side analogue)."""

    def __init__(self, inner: Store, marker: Path, after: int) -> None:
        self._inner, self._marker, self._left = inner, marker, after

    async def add_outgoing(self, msg: Any, **kwargs: Any) -> bool:
        queued = await self._inner.add_outgoing(msg, **kwargs)
        if msg.message_type == "referral.request" and not self._marker.exists():
            self._left -= 1
            if self._left <= 0:
                self._marker.write_text(msg.message_id)
                os._exit(137)  # like kill -9: no answer, no cleanup
        return queued

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


async def run(args: argparse.Namespace) -> None:
    extra: dict[str, Any] = {}
    if args.prefetch:
        extra["prefetch"] = args.prefetch
    if args.no_declare_topology:
        extra["declare_topology"] = False  # the broker's definitions (and shovels) own the topology
    settings = settings_for(args.agency, Path(args.tmp), transport="amqp", amqp_url=args.amqp_url,
                            run_id=args.run_id, **extra)
    if args.store_url:  # several processes of one agency on one shared (PostgreSQL) store
        settings = dataclasses.replace(settings, store_url=args.store_url)
    gateway = await open_gateway(settings)
    if args.crash_marker and args.crash_after_outbox:
        gateway.store = CrashAfterOutbox(gateway.store, Path(args.crash_marker),  # type: ignore[assignment]
                                         args.crash_after_outbox)
    elif args.crash_marker:
        gateway.store = CrashAfterFirstStore(gateway.store, Path(args.crash_marker))  # type: ignore[assignment]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    meter = BusyMeter().install(loop) if args.busy_out else None
    if meter:  # SIGUSR1 writes the busy times since the previous SIGUSR1 (benchmark only)
        def dump() -> None:
            Path(args.busy_out).write_text(json.dumps(meter.snapshot()), encoding="utf-8")
            meter.reset()
        loop.add_signal_handler(signal.SIGUSR1, dump)
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    settle_heap()  # as gateway serve does, before the first delivery
    await gateway.start()
    await gateway.wait_ready(30)
    runner = await _serve_api(gateway, settings, args.http_port) if args.http_port else None
    print(f"READY {os.getpid()}", flush=True)
    await stop.wait()
    if runner is not None:
        await runner.cleanup()
    await gateway.stop()
    if args.metrics_out:
        Path(args.metrics_out).write_text(gateway.metrics.render(), encoding="utf-8")
    await gateway.store.close()


async def _serve_api(gateway: Any, settings: Any, port: int) -> web.AppRunner:
    from gateway.api import create_app

    token = os.environ["FAULT_API_TOKEN"]
    user = User("caseworker.fault", "caseworker", hashlib.sha256(token.encode()).hexdigest())
    runner = web.AppRunner(create_app(gateway, dataclasses.replace(settings, users=(user,))), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tmp", required=True)
    parser.add_argument("--run-id", required=True)
    parser.add_argument("--amqp-url", required=True)
    parser.add_argument("--agency", default=NIGERIA)
    parser.add_argument("--crash-marker")
    parser.add_argument("--metrics-out")
    parser.add_argument("--prefetch", type=int, default=0)
    parser.add_argument("--no-declare-topology", action="store_true")
    parser.add_argument("--log-level", default="info")
    parser.add_argument("--crash-after-outbox", type=int, default=0,
                        help="with --crash-marker: die after the Nth referral committed to the outbox instead")
    parser.add_argument("--http-port", type=int, default=0, help="also serve the HTTP API on 127.0.0.1:PORT")
    parser.add_argument("--store-url", help="store URL instead of the SQLite file under --tmp (bench/scaleout_bench.py)")
    parser.add_argument("--event-loop", default="auto", choices=EVENT_LOOPS,
                        help="the event loop (the event_loop setting of gateway serve)")
    parser.add_argument("--busy-out", help="benchmark: on SIGUSR1 write loop/store busy seconds (JSON) here")
    parser.add_argument("--die-with-parent", action="store_true",
                        help="stdin is a pipe from the parent: die (SIGKILL) when it closes")
    args = parser.parse_args()
    if args.die_with_parent:
        die_with_parent()
    configure_logging(args.log_level)
    event_loop.run(run(args), args.event_loop)
    sys.exit(0)


if __name__ == "__main__":
    main()
