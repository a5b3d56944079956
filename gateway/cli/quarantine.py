"""``gateway quarantine list|redrive --config FILE``: inspect and re-drive quarantined messages."""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path
from typing import Awaitable, Callable, TypeVar

from gateway.bootstrap import make_transport, read_directory
from gateway.settings import load_settings
from gateway.transport.base import Transport

T = TypeVar("T")


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add the ``quarantine`` command group."""
    parser = sub.add_parser("quarantine", help="list or re-drive this agency's quarantined messages")
    qsub = parser.add_subparsers(dest="quarantine_command", required=True, metavar="ACTION")
    listing = qsub.add_parser("list", help="list quarantined messages (ids, sender, reason; never bodies)")
    listing.add_argument("--config", type=Path, required=True, help="the gateway's settings TOML file")
    listing.add_argument("--limit", type=int, default=100, help="list at most this many messages")
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    listing.set_defaults(func=run_list)
    redrive = qsub.add_parser("redrive", help="move one quarantined message back to this agency's inbox")
    redrive.add_argument("--config", type=Path, required=True, help="the gateway's settings TOML file")
    redrive.add_argument("message_id", help="id of the quarantined message (from `quarantine list`)")
    redrive.set_defaults(func=run_redrive)


async def _with_transport(config: Path, action: Callable[[Transport], Awaitable[T]]) -> T:
    settings = load_settings(config)
    directory = await asyncio.to_thread(read_directory, settings)
    transport = make_transport(settings, directory)
    await transport.start()
    try:
        return await action(transport)
    finally:
        await transport.close()


def run_list(args: argparse.Namespace) -> int:
    """Print the quarantine: message id, sender, reason code, detail, size."""
    entries = asyncio.run(_with_transport(args.config, lambda t: t.list_quarantine(args.limit)))
    for q in entries:
        if args.json:
            print(json.dumps({"message_id": q.message_id, "sender": q.sender, "reason": q.reason_code,
                              "detail": q.detail, "size": q.size}, sort_keys=True))
        else:
            print(f"{q.message_id}  from {q.sender or '?':<14} {q.reason_code:<18} {q.size:>7} B  {q.detail}")
    if not args.json:
        print(f"{len(entries)} quarantined message(s)")
    return 0


def run_redrive(args: argparse.Namespace) -> int:
    """Move one message back to the inbox; the gateway verifies it again on delivery."""
    moved = asyncio.run(_with_transport(args.config, lambda t: t.redrive(args.message_id)))
    print(f"{args.message_id}: {'re-driven to the inbox' if moved else 'not found in quarantine'}")
    return 0 if moved else 1
