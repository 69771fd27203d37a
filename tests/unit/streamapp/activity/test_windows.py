"""Contributions, window starts, retention and aggregates of the activity windows."""

from __future__ import annotations

import math
from typing import Any

import orjson
import pytest

from streamapp.activity.windows import (
    DAY_MS,
    HOUR_MS,
    aggregate,
    contribution_from_json,
    contribution_value,
    horizon_ms,
    iso_of_ms,
    merge_contributions,
    ms_of_iso,
    parse_contribution_value,
    window_start,
)

T0 = ms_of_iso("2026-12-08T03:12:30.500Z")


def quake(**changes: object) -> bytes:
    base = {
        "id": "us1",
        "time": "2026-12-08T03:12:30.500000Z",
        "updated": "2026-12-08T03:20:00Z",
        "latitude": 35.7,
        "longitude": 139.7,
        "depth": 12.5,
        "magnitude": 5.5,
    }
    base.update(changes)
    return orjson.dumps(base)


def test_a_clean_event_gives_its_region_and_contribution() -> None:
    c = contribution_from_json(quake())
    assert c is not None
    assert (c.region, c.event_id, c.time_ms, c.magnitude, c.depth_km) == (
        "30N130E",
        "us1",
        T0,
        5.5,
        12.5,
    )
    assert c.updated_ms == ms_of_iso("2026-12-08T03:20:00+00:00")
    again = parse_contribution_value(c.region, contribution_value(c))
    assert again == c


@pytest.mark.parametrize(
    "value",
    [
        b"not json",
        b"[1, 2]",
        quake(latitude="35"),
        quake(time="yesterday"),
        quake(depth=None),
        quake(id=7),
    ],
)
def test_what_is_no_event_gives_none(value: bytes) -> None:
    assert contribution_from_json(value) is None


def test_windows_are_utc_aligned() -> None:
    assert iso_of_ms(window_start(T0, "1h")) == "2026-12-08T03:00:00+00:00"
    assert iso_of_ms(window_start(T0, "1d")) == "2026-12-08T00:00:00+00:00"
    assert window_start(window_start(T0, "1h"), "1h") == window_start(T0, "1h")


def test_the_horizon_keeps_two_days_before_the_newest_day() -> None:
    day = window_start(T0, "1d")
    assert horizon_ms(T0) == day - 2 * DAY_MS
    # Every trailing 24 hours of an hour in the newest day lie after it.
    assert window_start(T0, "1h") - 24 * HOUR_MS >= horizon_ms(T0)


def test_aggregate_counts_maxima_energy_and_depths() -> None:
    rows: list[list[Any]] = [
        [T0, 5.0, 10.0, T0],
        [T0, 6.0, 3.0, T0],
        [T0, None, 30.0, T0],
    ]
    agg = aggregate(rows)
    assert agg["count"] == 3
    assert agg["max_magnitude"] == 6.0
    assert math.isclose(agg["energy_joules"], 10 ** (7.5 + 4.8) + 10 ** (9 + 4.8))
    assert (agg["min_depth_km"], agg["max_depth_km"]) == (3.0, 30.0)
    empty = aggregate([])
    assert empty["count"] == 0 and empty["max_magnitude"] is None


def test_merge_keeps_the_newest_revision_of_each_event() -> None:
    stored = {"a": [T0, 4.0, 1.0, 100], "b": [T0, 3.0, 1.0, 100]}
    merged = merge_contributions(
        stored, {"a": [T0, 4.5, 1.0, 200], "b": [T0, 9.0, 1.0, 50], "c": [T0, 1, 1, 1]}
    )
    assert merged == {
        "a": [T0, 4.5, 1.0, 200],
        "b": [T0, 3.0, 1.0, 100],  # an older revision arriving late loses
        "c": [T0, 1, 1, 1],
    }
