"""The alerts connector: inserts ``alerts`` rows once (the first detection is kept).

A record of the alerts topic is decoded and checked by :func:`decode_alert` (a
``models.alerts.Alert`` whose id is ``rule:subject``, a known rule, a region
cell); :func:`alert_row` makes its row, and :class:`AlertSink` writes a batch with
``INSERT ... ON CONFLICT (id) DO NOTHING RETURNING id, rule``: a revision of an
alert already stored changes nothing, and the sink remembers which alerts were
new (:meth:`AlertSink.take_inserted`, once the transaction committed) for the
metrics and the webhook outbox.

Example::

    sink = AlertSink(settings, webhook=bool(settings.alert_webhook_url))
    sink.add(Item(alert_row(decode_alert(message_bytes))))
    rejected = await sink.flush()  # one transaction, in a worker thread
    new = sink.take_inserted()     # [(alert id, rule), ...] stored for the first time
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from psycopg2 import sql
from psycopg2.extras import execute_values

from models.alerts import ALERT_FIELDS, RULES, Alert
from models.regions import cell_bounds
from streamapp.db import column_list, qualified, transaction
from streamapp.exceptions import InvalidRecord
from streamapp.settings import Settings
from streamapp.sinks.base import Item, Sink

__all__ = [
    "ALERT_TABLE_COLUMNS",
    "AlertSink",
    "alert_row",
    "build_alert_insert",
    "decode_alert",
]

#: Columns of ``alerts`` written by the sink, in statement order (then
#: ``next_attempt_at``: the transaction's ``now()`` when pending, else NULL).
ALERT_TABLE_COLUMNS: tuple[str, ...] = (*ALERT_FIELDS, "delivery_status")

_TEXT_FIELDS = ("id", "rule", "subject", "region", "summary")
_OPTIONAL_TEXT = ("event_id", "place", "url", "pager")
_OPTIONAL_FLOAT = ("magnitude", "trailing_mean", "factor")


def _invalid(message: str) -> InvalidRecord:
    return InvalidRecord("schema", f"alerts-topic message is not an Alert: {message}")


def decode_alert(value: bytes | None) -> Alert:
    """The :class:`~models.alerts.Alert` of an alerts-topic value, checked.

    Raises :class:`InvalidRecord` (kind ``schema``) with the reason when the value
    is not an Alert's JSON, or its id is not ``rule:subject``, its rule unknown,
    its region not a cell, a number not finite or a time without a zone.
    """
    if value is None:
        raise _invalid("the message has no value (a tombstone)")
    try:
        alert = Alert.loads(value)
    except Exception as exc:  # any decode failure is the record's fault
        raise _invalid(f"{type(exc).__name__}: {exc}") from None
    for name in _TEXT_FIELDS:
        if not isinstance(getattr(alert, name), str) or not getattr(alert, name):
            raise _invalid(f"{name} must be a non-empty string")
    for name in _OPTIONAL_TEXT:
        if getattr(alert, name) is not None and not isinstance(
            getattr(alert, name), str
        ):
            raise _invalid(f"{name} must be a string or null")
    if alert.rule not in RULES:
        raise _invalid(f"rule {alert.rule!r} is not one of {', '.join(RULES)}")
    if alert.id != f"{alert.rule}:{alert.subject}":
        raise _invalid(f"id {alert.id!r} is not rule:subject")
    try:
        cell_bounds(alert.region)
    except ValueError as exc:
        raise _invalid(str(exc)) from None
    for name in _OPTIONAL_FLOAT:
        number = getattr(alert, name)
        if number is not None and (
            isinstance(number, bool)
            or not isinstance(number, int | float)
            or not math.isfinite(number)
        ):
            raise _invalid(f"{name} must be a finite number or null")
    if alert.hour_count is not None and (
        isinstance(alert.hour_count, bool)
        or not isinstance(alert.hour_count, int)
        or alert.hour_count < 0
    ):
        raise _invalid("hour_count must be a whole number >= 0 or null")
    if alert.tsunami is not None and not isinstance(alert.tsunami, bool):
        raise _invalid("tsunami must be true, false or null")
    for name in ("occurred_at", "detected_at"):
        when = getattr(alert, name)
        if not isinstance(when, datetime) or when.tzinfo is None:
            raise _invalid(f"{name} must be an ISO-8601 time with a zone")
    return alert


def alert_row(alert: Alert) -> dict[str, Any]:
    """The ``alerts`` row of a checked alert (without the delivery status)."""
    return {
        name: getattr(alert, name)
        for name in ALERT_TABLE_COLUMNS
        if name != "delivery_status"
    }


def build_alert_insert(settings: Settings) -> sql.Composed:
    """``INSERT INTO "schema"."alerts" ... ON CONFLICT (id) DO NOTHING
    RETURNING id, rule``."""
    return sql.SQL(
        "INSERT INTO {table} ({columns}, {next_attempt}) VALUES %s"
        " ON CONFLICT ({id}) DO NOTHING RETURNING {id}, {rule}"
    ).format(
        table=qualified(settings.postgres_schema, "alerts"),
        columns=column_list(ALERT_TABLE_COLUMNS),
        next_attempt=sql.Identifier("next_attempt_at"),
        id=sql.Identifier("id"),
        rule=sql.Identifier("rule"),
    )


class AlertSink(Sink):
    """Inserts ``alerts`` rows; an alert already stored (same id) is left as it is.

    ``webhook`` says whether a webhook URL is configured: new alerts are stored
    ``pending`` (due now) for the delivery loop, else ``off``.
    """

    name = "alert-sink"

    def __init__(self, settings: Settings, *, webhook: bool, **kwargs: Any) -> None:
        super().__init__(settings, **kwargs)
        self.insert = build_alert_insert(settings)
        self.status = "pending" if webhook else "off"
        placeholders = ", ".join(["%s"] * len(ALERT_TABLE_COLUMNS))
        self.template = f"({placeholders}, {'now()' if webhook else 'NULL'})"
        self._lock = threading.Lock()
        self._inserted: list[tuple[str, str]] = []

    def values(self, row: Mapping[str, Any]) -> tuple[Any, ...]:
        """The values of a row in :data:`ALERT_TABLE_COLUMNS` order."""
        return (
            *(row.get(name) for name in ALERT_TABLE_COLUMNS[:-1]),
            self.status,
        )

    def write_batch(self, items: Sequence[Item]) -> None:
        rows = [self.values(item.row) for item in items]
        if not rows:
            return
        with transaction(
            self.settings, engine=self.engine, action="insert into alerts"
        ) as cur:
            inserted = execute_values(
                cur,
                self.insert,
                rows,
                template=self.template,
                page_size=len(rows),
                fetch=True,
            )
        with self._lock:
            self._inserted.extend((str(i), str(r)) for i, r in inserted)

    def take_inserted(self) -> list[tuple[str, str]]:
        """``(id, rule)`` of the alerts committed for the first time since the last
        call (a replayed or revised alert is not among them)."""
        with self._lock:
            out, self._inserted = self._inserted, []
        return out
