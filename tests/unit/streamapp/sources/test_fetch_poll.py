"""poll_once (the body of the fetch_quakes timer) with a fake source and sender."""

from __future__ import annotations

import asyncio
import copy
import json
import logging
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any

import pytest

from agents.fetch import (
    FetchState,
    MemoryVersions,
    TableVersions,
    dedup_key,
    fetch_state,
    fetch_tick,
    poll_once,
    sent_versions,
)
from streamapp.exceptions import SourceResponseError, SourceUnavailable
from streamapp.sources import FetchResult
from streamapp.stats import PipelineStats
from tests.unit.streamapp.sources.source_testkit import FEED_2024, NOW

FEATURES: list[Any] = json.loads(FEED_2024.read_bytes())["features"]
URL = "http://feed.test/all_hour.geojson"


@dataclass
class FakeSource:
    """Returns the scripted documents (or raises the scripted errors) in turn."""

    script: list[list[Any] | Exception]
    calls: int = 0

    @property
    def url(self) -> str:
        return URL

    async def fetch(self) -> FetchResult:
        item = self.script[min(self.calls, len(self.script) - 1)]
        self.calls += 1
        if isinstance(item, Exception):
            raise item
        return FetchResult(
            features=copy.deepcopy(item), source_url=URL, fetched_at=NOW, size_bytes=1
        )

    async def close(self) -> None:
        return None


@dataclass
class FakeSender:
    """Records messages; keys in ``fail`` get a delivery future that fails."""

    sent: list[tuple[bytes | None, bytes]] = field(default_factory=list)
    fail: set[bytes] = field(default_factory=set)
    raise_now: set[bytes] = field(default_factory=set)

    async def __call__(self, key: bytes | None, value: bytes) -> Awaitable[Any]:
        if key in self.raise_now:
            raise RuntimeError("producer is not running")
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if key in self.fail:
            fut.set_exception(TimeoutError("delivery timed out"))
        else:
            self.sent.append((key, value))
            fut.set_result(None)
        return fut

    def keys(self) -> list[bytes | None]:
        return [k for k, _ in self.sent]


def revised(feature: dict[str, Any], by: int = 1000) -> dict[str, Any]:
    out = copy.deepcopy(feature)
    out["properties"]["updated"] += by
    return out


@pytest.fixture
def counters() -> PipelineStats:
    return PipelineStats()


async def test_first_poll_sends_all_then_nothing_then_the_revision(
    counters: PipelineStats,
) -> None:
    changed = revised(FEATURES[3])
    source = FakeSource([FEATURES, FEATURES, [*FEATURES[:3], changed, *FEATURES[4:]]])
    sender = FakeSender()
    versions = MemoryVersions()

    first = await poll_once(source, sender, versions, counters=counters)
    assert (first.fetched, first.produced, first.skipped_unchanged) == (8, 8, 0)
    assert sender.keys() == [f["id"].encode() for f in FEATURES]
    envelope = json.loads(sender.sent[0][1])
    assert envelope["feature"] == FEATURES[0]
    assert envelope["source_url"] == URL
    assert versions.data == {f["id"]: f["properties"]["updated"] for f in FEATURES}
    assert counters.snapshot()["last_fetch_result"] == "ok: 8 features, 8 new"

    second = await poll_once(source, sender, versions, counters=counters)
    assert (second.produced, second.skipped_unchanged) == (0, 8)
    assert len(sender.sent) == 8

    third = await poll_once(source, sender, versions, counters=counters)
    assert (third.produced, third.skipped_unchanged) == (1, 7)
    assert sender.keys()[-1] == changed["id"].encode()
    assert versions.data[changed["id"]] == changed["properties"]["updated"]

    snap = counters.snapshot()
    assert snap["fetched"] == 24
    assert snap["produced"] == 9
    assert snap["skipped_unchanged"] == 15
    assert snap["fetch_errors"] == 0
    assert snap["last_fetch_result"] == "ok: 8 features, 1 new"


async def test_an_older_updated_is_not_sent(counters: PipelineStats) -> None:
    sender = FakeSender()
    versions = MemoryVersions()
    await poll_once(FakeSource([FEATURES[:1]]), sender, versions, counters=counters)
    older = revised(FEATURES[0], by=-1)
    result = await poll_once(FakeSource([[older]]), sender, versions, counters=counters)
    assert result.produced == 0 and result.skipped_unchanged == 1


async def test_a_failed_send_is_not_marked_and_is_retried(
    counters: PipelineStats,
) -> None:
    bad = FEATURES[2]["id"].encode()
    boom = FEATURES[5]["id"].encode()
    sender = FakeSender(fail={bad}, raise_now={boom})
    versions = MemoryVersions()
    source = FakeSource([FEATURES])
    result = await poll_once(source, sender, versions, counters=counters)
    assert (result.produced, result.failed) == (6, 2)
    assert not result.ok
    assert result.error is not None and "2 of 8 sends to Kafka failed" in result.error
    assert FEATURES[2]["id"] not in versions.data
    assert FEATURES[5]["id"] not in versions.data
    assert counters.snapshot()["fetch_errors"] == 1
    assert counters.snapshot()["last_fetch_result"].startswith("error: 2 of 8")

    sender.fail.clear()
    sender.raise_now.clear()
    again = await poll_once(source, sender, versions, counters=counters)
    assert (again.produced, again.skipped_unchanged, again.failed) == (2, 6, 0)
    assert sender.keys()[-2:] == [bad, boom]


@pytest.mark.parametrize(
    "error",
    [
        SourceUnavailable("cannot connect to http://feed.test/", retry_after=None),
        SourceUnavailable("http://feed.test/ answered HTTP 429", retry_after=120.0),
        SourceResponseError("http://feed.test/ answered with HTML instead of JSON"),
    ],
)
async def test_a_source_error_is_counted_not_raised(
    counters: PipelineStats, error: Exception
) -> None:
    source = FakeSource([error, FEATURES])
    sender = FakeSender()
    versions = MemoryVersions()
    failed = await poll_once(source, sender, versions, counters=counters)
    assert not failed.ok
    assert failed.error == str(error)
    assert failed.unavailable == isinstance(error, SourceUnavailable)
    assert failed.retry_after == getattr(error, "retry_after", None)
    assert counters.snapshot()["fetch_errors"] == 1
    assert counters.snapshot()["last_fetch_result"] == f"error: {error}"
    assert sender.sent == []
    # the next good poll proceeds
    good = await poll_once(source, sender, versions, counters=counters)
    assert good.ok and good.produced == 8


async def test_bad_features_are_sent_raw_once(counters: PipelineStats) -> None:
    no_updated = {"type": "Feature", "id": "us9", "properties": {}}
    junk: list[Any] = [42, "text", None, {"id": ""}, {"no": "id"}, no_updated]
    source = FakeSource([junk + FEATURES[:1]])
    sender = FakeSender()
    versions = MemoryVersions()
    first = await poll_once(source, sender, versions, counters=counters)
    assert first.produced == 7
    assert sender.keys() == [None, None, None, None, None, b"us9", b"nc75013992"]
    assert [json.loads(v)["feature"] for _, v in sender.sent[:6]] == junk
    second = await poll_once(source, sender, versions, counters=counters)
    assert (second.produced, second.skipped_unchanged) == (0, 7)


async def test_duplicates_in_one_document_send_the_latest(
    counters: PipelineStats,
) -> None:
    newer = revised(FEATURES[0], by=5)
    source = FakeSource([[FEATURES[0], newer, FEATURES[0]]])
    sender = FakeSender()
    result = await poll_once(source, sender, MemoryVersions(), counters=counters)
    assert (result.produced, result.skipped_unchanged) == (1, 2)
    assert json.loads(sender.sent[0][1])["feature"] == newer


async def test_a_value_too_large_for_kafka_is_skipped_for_good(
    counters: PipelineStats,
) -> None:
    big = copy.deepcopy(FEATURES[0])
    big["properties"]["place"] = "x" * 5000
    source = FakeSource([[big, FEATURES[1]]])
    sender = FakeSender()
    versions = MemoryVersions()
    result = await poll_once(
        source, sender, versions, counters=counters, max_value_bytes=4096
    )
    assert (result.produced, result.oversized) == (1, 1)
    assert sender.keys() == [FEATURES[1]["id"].encode()]
    assert big["id"] in versions.data
    again = await poll_once(
        source, sender, versions, counters=counters, max_value_bytes=4096
    )
    assert again.produced == 0 and again.oversized == 0


def test_dedup_key() -> None:
    feature = FEATURES[0]
    assert dedup_key(feature) == (feature["id"], feature["properties"]["updated"])
    key, version = dedup_key({"id": "x", "properties": {"updated": "1"}})
    assert key.startswith("sha256:") and version == 0
    assert dedup_key([1, {"b": 2, "a": 1}]) == dedup_key([1, {"a": 1, "b": 2}])
    assert dedup_key({"id": "x", "properties": {"updated": True}})[0].startswith("sha")


@dataclass
class FakeChangelog:
    fail_keys: set[str] = field(default_factory=set)
    sent: list[tuple[str, int]] = field(default_factory=list)

    async def send(self, *, key: str, value: int) -> Awaitable[Any]:
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if key in self.fail_keys:
            fut.set_exception(TimeoutError("changelog write timed out"))
        else:
            self.sent.append((key, value))
            fut.set_result(None)
        return fut

    def get_topic_name(self) -> str:
        return "app-sent-versions-changelog"


@dataclass
class FakeTable:
    changelog_topic: FakeChangelog
    data: dict[str, Any] = field(default_factory=dict)


async def test_table_versions_write_the_changelog_and_retry_failures() -> None:
    table = FakeTable(FakeChangelog(fail_keys={"b"}))
    versions = TableVersions(table)
    await versions.save({"a": 1, "b": 2})
    assert table.data == {"a": 1, "b": 2}  # local state has both: no re-send meanwhile
    assert (
        versions.get("a") == 1 and versions.get("b") == 2 and versions.get("c") is None
    )
    assert table.changelog_topic.sent == [("a", 1)]
    table.changelog_topic.fail_keys.clear()
    await versions.save({"c": 3})
    assert sorted(table.changelog_topic.sent) == [("a", 1), ("b", 2), ("c", 3)]
    await versions.save({})
    assert len(table.changelog_topic.sent) == 3


def test_the_dedup_table_is_global_and_writable_outside_a_stream() -> None:
    assert sent_versions.is_global
    assert sent_versions.use_partitioner
    assert sent_versions.partitions == 1
    assert sent_versions.name == "sent-versions"


def tick_state(source: FakeSource, **kwargs: Any) -> FetchState:
    options: dict[str, Any] = {
        "interval": 60.0,
        "source_name": "usgs",
        "source_factory": lambda: source,
        "versions": MemoryVersions(),
        "sender": FakeSender(),
    }
    options.update(kwargs)
    return FetchState(**options)


async def test_tick_waits_for_table_recovery(counters: PipelineStats) -> None:
    source = FakeSource([FEATURES])
    ready = {"ok": False}
    state = tick_state(source, ready=lambda: ready["ok"])
    assert await fetch_tick(state, counters=counters) is None
    assert source.calls == 0 and state.source is None
    ready["ok"] = True
    result = await fetch_tick(state, counters=counters)
    assert result is not None and result.produced == 8


async def test_tick_logs_one_line_with_the_next_poll_and_the_hint(
    counters: PipelineStats, caplog: pytest.LogCaptureFixture
) -> None:
    error = SourceUnavailable(f"cannot connect to {URL}: Connection refused")
    state = tick_state(FakeSource([error, FEATURES]))
    with caplog.at_level(logging.INFO, logger="agents.fetch"):
        result = await fetch_tick(state, counters=counters, monotonic=lambda: 0.0)
    assert result is not None and not result.ok
    lines = [r for r in caplog.records if r.name == "agents.fetch"]
    assert len(lines) == 1 and lines[0].levelno == logging.WARNING
    text = lines[0].getMessage()
    assert text.startswith(f"fetch_quakes: source failed: cannot connect to {URL}")
    assert "next poll at " in text and "(in 60s)" in text
    assert text.endswith("to run offline set SOURCE=replay")
    assert state.not_before == 60.0  # the normal interval applies
    assert await fetch_tick(state, counters=counters, monotonic=lambda: 59.0) is None
    good = await fetch_tick(state, counters=counters, monotonic=lambda: 60.0)
    assert good is not None and good.produced == 8


async def test_tick_polls_at_once_then_once_per_interval(
    counters: PipelineStats,
) -> None:
    source = FakeSource([FEATURES, FEATURES])
    state = tick_state(source)
    first = await fetch_tick(state, counters=counters, monotonic=lambda: 5.0)
    assert first is not None and first.produced == 8  # the first tick polls
    for t in (6.0, 30.0, 64.9):
        tick = await fetch_tick(state, counters=counters, monotonic=lambda t=t: t)
        assert tick is None
    assert source.calls == 1
    second = await fetch_tick(state, counters=counters, monotonic=lambda: 65.0)
    assert second is not None and second.skipped_unchanged == 8


async def test_tick_honours_a_long_retry_after(counters: PipelineStats) -> None:
    error = SourceUnavailable(f"{URL} answered HTTP 429", retry_after=300.0)
    source = FakeSource([error, FEATURES])
    state = tick_state(source, source_name="replay")
    now = {"t": 1000.0}
    first = await fetch_tick(state, counters=counters, monotonic=lambda: now["t"])
    assert first is not None and first.retry_after == 300.0
    assert state.not_before == 1300.0
    now["t"] = 1060.0
    assert (
        await fetch_tick(state, counters=counters, monotonic=lambda: now["t"]) is None
    )
    assert source.calls == 1
    now["t"] = 1300.0
    later = await fetch_tick(state, counters=counters, monotonic=lambda: now["t"])
    assert later is not None and later.ok and source.calls == 2


async def test_tick_survives_anything_the_poll_raises(
    counters: PipelineStats, caplog: pytest.LogCaptureFixture
) -> None:
    state = tick_state(FakeSource([RuntimeError("bug in a source"), FEATURES]))
    with caplog.at_level(logging.ERROR, logger="agents.fetch"):
        assert await fetch_tick(state, counters=counters) is None
    assert "poll of http://feed.test/all_hour.geojson failed" in caplog.text
    assert counters.snapshot()["fetch_errors"] == 1
    assert (
        counters.snapshot()["last_fetch_result"]
        == "error: RuntimeError: bug in a source"
    )
    result = await fetch_tick(state, counters=counters)
    assert result is not None and result.produced == 8


def test_the_worker_state_is_wired_to_the_table_and_the_producer_limit() -> None:
    assert isinstance(fetch_state.versions, TableVersions)
    assert fetch_state.versions.table is sent_versions
    assert fetch_state.max_value_bytes == 1_000_000 - 1024
