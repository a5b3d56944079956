"""Named transforms a mapping rule can apply (dates, names, phone numbers, ...), each with its inverse."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any

import phonenumbers
from gateway.errors import GatewayError

from adapters.codes import _common_defs


class TransformFailed(GatewayError, ValueError):
    """Raised by a transform with a reason that never contains the value. The engine turns
    it into an :class:`~adapters.errors.UnmappableValueError` naming the local field; also
    a ValueError, as it always was."""

    code = "transform_failed"

    def __init__(self, reason: str, reason_code: str = "invalid", **params: Any) -> None:
        self.reason_code = reason_code
        self.params = params
        super().__init__(reason)


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
        raise TransformFailed("must be text", "not_text")
    text = " ".join(value.split())
    if not text:
        raise TransformFailed("is empty", "empty")
    limit = int(args.get("max_length", 200))
    if len(text) > limit:
        raise TransformFailed(f"is longer than {limit} characters", "too_long", max_length=limit)
    return text


def _integer(value: Any, args: Mapping[str, Any]) -> int:
    if isinstance(value, bool):
        raise TransformFailed("must be a whole number", "not_whole_number")
    if isinstance(value, str) and re.fullmatch(r"\s*[0-9]{1,4}\s*", value):
        value = int(value)
    if not isinstance(value, int):
        raise TransformFailed("must be a whole number", "not_whole_number")
    low, high = args.get("min"), args.get("max")
    if (low is not None and value < low) or (high is not None and value > high):
        raise TransformFailed(f"must be between {low} and {high}", "out_of_range", min=low, max=high)
    return value


_DMY = re.compile(r"^\s*([0-9]{1,2})[/.-]([0-9]{1,2})[/.-]([0-9]{4})(?:\s+([0-9]{1,2})[:h]([0-9]{2})(?::([0-9]{2}))?)?\s*$")
_YEAR_FIRST = re.compile(r"^\s*[0-9]{4}[/.-][0-9]{1,2}[/.-][0-9]{1,2}(?:[T\s].*)?$")

#: The date pattern a form shows its clerks, in the form's own language (``date_hint`` of
#: the mapping table): French forms write JJ/MM/AAAA, English ones DD/MM/YYYY.
DEFAULT_DATE_HINT = "DD/MM/YYYY"
_TIME_HINT = "HH:MM"


def date_hint(args: Mapping[str, Any], with_time: bool = False) -> str:
    """The date pattern to show in an error, e.g. ``JJ/MM/AAAA`` or ``DD/MM/YYYY [HH:MM]``."""
    hint = str(args.get("date_hint", DEFAULT_DATE_HINT))
    return f"{hint} [{_TIME_HINT}]" if with_time else hint


def _parse_dmy(value: Any, with_time: bool, args: Mapping[str, Any]) -> tuple[date, tuple[int, int, int] | None]:
    hint = date_hint(args, with_time)
    match = _DMY.match(value) if isinstance(value, str) else None
    if not match or (match.group(4) is not None and not with_time):
        if isinstance(value, str) and _YEAR_FIRST.match(value):
            # An ISO date (2026-03-14) typed on the form: say how the form writes it, not a regex.
            raise TransformFailed(f"is written year first: write the date as {hint}", "date_year_first", hint=hint)
        raise TransformFailed(f"must be a date written {hint}", "not_a_date", hint=hint)
    day, month, year = int(match.group(1)), int(match.group(2)), int(match.group(3))
    if not 1900 <= year <= 2100:
        raise TransformFailed("has a year outside 1900-2100", "year_out_of_range", min=1900, max=2100)
    try:
        parsed = date(year, month, day)
    except ValueError:
        day_hint = date_hint(args)
        raise TransformFailed(f"is not a calendar date ({day_hint})", "not_a_calendar_date", hint=day_hint) from None
    time = (int(match.group(4)), int(match.group(5)), int(match.group(6) or 0)) if match.group(4) is not None else None
    if time and not (time[0] < 24 and time[1] < 60 and time[2] < 60):
        raise TransformFailed("has an impossible time (HH:MM[:SS])", "impossible_time", hint="HH:MM[:SS]")
    return parsed, time


def _date_dmy(value: Any, args: Mapping[str, Any]) -> str:
    return _parse_dmy(value, False, args)[0].isoformat()


def _date_dmy_back(value: Any, args: Mapping[str, Any]) -> str:
    return date.fromisoformat(value).strftime("%d/%m/%Y")


def _offset(args: Mapping[str, Any]) -> timezone:
    sign, hours, minutes = re.fullmatch(r"([+-])([0-9]{2}):([0-9]{2})", args.get("utc_offset", "+00:00")).groups()  # type: ignore[union-attr]
    delta = timedelta(hours=int(hours), minutes=int(minutes))
    return timezone(delta if sign == "+" else -delta)


def _datetime_dmy(value: Any, args: Mapping[str, Any]) -> str:
    """``JJ/MM/AAAA [HH:MM[:SS]]`` local time (``utc_offset``) -> RFC 3339 UTC; a date alone takes ``default_time``."""
    day, time = _parse_dmy(value, True, args)
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


_PHONE_REASONS = {
    phonenumbers.ValidationResult.INVALID_COUNTRY_CODE: ("has no valid country code", "phone_country_code"),
    phonenumbers.ValidationResult.TOO_SHORT: ("is too short for a phone number of its country", "phone_too_short"),
    phonenumbers.ValidationResult.TOO_LONG: ("is too long for a phone number of its country", "phone_too_long"),
    phonenumbers.ValidationResult.INVALID_LENGTH: ("does not have a length phone numbers of its country have",
                                                   "phone_invalid_length"),
}


def _phone(value: Any, args: Mapping[str, Any]) -> str:
    """A phone number as typed -> E.164. A national number takes the form's country (``region``)."""
    if not isinstance(value, str):
        raise TransformFailed("must be text", "not_text")
    region = args.get("region")
    text = value.strip()
    if text.startswith("00"):
        text = "+" + text[2:]
    if text.startswith("+"):
        # "+227 (0) 96..." : a bracketed 0 after the country code is never dialled from abroad,
        # whether or not the country has a trunk prefix (the library only drops it where it has).
        text = re.sub(r"\(\s*0\s*\)", " ", text)
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException as exc:
        if exc.error_type == phonenumbers.NumberParseException.INVALID_COUNTRY_CODE:
            if text.startswith("+") or region is None:
                raise TransformFailed("has no valid country code", "phone_country_code") from None
        if exc.error_type in (phonenumbers.NumberParseException.TOO_SHORT_NSN,
                              phonenumbers.NumberParseException.TOO_SHORT_AFTER_IDD):
            raise TransformFailed("is too short for a phone number", "phone_too_short") from None
        if exc.error_type == phonenumbers.NumberParseException.TOO_LONG:
            raise TransformFailed("is too long for a phone number", "phone_too_long") from None
        raise TransformFailed("is not a phone number", "phone_not_a_number") from None
    if not phonenumbers.is_valid_number(number):
        possible = phonenumbers.is_possible_number_with_reason(number)
        country = phonenumbers.region_code_for_number(number)
        if possible in _PHONE_REASONS:
            reason, code = _PHONE_REASONS[possible]
        else:
            reason, code = "is not a number in use in its country's numbering plan", "phone_not_in_plan"
        if country and country != "ZZ" and code != "phone_country_code":
            reason = reason.replace("its country", country)
        raise TransformFailed(reason, code, country=country if country != "ZZ" else None)
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _country_code(value: Any, args: Mapping[str, Any]) -> str:
    code = value.strip().upper() if isinstance(value, str) else None
    if code is None or code not in _common_defs()["country_code"]["enum"]:
        raise TransformFailed("is not an ISO 3166-1 alpha-2 country code", "not_a_country_code")
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
