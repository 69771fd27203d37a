"""The fixed region grid of the activity windows: 10 x 10 degree cells.

A cell is named by its south-west corner: ``30N120E`` covers latitudes 30 to 40
north and longitudes 120 to 130 east; ``10S080W`` covers 10 south to the equator
and 80 to 70 west. Latitude 90 belongs to the ``80N`` row, longitude 180 to the
``180W`` column (it is -180). 18 x 36 = 648 cells cover the globe.

Example::

    >>> cell_of(35.7, 139.7)
    '30N130E'
    >>> cell_bounds('30N130E')
    (30, 130, 40, 140)
"""

from __future__ import annotations

import re

__all__ = ["CELL_DEGREES", "cell_bounds", "cell_of"]

#: Edge of a cell in degrees (latitude and longitude).
CELL_DEGREES = 10

_CELL = re.compile(r"^(\d{2})([NS])(\d{3})([EW])$")


def cell_of(latitude: float, longitude: float) -> str:
    """The cell holding a point (latitude -90..90, longitude -180..180)."""
    # Floor division, not floor(x / 10): a tiny negative x / 10 rounds to -0.0.
    lat0 = int(latitude // CELL_DEGREES) * CELL_DEGREES
    lat0 = max(min(lat0, 90 - CELL_DEGREES), -90)
    lon = longitude
    if not -180.0 <= lon < 180.0:
        lon = ((lon + 180.0) % 360.0) - 180.0  # 180 is -180
    lon0 = int(lon // CELL_DEGREES) * CELL_DEGREES
    lat_part = f"{abs(lat0):02d}{'S' if lat0 < 0 else 'N'}"
    lon_part = f"{abs(lon0):03d}{'W' if lon0 < 0 else 'E'}"
    return lat_part + lon_part


def cell_bounds(cell: str) -> tuple[int, int, int, int]:
    """``(min_lat, min_lon, max_lat, max_lon)`` of a cell name; ValueError if none."""
    match = _CELL.match(cell)
    if match is None:
        raise ValueError(f"{cell!r} is not a region cell (e.g. 30N120E)")
    lat0 = int(match[1]) * (-1 if match[2] == "S" else 1)
    lon0 = int(match[3]) * (-1 if match[4] == "W" else 1)
    if (
        lat0 % CELL_DEGREES
        or lon0 % CELL_DEGREES
        or not (-90 <= lat0 < 90 and -180 <= lon0 < 180)
    ):
        raise ValueError(f"{cell!r} is not a region cell (e.g. 30N120E)")
    return lat0, lon0, lat0 + CELL_DEGREES, lon0 + CELL_DEGREES
