"""The read query of ``GET /api/activity``: parameters, filters, the items.

Parameters: ``window`` (``1h`` or ``1d``, default ``1h``); ``since`` and
``until`` (ISO-8601, on ``window_start``: ``since <= window_start < until``;
``since`` defaults to 24 hours ago for ``1h`` and 30 days ago for ``1d``);
``region`` (a cell such as ``30N130E``); ``order`` (``time``: newest window
first, then the busiest; ``count``: the busiest first, then the newest);
``limit`` 1-1000 (default 100). A bad parameter raises
:class:`~streamapp.exceptions.BadRequest` (a 400).

Example::

    query = parse_activity_query({"window": "1d", "order": "count"})
    with engine.connect() as conn:
        body = list_activity(conn, settings.postgres_schema, query)
    body["items"][0]["bounds"]  # [30, 130, 40, 140]
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Connection, RowMapping

from models.regions import cell_bounds
from streamapp.db import qualified_text
from streamapp.exceptions import BadRequest
from streamapp.queries import (
    API_DEFAULT_LIMIT,
    jsonable,
    parse_limit,
    parse_region,
    parse_time,
    single_params,
)

__all__ = [
    "ACTIVITY_ORDERS",
    "ACTIVITY_PARAMS",
    "ACTIVITY_WINDOWS",
    "DEFAULT_SINCE",
    "ActivityQuery",
    "activity_item",
    "list_activity",
    "parse_activity_query",
]

#: Query parameters of ``/api/activity``.
ACTIVITY_PARAMS = ("window", "since", "until", "region", "order", "limit")
#: Window lengths served.
ACTIVITY_WINDOWS = ("1h", "1d")
#: Orders: newest window first, or busiest first.
ACTIVITY_ORDERS = ("time", "count")
#: How far back ``since`` defaults to, per window.
DEFAULT_SINCE: Mapping[str, timedelta] = {
    "1h": timedelta(hours=24),
    "1d": timedelta(days=30),
}

_ORDER_SQL = {
    "time": "window_start DESC, count DESC, region",
    "count": "count DESC, window_start DESC, region",
}


@dataclass(frozen=True)
class ActivityQuery:
    """Filters, order and size of ``/api/activity``."""

    window: str
    since: datetime
    until: datetime | None = None
    region: str | None = None
    order: str = "time"
    limit: int = API_DEFAULT_LIMIT


def parse_activity_query(
    params: Mapping[str, Any], *, now: datetime | None = None
) -> ActivityQuery:
    """Validate the query string of ``/api/activity``; raises BadRequest."""
    p = single_params(params, ACTIVITY_PARAMS)
    window = p.get("window", "1h")
    if window not in ACTIVITY_WINDOWS:
        raise BadRequest(f"window must be one of: {', '.join(ACTIVITY_WINDOWS)}")
    order = p.get("order", "time")
    if order not in ACTIVITY_ORDERS:
        raise BadRequest(f"order must be one of: {', '.join(ACTIVITY_ORDERS)}")
    current = now or datetime.now(UTC)
    since = (
        parse_time("since", p["since"])
        if "since" in p
        else current - DEFAULT_SINCE[window]
    )
    until = parse_time("until", p["until"]) if "until" in p else None
    if until is not None and since > until:
        raise BadRequest("since must not be later than until")
    return ActivityQuery(
        window=window,
        since=since,
        until=until,
        region=parse_region(p["region"]) if "region" in p else None,
        order=order,
        limit=parse_limit(p.get("limit")),
    )


def activity_item(row: RowMapping | Mapping[str, Any]) -> dict[str, Any]:
    """One item: the window's row with its region's bounds."""
    mag = row["max_magnitude"]
    dmin = row["min_depth_km"]
    dmax = row["max_depth_km"]
    return {
        "region": row["region"],
        "bounds": list(cell_bounds(row["region"])),
        "window": row["window"],
        "window_start": jsonable(row["window_start"]),
        "window_end": jsonable(row["window_end"]),
        "count": int(row["count"]),
        "max_magnitude": None if mag is None else float(mag),
        "energy_joules": float(row["energy_joules"]),
        "min_depth_km": None if dmin is None else float(dmin),
        "max_depth_km": None if dmax is None else float(dmax),
        "updated_at": jsonable(row["updated_at"]),
    }


def list_activity(conn: Connection, schema: str, q: ActivityQuery) -> dict[str, Any]:
    """The response body of ``/api/activity`` for ``q`` (see the module)."""
    where = ['"window" = :window', "window_start >= :since"]
    params: dict[str, Any] = {"window": q.window, "since": q.since, "limit": q.limit}
    if q.until is not None:
        where.append("window_start < :until")
        params["until"] = q.until
    if q.region is not None:
        where.append("region = :region")
        params["region"] = q.region
    statement = text(
        'SELECT region, "window", window_start, window_end, count, max_magnitude,'
        " energy_joules, min_depth_km, max_depth_km, updated_at"
        f" FROM {qualified_text(schema, 'activity')}"
        f" WHERE {' AND '.join(where)}"
        f" ORDER BY {_ORDER_SQL[q.order]} LIMIT :limit"
    )
    rows = conn.execute(statement, params).mappings().all()
    return {
        "window": q.window,
        "since": jsonable(q.since),
        "until": jsonable(q.until),
        "order": q.order,
        "items": [activity_item(row) for row in rows],
    }
