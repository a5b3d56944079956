"""``GET /stats``: aggregate counts of referrals received or sent, small cells suppressed (docs/stats.md).

The answer holds counts only, never a payload, and no count below the minimum cell size
(``settings.stats_min_cell``). A caller may ask for a higher threshold, never a lower one.
``direction=received`` (the default) counts received referrals by the person's coarse
attributes; ``direction=sent`` counts the referrals this agency sent, by recipient and
outcome only (the sender cannot decrypt what it sealed to the recipient). ``interval``
groups the rows by month, quarter or year: at 55-100 referrals a year, months suppress
nearly everything, quarters and years publish.
Four choices limit what comparing answers can reveal: the current month is never
counted (its counts change with each referral, so two answers a day apart would say what
the one referral in between was); nor is a month some of whose referrals may already be
deleted under the retention period (same reason, as they leave); every dimension is always
in the answer (the linked tables share their period totals, so a different set of tables
could suppress different totals); and a higher threshold keeps everything the minimum
would suppress, so answers at several thresholds show nothing the minimum's answer does
not. Every query is audited (``stats.read``) so that a run of overlapping ranges can be
noticed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

from aiohttp import web

from gateway.api.operation import documented
from gateway.api.context import actor_of, gateway_of, settings_of
from gateway.api.errors import ApiError
from gateway.api.parse import choice_query, int_query
from gateway.api.responses import json_body
from gateway.api.roles import Permission, requires
from gateway.settings import Settings
from gateway.i18n import msg
from gateway.stats import (ACT_CATEGORIES, AGE_CATEGORIES, CROSS_TABS, DIMENSIONS, EXPLOITATION_CATEGORIES,
                           INTERVALS, MEANS_CATEGORIES, MINOR_CATEGORIES, OUTCOMES,
                           REFERRAL_SOURCE_CATEGORIES, RESTRICTED_FIELDS, SENT_DIMENSIONS, SEXES,
                           SentRecord, StatsError, StatsRecord, aggregate, carrying_purposes,
                           check_month, is_period_start, month_of, month_range, shift_month)
from gateway.schema import SCHEMA_VERSIONS

routes = web.RouteTableDef()

#: Highest threshold a caller may ask for (a larger one suppresses everything anyway).
MAX_THRESHOLD = 10_000
#: Longest period of one answer, in months (the tables grow with it).
MAX_MONTHS = 240
MESSAGE_TYPE = "referral.request"
DIRECTIONS = ("received", "sent")


def min_cell(settings: Settings) -> int:
    """The configured minimum cell size (``stats_min_cell``, default 11)."""
    return settings.stats_min_cell


def previous_month(now: datetime) -> str:
    """The last complete month before ``now`` (UTC)."""
    return shift_month(month_of(now), -1)


def first_retained_month(now: datetime, retention_days: int) -> str:
    """The first month none of whose messages can have been deleted under retention yet."""
    # Messages older than the retention period are shredded; a month that started after
    # the cutoff is still whole. Earlier months lose referrals day by day, and two answers
    # a day apart would tell what the referrals deleted in between were.
    return shift_month(month_of(now - timedelta(days=retention_days)), 1)


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


def period(query: Mapping[str, str], now: datetime, retention_days: int | None,
           interval: str = "month") -> tuple[str, str]:
    """(month_from, month_to): complete months, still wholly retained, covering whole
    quarters or years for those intervals. ``retention_days`` None (sent referrals: their
    outbox rows are not deleted) sets no earliest month; the default is then the last 12
    complete months, widened back to whole quarters or years."""
    last = previous_month(now)
    bounded = retention_days is not None
    first = first_retained_month(now, retention_days) if retention_days is not None else "0001-01"
    month_from = month_query(query, "month_from")
    month_to = month_query(query, "month_to")
    default_first = first if bounded else shift_month(month_to or last, -11)
    if month_to is not None and month_to > last:
        raise ApiError(400, "invalid_query",
                       msg("query parameter month_to must be at most {last}, the last complete month: "
                           "the current month is still changing", last=str(last)))
    if first > last:
        raise ApiError(400, "invalid_query",
                       msg("no complete month is wholly within the retention period of referral.request"))
    if month_to is not None and month_to < first:
        raise ApiError(400, "invalid_query",
                       msg("query parameter month_to must be at least {first}: earlier months are partly "
                           "deleted under the retention period, so their counts still change", first=str(first)))
    if month_from is not None and month_from < first:
        raise ApiError(400, "invalid_query",
                       msg("query parameter month_from must be at least {first}: earlier months are partly "
                           "deleted under the retention period, so their counts still change", first=str(first)))
    if month_from is not None and month_to is not None and month_from > month_to:
        raise ApiError(400, "invalid_query", msg("query parameter month_from must not be after month_to"))
    if interval == "month":
        return month_from or default_first, month_to or last
    # Whole quarters or years only: a partial one would be a different number under the
    # same label, and two of them would differ by the months in between.
    for name, value, start in (("month_from", month_from, True), ("month_to", month_to, False)):
        if value is not None and is_period_start(value if start else shift_month(value, 1), interval) is False:
            text = (msg("query parameter {name} must be the first month of a {interval} with interval={interval}",
                        name=name, interval=interval) if start else
                    msg("query parameter {name} must be the last month of a {interval} with interval={interval}",
                        name=name, interval=interval))
            raise ApiError(400, "invalid_query", text)
    if month_from is None:
        # Within retention: forward to the first whole period; without: back to its start.
        month_from = default_first
        while not is_period_start(month_from, interval):
            month_from = shift_month(month_from, 1 if bounded else -1)
    if month_to is None:
        month_to = last
        while not is_period_start(shift_month(month_to, 1), interval):
            month_to = shift_month(month_to, -1)
    if month_from > month_to:
        raise ApiError(400, "invalid_query",
                       msg("no complete {interval} lies between {first} (the first month wholly within the retention "
                           "period of referral.request) and {last} (the last complete month)",
                           interval=interval, first=str(first), last=str(last)))
    return month_from, month_to


def month_start(month: str) -> datetime:
    """00:00 UTC on the first day of ``month``."""
    return datetime(int(month[:4]), int(month[5:]), 1, tzinfo=timezone.utc)


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

_PERIOD = {"type": "string", "pattern": "^[0-9]{4}(-(0[1-9]|1[0-2])|-Q[1-4])?$",
           "description": "A month (2026-03), a quarter (2026-Q1) or a year (2026), by the answer's interval",
           "examples": ["2026-Q1"]}
_ROW_KINDS = [*INTERVALS, *sorted({row for row, _ in CROSS_TABS.values()})]
_CATEGORY_ENUMS = {
    "sex": SEXES, "age_band": AGE_CATEGORIES, "minor": MINOR_CATEGORIES, "referral_source": REFERRAL_SOURCE_CATEGORIES,
    "exploitation_type": EXPLOITATION_CATEGORIES, "acts": ACT_CATEGORIES, "means": MEANS_CATEGORIES,
    "outcome": OUTCOMES,
}

_SCHEMAS: dict[str, Any] = {
    "StatsCell": {**_CELL, "description": "A count; null with suppressed true when it is not published"},
    "StatsTable": {
        "type": "object",
        "required": ["dimension", "rows_by", "rows", "total"],
        "properties": {
            "dimension": {"type": "string", "enum": ["month", *DIMENSIONS, *CROSS_TABS],
                          "description": "month: the period table (its rows are by the answer's interval); "
                                         "sex_by_age_band: a cross-tab over the whole period. Categories of the "
                                         "fixed dimensions: " + "; ".join(f"{k}: {', '.join(v)}"
                                                                          for k, v in _CATEGORY_ENUMS.items())},
            "rows_by": {"type": "string", "enum": _ROW_KINDS,
                        "description": "What a row is: a month, quarter or year, or (cross-tab) a category of "
                                       "this dimension; each row object carries its label under this name"},
            "columns_by": {"type": "string", "enum": sorted({c for _, c in CROSS_TABS.values()}),
                           "description": "Cross-tab: the dimension of the columns"},
            "population": {"type": "string", "enum": sorted(RESTRICTED_FIELDS),
                           "description": "Only referrals whose purposes carry these fields are counted; row and "
                                          "grand totals are that population's (shared by tables naming the same)"},
            "sums_of": {"type": "object", "required": ["dimension", "categories"],
                        "description": "Each category is the sum of these categories of another dimension "
                                       "(minor = 0-8 + 9-17 + under_18_unspecified, ...)",
                        "properties": {"dimension": {"type": "string"},
                                       "categories": {"type": "object", "additionalProperties": {
                                           "type": "array", "items": {"type": "string"}}}}},
            "categories": {"type": "array", "items": {"type": "string"}},
            "multi_valued": {"type": "boolean",
                             "description": "A person may count in several categories: cells do not add up to rows"},
            "rows": {"type": "array", "items": {
                "type": "object", "required": ["total"],
                "description": "One row: its label under the table's rows_by name (month, quarter, year, sex)",
                "properties": {"month": _MONTH, "quarter": _PERIOD, "year": _PERIOD, "sex": {"enum": list(SEXES)},
                               "total": {"$ref": "#/components/schemas/StatsCell"},
                               "cells": {"type": "object",
                                         "additionalProperties": {"$ref": "#/components/schemas/StatsCell"}}}}},
            "column_totals": {"type": "object", "additionalProperties": {"$ref": "#/components/schemas/StatsCell"}},
            "total": {"$ref": "#/components/schemas/StatsCell"},
        },
    },
    "StatsReport": {
        "type": "object",
        "required": ["direction", "interval", "period", "threshold", "records", "months", "periods", "tables"],
        "properties": {
            "direction": {"type": "string", "enum": list(DIRECTIONS)},
            "interval": {"type": "string", "enum": list(INTERVALS)},
            "period": {"type": "object", "required": ["from", "to"],
                       "properties": {"from": _MONTH, "to": _MONTH}},
            "threshold": {"type": "integer", "minimum": 1, "description": "Minimum published nonzero count"},
            "records": {"$ref": "#/components/schemas/StatsCell"},
            "months": {"type": "array", "items": _MONTH},
            "periods": {"type": "array", "items": _PERIOD, "description": "The row labels of the period tables"},
            "tables": {"type": "array", "items": {"$ref": "#/components/schemas/StatsTable"}},
        },
    },
}

_OPERATIONS: dict[str, Any] = {
    "stats": {
        "summary": "Counts of referrals received (by sex, age band, minor/adult, nationality, referral source, "
                   "exploitation type, acts, means, sex x age band) or sent (by recipient and outcome)",
        "description": "Counts below the threshold are suppressed, with complementary suppression so that no "
                       "suppressed count can be recomputed from the published ones (docs/stats.md). Complete "
                       "months only, grouped by month, quarter or year. Audited (stats.read).",
        "parameters": [
            {"name": "direction", "in": "query", "required": False,
             "description": "received (default): referrals this gateway received, by the person's coarse "
                            "attributes; sent: referrals it sent, by recipient agency and outcome only (the "
                            "sender cannot decrypt what it sealed to the recipient)",
             "schema": {"type": "string", "enum": list(DIRECTIONS), "default": "received"}},
            {"name": "interval", "in": "query", "required": False,
             "description": "Rows by month (default), calendar quarter or calendar year; with quarter or year "
                            "month_from and month_to must bound whole quarters or years",
             "schema": {"type": "string", "enum": list(INTERVALS), "default": "month"}},
            {"name": "threshold", "in": "query", "required": False,
             "description": "Minimum cell size; at least the configured stats_min_cell (default 11)",
             "schema": {"type": "integer", "minimum": 1, "maximum": MAX_THRESHOLD}},
            {"name": "month_from", "in": "query", "required": False, "schema": _MONTH,
             "description": "First month (received: default and minimum the first month wholly within the "
                            "retention period of referral.request; sent: default 11 months before month_to; "
                            "both moved to the start of a whole quarter or year for those intervals)"},
            {"name": "month_to", "in": "query", "required": False, "schema": _MONTH,
             "description": "Last month (default and maximum: the last complete month, or the end of the last "
                            "whole quarter or year before it)"},
        ],
        "responses": {
            "200": {"description": "Suppressed statistics",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/StatsReport"}}}},
            "400": {"description": "Bad direction, interval, threshold or month (invalid_query)",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
        },
    },
}


async def _carriers() -> dict[tuple[str, str], frozenset[str]]:
    """Which purposes carry each restricted field, per schema version (read off the loop once)."""
    def read() -> dict[tuple[str, str], frozenset[str]]:
        return {(f, v): carrying_purposes(f, v) for f in RESTRICTED_FIELDS.values() for v in SCHEMA_VERSIONS}
    return await asyncio.to_thread(read)


@routes.get("/stats", name="stats", allow_head=True)
@documented(_OPERATIONS["stats"], schemas=_SCHEMAS)
@requires(Permission.STATS_READ)
async def stats(request: web.Request) -> web.Response:
    gateway = gateway_of(request)
    settings = settings_of(request)
    minimum = min_cell(settings)
    direction = choice_query(request.query, "direction", DIRECTIONS) or "received"
    interval = choice_query(request.query, "interval", INTERVALS) or "month"
    threshold = threshold_query(request.query, minimum)
    # Sent referrals are outbox rows, which retention does not delete.
    retention = settings.retention_for(MESSAGE_TYPE) if direction == "received" else None
    month_from, month_to = period(request.query, gateway.clock(), retention, interval)
    check_length(month_from, month_to)  # before reading anything
    records: list[StatsRecord | SentRecord] = []
    if direction == "received":
        await _carriers()  # the minimal-data tables, cached before the loop reads them
        since, until = month_start(month_from), month_start(shift_month(month_to, 1))
        async for received_at, payload in gateway.received_payloads(MESSAGE_TYPE, since=since, until=until):
            record = StatsRecord.from_payload(payload, received_at)  # the payload goes no further
            if month_from <= record.month <= month_to:
                records.append(record)
        dimensions: tuple[str, ...] | None = None
    else:
        async for created_at, recipient, status in gateway.sent_requests():
            if month_from <= month_of(created_at) <= month_to:
                records.append(SentRecord.from_outbox(created_at, recipient, status))
        dimensions = SENT_DIMENSIONS
    report = await asyncio.to_thread(aggregate, records, threshold=threshold, dimensions=dimensions,
                                     months=month_range(month_from, month_to), base_threshold=minimum,
                                     interval=interval)
    await gateway.audit_event("stats.read", actor_of(request), {
        "threshold": threshold, "month_from": month_from, "month_to": month_to,
        "direction": direction, "interval": interval})
    return json_body({"direction": direction, "period": {"from": month_from, "to": month_to}, **report.to_json()})
