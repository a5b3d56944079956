"""Compose pages: fill in the agency's local form, give the consent, preview what leaves, send.

``GET /workspace/compose`` chooses the form and the recipient; ``GET /workspace/compose/<format>``
shows the form (gateway/workspace/local_form.py) with its consent step (``fieldset#consent``);
``POST …/preview`` shows either the form again with each problem next to its field, in the
reader's language, or exactly what would leave (``table#leaving``) and what was dropped and
why (``table#dropped``); ``POST …/send`` submits through the same path as ``POST /referrals``
(gateway/api/submission.py) and redirects to the sent message's status page. The record
only ever travels in POST bodies; URLs carry the format and agency ids, never a value.
"""

from __future__ import annotations

import json
import re
import secrets
from typing import Any

from aiohttp import web

from adapters.errors import UnknownFormatError
from gateway.api.context import gateway_of, settings_of
from gateway.api.roles import Permission, page
from gateway.api.submission import Outgoing, Problem, general_problem, preview, submit
from gateway.canonical import strict_loads
from gateway.errors import GatewayError
from gateway.i18n import code_label, msg, translate
from gateway.pseudonym import case_pseudonym
from gateway.store import MessageConflictError
from gateway.workspace.fields import leaves
from gateway.workspace.local_form import FormField, LocalForm, build_form, form_spec, formats_with_forms, input_name
from gateway.workspace.render import page_context, render
from gateway.workspace.send_keys import FIELD as SEND_KEY_FIELD, message_id_for, new_send_key

routes = web.RouteTableDef()

#: The form an agency fills in by default, by its country (others stay selectable).
DEFAULT_FORMAT = {"NE": "niger", "NG": "nigeria", "ML": "mali"}
#: Largest record accepted back from the preview page (the form's own limits are far smaller).
MAX_RECORD_CHARS = 200_000


@routes.get("/workspace/compose", name="workspace.compose")
@page(Permission.SUBMIT)
async def choose(request: web.Request) -> web.StreamResponse:
    """Choose the local form and the recipient (a plain GET form: works without JavaScript)."""
    ctx = page_context(request)
    formats = formats_with_forms()
    recipients = _recipients(ctx.gateway)
    chosen, recipient = request.query.get("format"), request.query.get("recipient")
    if chosen in formats and recipient in recipients:
        raise web.HTTPSeeOther(f"/workspace/compose/{chosen}?recipient={recipient}")
    own_country = ctx.gateway.directory.agency(ctx.gateway.agency_id).country
    default = DEFAULT_FORMAT.get(own_country)
    return render(request, "compose_choose.html", {
        "formats": [(f, form_spec(f).get("title", f)) for f in formats],
        "default_format": default if default in formats else (formats[0] if formats else None),
        "recipients": recipients,
    })


@routes.get("/workspace/compose/{format}", name="workspace.compose.form")
@page(Permission.SUBMIT)
async def blank_form(request: web.Request) -> web.StreamResponse:
    """The local form, empty, with the recipient agency ticked in the consent's recipients."""
    ctx = page_context(request)
    form = _form(request)
    recipient = request.query.get("recipient", "")
    if recipient not in _recipients(ctx.gateway):
        raise web.HTTPSeeOther("/workspace/compose")
    agencies = _agencies_field(form)
    values = {agencies: [recipient]} if agencies else {}
    return _form_page(request, form, recipient, values, ())


@routes.post("/workspace/compose/{format}", name="workspace.compose.edit")
@page(Permission.SUBMIT)
async def edit(request: web.Request) -> web.StreamResponse:
    """Back from the preview: the form again, filled with the record (posted, never in the URL)."""
    form = _form(request)
    posted = await request.post()
    record = _posted_record(posted)
    recipient = str(posted.get("recipient", ""))
    fitted = form.fit(record)
    return _form_page(request, fitted, recipient, fitted.values(record), ())


@routes.post("/workspace/compose/{format}/preview", name="workspace.compose.preview")
@page(Permission.SUBMIT)
async def show_preview(request: web.Request) -> web.StreamResponse:
    """The form with its problems next to the fields, or what exactly would leave and what not."""
    ctx = page_context(request)
    form = _form(request)
    posted = await request.post()
    recipient = str(posted.get("recipient", ""))
    pairs = [(k, v) for k, v in posted.items() if isinstance(v, str)]
    record = form.parse(pairs)
    fitted = form.fit(record)
    if recipient not in _recipients(ctx.gateway):
        problem = Problem("recipient", "recipient", None, {}, msg("choose the recipient agency"))
        return _form_page(request, fitted, recipient, fitted.values(record), (problem,), status=422)
    case_ref = _case_ref(request, form, record, recipient)
    found = await preview(ctx.gateway, recipient=recipient, local_format=form.format_id, record=record,
                          case_ref=case_ref)
    if found.outgoing is None:
        return _form_page(request, fitted, recipient, fitted.values(record), found.problems, status=422)
    return render(request, "compose_preview.html", {
        "form": form,
        "recipient": recipient,
        "outgoing": found.outgoing,
        "leaving": leaves(found.outgoing.payload, found.outgoing.message_type, found.outgoing.schema_version,
                          ctx.lang),
        "dropped": [(_field_label(form, d.local_field), d.local_field, dropped_text(d.reason, ctx.lang))
                    for d in found.outgoing.dropped or ()],
        "converted": [(c.path.removeprefix("$."), dropped_text(c.reason, ctx.lang)) for c in found.outgoing.converted],
        "purposes": [_code(ctx.lang, "purpose", p) for p in found.outgoing.payload.get("purposes", [])],
        "record_json": json.dumps(record, ensure_ascii=False, separators=(",", ":")),
        "send_key": new_send_key(),
        "no_case_number": case_ref is None,
    })


@routes.post("/workspace/compose/{format}/send", name="workspace.compose.send")
@page(Permission.SUBMIT)
async def send(request: web.Request) -> web.StreamResponse:
    """Send the previewed record: checked again on the way (nothing is trusted from the page)."""
    ctx = page_context(request)
    form = _form(request)
    posted = await request.post()
    record = _posted_record(posted)
    recipient = str(posted.get("recipient", ""))
    fitted = form.fit(record)
    if recipient not in _recipients(ctx.gateway):
        raise web.HTTPSeeOther("/workspace/compose")
    # A second click, a reload or "back and send again" on the same preview sends nothing
    # more: the preview's one-time key gives the message its id, and a stored one is shown.
    message_id = message_id_for("compose", ctx.gateway.agency_id, ctx.actor.name, posted.get(SEND_KEY_FIELD))
    if message_id is not None and await ctx.gateway.store.get_outgoing(message_id) is not None:
        raise web.HTTPSeeOther(f"/workspace/sent/{message_id}")
    case_ref = _case_ref(request, form, record, recipient) or _new_case_ref(request, recipient)
    found = await preview(ctx.gateway, recipient=recipient, local_format=form.format_id, record=record,
                          case_ref=case_ref)
    if found.outgoing is None:
        return _form_page(request, fitted, recipient, fitted.values(record), found.problems, status=422)
    try:
        header = await submit(ctx.gateway, found.outgoing, case_ref=case_ref, actor=ctx.actor,
                              message_id=message_id)
    except MessageConflictError:
        if message_id is None:
            raise
        raise web.HTTPSeeOther(f"/workspace/sent/{message_id}") from None  # a concurrent click won
    except GatewayError as exc:
        # The consent check at submission (a withdrawal in between) or the directory: shown, not lost.
        return _form_page(request, fitted, recipient, fitted.values(record),
                          (general_problem(exc, form.format_id),), status=422)
    raise web.HTTPSeeOther(f"/workspace/sent/{header.id}")


# --- the form page ------------------------------------------------------------------------------

def _form_page(request: web.Request, form: LocalForm, recipient: str, values: dict[str, list[str]],
               problems: tuple[Problem, ...], *, status: int = 200) -> web.StreamResponse:
    ctx = page_context(request)
    agencies = _agencies_field(form)
    if agencies:
        form = form.with_choices(agencies, [(a, a) for a in _all_agencies(ctx.gateway)])
    errors: dict[str, list[str]] = {}
    summary: list[tuple[str | None, str, str]] = []
    names = [f.name for f in form.fields()]
    for problem in problems:
        target = _input_for(problem.local_field, names)
        text = translate(problem.reason, ctx.lang)
        if target is not None:
            errors.setdefault(target, []).append(text)
        field_label = _field_label(form, problem.local_field) if problem.local_field else None
        summary.append((target, field_label or "", text))
    return render(request, "compose_form.html", {
        "form": form,
        "sections": [(s, _blocks(s.fields)) for s in form.sections if s.id != "consent"],
        "consent": next(((s, _blocks(s.fields)) for s in form.sections if s.id == "consent"), None),
        "recipient": recipient,
        "recipients": _recipients(ctx.gateway),
        "values": values,
        "errors": errors,
        "summary": summary,
    }, status=status)


def _blocks(fields: tuple[FormField, ...]) -> list[tuple[str | None, list[FormField]]]:
    """A section's fields in blocks: each row of a list (a family contact) together under its caption."""
    out: list[tuple[str | None, list[FormField]]] = []
    for form_field in fields:
        caption = form_field.caption
        if out and out[-1][0] == caption and caption is not None:
            out[-1][1].append(form_field)
        elif out and caption is None and out[-1][0] is None:
            out[-1][1].append(form_field)
        else:
            out.append((caption, [form_field]))
    return out


def _input_for(local_field: str | None, names: list[str]) -> str | None:
    """The input an adapter problem belongs next to: its own, or the first input inside it."""
    if not local_field:
        return None
    name = input_name(local_field)
    if name in names:
        return name
    return next((n for n in names if n.startswith(name + ".")), None)


def _field_label(form: LocalForm, local_field: str) -> str:
    """A local field's label on the form (``contacts_famille[0].telephone`` → "Téléphone"), else its name."""
    name = input_name(local_field)
    found = form.field(name) or next((f for f in form.fields() if f.name.startswith(name + ".")), None)
    if found is None:
        return local_field
    if found.name == name:
        return f"{found.caption} — {found.label}" if found.caption else found.label
    # A group (lieu_origine, contacts_famille): the form's label for the group itself.
    labels = form_spec(form.format_id).get("labels", {})
    generic = ".".join(p for p in name.split(".") if not p.isdigit())
    return str(labels.get(generic, labels.get(generic.split(".")[-1], local_field)))


def _form(request: web.Request) -> LocalForm:
    format_id = request.match_info["format"]
    if format_id not in formats_with_forms():
        raise web.HTTPNotFound()
    try:
        return build_form(format_id)
    except (LookupError, UnknownFormatError):
        raise web.HTTPNotFound() from None


def _agencies_field(form: LocalForm) -> str | None:
    """The consent's list of recipient agencies on this form (``consentement.agences_destinataires``)."""
    return next((f.name for f in form.fields() if f.name.startswith(form.consent_field + ".")
                 and f.multiple and not f.choices), None)


def _posted_record(posted: Any) -> dict[str, Any]:
    """The record the preview page carried in its POST body (JSON); 400 if it is not one.

    Parsed as strictly as a POST /referrals body (no NaN, no member named twice, nested at most
    MAX_JSON_DEPTH levels): the page may have been edited before it came back."""
    text = posted.get("record", "")
    if not isinstance(text, str) or len(text) > MAX_RECORD_CHARS:
        raise web.HTTPBadRequest()
    try:
        record = strict_loads(text.encode("utf-8"))  # a lone surrogate fails to encode: ValueError
    except ValueError:  # NestingTooDeepError and DuplicateKeyError included
        raise web.HTTPBadRequest() from None
    if not isinstance(record, dict):
        raise web.HTTPBadRequest()
    return record


# --- recipients, case pseudonym ---------------------------------------------------------------

def _all_agencies(gateway: Any) -> list[str]:
    return sorted(gateway.directory.agencies)


def _recipients(gateway: Any) -> list[str]:
    """Directory agencies other than this gateway's own."""
    return [a for a in _all_agencies(gateway) if a != gateway.agency_id]


def _case_ref(request: web.Request, form: LocalForm, record: dict[str, Any], recipient: str) -> str | None:
    """The case pseudonym of the form's local case number for this country pair (as POST /referrals
    derives it from local_case_id); None when the form has no number."""
    field = form_spec(form.format_id).get("case_number_field")
    number = record.get(field) if isinstance(field, str) else None
    if not isinstance(number, str) or not number.strip():
        return None
    gateway = gateway_of(request)
    ours = gateway.directory.agency(gateway.agency_id).country
    theirs = gateway.directory.agency(recipient).country
    return case_pseudonym(settings_of(request).pseudonym_secret, number.strip(), ours, theirs)


def _new_case_ref(request: web.Request, recipient: str) -> str:
    """A new case for a form without a local case number (a random local id: no later message can
    derive it again, they name the case by its pseudonym)."""
    gateway = gateway_of(request)
    ours = gateway.directory.agency(gateway.agency_id).country
    theirs = gateway.directory.agency(recipient).country
    return case_pseudonym(settings_of(request).pseudonym_secret, "workspace-" + secrets.token_hex(16), ours, theirs)


# --- what leaves, what was dropped --------------------------------------------------------------

_DROPPED: tuple[tuple[re.Pattern[str], Any], ...] = (
    (re.compile(r"not allowed for purposes \[(?P<purposes>[^\]]*)\](?P<age>; age in years sent instead)?"),
     lambda m, lang: translate(
         msg("the purposes {purposes} do not allow it; the age in years is sent instead") if m["age"]
         else msg("the purposes {purposes} do not allow it"), lang)),
    (re.compile(r"local only: .*"), lambda m, lang: translate(msg("stays here: kept for local use only"), lang)),
    (re.compile(r"no shared code for this .*: not sent"),
     lambda m, lang: translate(msg("the shared schema has no code for this value: not sent"), lang)),
    (re.compile(r"superseded by person\.age\.(?P<kept>\w+): .*"),
     lambda m, lang: translate(msg("the shared schema carries one age: {kept} is sent instead", kept=m["kept"]), lang)),
    (re.compile(r"v2 consent names recipient agencies, not countries.*"),
     lambda m, lang: translate(msg("schema version 2 names the recipient agencies, not countries"), lang)),
    (re.compile(r"not an ISO 639 language code"),
     lambda m, lang: translate(msg("not a language code of the shared schema"), lang)),
    (re.compile(r"v2 allows \S+ only with the purposes: (?P<purposes>.*)"),
     lambda m, lang: translate(msg("schema version 2 allows it only with the purposes {purposes}"), lang)),
    (re.compile(r"v2 needs the chosen solution of a completed determination: not sent"),
     lambda m, lang: translate(msg("schema version 2 needs the solution chosen by a completed determination: "
                                   "not sent"), lang)),
)


def dropped_text(reason: str, lang: str) -> str:
    """Why a field was left out, in the reader's language (purposes named by their labels)."""
    for pattern, render_it in _DROPPED:
        found = pattern.fullmatch(reason)
        if found is None:
            continue
        text: str = render_it(found, lang)
        if "{purposes}" in text:
            codes = [p.strip() for p in (found.groupdict().get("purposes") or "").split(",") if p.strip()]
            text = text.replace("{purposes}", ", ".join(_code(lang, "purpose", c) for c in codes))
        return text
    return translate(msg("left out: {reason}", reason=reason), lang)


def _code(lang: str, code_list: str, code: str) -> str:
    return code_label(code_list, code, lang) or code


__all__ = ["Outgoing", "dropped_text", "routes"]
