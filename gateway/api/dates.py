"""A sane range for every date and time the API accepts in a payload.

The shared schemas check the shape and the calendar (``YYYY-MM-DD``, no 30 February) but
any four-digit year passes, and a year 0999 stored today is a record nobody can use. At the
API edge every date field must lie on or after 1900-01-01, and no later than one day from
now -- except the fields that name a time ahead (a document's expiry, a planned journey, a
review), which may lie up to 100 years ahead. Violations name the JSON path and the rule,
never the value.

The date fields are found by name: every property the v1 and v2 schemas declare as
``common.schema.json#/$defs/date`` or ``date_time``; each such name is a date wherever it
appears (tests/test_api_dates.py keeps it that way).
"""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta, timezone
from functools import cache
from typing import Any

from gateway.errors import Violation
from gateway.schema import SCHEMA_DIR, SCHEMA_VERSIONS, json_path

EARLIEST = date(1900, 1, 1)
#: How far ahead a date of something that already happened may lie (time zones, clock skew).
AHEAD = timedelta(days=1)
#: How far ahead a date of something planned or expiring may lie.
FAR_AHEAD_YEARS = 100
#: Fields that name a time ahead: expiries, plans, reviews, follow-ups, answers expected.
FORWARD = frozenset({"expires_on", "expires_at", "expected_by", "next_follow_up_on", "review_on", "planned_on",
                     "valid_until", "reflection_period_until"})
#: How deep a payload is walked (the schemas nest far less; a deeper payload fails them anyway).
MAX_DEPTH = 32


@cache
def date_fields() -> dict[str, str]:
    """Property name → ``date`` or ``date_time``, for every date property of the v1 and v2 schemas."""
    found: dict[str, str] = {}

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for name, sub in (node.get("properties") or {}).items():
                ref = sub.get("$ref", "") if isinstance(sub, dict) else ""
                if ref.endswith("/$defs/date") or ref.endswith("/$defs/date_time"):
                    found[name] = ref.rsplit("/", 1)[1]
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    for version in SCHEMA_VERSIONS:
        for path in sorted((SCHEMA_DIR / f"v{version}").glob("*.schema.json")):
            walk(json.loads(path.read_text(encoding="utf-8")))
    return found


def _day(value: str, kind: str) -> date | None:
    """The calendar day of a well-formed value; None for anything else (the schema refuses it)."""
    try:
        if kind == "date":
            return date.fromisoformat(value) if len(value) == 10 else None
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        return moment.astimezone(timezone.utc).date() if moment.tzinfo is not None else None
    except ValueError:
        return None


def _latest(name: str, now: datetime) -> date:
    if name in FORWARD:
        today = now.date()
        return today.replace(year=today.year + FAR_AHEAD_YEARS, day=min(today.day, 28))
    return (now + AHEAD).date()


def date_violations(body: Any, now: datetime, prefix: tuple[str | int, ...] = ()) -> list[Violation]:
    """Every date field of ``body`` outside its range, as violations (rule ``date_range``)."""
    fields = date_fields()
    found: list[Violation] = []

    def walk(node: Any, where: tuple[str | int, ...]) -> None:
        if len(where) > MAX_DEPTH:
            return
        if isinstance(node, dict):
            for name, value in node.items():
                kind = fields.get(name) if isinstance(name, str) else None
                if kind is not None and isinstance(value, str):
                    day = _day(value, kind)
                    if day is not None:
                        latest = _latest(name, now)
                        if not EARLIEST <= day <= latest:
                            found.append(Violation(json_path([*where, name]), "date_range", _rule(name)))
                else:
                    walk(value, (*where, name))
        elif isinstance(node, list):
            for index, value in enumerate(node):
                walk(value, (*where, index))

    walk(body, prefix)
    return found


def _rule(name: str) -> str:
    if name in FORWARD:
        return f"must be on or after {EARLIEST.isoformat()} and at most {FAR_AHEAD_YEARS} years ahead"
    return f"must be on or after {EARLIEST.isoformat()} and not more than one day in the future"
