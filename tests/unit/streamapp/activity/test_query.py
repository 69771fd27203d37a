"""``GET /api/activity``'s parameters and items."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from streamapp.activity.query import activity_item, parse_activity_query
from streamapp.exceptions import BadRequest

NOW = datetime(2026, 12, 8, 3, 0, tzinfo=UTC)


def test_defaults_depend_on_the_window() -> None:
    q = parse_activity_query({}, now=NOW)
    assert (q.window, q.order, q.limit, q.region, q.until) == (
        "1h",
        "time",
        100,
        None,
        None,
    )
    assert q.since == NOW - timedelta(hours=24)
    assert parse_activity_query({"window": "1d"}, now=NOW).since == NOW - timedelta(
        days=30
    )


def test_every_parameter_is_read() -> None:
    q = parse_activity_query(
        {
            "window": "1d",
            "since": "2026-12-01",
            "until": "2026-12-05T00:00:00Z",
            "region": "10S080W",
            "order": "count",
            "limit": "5",
        }
    )
    assert q.since == datetime(2026, 12, 1, tzinfo=UTC)
    assert q.until == datetime(2026, 12, 5, tzinfo=UTC)
    assert (q.window, q.region, q.order, q.limit) == ("1d", "10S080W", "count", 5)


@pytest.mark.parametrize(
    ("params", "word"),
    [
        ({"window": "2h"}, "window"),
        ({"order": "size"}, "order"),
        ({"region": "30N135E"}, "region"),
        ({"region": "north"}, "region"),
        ({"limit": "1001"}, "limit"),
        ({"limit": "0"}, "limit"),
        ({"since": "soon"}, "since"),
        ({"since": "2026-12-05", "until": "2026-12-01"}, "since"),
        ({"colour": "red"}, "unknown parameter"),
    ],
)
def test_bad_parameters_are_bad_requests(params: dict[str, str], word: str) -> None:
    with pytest.raises(BadRequest, match=word):
        parse_activity_query(params)


def test_an_item_has_the_cell_bounds_and_iso_times() -> None:
    start = datetime(2026, 12, 8, 3, tzinfo=UTC)
    item = activity_item(
        {
            "region": "30N130E",
            "window": "1h",
            "window_start": start,
            "window_end": start + timedelta(hours=1),
            "count": 3,
            "max_magnitude": 5.5,
            "energy_joules": 1.0e13,
            "min_depth_km": 1.0,
            "max_depth_km": None,
            "updated_at": start,
        }
    )
    assert item["bounds"] == [30, 130, 40, 140]
    assert item["window_start"] == "2026-12-08T03:00:00Z"
    assert item["window_end"] == "2026-12-08T04:00:00Z"
    assert item["max_depth_km"] is None and item["count"] == 3
