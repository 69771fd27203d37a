"""The alert: what the rule agent emits to ``earthquakes.alerts`` and the
``alerts`` table keeps, and the rules that make one.

Rules (``Alert.rule``), each alerting at most once per subject:

- ``magnitude``: an event of magnitude >= ``ALERT_MIN_MAGNITUDE`` (default 6.0);
- ``tsunami``: an event with the USGS ``tsunami`` flag set;
- ``pager``: an event whose USGS PAGER ``alert`` level is orange or red;
- ``surge``: a region cell (``models.regions``) whose hourly count exceeds
  ``ALERT_SURGE_FACTOR`` (default 5) times its trailing 24-hour hourly mean, with
  at least ``ALERT_SURGE_MIN_COUNT`` (default 5) events in the hour.

The id is ``rule:subject`` (``magnitude:us7000abcd``, ``surge:30N130E:
2026-12-08T03:00:00Z``), so a revision of an event that already alerted makes
the same id (stored once), and a revision that crosses a threshold later makes
its first.

Example::

    >>> quake = {"id": "us1", "magnitude": 6.4, "latitude": 35.7,
    ...          "longitude": 139.7, "time": "2026-12-08T03:12:00Z"}
    >>> [a.id for a in event_alerts(quake, min_magnitude=6.0)]
    ['magnitude:us1']
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import faust

from models.regions import cell_of
from streamapp.faust_ext.records import record_fields

__all__ = [
    "ALERT_FIELDS",
    "PAGER_LEVELS",
    "RULES",
    "Alert",
    "energy_joules",
    "event_alerts",
    "surge_alert",
]

#: Every rule, in the order an event's alerts are made.
RULES = ("magnitude", "tsunami", "pager", "surge")
#: PAGER alert levels that alert.
PAGER_LEVELS = frozenset({"orange", "red"})


def energy_joules(magnitude: float | None) -> float:
    """Radiated seismic energy of a magnitude: log10 E = 1.5 M + 4.8 (joules,
    Gutenberg-Richter); 0 for an event without a magnitude."""
    if magnitude is None:
        return 0.0
    return float(10.0 ** (1.5 * magnitude + 4.8))


class Alert(faust.Record, serializer="json", coerce=True):
    """One alert (alerts topic value; one ``alerts`` row)."""

    id: str
    rule: str
    #: The event id (event rules) or ``cell:window_start`` (surge).
    subject: str
    region: str
    #: When it happened: the event's time, or the surging hour's start.
    occurred_at: datetime
    #: When the rule fired (the worker's clock).
    detected_at: datetime
    #: One line for a person, e.g. ``M 6.4 - 10 km S of Town (magnitude >= 6.0)``.
    summary: str
    event_id: str | None = None
    magnitude: float | None = None
    place: str | None = None
    url: str | None = None
    tsunami: bool | None = None
    pager: str | None = None
    #: Surge: events in the hour, the trailing 24-hour hourly mean, the factor.
    hour_count: int | None = None
    trailing_mean: float | None = None
    factor: float | None = None


#: ``Alert`` field names in declaration order: the alert's columns everywhere (the
#: sink's statement, the outbox's payload, the read API).
ALERT_FIELDS: tuple[str, ...] = record_fields(Alert)


def _when(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def _label(quake: Mapping[str, Any]) -> str:
    mag = quake.get("magnitude")
    where = quake.get("place") or f"{quake['latitude']:.2f}, {quake['longitude']:.2f}"
    return f"M {mag:.1f} - {where}" if mag is not None else f"M ? - {where}"


def event_alerts(
    quake: Mapping[str, Any], *, min_magnitude: float, now: datetime | None = None
) -> list[Alert]:
    """The alerts one clean event (``Quake`` fields as a mapping) crosses."""
    detected = now or datetime.now(UTC)
    event_id = str(quake["id"])
    mag = quake.get("magnitude")
    pager = quake.get("alert")
    reasons: list[tuple[str, str]] = []
    if mag is not None and mag >= min_magnitude:
        reasons.append(("magnitude", f"magnitude >= {min_magnitude:g}"))
    if quake.get("tsunami"):
        reasons.append(("tsunami", "tsunami flag set"))
    if isinstance(pager, str) and pager.lower() in PAGER_LEVELS:
        reasons.append(("pager", f"PAGER alert {pager.lower()}"))
    base = _label(quake)
    return [
        Alert(
            id=f"{rule}:{event_id}",
            rule=rule,
            subject=event_id,
            region=cell_of(float(quake["latitude"]), float(quake["longitude"])),
            occurred_at=_when(quake["time"]),
            detected_at=detected,
            summary=f"{base} ({why})",
            event_id=event_id,
            magnitude=mag,
            place=quake.get("place"),
            url=quake.get("url"),
            tsunami=quake.get("tsunami"),
            pager=pager,
        )
        for rule, why in reasons
    ]


def surge_alert(
    region: str,
    hour_start: datetime,
    hour_count: int,
    trailing_counts: list[int],
    *,
    factor: float,
    min_count: int,
    now: datetime | None = None,
) -> Alert | None:
    """A surge alert when ``hour_count`` exceeds ``factor`` times the mean of
    ``trailing_counts`` (the 24 hours before, missing hours as 0) and is at
    least ``min_count``; else None."""
    mean = sum(trailing_counts) / 24.0
    if hour_count < min_count or hour_count <= factor * mean:
        return None
    start = _when(hour_start).astimezone(UTC)
    stamp = start.strftime("%Y-%m-%dT%H:%M:%SZ")
    subject = f"{region}:{stamp}"
    return Alert(
        id=f"surge:{subject}",
        rule="surge",
        subject=subject,
        region=region,
        occurred_at=start,
        detected_at=now or datetime.now(UTC),
        summary=(
            f"{hour_count} events in region {region} in the hour from {stamp}, "
            f"{hour_count / mean:.1f}x its trailing hourly mean of {mean:.2f}"
            if mean
            else f"{hour_count} events in region {region} in the hour from "
            f"{stamp}, none in the 24 hours before"
        ),
        hour_count=hour_count,
        trailing_mean=mean,
        factor=factor,
    )
