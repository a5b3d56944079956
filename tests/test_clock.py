"""Wire timestamps: exact shape and real calendar times only."""

from __future__ import annotations

from datetime import datetime, timezone

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
