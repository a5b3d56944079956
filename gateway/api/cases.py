"""Consent withdrawal for a case: withdraw (sends signed withdrawals, stops queued referrals)
and follow the recipients' acknowledgements."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gateway.api.context import actor_of, gateway_of
from gateway.api.dates import date_violations
from gateway.api.errors import ApiError, invalid_request
from gateway.api.idempotency import Answer, idempotent
from gateway.api.operation import documented, error_content as _error, json_content as _json, json_request
from gateway.api.operation import schema_ref as _ref
from gateway.api.bodies import payload_invalid, request_body
from gateway.api.parse import case_ref as path_case_ref
from gateway.api.responses import json_body
from gateway.api.roles import Permission, requires
from gateway.clock import format_ts
from gateway.envelope import CASE_REF
from gateway.errors import NotFoundError
from gateway.service import Gateway
from gateway.store import MessageConflictError
from gateway.withdrawal import check_withdrawn_at
from gateway.i18n import msg

#: The answer for a case_ref this gateway never sent or received a message of.
UNKNOWN_CASE = msg("no message of the case_ref in the path was sent or received by this gateway")

routes = web.RouteTableDef()

_CASE_PARAM = {"name": "case_ref", "in": "path", "required": True,
               "schema": {"type": "string", "pattern": CASE_REF.pattern}}


_WITHDRAWAL_BODY = {"$ref": "https://schemas.referral-gateway.example/v1/consent.withdrawal.schema.json"}

_OPERATIONS: dict[str, dict[str, Any]] = {
    "cases.withdraw": {
        "summary": "Withdraw consent for a case: every recipient of its referrals is told to shred the data",
        "description": "Sends a signed consent.withdrawal to each agency that was sent a referral.request of the "
                       "case (or of the listed request_message_ids); referrals still queued are given up. Each "
                       "recipient destroys the data keys and answers with a signed consent.withdrawal.ack. "
                       "Idempotent for the same withdrawn_at. See docs/consent.md.\n\n"
                       "The body is checked against the consent.withdrawal schema (422 schema_invalid with "
                       "violations). Then the rules no schema states: withdrawn_at is not before 1900-01-01 (422 "
                       "withdrawal_too_early) nor more than 5 minutes ahead (422 withdrawal_in_future); every "
                       "request_message_ids entry is a referral.request sent for this case (404 not_found).",
        "parameters": [_CASE_PARAM],
        "requestBody": json_request(_WITHDRAWAL_BODY, {
            "all_purposes": {"summary": "Consent withdrawn for every purpose, erasure requested",
                             "value": {"withdrawn_at": "2026-01-20T10:00:00Z", "decision_maker": "self",
                                       "scope": "all_purposes", "erasure_requested": True}},
            "some_purposes": {"summary": "Consent withdrawn for one purpose",
                              "value": {"withdrawn_at": "2026-01-20T10:00:00Z", "decision_maker": "self",
                                        "scope": "some_purposes", "purposes": ["family_tracing"],
                                        "erasure_requested": False}},
        }),
        "responses": {
            "202": _json({"type": "object"}, "Withdrawals queued, one per recipient"),
            "400": _error("Bad case_ref (invalid_id), body is not JSON (invalid_json), or a query parameter "
                          "(invalid_query)"),
            "404": _error("No message of this case was sent or received here, no referral was sent for it, or a "
                          "listed request id is not one of its referrals (not_found)"),
            "413": _error("Body too large (request_too_large)"),
            "415": _error("Body is not application/json in UTF-8"),
            "422": _error("schema_invalid (with violations); invalid_request: withdrawn_at out of range (before "
                          "1900-01-01 or more than a day ahead); withdrawal_in_future (more than 5 minutes ahead)"),
            "503": _json(_ref("Error"), "store_unavailable; retry later"),
        },
    },
    "cases.withdrawals": {
        "summary": "Consent withdrawals of a case and whether each recipient acknowledged",
        "parameters": [_CASE_PARAM],
        "responses": {"200": _json({"type": "object"}, "Withdrawals, sent and received"),
                      "400": _error("Bad case_ref (invalid_id) or a query parameter (invalid_query)"),
                      "404": _error("No message of this case was sent or received here (not_found)")},
    },
}


@routes.post("/cases/{case_ref}/withdrawal", name="cases.withdraw")
@documented(_OPERATIONS["cases.withdraw"])
@requires(Permission.WITHDRAW)
async def withdraw(request: web.Request) -> web.Response:
    case_ref = path_case_ref(request)
    gateway = gateway_of(request)
    await known_case(gateway, case_ref)
    payload, check = await request_body(request)
    if not check.ok:  # 422 schema_invalid with the violating paths
        raise payload_invalid("consent.withdrawal", payload, [*check.own, *check.shared])
    # withdrawal_too_early (before 1900) or withdrawal_in_future (beyond clock skew), naming the field.
    check_withdrawn_at(payload, gateway.clock())
    out_of_range = date_violations(payload, gateway.clock())
    if out_of_range:
        raise invalid_request(out_of_range)

    async def create(seed: str | None) -> Answer:
        # Withdrawal ids are derived from the case, recipient and content (gateway/withdrawal.py):
        # already exactly once per content, so the seed is not needed.
        try:
            try:
                result = await gateway.withdraw_consent(case_ref, payload, actor=actor_of(request))
            except MessageConflictError:  # a concurrent retry stored one of them first
                result = await gateway.withdraw_consent(case_ref, payload, actor=actor_of(request))
        except NotFoundError:
            # The service's text names the case; the client is told which rule instead.
            detail = (msg("$.request_message_ids: names a referral.request not sent for this case")
                      if payload.get("request_message_ids")
                      else msg("no referral.request of this case was sent by this gateway"))
            raise ApiError(404, "not_found", detail) from None
        link = f"/cases/{case_ref}/withdrawals"
        return Answer(202, {
            "case_ref": case_ref,
            "withdrawals": [{"message_id": h.id, "recipient": h.recipient, "links": {"status": f"/messages/{h.id}"}}
                            for h in result.headers],
            # Recipients the withdrawal could not be addressed to (directory refuses, no valid key):
            # the data there is NOT shredded; someone has to follow up out of band.
            "failed": result.failures,
            "links": {"status": link},
        }, link)

    return await idempotent(request, path={"case_ref": case_ref}, body=payload, create=create)


@routes.get("/cases/{case_ref}/withdrawals", name="cases.withdrawals", allow_head=True)
@documented(_OPERATIONS["cases.withdrawals"])
@requires(Permission.STATUS)
async def withdrawals(request: web.Request) -> web.Response:
    case_ref = path_case_ref(request)
    gateway = gateway_of(request)
    await known_case(gateway, case_ref)
    items: list[dict[str, Any]] = []
    for record in await gateway.store.withdrawals_for_case(case_ref):
        item: dict[str, Any] = {
            "message_id": record.message_id, "direction": record.direction, "counterpart": record.counterpart,
            "withdrawn_at": format_ts(record.withdrawn_at), "scope": record.scope, "purposes": list(record.purposes),
        }
        if record.direction == "outgoing":
            sent = await gateway.store.get_outgoing(record.message_id)
            status = sent.status if sent else "unknown"
            # "accepted" is set by the recipient's signed consent.withdrawal.ack.
            item["status"] = status
            item["acknowledged"] = status == "accepted"
        items.append(item)
    outgoing = [i for i in items if i["direction"] == "outgoing"]
    return json_body({"case_ref": case_ref, "items": items,
                      "all_acknowledged": bool(outgoing) and all(i["acknowledged"] for i in outgoing)})


async def known_case(gateway: Gateway, case_ref: str) -> None:
    """404 for a case pseudonym no message or withdrawal here was ever recorded under."""
    store = gateway.store
    if (await store.list_outgoing_for_case(case_ref) or await store.list_incoming_for_case(case_ref)
            or await store.withdrawals_for_case(case_ref)):
        return
    raise ApiError(404, "not_found", UNKNOWN_CASE)
