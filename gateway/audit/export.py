"""Audit log exports: JSON Lines (authoritative, verifiable) and CSV (for spreadsheets).

A JSONL line is the canonical JSON of one entry::

    {"actor":...,"agency":...,"at":"YYYY-MM-DDTHH:MM:SS.ffffffZ","case_ref":...,
     "detail":{...},"entry_hash":"<64 lowercase hex>","event_type":...,"message_id":...,"seq":n}

Everything the leaf hash covers is there (leaf.py), so an auditor can recompute every
leaf hash and tree root offline. CSV is a convenience view of the same columns and is
never verified: see :data:`FORMULA_PREFIXES`.
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import IO, Any, Iterable, Iterator

from gateway.audit.leaf import format_at
from gateway.canonical import canonical_bytes, strict_loads
from gateway.errors import GatewayError, NestingTooDeepError
from gateway.store.base import AuditRecord

#: Column order of the CSV export (JSONL objects have the same members).
COLUMNS = ("seq", "at", "event_type", "actor", "agency", "case_ref", "message_id", "detail", "entry_hash")
#: A spreadsheet treats a cell starting with one of these as a formula (=HYPERLINK(...) in
#: an actor name would run when an auditor opens the file). Such cells get a leading "'",
#: which spreadsheets hide and show the rest as text. Tab and CR are included as OWASP
#: advises. The CSV is therefore not byte-exact: verify the JSONL export, not the CSV.
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")

_AT = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z$")
_HEX_HASH = re.compile(r"^[0-9a-f]{64}$")


class ExportFormatError(GatewayError):
    """An export line is not a well-formed entry; the message names the line and field."""

    code = "audit_export_malformed"

    def __init__(self, line: int, field_name: str | None, problem: str) -> None:
        self.line = line
        self.field = field_name
        where = f"line {line}" + (f", field {field_name!r}" if field_name else "")
        super().__init__(f"{where}: {problem}")


@dataclass(frozen=True)
class ExportedEntry:
    """One entry read back from a JSONL export (``entry_hash`` as recorded, not checked)."""

    seq: int
    at: datetime
    event_type: str
    actor: str
    agency: str | None
    case_ref: str | None
    message_id: str | None
    detail: dict[str, Any] = field(repr=False)
    entry_hash: bytes | None = field(repr=False)

    @property
    def detail_json(self) -> str:
        """``detail`` as JSON text, so an entry can be passed to leaf.leaf_hash."""
        return canonical_bytes(self.detail).decode("utf-8")


def export_object(record: AuditRecord) -> dict[str, Any]:
    """The JSON object of one entry in the JSONL export."""
    return {
        "seq": record.seq,
        "at": format_at(record.at),
        "event_type": record.event_type,
        "actor": record.actor,
        "agency": record.agency,
        "case_ref": record.case_ref,
        "message_id": record.message_id,
        # Parsed exactly as leaf.py does, so the export carries what the hash covers.
        "detail": json.loads(record.detail_json),
        "entry_hash": record.entry_hash.hex() if record.entry_hash is not None else None,
    }


def jsonl_lines(records: Iterable[AuditRecord]) -> Iterator[str]:
    """One canonical JSON object per entry, each line ending in ``\\n``."""
    for record in records:
        yield canonical_bytes(export_object(record)).decode("utf-8") + "\n"


def csv_rows(records: Iterable[AuditRecord]) -> Iterator[list[str]]:
    """The header row, then one row per entry (None as an empty cell, formulas defused)."""
    yield list(COLUMNS)
    for record in records:
        obj = export_object(record)
        obj["detail"] = canonical_bytes(obj["detail"]).decode("utf-8")
        yield [_cell(obj[name]) for name in COLUMNS]


def write_csv(records: Iterable[AuditRecord], file: IO[str]) -> int:
    """Write the CSV export to ``file`` (opened with ``newline=""``); return the entry count."""
    writer = csv.writer(file, lineterminator="\r\n")
    count = -1
    for count, row in enumerate(csv_rows(records)):
        writer.writerow(row)
    return count


def _cell(value: Any) -> str:
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_PREFIXES) else text


def parse_jsonl(lines: Iterable[str]) -> list[ExportedEntry]:
    """Read a JSONL export strictly; raise ExportFormatError naming the line and field.

    Split files on "\\n" only, never with str.splitlines: canonical JSON leaves U+2028
    and similar characters unescaped inside strings."""
    entries = []
    for number, raw in enumerate(lines, start=1):
        line = raw[:-1] if raw.endswith("\n") else raw
        line = line[:-1] if line.endswith("\r") else line
        if not line.strip():
            raise ExportFormatError(number, None, "blank line")
        entries.append(parse_line(line, number))
    return entries


def parse_line(line: str, number: int = 1) -> ExportedEntry:
    """Parse one JSONL line (without its line ending)."""
    try:
        obj = strict_loads(line.encode("utf-8"))
    except (ValueError, RecursionError) as exc:
        # json's messages give positions only, never the text around them.
        raise ExportFormatError(number, None, f"not valid JSON ({type(exc).__name__}: {_position(exc)})") from None
    if not isinstance(obj, dict):
        raise ExportFormatError(number, None, "must be a JSON object")
    missing, extra = set(COLUMNS) - obj.keys(), obj.keys() - set(COLUMNS)
    if missing:
        raise ExportFormatError(number, sorted(missing)[0], "missing")
    if extra:
        raise ExportFormatError(number, sorted(extra)[0], "unexpected member")
    seq = obj["seq"]
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
        raise ExportFormatError(number, "seq", "must be a positive integer")
    at = obj["at"]
    if not isinstance(at, str) or not _AT.fullmatch(at):
        raise ExportFormatError(number, "at", "must look like YYYY-MM-DDTHH:MM:SS.ffffffZ")
    try:
        moment = datetime.strptime(at, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)
    except ValueError:
        raise ExportFormatError(number, "at", "not a valid date and time") from None
    for name in ("event_type", "actor"):
        if not isinstance(obj[name], str) or not obj[name]:
            raise ExportFormatError(number, name, "must be a non-empty string")
    for name in ("agency", "case_ref", "message_id"):
        if obj[name] is not None and (not isinstance(obj[name], str) or not obj[name]):
            raise ExportFormatError(number, name, "must be a non-empty string or null")
    if not isinstance(obj["detail"], dict):
        raise ExportFormatError(number, "detail", "must be a JSON object")
    try:
        canonical_bytes(obj["detail"])
    except (ValueError, TypeError):  # rfc8785 refuses e.g. integers beyond 2**53: no entry can hold those
        raise ExportFormatError(number, "detail", "has no canonical JSON form") from None
    entry_hash = obj["entry_hash"]
    if entry_hash is not None and (not isinstance(entry_hash, str) or not _HEX_HASH.fullmatch(entry_hash)):
        raise ExportFormatError(number, "entry_hash", "must be 64 lowercase hex digits or null")
    return ExportedEntry(
        seq=seq,
        at=moment,
        event_type=obj["event_type"],
        actor=obj["actor"],
        agency=obj["agency"],
        case_ref=obj["case_ref"],
        message_id=obj["message_id"],
        detail=obj["detail"],
        entry_hash=bytes.fromhex(entry_hash) if entry_hash is not None else None,
    )


def _position(exc: BaseException) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return f"column {exc.colno}"
    if isinstance(exc, UnicodeError):
        return "invalid text encoding"
    if isinstance(exc, (RecursionError, NestingTooDeepError)):
        return "nested too deeply"
    return "duplicate member name" if "duplicate" in str(exc) else "invalid"
