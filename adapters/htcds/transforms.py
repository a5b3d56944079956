"""The HTCDS adapter's own transforms: ISO dates and date-times, ISO 639 languages, accompanying children."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date, datetime, timedelta, timezone
from functools import cache
from pathlib import Path
from typing import Any

from adapters.base import TRANSFORMS, MappingTable, Transform, TransformFailed, _echo
from adapters.htcds import standard

_ISO_DATE = re.compile(r"^\s*([0-9]{4})-([0-9]{2})-([0-9]{2})\s*$")
_ISO_DATETIME = re.compile(
    r"^\s*([0-9]{4})-([0-9]{2})-([0-9]{2})"
    r"(?:[T ]([0-9]{2}):([0-9]{2})(?::([0-9]{2}))?\s*(Z|[+-][0-9]{2}:?[0-9]{2})?)?\s*$"
)


def _real_date(year: str, month: str, day: str) -> date:
    if not 1900 <= int(year) <= 2100:
        raise TransformFailed("has a year outside 1900-2100")
    try:
        return date(int(year), int(month), int(day))
    except ValueError:
        raise TransformFailed("is not a calendar date (YYYY-MM-DD)") from None


def _date_iso(value: Any, args: Mapping[str, Any]) -> str:
    match = _ISO_DATE.match(value) if isinstance(value, str) else None
    if not match:
        raise TransformFailed("must be a date YYYY-MM-DD")
    return _real_date(*match.groups()).isoformat()


def _date_iso_back(value: Any, args: Mapping[str, Any]) -> str:
    return str(value)


def _datetime_iso(value: Any, args: Mapping[str, Any]) -> str:
    """``YYYY-MM-DD[THH:MM[:SS][Z|±HH:MM]]`` -> RFC 3339 UTC. No offset means UTC; a date alone takes ``default_time``."""
    match = _ISO_DATETIME.match(value) if isinstance(value, str) else None
    if not match:
        raise TransformFailed("must be a date-time YYYY-MM-DDTHH:MM[:SS][Z|+HH:MM]")
    year, month, day, hh, mm, ss, offset = match.groups()
    day_ = _real_date(year, month, day)
    if hh is None:
        h, m, s = map(int, args.get("default_time", "00:00:00").split(":"))
    else:
        h, m, s = int(hh), int(mm), int(ss or 0)
    if not (h < 24 and m < 60 and s < 60):
        raise TransformFailed("has an impossible time (HH:MM[:SS])")
    tz = timezone.utc
    if offset and offset != "Z":
        sign, oh, om = offset[0], int(offset[1:3]), int(offset[-2:])
        if oh > 14 or om > 59:
            raise TransformFailed("has an impossible UTC offset")
        delta = timedelta(hours=oh, minutes=om)
        tz = timezone(delta if sign == "+" else -delta)
    moment = datetime(day_.year, day_.month, day_.day, h, m, s, tzinfo=tz).astimezone(timezone.utc)
    if not 1900 <= moment.year <= 2100:
        raise TransformFailed("has a year outside 1900-2100")
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _datetime_iso_back(value: Any, args: Mapping[str, Any]) -> str:
    text = str(value)
    if text[11:19] == args.get("default_time", "00:00:00"):
        return text[:10]
    return text


_UNCODED = re.compile(r"^\s*mis\s*:\s*(?P<name>\S.*?)\s*$", re.IGNORECASE)


def iso639(value: Any, args: Mapping[str, Any]) -> Any:
    """An ISO 639 code (or English name) -> its ISO 639-3 code; ``mis:<name>`` -> an uncoded language."""
    uncoded = _UNCODED.match(value) if isinstance(value, str) else None
    if uncoded:
        name = uncoded.group("name")
        if len(name) > 200:
            raise TransformFailed("has a language name longer than 200 characters")
        return {"code": "mis", "name": name}
    code = standard.language_code(value) if isinstance(value, str) else None
    if code is None:
        raise TransformFailed("is not an ISO 639 language code (ISO 639-2, e.g. hau, fre/fra, eng; "
                              "mis:<name> for a language without a code)")
    return code


def _iso639_back(value: Any, args: Mapping[str, Any]) -> str:
    # A v2 language is already ISO 639-3, which is also the ISO 639-2/T code where one exists.
    if isinstance(value, dict):
        return f"mis:{value.get('name', '')}"
    return str(value)


#: An accompanying child: local key -> (shared key, code list, value when missing; None: required).
_CHILD = {"AgeBand": ("age_band", "child_age_band", "unknown"), "Documents": ("documents", "child_documents", "unknown"),
          "NeedsEscort": ("needs_escort", "yes_no", True), "Relationship": ("relationship", "child_relationship", None)}


@cache
def own_table() -> MappingTable:
    """The HTCDS mapping table (the children transform needs its code lists)."""
    return MappingTable.load(Path(__file__).resolve().parent / "mapping.json", {**TRANSFORMS, **HTCDS_TRANSFORMS})


def _children(value: Any, args: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Accompanying children, one entry each (two alike are two children, not a duplicate)."""
    if not isinstance(value, list):
        raise TransformFailed("must be a list of children (AgeBand, Documents, NeedsEscort, Relationship) or a number")
    table = own_table()
    out = []
    for i, child in enumerate(value):
        if not isinstance(child, dict):
            raise TransformFailed(f"[{i}] must be an object")
        entry: dict[str, Any] = {}
        for key, (shared, codes, missing) in _CHILD.items():
            raw = child.get(key)
            if raw is None or table.is_missing(raw):
                if missing is None:
                    raise TransformFailed(f"[{i}].{key} is required")
                entry[shared] = missing
                continue
            try:
                entry[shared] = table.code_lists[codes].to_shared(raw)
            except KeyError:
                raise TransformFailed(f"[{i}].{key}: {_echo(raw)} is not in the code list for "
                                      f"{table.code_lists[codes].label}") from None
        out.append(entry)
    return out


def _children_back(value: Any, args: Mapping[str, Any]) -> list[dict[str, Any]]:
    table = own_table()
    return [{key: table.code_lists[codes].to_local(child[shared]) for key, (shared, codes, _) in _CHILD.items()}
            for child in value]


HTCDS_TRANSFORMS = {
    "date_iso": Transform(_date_iso, _date_iso_back),
    "datetime_iso": Transform(_datetime_iso, _datetime_iso_back),
    "iso639": Transform(iso639, _iso639_back),
    "accompanying_children": Transform(_children, _children_back),
}
