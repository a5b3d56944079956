"""Wire timestamps: exact shape and real calendar times only."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from gateway.clock import format_ts, parse_ts


def test_round_trip() -> None:
    moment = datetime(2026, 11, 23, 12, 0, 5, tzinfo=timezone.utc)
    assert parse_ts(format_ts(moment)) == moment


@pytest.mark.parametrize("text", [
    "2026-02-30T00:00:00Z", "2026-11-23T24:00:00Z", "2026-11-23T12:00:60Z",  # not calendar times
    "2026-11-23T12:00:00Z\n", "2026-11-23T12:00:00+00:00", "2026-11-23T12:00:00.5Z", "2026-11-23 12:00:00Z",
    "２０２６-11-23T12:00:00Z",  # non-ASCII digits
])
def test_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_ts(text)


def test_naive_datetimes_are_not_formatted() -> None:
    with pytest.raises(ValueError):
        format_ts(datetime(2026, 1, 1))


@pytest.mark.parametrize("moment", [
    datetime(2026, 11, 23, 12, 0, 5, 999_999, tzinfo=timezone.utc),
    datetime(1000, 1, 1, tzinfo=timezone.utc),
    datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone.utc),
    datetime(2026, 3, 1, 0, 30, tzinfo=timezone(timedelta(hours=1))),  # the day before, in UTC
    datetime(2026, 3, 1, 23, 30, tzinfo=timezone(timedelta(hours=-2))),  # the day after, in UTC
])
def test_format_matches_strftime(moment: datetime) -> None:
    assert format_ts(moment) == moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_years_before_1000_have_four_digits() -> None:
    assert format_ts(datetime(999, 5, 6, 7, 8, 9, tzinfo=timezone.utc)) == "0999-05-06T07:08:09Z"
