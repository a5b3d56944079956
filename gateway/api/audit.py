"""The auditor's interface: query and export the audit log, signed checkpoints, proofs, and
a read-only page that verifies a case's history in the browser.

Every JSON route needs ``Permission.AUDIT_READ`` (role ``auditor``): entries hold ids,
pseudonyms, staff names and codes, never payloads. Hashes are lowercase hex; checkpoint
notes are returned as the JSON objects they are (their canonical form is the signed note).
``GET /auditor`` is public: static HTML and JavaScript, no data; the page asks for a token
and calls the routes above. See docs/api.md ("Audit") and docs/audit.md ("API").
"""

from __future__ import annotations

import asyncio
import base64
import csv
import hashlib
import io
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import structlog
from aiohttp import web
from multidict import MultiMapping

from gateway.api.operation import documented
from gateway.api.context import actor_of, gateway_of
from gateway.api.parse import allow_only, case_ref as path_case_ref, int_query, required_int_query
from gateway.api.errors import ApiError
from gateway.api.responses import NO_STORE, json_body
from gateway.api.roles import Permission, public, requires
from gateway.audit.checkpoint import MAX_TREE_SIZE, parse_checkpoint
from gateway.audit.export import COLUMNS, csv_rows, export_object, jsonl_lines
from gateway.audit.leaf import leaf_data
from gateway.b64 import b64url_encode
from gateway.clock import format_ts, parse_ts
from gateway.directory import AGENCY_ID
from gateway.envelope import CASE_REF
from gateway.errors import GatewayError
from gateway.service import Gateway
from gateway.store import AuditQuery, AuditRecord, CheckpointRecord
from gateway.i18n import msg

log = structlog.get_logger("gateway.api")
routes = web.RouteTableDef()

DEFAULT_ENTRIES, MAX_ENTRIES = 100, 1000
DEFAULT_CASE_ENTRIES = 500
DEFAULT_CHECKPOINTS, MAX_CHECKPOINTS = 1000, 10_000
MAX_EVENT_TYPES = 20
#: Event types are dotted lower-case codes (``consent.withdrawal_acknowledged``).
EVENT_TYPE = re.compile(r"^[a-z][a-z0-9_]{0,31}(?:\.[a-z0-9_]{1,32}){0,3}$")
EXPORT_FORMATS = ("jsonl", "csv")
EXPORT_PAGE = 1000
FILTERS = ("case_ref", "agency", "event_type", "since", "until")
_MEDIA = {"jsonl": "application/jsonl", "csv": "text/csv"}


# --- query parameters (names are ours; values are never echoed) ---------------------------


def _pattern(query: Mapping[str, str], name: str, pattern: re.Pattern[str], what: str) -> str | None:
    raw = query.get(name)
    if raw is None:
        return None
    if not pattern.fullmatch(raw):
        raise ApiError(400, "invalid_query", msg("query parameter {name} must be {what}", name=name, what=what))
    return raw


def _time(query: Mapping[str, str], name: str) -> Any:
    raw = query.get(name)
    if raw is None:
        return None
    try:
        return parse_ts(raw)
    except ValueError:
        raise ApiError(400, "invalid_query", msg("query parameter {name} must be a time like 2026-03-06T10:15:00Z",
                                                  name=name)) from None


def audit_query(query: MultiMapping[str], after_seq: int = 0) -> AuditQuery:
    """The filters of /audit/entries and /audit/export (every given filter must match)."""
    event_types = query.getall("event_type", [])
    if len(event_types) > MAX_EVENT_TYPES:
        raise ApiError(400, "invalid_query", msg("query parameter event_type may be given at most {limit} times",
                                                  limit=MAX_EVENT_TYPES))
    for value in event_types:
        if not EVENT_TYPE.fullmatch(value):
            raise ApiError(400, "invalid_query", msg("query parameter event_type must be a dotted lower-case event "
                                                     "code such as message.read"))
    since, until = _time(query, "since"), _time(query, "until")
    if since is not None and until is not None and until <= since:
        raise ApiError(400, "invalid_query", msg("query parameter until must be later than since"))
    return AuditQuery(
        case_ref=_pattern(query, "case_ref", CASE_REF, msg("a case pseudonym (8 to 64 of A-Z a-z 0-9 . _ -)")),
        agency=_pattern(query, "agency", AGENCY_ID, msg("an agency id such as NG-NAPTIP")),
        event_types=tuple(dict.fromkeys(event_types)),
        since=since,
        until=until,
        after_seq=after_seq,
    )


def _filtered(query: AuditQuery) -> bool:
    return bool(query.case_ref or query.agency or query.event_types or query.since or query.until)


# --- shapes -------------------------------------------------------------------------------


def checkpoint_item(gateway: Gateway, record: CheckpointRecord) -> dict[str, Any]:
    """A stored checkpoint: its note as a JSON object plus the fields an auditor sorts by.

    ``signing_key`` is the directory's public key for the note's ``kid`` (so a browser can
    check the signature); null if the directory does not list it."""
    cp = parse_checkpoint(record.note)
    return {
        "origin": record.origin,
        "tree_size": record.tree_size,
        "root_hash": record.root_hash.hex(),
        "signed_at": format_ts(record.signed_at),
        "recorded_at": format_ts(record.recorded_at),
        "note": json.loads(record.note),
        "signing_key": _signing_key(gateway, cp.origin, cp.kid, record),
    }


def _signing_key(gateway: Gateway, origin: str, kid: str, record: CheckpointRecord) -> dict[str, Any] | None:
    agency = gateway.directory.agencies.get(origin)
    key = next((k for k in agency.keys if k.kid == kid and k.use == "sig"), None) if agency else None
    if key is None:
        return None
    return {"kid": kid, "alg": "Ed25519", "public_key": b64url_encode(key.public_key),
            "status": gateway.directory.key_status(kid, at=record.signed_at)}


async def _next_page(gateway: Gateway, query: AuditQuery, limit: int) -> tuple[list[AuditRecord], int | None]:
    """One page of matching entries and the ``after_seq`` of the next (None on the last page)."""
    records = await gateway.store.query_audit(query, limit + 1)
    if len(records) > limit:
        records = records[:limit]
        return records, records[-1].seq
    return records, None


# --- entries and export ---------------------------------------------------------------------


# --- OpenAPI ----------------------------------------------------------------------------------

_HEX = {"type": "string", "pattern": "^[0-9a-f]{64}$", "description": "SHA-256 hash, 64 lowercase hex digits"}
_SIZE = {"type": "integer", "minimum": 0, "maximum": MAX_TREE_SIZE}
_NULLABLE_TEXT = {"type": ["string", "null"]}
_ENTRY = {
    "type": "object",
    "description": "One audit entry as in the JSONL export (docs/audit.md): ids, pseudonyms, staff names and codes",
    "required": ["seq", "at", "event_type", "actor", "agency", "case_ref", "message_id", "detail", "entry_hash"],
    "properties": {
        "seq": {"type": "integer", "minimum": 1},
        "at": {"type": "string", "examples": ["2026-03-06T10:15:00.123456Z"]},
        "event_type": {"type": "string", "examples": ["message.read"]},
        "actor": {"type": "string"},
        "agency": _NULLABLE_TEXT, "case_ref": _NULLABLE_TEXT, "message_id": _NULLABLE_TEXT,
        "detail": {"type": "object"},
        "entry_hash": {"type": ["string", "null"], "pattern": "^[0-9a-f]{64}$"},
    },
    "additionalProperties": False,
}
_CHECKPOINT = {
    "type": "object",
    "required": ["origin", "tree_size", "root_hash", "signed_at", "recorded_at", "note", "signing_key"],
    "properties": {
        "origin": {"type": "string"},
        "tree_size": _SIZE,
        "root_hash": _HEX,
        "signed_at": {"type": "string", "format": "date-time"},
        "recorded_at": {"type": "string", "format": "date-time"},
        "note": {"type": "object", "required": ["checkpoint", "signature"],
                 "description": "The signed note; its RFC 8785 canonical JSON is the exact note bytes"},
        "signing_key": {"type": ["object", "null"], "description": "The directory's key for the note's kid",
                        "properties": {"kid": {"type": "string"}, "alg": {"const": "Ed25519"},
                                       "public_key": {"type": "string", "description": "raw 32 bytes, base64url"},
                                       "status": {"enum": ["valid", "expired", "revoked", "unknown"]}}},
        "created": {"type": "boolean", "description": "POST only: true if this call signed it"},
    },
}


def _q(name: str, schema: dict[str, Any], description: str, *, required: bool = False, **extra: Any) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": required, "description": description, "schema": schema, **extra}


def _ok(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _err(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


_FILTER_PARAMS = [
    _q("case_ref", {"type": "string", "pattern": CASE_REF.pattern}, "Only entries of this case pseudonym"),
    _q("agency", {"type": "string", "pattern": AGENCY_ID.pattern}, "Only entries about this other agency"),
    _q("event_type", {"type": "array", "items": {"type": "string", "pattern": EVENT_TYPE.pattern},
                      "maxItems": MAX_EVENT_TYPES}, "Only these event types (repeat the parameter)",
       style="form", explode=True),
    _q("since", {"type": "string", "format": "date-time", "examples": ["2026-03-01T00:00:00Z"]},
       "Entries at or after this time (YYYY-MM-DDTHH:MM:SSZ)"),
    _q("until", {"type": "string", "format": "date-time"}, "Entries before this time (exclusive; later than since)"),
]
_BAD_QUERY = _err("invalid_query or missing_parameter; the detail names the parameter")

_OPERATIONS: dict[str, dict[str, Any]] = {
    "audit.entries": {
        "summary": "Audit entries matching the filters, in seq order (paged by after_seq)",
        "parameters": [*_FILTER_PARAMS,
                       _q("after_seq", _SIZE | {"default": 0}, "Entries with a larger seq (next_after_seq of a page)"),
                       _q("limit", {"type": "integer", "minimum": 1, "maximum": MAX_ENTRIES, "default": DEFAULT_ENTRIES},
                          "Page size")],
        "responses": {
            "200": _ok({"type": "object", "required": ["items", "next_after_seq"],
                        "properties": {"items": {"type": "array", "items": _ENTRY},
                                       "next_after_seq": {"type": ["integer", "null"],
                                                          "description": "null on the last page"}}},
                       "A page of entries"),
            "400": _BAD_QUERY,
        },
    },
    "audit.export": {
        "summary": "Download the audit log (or the matching entries) as JSONL or CSV; recorded as audit.exported",
        "description": "Unfiltered JSONL is the verifiable export (`gateway audit verify`); it ends at the log size "
                       "when the download started. CSV is a spreadsheet view with formula cells defused.",
        "parameters": [_q("format", {"enum": list(EXPORT_FORMATS), "default": "jsonl"}, "Export format"),
                       *_FILTER_PARAMS],
        "responses": {
            "200": {"description": "The export, as an attachment",
                    "headers": {"Content-Disposition": {"schema": {"type": "string"}}},
                    "content": {"application/jsonl": {"schema": {"type": "string"}},
                                "text/csv": {"schema": {"type": "string"}}}},
            "400": _BAD_QUERY,
        },
    },
    "audit.checkpoints": {
        "summary": "Signed checkpoints of an agency's audit log stored here (ours by default, or a partner's)",
        "parameters": [_q("origin", {"type": "string", "pattern": AGENCY_ID.pattern}, "Agency whose checkpoints (default: us)"),
                       _q("min_size", _SIZE | {"default": 0}, "Only checkpoints with at least this tree size"),
                       _q("limit", {"type": "integer", "minimum": 1, "maximum": MAX_CHECKPOINTS,
                                    "default": DEFAULT_CHECKPOINTS}, "Page size")],
        "responses": {
            "200": _ok({"type": "object", "required": ["origin", "items", "next_min_size"],
                        "properties": {"origin": {"type": "string"}, "items": {"type": "array", "items": _CHECKPOINT},
                                       "next_min_size": {"type": ["integer", "null"]}}},
                       "Checkpoints by tree size, then signing time"),
            "400": _BAD_QUERY,
        },
    },
    "audit.checkpoints.latest": {
        "summary": "The latest checkpoint (largest tree size) of an agency",
        "parameters": [_q("origin", {"type": "string", "pattern": AGENCY_ID.pattern}, "Agency (default: us)")],
        "responses": {"200": _ok(_CHECKPOINT, "The checkpoint"), "400": _BAD_QUERY,
                      "404": _err("No checkpoint of that agency is stored")},
    },
    "audit.checkpoints.sign": {
        "summary": "Sign a checkpoint of our log now if it grew (and send it to the audit partners)",
        "responses": {"201": _ok(_CHECKPOINT, "A new checkpoint was signed"),
                      "200": _ok(_CHECKPOINT, "The log did not grow: our latest checkpoint"),
                      "400": _BAD_QUERY},
    },
    "audit.proofs.inclusion": {
        "summary": "RFC 9162 inclusion proof of entry seq in the tree of the first tree_size entries",
        "parameters": [_q("seq", {"type": "integer", "minimum": 1}, "Entry (leaf index seq - 1)", required=True),
                       _q("tree_size", {"type": "integer", "minimum": 1}, "Tree size, e.g. a checkpoint's", required=True)],
        "responses": {
            "200": _ok({"type": "object", "required": ["seq", "tree_size", "leaf_hash", "proof", "root_hash"],
                        "properties": {"seq": {"type": "integer"}, "tree_size": {"type": "integer"},
                                       "leaf_hash": _HEX, "proof": {"type": "array", "items": _HEX},
                                       "root_hash": _HEX}},
                       "Audit path, leaf-side first; hashes in lowercase hex"),
            "400": _err("invalid_query / missing_parameter, or invalid_proof_request (sizes beyond the log)"),
        },
    },
    "audit.proofs.consistency": {
        "summary": "RFC 9162 consistency proof between the trees of sizes first <= second",
        "parameters": [_q("first", {"type": "integer", "minimum": 1}, "Older tree size", required=True),
                       _q("second", {"type": "integer", "minimum": 1}, "Newer tree size", required=True)],
        "responses": {
            "200": _ok({"type": "object", "required": ["first", "second", "proof", "first_root", "second_root"],
                        "properties": {"first": {"type": "integer"}, "second": {"type": "integer"},
                                       "proof": {"type": "array", "items": _HEX},
                                       "first_root": _HEX, "second_root": _HEX}},
                       "Consistency proof (empty when first = second); hashes in lowercase hex"),
            "400": _err("invalid_query / missing_parameter (a size beyond the log)"),
        },
    },
    "audit.case": {
        "summary": "A case's consent and access history with what a browser needs to verify each entry",
        "description": "Each item carries the exact leaf data (RFC 8785 JSON text; leaf hash = SHA-256(0x00 || UTF-8 "
                       "bytes)) and, if our latest checkpoint covers it, the inclusion proof for that checkpoint's "
                       "tree size.",
        "parameters": [
            {"name": "case_ref", "in": "path", "required": True, "description": "Case pseudonym",
             "schema": {"type": "string", "pattern": CASE_REF.pattern}},
            _q("after_seq", _SIZE | {"default": 0}, "Entries with a larger seq"),
            _q("limit", {"type": "integer", "minimum": 1, "maximum": MAX_ENTRIES, "default": DEFAULT_CASE_ENTRIES},
               "Page size"),
        ],
        "responses": {
            "200": _ok({"type": "object",
                        "required": ["case_ref", "origin", "log_size", "checkpoint", "items", "next_after_seq"],
                        "properties": {
                            "case_ref": {"type": "string"}, "origin": {"type": "string"},
                            "log_size": _SIZE,
                            "checkpoint": {"oneOf": [_CHECKPOINT, {"type": "null"}]},
                            "items": {"type": "array", "items": {
                                "type": "object", "required": ["seq", "entry", "leaf_data", "covered", "proof"],
                                "properties": {"seq": {"type": "integer"}, "entry": _ENTRY,
                                               "leaf_data": {"type": "string"}, "covered": {"type": "boolean"},
                                               "proof": {"type": ["array", "null"], "items": _HEX}}}},
                            "next_after_seq": {"type": ["integer", "null"]}}},
                       "The case's entries in seq order"),
            "400": _err("invalid_id (not a case pseudonym) or invalid_query"),
        },
    },
    "auditor.page": {
        "summary": "The read-only auditor page (static HTML and JavaScript; it asks for an auditor token)",
        "responses": {"200": {"description": "HTML page with a strict Content-Security-Policy",
                              "content": {"text/html": {"schema": {"type": "string"}}}}},
    },
}


@routes.get("/audit/entries", name="audit.entries", allow_head=True)
@documented(_OPERATIONS["audit.entries"])
@requires(Permission.AUDIT_READ)
async def list_entries(request: web.Request) -> web.Response:
    q = request.query
    allow_only(q, (*FILTERS, "after_seq", "limit"), repeatable=("event_type",))
    after_seq = int_query(q, "after_seq", default=0, minimum=0, maximum=MAX_TREE_SIZE)
    limit = int_query(q, "limit", default=DEFAULT_ENTRIES, minimum=1, maximum=MAX_ENTRIES)
    records, next_after = await _next_page(gateway_of(request), audit_query(q, after_seq), limit)
    return json_body({"items": [export_object(r) for r in records], "next_after_seq": next_after})


@routes.get("/audit/export", name="audit.export", allow_head=True)
@documented(_OPERATIONS["audit.export"])
@requires(Permission.AUDIT_READ)
async def export(request: web.Request) -> web.StreamResponse:
    q = request.query
    allow_only(q, (*FILTERS, "format"), repeatable=("event_type",))
    fmt = q.get("format", "jsonl")
    if fmt not in EXPORT_FORMATS:
        raise ApiError(400, "invalid_query", msg("query parameter format must be one of: jsonl, csv"))
    query = audit_query(q)
    gateway = gateway_of(request)
    # The log size is fixed first: the export is the log (or its matching entries) up to
    # here, never a mix with entries appended while it streams, and never its own entry.
    size = await gateway.audit_log.size()

    async def page_after(after: int) -> list[AuditRecord]:
        records = await gateway.store.query_audit(
            AuditQuery(query.case_ref, query.agency, query.event_types, query.since, query.until, after), EXPORT_PAGE)
        return [r for r in records if r.seq <= size]

    page = await page_after(0)  # before the headers go out: a store failure is still a JSON error
    stamp = format_ts(gateway.clock()).replace(":", "").replace("-", "")
    response = web.StreamResponse(headers={
        **NO_STORE,
        "Content-Type": f"{_MEDIA[fmt]}; charset=utf-8",
        "Content-Disposition": f'attachment; filename="audit-{gateway.agency_id}-{stamp}.{fmt}"',
    })
    await response.prepare(request)
    if request.method == "HEAD":
        # The headers only: nothing is exported, so nothing is recorded as exported.
        await response.write_eof()
        return response
    count = 0
    try:
        if fmt == "csv":
            await response.write(_csv_text([list(COLUMNS)]))
        while page:
            chunk = "".join(jsonl_lines(page)).encode("utf-8") if fmt == "jsonl" else _csv_text(list(csv_rows(page))[1:])
            await response.write(chunk)
            count += len(page)
            page = await page_after(page[-1].seq) if page[-1].seq < size else []
        await response.write_eof()
    finally:
        # Recorded however the download ended (a client may stop reading half-way).
        await asyncio.shield(_record_export(gateway, request, fmt, count, query))
    return response


def _csv_text(rows: list[list[str]]) -> bytes:
    out = io.StringIO(newline="")
    csv.writer(out, lineterminator="\r\n").writerows(rows)
    return out.getvalue().encode("utf-8")


async def _record_export(gateway: Gateway, request: web.Request, fmt: str, count: int, query: AuditQuery) -> None:
    try:
        await gateway.audit_event("audit.exported", actor_of(request),
                                  {"format": fmt, "entries": count, "filtered": _filtered(query)},
                                  case_ref=query.case_ref, agency=query.agency)
    except GatewayError as exc:
        log.warning("audit.export_not_recorded", error=exc.code)


# --- checkpoints -----------------------------------------------------------------------------


def _origin(request: web.Request) -> str:
    origin = _pattern(request.query, "origin", AGENCY_ID, msg("an agency id such as NG-NAPTIP"))
    return origin or gateway_of(request).agency_id


@routes.get("/audit/checkpoints", name="audit.checkpoints", allow_head=True)
@documented(_OPERATIONS["audit.checkpoints"])
@requires(Permission.AUDIT_READ)
async def list_checkpoints(request: web.Request) -> web.Response:
    q = request.query
    allow_only(q, ("origin", "min_size", "limit"))
    origin = _origin(request)
    min_size = int_query(q, "min_size", default=0, minimum=0, maximum=MAX_TREE_SIZE)
    limit = int_query(q, "limit", default=DEFAULT_CHECKPOINTS, minimum=1, maximum=MAX_CHECKPOINTS)
    gateway = gateway_of(request)
    records = await gateway.store.list_checkpoints(origin, min_size=min_size, limit=limit)
    next_min: int | None = None
    if len(records) == limit:
        # Page at a tree size boundary: two checkpoints of one size (a fork, the evidence
        # that matters most) never fall on two pages or get skipped.
        last = records[-1].tree_size
        earlier = [r for r in records if r.tree_size < last]
        records, next_min = (earlier, last) if earlier else (records, last + 1)
    return json_body({"origin": origin, "items": [checkpoint_item(gateway, r) for r in records],
                      "next_min_size": next_min})


@routes.get("/audit/checkpoints/latest", name="audit.checkpoints.latest", allow_head=True)
@documented(_OPERATIONS["audit.checkpoints.latest"])
@requires(Permission.AUDIT_READ)
async def latest_checkpoint(request: web.Request) -> web.Response:
    allow_only(request.query, ("origin",))
    origin = _origin(request)
    gateway = gateway_of(request)
    record = await gateway.store.latest_checkpoint(origin)
    if record is None:
        raise ApiError(404, "not_found", msg("no checkpoint of the agency in query parameter origin (default: this "
                                                 "gateway) is stored"))
    return json_body(checkpoint_item(gateway, record))


@routes.post("/audit/checkpoints", name="audit.checkpoints.sign")
@documented(_OPERATIONS["audit.checkpoints.sign"])
@requires(Permission.AUDIT_READ)
async def sign_checkpoint(request: web.Request) -> web.Response:
    """Sign a checkpoint now if the log grew (and share it with the audit partners);
    answer our latest. Adds no data, so auditors may ask for it."""
    allow_only(request.query, ())
    gateway = gateway_of(request)
    created = await gateway.checkpoint_and_share()
    record = created or await gateway.audit_log.latest()
    assert record is not None  # checkpoint_and_share signs when there is none yet
    return json_body({**checkpoint_item(gateway, record), "created": created is not None},
                     status=201 if created is not None else 200)


# --- proofs ----------------------------------------------------------------------------------


@routes.get("/audit/proofs/inclusion", name="audit.proofs.inclusion", allow_head=True)
@documented(_OPERATIONS["audit.proofs.inclusion"])
@requires(Permission.AUDIT_READ)
async def inclusion(request: web.Request) -> web.Response:
    q = request.query
    allow_only(q, ("seq", "tree_size"))
    seq = required_int_query(q, "seq", minimum=1, maximum=MAX_TREE_SIZE)
    tree_size = required_int_query(q, "tree_size", minimum=1, maximum=MAX_TREE_SIZE)
    if seq > tree_size:
        raise ApiError(400, "invalid_query", msg("query parameter seq must not exceed tree_size"))
    log_ = gateway_of(request).audit_log
    # O(log size) stored subtree hashes, one store read: cheap enough for the event loop.
    found = await log_.inclusion(seq, await _within_log(log_, tree_size))
    return json_body({"seq": seq, "tree_size": tree_size, "leaf_hash": found.leaf_hash.hex(),
                      "proof": [h.hex() for h in found.proof], "root_hash": found.root_hash.hex()})


@routes.get("/audit/proofs/consistency", name="audit.proofs.consistency", allow_head=True)
@documented(_OPERATIONS["audit.proofs.consistency"])
@requires(Permission.AUDIT_READ)
async def consistency(request: web.Request) -> web.Response:
    q = request.query
    allow_only(q, ("first", "second"))
    first = required_int_query(q, "first", minimum=1, maximum=MAX_TREE_SIZE)
    second = required_int_query(q, "second", minimum=1, maximum=MAX_TREE_SIZE)
    if first > second:
        raise ApiError(400, "invalid_query", msg("query parameter first must not exceed second"))
    log_ = gateway_of(request).audit_log
    found = await log_.consistency(first, await _within_log(log_, second))
    return json_body({"first": first, "second": second, "proof": [h.hex() for h in found.proof],
                      "first_root": found.first_root.hex(), "second_root": found.second_root.hex()})


async def _within_log(audit_log: Any, tree_size: int) -> int:
    size = await audit_log.size()
    if tree_size > size:
        raise ApiError(400, "invalid_query", msg("tree sizes must be at most the log size {size}", size=size))
    return tree_size


# --- one case's history, for the page -------------------------------------------------------


@routes.get("/audit/cases/{case_ref}", name="audit.case", allow_head=True)
@documented(_OPERATIONS["audit.case"])
@requires(Permission.AUDIT_READ)
async def case_history(request: web.Request) -> web.Response:
    """Every entry of a case with what a browser needs to check it against our latest
    signed checkpoint: the exact leaf data and, for entries the checkpoint covers, the
    inclusion proof for its tree size."""
    case_ref = path_case_ref(request)
    q = request.query
    allow_only(q, ("after_seq", "limit"))
    after_seq = int_query(q, "after_seq", default=0, minimum=0, maximum=MAX_TREE_SIZE)
    limit = int_query(q, "limit", default=DEFAULT_CASE_ENTRIES, minimum=1, maximum=MAX_ENTRIES)
    gateway = gateway_of(request)
    checkpoint = await gateway.audit_log.latest()
    records, next_after = await _next_page(gateway, AuditQuery(case_ref=case_ref, after_seq=after_seq), limit)
    covered_size = checkpoint.tree_size if checkpoint is not None else 0
    covered = [r.seq for r in records if r.seq <= covered_size]
    proof_of: dict[int, list[str]] = {}
    if covered:  # every proof from one read of O(log size) stored subtree hashes each
        paths = await gateway.audit_log.inclusion_proofs(covered, covered_size)
        proof_of = {seq: [h.hex() for h in path] for seq, path in paths.items()}
    items = [{
        "seq": record.seq,
        "entry": export_object(record),
        "leaf_data": leaf_data(record).decode("utf-8"),
        "covered": record.seq <= covered_size,
        "proof": proof_of.get(record.seq),
    } for record in records]
    # Who looked at a case's history is itself part of the record (after the read, so the
    # page shows what was there when it was opened).
    await gateway.audit_event("audit.case_viewed", actor_of(request), {"entries": len(items)}, case_ref=case_ref)
    return json_body({
        "case_ref": case_ref,
        "origin": gateway.agency_id,
        "log_size": await gateway.audit_log.size(),
        "checkpoint": checkpoint_item(gateway, checkpoint) if checkpoint is not None else None,
        "items": items,
        "next_after_seq": next_after,
    })


# --- the page -------------------------------------------------------------------------------

STATIC = Path(__file__).resolve().parent / "static"


def _csp_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii") + "'"


def build_page() -> tuple[bytes, str]:
    """The page with its script and style inlined, and a CSP that allows exactly those."""
    html = (STATIC / "auditor.html").read_text(encoding="utf-8")
    script = (STATIC / "auditor.js").read_text(encoding="utf-8")
    style = (STATIC / "auditor.css").read_text(encoding="utf-8")
    page = html.replace("<style></style>", f"<style>{style}</style>", 1).replace(
        "<script></script>", f"<script>{script}</script>", 1)
    csp = "; ".join((
        "default-src 'none'",
        f"script-src {_csp_hash(script)}",
        f"style-src {_csp_hash(style)}",
        "connect-src 'self'",
        "img-src 'none'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
        "require-trusted-types-for 'script'",
        "trusted-types 'none'",
    ))
    return page.encode("utf-8"), csp


_PAGE: tuple[bytes, str] | None = None


@routes.get("/auditor", name="auditor.page", allow_head=True)
@documented(_OPERATIONS["auditor.page"])
@public
async def auditor_page(request: web.Request) -> web.Response:
    """Static HTML and JavaScript only: no data until the user gives a token."""
    global _PAGE
    if _PAGE is None:
        _PAGE = build_page()
    body, csp = _PAGE
    return web.Response(body=body, content_type="text/html", charset="utf-8", headers={
        **NO_STORE,
        "Content-Security-Policy": csp,
        "Referrer-Policy": "no-referrer",
        "X-Frame-Options": "DENY",
        "Cross-Origin-Opener-Policy": "same-origin",
        "Cross-Origin-Resource-Policy": "same-origin",
    })
