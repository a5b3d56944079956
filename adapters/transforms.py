"""Named transforms a mapping rule can apply (dates, names, phone numbers, ...), each with its inverse."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any

from gateway.errors import GatewayError

from adapters.codes import _common_defs


class TransformFailed(GatewayError, ValueError):
    """Raised by a transform with a reason that never contains the value. The engine turns
    it into an :class:`~adapters.errors.UnmappableValueError` naming the local field; also
    a ValueError, as it always was."""

    code = "transform_failed"


@dataclass(frozen=True)
class Transform:
    """A named value transform: ``to_shared`` and its inverse ``to_local``.

    Both take ``(value, args)`` and raise :class:`TransformFailed` with a reason that must
    not contain the value (transforms run on names, dates of birth and phone numbers).
    """

    to_shared: Callable[[Any, Mapping[str, Any]], Any]
    to_local: Callable[[Any, Mapping[str, Any]], Any]


def _text(value: Any, args: Mapping[str, Any]) -> str:
    if not isinstance(value, str):
        raise TransformFailed("must be text")
    text = " ".join(value.split())
    if not text:
        raise TransformFailed("is empty")
    if len(text) > int(args.get("max_length", 200)):
        raise TransformFailed(f"is longer than {args.get('max_length', 200)} characters")
    return text


def _integer(value: Any, args: Mapping[str, Any]) -> int:
    if isinstance(value, bool):
        raise TransformFailed("must be a whole number")
    if isinstance(value, str) and re.fullmatch(r"\s*[0-9]{1,4}\s*", value):
        value = int(value)
    if not isinstance(value, int):
        raise TransformFailed("must be a whole number")
    low, high = args.get("min"), args.get("max")
    if (low is not None and value < low) or (high is not None and value > high):
        raise TransformFailed(f"must be between {low} and {high}")
    return value


_DMY = re.compile(r"^\s*([0-9]{1,2})[/.-]([0-9]{1,2})[/.-]([0-9]{4})(?:\s+([0-9]{1,2})[:h]([0-9]{2})(?::([0-9]{2}))?)?\s*$")


def _parse_dmy(value: Any, with_time: bool) -> tuple[date, tuple[int, int, int] | None]:
    match = _DMY.match(value) if isinstance(value, str) else None
    if not match or (match.group(4) is not None and not with_time):
        raise TransformFailed("must be a date JJ/MM/AAAA" + (" [HH:MM[:SS]]" if with_time else ""))
    day, month, year = int(match.group(1)), int(match.group(2)), int(match.group(3))
    if not 1900 <= year <= 2100:
        raise TransformFailed("has a year outside 1900-2100")
    try:
        parsed = date(year, month, day)
    except ValueError:
        raise TransformFailed("is not a calendar date (JJ/MM/AAAA)") from None
    time = (int(match.group(4)), int(match.group(5)), int(match.group(6) or 0)) if match.group(4) is not None else None
    if time and not (time[0] < 24 and time[1] < 60 and time[2] < 60):
        raise TransformFailed("has an impossible time (HH:MM[:SS])")
    return parsed, time


def _date_dmy(value: Any, args: Mapping[str, Any]) -> str:
    return _parse_dmy(value, with_time=False)[0].isoformat()


def _date_dmy_back(value: Any, args: Mapping[str, Any]) -> str:
    return date.fromisoformat(value).strftime("%d/%m/%Y")


def _offset(args: Mapping[str, Any]) -> timezone:
    sign, hours, minutes = re.fullmatch(r"([+-])([0-9]{2}):([0-9]{2})", args.get("utc_offset", "+00:00")).groups()  # type: ignore[union-attr]
    delta = timedelta(hours=int(hours), minutes=int(minutes))
    return timezone(delta if sign == "+" else -delta)


def _datetime_dmy(value: Any, args: Mapping[str, Any]) -> str:
    """``JJ/MM/AAAA [HH:MM[:SS]]`` local time (``utc_offset``) -> RFC 3339 UTC; a date alone takes ``default_time``."""
    day, time = _parse_dmy(value, with_time=True)
    hh, mm, ss = time or map(int, args.get("default_time", "00:00:00").split(":"))
    local = datetime(day.year, day.month, day.day, hh, mm, ss, tzinfo=_offset(args))
    return local.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _datetime_dmy_back(value: Any, args: Mapping[str, Any]) -> str:
    local = datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(_offset(args))
    if local.strftime("%H:%M:%S") == args.get("default_time", "00:00:00"):
        return local.strftime("%d/%m/%Y")
    return local.strftime("%d/%m/%Y %H:%M" if local.second == 0 else "%d/%m/%Y %H:%M:%S")


def _split_names(value: Any, args: Mapping[str, Any]) -> dict[str, str]:
    """``"Amaka Joy"`` -> ``{"given": "Amaka", "middle": "Joy"}`` (first name, then the rest)."""
    parts = _text(value, args).split(" ", 1)
    return {"given": parts[0], **({"middle": parts[1]} if len(parts) > 1 else {})}


def _join_names(value: Any, args: Mapping[str, Any]) -> str | None:
    parts = [value.get("given"), value.get("middle")] if isinstance(value, dict) else []
    return " ".join(p for p in parts if p) or None


def _phone(value: Any, args: Mapping[str, Any]) -> str:
    if not isinstance(value, str):
        raise TransformFailed("must be text")
    compact = re.sub(r"[\s().-]", "", value)
    if compact.startswith("00"):
        compact = "+" + compact[2:]
    if not re.fullmatch(r"\+[1-9][0-9]{6,14}", compact):
        raise TransformFailed("is not an international phone number (+ country code, 7-15 digits)")
    return compact


def _country_code(value: Any, args: Mapping[str, Any]) -> str:
    code = value.strip().upper() if isinstance(value, str) else None
    if code is None or code not in _common_defs()["country_code"]["enum"]:
        raise TransformFailed("is not an ISO 3166-1 alpha-2 country code")
    return code


def _same(value: Any, args: Mapping[str, Any]) -> Any:
    return value


def _case(method: str) -> Callable[[Any, Mapping[str, Any]], str]:
    def apply(value: Any, args: Mapping[str, Any]) -> str:
        return getattr(_text(value, args), method)()

    return apply


#: The fixed set of named transforms a mapping table may use. An adapter may extend it
#: (``MappingAdapter.transforms``) for a genuinely odd local format.
TRANSFORMS: Mapping[str, Transform] = {
    "text": Transform(_text, _same),
    "upper": Transform(_case("upper"), _same),
    "lower": Transform(_case("lower"), _same),
    "int": Transform(_integer, _same),
    "date_dmy": Transform(_date_dmy, _date_dmy_back),
    "datetime_dmy": Transform(_datetime_dmy, _datetime_dmy_back),
    "split_names": Transform(_split_names, _join_names),
    "phone_e164": Transform(_phone, _same),
    "country_code": Transform(_country_code, _same),
}
