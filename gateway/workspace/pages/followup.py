"""Follow-up messages of a case, sent to the case's other agency: safety assessment result,
family tracing result, return plan, arrival, follow-up report, closure.

Each form is generated from the message type's schema (gateway/workspace/forms.py): codes
as selects and checkboxes, nested parts as fieldsets. The payload is sent with
``Gateway.submit`` (schema version negotiated with the recipient, consent checked for case
data), and schema violations come back next to their fields.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from multidict import MultiDict

from gateway.api.errors import safe_detail
from gateway.api.roles import Permission, page
from gateway.consent import ConsentRefusedError
from gateway.directory import NoValidKeyError, UnknownAgencyError
from gateway.envelope import CASE_REF, RecipientRefusesError
from gateway.errors import SchemaInvalidError
from gateway.i18n import msg
from gateway.schema_versions import DowngradeError
from gateway.service import Gateway
from gateway.store import MessageConflictError
from gateway.workspace.cases import case_messages, counterpart
from gateway.workspace.fields import message_type_label
from gateway.workspace.forms import (
    AGENCY_CHOICES, all_names, at_inputs, build, field_errors, parse, typed_slots,
)
from gateway.workspace.render import PageContext, page_context, render
from gateway.workspace.send_keys import FIELD as SEND_KEY_FIELD, message_id_for, new_send_key

routes = web.RouteTableDef()

FOLLOW_UP_TYPES = ("safety_assessment.result", "family_tracing.result", "return.plan", "return.arrival",
                   "case.followup", "case.closure")
#: Fields naming an earlier message of the case, and the type of that message.
REFERS_TO = {"request_message_id": "referral.request", "return_plan_message_id": "return.plan"}
VERSION = "2"


def sendable_types(gateway: Gateway, recipient: str) -> list[str]:
    """The follow-up types the recipient's directory entry accepts."""
    return [t for t in FOLLOW_UP_TYPES if recipient in gateway.directory.agencies
            and gateway.directory.may_receive(recipient, t)]


async def _case(request: web.Request) -> tuple[PageContext, str, str, str]:
    ctx = page_context(request)
    case_ref, message_type = request.match_info["case_ref"], request.match_info["message_type"]
    if not CASE_REF.fullmatch(case_ref) or message_type not in FOLLOW_UP_TYPES:
        raise web.HTTPNotFound()
    recipient = await counterpart(ctx.gateway, case_ref)
    if recipient is None:
        raise web.HTTPNotFound()
    return ctx, case_ref, message_type, recipient


async def _choices(ctx: PageContext, case_ref: str) -> dict[str, list[tuple[str, str]]]:
    agencies = [(a.id, f"{a.name} ({a.id})") for a in sorted(ctx.gateway.directory.agencies.values(),
                                                              key=lambda a: a.id)]
    choices: dict[str, list[tuple[str, str]]] = {AGENCY_CHOICES: agencies}
    for name, message_type in REFERS_TO.items():
        found = await case_messages(ctx.gateway, case_ref, message_type)
        choices[name] = [(mid, f"{message_type_label(message_type, ctx.lang)}, {when} ({mid[:8]})")
                         for mid, when in found]
    return choices


def _page(request: web.Request, ctx: PageContext, case_ref: str, message_type: str, recipient: str,
          fields: list[Any], general: list[str], status: int = 200, send_key: str | None = None) -> web.Response:
    return render(request, "followup.html", {
        "case_ref": case_ref, "message_type": message_type,
        "type_label": message_type_label(message_type, ctx.lang), "recipient": recipient,
        "fields": fields, "general": general,
        "action": f"/workspace/cases/{case_ref}/send/{message_type}",
        "send_key": send_key or new_send_key(),
    }, status=status)


@routes.get("/workspace/cases/{case_ref}/send/{message_type}", name="workspace.follow_up")
@page(Permission.SUBMIT)
async def follow_up_form(request: web.Request) -> web.StreamResponse:
    """The empty form of one follow-up type for this case."""
    ctx, case_ref, message_type, recipient = await _case(request)
    fields = build(message_type, VERSION, ctx.lang, choices=await _choices(ctx, case_ref))
    return _page(request, ctx, case_ref, message_type, recipient, fields, [])


@routes.post("/workspace/cases/{case_ref}/send/{message_type}", name="workspace.follow_up_send")
@page(Permission.SUBMIT)
async def follow_up_send(request: web.Request) -> web.StreamResponse:
    """Build the payload from the form and send it; the form again with errors if it is refused."""
    ctx, case_ref, message_type, recipient = await _case(request)
    form = await request.post()
    values: MultiDict[str] = MultiDict((k, str(v)) for k, v in form.items() if k not in ("csrf", SEND_KEY_FIELD))
    # The form's one-time key: a reloaded POST or a second click sends nothing more.
    key = form.get(SEND_KEY_FIELD)
    message_id = message_id_for(message_type, ctx.gateway.agency_id, ctx.actor.name, key)
    if message_id is not None and await ctx.gateway.store.get_outgoing(message_id) is not None:
        return _queued(request, ctx, message_id, message_type, recipient, case_ref)
    choices = await _choices(ctx, case_ref)
    fields = build(message_type, VERSION, ctx.lang, choices=choices, values=values)
    payload = {"schema_version": VERSION, **parse(fields, values)}
    reply_to = next((payload.get(name) for name in REFERS_TO if isinstance(payload.get(name), str)), None)
    known = {mid for name in REFERS_TO for mid, _ in choices[name]}
    if reply_to is not None and reply_to not in known:
        raise web.HTTPBadRequest()  # a message id that is not one of this case's
    try:
        header = await ctx.gateway.submit(message_type, payload, recipient=recipient, case_ref=case_ref,
                                          actor=ctx.actor, in_reply_to=reply_to, message_id=message_id)
    except MessageConflictError:
        if message_id is None:
            raise
        return _queued(request, ctx, message_id, message_type, recipient, case_ref)  # a concurrent click won
    except SchemaInvalidError as exc:
        errors, general = field_errors(exc.violations)
        errors = at_inputs(errors, typed_slots(fields, values))
        names = all_names(fields)
        general += [msg("{path}: {message}", path=name, message=text) for name, text in errors.items()
                    if name not in names]
        fields = build(message_type, VERSION, ctx.lang, choices=choices, values=values,
                       errors={k: v for k, v in errors.items() if k in names})
        return _page(request, ctx, case_ref, message_type, recipient, fields, general, status=422,
                     send_key=key if isinstance(key, str) else None)
    except (ConsentRefusedError, DowngradeError, RecipientRefusesError, UnknownAgencyError,
            NoValidKeyError) as exc:
        return _page(request, ctx, case_ref, message_type, recipient, fields, [safe_detail(exc)], status=422,
                     send_key=key if isinstance(key, str) else None)
    return _queued(request, ctx, header.id, message_type, recipient, case_ref)


def _queued(request: web.Request, ctx: PageContext, message_id: str, message_type: str, recipient: str,
            case_ref: str) -> web.Response:
    sent_page = next((f"/workspace/sent/{message_id}" for r in request.app.router.routes()
                      if getattr(r.resource, "canonical", None) == "/workspace/sent/{id}"), None)
    return render(request, "queued.html", {
        "message_id": message_id, "message_type": message_type_label(message_type, ctx.lang), "decision": None,
        "recipient": recipient, "case_ref": case_ref, "sent_page": sent_page,
    })
