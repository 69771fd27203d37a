"""The batch receive path: delivery per partition fetch, take, ack as a unit."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
from faust.types import TP

from streamapp.app import app
from streamapp.faust_ext import Batch, BatchReceiver, GaplessConsumer, Received
from tests.unit.streamapp.faust_ext.test_consumer import (
    _Fetcher,
    fresh_consumer,
    patch_fetch,
)

RAW = TP("raw", 0)
RAW_1 = TP("raw", 1)


def record(offset: int, partition: int = 0) -> SimpleNamespace:
    return SimpleNamespace(
        topic="raw", partition=partition, offset=offset, key=b"k", value=b"v"
    )


def drain_to_receiver(
    consumer: GaplessConsumer,
    monkeypatch: pytest.MonkeyPatch,
    fetched: dict[TP, list[Any]],
    receiver: BatchReceiver,
) -> list[int]:
    """One fetch through ``_drain_messages``; the offsets queued for ``receiver``."""
    fetcher = _Fetcher()

    async def fetch(wait: float) -> Any:
        fetcher._stopped.flag = True
        return fetched, None, consumer.app.consumer_generation_id

    async def callback(message: Any) -> None:
        raise AssertionError("a record of a batch topic reached the conductor")

    patch_fetch(consumer, monkeypatch, fetch)
    monkeypatch.setattr(consumer, "callback", callback)
    monkeypatch.setattr(consumer, "_commit_every", None)
    consumer.add_receiver(receiver)
    try:
        asyncio.run(consumer._drain_messages(fetcher))  # type: ignore[arg-type]
    finally:
        consumer.remove_receiver(receiver)
    queued: list[int] = []
    while not receiver.queue.empty():
        queued.extend(r.offset for r in receiver.queue.get_nowait().records)
    return queued


def test_a_fetch_reaches_the_receiver_one_batch_per_partition(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    consumer = fresh_consumer()
    consumer.suspend_flow.clear()
    consumer._read_offset[RAW] = None
    consumer._read_offset[RAW_1] = None
    receiver = BatchReceiver(app, ["raw"])
    fetched = {RAW: [record(o) for o in (0, 1, 2)], RAW_1: [record(7, 1)]}
    queued = drain_to_receiver(consumer, monkeypatch, fetched, receiver)
    assert queued == [0, 1, 2, 7]
    assert consumer._read_offset[RAW] == 2
    assert consumer._read_offset[RAW_1] == 7
    assert consumer.receivers == {}


def test_the_batch_path_drops_what_the_per_message_path_drops(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Committed records and acked ones are dropped; records a seek fetched before
    it updated the read offset are delivered (the broker-restart loss)."""
    consumer = fresh_consumer()
    consumer.suspend_flow.clear()
    consumer._committed_offset[RAW] = 1272
    consumer._read_offset[RAW] = 1467  # stale: the seek has not updated it yet
    consumer._acked_index[RAW].add(1273)
    receiver = BatchReceiver(app, ["raw"])
    fetched = {RAW: [record(o) for o in (1270, 1272, 1273, 1274)]}
    assert drain_to_receiver(consumer, monkeypatch, fetched, receiver) == [1272, 1274]
    assert consumer._read_offset[RAW] == 1274


def test_a_batch_overtaken_by_a_rebalance_leaves_the_read_offset_to_the_seek(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    consumer = fresh_consumer()
    consumer.suspend_flow.clear()
    consumer._read_offset[RAW] = 10
    generation = app.consumer_generation_id
    receiver = BatchReceiver(app, ["raw"], maxsize=1)

    async def put(batch: Batch) -> None:
        # While the put waited for room: a rebalance, and the seek to committed.
        monkeypatch.setattr(app, "consumer_generation_id", generation + 1)
        consumer._read_offset[RAW] = 3

    monkeypatch.setattr(receiver, "put", put)
    drain_to_receiver(consumer, monkeypatch, {RAW: [record(11)]}, receiver)
    assert consumer._read_offset[RAW] == 3


def test_ack_batch_acks_each_offset_once_and_not_below_the_commit() -> None:
    consumer = fresh_consumer()
    consumer._committed_offset[RAW] = 5
    consumer._acked_index[RAW].add(6)
    consumer._acked[RAW].append(6)
    batch = Batch(RAW, [record(o) for o in (4, 5, 6, 7)], generation=0)
    assert consumer.ack_batch(batch) == 2  # 4 is committed, 6 acked already
    assert sorted(consumer._acked[RAW]) == [5, 6, 7]
    assert consumer.ack_batch(batch) == 0
    assert consumer._new_offset(RAW) == 8


def test_received_acks_every_batch_and_lists_records_in_order() -> None:
    consumer = fresh_consumer()
    consumer._committed_offset[RAW] = 0
    consumer._committed_offset[RAW_1] = 0
    batches = [
        Batch(RAW, [record(0), record(1)], 0),
        Batch(RAW_1, [record(0, 1)], 0),
    ]
    received = Received(consumer, batches)
    assert [(r.partition, r.offset) for r in received.records] == [
        (0, 0),
        (0, 1),
        (1, 0),
    ]
    assert len(received) == 3
    assert received.ack() == 3
    assert consumer._new_offset(RAW) == 2
    assert consumer._new_offset(RAW_1) == 1


def _fill(receiver: BatchReceiver, *batches: Batch) -> None:
    for batch in batches:
        receiver.queue.put_nowait(batch)


def test_take_gathers_up_to_max_records_and_drops_stale_batches() -> None:
    consumer = fresh_consumer()
    consumer.suspend_flow.clear()
    now = app.consumer_generation_id
    receiver = BatchReceiver(app, ["raw"])
    _fill(
        receiver,
        Batch(RAW, [record(0)], now - 1),  # fetched before a rebalance
        Batch(RAW, [record(1), record(2)], now),
        Batch(RAW, [record(3), record(4)], now),
        Batch(RAW, [record(5)], now),
    )

    async def take() -> list[Batch]:
        return await receiver.take(max_records=3, within=5.0)

    taken = asyncio.run(take())
    assert [r.offset for b in taken for r in b.records] == [1, 2, 3, 4]
    assert receiver.dropped == 1
    assert receiver.queue.qsize() == 1


def test_take_returns_what_arrived_within_the_wait() -> None:
    consumer = fresh_consumer()
    consumer.suspend_flow.clear()
    receiver = BatchReceiver(app, ["raw"])
    _fill(receiver, Batch(RAW, [record(0)], app.consumer_generation_id))

    async def take() -> tuple[list[Batch], float]:
        loop = asyncio.get_running_loop()
        started = loop.time()
        taken = await receiver.take(max_records=1000, within=0.05)
        return taken, loop.time() - started

    taken, took = asyncio.run(take())
    assert len(taken) == 1
    assert took < 2.0


def test_take_drops_batches_while_a_rebalance_suspends_the_flow() -> None:
    consumer = fresh_consumer()
    receiver = BatchReceiver(app, ["raw"])
    now = app.consumer_generation_id
    _fill(receiver, Batch(RAW, [record(0)], now), Batch(RAW, [record(1)], now))
    consumer.suspend_flow.set()
    try:
        assert receiver._fresh(receiver.queue.get_nowait()) is False
    finally:
        consumer.suspend_flow.clear()
    assert receiver._fresh(receiver.queue.get_nowait()) is True
    receiver.clear()
    assert receiver.dropped == 1


def _drain_fan_out(
    consumer: GaplessConsumer,
    monkeypatch: pytest.MonkeyPatch,
    fetched: dict[TP, list[Any]],
    receivers: list[BatchReceiver],
) -> None:
    for extra in receivers[1:]:
        consumer.add_receiver(extra)
    try:
        drain_to_receiver_keep(consumer, monkeypatch, fetched, receivers[0])
    finally:
        for extra in receivers[1:]:
            consumer.remove_receiver(extra)


def drain_to_receiver_keep(
    consumer: GaplessConsumer,
    monkeypatch: pytest.MonkeyPatch,
    fetched: dict[TP, list[Any]],
    receiver: BatchReceiver,
) -> None:
    """One fetch through ``_drain_messages``; the batches stay queued."""
    fetcher = _Fetcher()

    async def fetch(wait: float) -> Any:
        fetcher._stopped.flag = True
        return fetched, None, consumer.app.consumer_generation_id

    patch_fetch(consumer, monkeypatch, fetch)
    monkeypatch.setattr(consumer, "_commit_every", None)
    consumer.add_receiver(receiver)
    try:
        asyncio.run(consumer._drain_messages(fetcher))  # type: ignore[arg-type]
    finally:
        consumer.remove_receiver(receiver)


def test_every_receiver_of_a_topic_gets_each_batch_and_the_last_ack_counts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    consumer = fresh_consumer()
    consumer.suspend_flow.clear()
    consumer._read_offset[RAW] = None
    consumer._committed_offset[RAW] = 0
    store = BatchReceiver(app, ["raw"])
    activity = BatchReceiver(app, ["raw"])
    fetched = {RAW: [record(o) for o in (0, 1, 2)]}
    _drain_fan_out(consumer, monkeypatch, fetched, [store, activity])
    assert consumer.receivers == {}
    first = store.queue.get_nowait()
    second = activity.queue.get_nowait()
    assert first is second
    assert [r.offset for r in first.records] == [0, 1, 2]
    assert first.pending == 2
    assert Received(consumer, [first]).ack() == 0  # the other has not acked yet
    assert consumer._new_offset(RAW) is None
    assert list(consumer._acked[RAW]) == []
    assert Received(consumer, [second]).ack() == 3
    assert consumer._new_offset(RAW) == 3


def test_a_batch_one_receiver_drops_as_stale_stays_unacked() -> None:
    consumer = fresh_consumer()
    consumer.suspend_flow.clear()
    consumer._committed_offset[RAW] = 0
    now = app.consumer_generation_id
    store = BatchReceiver(app, ["raw"])
    activity = BatchReceiver(app, ["raw"])
    stale = Batch(RAW, [record(0), record(1)], now - 1, pending=2)
    _fill(store, stale)
    _fill(activity, stale)
    # One agent took it before the rebalance (and acks it); the other finds it
    # stale now and drops it: the records stay unacked, fetched again.
    assert Received(consumer, [stale]).ack() == 0
    assert activity._fresh(activity.queue.get_nowait()) is False
    assert consumer._new_offset(RAW) is None
    assert list(consumer._acked[RAW]) == []


def test_a_received_acks_once_however_often_it_is_called() -> None:
    consumer = fresh_consumer()
    consumer._committed_offset[RAW] = 0
    batch = Batch(RAW, [record(0)], 0, pending=2)
    received = Received(consumer, [batch])
    assert received.ack() == 0
    assert received.ack() == 0  # the same agent again: still one ack pending
    assert batch.pending == 1
    assert consumer._new_offset(RAW) is None


def test_removing_one_receiver_keeps_the_others() -> None:
    consumer = fresh_consumer()
    first = BatchReceiver(app, ["raw", "clean"])
    second = BatchReceiver(app, ["clean"])
    consumer.add_receiver(first)
    consumer.add_receiver(second)
    consumer.add_receiver(second)  # once only
    assert consumer.receivers == {"raw": [first], "clean": [first, second]}
    consumer.remove_receiver(first)
    assert consumer.receivers == {"clean": [second]}
    consumer.remove_receiver(second)
    assert consumer.receivers == {}
