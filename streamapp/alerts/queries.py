"""The read query of ``GET /api/alerts``: parameters, keyset pages, the items.

Newest ``detected_at`` first (the id breaks ties); ``next_cursor`` is the key of
a page's last item, encoded by :mod:`streamapp.queries`' cursor helpers.

Example::

    query = parse_alert_query({"rule": "magnitude", "limit": "50"})
    with engine.connect() as conn:
        page = list_alerts(conn, settings.postgres_schema, query)
    page["items"][0]["delivery"]["status"]  # 'off', 'pending', ...
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Connection, RowMapping

from models.alerts import ALERT_FIELDS, RULES
from streamapp.db import qualified_text
from streamapp.exceptions import BadRequest
from streamapp.queries import (
    API_DEFAULT_LIMIT,
    decode_cursor,
    encode_cursor,
    jsonable,
    parse_limit,
    parse_region,
    parse_time,
    single_params,
)

__all__ = [
    "ALERT_API_COLUMNS",
    "ALERT_PARAMS",
    "AlertQuery",
    "alert_item",
    "list_alerts",
    "parse_alert_query",
]

#: Query parameters of ``/api/alerts``.
ALERT_PARAMS = ("since", "rule", "region", "limit", "cursor")

#: The alert's own columns, in the item's order (then ``delivery``).
ALERT_API_COLUMNS: tuple[str, ...] = (*ALERT_FIELDS, "stored_at")
_DELIVERY_COLUMNS = (
    "delivery_status",
    "attempts",
    "last_error",
    "delivered_at",
    "next_attempt_at",
)
_BAD_CURSOR = "cursor is not valid; use next_cursor from a response"
#: An alert id as a cursor carries it: rule:subject, no control characters.
_ALERT_ID = re.compile(r"^[a-z]+:[^\x00-\x1f\x7f]{1,500}$")


@dataclass(frozen=True)
class AlertQuery:
    """Filters and page of ``/api/alerts`` (newest detected first)."""

    since: datetime | None = None
    rule: str | None = None
    region: str | None = None
    limit: int = API_DEFAULT_LIMIT
    after: tuple[datetime, str] | None = None  # keyset: (detected_at, id) of the last


def parse_alert_query(params: Mapping[str, Any]) -> AlertQuery:
    """Validate the query string of ``/api/alerts``; raises :class:`BadRequest`."""
    p = single_params(params, ALERT_PARAMS)
    rule = p.get("rule")
    if rule is not None and rule not in RULES:
        raise BadRequest(f"rule must be one of: {', '.join(RULES)}")
    after: tuple[datetime, str] | None = None
    if "cursor" in p:
        values = decode_cursor(p["cursor"])
        # A NUL cannot be sent to PostgreSQL in a string (psycopg2 ValueError).
        if (
            len(values) != 2
            or not all(isinstance(v, str) and v and "\x00" not in v for v in values)
            or not _ALERT_ID.match(values[1])
        ):
            raise BadRequest(_BAD_CURSOR)
        try:
            after = (parse_time("cursor", values[0]), values[1])
        except BadRequest:
            raise BadRequest(_BAD_CURSOR) from None
    return AlertQuery(
        since=parse_time("since", p["since"]) if "since" in p else None,
        rule=rule,
        region=parse_region(p["region"]) if "region" in p else None,
        limit=parse_limit(p.get("limit")),
        after=after,
    )


def alert_item(row: RowMapping | Mapping[str, Any]) -> dict[str, Any]:
    """One item of the page: the alert's fields and its ``delivery``."""
    item = {name: jsonable(row[name]) for name in ALERT_API_COLUMNS}
    item["delivery"] = {
        "status": row["delivery_status"],
        "attempts": int(row["attempts"]),
        "last_error": row["last_error"],
        "delivered_at": jsonable(row["delivered_at"]),
        "next_attempt_at": jsonable(row["next_attempt_at"]),
    }
    return item


def list_alerts(conn: Connection, schema: str, q: AlertQuery) -> dict[str, Any]:
    """``{"items": [...], "next_cursor": str | None}`` of the alerts matching ``q``."""
    where: list[str] = []
    params: dict[str, Any] = {"limit": q.limit + 1}
    if q.since is not None:
        where.append("detected_at >= :since")
        params["since"] = q.since
    if q.rule is not None:
        where.append("rule = :rule")
        params["rule"] = q.rule
    if q.region is not None:
        where.append("region = :region")
        params["region"] = q.region
    if q.after is not None:
        where.append("(detected_at, id) < (:after_time, :after_id)")
        params["after_time"], params["after_id"] = q.after
    columns = ", ".join((*ALERT_API_COLUMNS, *_DELIVERY_COLUMNS))
    sql = (
        f"SELECT {columns} FROM {qualified_text(schema, 'alerts')}"
        + (f" WHERE {' AND '.join(where)}" if where else "")
        + " ORDER BY detected_at DESC, id DESC LIMIT :limit"
    )
    rows = conn.execute(text(sql), params).mappings().all()
    next_cursor = None
    if len(rows) > q.limit:
        last = rows[q.limit - 1]
        next_cursor = encode_cursor([jsonable(last["detected_at"]), last["id"]])
    return {
        "items": [alert_item(r) for r in rows[: q.limit]],
        "next_cursor": next_cursor,
    }
