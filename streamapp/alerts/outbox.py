"""The webhook outbox over the ``alerts`` table: claim due alerts, record outcomes.

Every worker runs the delivery loop; they share the table safely. A claim is one
short transaction: ``UPDATE ... SET leased_until = now() + lease WHERE id IN
(SELECT ... FOR UPDATE SKIP LOCKED)``, so two workers never claim the same
alert, and the HTTP requests happen outside any transaction. A worker that dies
mid-round leaves a lease that expires; the alert is then due again for anyone.
All functions here block (run them with ``asyncio.to_thread``).

Example::

    for alert in claim_due(settings, limit=10, lease_seconds=120):
        ...  # POST it
        record_delivered(settings, alert["id"], attempts=1)
"""

from __future__ import annotations

from typing import Any

from psycopg2 import sql

from models.alerts import ALERT_FIELDS
from streamapp.db import column_list, qualified, transaction
from streamapp.settings import Settings

__all__ = [
    "OUTBOX_COLUMNS",
    "claim_due",
    "outbox_state",
    "record_delivered",
    "record_failed",
]

#: What a claim returns of each alert (its fields, for the JSON payload).
OUTBOX_COLUMNS: tuple[str, ...] = (*ALERT_FIELDS, "attempts")

_UNDELIVERED = sql.SQL("delivery_status IN ('pending', 'failing')")


def _table(settings: Settings) -> sql.Identifier:
    return qualified(settings.postgres_schema, "alerts")


def claim_due(
    settings: Settings, *, limit: int, lease_seconds: float
) -> list[dict[str, Any]]:
    """Lease up to ``limit`` undelivered alerts whose next attempt is due (oldest
    due first) for ``lease_seconds``; returns their :data:`OUTBOX_COLUMNS`."""
    query = sql.SQL(
        "UPDATE {table} SET leased_until = now() + %s * interval '1 second'"
        " WHERE id IN (SELECT id FROM {table}"
        " WHERE {undelivered} AND next_attempt_at <= now()"
        " AND (leased_until IS NULL OR leased_until <= now())"
        " ORDER BY next_attempt_at, id LIMIT %s FOR UPDATE SKIP LOCKED)"
        " RETURNING {columns}"
    ).format(
        table=_table(settings),
        undelivered=_UNDELIVERED,
        columns=column_list(OUTBOX_COLUMNS),
    )
    with transaction(settings, action="claiming alerts to deliver") as cur:
        cur.execute(query, (lease_seconds, limit))
        rows = cur.fetchall()
    alerts = [dict(zip(OUTBOX_COLUMNS, row, strict=True)) for row in rows]
    alerts.sort(key=lambda a: (a["detected_at"], a["id"]))
    return alerts


def record_delivered(settings: Settings, alert_id: str, *, attempts: int) -> None:
    """Mark an alert delivered (now), adding this round's ``attempts``."""
    query = sql.SQL(
        "UPDATE {table} SET delivery_status = 'delivered', delivered_at = now(),"
        " attempts = attempts + %s, last_error = NULL, next_attempt_at = NULL,"
        " leased_until = NULL WHERE id = %s"
    ).format(table=_table(settings))
    with transaction(settings, action="recording an alert's delivery") as cur:
        cur.execute(query, (attempts, alert_id))


def record_failed(
    settings: Settings,
    alert_id: str,
    *,
    attempts: int,
    error: str,
    retry_in: float,
) -> None:
    """Mark an alert failing: ``attempts`` more, the last error, and the next round
    ``retry_in`` seconds from now (an alert delivered meanwhile stays delivered)."""
    query = sql.SQL(
        "UPDATE {table} SET delivery_status = 'failing',"
        " attempts = attempts + %s, last_error = %s,"
        " next_attempt_at = now() + %s * interval '1 second', leased_until = NULL"
        " WHERE id = %s AND delivery_status <> 'delivered'"
    ).format(table=_table(settings))
    with transaction(settings, action="recording an alert's failed delivery") as cur:
        cur.execute(query, (attempts, error, retry_in, alert_id))


def outbox_state(settings: Settings) -> tuple[int, float | None]:
    """``(alerts awaiting delivery, seconds until the next is due or None)``; the
    seconds may be negative (due already) and count a current lease."""
    query = sql.SQL(
        "SELECT count(*), EXTRACT(EPOCH FROM min(GREATEST(next_attempt_at,"
        " coalesce(leased_until, next_attempt_at))) - now())"
        " FROM {table} WHERE {undelivered}"
    ).format(table=_table(settings), undelivered=_UNDELIVERED)
    with transaction(settings, action="reading the alerts outbox") as cur:
        cur.execute(query)
        row = cur.fetchone()
    if row is None:
        return 0, None
    count, due_in = row
    return int(count), (float(due_in) if due_in is not None else None)
