"""The activity agents: clean topic -> activity topic + alerts; activity -> windows.

Two stages, both on the batch receive path (``receive_batches``):

1. :func:`route_activity` reads the clean topic (besides ``store_quakes``: each
   gets every batch) and produces, per event, its compact contribution keyed by
   its region cell (``models.regions``) to the activity topic, and the event
   rules' alerts (magnitude, tsunami, PAGER orange/red) keyed by alert id to the
   alerts topic; the batch is acked once Kafka has all of them.
2. :func:`aggregate_activity` reads the activity topic and keeps each region's
   events since its horizon in the changelog-backed table :data:`activity_events`
   (``region/event_id -> contribution``; its changelog partition is the region's
   activity partition, so the worker owning a region recovers its windows). Per
   batch it updates the 1-hour and 1-day windows, produces a surge alert when an
   hour crosses the surge rule, upserts the changed windows into ``activity``
   (:class:`~streamapp.sinks.ActivitySink`) and acks once the alerts, the table's
   changelog (:func:`~streamapp.activity.changelog.write_entries`) and the
   database commit are all safe. A redelivered batch changes
   nothing (an event's newest revision replaces its own entry).

Example::

    SOURCE=replay faust -A streamapp worker   # windows appear in ``activity``
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
from faust.types import StreamT

from agents.store import ensure_schema
from models.alerts import PAGER_LEVELS, Alert, event_alerts, surge_alert
from streamapp.activity import (
    EventContribution,
    RegionWindows,
    Update,
    contribution_value,
    parse_contribution_value,
)
from streamapp.activity.changelog import write_entries
from streamapp.activity.state import HourChange, event_of_key
from streamapp.activity.windows import contribution_of
from streamapp.app import app, settings
from streamapp.delivery import Outgoing, deliver
from streamapp.faust_ext import (
    CopartitionedTable,
    Received,
    Record,
    receive_batches,
)
from streamapp.overlap import InFlight
from streamapp.sinks import ActivitySink, Item
from streamapp.sinks.activity import window_row
from streamapp.stats import stats
from streamapp.topics import activity_topic, alerts_topic, clean_topic

__all__ = [
    "ACTIVITY_BATCH",
    "ACTIVITY_WITHIN",
    "WINDOWS_BATCH",
    "WINDOWS_WITHIN",
    "activity_events",
    "aggregate_activity",
    "aggregate_batch",
    "alert_message",
    "route_activity",
    "route_batch",
    "surge_alerts",
]

log = logging.getLogger(__name__)

#: Records received together by the first stage (clean topic).
ACTIVITY_BATCH = 1000
#: How long a partial batch of the first stage waits for more records.
ACTIVITY_WITHIN = 0.25
#: Records received together by the second stage (activity topic): larger, as a
#: window touched by many events of a batch is written once per batch.
WINDOWS_BATCH = 5000
#: How long a partial batch of the second stage waits for more records.
WINDOWS_WITHIN = 1.0


def _region_of_key(key: Any) -> bytes:
    return event_of_key(str(key))[0].encode("utf-8")


#: ``region/event_id -> [time_ms, magnitude, depth_km, updated_ms]``, per region
#: since its horizon; changelog-backed and co-partitioned with the activity topic.
activity_events = CopartitionedTable(
    app,
    name="activity-events",
    partition_key=_region_of_key,
    key_type=str,
    beacon=app.tables.beacon,
    help="Events per region since its horizon (the activity windows' state).",
)
app.tables.add(activity_events)


def alert_message(alert: Alert) -> Outgoing:
    """The alerts-topic message of an alert (keyed by its id)."""
    return Outgoing(alerts_topic, alert.id.encode("utf-8"), alert.dumps())


def _may_alert(quake: dict[str, Any], event: EventContribution) -> bool:
    """Whether an event rule may fire (the rules themselves run only then)."""
    mag = event.magnitude
    if mag is not None and mag >= settings.alert_min_magnitude:
        return True
    pager = quake.get("alert")
    return bool(quake.get("tsunami")) or (
        isinstance(pager, str) and pager.lower() in PAGER_LEVELS
    )


def route_batch(records: Sequence[Record]) -> tuple[list[Outgoing], int]:
    """The activity and alert messages of a batch of clean records, and how many
    records were not events (the sink agent dead-letters those)."""
    out: list[Outgoing] = []
    skipped = 0
    for record in records:
        try:
            quake = orjson.loads(record.value or b"")
        except ValueError:
            quake = None
        event = contribution_of(quake) if isinstance(quake, dict) else None
        if quake is None or event is None:
            skipped += 1
            continue
        out.append(
            Outgoing(
                activity_topic,
                event.region.encode("utf-8"),
                contribution_value(event),
            )
        )
        if _may_alert(quake, event):
            for alert in event_alerts(
                quake, min_magnitude=settings.alert_min_magnitude
            ):
                out.append(alert_message(alert))
    return out, skipped


async def _deliver_and_ack(received: Received, out: list[Outgoing]) -> None:
    await deliver(out)
    received.ack()


@app.agent(clean_topic, name="route_activity")
async def route_activity(stream: StreamT[Any]) -> None:
    """Clean events -> activity topic (by region) and event alerts; ack after."""
    # Batch N+1 is routed while batch N's messages await the broker (InFlight).
    async with InFlight() as in_flight:
        async for received in receive_batches(
            stream, max_records=ACTIVITY_BATCH, within=ACTIVITY_WITHIN
        ):
            out, skipped = route_batch(received.records)
            if skipped:
                log.debug("activity: %d clean record(s) are no event", skipped)
            await in_flight.submit(_deliver_and_ack(received, out))


def surge_alerts(hours: Sequence[HourChange], now: datetime) -> list[Alert]:
    """Surge alerts of the hours whose count crossed the surge rule in a batch."""
    alerts: list[Alert] = []
    for hour in hours:
        if hour.trailing is None:
            continue  # the trailing day is not all in the table: not judged
        start = datetime.fromtimestamp(hour.hour_start_ms / 1000, UTC)

        def judge(count: int, hour: HourChange = hour, start: datetime = start) -> Any:
            return surge_alert(
                hour.region,
                start,
                count,
                hour.trailing or [],
                factor=settings.alert_surge_factor,
                min_count=settings.alert_surge_min_count,
                now=now,
            )

        if judge(hour.before) is None:
            alert = judge(hour.after)
            if alert is not None:
                alerts.append(alert)
    return alerts


async def aggregate_batch(
    received: Received,
    state: RegionWindows,
    table: Any,
    sink: ActivitySink,
) -> Update:
    """Apply a batch of contributions: alerts, table, ``activity``; then ack."""
    generation = app.consumer_generation_id
    if state.generation != generation:
        # A rebalance (or the first batch): the table holds what this worker
        # owns now, recovered from its changelog.
        loaded = state.load(table.items())
        state.generation = generation
        log.info("activity: %d event(s) of the activity table indexed", loaded)
    events: list[EventContribution] = []
    for record in received.records:
        key, value = record.key, record.value
        event = (
            parse_contribution_value(key.decode("utf-8", "replace"), value)
            if key is not None and value is not None
            else None
        )
        if event is not None:
            events.append(event)
    try:
        update = state.apply(events)
        # Alerts first: a crash after them re-sends them (the same ids), never
        # loses one because the table already holds the crossing count.
        alerts = surge_alerts(update.hours, datetime.now(UTC))
        if alerts:
            await deliver([alert_message(alert) for alert in alerts])
            log.info("activity: %d surge alert(s): %s", len(alerts), alerts[0].id)
        # The table's changelog and the database are written at the same time;
        # the batch is acked once both are safe.
        written = asyncio.ensure_future(
            write_entries(table, update.sets, update.deletes)
        )
        try:
            for row in update.rows:
                sink.add(Item(window_row(row.key, row.contributions, merge=row.merge)))
            rejected = await sink.flush()
        finally:
            if not written.done():
                await asyncio.wait((written,))
        written.result()
        stats.incr("activity_windows", len(update.rows) - len(rejected))
        for refused in rejected:
            log.error(
                "activity window %s refused by the database: %s",
                refused.item.row.get("key"),
                refused.error,
            )
    except BaseException:
        state.generation = None  # re-index from the table before the next batch
        raise
    received.ack()
    return update


@app.agent(activity_topic, name="aggregate_activity")
async def aggregate_activity(stream: StreamT[Any]) -> None:
    """Activity topic -> windows in the table and ``activity``; ack after."""
    if not await ensure_schema():
        return
    sink = ActivitySink(settings)
    state = RegionWindows()
    try:
        async for received in receive_batches(
            stream, max_records=WINDOWS_BATCH, within=WINDOWS_WITHIN
        ):
            await aggregate_batch(received, state, activity_events, sink)
    finally:
        sink.close()
