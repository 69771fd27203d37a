"""Dead-letter redrive on the real stack: original bytes, exactly once, refusals."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg2
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from psycopg2 import sql
from psycopg2.extras import Json

from streamapp.db import get_engine, migrate
from streamapp.delivery import Outgoing
from streamapp.faust_ext import fetch_cluster
from streamapp.kafka import aiokafka_kwargs
from streamapp.queries import RedriveSelection
from streamapp.redrive import redrive
from streamapp.settings import Settings
from tests.support.aio import run_sync
from tests.support.kafka import KafkaAdmin
from tests.support.ports import free_port
from tests.support.workers import Worker

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
FAUST = Path(sys.executable).with_name("faust")
CAPTURE = ROOT / "tests" / "fixtures" / "usgs" / "all_hour_2017-12-03.geojson"


@dataclasses.dataclass
class Env:
    """One isolated deployment: app id, topics and schema of this test only."""

    settings: Settings
    environ: dict[str, str]

    @property
    def schema(self) -> str:
        return self.settings.postgres_schema


@pytest.fixture
def env(
    stack_ready: Settings,
    pg_schema: str,
    kafka_admin: KafkaAdmin,
    unique_name: Callable[..., str],
) -> Iterator[Env]:
    tag = unique_name("rd")
    topics = {
        "TOPIC_RAW": f"{tag}.raw",
        "TOPIC_CLEAN": f"{tag}.clean",
        "TOPIC_DEAD_LETTER": f"{tag}.dead-letter",
        "TOPIC_ACTIVITY": f"{tag}.activity",
        "TOPIC_ALERTS": f"{tag}.alerts",
    }
    for name in topics.values():
        kafka_admin.create_topic(name, partitions=stack_ready.topic_partitions)
    environ = dict(os.environ)
    environ.update(topics)
    environ.update(
        {"APP_ID": tag, "POSTGRES_SCHEMA": pg_schema, "PYTHONUNBUFFERED": "1"}
    )
    settings = dataclasses.replace(
        stack_ready,
        app_id=tag,
        postgres_schema=pg_schema,
        topic_raw=topics["TOPIC_RAW"],
        topic_clean=topics["TOPIC_CLEAN"],
        topic_dead_letter=topics["TOPIC_DEAD_LETTER"],
    )
    migrate(settings)
    yield Env(settings, environ)
    get_engine(settings).dispose()


def envelope(feature: dict[str, Any]) -> bytes:
    return json.dumps(
        {
            "feature": feature,
            "fetched_at": "2017-12-03T12:00:00+00:00",
            "source_url": "file:///capture.geojson",
        }
    ).encode("utf-8")


def features() -> list[dict[str, Any]]:
    return list(json.loads(CAPTURE.read_text(encoding="utf-8"))["features"])


def insert_letters(env: Env, letters: Sequence[dict[str, Any]]) -> list[int]:
    """Insert dead-letter rows as the dead-letter sink would; returns their ids."""
    ids: list[int] = []
    conn = psycopg2.connect(env.settings.database_url.get_secret_value())
    try:
        with conn, conn.cursor() as cur:
            for n, letter in enumerate(letters):
                cur.execute(
                    sql.SQL(
                        "INSERT INTO {} (source_topic, source_partition, source_offset,"
                        " key, payload, error_kind, error_message, error_detail,"
                        " failed_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
                        " RETURNING id"
                    ).format(sql.Identifier(env.schema, "dead_letters")),
                    (
                        letter.get("topic", env.settings.topic_raw),
                        0,
                        letter.get("offset", n),
                        letter.get("key"),
                        letter["payload"],
                        letter["kind"],
                        "rejected by an older validator",
                        Json(letter.get("detail", {})),
                        datetime.now(UTC),
                    ),
                )
                row = cur.fetchone()
                assert row is not None
                ids.append(int(row[0]))
    finally:
        conn.close()
    return ids


def redriven_at(env: Env) -> dict[int, datetime | None]:
    conn = psycopg2.connect(env.settings.database_url.get_secret_value())
    try:
        with conn, conn.cursor() as cur:
            cur.execute(
                sql.SQL("SELECT id, redriven_at FROM {} ORDER BY id").format(
                    sql.Identifier(env.schema, "dead_letters")
                )
            )
            return {int(i): at for i, at in cur.fetchall()}
    finally:
        conn.close()


async def _read_topic(
    settings: Settings, topic: str, expect: int, patience: float
) -> list[Any]:
    consumer = AIOKafkaConsumer(
        group_id=None, enable_auto_commit=False, **aiokafka_kwargs(settings)
    )
    await consumer.start()
    try:
        cluster = await fetch_cluster(consumer)
        tps = [
            TopicPartition(topic, p)
            for p in sorted(cluster.partitions_for_topic(topic) or ())
        ]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        out: list[Any] = []
        deadline = time.monotonic() + patience
        while time.monotonic() < deadline:
            batch = await consumer.getmany(*tps, timeout_ms=300)
            for records in batch.values():
                out.extend(records)
            if len(out) >= expect:
                # One more short read: more than expected would be a duplicate.
                batch = await consumer.getmany(*tps, timeout_ms=500)
                for records in batch.values():
                    out.extend(records)
                break
        return out
    finally:
        await consumer.stop()


def read_topic(
    settings: Settings, topic: str, expect: int, patience: float = 20.0
) -> list[Any]:
    return run_sync(_read_topic(settings, topic, expect, patience))


def faust_redrive(env: Env, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(FAUST), "-A", "streamapp", "redrive", *args],
        cwd=ROOT,
        env=env.environ,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def result_of(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    start = proc.stdout.index("{")
    end = proc.stdout.rindex("}") + 1
    return dict(json.loads(proc.stdout[start:end]))


# ------------------------------------------------------------------ the command
def test_command_redrives_original_bytes_once(env: Env) -> None:
    feature = features()[0]
    original = envelope(feature)
    good, truncated, garbage = insert_letters(
        env,
        [
            {"payload": original, "key": feature["id"].encode(), "kind": "schema"},
            {
                "payload": b'{"feature": {"id": "cut',
                "kind": "schema",
                "detail": {"_payload": {"truncated": True, "original_length": 999999}},
            },
            {"payload": b"\x00not json", "key": None, "kind": "not_json"},
        ],
    )

    dry = faust_redrive(env, "--kind", "schema", "--dry-run")
    assert dry.returncode == 0, dry.stderr[-2000:]
    assert [r["id"] for r in result_of(dry)["would_redrive"]] == [good]
    assert all(at is None for at in redriven_at(env).values())

    sent = faust_redrive(env, "--kind", "schema")
    assert sent.returncode == 0, sent.stderr[-2000:]
    assert result_of(sent)["redriven"] == [good]
    assert "redriven 1 dead letter(s)" in sent.stdout
    marks = redriven_at(env)
    assert (
        marks[good] is not None and marks[truncated] is None and marks[garbage] is None
    )

    records = read_topic(env.settings, env.settings.topic_raw, expect=1)
    assert len(records) == 1
    assert records[0].value == original  # byte for byte
    assert records[0].key == feature["id"].encode()
    assert (b"redrive.dead_letter_id", str(good).encode()) in [
        (k.encode(), v) for k, v in records[0].headers
    ]

    again = faust_redrive(env, "--id", str(good))
    assert again.returncode == 1
    assert str(good) in result_of(again)["already_redriven"]
    assert "refused, already redriven" in again.stdout
    cut = faust_redrive(env, "--id", str(truncated))
    assert cut.returncode == 1
    assert result_of(cut)["not_redrivable"] == [truncated]
    missing = faust_redrive(env, "--id", "987654")
    assert missing.returncode == 1 and result_of(missing)["not_found"] == [987654]
    assert (
        len(read_topic(env.settings, env.settings.topic_raw, expect=2, patience=3)) == 1
    )


def test_command_rejects_bad_arguments(env: Env) -> None:
    for args in ([], ["--since", "last week"], ["--kind", "bogus"]):
        proc = faust_redrive(env, *args)
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        assert "Traceback" not in proc.stderr


# ------------------------------------------------- the guarded step, in-process
def kafka_sender(
    settings: Settings, topic: str
) -> Callable[[Sequence[Outgoing]], Awaitable[None]]:
    """A sender that produces to ``topic`` on the real broker and awaits the acks."""

    async def send(messages: Sequence[Outgoing]) -> None:
        producer = AIOKafkaProducer(acks="all", **aiokafka_kwargs(settings))
        await producer.start()
        try:
            futures = [
                await producer.send(topic, m.value, key=m.key, headers=m.headers)
                for m in messages
            ]
            await asyncio.sleep(0.05)  # widen the window for concurrent redrives
            await asyncio.gather(*futures)
        finally:
            await producer.stop()

    return send


def test_concurrent_redrives_never_send_a_letter_twice(env: Env) -> None:
    ids = insert_letters(
        env,
        [{"payload": b'{"n": %d}' % n, "kind": "schema"} for n in range(40)],
    )
    send = kafka_sender(env.settings, env.settings.topic_raw)

    async def race() -> list[list[int]]:
        engine = get_engine(env.settings)
        results = await asyncio.gather(
            *(
                redrive(
                    engine,
                    env.settings,
                    RedriveSelection(kind="schema", limit=15),
                    send=send,
                )
                for _ in range(4)
            )
        )
        return [r.redriven for r in results]

    batches = run_sync(race())
    flat = [i for batch in batches for i in batch]
    assert sorted(flat) == ids  # every letter exactly once, across 4 racing redrives
    assert len(set(flat)) == len(flat)
    records = read_topic(env.settings, env.settings.topic_raw, expect=len(ids))
    assert sorted(r.value for r in records) == sorted(
        b'{"n": %d}' % n for n in range(40)
    )


def test_failed_send_leaves_letters_unmarked(env: Env) -> None:
    # 2 MB: more than the producer accepts in one request, a real send failure.
    (big,) = insert_letters(
        env, [{"payload": b"x" * (2 * 1024 * 1024), "kind": "schema"}]
    )
    (small,) = insert_letters(env, [{"payload": b"{}", "kind": "schema", "offset": 99}])
    send = kafka_sender(env.settings, env.settings.topic_raw)
    selection = RedriveSelection(ids=(big, small))

    with pytest.raises(Exception, match=r"(?i)size|large"):
        run_sync(redrive(get_engine(env.settings), env.settings, selection, send=send))
    marks = redriven_at(env)
    assert marks[big] is None and marks[small] is None  # nothing marked

    # After the fix (here: leave the big one out) the same letters can be redriven.
    result = run_sync(
        redrive(
            get_engine(env.settings),
            env.settings,
            RedriveSelection(ids=(small,)),
            send=send,
        )
    )
    assert result.redriven == [small]


# --------------------------------------------- the story, with a real worker
def _http(
    port: int, path: str, body: dict[str, Any] | None = None, token: str | None = None
) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", data=data, method="POST" if data else "GET"
    )
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def _count(env: Env, table: str) -> int:
    conn = psycopg2.connect(env.settings.database_url.get_secret_value())
    try:
        with conn, conn.cursor() as cur:
            cur.execute(
                sql.SQL("SELECT count(*) FROM {}").format(
                    sql.Identifier(env.schema, table)
                )
            )
            row = cur.fetchone()
            return int(row[0]) if row else 0
    finally:
        conn.close()


def _wait(
    what: str, predicate: Callable[[], bool], worker: Any, patience: float
) -> None:
    deadline = time.monotonic() + patience
    while time.monotonic() < deadline:
        worker.assert_alive()
        if predicate():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}:\n{worker.tail()}")


def test_redrive_after_a_validation_change_ends_in_earthquakes(
    env: Env, tmp_path: Path
) -> None:

    # Real events, each padded with an unknown (ignored) property to ~1.5 kB.
    padded = [
        {**f, "properties": {**f["properties"], "comment": "x" * 600}}
        for f in features()
    ]
    expected = {f["id"] for f in padded}
    feed = tmp_path / "padded.geojson"
    feed.write_text(
        json.dumps({"type": "FeatureCollection", "features": padded}), encoding="utf-8"
    )
    assert all(len(envelope(f)) > 1024 for f in padded)
    empty = tmp_path / "empty.geojson"
    empty.write_text('{"type": "FeatureCollection", "features": []}', encoding="utf-8")
    base = {
        **env.environ,
        "SOURCE": "replay",
        "FETCH_INTERVAL_SECONDS": "1",
        "SINK_BATCH_SECONDS": "0.2",
    }
    # 1. A validator that is too strict: every message is "too large".
    strict = Worker(
        {
            **base,
            "REPLAY_FILE": str(feed),
            "MAX_MESSAGE_BYTES": "1024",
            "WEB_PORT": str(free_port()),
        },
        tmp_path / "strict.log",
    ).start()
    try:
        strict.wait_healthy()
        _wait(
            "the too_large dead letters",
            lambda: _count(env, "dead_letters") >= len(expected),
            strict,
            120,
        )
    finally:
        strict.stop()
    assert _count(env, "earthquakes") == 0

    # 2. The fixed validator runs; the operator redrives the rejected messages.
    token = uuid.uuid4().hex
    port = free_port()
    fixed = Worker(
        {
            **base,
            "REPLAY_FILE": str(empty),
            "REDRIVE_TOKEN": token,
            "WEB_PORT": str(port),
        },
        tmp_path / "fixed.log",
    ).start()
    try:
        fixed.wait_healthy()
        status, body = _http(port, "/api/dead-letters/redrive", {"kind": "too_large"})
        assert status == 401, body
        status, body = _http(
            port, "/api/dead-letters/redrive", {"kind": "too_large"}, token=token
        )
        assert status == 200, body
        assert len(body["redriven"]) == len(expected)
        _wait(
            "the redriven events in earthquakes",
            lambda: _count(env, "earthquakes") == len(expected),
            fixed,
            120,
        )
        status, page = _http(port, "/api/earthquakes?limit=100")
        assert status == 200 and {i["id"] for i in page["items"]} == expected
        # 3. Redriving the same letters again is refused.
        first = body["redriven"][0]
        status, again = _http(
            port, "/api/dead-letters/redrive", {"ids": [first]}, token=token
        )
        assert status == 409 and str(first) in again["already_redriven"]
        status, again = _http(
            port, "/api/dead-letters/redrive", {"kind": "too_large"}, token=token
        )
        assert status == 200 and again["redriven"] == []
        proc = faust_redrive(env, "--id", str(first))
        assert proc.returncode == 1 and "already redriven" in proc.stdout
        assert _count(env, "dead_letters") == len(expected)  # no new failures
    finally:
        fixed.stop()
