"""Unit tests of the consumer that never commits past an offset it did not ack."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka.errors import IllegalStateError
from faust.types import TP

from streamapp.app import app
from streamapp.faust_ext import GaplessConsumer
from streamapp.faust_ext import consumer as consumer_module

TOPIC_PARTITION = TP("raw", 0)


def fresh_consumer() -> GaplessConsumer:
    consumer = app.consumer
    assert isinstance(consumer, GaplessConsumer)
    consumer.start_offsets.clear()
    consumer._acked.clear()
    consumer._acked_index.clear()
    consumer._committed_offset.clear()
    consumer._gap.clear()
    consumer.holes.clear()
    return consumer


def test_contiguous_acks_commit_to_the_next_offset() -> None:
    consumer = fresh_consumer()
    consumer._committed_offset[TOPIC_PARTITION] = 42
    consumer._acked[TOPIC_PARTITION].extend([42, 43, 44])
    assert consumer._new_offset(TOPIC_PARTITION) == 45
    assert consumer.holes == {}


def test_a_single_missing_offset_holds_the_commit_back() -> None:
    """faust-streaming commits 44 here (the hole is only one message wide)."""
    consumer = fresh_consumer()
    consumer._committed_offset[TOPIC_PARTITION] = 42
    consumer._acked[TOPIC_PARTITION].extend([43])
    assert consumer._new_offset(TOPIC_PARTITION) is None
    assert consumer.holes[TOPIC_PARTITION][0] == 42


def test_a_missing_offset_zero_holds_the_commit_back() -> None:
    consumer = fresh_consumer()
    consumer._committed_offset[TOPIC_PARTITION] = 0
    consumer._acked[TOPIC_PARTITION].extend([1, 2])
    assert consumer._new_offset(TOPIC_PARTITION) is None


def test_the_hole_closes_once_the_message_is_acked() -> None:
    consumer = fresh_consumer()
    consumer._committed_offset[TOPIC_PARTITION] = 42
    consumer._acked[TOPIC_PARTITION].extend([43])
    assert consumer._new_offset(TOPIC_PARTITION) is None
    consumer._acked[TOPIC_PARTITION].append(42)
    assert consumer._new_offset(TOPIC_PARTITION) == 44
    assert consumer.holes == {}


# -------------------------------------------------------------- the drain loop
class _Stopped:
    """Stands in for a service's ``_stopped`` event."""

    def __init__(self) -> None:
        self.flag = False

    def is_set(self) -> bool:
        return self.flag


class _Fetcher:
    def __init__(self) -> None:
        self._stopped = _Stopped()


def _message(offset: int, topic: str = "raw") -> SimpleNamespace:
    return SimpleNamespace(offset=offset, topic=topic, partition=0)


def drain_once(
    consumer: GaplessConsumer,
    monkeypatch: pytest.MonkeyPatch,
    batch: list[SimpleNamespace],
) -> tuple[list[int], list[str]]:
    """Run ``_drain_messages`` over one fetched batch; (delivered offsets, waits)."""
    fetcher = _Fetcher()
    delivered: list[int] = []
    waits: list[str] = []

    async def fetch(wait: float) -> Any:
        fetcher._stopped.flag = True
        generation = consumer.app.consumer_generation_id
        return {TOPIC_PARTITION: batch}, None, generation

    async def callback(message: Any) -> None:
        delivered.append(message.offset)

    async def wait_first(*coros: Any, **kwargs: Any) -> None:
        waits.append("wait_first")
        for other in coros[1:]:
            other.close()  # the suspend_flow.wait() coroutine
        await coros[0]

    patch_fetch(consumer, monkeypatch, fetch)
    monkeypatch.setattr(consumer, "callback", callback)
    monkeypatch.setattr(consumer, "wait_first", wait_first)
    monkeypatch.setattr(consumer, "_commit_every", None)
    asyncio.run(consumer._drain_messages(fetcher))  # type: ignore[arg-type]
    return delivered, waits


def patch_fetch(
    consumer: GaplessConsumer, monkeypatch: pytest.MonkeyPatch, fetch: Any
) -> None:
    """Fetches from ``fetch``; records stand in for faust's messages as they are."""
    monkeypatch.setattr(consumer, "_fetch", fetch)
    monkeypatch.setattr(consumer, "_to_message", lambda tp, record: record)
    monkeypatch.setattr(consumer, "highwater", lambda tp: 0)


def test_drain_delivers_in_order_without_a_task_per_message(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    consumer = fresh_consumer()
    consumer.suspend_flow.clear()
    consumer._read_offset[TOPIC_PARTITION] = 10
    delivered, waits = drain_once(
        consumer, monkeypatch, [_message(o) for o in (8, 10, 11, 12)]
    )
    assert delivered == [10, 11, 12]  # 8 was read before: dropped, as faust does
    assert waits == []  # no wait_first (4 tasks) per message while the flow runs
    assert consumer._read_offset[TOPIC_PARTITION] == 12


def test_drain_races_the_callback_against_a_suspended_flow(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    consumer = fresh_consumer()
    consumer._read_offset[TOPIC_PARTITION] = None
    consumer.suspend_flow.set()
    try:
        delivered, waits = drain_once(consumer, monkeypatch, [_message(0), _message(1)])
    finally:
        consumer.suspend_flow.clear()
    assert delivered == [0, 1]
    assert waits == ["wait_first", "wait_first"]


def test_drain_records_gaps_only_in_compacted_changelogs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    consumer = fresh_consumer()
    consumer.suspend_flow.clear()
    monkeypatch.setattr(consumer.app.topics, "acks_enabled_for", lambda topic: True)
    changelog = {"on": False}
    monkeypatch.setattr(consumer, "_is_changelog_tp", lambda tp: changelog["on"])

    consumer._read_offset[TOPIC_PARTITION] = 5
    delivered, _ = drain_once(consumer, monkeypatch, [_message(6), _message(9)])
    assert delivered == [6, 9]
    # A pipeline topic: a jump is a skipped record, not a gap faust may commit over.
    assert not consumer._gap[TOPIC_PARTITION]

    changelog["on"] = True  # a compacted changelog skips offsets legitimately
    consumer._read_offset[TOPIC_PARTITION] = 5
    drain_once(consumer, monkeypatch, [_message(6), _message(9)])
    assert sorted((i.begin, i.end) for i in consumer._gap[TOPIC_PARTITION]) == [
        (7, 10)  # faust: _add_gap(tp, 7, 9), end exclusive
    ]


def test_drain_delivers_records_a_seek_fetched_before_it_updated_the_read_offset(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The broker-restart loss: faust resumed the flow before ``perform_seek`` set
    the read offsets, and the re-fetched records were dropped as already read."""
    consumer = fresh_consumer()
    consumer.suspend_flow.clear()
    consumer._committed_offset[TOPIC_PARTITION] = 1272  # the seek's position
    consumer._read_offset[TOPIC_PARTITION] = 1467  # stale: not updated yet
    consumer._acked_index[TOPIC_PARTITION].add(1273)  # processed, not committed
    delivered, _ = drain_once(
        consumer, monkeypatch, [_message(o) for o in (1270, 1272, 1273, 1274)]
    )
    # 1270 is committed and 1273 acked: dropped; the others were never processed.
    assert delivered == [1272, 1274]
    assert consumer._read_offset[TOPIC_PARTITION] == 1274


def test_a_delivery_overtaken_by_a_rebalance_leaves_the_read_offset_to_the_seek(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The chaos broker-restart scenario lost messages when a delivery blocked on a
    full buffer finished after the rebalance's seek and recorded its (higher) read
    offset: the re-fetched messages below it were then dropped as already read."""
    consumer = fresh_consumer()
    consumer.suspend_flow.clear()
    consumer._read_offset[TOPIC_PARTITION] = 1437
    app_ = consumer.app
    generation = app_.consumer_generation_id
    fetcher = _Fetcher()
    delivered: list[int] = []
    calls = 0

    async def fetch(wait: float) -> Any:
        nonlocal calls
        calls += 1
        if calls > 1:  # after the break: stop the loop (the real fetch would
            fetcher._stopped.flag = True  # resume at the seek's offset)
            return None
        records = [_message(offset) for offset in (1437, 1438, 1439)]
        return {TOPIC_PARTITION: records}, None, generation

    async def callback(message: Any) -> None:
        delivered.append(message.offset)
        if message.offset == 1437:
            # While this delivery waited: a rebalance, then the seek to committed.
            monkeypatch.setattr(app_, "consumer_generation_id", generation + 1)
            consumer._read_offset[TOPIC_PARTITION] = 1243

    patch_fetch(consumer, monkeypatch, fetch)
    monkeypatch.setattr(consumer, "callback", callback)
    monkeypatch.setattr(consumer, "_commit_every", None)
    asyncio.run(consumer._drain_messages(fetcher))  # type: ignore[arg-type]
    assert delivered == [1437]  # the rest of the stale batch is abandoned
    assert consumer._read_offset[TOPIC_PARTITION] == 1243  # the seek's, kept


# ------------------------------------------------- the seek after a rebalance
CLEAN_NEW = TP("clean", 2)
CLEAN_OLD = TP("clean", 0)
CHANGELOG = TP("app-sent-versions-changelog", 0)


class FakeAioConsumer:
    """The aiokafka consumer behind the thread: records seeks, refuses revoked tps."""

    def __init__(self, revoked: set[TP]) -> None:
        self.revoked = revoked
        self.seeks: list[tuple[TP, int]] = []

    def seek(self, tp: TP, offset: int) -> None:
        if tp in self.revoked:
            raise IllegalStateError(f"No current assignment for partition {tp}")
        self.seeks.append((tp, offset))


class FakeThread:
    def __init__(self, aio: FakeAioConsumer) -> None:
        self.aio = aio
        self.calls = 0

    def _ensure_consumer(self) -> FakeAioConsumer:
        return self.aio

    async def call_thread(self, fun: Any, *args: Any) -> Any:
        self.calls += 1
        return await fun(*args)


def seek_once(
    consumer: GaplessConsumer,
    monkeypatch: pytest.MonkeyPatch,
    committed: dict[TP, int | None],
    earliest: dict[TP, int] | Exception,
    revoked: set[TP] | None = None,
    delay: float = 0.0,
) -> tuple[list[tuple[TP, int]], list[tuple[TP, ...]]]:
    """Run ``perform_seek`` with the broker's answers faked; (seeks, asked)."""
    asked: list[tuple[TP, ...]] = []
    thread = FakeThread(FakeAioConsumer(revoked or set()))

    async def seek_to_committed() -> dict[TP, int | None]:
        return committed

    async def earliest_offsets(*tps: TP) -> dict[TP, int]:
        asked.append(tps)
        await asyncio.sleep(delay)
        if isinstance(earliest, Exception):
            raise earliest
        return {tp: earliest[tp] for tp in tps}

    monkeypatch.setattr(consumer, "seek_to_committed", seek_to_committed)
    monkeypatch.setattr(consumer, "earliest_offsets", earliest_offsets)
    monkeypatch.setattr(consumer, "_thread", thread)
    monkeypatch.setattr(consumer, "assignment", lambda: set(committed))
    monkeypatch.setattr(
        consumer, "_is_changelog_tp", lambda tp: tp.topic.endswith("-changelog")
    )
    asyncio.run(consumer.perform_seek())
    return thread.aio.seeks, asked


def test_a_partition_nobody_committed_is_sought_to_its_first_offset(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """faust leaves it where the last fetch stopped: records it dropped are lost."""
    consumer = fresh_consumer()
    seeks, asked = seek_once(
        consumer,
        monkeypatch,
        {CLEAN_NEW: None, CLEAN_OLD: 146, CHANGELOG: None},
        {CLEAN_NEW: 0},
    )
    assert asked == [(CLEAN_NEW,)]  # committed and changelog partitions: faust's
    assert seeks == [(CLEAN_NEW, 0)]
    assert consumer._committed_offset[CLEAN_NEW] == 0
    assert consumer._committed_offset[CLEAN_OLD] == 146
    # The first commit can no longer skip the records before the first fetched one.
    consumer._acked[CLEAN_NEW].extend([32, 33, 34])
    consumer._acked_index[CLEAN_NEW].update({32, 33, 34})
    assert consumer._new_offset(CLEAN_NEW) is None
    assert consumer.holes[CLEAN_NEW][0] == 0


def test_the_first_offset_is_the_log_start_after_retention(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    consumer = fresh_consumer()
    seeks, _ = seek_once(consumer, monkeypatch, {CLEAN_NEW: None}, {CLEAN_NEW: 5000})
    assert seeks == [(CLEAN_NEW, 5000)]
    consumer._acked[CLEAN_NEW].extend([5000, 5001])
    consumer._acked_index[CLEAN_NEW].update({5000, 5001})
    assert consumer._new_offset(CLEAN_NEW) == 5002


def test_no_first_offsets_keeps_faust_behaviour(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    consumer = fresh_consumer()
    seeks, asked = seek_once(
        consumer, monkeypatch, {CLEAN_NEW: None}, OSError("broker down")
    )
    assert asked == [(CLEAN_NEW,)] and seeks == []
    assert consumer._committed_offset.get(CLEAN_NEW) is None


def test_a_later_seek_goes_back_to_the_start_until_something_is_committed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """faust seeks again when getmany runs while the flow is stopped: the partition
    must go back to its start, not stay past a batch that was dropped."""
    consumer = fresh_consumer()
    seek_once(consumer, monkeypatch, {CLEAN_NEW: None}, {CLEAN_NEW: 0})
    seeks, asked = seek_once(consumer, monkeypatch, {CLEAN_NEW: None}, {})
    assert seeks == [(CLEAN_NEW, 0)] and asked == []  # the stored start, no request
    seeks, asked = seek_once(consumer, monkeypatch, {CLEAN_NEW: 40}, {})
    assert seeks == [] and asked == []  # committed now: faust's seek is enough
    assert consumer._committed_offset[CLEAN_NEW] == 40


def test_a_partition_revoked_before_the_seek_is_left_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    consumer = fresh_consumer()
    seeks, _ = seek_once(
        consumer,
        monkeypatch,
        {CLEAN_NEW: None, CLEAN_OLD: None},
        {CLEAN_NEW: 0, CLEAN_OLD: 0},
        revoked={CLEAN_OLD},
    )
    assert seeks == [(CLEAN_NEW, 0)]
    assert consumer._committed_offset.get(CLEAN_OLD) is None


def test_slow_first_offsets_give_up_before_faust_stops_recovery(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(consumer_module, "START_OFFSETS_TIMEOUT", 0.05)
    consumer = fresh_consumer()
    seeks, asked = seek_once(
        consumer, monkeypatch, {CLEAN_NEW: None}, {CLEAN_NEW: 0}, delay=5.0
    )
    assert asked == [(CLEAN_NEW,)] and seeks == []
