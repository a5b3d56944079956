"""``GET /stats``: aggregate counts of received referrals, small cells suppressed (docs/stats.md).

The answer holds counts only, never a payload, and no count below the minimum cell size
(``settings.stats_min_cell``). A caller may ask for a higher threshold, never a lower one.
Four choices limit what comparing answers can reveal: the current month is never
counted (its counts change with each referral, so two answers a day apart would say what
the one referral in between was); nor is a month some of whose referrals may already be
deleted under the retention period (same reason, as they leave); every dimension is always
in the answer (the linked tables share their month totals, so a different set of tables
could suppress different totals); and a higher threshold keeps everything the minimum
would suppress, so answers at several thresholds show nothing the minimum's answer does
not. Every query is audited (``stats.read``) so that a run of overlapping ranges can be
noticed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from aiohttp import web

from gateway.api.operation import documented
from gateway.api.context import actor_of, gateway_of, settings_of
from gateway.api.errors import ApiError
from gateway.api.parse import int_query
from gateway.api.responses import json_body
from gateway.api.roles import Permission, requires
from gateway.settings import Settings
from gateway.i18n import msg
from gateway.stats import (StatsError, StatsRecord, aggregate, check_month, month_of,
                           month_range)

routes = web.RouteTableDef()

#: Highest threshold a caller may ask for (a larger one suppresses everything anyway).
MAX_THRESHOLD = 10_000
#: Longest period of one answer, in months (the tables grow with it).
MAX_MONTHS = 240
MESSAGE_TYPE = "referral.request"


def min_cell(settings: Settings) -> int:
    """The configured minimum cell size (``stats_min_cell``, default 11)."""
    return settings.stats_min_cell


def previous_month(now: datetime) -> str:
    """The last complete month before ``now`` (UTC)."""
    return _shift(month_of(now), -1)


def first_retained_month(now: datetime, retention_days: int) -> str:
    """The first month none of whose messages can have been deleted under retention yet."""
    # Messages older than the retention period are shredded; a month that started after
    # the cutoff is still whole. Earlier months lose referrals day by day, and two answers
    # a day apart would tell what the referrals deleted in between were.
    return _shift(month_of(now - timedelta(days=retention_days)), 1)


def _shift(month: str, by: int) -> str:
    index = int(month[:4]) * 12 + int(month[5:]) - 1 + by
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def threshold_query(query: Mapping[str, str], minimum: int) -> int:
    """``threshold``, default ``minimum``; below it is refused, not raised silently."""
    threshold = int_query(query, "threshold", default=minimum, minimum=1, maximum=MAX_THRESHOLD)
    if threshold < minimum:
        raise ApiError(400, "invalid_query",
                       msg("query parameter threshold must be at least {minimum}, the configured minimum cell size: "
                           "a caller may raise protection, never lower it", minimum=minimum))
    return threshold


def month_query(query: Mapping[str, str], name: str) -> str | None:
    raw = query.get(name)
    if raw is None:
        return None
    try:
        return check_month(raw, name=name)
    except StatsError:
        raise ApiError(400, "invalid_query", msg("query parameter {name} must be a month YYYY-MM", name=name)) from None


def period(query: Mapping[str, str], now: datetime, retention_days: int) -> tuple[str, str]:
    """(first month allowed or asked, month_to): complete months still wholly retained."""
    last = previous_month(now)
    first = first_retained_month(now, retention_days)
    month_from = month_query(query, "month_from")
    month_to = month_query(query, "month_to") or last
    if month_to > last:
        raise ApiError(400, "invalid_query",
                       msg("query parameter month_to must be at most {last}, the last complete month: "
                           "the current month is still changing", last=str(last)))
    if first > last:
        raise ApiError(400, "invalid_query",
                       msg("no complete month is wholly within the retention period of referral.request"))
    if month_from is not None and month_from < first:
        raise ApiError(400, "invalid_query",
                       msg("query parameter month_from must be at least {first}: earlier months are partly "
                           "deleted under the retention period, so their counts still change", first=str(first)))
    if month_from is not None and month_from > month_to:
        raise ApiError(400, "invalid_query", msg("query parameter month_from must not be after month_to"))
    return month_from or first, month_to


def check_length(first: str, last: str) -> None:
    span = (int(last[:4]) - int(first[:4])) * 12 + int(last[5:]) - int(first[5:]) + 1
    if span > MAX_MONTHS:
        raise ApiError(400, "invalid_query",
                       msg("the period must be at most {limit} months; give month_from (and month_to)",
                           limit=MAX_MONTHS))


# --- OpenAPI: the operation of GET /stats (see gateway/api/operation.py) ---------------

_CELL = {"type": "object", "required": ["count", "suppressed"],
         "properties": {"count": {"type": ["integer", "null"], "minimum": 0},
                        "suppressed": {"type": "boolean"}},
         "additionalProperties": False}
_MONTH = {"type": "string", "pattern": "^[0-9]{4}-(0[1-9]|1[0-2])$", "examples": ["2026-03"]}

_SCHEMAS: dict[str, Any] = {
    "StatsCell": {**_CELL, "description": "A count; null with suppressed true when it is not published"},
    "StatsTable": {
        "type": "object",
        "required": ["dimension", "rows", "total"],
        "properties": {
            "dimension": {"type": "string", "enum": ["month", "sex", "age_band", "nationality", "exploitation_type"]},
            "categories": {"type": "array", "items": {"type": "string"}},
            "multi_valued": {"type": "boolean",
                             "description": "A person may count in several categories: cells do not add up to rows"},
            "rows": {"type": "array", "items": {
                "type": "object", "required": ["month", "total"],
                "properties": {"month": _MONTH, "total": {"$ref": "#/components/schemas/StatsCell"},
                               "cells": {"type": "object",
                                         "additionalProperties": {"$ref": "#/components/schemas/StatsCell"}}}}},
            "column_totals": {"type": "object", "additionalProperties": {"$ref": "#/components/schemas/StatsCell"}},
            "total": {"$ref": "#/components/schemas/StatsCell"},
        },
    },
    "StatsReport": {
        "type": "object",
        "required": ["period", "threshold", "records", "months", "tables"],
        "properties": {
            "period": {"type": "object", "required": ["from", "to"],
                       "properties": {"from": _MONTH, "to": _MONTH}},
            "threshold": {"type": "integer", "minimum": 1, "description": "Minimum published nonzero count"},
            "records": {"$ref": "#/components/schemas/StatsCell"},
            "months": {"type": "array", "items": _MONTH},
            "tables": {"type": "array", "items": {"$ref": "#/components/schemas/StatsTable"}},
        },
    },
}

_OPERATIONS: dict[str, Any] = {
    "stats": {
        "summary": "Counts of received referrals by month, sex, age band, nationality and exploitation type",
        "description": "Counts below the threshold are suppressed, with complementary suppression so that no "
                       "suppressed count can be recomputed from the published ones (docs/stats.md). Complete "
                       "months only. Audited (stats.read).",
        "parameters": [
            {"name": "threshold", "in": "query", "required": False,
             "description": "Minimum cell size; at least the configured stats_min_cell (default 11)",
             "schema": {"type": "integer", "minimum": 1, "maximum": MAX_THRESHOLD}},
            {"name": "month_from", "in": "query", "required": False, "schema": _MONTH,
             "description": "First month (default and minimum: the first month wholly within the "
                            "retention period of referral.request)"},
            {"name": "month_to", "in": "query", "required": False, "schema": _MONTH,
             "description": "Last month (default and maximum: the last complete month)"},
        ],
        "responses": {
            "200": {"description": "Suppressed statistics",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/StatsReport"}}}},
            "400": {"description": "Bad threshold or month (invalid_query)",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
        },
    },
}


@routes.get("/stats", name="stats", allow_head=True)
@documented(_OPERATIONS["stats"], schemas=_SCHEMAS)
@requires(Permission.STATS_READ)
async def stats(request: web.Request) -> web.Response:
    gateway = gateway_of(request)
    settings = settings_of(request)
    minimum = min_cell(settings)
    threshold = threshold_query(request.query, minimum)
    month_from, month_to = period(request.query, gateway.clock(), settings.retention_for(MESSAGE_TYPE))
    check_length(month_from, month_to)  # before reading anything
    records = []
    async for received_at, payload in gateway.received_payloads(MESSAGE_TYPE):
        record = StatsRecord.from_payload(payload, received_at)  # the payload goes no further
        if month_from <= record.month <= month_to:
            records.append(record)
    report = await asyncio.to_thread(aggregate, records, threshold=threshold,
                                     months=month_range(month_from, month_to), base_threshold=minimum)
    await gateway.audit_event("stats.read", actor_of(request), {
        "threshold": threshold, "month_from": month_from, "month_to": month_to})
    return json_body({"period": {"from": month_from, "to": month_to}, **report.to_json()})
