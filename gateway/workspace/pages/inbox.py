"""The inbox (metadata only), a received message's page, reading it with a purpose, and
answering a referral.

The list and the message page show ids, agencies, types, purpose codes, times and
statuses: never the payload. The payload is shown only in the answer to ``POST .../read``
(a purpose chosen, the read audited through ``Gateway.read_incoming`` with its read receipt,
as in the API), never behind a GET URL.
"""

from __future__ import annotations

import uuid
from collections import deque
from typing import Any

from aiohttp import web
from multidict import MultiDict, MultiMapping

from gateway.api.roles import Permission, allowed, page
from gateway.at_rest import PayloadShreddedError
from gateway.code_lists import label as code_list_label
from gateway.errors import ConflictError, SchemaInvalidError
from gateway.i18n import msg, translate
from gateway.schema import load_schema, payload_version
from gateway.service import FINAL_DECISIONS, READ_PURPOSES, derived_message_id
from gateway.store import InboxRecord
from gateway.workspace.cases import is_erased, referral_purposes
from gateway.workspace.fields import describe, message_type_label, status_label
from gateway.workspace.forms import field_errors
from gateway.workspace.pages.followup import FOLLOW_UP_TYPES, sendable_types
from gateway.workspace.render import PageContext, page_context, render

routes = web.RouteTableDef()

#: Received message types a caseworker works with (control messages stay out of the inbox).
INBOX_TYPES = ("referral.request", "referral.response", *FOLLOW_UP_TYPES, "consent.withdrawal")
#: Statuses of the list: the store's, plus ``erased`` when the data keys are gone (labels:
#: fields.STATUS_LABELS, shared with the sent pages).
STATUSES = ("received", "read", "responded", "erased")
#: How many rows the list shows (newest first).
MAX_ROWS = 200
#: Stored rows read at a time while looking for the newest matches.
SCAN_PAGE = 500
DECISIONS = ("accepted", "declined", "more_information_needed")


def _message_id(request: web.Request) -> str:
    text = request.match_info["id"]
    try:
        if str(uuid.UUID(text)) != text.lower():
            raise ValueError
    except ValueError:
        raise web.HTTPNotFound() from None
    return text.lower()


def _choice(query: MultiMapping[str], name: str, allowed_values: set[str] | tuple[str, ...]) -> str:
    value = query.get(name, "")
    if value and value not in allowed_values:
        raise web.HTTPBadRequest()
    return value


async def _record(ctx: PageContext, mid: str) -> InboxRecord:
    record = await ctx.gateway.store.get_incoming(mid)
    if record is None or record.message_type not in INBOX_TYPES:
        raise web.HTTPNotFound()
    return record


def _agency_name(ctx: PageContext, agency_id: str) -> str:
    agency = ctx.gateway.directory.agencies.get(agency_id)
    return agency.name if agency is not None else agency_id


async def _row(ctx: PageContext, record: InboxRecord) -> dict[str, Any]:
    erased = await is_erased(ctx.gateway, record)
    status = "erased" if erased else record.status
    purposes = [] if erased else await referral_purposes(ctx.gateway, record)
    return {
        "id": record.message_id, "sender": record.sender, "sender_name": _agency_name(ctx, record.sender),
        "type": record.message_type, "type_label": message_type_label(record.message_type, ctx.lang),
        "purposes": purposes, "received_at": record.received_at, "status": status,
        "status_label": status_label(status, ctx.lang), "case_ref": record.case_ref,
    }


@routes.get("/workspace/inbox", name="workspace.inbox")
@page(Permission.INBOX_LIST)
async def inbox(request: web.Request) -> web.StreamResponse:
    """Received messages, newest first, filtered by type, status and sender."""
    ctx = page_context(request)
    senders = sorted(a for a in ctx.gateway.directory.agencies if a != ctx.gateway.agency_id)
    wanted_type = _choice(request.query, "type", INBOX_TYPES)
    wanted_status = _choice(request.query, "status", STATUSES)
    wanted_sender = _choice(request.query, "sender", set(senders))
    store_status = wanted_status if wanted_status in ("received", "read", "responded") else None
    newest: deque[InboxRecord] = deque(maxlen=MAX_ROWS)
    offset = 0
    while True:  # oldest first in the store: page through, keep the newest matches
        batch = await ctx.gateway.list_inbox(limit=SCAN_PAGE, offset=offset, status=store_status)
        for r in batch:
            if (r.message_type in INBOX_TYPES and (not wanted_type or r.message_type == wanted_type)
                    and (not wanted_sender or r.sender == wanted_sender)
                    and (not wanted_status or (wanted_status == "erased") == await is_erased(ctx.gateway, r))):
                newest.append(r)
        if len(batch) < SCAN_PAGE:
            break
        offset += SCAN_PAGE
    rows = [await _row(ctx, record) for record in reversed(newest)]
    return render(request, "inbox.html", {
        "rows": rows, "more": len(newest) == MAX_ROWS, "max_rows": MAX_ROWS,
        "types": [(t, message_type_label(t, ctx.lang)) for t in INBOX_TYPES],
        "statuses": [(s, status_label(s, ctx.lang)) for s in STATUSES],
        "senders": [(a, _agency_name(ctx, a)) for a in senders],
        "chosen": {"type": wanted_type, "status": wanted_status, "sender": wanted_sender},
        "can_open": ctx.user is not None and allowed(ctx.user.role, Permission.INBOX_READ),
    })


@routes.get("/workspace/inbox/{id}", name="workspace.message")
@page(Permission.INBOX_READ)
async def message(request: web.Request) -> web.StreamResponse:
    """A received message's metadata and the choice of a purpose to read it (or: erased)."""
    ctx = page_context(request)
    record = await _record(ctx, _message_id(request))
    row = await _row(ctx, record)
    if row["status"] == "erased":
        return render(request, "erased.html", {"m": row})
    return render(request, "message.html", {"m": row, "purposes": _read_purposes(ctx, row)})


def _read_purposes(ctx: PageContext, row: dict[str, Any]) -> list[tuple[str, str]]:
    """The purposes offered: a referral's own purposes and case follow-up; any read purpose otherwise."""
    codes = [*row["purposes"], "case_followup"] if row["purposes"] else list(READ_PURPOSES)
    return [(c, purpose_label(c, ctx.lang)) for c in dict.fromkeys(codes)]


#: The read purpose that is not a referral purpose (gateway/service.py READ_PURPOSES).
CASE_FOLLOWUP = msg("Case follow-up")


def purpose_label(code: str, lang: str) -> str:
    """A read purpose's label (the referral purposes from the code list)."""
    if code == "case_followup":
        return translate(CASE_FOLLOWUP, lang)
    return code_list_label("purpose", code, lang) or code


@routes.post("/workspace/inbox/{id}/read", name="workspace.read")
@page(Permission.INBOX_READ)
async def read(request: web.Request) -> web.StreamResponse:
    """Decrypt and show the message for the chosen purpose (audited, read receipt sent)."""
    ctx = page_context(request)
    mid = _message_id(request)
    record = await _record(ctx, mid)
    purpose = str((await request.post()).get("purpose", ""))
    if purpose not in READ_PURPOSES:
        row = await _row(ctx, record)
        return render(request, "message.html", {"m": row, "purposes": _read_purposes(ctx, row),
                                                "purpose_error": msg("Choose why you are reading it.")}, status=422)
    try:
        opened = await ctx.gateway.read_incoming(mid, actor=ctx.actor, purpose=purpose)
    except PayloadShreddedError:
        return render(request, "erased.html", {"m": await _row(ctx, record)}, status=410)
    payload = opened.payload
    version = payload_version(payload)
    consent = payload.get("consent") if record.message_type == "referral.request" else None
    shown = {k: v for k, v in payload.items() if k != "consent"}
    row = await _row(ctx, record)
    answer = None
    if record.message_type == "referral.request" and ctx.user is not None and allowed(ctx.user.role,
                                                                                    Permission.RESPOND):
        answer = await _answer_form(ctx, record, payload.get("purposes") or [])
    return render(request, "read.html", {
        "m": row, "purpose": purpose_label(purpose, ctx.lang), "version": version,
        "rows": describe(shown, record.message_type, version, ctx.lang),
        "consent_rows": describe({"consent": consent}, record.message_type, version, ctx.lang)[0].rows
        if isinstance(consent, dict) else None,
        "answer": answer, "follow_ups": await _follow_ups(ctx, record),
        "page_path": f"/workspace/inbox/{mid}",
    })


async def _follow_ups(ctx: PageContext, record: InboxRecord) -> list[tuple[str, str]]:
    if ctx.user is None or not allowed(ctx.user.role, Permission.SUBMIT):
        return []
    return [(t, message_type_label(t, ctx.lang)) for t in sendable_types(ctx.gateway, record.sender)]


async def _answer_form(ctx: PageContext, record: InboxRecord, purposes: list[str],
                       values: MultiMapping[str] | None = None, errors: dict[str, str] | None = None,
                       general: list[str] | None = None) -> dict[str, Any] | None:
    """What the answer form needs: the decisions, the schema's reason codes, the request's purposes."""
    for final in FINAL_DECISIONS:
        sent = await ctx.gateway.store.get_outgoing(
            derived_message_id("response", record.message_id, final, ctx.gateway.agency_id))
        if sent is not None:
            return {"answered": final}
    schema = load_schema("referral.response", "2")["properties"]

    def options(list_name: str, codes: list[str]) -> list[tuple[str, str]]:
        return [(c, code_list_label(list_name, c, ctx.lang) or c) for c in codes]

    return {
        "answered": None,
        "decisions": options("referral.response.decision", list(DECISIONS)),
        "decline_reasons": options("referral.response.decline_reason", schema["decline_reason"]["enum"]),
        "information": options("referral.response.information_needed",
                               schema["information_needed"]["items"]["enum"]),
        "purposes": options("purpose", [p for p in purposes if isinstance(p, str)]),
        "values": values if values is not None else MultiDict(),
        "errors": errors or {}, "general": general or [],
    }


@routes.post("/workspace/inbox/{id}/answer", name="workspace.answer")
@page(Permission.RESPOND)
async def answer(request: web.Request) -> web.StreamResponse:
    """Send the referral.response: accepted (purposes), declined (reason), more information needed."""
    ctx = page_context(request)
    mid = _message_id(request)
    record = await _record(ctx, mid)
    if record.message_type != "referral.request":
        raise web.HTTPNotFound()
    row = await _row(ctx, record)
    if row["status"] == "erased":
        return render(request, "erased.html", {"m": row}, status=410)
    form = await request.post()
    purposes = await referral_purposes(ctx.gateway, record)
    decision = str(form.get("decision", ""))
    body: dict[str, Any] = {"schema_version": "2", "decision": decision}
    errors: dict[str, str] = {}
    if decision == "accepted":
        chosen = [str(p) for p in form.getall("accepted_purposes", [])]
        if any(p not in purposes for p in chosen):
            errors["accepted_purposes"] = msg("Choose only purposes the referral asked for.")
        body["accepted_purposes"] = list(dict.fromkeys(chosen))
    elif decision == "declined":
        body["decline_reason"] = str(form.get("decline_reason", ""))
    elif decision == "more_information_needed":
        body["information_needed"] = list(dict.fromkeys(str(v) for v in form.getall("information_needed", [])))
        if form.get("expected_by"):
            body["expected_by"] = str(form.get("expected_by"))
    else:
        errors["decision"] = msg("Choose a decision.")
    comment = str(form.get("comment", "")).strip()
    if comment:
        body["comment"] = comment
    if not errors:
        try:
            header = await ctx.gateway.respond(mid, body, actor=ctx.actor)
        except SchemaInvalidError as exc:
            errors, general = field_errors(exc.violations)
            errors = {_ANSWER_FIELD.get(k, k): v for k, v in errors.items()}
            return await _answer_again(request, ctx, record, purposes, form, errors, general)
        except ConflictError:
            return await _answer_again(request, ctx, record, purposes, form, {}, [
                msg("This referral was already answered with another decision.")], status=409)
        return render(request, "queued.html", {
            "message_id": header.id, "message_type": message_type_label(header.type, ctx.lang),
            "decision": decision, "recipient": record.sender, "case_ref": header.case,
            "sent_page": _sent_page(request, header.id),
        })
    return await _answer_again(request, ctx, record, purposes, form, errors, [])


#: Schema paths that the answer form shows under another input.
_ANSWER_FIELD = {"request_message_id": "decision"}


async def _answer_again(request: web.Request, ctx: PageContext, record: InboxRecord, purposes: list[str],
                        form: MultiMapping[Any], errors: dict[str, str], general: list[str],
                        status: int = 422) -> web.Response:
    values: MultiDict[str] = MultiDict((k, str(v)) for k, v in form.items() if k != "csrf")
    return render(request, "answer.html", {
        "m": await _row(ctx, record),
        "answer": await _answer_form(ctx, record, purposes, values, errors, general),
    }, status=status)


def _sent_page(request: web.Request, message_id: str) -> str | None:
    """The sent message's status page, when the workspace has one (gateway/workspace sent pages)."""
    for route in request.app.router.routes():
        if getattr(route.resource, "canonical", None) == "/workspace/sent/{id}":
            return f"/workspace/sent/{message_id}"
    return None
