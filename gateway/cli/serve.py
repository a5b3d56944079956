"""``gateway serve --config FILE``: run one agency's gateway (HTTP API + broker + outbox).

Start-up checks each thing an operator can get wrong and stops with one line naming it
(exit 1) rather than starting half-way: the HTTP port is bound first, then the files
are read, the store opened and the broker tried once (see docs/startup.md).
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import signal
import socket
from pathlib import Path

import structlog
from aiohttp import web

from gateway import event_loop
from gateway.bootstrap import StartupError, check_broker, open_gateway
from gateway.heap import settle_heap
from gateway.logs import configure_logging, install_loop_exception_handler
from gateway.settings import Settings, load_settings

log = structlog.get_logger("gateway.serve")

#: Pending connections the kernel queues for the HTTP socket (aiohttp's default).
_BACKLOG = 128


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add the ``serve`` command."""
    parser = sub.add_parser("serve", help="run one agency's gateway",
                            description="Run one agency's gateway: HTTP API, broker consumer and outbox publisher, "
                                        "until SIGINT or SIGTERM.")
    parser.add_argument("--config", type=Path, required=True,
                        help="settings TOML file (GATEWAY_* environment variables override it)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Load settings and serve until SIGINT/SIGTERM."""
    settings = load_settings(args.config)
    configure_logging(settings.log_level)
    event_loop.run(serve(settings), settings.event_loop)
    return 0


def bind_http(host: str, port: int) -> list[socket.socket]:
    """Listen on every address of ``host``; a port in use or a wrong host is a StartupError."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise StartupError("http_bind_failed", f"cannot listen on {host}:{port} (http_host): {exc.strerror}") from None
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in dict.fromkeys((i[0], i[1], i[2], i[3], i[4]) for i in infos):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            sock.listen(_BACKLOG)
            sock.setblocking(False)
    except OSError as exc:
        for sock in sockets:
            sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise StartupError("http_port_in_use", f"cannot listen on {host}:{port}: the port is in use by another "
                                                   f"process (stop it or change http_port)") from None
        raise StartupError("http_bind_failed", f"cannot listen on {host}:{port} (http_host, http_port): "
                                               f"{exc.strerror}") from None
    return sockets


def check_serve_settings(settings: Settings) -> None:
    """What ``serve`` needs beyond what Settings checks for every command."""
    if not settings.pseudonym_secret_hex:
        raise StartupError("settings_error", "pseudonym_secret_hex is not set: a gateway cannot create case "
                                             "pseudonyms without it (64+ hex digits, e.g. from `openssl rand -hex 32`)")


async def serve(settings: Settings) -> None:
    """Start the gateway and its HTTP API; stop cleanly on a signal (unacked messages return to the broker)."""
    from gateway.api import create_app
    from gateway.api.parser_errors import GatewayAppRunner

    install_loop_exception_handler(asyncio.get_running_loop())
    check_serve_settings(settings)
    # The port first: a port in use is the cheapest mistake to find and must not wait on the broker.
    sockets = bind_http(settings.http_host, settings.http_port)
    runner: web.AppRunner | None = None
    try:
        gateway = await open_gateway(settings)
        try:
            await check_broker(gateway.transport, settings)
            runner = GatewayAppRunner(create_app(gateway, settings), access_log=None)
            await runner.setup()
            # Before the first delivery or request: nothing of a case is in memory yet (a
            # frozen object is never freed, so no message may be in the heap it freezes).
            settle_heap()
            await gateway.start()
            for sock in sockets:
                await web.SockSite(runner, sock).start()
            log.info("gateway.serving", agency_id=settings.agency_id, host=settings.http_host,
                     port=sockets[0].getsockname()[1], event_loop=event_loop.loop_name())
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            await stop.wait()
            log.info("gateway.stopping", agency_id=settings.agency_id)
        finally:
            if runner is not None:
                await runner.cleanup()
            await gateway.stop()
            await gateway.store.close()
    finally:
        for sock in sockets:
            sock.close()
