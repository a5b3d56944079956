"""``POST /referrals``: queue an outgoing message (a referral or a later message on a case).

The answer is 202 only once ``Gateway.submit`` returned, i.e. the sealed envelope is in
the durable outbox; publishing happens in the background. A ``local_case_id`` is turned
into the case pseudonym for the recipient's country here and goes no further: it is not
stored, logged, audited or echoed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from gateway.api.context import actor_of, gateway_of, settings_of
from gateway.api.errors import invalid_request
from gateway.api.parse import json_object
from gateway.api.responses import json_body
from gateway.api.roles import Permission, requires
from gateway.envelope import CASE_REF
from gateway.errors import Violation
from gateway.pseudonym import case_pseudonym
from gateway.schema import MESSAGE_TYPES, json_path
from gateway.service import Gateway
from gateway.settings import Settings
from gateway.transport.base import AGENCY_ID_RE

routes = web.RouteTableDef()

#: Types a user may send through this endpoint. Receipts are the gateway's own, and a
#: referral.response answers a received request (POST /inbox/{id}/response).
SUBMITTABLE_TYPES: tuple[str, ...] = tuple(t for t in MESSAGE_TYPES if t not in {"receipt", "referral.response"})
DEFAULT_TYPE = "referral.request"
MAX_LOCAL_CASE_ID = 128
FIELDS = ("recipient", "case_ref", "local_case_id", "message_type", "payload")


@dataclass(frozen=True)
class Submission:
    """A parsed ``POST /referrals`` body: exactly one of ``case_ref`` and ``local_case_id``."""

    recipient: str
    message_type: str
    payload: dict[str, Any] = field(repr=False)
    case_ref: str | None = None
    local_case_id: str | None = field(default=None, repr=False)


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
    payload = body.get("payload")
    if payload is None:
        found.append(Violation("$.payload", "required", "required property 'payload' is missing"))
    elif not isinstance(payload, dict):
        found.append(Violation("$.payload", "type", "must be of type object"))
    if found:
        raise invalid_request(found)
    return Submission(recipient, message_type, payload, case_ref, local_id)


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
    submission = parse_submission(await json_object(request), own_agency=gateway.agency_id)
    case_ref = case_ref_for(submission, gateway, settings_of(request))
    header = await gateway.submit(submission.message_type, submission.payload, recipient=submission.recipient,
                                  case_ref=case_ref, actor=actor_of(request))
    link = f"/messages/{header.id}"
    return json_body(
        {"message_id": header.id, "type": header.type, "status": "queued", "case_ref": case_ref,
         "links": {"status": link}},
        status=202, headers={"Location": link},
    )
