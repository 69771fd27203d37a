"""Bounded dedup state of the fetcher: which entries expire and how they go."""

from __future__ import annotations

import asyncio
import copy
import json
import logging
from collections.abc import Awaitable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest

from agents.fetch import (
    DAY_MS,
    SWEEP_MAX_SECONDS,
    WRITES_PER_YIELD,
    DedupExpiry,
    FetchState,
    MemoryVersions,
    TableVersions,
    expired_keys,
    fetch_state,
    fetch_tick,
    remembered_version,
    sent_versions,
    sweep_interval,
)
from streamapp.app import settings
from streamapp.sources import FetchResult
from streamapp.stats import PipelineStats
from tests.unit.streamapp.sources.source_testkit import FEED_2024

FEATURES: list[Any] = json.loads(FEED_2024.read_bytes())["features"]
URL = "http://feed.test/all_hour.geojson"
#: A wall clock well after every feature of the capture (2024-05-31).
NOW_MS = 1_800_000_000_000
FETCHED_AT = datetime(2027, 1, 15, 8, 0, tzinfo=UTC)


# ------------------------------------------------------------ pure functions
def test_expired_keys_are_those_below_the_cutoff_and_not_kept() -> None:
    entries = [("old", 99), ("edge", 100), ("new", 101), ("bad", None), ("kept", 5)]
    assert expired_keys(entries, 100) == ["old", "bad", "kept"]
    assert expired_keys(entries, 100, keep={"kept", "bad"}) == ["old"]
    assert expired_keys([], 100) == []


def test_sweep_interval_is_a_hundredth_of_the_retention_capped() -> None:
    assert sweep_interval(30.0) == SWEEP_MAX_SECONDS
    assert sweep_interval(0.01) == pytest.approx(8.64)
    assert sweep_interval(0.001) == pytest.approx(0.864)


def test_remembered_version_is_updated_or_the_send_time_of_a_hash() -> None:
    assert remembered_version("us7000abcd", 1_700_000_000_000, FETCHED_AT) == (
        1_700_000_000_000
    )
    stamp = int(FETCHED_AT.timestamp() * 1000)
    assert remembered_version("sha256:00ff", 0, FETCHED_AT) == stamp
    naive = FETCHED_AT.replace(tzinfo=None)
    assert remembered_version("sha256:00ff", 0, naive) == stamp
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    assert remembered_version("sha256:00ff", 0, epoch) == 1  # never 0


# --------------------------------------------------------------- DedupExpiry
def aged(n: int, version: int, prefix: str = "k") -> dict[str, int]:
    return {f"{prefix}{i:03d}": version for i in range(n)}


async def test_a_sweep_examines_one_bounded_batch_per_step() -> None:
    cutoff_age = 2 * DAY_MS
    versions = MemoryVersions(
        {**aged(7, NOW_MS - cutoff_age, "old"), **aged(3, NOW_MS, "new")}
    )
    expiry = DedupExpiry(1.0, batch=4, interval=100.0)
    counters = PipelineStats()
    done = [
        await expiry.step(
            versions, frozenset(), now_ms=NOW_MS, monotonic=t, counters=counters
        )
        for t in (0.0, 1.0, 2.0)
    ]
    assert sum(done) == 7 and max(done) <= 4
    assert sorted(versions.data) == ["new000", "new001", "new002"]
    assert counters.snapshot()["dedup_expired"] == 7
    assert expiry.pending == [] and (expiry.examined, expiry.expired) == (10, 7)


async def test_the_next_sweep_waits_for_the_interval() -> None:
    versions = MemoryVersions(aged(2, NOW_MS))
    expiry = DedupExpiry(1.0, batch=10, interval=60.0)
    counters = PipelineStats()
    assert await expiry.step(versions, (), now_ms=NOW_MS, monotonic=10.0) == 0
    assert expiry.next_sweep == 70.0
    versions.data["late"] = 1  # ancient, but no sweep is due
    later = NOW_MS + DAY_MS
    for t in (11.0, 69.9):
        gone = await expiry.step(
            versions, (), now_ms=later, monotonic=t, counters=counters
        )
        assert gone == 0
    assert "late" in versions.data
    gone = await expiry.step(
        versions, (), now_ms=later, monotonic=70.0, counters=counters
    )
    assert gone == 1 and "late" not in versions.data


async def test_keys_the_source_still_returns_never_expire() -> None:
    versions = MemoryVersions({"in-feed": 1, "gone-from-feed": 1})
    expiry = DedupExpiry(30.0)
    gone = await expiry.step(
        versions, frozenset({"in-feed"}), now_ms=NOW_MS, monotonic=0.0
    )
    assert gone == 1 and list(versions.data) == ["in-feed"]


async def test_the_end_of_a_sweep_is_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    versions = MemoryVersions({**aged(3, 1), **aged(2, NOW_MS, "new")})
    expiry = DedupExpiry(30.0, batch=2, interval=600.0)
    with caplog.at_level(logging.INFO, logger="agents.fetch"):
        for t in (0.0, 1.0, 2.0, 3.0):
            await expiry.step(versions, (), now_ms=NOW_MS, monotonic=t)
    lines = [r.getMessage() for r in caplog.records if "dedup entries" in r.message]
    assert lines == ["fetch_quakes: expired 3 of 5 dedup entries (older than 30 days)"]


# -------------------------------------------------- TableVersions tombstones
@dataclass
class Changelog:
    """Records what is written to the changelog; keys in ``fail`` fail."""

    fail: set[str] = field(default_factory=set)
    log: list[tuple[str, Any, str | None]] = field(default_factory=list)

    async def send(
        self, *, key: str, value: Any, value_serializer: str | None = None
    ) -> Awaitable[Any]:
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if key in self.fail:
            fut.set_exception(TimeoutError("changelog write timed out"))
        else:
            self.log.append((key, value, value_serializer))
            fut.set_result(None)
        return fut

    def get_topic_name(self) -> str:
        return "app-sent-versions-changelog"


@dataclass
class Table:
    changelog_topic: Changelog
    data: dict[str, Any] = field(default_factory=dict)


async def test_expire_removes_locally_and_writes_raw_tombstones() -> None:
    table = Table(Changelog())
    versions = TableVersions(table)
    await versions.save({"a": 1, "b": 2, "c": 3})
    assert sorted(versions.keys()) == ["a", "b", "c"]
    await versions.expire(["a", "c"])
    assert table.data == {"b": 2}
    assert table.changelog_topic.log[-2:] == [("a", None, "raw"), ("c", None, "raw")]


async def test_a_failed_tombstone_is_retried_unless_the_key_is_saved_again() -> None:
    table = Table(Changelog(fail={"a", "b"}))
    versions = TableVersions(table)
    table.data.update({"a": 1, "b": 2, "c": 3})
    await versions.expire(["a", "b"])
    assert table.data == {"c": 3}  # gone locally even though the write failed
    assert table.changelog_topic.log == []
    table.changelog_topic.fail.clear()
    await versions.save({"b": 9})  # sent again meanwhile: its tombstone is dropped
    await versions.expire([])
    assert table.changelog_topic.log == [("b", 9, None), ("a", None, "raw")]
    assert table.data == {"b": 9, "c": 3}
    await versions.expire([])
    assert len(table.changelog_topic.log) == 2


async def test_an_expired_key_is_not_rewritten_by_a_retried_save() -> None:
    table = Table(Changelog(fail={"a"}))
    versions = TableVersions(table)
    await versions.save({"a": 1})
    table.changelog_topic.fail.clear()
    await versions.expire(["a"])
    await versions.save({})
    assert table.changelog_topic.log == [("a", None, "raw")]
    assert table.data == {}


async def test_a_large_batch_of_writes_lets_other_tasks_run() -> None:
    table = Table(Changelog())
    versions = TableVersions(table)
    table.data.update({f"k{i:04d}": 1 for i in range(1000)})
    seen: list[int] = []

    async def other_agent() -> None:
        seen.append(len(table.changelog_topic.log))

    task = asyncio.create_task(other_agent())
    await versions.expire(list(table.data))
    await task
    assert seen == [WRITES_PER_YIELD - 1]
    assert len(table.changelog_topic.log) == 1000


# ----------------------------------------------------------- the timer's tick
@dataclass
class Feed:
    """A source whose document the test swaps."""

    features: list[Any]
    calls: int = 0

    @property
    def url(self) -> str:
        return URL

    async def fetch(self) -> FetchResult:
        self.calls += 1
        return FetchResult(
            features=copy.deepcopy(self.features),
            source_url=URL,
            fetched_at=FETCHED_AT,
            size_bytes=1,
        )

    async def close(self) -> None:
        return None


@dataclass
class Sent:
    keys: list[bytes | None] = field(default_factory=list)

    async def __call__(self, key: bytes | None, value: bytes) -> Awaitable[Any]:
        self.keys.append(key)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        fut.set_result(None)
        return fut


def revised(feature: dict[str, Any], by: int = 1000) -> dict[str, Any]:
    out = copy.deepcopy(feature)
    out["properties"]["updated"] += by
    return out


async def test_ids_gone_from_the_feed_expire_and_a_revision_is_sent_again() -> None:
    feed = Feed(FEATURES[:5])
    sent = Sent()
    versions = MemoryVersions()
    counters = PipelineStats()
    state = FetchState(
        interval=1.0,
        source_name="usgs",
        source_factory=lambda: feed,
        versions=versions,
        sender=sent,
        expiry=DedupExpiry(30.0, interval=1.0),
    )

    async def tick(t: float) -> Any:
        return await fetch_tick(
            state, counters=counters, monotonic=lambda: t, clock=lambda: NOW_MS / 1000
        )

    first = await tick(0.0)
    assert first.produced == 5 and len(versions.data) == 5  # in the feed: kept
    feed.features = FEATURES[3:5]
    await tick(1.0)  # the sweep expires the three ids the document no longer has
    assert sorted(versions.data) == sorted(f["id"] for f in FEATURES[3:5])
    assert counters.snapshot()["dedup_expired"] == 3

    changed = revised(FEATURES[0])
    feed.features = [changed, FEATURES[1], *FEATURES[3:5]]
    again = await tick(2.0)
    # Both expired ids are sent again (the revision and the unchanged one); the two
    # remembered ones are not.
    assert (again.produced, again.skipped_unchanged) == (2, 2)
    assert sent.keys[-2:] == [FEATURES[0]["id"].encode(), FEATURES[1]["id"].encode()]
    assert versions.data[changed["id"]] == changed["properties"]["updated"]


async def test_no_sweep_before_the_first_document_nor_while_not_ready() -> None:
    versions = MemoryVersions({"ancient": 1})
    ready = {"ok": False}
    feed = Feed([])
    state = FetchState(
        interval=60.0,
        source_name="usgs",
        source_factory=lambda: feed,
        versions=versions,
        sender=Sent(),
        ready=lambda: ready["ok"],
        expiry=DedupExpiry(30.0),
    )
    counters = PipelineStats()
    assert await fetch_tick(state, counters=counters, monotonic=lambda: 0.0) is None
    assert "ancient" in versions.data and state.seen is None
    ready["ok"] = True
    state.not_before = 100.0  # the first poll is not due yet: nothing is known
    await fetch_tick(state, counters=counters, monotonic=lambda: 0.0)
    assert "ancient" in versions.data
    await fetch_tick(state, counters=counters, monotonic=lambda: 100.0)
    assert state.seen == frozenset() and versions.data == {}


async def test_a_content_hash_stays_sent_until_it_expires() -> None:
    junk = {"type": "Feature", "properties": {"note": "no id"}}
    feed = Feed([junk])
    sent = Sent()
    versions = MemoryVersions()
    state = FetchState(
        interval=1.0,
        source_name="usgs",
        source_factory=lambda: feed,
        versions=versions,
        sender=sent,
        expiry=DedupExpiry(1.0, interval=1.0),
    )
    stamp = int(FETCHED_AT.timestamp() * 1000)
    await fetch_tick(state, monotonic=lambda: 0.0, clock=lambda: stamp / 1000)
    assert list(versions.data.values()) == [stamp] and len(sent.keys) == 1
    feed.features = []
    await fetch_tick(state, monotonic=lambda: 1.0, clock=lambda: stamp / 1000 + 60)
    assert len(versions.data) == 1  # one minute old: kept
    feed.features = [junk]
    await fetch_tick(state, monotonic=lambda: 2.0, clock=lambda: stamp / 1000 + 60)
    assert len(sent.keys) == 1
    feed.features = []
    await fetch_tick(state, monotonic=lambda: 3.0, clock=lambda: stamp / 1000 + 86_401)
    assert versions.data == {}


async def test_a_failing_sweep_is_logged_and_the_poll_result_kept(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Broken(MemoryVersions):
        async def expire(self, keys: Any) -> None:
            raise RuntimeError("store is gone")

    state = FetchState(
        interval=60.0,
        source_name="usgs",
        source_factory=lambda: Feed([]),
        versions=Broken({"ancient": 1}),
        sender=Sent(),
        expiry=DedupExpiry(30.0),
    )
    with caplog.at_level(logging.ERROR, logger="agents.fetch"):
        result = await fetch_tick(state, monotonic=lambda: 0.0)
    assert result is not None and result.ok
    assert "dedup expiry failed" in caplog.text


def test_the_worker_sweeps_with_the_configured_retention() -> None:
    assert fetch_state.expiry is not None
    assert fetch_state.expiry.retention_days == settings.dedup_retention_days
    configs = sent_versions.changelog_topic.config
    assert configs is not None and configs["segment.ms"] == str(DAY_MS)
