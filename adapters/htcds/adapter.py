"""The HTCDS adapter: a flat IOM HTCDS-style case record <-> the shared ``referral.request``.

Almost everything is data (``mapping.json``, ``countries.json``, ``htcds.schema.json``).
Code handles what a table cannot say:

* ISO dates and date-times (``date_iso``, ``datetime_iso`` transforms);
* the flat ``prs_PlaceOfOrigin{Country,State,District,City}`` fields, grouped into one
  object so that a place without a country is a named error, and flattened back;
* ``vic_TypeOfExploitation`` items written with an intended variant
  (``"SexualExploitationIntended"``, ``"Sexual exploitation (intended)"``), and the flat
  HTCDS ``vic_TypeOfLabourExploitation``, attached to every exploitation item without
  sectors of its own;
* ``cas_Status`` stays local but its picklist value is still checked.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Mapping

from adapters.base import (
    TRANSFORMS,
    AdaptResult,
    MappingAdapter,
    MissingFieldError,
    Transform,
    TransformFailed,
    UnmappableValueError,
    normalise,
)

PLACE = "prs_PlaceOfOrigin"
PLACE_PARTS = ("Country", "State", "District", "City")
EXPLOITATION = "vic_TypeOfExploitation"
SECTORS = "vic_TypeOfLabourExploitation"

_INTENDED = re.compile(r"^(?P<type>.*?\S)\s*(?:\(\s*intended\s*\)|intended)$", re.IGNORECASE)
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


class HtcdsAdapter(MappingAdapter):
    """A flat HTCDS-style record (English picklists, ISO dates, UTC times)."""

    format_id = "htcds"
    folder = Path(__file__).resolve().parent
    local_schema_file = "htcds.schema.json"
    transforms = {
        **TRANSFORMS,
        "date_iso": Transform(_date_iso, _date_iso_back),
        "datetime_iso": Transform(_datetime_iso, _datetime_iso_back),
    }

    def to_shared(self, local_record: dict[str, Any], purposes: Any = None) -> AdaptResult:
        try:
            return super().to_shared(local_record, purposes)
        except (MissingFieldError, UnmappableValueError) as exc:
            # Name the flat field the clerk filled in, not the adapter's grouping object.
            field = exc.local_field or ""
            if field.startswith(PLACE + "."):
                raise type(exc)(PLACE + field[len(PLACE) + 1:], exc.reason.replace(f"{PLACE} is given", f"any {PLACE}* field is given")) from None
            raise

    def prepare_local(self, record: dict[str, Any]) -> dict[str, Any]:
        record = dict(record)
        self._check_case_status(record.get("cas_Status"))
        parts = {part: record.pop(PLACE + part) for part in PLACE_PARTS if PLACE + part in record}
        if parts:
            record[PLACE] = parts
        items = record.get(EXPLOITATION)
        if isinstance(items, str) and not self.table.is_missing(items):
            items = [items]
        if isinstance(items, list):
            items = [_split_intended(item) for item in items]
        sectors = record.pop(SECTORS, None)
        if sectors is not None and not self.table.is_missing(sectors):
            if not isinstance(items, list) or all(self._missing_item(i) for i in items):
                # Sectors known, type not: one item of undetermined type carries them.
                items = [{"Type": self.table.missing_local, SECTORS: sectors}]
            else:
                items = [self._with_sectors(item, sectors) for item in items]
        if isinstance(items, list):
            record[EXPLOITATION] = items
        return record

    def finish_local(self, record: dict[str, Any]) -> dict[str, Any]:
        place = record.pop(PLACE, None)
        if isinstance(place, dict):
            for part in PLACE_PARTS:
                if part in place:
                    record[PLACE + part] = place[part]
        items = record.get(EXPLOITATION)
        if isinstance(items, list):
            record[EXPLOITATION] = [self._simple_item(item) for item in items]
        return record

    def _check_case_status(self, value: Any) -> None:
        if value is None or self.table.is_missing(value):
            return
        try:
            self.table.code_lists["case_status"].to_shared(value)
        except KeyError:
            shown = value if len(str(value)) <= 60 else str(value)[:60] + "…"
            raise UnmappableValueError("cas_Status", f"{shown!r} is not in the code list for case status") from None

    def _missing_item(self, item: Any) -> bool:
        if isinstance(item, dict):
            return all(self.table.is_missing(v) for v in item.values())
        return self.table.is_missing(item)

    def _with_sectors(self, item: Any, sectors: Any) -> Any:
        if self._missing_item(item):
            return item
        obj = dict(item) if isinstance(item, dict) else {"Type": item}
        if obj.get(SECTORS) is None or self.table.is_missing(obj.get(SECTORS)):
            obj[SECTORS] = sectors
        return obj

    def _simple_item(self, item: Any) -> Any:
        """``{"Type": "ForcedBegging", "Intended": "No"}`` -> ``"ForcedBegging"``; ``...Intended`` when intended."""
        if not isinstance(item, dict) or set(item) - {"Type", "Intended"} or item.get("Type") == self.table.missing_local:
            return item
        intended = self.table.code_lists["yes_no"].to_shared(item.get("Intended", "No"))
        return f"{item['Type']}Intended" if intended else item["Type"]


def _split_intended(item: Any) -> Any:
    text = item.get("Type") if isinstance(item, dict) else item
    match = _INTENDED.match(text.strip()) if isinstance(text, str) else None
    if not match or normalise(match.group("type")) == "":
        return item
    return {**(item if isinstance(item, dict) else {}), "Type": match.group("type"), "Intended": True}
