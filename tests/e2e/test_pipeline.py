"""End to end: a real worker fetches a local feed into Kafka and PostgreSQL."""

from __future__ import annotations

import asyncio
import copy
import json
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import psycopg2
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from psycopg2 import sql

from streamapp.faust_ext import fetch_cluster
from streamapp.settings import Settings, load_settings
from tests.support.aio import run_sync
from tests.support.feeds import FeedServer, load_capture
from tests.support.workers import Worker

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

CAPTURES = [
    "all_hour_2024-05-31.geojson",
    "all_hour_2017-12-03.geojson",
    "significant_week_2017.geojson",
    "all_day_2014-04-14.geojson",
]


def merged_feed() -> dict[str, Any]:
    """All real captures as one FeatureCollection (166 distinct events)."""
    features: list[dict[str, Any]] = []
    for name in CAPTURES:
        features.extend(load_capture(name)["features"])
    return {"type": "FeatureCollection", "metadata": {}, "features": features}


def ms_to_utc(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def expected_row(feature: dict[str, Any]) -> dict[str, Any]:
    """What the earthquakes row of a real feature must hold, column by column."""
    p = feature["properties"]
    lon, lat, depth = feature["geometry"]["coordinates"][:3]
    tsunami = p.get("tsunami")
    return {
        "id": feature["id"],
        "time": ms_to_utc(p["time"]),
        "updated": ms_to_utc(p["updated"]),
        "magnitude": None if p.get("mag") is None else float(p["mag"]),
        "mag_type": p.get("magType"),
        "place": p.get("place"),
        "longitude": float(lon),
        "latitude": float(lat),
        "depth": float(depth),
        "status": None if p.get("status") is None else p["status"].lower(),
        "event_type": p.get("type"),
        "tsunami": None if tsunami is None else bool(tsunami),
        "significance": p.get("sig"),
        "url": p.get("url"),
        "title": p.get("title"),
        "net": p.get("net"),
        "code": p.get("code"),
    }


class Db:
    """Reads the test's own PostgreSQL schema."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.schema = settings.postgres_schema

    def connect(self) -> Any:
        return psycopg2.connect(self.settings.database_url.get_secret_value())

    def query(self, query: sql.Composable, args: tuple[Any, ...] = ()) -> list[dict]:
        with self.connect() as conn, conn.cursor() as cur:
            cur.execute(query, args)
            names = [d[0] for d in cur.description]
            rows = [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
        conn.close()
        return rows

    def table(self, name: str) -> sql.Composable:
        schema, table = sql.Identifier(self.schema), sql.Identifier(name)
        return sql.SQL("{}.{}").format(schema, table)

    def quakes(self) -> dict[str, dict[str, Any]]:
        rows = self.query(sql.SQL("SELECT * FROM {}").format(self.table("earthquakes")))
        return {row["id"]: row for row in rows}

    def count(self, name: str) -> int:
        try:
            rows = self.query(
                sql.SQL("SELECT count(*) AS n FROM {}").format(self.table(name))
            )
        except psycopg2.errors.UndefinedTable:
            return 0
        return int(rows[0]["n"])

    def drop_schema(self) -> None:
        with self.connect() as conn, conn.cursor() as cur:
            cur.execute(
                sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
                    sql.Identifier(self.schema)
                )
            )
        conn.close()


def wait_for(
    what: str, predicate: Callable[[], bool], worker: Worker, timeout: float = 120.0
) -> float:
    """Poll ``predicate`` until true; fail with the worker log tail. Returns seconds."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        worker.assert_alive()
        try:
            if predicate():
                return time.monotonic() - start
        except psycopg2.OperationalError:
            pass
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}:\n{worker.tail()}")


def topic_size(settings: Settings, topic: str) -> int:
    """Messages in ``topic`` (sum of end offsets; our topics are never compacted)."""

    async def run() -> int:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=settings.kafka_bootstrap_servers,
            enable_auto_commit=False,
        )
        await consumer.start()
        try:
            cluster = await fetch_cluster(consumer)
            parts = cluster.partitions_for_topic(topic) or set()
            tps = [TopicPartition(topic, p) for p in parts]
            consumer.assign(tps)
            ends = await consumer.end_offsets(tps) if tps else {}
            return sum(ends.values())
        finally:
            await consumer.stop()

    return run_sync(run())


def produce_raw(settings: Settings, messages: list[tuple[bytes | None, bytes]]) -> None:
    """Write messages straight into the raw topic, as a hostile producer would."""

    async def run() -> None:
        producer = AIOKafkaProducer(
            bootstrap_servers=settings.kafka_bootstrap_servers, acks="all"
        )
        await producer.start()
        try:
            futures = [
                await producer.send(settings.topic_raw, key=key, value=value)
                for key, value in messages
            ]
            await asyncio.gather(*futures)
        finally:
            await producer.stop()

    run_sync(run())


def bad_messages() -> list[tuple[bytes | None, bytes]]:
    """50 hostile raw messages covering every validation error kind."""
    good = {"feature": load_capture("all_hour_2024-05-31.geojson")["features"][0]}
    out: list[tuple[bytes | None, bytes]] = []
    for i in range(50):
        case = i % 10
        if case == 0:
            out.append((b"k", b"\xff\xfe\xfa not utf-8 %d" % i))
        elif case == 1:
            out.append((None, b"{not json %d" % i))
        elif case == 2:
            out.append((b"k", b"[1, 2, %d]" % i))
        elif case == 3:
            out.append((b"k", b"[" * 5000 + b"]" * 5000))
        elif case == 4:
            out.append((b"k", b'{"feature": {"id": "x%d", "value": NaN}}' % i))
        elif case == 5:
            bad = copy.deepcopy(good)
            bad["feature"]["geometry"]["coordinates"][1] = 123.0 + i  # latitude
            bad["feature"]["id"] = f"badlat{i}"
            out.append((b"k", json.dumps(bad).encode()))
        elif case == 6:
            bad = copy.deepcopy(good)
            del bad["feature"]["id"]
            out.append((None, json.dumps(bad).encode()))
        elif case == 7:
            bad = copy.deepcopy(good)
            bad["feature"]["properties"]["time"] = "yesterday"
            bad["feature"]["id"] = f"badtime{i}"
            out.append((b"k", json.dumps(bad).encode()))
        elif case == 8:
            bad = copy.deepcopy(good)
            bad["feature"]["properties"]["mag"] = True
            bad["feature"]["id"] = f"badmag{i}"
            out.append((b"k", json.dumps(bad).encode()))
        else:
            out.append((b"k", b""))
    return out


@pytest.fixture
def pipeline(
    isolated_env: dict[str, str], feed: FeedServer
) -> Iterator[tuple[dict[str, str], Settings, Db]]:
    isolated_env["SOURCE"] = "usgs"
    isolated_env["SOURCE_URL"] = feed.url
    settings = load_settings(isolated_env, env_file=None)
    db = Db(settings)
    yield isolated_env, settings, db
    db.drop_schema()


def assert_rows_match(rows: dict[str, dict[str, Any]], features: list[dict]) -> None:
    assert set(rows) == {f["id"] for f in features}
    for feature in features:
        row = rows[feature["id"]]
        for column, value in expected_row(feature).items():
            assert row[column] == value, (feature["id"], column, row[column], value)
            if isinstance(value, datetime):
                assert row[column].utcoffset().total_seconds() == 0
        assert row["kafka_partition"] is not None and row["kafka_partition"] >= 0
        assert row["kafka_offset"] is not None and row["kafka_offset"] >= 0
        assert row["ingested_at"] is not None


def test_feed_to_postgres_revisions_bad_input_and_crash(
    pipeline: tuple[dict[str, str], Settings, Db],
    feed: FeedServer,
    start_worker: Callable[..., Worker],
) -> None:
    env, settings, db = pipeline
    document = merged_feed()
    features = document["features"]
    feed.serve(document)

    # 1. The worker fetches the feed; every feature becomes exactly one row.
    worker = start_worker(env)
    worker.wait_healthy()
    took = wait_for(
        "all features upserted",
        lambda: db.count("earthquakes") == len(features),
        worker,
    )
    assert_rows_match(db.quakes(), features)
    raw_after_first = topic_size(settings, settings.topic_raw)
    assert raw_after_first == len(features)
    status, stats = worker.get("/api/stats")
    assert status == 200
    assert stats["valid"] == len(features) and stats["invalid"] == 0
    assert stats["upserted"] == len(features)
    print(f"\n[e2e] {len(features)} features fetched->stored in {took:.2f}s")

    # 2. One event revised (larger `updated`) and one new: one update, one insert.
    revised = copy.deepcopy(document)
    target = revised["features"][0]
    target["properties"]["updated"] += 60_000
    target["properties"]["mag"] = 4.2
    target["properties"]["place"] = "revised place"
    extra = copy.deepcopy(features[1])
    extra["id"] = "zz_e2e_new_event"
    extra["properties"]["updated"] += 1
    revised["features"].append(extra)
    requests_before = feed.requests
    feed.serve(revised)
    wait_for(
        "revision and new event stored",
        lambda: (
            db.count("earthquakes") == len(features) + 1
            and db.quakes()[target["id"]]["magnitude"] == 4.2
        ),
        worker,
    )
    wait_for("two more polls", lambda: feed.requests >= requests_before + 2, worker)
    assert topic_size(settings, settings.topic_raw) == raw_after_first + 2
    assert_rows_match(db.quakes(), revised["features"])

    # 3. 50 hostile messages straight into the raw topic: all dead-lettered.
    before = db.quakes()
    produce_raw(settings, bad_messages())
    wait_for("50 dead letters stored", lambda: db.count("dead_letters") == 50, worker)
    letters = db.query(
        sql.SQL("SELECT * FROM {} ORDER BY source_offset").format(
            db.table("dead_letters")
        )
    )
    assert {row["error_kind"] for row in letters} >= {
        "not_utf8",
        "not_json",
        "not_object",
        "too_deep",
        "schema",
        "empty",
    }
    assert all(row["error_message"] for row in letters)
    assert all(row["source_topic"] == settings.topic_raw for row in letters)
    originals = {bytes(v) for _, v in bad_messages()}
    assert {bytes(row["payload"]) for row in letters} == originals
    assert db.quakes() == before
    assert worker.get("/health")[0] == 200

    # 4. SIGKILL and restart: still exactly right, unchanged events not re-sent.
    worker.kill()
    raw_before_restart = topic_size(settings, settings.topic_raw)
    restarted = start_worker(env, name="restarted")
    restarted.wait_healthy()
    polls = feed.requests
    wait_for("three polls after restart", lambda: feed.requests >= polls + 3, restarted)
    time.sleep(2)  # let anything (wrongly) re-sent reach the table
    assert topic_size(settings, settings.topic_raw) == raw_before_restart
    assert db.count("earthquakes") == len(features) + 1
    assert db.count("dead_letters") == 50
    assert_rows_match(db.quakes(), revised["features"])


def test_one_worker_drains_20k_raw_messages_exactly(
    pipeline: tuple[dict[str, str], Settings, Db],
    feed: FeedServer,
    start_worker: Callable[..., Worker],
) -> None:
    """20,000 raw messages (2% invalid, 5% revisions) end exactly once, fast."""
    from bench.generate import make_dataset

    env, settings, db = pipeline
    data = make_dataset(20_000, invalid_share=0.02, revision_share=0.05)
    produce_raw(settings, [(m.key, m.value) for m in data.messages])

    worker = start_worker(env)
    worker.wait_healthy()
    wait_for("first row", lambda: db.count("earthquakes") > 0, worker, timeout=120)
    start = time.monotonic()
    wait_for(
        "all rows and dead letters",
        lambda: (
            db.count("earthquakes") == data.valid_ids
            and db.count("dead_letters") == data.invalid
        ),
        worker,
        timeout=600,
    )
    elapsed = time.monotonic() - start
    rows = db.query(
        sql.SQL(
            "SELECT count(*) AS n, count(DISTINCT id) AS ids,"
            " sum((extract(epoch FROM updated - time) * 1000)::bigint) AS lag"
            " FROM {}"
        ).format(db.table("earthquakes"))
    )[0]
    assert rows["n"] == rows["ids"] == data.valid_ids
    assert int(rows["lag"]) == data.lag_checksum_ms  # every latest revision won
    kinds = db.query(
        sql.SQL("SELECT error_kind, count(*) AS n FROM {} GROUP BY 1").format(
            db.table("dead_letters")
        )
    )
    assert {r["error_kind"]: r["n"] for r in kinds} == data.invalid_by_kind
    status, stats = worker.get("/api/stats")
    assert status == 200
    assert stats["valid"] + stats["invalid"] == data.n
    print(
        f"\n[e2e] one worker: {data.n} raw messages -> {data.valid_ids} rows +"
        f" {data.invalid} dead letters in {elapsed:.2f}s"
        f" = {data.n / elapsed:,.0f} events/s (first row to last)"
    )
