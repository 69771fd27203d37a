"""Unit tests of the consumer thread's watch for topics missing from metadata."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import aiokafka.errors
import pytest

from streamapp.faust_ext import (
    StreamConsumerThread,
    missing_topics,
    refresh_missing_topics,
)


class FakeCluster:
    def __init__(self, partitions: dict[str, set[int]]) -> None:
        self.partitions = partitions

    def partitions_for_topic(self, topic: str) -> set[int] | None:
        return self.partitions.get(topic)


class FakeClient:
    def __init__(self, cluster: FakeCluster, fail: bool = False) -> None:
        self.cluster = cluster
        self.refreshes = 0
        self.fail = fail
        self.appears = True

    async def force_metadata_update(self) -> bool:
        self.refreshes += 1
        if self.fail:
            raise aiokafka.errors.KafkaConnectionError("broker down")
        if self.appears:
            self.cluster.partitions.setdefault("dl", {0, 1})
        return True


class Stoppable:
    """A stand-in for the thread service: its attributes, and ``should_stop``."""

    def __init__(self, inner: Any, stop_after: Any) -> None:
        self.__dict__.update(vars(inner))
        self._stop_after = stop_after

    @property
    def should_stop(self) -> bool:
        return bool(self._stop_after())


def fake_consumer(
    subscribed: set[str], group: set[str] | None, known: dict[str, set[int]]
) -> Any:
    return SimpleNamespace(
        _subscription=SimpleNamespace(topics=subscribed),
        _coordinator=SimpleNamespace(_group_subscription=group),
        _client=FakeClient(FakeCluster(known)),
    )


def test_missing_topics_counts_the_group_subscription_on_the_leader() -> None:
    known = {"raw": {0}, "clean": {0}}
    follower = fake_consumer({"raw", "clean"}, None, known)
    assert missing_topics(follower) == set()
    leader = fake_consumer({"raw", "clean"}, {"raw", "clean", "dl"}, known)
    assert missing_topics(leader) == {"dl"}
    empty = fake_consumer({"raw"}, None, {"raw": set()})
    assert missing_topics(empty) == {"raw"}


def test_refresh_only_when_a_topic_is_missing() -> None:
    complete = fake_consumer({"raw"}, None, {"raw": {0}})
    assert asyncio.run(refresh_missing_topics(complete)) == set()
    assert complete._client.refreshes == 0
    leader = fake_consumer({"raw"}, {"raw", "dl"}, {"raw": {0}})
    assert asyncio.run(refresh_missing_topics(leader)) == {"dl"}
    assert leader._client.refreshes == 1
    assert missing_topics(leader) == set()


def test_the_consumer_thread_watches_for_missing_topics(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The watch refreshes every interval, survives a failed refresh, logs once."""
    tasks = StreamConsumerThread._tasks  # type: ignore[attr-defined]
    assert (
        "_watch_topics" in tasks["streamapp.faust_ext.topic_watch.StreamConsumerThread"]
    )
    consumer = fake_consumer({"raw"}, {"raw", "dl"}, {"raw": {0}})
    consumer._client.fail = True
    warnings: list[str] = []
    calls = 0

    async def sleep(seconds: float) -> None:
        nonlocal calls
        calls += 1
        if calls == 3:
            consumer._client.fail = False
        await asyncio.sleep(0)

    thread = SimpleNamespace(
        _consumer=consumer,
        sleep=sleep,
        log=SimpleNamespace(warning=lambda msg, *a: warnings.append(msg % a)),
    )
    thread = Stoppable(thread, stop_after=lambda: calls >= 5)
    watch = StreamConsumerThread.__dict__["_watch_topics"].fun
    asyncio.run(watch(thread))
    assert consumer._client.refreshes == 3  # two failed, then the one that found dl
    assert missing_topics(consumer) == set()
    assert sum("failed" in w for w in warnings) == 2
    assert sum("missing from the metadata" in w for w in warnings) == 1


def test_the_watch_backs_off_while_a_topic_stays_missing() -> None:
    consumer = fake_consumer({"raw", "dl"}, None, {"raw": {0}})
    consumer._client.appears = False  # deleted, or never created
    delays: list[float] = []
    warnings: list[str] = []

    async def sleep(seconds: float) -> None:
        delays.append(seconds)
        await asyncio.sleep(0)

    thread = SimpleNamespace(
        _consumer=consumer,
        sleep=sleep,
        log=SimpleNamespace(warning=lambda msg, *a: warnings.append(msg % a)),
    )
    thread = Stoppable(thread, stop_after=lambda: len(delays) >= 8)
    asyncio.run(StreamConsumerThread.__dict__["_watch_topics"].fun(thread))
    assert delays == [1.0, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert consumer._client.refreshes == 8
    assert len(warnings) == 1  # logged once, not every refresh
