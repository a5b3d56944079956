"""``gateway serve --config FILE``: run one agency's gateway (HTTP API + broker + outbox)."""

from __future__ import annotations

import argparse
import asyncio
import signal
from pathlib import Path

import structlog
from aiohttp import web

from gateway.bootstrap import open_gateway
from gateway.logs import configure_logging
from gateway.settings import load_settings

log = structlog.get_logger("gateway.serve")


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add the ``serve`` command."""
    parser = sub.add_parser("serve", help="run one agency's gateway")
    parser.add_argument("--config", type=Path, required=True, help="settings TOML file (env GATEWAY_* overrides)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Load settings and serve until SIGINT/SIGTERM."""
    settings = load_settings(args.config)
    configure_logging(settings.log_level)
    asyncio.run(serve(settings))
    return 0


async def serve(settings) -> None:  # type: ignore[no-untyped-def]
    """Start the gateway and its HTTP API; stop cleanly on a signal (unacked messages return to the broker)."""
    from gateway.api import create_app

    gateway = await open_gateway(settings)
    await gateway.start()
    runner = web.AppRunner(create_app(gateway, settings), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, settings.http_host, settings.http_port)
    await site.start()
    log.info("gateway.serving", agency_id=settings.agency_id, host=settings.http_host, port=settings.http_port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        log.info("gateway.stopping", agency_id=settings.agency_id)
        await runner.cleanup()
        await gateway.stop()
        await gateway.store.close()
