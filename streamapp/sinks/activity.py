"""The activity connector: upserts ``activity`` rows (one per region and window).

An item's row is ``{"key": (region, window, window_start_ms), "contributions":
{event_id: [time_ms, magnitude, depth_km, updated_ms]}, "merge": bool}``. A
whole window (``merge`` false: the activity table holds all of it) replaces the
stored row; a late window (``merge`` true: older than the table keeps) is merged
into the stored row's contributions (newest revision per event) under a row
lock, so a late event never replaces a complete row with a partial count. The
aggregates are recomputed from the contributions either way
(:func:`streamapp.activity.windows.aggregate`), so a redelivered batch writes
the same rows again.

Example::

    sink = ActivitySink(settings)
    sink.add(Item(window_row(("30N130E", "1h", 1765163520000), {...})))
    rejected = await sink.flush()  # one transaction, in a worker thread
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
from psycopg2 import sql
from psycopg2.extras import execute_values

from streamapp.activity.windows import (
    WINDOWS,
    Contribution,
    aggregate,
    merge_contributions,
)
from streamapp.db import column_list, qualified, transaction
from streamapp.settings import Settings
from streamapp.sinks.base import Item, Sink

__all__ = [
    "ACTIVITY_TABLE_COLUMNS",
    "ActivitySink",
    "activity_values",
    "window_row",
]

#: Columns of ``activity`` written by the sink, in statement order
#: (``updated_at`` is the transaction's ``now()``).
ACTIVITY_TABLE_COLUMNS: tuple[str, ...] = (
    "region",
    "window",
    "window_start",
    "window_end",
    "count",
    "max_magnitude",
    "energy_joules",
    "min_depth_km",
    "max_depth_km",
    "contributions",
)

WindowKey = tuple[str, str, int]


def window_row(
    key: WindowKey, contributions: Mapping[str, Contribution], *, merge: bool = False
) -> dict[str, Any]:
    """The item row of a window (see the module docstring)."""
    return {"key": key, "contributions": dict(contributions), "merge": merge}


def _instant(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def activity_values(
    key: WindowKey, contributions: Mapping[str, Contribution]
) -> tuple[Any, ...]:
    """The values of an ``activity`` row in :data:`ACTIVITY_TABLE_COLUMNS` order."""
    region, window, start = key
    agg = aggregate(contributions.values())
    return (
        region,
        window,
        _instant(start),
        _instant(start + WINDOWS[window]),
        agg["count"],
        agg["max_magnitude"],
        agg["energy_joules"],
        agg["min_depth_km"],
        agg["max_depth_km"],
        orjson.dumps(contributions).decode("utf-8"),
    )


class ActivitySink(Sink):
    """Upserts ``activity`` rows: one transaction per batch (see the module)."""

    name = "activity-sink"

    def __init__(self, settings: Settings, **kwargs: Any) -> None:
        super().__init__(settings, **kwargs)
        table = qualified(settings.postgres_schema, "activity")
        updates = sql.SQL(", ").join(
            sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(c))
            for c in ACTIVITY_TABLE_COLUMNS[3:]
        )
        self.upsert = sql.SQL(
            "INSERT INTO {table} ({columns}, updated_at) VALUES %s"
            " ON CONFLICT (region, {window}, window_start) DO UPDATE SET"
            " {updates}, updated_at = now()"
        ).format(
            table=table,
            columns=column_list(ACTIVITY_TABLE_COLUMNS),
            window=sql.Identifier("window"),
            updates=updates,
        )
        self.template = "(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s::jsonb, now())"
        self.select_locked = sql.SQL(
            "SELECT region, {window}, window_start, contributions FROM {table}"
            " WHERE (region, {window}, window_start) IN (SELECT * FROM (VALUES %s)"
            " AS k(region, {window}, window_start))"
            " ORDER BY region, {window}, window_start FOR UPDATE"
        ).format(table=table, window=sql.Identifier("window"))

    def write_batch(self, items: Sequence[Item]) -> None:
        whole: dict[WindowKey, dict[str, Contribution]] = {}
        late: dict[WindowKey, dict[str, Contribution]] = {}
        for item in items:
            region, window, start = item.row["key"]
            key: WindowKey = (str(region), str(window), int(start))
            contributions = item.row["contributions"]
            if item.row.get("merge"):
                late[key] = merge_contributions(late.get(key, {}), contributions)
            else:
                whole[key] = dict(contributions)
        if not whole and not late:
            return
        with transaction(
            self.settings, engine=self.engine, action="upsert into activity"
        ) as cur:
            if late:
                keys = sorted(late)
                execute_values(
                    cur,
                    self.select_locked,
                    [(r, w, _instant(s)) for r, w, s in keys],
                    template="(%s, %s, %s::timestamptz)",
                    page_size=len(keys),
                )
                for region, window, start, stored in cur.fetchall():
                    found = (region, window, int(start.timestamp() * 1000))
                    if found in late and isinstance(stored, dict):
                        late[found] = merge_contributions(stored, late[found])
                for found, contributions in late.items():
                    whole[found] = merge_contributions(
                        contributions, whole.get(found, {})
                    )
            rows = [activity_values(key, whole[key]) for key in sorted(whole)]
            execute_values(
                cur, self.upsert, rows, template=self.template, page_size=len(rows)
            )
