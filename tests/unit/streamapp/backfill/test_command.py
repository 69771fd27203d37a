"""The command line's parameters: one clear error for each malformed value."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from streamapp.commands.backfill import parse_bbox, parse_params
from streamapp.exceptions import BadRequest


def test_parameters_are_parsed_to_utc() -> None:
    params = parse_params(
        "2024-01-01", "2024-02-01T00:00:00+01:00", 4.5, "135,30,150,45"
    )
    assert params.since == datetime(2024, 1, 1, tzinfo=UTC)
    assert params.until == datetime(2024, 1, 31, 23, tzinfo=UTC)
    assert params.bbox == (135.0, 30.0, 150.0, 45.0) and params.min_magnitude == 4.5
    assert params.key == (
        "since=2024-01-01T00:00:00+00:00 until=2024-01-31T23:00:00+00:00 "
        "minmag=4.5 bbox=135,30,150,45"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("yesterday", "2024-01-01", None, None), "--since must be an ISO-8601"),
        (("2024-02-01", "2024-01-01", None, None), "must be after --since"),
        (("2024-01-01", "2024-02-01", 11.0, None), "--min-magnitude 11 must be"),
        (("2024-01-01", "2024-02-01", None, "1,2,3"), "min_lon,min_lat,max_lon"),
        (("2024-01-01", "2024-02-01", None, "a,b,c,d"), "min_lon,min_lat,max_lon"),
        (("2024-01-01", "2024-02-01", None, "10,50,20,40"), "latitudes -90..90"),
    ],
)
def test_bad_parameters_say_what_to_fix(
    args: tuple[str, str, float | None, str | None], message: str
) -> None:
    with pytest.raises(BadRequest, match=message):
        parse_params(*args)


def test_bbox_may_cross_the_antimeridian_as_the_service_allows() -> None:
    assert parse_bbox("170,-50,190,-30") == (170.0, -50.0, 190.0, -30.0)
