"""``gateway audit verify|export|checkpoints``: take the audit log offline and verify it.

``export`` and ``checkpoints`` read a gateway's store (run them where the database is);
``verify`` needs only the two files and the signed directory, so an auditor can run it
on a machine that never talks to the gateway. Exit codes of ``verify``: 0 verified,
1 verification failed (the first bad entry is printed), 2 unusable input. See docs/audit.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path
from typing import IO, AsyncIterator, Callable

from gateway import keyfile
from gateway.audit.export import ExportFormatError, jsonl_lines, parse_jsonl, write_csv
from gateway.audit.verify import verify_export
from gateway.clock import utcnow
from gateway.directory import load_directory
from gateway.errors import GatewayError
from gateway.store import AuditRecord, CheckpointRecord, Store, open_store

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2
PAGE = 1000


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add the ``audit`` command group."""
    audit = sub.add_parser(
        "audit", help="export and verify the tamper-evident audit log",
        description="Export the audit log and its signed checkpoints, and verify them offline (see docs/audit.md).",
    )
    cmds = audit.add_subparsers(dest="audit_command", required=True, metavar="SUBCOMMAND")

    p = cmds.add_parser("verify", help="verify a JSONL export against signed checkpoints (exit 0 ok, 1 failed, 2 bad input)")
    p.add_argument("--log", required=True, type=Path, help="JSONL export written by 'gateway audit export'")
    p.add_argument("--checkpoints", required=True, type=Path, help="checkpoint notes, one per line")
    p.add_argument("--origin", required=True, help="agency whose log this is, e.g. NE-ANLTP-TIM")
    p.add_argument("--directory", required=True, type=Path, help="signed directory (directory.json)")
    p.add_argument("--authority", required=True, type=Path, help="pinned authority key (authority.pub.json)")
    p.set_defaults(func=cmd_verify)

    p = cmds.add_parser("export", help="write the audit log as JSONL (verifiable) or CSV (spreadsheets)")
    p.add_argument("--store-url", required=True, help="e.g. sqlite:///var/lib/gateway/gateway.db?mode=ro")
    p.add_argument("--format", choices=("jsonl", "csv"), default="jsonl",
                   help="jsonl keeps every field and can be verified; csv is for spreadsheets")
    p.add_argument("--out", type=Path, help="output file (default: standard output)")
    p.set_defaults(func=cmd_export)

    p = cmds.add_parser("checkpoints", help="write an agency's stored checkpoint notes, one per line")
    p.add_argument("--store-url", required=True, help="e.g. sqlite:///var/lib/gateway/gateway.db?mode=ro")
    p.add_argument("--origin", required=True, help="agency whose checkpoints to write (ours or a partner's)")
    p.add_argument("--out", type=Path, help="output file (default: standard output)")
    p.set_defaults(func=cmd_checkpoints)


# --- verify -----------------------------------------------------------------------------


def cmd_verify(args: argparse.Namespace) -> int:
    """Verify an export offline; print the report."""
    try:
        _, authority_key = keyfile.parse_authority_public(_read(args.authority), source=str(args.authority))
        directory = load_directory(_read(args.directory), [authority_key])
        entries = parse_jsonl(split_lines(_read(args.log).decode("utf-8")))
        notes = [line for line in _read(args.checkpoints).splitlines() if line.strip()]
    except UnicodeDecodeError:
        return _bad_input(f"{args.log}: not UTF-8 text")
    except (ExportFormatError, GatewayError) as exc:
        where = f"{args.log}: " if isinstance(exc, ExportFormatError) else ""
        return _bad_input(f"{where}[{exc.code}] {exc}")
    except OSError as exc:
        return _bad_input(f"cannot read {exc.filename}: {exc.strerror}")
    report = verify_export(entries, notes, directory, origin=args.origin, now=utcnow())
    for line in report.lines():
        print(line)
    return EXIT_OK if report.ok else EXIT_FAILED


def split_lines(text: str) -> list[str]:
    """Lines of a JSONL file: split on "\\n" only (str.splitlines would also split at
    U+2028 and friends, which canonical JSON leaves unescaped inside strings)."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def _read(path: Path) -> bytes:
    return Path(path).read_bytes()


def _bad_input(message: str) -> int:
    print(f"gateway: error: {message}", file=sys.stderr)
    return EXIT_BAD_INPUT


# --- export and checkpoints -------------------------------------------------------------


def cmd_export(args: argparse.Namespace) -> int:
    """Write every audit entry up to the current size, in seq order."""

    async def run(out: IO[str]) -> int:
        store = await open_store(args.store_url)
        try:
            records = [r async for r in _audit_records(store)]
        finally:
            await store.close()
        if args.format == "csv":
            return write_csv(records, out)
        out.writelines(jsonl_lines(records))
        return len(records)

    try:
        count = _with_output(args.out, lambda out: asyncio.run(run(out)), newline="" if args.format == "csv" else "\n")
    except OSError as exc:
        return _bad_input(f"cannot write {args.out}: {exc.strerror}")
    print(f"exported {count} audit entries ({args.format})" + (f" -> {args.out}" if args.out else ""), file=sys.stderr)
    return EXIT_OK


async def _audit_records(store: Store) -> AsyncIterator[AuditRecord]:
    # Fix the size first: entries appended while we read are left for the next export,
    # so the file is always a prefix of the log (what checkpoints sign).
    size = await store.audit_size()
    seq = 1
    while seq <= size:
        page = await store.read_audit(seq, min(PAGE, size - seq + 1))
        if not page:
            break
        for record in page:
            yield record
        seq = page[-1].seq + 1


def cmd_checkpoints(args: argparse.Namespace) -> int:
    """Write the stored checkpoint notes of one agency, smallest tree first."""

    async def run(out: IO[str]) -> int:
        store = await open_store(args.store_url)
        try:
            records = await _all_checkpoints(store, args.origin)
        finally:
            await store.close()
        for record in records:
            out.write(record.note.decode("utf-8") + "\n")
        return len(records)

    try:
        count = _with_output(args.out, lambda out: asyncio.run(run(out)), newline="\n")
    except OSError as exc:
        return _bad_input(f"cannot write {args.out}: {exc.strerror}")
    print(f"wrote {count} checkpoint(s) of {args.origin}" + (f" -> {args.out}" if args.out else ""), file=sys.stderr)
    return EXIT_OK


async def _all_checkpoints(store: Store, origin: str) -> list[CheckpointRecord]:
    seen: dict[bytes, CheckpointRecord] = {}
    min_size = 0
    while True:
        page = await store.list_checkpoints(origin, min_size=min_size, limit=PAGE)
        for record in page:
            seen.setdefault(record.note, record)
        if len(page) < PAGE:
            break
        # Pages are ordered by size; restart at the last size so ties are not cut off
        # (``seen`` drops the repeats). A full page of one size moves on by one.
        min_size = page[-1].tree_size if page[-1].tree_size > min_size else min_size + 1
    return sorted(seen.values(), key=lambda r: (r.tree_size, r.signed_at))


def _with_output(path: Path | None, write: Callable[[IO[str]], int], *, newline: str | None = None) -> int:
    """Run ``write`` on stdout or on a temporary file that replaces ``path`` only when complete."""
    if path is None:
        return write(sys.stdout)
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        # Owner-only from the first byte: exports carry case pseudonyms and actor names.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with open(fd, "w", encoding="utf-8", newline=newline) as out:
            count = write(out)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return count

