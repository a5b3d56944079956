"""Command-line entry point: ``gateway <command> ...``.

Each command group lives in its own module with a ``register(subparsers)`` function
that adds its parser and sets ``func`` (called with the parsed args, returns an exit code).
"""

from __future__ import annotations

import argparse
import sys
from importlib.metadata import PackageNotFoundError, version
from typing import Any, Sequence

import structlog

from gateway.errors import GatewayError
from gateway.logs import configure_logging

#: The distribution name in pyproject.toml.
DISTRIBUTION = "referral-gateway"


class HelpFormatter(argparse.HelpFormatter):
    """Help that shows each option's default, where it has a meaningful one."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help
        if (text and "%(default)" not in text and not action.required
                and action.default not in (None, False, argparse.SUPPRESS)
                and (action.option_strings or action.nargs in (argparse.OPTIONAL, argparse.ZERO_OR_MORE))):
            text += " (default: %(default)s)"
        return text


class Parser(argparse.ArgumentParser):
    """ArgumentParser whose help shows defaults; sub-commands inherit it (add_subparsers uses the same class)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if kwargs.get("formatter_class") in (None, argparse.HelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
            kwargs["formatter_class"] = HelpFormatter
        super().__init__(*args, **kwargs)


def package_version() -> str:
    """The installed version of the gateway (package metadata)."""
    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    """Build the top-level parser with every command group registered."""
    from gateway.cli import adapt, audit, demo, keys, quarantine, serve, users

    parser = Parser(prog="gateway", description="Referral gateway for cross-border anti-trafficking referrals.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {package_version()}",
                        help="print the gateway's version and exit")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (demo, serve, keys, quarantine, adapt, audit, users):
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
    except Exception as exc:  # noqa: BLE001 - a bug or an unforeseen failure: one JSON line, not a traceback
        structlog.get_logger("gateway.cli").critical("cli.failed", command=args.command, exc_info=exc)
        print(f"gateway: error: [unexpected] {type(exc).__name__} (the log line above says where)", file=sys.stderr)
        return 1


