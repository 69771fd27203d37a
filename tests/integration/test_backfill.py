"""Backfill against the emulated FDSN service and the real Kafka and PostgreSQL.

No worker here: the backfill produces to a topic of the test's own and keeps its
progress in the test's own schema; the tests read the topic back. The pipeline
downstream (validation, dead letters, the table) is ``tests/e2e/test_backfill.py``.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from agents.fetch import dedup_key
from streamapp.backfill import Backfill, FdsnClient, Params, ProgressStore, Summary
from streamapp.backfill.fdsn import format_time
from streamapp.backfill.known import changelog_topic_name, load_sent_versions
from streamapp.db import get_engine, migrate
from streamapp.exceptions import SourceError
from streamapp.kafka import aiokafka_kwargs
from streamapp.settings import Settings
from tests.support.aio import run_sync
from tests.support.fdsn import Fault, FdsnEmulator
from tests.support.kafka import KafkaAdmin

pytestmark = pytest.mark.integration

SINCE = datetime(2024, 1, 1, tzinfo=UTC)
UNTIL = datetime(2024, 1, 31, tzinfo=UTC)
PARTITIONS = 2
Messages = Sequence[tuple[bytes | None, bytes]]


@pytest.fixture
def env(
    stack_ready: Settings,
    pg_schema: str,
    kafka_admin: KafkaAdmin,
    unique_name: Callable[..., str],
) -> Iterator[Settings]:
    """Settings with the test's own raw topic, app id and schema (migrated)."""
    tag = unique_name("bf")
    kafka_admin.create_topic(f"{tag}.raw", partitions=PARTITIONS)
    settings = dataclasses.replace(
        stack_ready, app_id=tag, postgres_schema=pg_schema, topic_raw=f"{tag}.raw"
    )
    migrate(settings)
    yield settings
    get_engine(settings).dispose()


async def _backfill(
    settings: Settings,
    fdsn: FdsnEmulator,
    params: Params,
    *,
    rate: float = 50_000.0,
    requests_per_second: float = 50.0,
    max_retries: int = 4,
    request_timeout: float = 5.0,
    known: dict[str, int] | None = None,
    fail_after: int | None = None,
    restart: bool = False,
) -> Summary:
    """One backfill invocation producing with aiokafka to ``settings.topic_raw``;
    ``fail_after``: the send after that many chunks raises (Kafka went away)."""
    producer = AIOKafkaProducer(**aiokafka_kwargs(settings), acks="all")
    await producer.start()
    sends = 0

    async def send(messages: Messages) -> None:
        nonlocal sends
        sends += 1
        if fail_after is not None and sends > fail_after:
            raise ConnectionError("the broker went away")
        futures = [
            await producer.send(settings.topic_raw, value=v, key=k) for k, v in messages
        ]
        for fut in futures:
            await fut

    client = FdsnClient(
        fdsn.url,
        requests_per_second=requests_per_second,
        max_events=fdsn.limit,
        timeout=request_timeout,
        max_retries=max_retries,
        backoff_base=0.05,
        backoff_max=0.2,
    )
    try:
        runner = Backfill(
            params,
            client,
            ProgressStore(settings),
            send,
            key_of=dedup_key,
            known=known or {},
            rate=rate,
        )
        return await runner.run(restart=restart)
    finally:
        await client.close()
        await producer.stop()


def backfill(
    settings: Settings, fdsn: FdsnEmulator, params: Params, **kw: Any
) -> Summary:
    return run_sync(_backfill(settings, fdsn, params, **kw))


def topic_messages(settings: Settings) -> list[tuple[str, dict[str, Any]]]:
    """Every message of the raw topic: (key, envelope)."""

    async def read() -> list[tuple[str, dict[str, Any]]]:
        consumer = AIOKafkaConsumer(
            **aiokafka_kwargs(settings), group_id=None, enable_auto_commit=False
        )
        await consumer.start()
        try:
            tps = [TopicPartition(settings.topic_raw, p) for p in range(PARTITIONS)]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            end = await consumer.end_offsets(tps)
            out: list[tuple[str, dict[str, Any]]] = []

            async def behind() -> bool:
                return any([await consumer.position(tp) < end[tp] for tp in tps])

            while await behind():
                batch = await consumer.getmany(timeout_ms=1000)
                for records in batch.values():
                    for r in records:
                        assert r.key is not None and r.value is not None
                        out.append((r.key.decode(), json.loads(r.value)))
            return out
        finally:
            await consumer.stop()

    return run_sync(read())


def test_a_range_of_more_than_the_limit_is_split_and_every_event_sent_once(
    env: Settings,
) -> None:
    """25,000 events against the service's real limit of 20,000 per query."""
    with FdsnEmulator(SINCE, UNTIL, count=25_000, tag="big") as fdsn:
        summary = backfill(env, fdsn, Params(SINCE, UNTIL), rate=20_000.0)
        log = fdsn.log()
    assert summary.state.finished
    assert (summary.fetched, summary.produced, summary.skipped) == (25_000, 25_000, 0)
    assert summary.state.events_expected == 25_000
    assert log[0].method == "count"
    queries = [r for r in log if r.method == "query"]
    assert all(r.status == 200 and (r.events or 0) <= 20_000 for r in queries)
    assert len(queries) == summary.slices >= 2
    # the slices tile the range: each starts where the previous one ended
    starts = [r.params["starttime"] for r in queries]
    assert starts[0] == "2024-01-01T00:00:00.000"
    assert queries[-1].params["endtime"] == "2024-01-30T23:59:59.999"
    # the produce rate is bounded: 25,000 events at 20,000/s take over a second
    assert summary.seconds >= (25_000 - 2_000) / 20_000

    messages = topic_messages(env)
    keys = Counter(key for key, _ in messages)
    assert len(messages) == 25_000
    assert set(keys) == set(fdsn.ids) and max(keys.values()) == 1
    _, first = messages[0]
    assert set(first) == {"feature", "fetched_at", "source_url"}  # the live envelope
    assert first["source_url"].startswith(fdsn.url + "/query?format=geojson")


def test_a_slice_over_the_limit_is_halved_when_the_count_is_unavailable(
    env: Settings,
) -> None:
    with FdsnEmulator(SINCE, UNTIL, count=1_000, limit=300, tag="half") as fdsn:
        fdsn.inject(Fault("count", status=503), Fault("count", status=503))
        summary = backfill(env, fdsn, Params(SINCE, UNTIL), max_retries=1)
        queries = fdsn.log("query")
    assert summary.state.finished and summary.produced == 1_000
    assert summary.state.events_expected is None
    assert summary.splits >= 2
    too_large = [r for r in queries if r.status == 400]
    assert len(too_large) == summary.splits
    assert [r.status for r in queries[:3]] == [400, 400, 200]  # 1000 -> 500 -> 250
    assert all((r.events or 0) <= 300 for r in queries if r.status == 200)
    assert len({k for k, _ in topic_messages(env)}) == 1_000


def test_pacing_retry_after_cut_body_and_503_are_honoured(env: Settings) -> None:
    with FdsnEmulator(SINCE, UNTIL, count=300, limit=100, tag="flt") as fdsn:
        fdsn.inject(
            Fault("query", status=429, retry_after="1"),
            Fault("query", cut=True),
            Fault("query", status=503),
        )
        summary = backfill(env, fdsn, Params(SINCE, UNTIL), requests_per_second=10.0)
        log = fdsn.log()
    assert summary.state.finished and summary.produced == 300
    statuses = [r.status for r in log if r.method == "query"]
    assert statuses[:3] == [429, 200, 503]  # the 200 is the one cut off mid-body
    assert summary.requests == len(log)
    gaps = [b.at - a.at for a, b in itertools.pairwise(log)]
    assert min(gaps) >= 0.1 * 0.9  # at most 10 requests per second
    assert gaps[1] >= 1.0  # the request after the 429 waited out its Retry-After
    assert sorted(k for k, _ in topic_messages(env)) == sorted(fdsn.ids)


def test_a_slow_answer_times_out_and_is_asked_again(env: Settings) -> None:
    with FdsnEmulator(SINCE, UNTIL, count=20, tag="slow") as fdsn:
        fdsn.inject(Fault("query", status=0, delay=2.0))
        summary = backfill(env, fdsn, Params(SINCE, UNTIL), request_timeout=0.5)
        queries = fdsn.log("query")
    assert summary.state.finished and summary.produced == 20
    assert [r.status for r in queries][:2] == [0, 200]  # held back, then asked again
    assert queries[1].at - queries[0].at >= 0.5


def test_interrupted_and_resumed_equals_uninterrupted(env: Settings) -> None:
    params = Params(SINCE, UNTIL, min_magnitude=1.0)
    with FdsnEmulator(SINCE, UNTIL, count=2_000, limit=400, tag="res") as fdsn:
        expected = {
            f["id"] for f in fdsn.features if (f["properties"]["mag"] or 0) >= 1
        }
        with pytest.raises(ConnectionError):
            backfill(env, fdsn, params, rate=1_000.0, fail_after=7)
        stopped = ProgressStore(env).open(params, source_url=fdsn.url)
        assert not stopped.finished and stopped.slices_done >= 1
        assert stopped.last_error and "broker went away" in stopped.last_error
        before = len(fdsn.log("query"))

        resumed = backfill(env, fdsn, params, rate=1_000.0)
        first = fdsn.log("query")[before]
        again = backfill(env, fdsn, params)
        after = len(fdsn.log())
    assert resumed.state.finished and resumed.resumed_from == stopped.done_until
    # the resumed run starts at the end of the last finished slice
    assert first.params["starttime"] == format_time(stopped.done_until)
    assert resumed.state.events_fetched == len(expected)
    assert resumed.state.slices_done == stopped.slices_done + resumed.slices
    keys = Counter(k for k, _ in topic_messages(env))
    assert set(keys) == expected  # every event, as if never interrupted
    # only the events of the slice cut short are sent twice
    assert sum(keys.values()) - len(expected) < 400
    # a finished backfill is not run again: no request, nothing sent
    assert again.already_finished and after == len(fdsn.log())
    assert sum(Counter(k for k, _ in topic_messages(env)).values()) == sum(
        keys.values()
    )


def test_an_empty_range_finishes_with_nothing_sent(env: Settings) -> None:
    empty = Params(SINCE - timedelta(days=10), SINCE)
    with FdsnEmulator(SINCE, UNTIL, count=10, tag="nil") as fdsn:
        summary = backfill(env, fdsn, empty)
        log = fdsn.log()
    assert summary.state.finished and summary.fetched == summary.produced == 0
    assert [(r.method, r.status) for r in log] == [("count", 200), ("query", 204)]
    assert topic_messages(env) == []


def test_events_the_live_fetcher_sent_at_the_same_updated_are_not_resent(
    env: Settings, kafka_admin: KafkaAdmin
) -> None:
    changelog = changelog_topic_name(env.app_id)
    kafka_admin.create_topic(changelog, partitions=1)
    with FdsnEmulator(SINCE, UNTIL, count=50, tag="dup") as fdsn:
        features = fdsn.features
        entries: list[tuple[str, int | None]] = [
            *((f["id"], f["properties"]["updated"]) for f in features[:10]),
            (features[10]["id"], features[10]["properties"]["updated"] - 1),  # older
            (features[11]["id"], features[11]["properties"]["updated"]),
            (features[11]["id"], None),  # then expired (tombstone)
        ]

        async def write() -> None:
            producer = AIOKafkaProducer(**aiokafka_kwargs(env))
            await producer.start()
            try:
                for key, value in entries:
                    await producer.send_and_wait(
                        changelog,
                        key=json.dumps(key).encode(),
                        value=None if value is None else json.dumps(value).encode(),
                    )
            finally:
                await producer.stop()

        run_sync(write())
        known = run_sync(load_sent_versions(env))
        assert len(known) == 11
        summary = backfill(env, fdsn, Params(SINCE, UNTIL), known=known)
        sent = {k for k, _ in topic_messages(env)}
        ids = fdsn.ids
    assert (summary.produced, summary.skipped) == (40, 10)
    assert summary.state.events_skipped == 10
    assert sent == set(ids[10:])


def test_a_service_that_keeps_failing_stops_with_the_reason(env: Settings) -> None:
    with FdsnEmulator(SINCE, UNTIL, count=10, tag="bad") as fdsn:
        fdsn.inject(*(Fault("query", status=503) for _ in range(3)))
        with pytest.raises(SourceError, match="answered HTTP 503"):
            backfill(env, fdsn, Params(SINCE, UNTIL), max_retries=2)
        state = ProgressStore(env).open(Params(SINCE, UNTIL), source_url=fdsn.url)
    assert not state.finished and state.slices_done == 0
    assert state.last_error is not None and "HTTP 503" in state.last_error
