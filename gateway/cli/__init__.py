"""Command-line entry point: ``gateway <command> ...``.

Each command group lives in its own module with a ``register(subparsers)`` function
that adds its parser and sets ``func`` (called with the parsed args, returns an exit code).
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from gateway.errors import GatewayError
from gateway.logs import configure_logging


def build_parser() -> argparse.ArgumentParser:
    """Build the top-level parser with every command group registered."""
    from gateway.cli import adapt, audit, demo, keys, quarantine, serve

    parser = argparse.ArgumentParser(prog="gateway", description="Referral gateway for cross-border anti-trafficking referrals.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (demo, serve, keys, quarantine, adapt, audit):
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI and return the process exit code."""
    args = build_parser().parse_args(argv)
    # Command output goes to stdout; logs (JSON, warnings and up unless a command says
    # otherwise) go to stderr so they never mix with what a script parses.
    configure_logging("warning")
    try:
        return int(args.func(args) or 0)
    except GatewayError as exc:
        print(f"gateway: error: [{exc.code}] {exc}", file=sys.stderr)
        return 1


