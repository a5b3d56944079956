"""``POST /referrals``: queue an outgoing message (a referral or a later message on a case).

The answer is 202 only once ``Gateway.submit`` returned, i.e. the sealed envelope is in
the durable outbox; publishing happens in the background. A ``local_case_id`` is turned
into the case pseudonym for the recipient's country here and goes no further: it is not
stored, logged, audited or echoed. With an ``Idempotency-Key`` header a retry gets the first
answer and the same message (gateway/api/idempotency.py).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from adapters.base import AdaptResult
from adapters.registry import available_formats, get_adapter
from gateway.api.context import actor_of, gateway_of, settings_of
from gateway.api.dates import date_violations
from gateway.api.errors import ApiError, invalid_request
from gateway.api.idempotency import Answer, idempotent
from gateway.api.parse import json_object
from gateway.api.roles import Permission, requires
from gateway.envelope import CASE_REF
from gateway.errors import Violation
from gateway.pseudonym import case_pseudonym
from gateway.schema import MESSAGE_TYPES, PURPOSES, json_path
from gateway.service import Gateway, derived_message_id
from gateway.settings import Settings
from gateway.store import MessageConflictError, OutboxRecord
from gateway.transport.base import AGENCY_ID_RE

routes = web.RouteTableDef()

#: Types a user may send through this endpoint. Receipts are the gateway's own, and a
#: referral.response answers a received request (POST /inbox/{id}/response).
#: Receipts, responses, withdrawals, their acknowledgements and checkpoints have their own
#: routes or are made by the gateway itself (a withdrawal must also stop queued referrals).
SUBMITTABLE_TYPES: tuple[str, ...] = tuple(t for t in MESSAGE_TYPES if t not in {
    "receipt", "referral.response", "consent.withdrawal", "consent.withdrawal.ack", "audit.checkpoint"})
DEFAULT_TYPE = "referral.request"
MAX_LOCAL_CASE_ID = 128
FIELDS = ("recipient", "case_ref", "local_case_id", "message_type", "payload", "format", "record", "purposes")


@dataclass(frozen=True)
class Submission:
    """A parsed ``POST /referrals`` body: exactly one of ``case_ref`` and ``local_case_id``."""

    recipient: str
    message_type: str
    payload: dict[str, Any] | None = field(repr=False)
    case_ref: str | None = None
    local_case_id: str | None = field(default=None, repr=False)
    #: A referral in an agency's local format (``format`` + ``record``) instead of ``payload``.
    local_format: str | None = None
    record: dict[str, Any] | None = field(default=None, repr=False)
    purposes: list[str] | None = None


def parse_submission(body: dict[str, Any], *, own_agency: str) -> Submission:
    """Check the fields around the payload (the payload itself is checked by its schema)."""
    found: list[Violation] = []
    for name in sorted(set(body) - set(FIELDS)):
        found.append(Violation(json_path([name[:64]]), "additionalProperties", "unexpected property"))
    recipient = body.get("recipient")
    if recipient is None:
        found.append(Violation("$.recipient", "required", "required property 'recipient' is missing"))
    elif not isinstance(recipient, str) or not AGENCY_ID_RE.fullmatch(recipient):
        found.append(Violation("$.recipient", "pattern", f"must be an agency id matching {AGENCY_ID_RE.pattern}"))
    elif recipient == own_agency:
        found.append(Violation("$.recipient", "not", "must be another agency than this gateway's own"))
    message_type = body.get("message_type", DEFAULT_TYPE)
    if message_type not in SUBMITTABLE_TYPES:
        found.append(Violation("$.message_type", "enum", "must be one of: " + ", ".join(SUBMITTABLE_TYPES)))
    case_ref, local_id = body.get("case_ref"), body.get("local_case_id")
    if ("case_ref" in body) == ("local_case_id" in body):
        found.append(Violation("$", "oneOf", "must have exactly one of: case_ref, local_case_id"))
    if "case_ref" in body and not (isinstance(case_ref, str) and CASE_REF.fullmatch(case_ref)):
        found.append(Violation("$.case_ref", "pattern", f"must match the pattern {CASE_REF.pattern}"))
    if "local_case_id" in body and not (isinstance(local_id, str) and 0 < len(local_id.strip()) <= MAX_LOCAL_CASE_ID
                                     and local_id.isprintable()):
        found.append(Violation("$.local_case_id", "type",
                               f"must be a non-empty printable string of at most {MAX_LOCAL_CASE_ID} characters"))
    payload, local_format, record, purposes = body.get("payload"), body.get("format"), body.get("record"), body.get("purposes")
    if ("payload" in body) == ("format" in body or "record" in body):
        found.append(Violation("$", "oneOf", "must have either payload, or format and record (a local record)"))
    elif "payload" in body and not isinstance(payload, dict):
        found.append(Violation("$.payload", "type", "must be of type object"))
    elif "payload" not in body:
        if local_format not in available_formats():
            found.append(Violation("$.format", "enum", "must be one of: " + ", ".join(available_formats())))
        if not isinstance(record, dict):
            found.append(Violation("$.record", "type", "must be of type object"))
        if message_type != DEFAULT_TYPE:
            found.append(Violation("$.message_type", "const", f"local records can only be sent as {DEFAULT_TYPE}"))
    if "purposes" in body and ("payload" in body or not (
            isinstance(purposes, list) and purposes and all(isinstance(p, str) and p in PURPOSES for p in purposes))):
        found.append(Violation("$.purposes", "enum", "only with a local record; a non-empty list of: " + ", ".join(PURPOSES)))
    if found:
        raise invalid_request(found)
    return Submission(recipient, message_type, payload, case_ref, local_id, local_format, record, purposes)


def case_ref_for(submission: Submission, gateway: Gateway, settings: Settings) -> str:
    """The case pseudonym to send: given, or derived from the local id for this country pair."""
    if submission.case_ref is not None:
        return submission.case_ref
    assert submission.local_case_id is not None
    ours = gateway.directory.agency(gateway.agency_id).country
    theirs = gateway.directory.agency(submission.recipient).country  # UnknownAgencyError → 422
    return case_pseudonym(settings.pseudonym_secret, submission.local_case_id, ours, theirs)


@routes.post("/referrals", name="referrals.submit")
@requires(Permission.SUBMIT)
async def submit(request: web.Request) -> web.Response:
    gateway = gateway_of(request)
    body = await json_object(request)
    submission = parse_submission(body, own_agency=gateway.agency_id)
    case_ref = case_ref_for(submission, gateway, settings_of(request))

    async def create(seed: str | None) -> Answer:
        payload, dropped = submission.payload, None
        if submission.local_format is not None:
            # Loading a mapping reads files and mapping is CPU work: both off the event loop.
            result = await asyncio.to_thread(_to_shared, submission.local_format, submission.record,
                                             submission.purposes)
            payload = result.payload
            dropped = [{"local_field": d.local_field, "shared_path": d.shared_path, "reason": d.reason}
                       for d in result.dropped]
        assert payload is not None
        out_of_range = date_violations(payload, gateway.clock(), ("payload",))
        if out_of_range:
            raise invalid_request(out_of_range)  # dates before 1900 or ahead of now (gateway/api/dates.py)
        # With an Idempotency-Key the id is derived from the key's claim: a retry after a
        # crash finds the message the first attempt stored instead of making a second one.
        message_id = None if seed is None else derived_message_id("referral", seed)
        if message_id is not None and (existing := await gateway.store.get_outgoing(message_id)) is not None:
            return _answer(_same(existing, submission, case_ref), case_ref, dropped)
        try:
            header = await gateway.submit(submission.message_type, payload, recipient=submission.recipient,
                                          case_ref=case_ref, actor=actor_of(request), message_id=message_id)
        except MessageConflictError:
            if message_id is None or (existing := await gateway.store.get_outgoing(message_id)) is None:
                raise
            return _answer(_same(existing, submission, case_ref), case_ref, dropped)  # a concurrent retry won
        return _answer((header.id, header.type), case_ref, dropped)

    return await idempotent(request, path={}, body=body, create=create)


def _same(existing: OutboxRecord, submission: Submission, case_ref: str) -> tuple[str, str]:
    """The (id, type) of a message an earlier attempt with this key stored."""
    if (existing.case_ref, existing.recipient, existing.message_type) != (
            case_ref, submission.recipient, submission.message_type):
        raise ApiError(422, "idempotency_key_reused",
                       "this Idempotency-Key already created a different message; send a new key for a new request")
    return existing.message_id, existing.message_type


def _answer(made: tuple[str, str], case_ref: str, dropped: list[dict[str, str]] | None) -> Answer:
    message_id, message_type = made
    link = f"/messages/{message_id}"
    body: dict[str, Any] = {"message_id": message_id, "type": message_type, "status": "queued", "case_ref": case_ref,
                            "links": {"status": link}}
    if dropped is not None:
        body["dropped"] = dropped  # local fields the purposes do not allow: reported, never silent
    return Answer(202, body, link)


def _to_shared(format_id: str, record: Any, purposes: list[str] | None) -> AdaptResult:
    return get_adapter(format_id).to_shared(record, purposes)
