"""Unit tests of the activity agents (no Kafka, no database: fakes)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from aiokafka.partitioner import DefaultPartitioner

import agents.activity as activity
from agents.activity import activity_events, aggregate_batch, route_batch, surge_alerts
from models.alerts import Alert
from streamapp.activity import RegionWindows, parse_contribution_value
from streamapp.activity.state import HourChange
from streamapp.activity.windows import HOUR_MS, ms_of_iso
from streamapp.delivery import Outgoing
from streamapp.sinks import Item, Rejected
from streamapp.topics import activity_topic, alerts_topic
from tests.support.sinks import FakeMessage, FakeReceived

HOUR = ms_of_iso("2026-12-08T03:00:00Z")


def clean(event_id: str, **changes: Any) -> bytes:
    quake = {
        "id": event_id,
        "time": "2026-12-08T03:12:00Z",
        "updated": "2026-12-08T03:20:00Z",
        "latitude": 35.7,
        "longitude": 139.7,
        "depth": 10.0,
        "magnitude": 4.0,
        "place": "somewhere",
        "url": "https://example.test",
        "tsunami": None,
        "alert": None,
    }
    quake.update(changes)
    return orjson.dumps(quake)


def records(*values: bytes | None, topic: str = "clean") -> list[FakeMessage]:
    return [FakeMessage(topic, 0, i, b"k", v) for i, v in enumerate(values)]


def test_route_batch_keys_each_event_by_region_and_adds_event_alerts() -> None:
    out, skipped = route_batch(
        records(
            clean("quiet"),
            clean("big", magnitude=6.8),
            clean("wave", tsunami=True),
            clean("red", alert="red"),
            clean("green", alert="green", magnitude=5.9),
            b"not json",
            None,
        )
    )
    assert skipped == 2
    moves = [m for m in out if m.topic is activity_topic]
    assert [m.key for m in moves] == [b"30N130E"] * 5
    parsed = [parse_contribution_value("30N130E", m.value) for m in moves]
    assert [p.event_id for p in parsed if p is not None] == [
        "quiet",
        "big",
        "wave",
        "red",
        "green",
    ]
    alerts = [m for m in out if m.topic is alerts_topic]
    assert [m.key for m in alerts] == [
        b"magnitude:big",
        b"tsunami:wave",
        b"pager:red",
    ]
    assert Alert.loads(alerts[0].value).magnitude == 6.8


def test_the_table_changelog_is_co_partitioned_with_the_activity_topic() -> None:
    """The table's changelog partition of ``region/event`` is the partition the
    producer picks for the activity message keyed ``region`` (murmur2 both)."""
    partitioner = DefaultPartitioner()
    n = activity_events.changelog_partitions
    assert n == activity_topic.partitions
    every = list(range(n))
    seen = set()
    for lat in range(-85, 90, 10):
        for lon in range(-175, 180, 10):
            out, _ = route_batch(
                records(clean("x", latitude=float(lat), longitude=float(lon)))
            )
            key = out[0].key
            assert key is not None
            table_key = f"{key.decode()}/x"
            # The bytes the table's changelog hashes are the topic key's bytes.
            assert activity_events.partition_key(table_key) == key
            want = partitioner(key, every, every)
            assert activity_events.partition_for_key(table_key) == want
            seen.add(want)
    assert seen == set(every)


def _hour(before: int, after: int, trailing: list[int] | None) -> HourChange:
    return HourChange("30N130E", HOUR, before, after, trailing)


def test_a_surge_alerts_when_the_hour_crosses_the_rule_only() -> None:
    now = datetime(2026, 12, 8, 4, tzinfo=UTC)
    quiet = [0] * 23 + [1]
    (alert,) = surge_alerts([_hour(4, 6, quiet)], now)
    assert alert.id == "surge:30N130E:2026-12-08T03:00:00Z"
    assert alert.hour_count == 6
    assert surge_alerts([_hour(6, 7, quiet)], now) == []  # alerted already
    assert surge_alerts([_hour(0, 4, quiet)], now) == []  # below the minimum
    assert surge_alerts([_hour(0, 9, None)], now) == []  # trailing day unknown
    busy = [2] * 24  # mean 2: 5 x 2 = 10 needed
    assert surge_alerts([_hour(0, 9, busy)], now) == []


class FakeTable(dict[str, Any]):
    """The table: its entries, and how many batches were written to it."""

    def __init__(self) -> None:
        super().__init__()
        self.sent = 0


async def fake_write_entries(
    table: FakeTable, sets: dict[str, Any], deletes: list[str]
) -> int:
    table.update(sets)
    for key in deletes:
        table.pop(key, None)
    table.sent += 1
    return 1


class FakeSink:
    def __init__(self) -> None:
        self.items: list[Item] = []
        self.flushed: list[list[Item]] = []

    def add(self, item: Item) -> None:
        self.items.append(item)

    async def flush(self) -> list[Rejected]:
        self.flushed.append(self.items)
        self.items = []
        return []


def activity_records(*events: tuple[str, int]) -> list[FakeMessage]:
    out = []
    for i, (event_id, minute) in enumerate(events):
        value = orjson.dumps([event_id, HOUR + minute * 60_000, 4.0, 10.0, 1])
        out.append(FakeMessage("activity", 0, i, b"30N130E", value))
    return out


def test_aggregate_batch_alerts_then_writes_then_acks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    order: list[str] = []
    delivered: list[Outgoing] = []

    async def deliver(messages: list[Outgoing]) -> int:
        order.append("deliver")
        delivered.extend(messages)
        return 1

    monkeypatch.setattr(activity, "deliver", deliver)
    monkeypatch.setattr(activity, "write_entries", fake_write_entries)
    table = FakeTable()
    sink = FakeSink()
    state = RegionWindows()
    quiet = FakeReceived(activity_records(("q", -120)), [])
    asyncio.run(aggregate_batch(quiet, state, table, sink))  # type: ignore[arg-type]
    assert quiet.acked == [0] and delivered == []
    burst = FakeReceived(activity_records(*[(f"b{i}", i) for i in range(6)]), [])
    update = asyncio.run(aggregate_batch(burst, state, table, sink))  # type: ignore[arg-type]
    assert burst.acked == list(range(6))
    assert [m.key for m in delivered] == [b"surge:30N130E:2026-12-08T03:00:00Z"]
    assert set(table) == {"30N130E/q"} | {f"30N130E/b{i}" for i in range(6)}
    assert table.sent == 2
    windows = {item.row["key"]: item.row for item in sink.flushed[-1]}
    assert len(windows[("30N130E", "1h", HOUR)]["contributions"]) == 6
    assert len(windows[("30N130E", "1d", HOUR - 3 * HOUR_MS)]["contributions"]) == 7
    assert {(h.before, h.after) for h in update.hours} == {(0, 6)}
    # The same batch again (a redelivery): nothing changes, nothing alerts.
    again = FakeReceived(activity_records(*[(f"b{i}", i) for i in range(6)]), [])
    asyncio.run(aggregate_batch(again, state, table, sink))  # type: ignore[arg-type]
    assert len(delivered) == 1 and again.acked == list(range(6))


def test_a_failed_batch_is_not_acked_and_the_index_is_reloaded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class BrokenSink(FakeSink):
        async def flush(self) -> list[Rejected]:
            raise RuntimeError("database gone")

    monkeypatch.setattr(activity, "write_entries", fake_write_entries)
    table = FakeTable()
    state = RegionWindows()
    received = FakeReceived(activity_records(("a", 1)), [])
    with pytest.raises(RuntimeError):
        asyncio.run(aggregate_batch(received, state, table, BrokenSink()))  # type: ignore[arg-type]
    assert received.acked == []
    assert state.generation is None
