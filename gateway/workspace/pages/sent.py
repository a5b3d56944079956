"""Sent pages: what this agency sent, each message's status trail, and withdrawing consent for a case.

``GET /workspace/sent`` lists sent messages (metadata only: recipient, type, case pseudonym,
status); ``GET /workspace/sent/<id>`` shows the trail (``ol#trail``, queued → sent →
delivered → read → accepted/declined), which htmx refreshes from ``…/trail``. Withdrawal
takes two steps: ``GET /workspace/cases/<case_ref>/withdraw`` says what will happen and asks
for confirmation; the POST calls ``Gateway.withdraw_consent`` (as ``POST /cases/{case}/withdrawal``)
and redirects to ``…/withdrawal``, where ``ul#acks`` shows each recipient's acknowledgement.
"""

from __future__ import annotations

import json
from datetime import datetime
from functools import cache
from typing import Any

from aiohttp import web

from gateway.api.roles import Permission, allowed, page
from gateway.clock import format_ts
from gateway.envelope import CASE_REF
from gateway.errors import NotFoundError
from gateway.i18n import code_label, msg, translate
from gateway.message_ids import uuid_or_none
from gateway.schema import SCHEMA_DIR
from gateway.store import MessageConflictError
from gateway.workspace.fields import STATUS_LABELS, message_type_label, status_label
from gateway.workspace.render import page_context, render

routes = web.RouteTableDef()

#: Sent messages listed on one page.
PAGE_SIZE = 100

def status_text(status: str, lang: str) -> str:
    """An outgoing status in the reader's language: the same label as the inbox (fields.STATUS_LABELS)."""
    return status_label(status, lang)


def type_text(message_type: str, lang: str) -> str:
    """A message type in the reader's language: the same label as the inbox and read pages."""
    return message_type_label(message_type, lang)


@routes.get("/workspace/sent", name="workspace.sent")
@page(Permission.STATUS)
async def sent_list(request: web.Request) -> web.StreamResponse:
    """Messages this agency sent, newest first, metadata only."""
    ctx = page_context(request)
    records = await ctx.gateway.store.list_outgoing(PAGE_SIZE)
    # Receipts and checkpoints are the gateway's own traffic, not a caseworker's.
    shown = [r for r in records if r.message_type not in ("receipt", "audit.checkpoint")]
    return render(request, "sent_list.html", {
        "rows": [{
            "id": r.message_id, "recipient": r.recipient, "type": type_text(r.message_type, ctx.lang),
            "case_ref": r.case_ref, "status": r.status, "status_text": status_text(r.status, ctx.lang),
            "created": _when(r.created_at),
        } for r in shown],
    })


#: Statuses after which the trail no longer changes (the page and its htmx refresh agree).
FINAL_STATUSES = frozenset({"accepted", "declined", "failed"})


@routes.get("/workspace/sent/{id}", name="workspace.sent.one")
@page(Permission.STATUS)
async def sent_one(request: web.Request) -> web.StreamResponse:
    """One sent message: its recipient, type, case and status trail."""
    ctx = page_context(request)
    record, trail = await _outgoing(request)
    return render(request, "sent_one.html", {
        "message": {"id": record.message_id, "recipient": record.recipient, "case_ref": record.case_ref,
                    "type": type_text(record.message_type, ctx.lang), "message_type": record.message_type,
                    "status": record.status, "status_text": status_text(record.status, ctx.lang), "created": _when(record.created_at)},
        "trail": _trail(trail, ctx.lang),
        "final": record.status in FINAL_STATUSES,
        "may_withdraw": record.message_type == "referral.request" and _may(ctx, Permission.WITHDRAW),
    })


@routes.get("/workspace/sent/{id}/trail", name="workspace.sent.trail")
@page(Permission.STATUS)
async def sent_trail(request: web.Request) -> web.StreamResponse:
    """The trail alone (``ol#trail``), for htmx to refresh in place."""
    ctx = page_context(request)
    record, trail = await _outgoing(request)
    return render(request, "sent_trail.html", {
        "message": {"id": record.message_id},
        "trail": _trail(trail, ctx.lang),
        "final": record.status in FINAL_STATUSES,
    })


# --- withdrawal --------------------------------------------------------------------------------

@routes.get("/workspace/cases/{case_ref}/withdraw", name="workspace.withdraw")
@page(Permission.WITHDRAW)
async def withdraw_confirm(request: web.Request) -> web.StreamResponse:
    """What withdrawing consent does, and the confirmation form."""
    ctx = page_context(request)
    case_ref = _case_ref(request)
    requests = await _requests(ctx.gateway, case_ref)
    return render(request, "withdraw_confirm.html", {
        "case_ref": case_ref,
        "recipients": sorted({r.recipient for r in requests}),
        "decision_makers": _decision_makers(ctx.lang),
        "problem": None,
    })


@routes.post("/workspace/cases/{case_ref}/withdraw", name="workspace.withdraw.confirm")
@page(Permission.WITHDRAW)
async def withdraw(request: web.Request) -> web.StreamResponse:
    """Withdraw consent for the case: every recipient is told to destroy the data (Gateway.withdraw_consent)."""
    ctx = page_context(request)
    case_ref = _case_ref(request)
    requests = await _requests(ctx.gateway, case_ref)
    posted = await request.post()
    decision_maker = str(posted.get("decision_maker", ""))
    if decision_maker not in dict(_decision_makers(ctx.lang)):
        return render(request, "withdraw_confirm.html", {
            "case_ref": case_ref, "recipients": sorted({r.recipient for r in requests}),
            "decision_makers": _decision_makers(ctx.lang),
            "problem": translate(msg("say who withdraws the consent"), ctx.lang),
        }, status=422)
    payload = {"withdrawn_at": format_ts(ctx.gateway.clock()), "decision_maker": decision_maker,
               "scope": "all_purposes", "erasure_requested": posted.get("erasure_requested") == "yes"}
    try:
        try:
            await ctx.gateway.withdraw_consent(case_ref, payload, actor=ctx.actor)
        except MessageConflictError:  # a double click: the first one stored it
            await ctx.gateway.withdraw_consent(case_ref, payload, actor=ctx.actor)
    except NotFoundError:
        raise web.HTTPNotFound() from None
    raise web.HTTPSeeOther(f"/workspace/cases/{case_ref}/withdrawal")


@routes.get("/workspace/cases/{case_ref}/withdrawal", name="workspace.withdrawal")
@page(Permission.STATUS)
async def withdrawal(request: web.Request) -> web.StreamResponse:
    """The case's withdrawals and whether each recipient acknowledged (``ul#acks``; htmx refreshes it)."""
    ctx = page_context(request)
    case_ref = _case_ref(request)
    acks = await _acks(ctx.gateway, case_ref, ctx.lang)
    if not acks:
        raise web.HTTPNotFound()
    template = "withdrawal_acks.html" if request.query.get("part") == "acks" else "withdrawal.html"
    return render(request, template, {"case_ref": case_ref, "acks": acks,
                                      "all_acknowledged": all(a["acknowledged"] for a in acks)})


# --- helpers -----------------------------------------------------------------------------------

async def _outgoing(request: web.Request) -> tuple[Any, list[Any]]:
    message_id = request.match_info["id"]
    if uuid_or_none(message_id) != message_id:
        raise web.HTTPNotFound()
    try:
        return await page_context(request).gateway.outgoing_status(message_id)
    except NotFoundError:
        raise web.HTTPNotFound() from None


def _case_ref(request: web.Request) -> str:
    case_ref = request.match_info["case_ref"]
    if not CASE_REF.fullmatch(case_ref):
        raise web.HTTPNotFound()
    return case_ref


async def _requests(gateway: Any, case_ref: str) -> list[Any]:
    """The referrals this agency sent for the case (404 when there is none to withdraw)."""
    sent = [r for r in await gateway.store.list_outgoing_for_case(case_ref) if r.message_type == "referral.request"]
    if not sent:
        raise web.HTTPNotFound()
    return sent


async def _acks(gateway: Any, case_ref: str, lang: str) -> list[dict[str, Any]]:
    """Each withdrawal sent for the case, by recipient: acknowledged (its signed ack arrived) or not yet."""
    out: list[dict[str, Any]] = []
    for record in await gateway.store.withdrawals_for_case(case_ref):
        if record.direction != "outgoing":
            continue
        sent = await gateway.store.get_outgoing(record.message_id)
        status = sent.status if sent else "unknown"
        acknowledged = status == "accepted"  # set by the recipient's signed consent.withdrawal.ack
        if acknowledged:
            text = msg("acknowledged: the data was destroyed")
        elif status == "failed":
            text = msg("not delivered: follow up with the agency")
        else:
            text = msg("waiting for the acknowledgement ({status})", status=STATUS_LABELS.get(status, status))
        out.append({"recipient": record.counterpart, "message_id": record.message_id, "status": status,
                    "acknowledged": acknowledged, "text": translate(text, lang),
                    "withdrawn": _when(record.withdrawn_at)})
    return out


def _decision_makers(lang: str) -> list[tuple[str, str]]:
    """Who may withdraw (the v1 withdrawal's decision makers), labelled in the reader's language."""
    return [(c, code_label("decision_maker", c, lang) or c) for c in _decision_maker_codes()]


@cache
def _decision_maker_codes() -> tuple[str, ...]:
    common = json.loads((SCHEMA_DIR / "v1" / "common.schema.json").read_text(encoding="utf-8"))
    return tuple(common["$defs"]["decision_maker"]["enum"])


def _trail(trail: list[Any], lang: str) -> list[dict[str, Any]]:
    return [{"status": change.status, "text": status_text(change.status, lang), "at": _when(change.at)}
            for change in trail]


def _when(moment: datetime) -> dict[str, Any]:
    """A time for a <time> element: ISO in the attribute, the moment for the template's ``when()``."""
    return {"iso": format_ts(moment), "at": moment}


def _may(ctx: Any, permission: Permission) -> bool:
    return allowed(ctx.user.role, permission)
