"""End to end: old ids leave the fetcher's dedup table and its changelog for good.

A real worker with ``DEDUP_RETENTION_DAYS=0.01`` (14.4 minutes; a sweep every
8.64 s) fetches real 2024 events (far older than that) and a few fresh ones; once
the old ids are gone from the feed they are tombstoned in the changelog, a
restarted worker does not recover them (it sends them again when they come back,
and the newer revision of one of them reaches PostgreSQL), while the fresh ids,
younger than the retention, are remembered across the restart.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable
from typing import Any

import psycopg2
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from psycopg2 import sql

from streamapp.kafka import aiokafka_kwargs
from streamapp.settings import Settings, load_settings
from tests.support.aio import run_sync
from tests.support.feeds import FeedServer, load_capture
from tests.support.workers import Worker

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]


def document(features: list[dict[str, Any]]) -> dict[str, Any]:
    return {"type": "FeatureCollection", "metadata": {}, "features": features}


def read_topic(settings: Settings, topic: str) -> list[tuple[str, bytes | None]]:
    """Every record of partition 0 of a changelog: (key, value or None); the keys
    are JSON strings, as the table writes them."""

    async def run() -> list[tuple[str, bytes | None]]:
        consumer = AIOKafkaConsumer(
            enable_auto_commit=False, **aiokafka_kwargs(settings)
        )
        await consumer.start()
        try:
            tp = TopicPartition(topic, 0)
            consumer.assign([tp])
            await consumer.seek_to_beginning(tp)
            end = (await consumer.end_offsets([tp]))[tp]
            out: list[tuple[str, bytes | None]] = []
            while await consumer.position(tp) < end:
                batch = await consumer.getmany(tp, timeout_ms=1000)
                out.extend((json.loads(r.key), r.value) for r in batch.get(tp, []))
            return out
        finally:
            await consumer.stop()

    return run_sync(run())


def live_keys(records: list[tuple[str, bytes | None]]) -> dict[str, bytes]:
    """What a recovering worker rebuilds from a changelog: the last value per key,
    without the keys whose last record is a tombstone."""
    state: dict[str, bytes] = {}
    for key, value in records:
        if value is None:
            state.pop(key, None)
        else:
            state[key] = value
    return state


def stats(worker: Worker) -> dict[str, Any]:
    status, body = worker.get("/api/stats")
    assert status == 200, body
    return dict(body)


def wait_for(
    what: str, predicate: Callable[[], bool], worker: Worker, timeout: float = 120.0
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        worker.assert_alive()
        try:
            if predicate():
                return
        except (OSError, psycopg2.OperationalError):
            pass
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}:\n{worker.tail()}")


def stored_updated(settings: Settings, event_id: str) -> int | None:
    """``updated`` (epoch ms) of the event's row, or None."""
    query = sql.SQL(
        "SELECT (extract(epoch FROM updated) * 1000)::bigint FROM {}.{} WHERE id = %s"
    ).format(sql.Identifier(settings.postgres_schema), sql.Identifier("earthquakes"))
    conn = psycopg2.connect(settings.database_url.get_secret_value())
    try:
        with conn.cursor() as cur:
            try:
                cur.execute(query, (event_id,))
            except psycopg2.errors.UndefinedTable:
                return None
            row = cur.fetchone()
    finally:
        conn.close()
    return None if row is None else int(row[0])


def drop_schema(settings: Settings) -> None:
    conn = psycopg2.connect(settings.database_url.get_secret_value())
    try:
        with conn, conn.cursor() as cur:
            cur.execute(
                sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
                    sql.Identifier(settings.postgres_schema)
                )
            )
    finally:
        conn.close()


def test_expired_ids_are_tombstoned_not_recovered_and_sent_again(
    isolated_env: dict[str, str],
    feed: FeedServer,
    start_worker: Callable[..., Worker],
) -> None:
    env = isolated_env
    env.update(
        {
            "SOURCE": "usgs",
            "SOURCE_URL": feed.url,
            "DEDUP_RETENTION_DAYS": "0.01",
        }
    )
    settings = load_settings(env, env_file=None)
    changelog = f"{settings.app_id}-sent-versions-changelog"
    old = load_capture("all_hour_2024-05-31.geojson")["features"]
    now_ms = int(time.time() * 1000)
    fresh = []
    for i, feature in enumerate(old[:3]):
        copy_ = copy.deepcopy(feature)
        copy_["id"] = f"zzfresh{i}"
        copy_["properties"]["updated"] = now_ms
        fresh.append(copy_)
    old_ids = {f["id"] for f in old}
    fresh_ids = {f["id"] for f in fresh}
    try:
        # 1. Everything is sent once and remembered.
        feed.serve(document(old + fresh))
        worker = start_worker(env)
        worker.wait_healthy()
        wait_for("11 features sent", lambda: stats(worker)["produced"] == 11, worker)
        wait_for(
            "the changelog holds all 11 ids",
            lambda: (
                set(live_keys(read_topic(settings, changelog))) == old_ids | fresh_ids
            ),
            worker,
        )

        # 2. The old ids leave the feed: the sweep expires them (the fresh ones are
        # younger than the retention), with tombstones in the changelog.
        feed.serve(document(fresh))
        wait_for(
            "the old ids expired",
            lambda: stats(worker)["dedup_expired"] == len(old_ids),
            worker,
            timeout=60,
        )
        records = read_topic(settings, changelog)
        assert set(live_keys(records)) == fresh_ids
        tombstones = {key for key, value in records if value is None}
        assert tombstones == old_ids
        assert stats(worker)["produced"] == 11  # nothing re-sent meanwhile

        # 3. A restarted worker recovers the fresh ids only: the old ones come back
        # to the feed (one of them revised) and are all sent again; the fresh ones
        # are not.
        worker.stop()
        revised = copy.deepcopy(old[0])
        revised["properties"]["updated"] += 60_000
        revised["properties"]["mag"] = 4.2
        feed.serve(document([revised, *old[1:], *fresh]))
        polls = feed.requests
        restarted = start_worker(env, name="restarted")
        restarted.wait_healthy()
        wait_for("two polls", lambda: feed.requests >= polls + 2, restarted)
        after = stats(restarted)
        assert after["produced"] == len(old_ids), after
        assert after["skipped_unchanged"] >= len(fresh_ids), after
        assert after["dedup_expired"] == 0, after
        wait_for(
            "the revision stored",
            lambda: (
                stored_updated(settings, revised["id"])
                == revised["properties"]["updated"]
            ),
            restarted,
        )
        assert set(live_keys(read_topic(settings, changelog))) == old_ids | fresh_ids
    finally:
        drop_schema(settings)
