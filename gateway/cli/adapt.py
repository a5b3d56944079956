"""``gateway adapt --from niger --to shared FILE [--purposes p1,p2]`` and ``--from shared --to niger FILE``.

The result goes to stdout as JSON; fields left out (purposes, local-only) are reported on
stderr, one per line, by name and never by value. Errors exit 1 (via ``gateway.cli.main``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from adapters import AdapterError, available_formats, get_adapter
from gateway.schema_versions import for_adapter

SHARED = "shared"


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add the ``adapt`` command."""
    parser = sub.add_parser(
        "adapt",
        help="map a local case record to the shared referral.request payload, or back",
        description=f"Formats: {SHARED} and the adapters' format ids (--list).",
    )
    parser.add_argument("--from", dest="source", metavar="FORMAT", help=f"format of FILE: a country format or '{SHARED}'")
    parser.add_argument("--to", dest="target", metavar="FORMAT", help=f"format to write: '{SHARED}' or a country format")
    parser.add_argument("--purposes", help="comma-separated purposes (default: those the record names or consents to)")
    parser.add_argument("--list", action="store_true", help="list the available formats and exit")
    parser.add_argument("file", nargs="?", type=Path, help="JSON file to convert ('-' for stdin)")
    parser.set_defaults(func=run_adapt)


def _read(path: Path) -> Any:
    try:
        text = sys.stdin.read() if str(path) == "-" else path.read_text(encoding="utf-8")
    except OSError as exc:
        raise AdapterError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        # The position only: the text may hold personal data.
        raise AdapterError(f"{path}: not JSON (line {exc.lineno}, column {exc.colno})") from None


def run_adapt(args: argparse.Namespace) -> int:
    """Convert one file; print the result to stdout and the dropped fields to stderr."""
    if args.list:
        print("\n".join([SHARED, *available_formats()]))
        return 0
    if not (args.source and args.target and args.file):
        print("gateway adapt: --from, --to and FILE are required (or --list)", file=sys.stderr)
        return 2
    if (args.source == SHARED) == (args.target == SHARED):
        print(f"gateway adapt: exactly one of --from/--to must be '{SHARED}'", file=sys.stderr)
        return 2
    if args.purposes and args.target != SHARED:
        print("gateway adapt: --purposes applies to --to shared only", file=sys.stderr)
        return 2
    adapter = get_adapter(args.source if args.target == SHARED else args.target)
    record = _read(args.file)
    if not isinstance(record, dict):
        raise AdapterError(f"{args.file}: must hold a JSON object")
    if args.target == SHARED:
        purposes = [p.strip() for p in args.purposes.split(",") if p.strip()] if args.purposes else None
        result = adapter.to_shared(record, purposes)
        output, dropped = result.payload, result.dropped
    else:
        output, dropped = adapter.from_shared(for_adapter(adapter, record)), ()
    json.dump(output, sys.stdout, ensure_ascii=False, indent=2)
    sys.stdout.write("\n")
    for item in dropped:
        print(f"dropped: {item}", file=sys.stderr)
    return 0
