"""Tumbling activity windows of a region: contributions, aggregates, retention.

Pure code (no Kafka, no database). An event's *contribution* to its windows is
``[time_ms, magnitude, depth_km, updated_ms]``; a window keeps one contribution
per event id, so a revision (a larger ``updated``) replaces its own entry and a
replayed event changes nothing. A window's row (:func:`aggregate`) is computed
from its contributions: the count, the largest magnitude, the summed energy
(``models.alerts.energy_joules``: log10 E = 1.5 M + 4.8) and the shallowest and
deepest depth.

Windows are UTC-aligned: ``1h`` starts on the hour, ``1d`` at midnight; the
event's origin time decides its windows.

Example::

    >>> c = contribution_from_json(
    ...     b'{"id":"us1","time":"2026-12-08T03:12:00Z",'
    ...     b'"updated":"2026-12-08T03:20:00Z","latitude":35.7,'
    ...     b'"longitude":139.7,"depth":10.0,"magnitude":5.0}')
    >>> c.region, c.event_id, iso_of_ms(window_start(c.time_ms, "1h"))
    ('30N130E', 'us1', '2026-12-08T03:00:00+00:00')
    >>> aggregate([c.value])["count"]
    1
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from models.alerts import energy_joules
from models.regions import cell_of

__all__ = [
    "DAY_MS",
    "HOUR_MS",
    "RETAINED_DAYS",
    "WINDOWS",
    "Contribution",
    "EventContribution",
    "aggregate",
    "contribution_from_json",
    "contribution_of",
    "contribution_value",
    "horizon_ms",
    "iso_of_ms",
    "merge_contributions",
    "ms_of_iso",
    "newer",
    "parse_contribution_value",
    "window_start",
]

HOUR_MS = 3_600_000
DAY_MS = 86_400_000
#: Window names and lengths (ms).
WINDOWS: Mapping[str, int] = {"1h": HOUR_MS, "1d": DAY_MS}
#: Days before the newest event's day whose events a region keeps in its table:
#: every window starting at or after the horizon is complete there, including
#: the 24 hours before any hour of the newest day (the surge's trailing mean).
RETAINED_DAYS = 2

#: ``[time_ms, magnitude | None, depth_km, updated_ms]``
Contribution = list[Any]


@dataclass(frozen=True, slots=True)
class EventContribution:
    """One clean event's share of its region's windows."""

    region: str
    event_id: str
    time_ms: int
    magnitude: float | None
    depth_km: float
    updated_ms: int

    @property
    def value(self) -> Contribution:
        """The compact contribution stored per event id."""
        return [self.time_ms, self.magnitude, self.depth_km, self.updated_ms]


def ms_of_iso(text: str) -> int:
    """Epoch milliseconds of an ISO-8601 timestamp (``Z`` or an offset; naive is
    UTC)."""
    when = datetime.fromisoformat(text)
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return round(when.timestamp() * 1000)


def iso_of_ms(ms: int) -> str:
    """``2026-12-08T03:00:00+00:00`` of epoch milliseconds (UTC)."""
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat()


def window_start(time_ms: int, window: str) -> int:
    """Start (epoch ms) of the ``window`` (``1h``/``1d``) holding ``time_ms``."""
    length = WINDOWS[window]
    return time_ms - time_ms % length


def horizon_ms(newest_ms: int) -> int:
    """The first instant a region keeps in its table, given its newest event:
    midnight :data:`RETAINED_DAYS` days before the newest event's day."""
    return window_start(newest_ms, "1d") - RETAINED_DAYS * DAY_MS


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def contribution_of(obj: Any) -> EventContribution | None:
    """The contribution of a decoded clean event (``Quake`` fields as a mapping);
    None when it is not one (the sink agent dead-letters those)."""
    try:
        event_id = obj["id"]
        lat = _number(obj["latitude"])
        lon = _number(obj["longitude"])
        depth = _number(obj["depth"])
        if not isinstance(event_id, str) or lat is None or lon is None:
            return None
        if depth is None:
            return None
        time_ms = ms_of_iso(obj["time"])
        updated = obj.get("updated")
        updated_ms = ms_of_iso(updated) if isinstance(updated, str) else time_ms
        return EventContribution(
            region=cell_of(lat, lon),
            event_id=event_id,
            time_ms=time_ms,
            magnitude=_number(obj.get("magnitude")),
            depth_km=depth,
            updated_ms=updated_ms,
        )
    except (ValueError, TypeError, KeyError, AttributeError):
        return None


def contribution_from_json(data: bytes) -> EventContribution | None:
    """The contribution of a clean-topic value (``Quake`` JSON); None when it is
    not one."""
    try:
        obj = orjson.loads(data)
    except ValueError:
        return None
    return contribution_of(obj)


def contribution_value(event: EventContribution) -> bytes:
    """The activity-topic value of an event:
    ``[id, time_ms, magnitude, depth_km, updated_ms]``."""
    return orjson.dumps([event.event_id, *event.value])


def parse_contribution_value(region: str, data: bytes) -> EventContribution | None:
    """The inverse of :func:`contribution_value` (None when malformed)."""
    try:
        event_id, time_ms, mag, depth, updated_ms = orjson.loads(data)
        if not isinstance(event_id, str) or not isinstance(time_ms, int):
            return None
        depth_f = _number(depth)
        if depth_f is None or not isinstance(updated_ms, int):
            return None
        return EventContribution(
            region, event_id, time_ms, _number(mag), depth_f, updated_ms
        )
    except (ValueError, TypeError):
        return None


def newer(candidate: Contribution, current: Contribution | None) -> bool:
    """True when ``candidate`` replaces ``current`` (a larger or equal
    ``updated``: the later delivery of the same revision changes nothing)."""
    return current is None or candidate[3] >= current[3]


def merge_contributions(
    stored: Mapping[str, Contribution], incoming: Mapping[str, Contribution]
) -> dict[str, Contribution]:
    """``stored`` with ``incoming`` applied (the newer revision of each id)."""
    merged = dict(stored)
    for event_id, value in incoming.items():
        if newer(value, merged.get(event_id)):
            merged[event_id] = value
    return merged


def aggregate(contributions: Iterable[Contribution]) -> dict[str, Any]:
    """``count``, ``max_magnitude``, ``energy_joules``, ``min_depth_km`` and
    ``max_depth_km`` of a window's contributions."""
    count = 0
    max_mag: float | None = None
    energy = 0.0
    min_depth: float | None = None
    max_depth: float | None = None
    for _time, mag, depth, _updated in contributions:
        count += 1
        if mag is not None:
            energy += energy_joules(mag)
            if max_mag is None or mag > max_mag:
                max_mag = mag
        if min_depth is None or depth < min_depth:
            min_depth = depth
        if max_depth is None or depth > max_depth:
            max_depth = depth
    return {
        "count": count,
        "max_magnitude": max_mag,
        "energy_joules": energy,
        "min_depth_km": min_depth,
        "max_depth_km": max_depth,
    }
