"""poll_once on the real broker: a local HTTP feed -> the raw topic, exactly once."""

from __future__ import annotations

import asyncio
import copy
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from agents.fetch import MemoryVersions, PollResult, poll_once
from streamapp.kafka import aiokafka_kwargs
from streamapp.settings import Settings
from streamapp.sources import UsgsSource
from streamapp.stats import PipelineStats
from tests.support.kafka import KafkaAdmin
from tests.unit.streamapp.sources.source_testkit import FEED_2017, FEED_2024

pytestmark = pytest.mark.integration

Record = tuple[bytes | None, dict[str, Any]]


class Feed:
    """A local HTTP server serving whatever document the test sets."""

    def __init__(self) -> None:
        self.document: dict[str, Any] = {}
        self.status = 200
        self.requests = 0

    async def handle(self, _: web.Request) -> web.Response:
        self.requests += 1
        if self.status != 200:
            return web.Response(status=self.status, text="unavailable")
        return web.json_response(self.document)


@pytest.fixture
async def feed() -> AsyncIterator[tuple[Feed, str]]:
    state = Feed()
    application = web.Application()
    application.router.add_get("/feed.geojson", state.handle)
    server = TestServer(application)
    await server.start_server()
    try:
        yield state, str(server.make_url("/feed.geojson"))
    finally:
        await server.close()


@pytest.fixture
async def producer(stack_ready: Settings) -> AsyncIterator[AIOKafkaProducer]:

    client = AIOKafkaProducer(
        **aiokafka_kwargs(stack_ready),
        acks="all",
        enable_idempotence=True,
        linger_ms=20,
        compression_type="gzip",
    )
    await client.start()
    try:
        yield client
    finally:
        await client.stop()


def sender_for(
    producer: AIOKafkaProducer, topic: str
) -> Callable[[bytes | None, bytes], Awaitable[Awaitable[Any]]]:
    async def send(key: bytes | None, value: bytes) -> Awaitable[Any]:
        return await producer.send(topic, value, key=key)

    return send


async def read_all(
    kwargs: dict[str, Any], topic: str, expected: int, settle_s: float = 3.0
) -> list[Record]:
    """Every record of ``topic`` from the start: waits for ``expected``, then settles
    ``settle_s`` more to catch anything extra (a duplicate would show up here)."""
    consumer = AIOKafkaConsumer(
        topic,
        **kwargs,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    records: list[Record] = []
    try:
        deadline = time.monotonic() + 60.0
        quiet_until: float | None = None
        while time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            for recs in batches.values():
                for rec in recs:
                    assert rec.value is not None
                    records.append((rec.key, json.loads(rec.value)))
            if len(records) >= expected:
                if quiet_until is None:
                    quiet_until = time.monotonic() + settle_s
                elif time.monotonic() >= quiet_until:
                    break
    finally:
        await consumer.stop()
    return records


async def test_poll_sends_each_feature_once_then_only_revisions(
    stack_ready: Settings,
    kafka_admin: KafkaAdmin,
    unique_name: Callable[..., str],
    feed: tuple[Feed, str],
    producer: AIOKafkaProducer,
) -> None:
    topic = kafka_admin.create_topic(unique_name("raw"), partitions=4)
    server, url = feed
    document = json.loads(FEED_2024.read_bytes())
    features = document["features"]
    server.document = document
    source = UsgsSource(url, timeout=10.0, max_retries=0)
    send = sender_for(producer, topic)
    versions = MemoryVersions()
    counters = PipelineStats()
    try:
        first = await poll_once(source, send, versions, counters=counters)
        second = await poll_once(source, send, versions, counters=counters)
        revised = copy.deepcopy(document)
        revised["features"][5]["properties"]["updated"] += 60_000
        revised["features"][5]["properties"]["mag"] = 3.3
        extra = json.loads(FEED_2017.read_bytes())["features"][0]
        revised["features"].append(extra)
        server.document = revised
        third = await poll_once(source, send, versions, counters=counters)
        fourth = await poll_once(source, send, versions, counters=counters)
    finally:
        await source.close()

    assert first == PollResult(source_url=url, fetched=8, produced=8)
    assert second == PollResult(source_url=url, fetched=8, skipped_unchanged=8)
    assert third == PollResult(
        source_url=url, fetched=9, produced=2, skipped_unchanged=7
    )
    assert fourth == PollResult(source_url=url, fetched=9, skipped_unchanged=9)
    assert server.requests == 4

    records = await asyncio.wait_for(read_all(kafka_admin.kwargs, topic, 10), 120)
    assert len(records) == 10, [k for k, _ in records]
    keys = [k for k, _ in records]
    expected_keys = [f["id"].encode() for f in features] + [
        features[5]["id"].encode(),
        extra["id"].encode(),
    ]
    assert sorted(k for k in keys if k is not None) == sorted(expected_keys)
    # each original feature exactly as served, the revision and the new one once each
    by_key: dict[bytes, list[dict[str, Any]]] = {}
    for key, envelope in records:
        assert key is not None
        assert set(envelope) == {"feature", "fetched_at", "source_url"}
        assert envelope["source_url"] == url
        by_key.setdefault(key, []).append(envelope["feature"])
    for feature in features:
        sent = by_key[feature["id"].encode()]
        assert sent[0] == feature
    assert by_key[features[5]["id"].encode()][1] == revised["features"][5]
    assert by_key[extra["id"].encode()] == [extra]

    snap = counters.snapshot()
    assert (snap["fetched"], snap["produced"], snap["skipped_unchanged"]) == (
        34,
        10,
        24,
    )
    assert snap["fetch_errors"] == 0


async def test_failing_source_then_good_poll(
    stack_ready: Settings,
    kafka_admin: KafkaAdmin,
    unique_name: Callable[..., str],
    feed: tuple[Feed, str],
    producer: AIOKafkaProducer,
) -> None:
    topic = kafka_admin.create_topic(unique_name("raw"), partitions=4)
    server, url = feed
    server.document = json.loads(FEED_2024.read_bytes())
    server.status = 503
    waits: list[float] = []

    async def no_wait(seconds: float) -> None:
        waits.append(seconds)

    source = UsgsSource(url, timeout=10.0, max_retries=2, sleep=no_wait)
    send = sender_for(producer, topic)
    versions = MemoryVersions()
    counters = PipelineStats()
    try:
        failed = await poll_once(source, send, versions, counters=counters)
        server.status = 200
        good = await poll_once(source, send, versions, counters=counters)
    finally:
        await source.close()
    assert failed.unavailable and failed.error is not None and "503" in failed.error
    assert len(waits) == 2  # backed off between the three attempts
    assert good.ok and good.produced == 8
    assert counters.snapshot()["fetch_errors"] == 1
    records = await asyncio.wait_for(read_all(kafka_admin.kwargs, topic, 8), 120)
    assert len(records) == 8
