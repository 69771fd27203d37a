"""FDSN query parameters and count answers (no network: the server side is in
tests/integration/test_backfill.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from streamapp.backfill.fdsn import FdsnClient, Window, _parse_count, format_time

SINCE = datetime(2024, 1, 1, tzinfo=UTC)


def test_times_are_utc_with_milliseconds_and_the_end_is_inclusive() -> None:
    cet = timezone(timedelta(hours=1))
    window = Window(datetime(2024, 1, 1, 1, tzinfo=cet), datetime(2024, 1, 2))
    assert window.params() == {
        "starttime": "2024-01-01T00:00:00.000",
        "endtime": "2024-01-01T23:59:59.999",
    }
    assert (
        format_time(datetime(2024, 5, 6, 7, 8, 9, 123456)) == "2024-05-06T07:08:09.123"
    )


def test_magnitude_and_bbox_map_to_the_service_parameters() -> None:
    window = Window(SINCE, SINCE + timedelta(days=1), 4.5, (135.0, 30.0, 150.0, 45.5))
    params = window.params()
    assert params["minmagnitude"] == "4.5"
    assert (
        params["minlongitude"],
        params["minlatitude"],
        params["maxlongitude"],
        params["maxlatitude"],
    ) == ("135", "30", "150", "45.5")
    part = window.part(SINCE, SINCE + timedelta(hours=1))
    assert (part.min_magnitude, part.bbox) == (window.min_magnitude, window.bbox)


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (200, b"25000\n", 25000),
        (200, b'{"count": 12, "maxAllowed": 20000}', 12),
        (204, b"", 0),
        (200, b"<html>busy</html>", None),
        (200, b'{"count": -1}', None),
    ],
)
def test_count_answers(status: int, body: bytes, expected: int | None) -> None:
    assert _parse_count(status, body, None) == expected


def test_the_body_cap_leaves_room_for_a_full_page() -> None:
    assert FdsnClient("http://x", max_events=20_000).max_bytes >= 20_000 * 4096
    assert FdsnClient("http://u:secret@x/fdsn/").url == "http://u:***@x/fdsn"
