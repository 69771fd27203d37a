"""The region grid: every point has one cell, the cell contains it, names round-trip."""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from models.regions import CELL_DEGREES, cell_bounds, cell_of

latitudes = st.floats(min_value=-90, max_value=90, allow_nan=False)
longitudes = st.floats(min_value=-180, max_value=180, allow_nan=False)


@given(latitudes, longitudes)
@example(-5e-324, -5e-324)  # x / 10 underflows to -0.0: the cell is still south-west
@example(0.0, -1.1754943508222875e-38)
def test_the_cell_of_a_point_contains_it(lat: float, lon: float) -> None:
    min_lat, min_lon, max_lat, max_lon = cell_bounds(cell_of(lat, lon))
    assert max_lat - min_lat == CELL_DEGREES == max_lon - min_lon
    assert min_lat <= lat <= max_lat
    assert lat < max_lat or lat == 90
    wrapped = -180.0 if lon == 180 else lon
    assert min_lon <= wrapped < max_lon


@pytest.mark.parametrize(
    ("lat", "lon", "cell"),
    [
        (35.7, 139.7, "30N130E"),  # Tokyo
        (-33.4, -70.6, "40S080W"),  # Santiago
        (0.0, 0.0, "00N000E"),
        (-0.1, -0.1, "10S010W"),
        (90.0, 180.0, "80N180W"),  # the pole row, the antimeridian column
        (-90.0, -180.0, "90S180W"),
        (61.2, -149.9, "60N150W"),  # Anchorage
    ],
)
def test_known_cells(lat: float, lon: float, cell: str) -> None:
    assert cell_of(lat, lon) == cell


def test_there_are_648_cells() -> None:
    cells = {
        cell_of(lat + 0.5, lon + 0.5)
        for lat in range(-90, 90)
        for lon in range(-180, 180)
    }
    assert len(cells) == 18 * 36
    assert all(cell_of(*cell_bounds(c)[:2]) == c for c in cells)


@pytest.mark.parametrize(
    "name", ["", "30N", "35N130E", "30X130E", "90N000E", "00N180E", "30n130e"]
)
def test_malformed_cell_names_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="is not a region cell"):
        cell_bounds(name)
