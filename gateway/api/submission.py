"""The one path from a submission to the outbox: local record → shared payload → recipient's version → submit.

``POST /referrals`` and the workspace's compose pages (gateway/workspace/compose.py) both
take it, so a referral composed on a page is checked exactly as one sent through the API.
:func:`preview` walks the same path without submitting: what would leave (field by field,
in the schema version the recipient takes), what was dropped and why, and the adapter's
problems as data (local field, reason code, parameters, translatable reason) to show next
to the form's fields. Nothing here logs or echoes a submitted value.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from typing import Any

from adapters.errors import AdapterError, FieldError, reason_text
from adapters.registry import get_adapter
from adapters.results import AdaptResult, DroppedField
from gateway.actors import Actor
from gateway.api.dates import date_violations
from gateway.api.errors import invalid_request
from gateway.consent import ConsentRefusedError, check_referral_consent
from gateway.envelope import Header
from gateway.errors import GatewayError
from gateway.i18n import Message, msg
from gateway.schema import payload_version
from gateway.schema_versions import Dropped
from gateway.service import Gateway
from gateway.withdrawal import blocks_referral


@dataclass(frozen=True)
class Outgoing:
    """A message ready to submit: the payload as it will leave and what was left out on the way."""

    recipient: str
    message_type: str
    payload: dict[str, Any] = field(repr=False)
    schema_version: str
    #: Local-record submissions only: local fields the purposes (or the shared schema) do not take.
    dropped: tuple[DroppedField, ...] | None = None
    #: Fields a v1 payload lost when it was upgraded for a v2 recipient, or a v2 payload
    #: carries only coarsely when downgraded for a v1 one.
    converted: tuple[Dropped, ...] = ()


@dataclass(frozen=True)
class Problem:
    """Why a record cannot leave, as data: never the submitted value.

    ``local_field`` is the local form's dotted path (``contacts_famille[0].telephone``) when
    the problem is one field's, else None; ``reason`` is a translatable text (gateway/i18n.py).
    """

    code: str
    reason_code: str
    local_field: str | None
    params: dict[str, Any]
    reason: str


@dataclass(frozen=True)
class Preview:
    """What :func:`preview` found: the message that would leave, or the problems that stop it."""

    outgoing: Outgoing | None
    problems: tuple[Problem, ...] = ()


async def shared_payload(gateway: Gateway, *, recipient: str, payload: dict[str, Any] | None,
                         local_format: str | None = None, record: dict[str, Any] | None = None,
                         purposes: list[str] | None = None) -> tuple[dict[str, Any], tuple[DroppedField, ...] | None]:
    """The shared payload of a submission (a local record adapted, or the payload given) and the
    local fields dropped; AdapterError if the record does not map, ApiError 422 for a date out of range."""
    dropped: tuple[DroppedField, ...] | None = None
    if local_format is not None:
        # Loading a mapping reads files and mapping is CPU work: both off the event loop.
        result = await asyncio.to_thread(adapt_local, local_format, record, purposes,
                                         v2_recipient(gateway, recipient))
        payload, dropped = result.payload, result.dropped
    assert payload is not None
    out_of_range = date_violations(payload, gateway.clock(), ("payload",))
    if out_of_range:
        raise invalid_request(out_of_range)  # dates before 1900 or ahead of now (gateway/api/dates.py)
    return payload, dropped


def leaving(gateway: Gateway, message_type: str, payload: dict[str, Any], recipient: str,
            dropped: tuple[DroppedField, ...] | None = None) -> Outgoing:
    """The payload in the version negotiated with the recipient (directory refusals and
    DowngradeError raise here), with what the conversion left out."""
    converted = gateway.for_recipient(message_type, payload, recipient)
    # The version it is in, not the negotiated one: a payload that cannot be sent at all is left as written.
    return Outgoing(recipient, message_type, converted.payload, payload_version(converted.payload), dropped,
                    tuple(converted.dropped))


async def submit(gateway: Gateway, outgoing: Outgoing, *, case_ref: str, actor: Actor,
                 message_id: str | None = None) -> Header:
    """Seal and store the message in the outbox (consent checked and audited by ``Gateway.submit``)."""
    return await gateway.submit(outgoing.message_type, outgoing.payload, recipient=outgoing.recipient,
                                case_ref=case_ref, actor=actor, message_id=message_id,
                                negotiated=True)  # leaving() made it: validated and converted once


async def preview(gateway: Gateway, *, recipient: str, local_format: str, record: dict[str, Any],
                  purposes: list[str] | None = None, case_ref: str | None = None) -> Preview:
    """What sending this local record to ``recipient`` would send, without sending it.

    The same checks as a submission, in the same order: the adapter (every problem at once),
    the date ranges, the directory and schema version, and the consent (as of now, with the
    case's withdrawals when ``case_ref`` is known). Nothing is stored or audited.
    """
    try:
        payload, dropped = await shared_payload(gateway, recipient=recipient, payload=None,
                                                local_format=local_format, record=record, purposes=purposes)
        outgoing = leaving(gateway, "referral.request", payload, recipient, dropped)
        withdrawals = []
        if case_ref is not None:
            withdrawals = [w for w in await gateway.store.withdrawals_for_case(case_ref)
                           if w.direction == "outgoing" and blocks_referral(w)]
        check_referral_consent(outgoing.payload, recipient=recipient,
                               recipient_country=gateway.directory.agency(recipient).country,
                               now=gateway.clock(), withdrawals=withdrawals)
    except AdapterError as exc:
        return Preview(None, tuple(problem_of(one) for one in exc.errors))
    except GatewayError as exc:
        return Preview(None, (general_problem(exc, local_format),))
    return Preview(outgoing)


def problem_of(error: AdapterError) -> Problem:
    """One adapter problem as data, its reason translatable and free of the submitted value."""
    if isinstance(error, FieldError):
        reason: str = reason_text(error.reason)
    elif error.reason_code == "not_consented":
        reason = msg("the consent does not cover the purposes {purposes}",
                     purposes=", ".join(map(str, error.params.get("purposes", []))))
    else:
        reason = msg("cannot be adapted ({code})", code=error.reason_code)
    return Problem(error.code, error.reason_code, error.local_field, dict(error.params), reason)


def general_problem(exc: GatewayError, local_format: str | None = None) -> Problem:
    """A problem that is not one adapter field's: a date out of range, the directory, a consent
    refusal, a downgrade. Named by local field when the shared path maps back to one."""
    shared = _shared_path(exc)
    local = _local_for(local_format, shared) if shared else None
    reason = _REASONS.get(exc.code, msg("cannot be sent ({code})", code=exc.code))
    return Problem(exc.code, exc.code, local, {"shared_path": shared} if shared else {}, reason)


#: Translatable reasons for the refusals a preview can meet after the adapter (codes of gateway/errors.py,
#: gateway/consent.py, gateway/api/errors.py).
_REASONS: dict[str, Message] = {
    "invalid_request": msg("holds a date out of range (before 1900, or ahead of today)"),
    "recipient_refuses": msg("the recipient agency does not accept this referral for these purposes"),
    "unknown_agency": msg("the recipient agency is not in the directory"),
    "no_valid_key": msg("the recipient agency has no valid key in the directory"),
    "not_representable_in_v1": msg("the recipient takes schema version 1, which cannot carry this referral"),
    "consent_missing": msg("the consent record is missing"),
    "consent_recipient_not_covered": msg("the consent does not cover the recipient agency"),
    "consent_purpose_not_covered": msg("the consent does not cover these purposes"),
    "consent_not_yet_valid": msg("the consent is dated in the future"),
    "consent_expired": msg("the consent has expired"),
    "consent_decision_maker": msg("a minor cannot consent alone"),
    "consent_withdrawn": msg("consent was withdrawn for this case"),
}


def _shared_path(exc: GatewayError) -> str | None:
    """The shared path an error names (``person.age.date_of_birth``), if any."""
    path = getattr(exc, "path", None)
    violations = getattr(exc, "violations", None)
    if path is None and violations:
        path = violations[0].path
    if not isinstance(path, str) or not path.startswith("$"):
        return None
    return re.sub(r"\[\d+\]", "", path.removeprefix("$").removeprefix(".").removeprefix("payload.")) or None


def _local_for(local_format: str | None, shared: str) -> str | None:
    """The local field a shared path comes from in this format's table, if the table says."""
    if local_format is None:
        return None
    table = getattr(get_adapter(local_format), "table", None)
    if table is None:
        return None
    found = table.local_for(shared)
    return found if isinstance(found, str) and found != shared else None


def v2_recipient(gateway: Gateway, recipient: str) -> tuple[str, str] | None:
    """(recipient, its country) when the recipient negotiates schema v2, else None.

    An unknown recipient or one with no common version is left to the submission, which
    refuses it by its cause after the record has been checked.
    """
    try:
        if gateway.schema_version_for(recipient) != "2":
            return None
        return recipient, gateway.directory.agency(recipient).country
    except GatewayError:
        return None


def adapt_local(format_id: str, record: Any, purposes: list[str] | None,
                v2_for: tuple[str, str] | None = None) -> AdaptResult:
    """The local record as a shared payload: v2 (with what only v2 says) when the recipient takes v2."""
    adapter = get_adapter(format_id)
    to_v2 = getattr(adapter, "to_shared_v2", None)
    if v2_for is not None and to_v2 is not None:
        result: AdaptResult = to_v2(record, purposes, recipient=v2_for[0], recipient_country=v2_for[1])
        return result
    return adapter.to_shared(record, purposes)
