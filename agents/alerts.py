"""The alerts sink agent (alerts topic -> ``alerts`` table) and the webhook loop.

``store_alerts`` receives the alerts topic in batches (``receive_batches``),
inserts each alert once (``ON CONFLICT (id) DO NOTHING``: the first detection is
kept), dead-letters a record that is not a valid ``Alert`` (kind ``schema``) or
that the database refuses (``sink_rejected``), and acks the batch only after the
commit and the broker's receipt of the dead letters. New alerts are counted by
rule and, with ``ALERT_WEBHOOK_URL`` set, wake this worker's delivery loop
(``deliver_alerts``, :class:`streamapp.alerts.webhook.WebhookOutbox`).

Example (what the agent does with one received batch)::

    stored = await store_alert_batch(received, sink)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

from faust.types import StreamT

from agents.store import dead_letter_message, dead_letter_of, ensure_schema
from models.records import DeadLetter
from streamapp.alerts.metrics import count_stored
from streamapp.alerts.webhook import WebhookOutbox
from streamapp.app import app, settings
from streamapp.delivery import deliver
from streamapp.exceptions import InvalidRecord
from streamapp.faust_ext import Received, Record, receive_batches
from streamapp.metrics import observe_sink_batch
from streamapp.overlap import InFlight
from streamapp.sinks import AlertSink, Item
from streamapp.sinks.alerts import alert_row, decode_alert
from streamapp.topics import alerts_topic

__all__ = [
    "decode_alert_batch",
    "deliver_alerts",
    "outbox",
    "store_alert_batch",
    "store_alerts",
]

log = logging.getLogger(__name__)

#: This worker's delivery loop (None: no ALERT_WEBHOOK_URL, alerts are stored 'off').
outbox: WebhookOutbox | None = (
    WebhookOutbox(settings) if settings.alert_webhook_url else None
)


def decode_alert_batch(
    records: Sequence[Record],
) -> tuple[list[Item], list[DeadLetter]]:
    """The rows of a batch of alerts-topic records, and dead letters for the rest."""
    items: list[Item] = []
    letters: list[DeadLetter] = []
    for record in records:
        try:
            alert = decode_alert(record.value)
        except InvalidRecord as exc:
            exc.detail = {"stage": "alert_sink"}
            letters.append(dead_letter_of(record, exc))
            continue
        items.append(Item(alert_row(alert), ref=record))
    return items, letters


async def store_alert_batch(received: Received, sink: AlertSink) -> int:
    """Insert a batch of alerts once each, dead-letter what cannot be stored, then
    ack the batch; returns how many alerts were new. Nothing is acked if anything
    raises (Kafka redelivers; the insert is idempotent)."""
    items, letters = decode_alert_batch(received.records)
    for item in items:
        sink.add(item)
    started = time.monotonic()
    rejected = await sink.flush()
    observe_sink_batch("alerts", len(items), time.monotonic() - started)
    for refused in rejected:
        letters.append(
            dead_letter_of(
                refused.item.ref,
                InvalidRecord(
                    "sink_rejected",
                    refused.error,
                    {
                        "stage": "alert_sink",
                        "table": "alerts",
                        "sqlstate": refused.sqlstate,
                    },
                ),
            )
        )
    if letters:
        await deliver([dead_letter_message(letter) for letter in letters])
    received.ack()
    new = count_stored(sink.take_inserted())
    if new and outbox is not None:
        outbox.wake()
    return new


@app.agent(alerts_topic, name="store_alerts")
async def store_alerts(stream: StreamT[Any]) -> None:
    """Store alerts into ``alerts`` in batches; ack after the commit."""
    if not await ensure_schema():
        return
    sink = AlertSink(settings, webhook=outbox is not None)
    try:
        async with InFlight() as in_flight:
            async for received in receive_batches(
                stream,
                max_records=settings.sink_batch_size,
                within=settings.sink_batch_seconds,
            ):
                await in_flight.submit(store_alert_batch(received, sink))
    finally:
        sink.close()


@app.task
async def deliver_alerts() -> None:
    """POST undelivered alerts to ``ALERT_WEBHOOK_URL`` until the worker stops."""
    if outbox is None:
        return
    if not await ensure_schema():
        return
    await outbox.run()
