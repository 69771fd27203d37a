"""The windows a worker holds: an index of its activity table, and batch updates.

The activity table (a changelog-backed Faust table) holds one entry per event:
``"region/event_id" -> [time_ms, magnitude, depth_km, updated_ms]``, for the
events of each region since its horizon (:func:`~streamapp.activity.windows.
horizon_ms`: midnight two days before the region's newest event). Every window
starting at or after the horizon is therefore complete in the table. An event
older than its region's horizon is *late*: its windows are merged into their
stored ``activity`` rows instead (:attr:`Update.late`).

:class:`RegionWindows` indexes those entries by window and applies a batch of
contributions (:meth:`RegionWindows.apply`), saying what to write to the table,
which rows changed, which expired entries to delete and which hours to check
for a surge.

Example::

    state = RegionWindows()
    state.load(table.items())
    update = state.apply(contributions)
    for key, value in update.sets.items():
        table[key] = value
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from streamapp.activity.windows import (
    HOUR_MS,
    WINDOWS,
    Contribution,
    EventContribution,
    horizon_ms,
    newer,
    window_start,
)

__all__ = [
    "HourChange",
    "RegionWindows",
    "Update",
    "WindowKey",
    "WindowRow",
    "event_of_key",
    "table_key",
]

#: ``(region, window, window_start_ms)``
WindowKey = tuple[str, str, int]


def table_key(region: str, event_id: str) -> str:
    """The activity table's key of an event: ``region/event_id``."""
    return f"{region}/{event_id}"


def event_of_key(key: str) -> tuple[str, str]:
    """``(region, event_id)`` of a table key."""
    region, _, event_id = key.partition("/")
    return region, event_id


@dataclass(slots=True)
class WindowRow:
    """A window to upsert: its key and contributions. ``merge``: a late window,
    merged into the stored row; otherwise the contributions are the whole window."""

    key: WindowKey
    contributions: dict[str, Contribution]
    merge: bool = False


@dataclass(frozen=True, slots=True)
class HourChange:
    """An hour window whose count changed: before and after, with the 24 hourly
    counts before it (None when they reach past the region's horizon)."""

    region: str
    hour_start_ms: int
    before: int
    after: int
    trailing: list[int] | None


@dataclass(slots=True)
class Update:
    """What one batch changes."""

    #: Table entries to write (key -> contribution).
    sets: dict[str, Contribution] = field(default_factory=dict)
    #: Table entries past their region's horizon, to delete.
    deletes: list[str] = field(default_factory=list)
    #: Windows to upsert (retained windows whole, late ones to merge).
    rows: list[WindowRow] = field(default_factory=list)
    #: Hour windows whose count changed (the surge rule's input).
    hours: list[HourChange] = field(default_factory=list)


class RegionWindows:
    """The activity table's entries indexed by region and window."""

    def __init__(self) -> None:
        #: The consumer generation the index was loaded in (None: not loaded).
        self.generation: int | None = None
        self.events: dict[str, dict[str, Contribution]] = defaultdict(dict)
        self.windows: dict[WindowKey, dict[str, Contribution]] = defaultdict(dict)
        self.newest: dict[str, int] = {}

    def load(self, entries: Iterable[tuple[str, Any]]) -> int:
        """Index the table's ``(key, contribution)`` entries; returns how many."""
        self.events.clear()
        self.windows.clear()
        self.newest.clear()
        count = 0
        for key, value in entries:
            if not isinstance(value, list) or len(value) != 4:
                continue
            region, event_id = event_of_key(str(key))
            self._put(region, event_id, value)
            count += 1
        return count

    def _put(self, region: str, event_id: str, value: Contribution) -> None:
        old = self.events[region].get(event_id)
        if old is not None:
            self._unindex(region, event_id, old)
        self.events[region][event_id] = value
        for name in WINDOWS:
            self.windows[(region, name, window_start(value[0], name))][event_id] = value
        if value[0] > self.newest.get(region, value[0] - 1):
            self.newest[region] = value[0]

    def _unindex(self, region: str, event_id: str, value: Contribution) -> None:
        for name in WINDOWS:
            key = (region, name, window_start(value[0], name))
            bucket = self.windows.get(key)
            if bucket is not None:
                bucket.pop(event_id, None)
                if not bucket:
                    del self.windows[key]

    def count(self, region: str, hour_start_ms: int) -> int:
        """Events of a region's hour window in the table."""
        bucket = self.windows.get((region, "1h", hour_start_ms))
        return len(bucket) if bucket else 0

    def trailing(self, region: str, hour_start_ms: int) -> list[int] | None:
        """The 24 hourly counts before an hour; None when they reach past the
        region's horizon (not all in the table)."""
        newest = self.newest.get(region)
        if newest is None or hour_start_ms - 24 * HOUR_MS < horizon_ms(newest):
            return None
        return [
            self.count(region, hour_start_ms - back * HOUR_MS)
            for back in range(24, 0, -1)
        ]

    def apply(self, contributions: Sequence[EventContribution]) -> Update:
        """Apply a batch: each event's newest revision replaces its entry."""
        update = Update()
        by_region: dict[str, list[EventContribution]] = defaultdict(list)
        for event in contributions:
            by_region[event.region].append(event)
        for region, events in by_region.items():
            self._apply_region(region, events, update)
        return update

    def _apply_region(
        self, region: str, events: list[EventContribution], update: Update
    ) -> None:
        newest = max(
            [self.newest.get(region, events[0].time_ms)] + [e.time_ms for e in events]
        )
        horizon = horizon_ms(newest)
        touched: set[WindowKey] = set()
        late: dict[WindowKey, dict[str, Contribution]] = defaultdict(dict)
        hours_before: dict[int, int] = {}
        known = self.events[region]
        for event in events:
            value = event.value
            if event.time_ms < horizon:
                for name in WINDOWS:
                    bucket = late[(region, name, window_start(event.time_ms, name))]
                    if newer(value, bucket.get(event.event_id)):
                        bucket[event.event_id] = value
                continue
            old = known.get(event.event_id)
            if not newer(value, old):
                continue
            if old == value:
                continue  # the same revision again: nothing changes
            for contribution in (old, value):
                if contribution is None or contribution[0] < horizon:
                    continue
                for name in WINDOWS:
                    key = (region, name, window_start(contribution[0], name))
                    if name == "1h" and key[2] not in hours_before:
                        hours_before[key[2]] = self.count(region, key[2])
                    touched.add(key)
            self._put(region, event.event_id, value)
            update.sets[table_key(region, event.event_id)] = value
        # Expire what fell behind the horizon (the newest event moved on).
        for event_id, value in list(known.items()):
            if value[0] < horizon:
                self._unindex(region, event_id, value)
                del known[event_id]
                entry = table_key(region, event_id)
                update.sets.pop(entry, None)
                update.deletes.append(entry)
        for key in sorted(touched):
            update.rows.append(WindowRow(key, dict(self.windows.get(key, {}))))
        for key, bucket in sorted(late.items()):
            update.rows.append(WindowRow(key, bucket, merge=True))
        for hour, before in sorted(hours_before.items()):
            after = self.count(region, hour)
            if after != before:
                update.hours.append(
                    HourChange(region, hour, before, after, self.trailing(region, hour))
                )
