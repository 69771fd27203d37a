"""streamapp.sinks against the real PostgreSQL: upserts, rejects, replays, outages."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import random
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg2
import pytest
from psycopg2 import sql

from models.records import DeadLetter, Quake
from streamapp import db
from streamapp.settings import Settings
from streamapp.sinks import (
    QUAKE_TABLE_COLUMNS,
    DeadLetterSink,
    Item,
    QuakeSink,
    quake_row,
    quake_row_from_json,
)
from streamapp.stats import stats
from tests.support.sinks import FakeMessage, FakeReceived, real_quakes

pytestmark = pytest.mark.integration

T0 = datetime(2024, 5, 31, 12, 0, tzinfo=UTC)
METHODS = ["copy", "values"]


@pytest.fixture
def schema_settings(stack_ready: Settings, pg_schema: str) -> Iterator[Settings]:
    """Settings with this test's schema (migrated) and a unique application_name."""
    settings = dataclasses.replace(
        stack_ready, postgres_schema=pg_schema, app_id=f"sink-{uuid.uuid4().hex[:12]}"
    )
    db.migrate(settings)
    try:
        yield settings
    finally:
        db.get_engine(settings).dispose()


def quake(
    ident: str, minutes: int = 0, offset: int = 0, **extra: Any
) -> dict[str, Any]:
    """A complete ``earthquakes`` row as the sink receives it."""
    row: dict[str, Any] = {
        "id": ident,
        "time": T0,
        "updated": T0 + timedelta(minutes=minutes),
        "magnitude": 2.5,
        "mag_type": "ml",
        "place": "10 km NE of Somewhere, Alaska",
        "longitude": -150.5,
        "latitude": 61.25,
        "depth": 12.0,
        "status": "automatic",
        "event_type": "earthquake",
        "tsunami": False,
        "significance": 96,
        "url": f"https://earthquake.usgs.gov/earthquakes/eventpage/{ident}",
        "felt": None,
        "cdi": None,
        "mmi": None,
        "alert": None,
        "net": "ak",
        "code": ident[2:],
        "title": f"M 2.5 - {ident}",
        "fetched_at": T0,
        "source_url": "https://example.test/all_hour.geojson",
        "raw_partition": 1,
        "raw_offset": offset,
        "kafka_partition": 1,
        "kafka_offset": offset,
    }
    row.update(extra)
    return row


def rows_of(settings: Settings, columns: str = "id, updated, magnitude") -> list[Any]:
    with db.transaction(settings) as cur:
        cur.execute(f"SELECT {columns} FROM earthquakes ORDER BY id")
        return cur.fetchall()


async def write(sink: QuakeSink | DeadLetterSink, rows: list[dict[str, Any]]) -> Any:
    for row in rows:
        sink.add(Item(row, ref=row.get("id") or row.get("source_offset")))
    return await sink.flush()


@pytest.mark.parametrize("method", METHODS)
async def test_upsert_newer_wins_older_is_ignored(
    schema_settings: Settings, method: Any
) -> None:
    sink = QuakeSink(schema_settings, method=method)
    try:
        assert (
            await write(sink, [quake("ak1", 5, magnitude=2.0), quake("ak2", 5)]) == []
        )
        # a newer revision replaces the row; an older one (late redelivery) does not
        await write(sink, [quake("ak1", 9, 10, magnitude=3.0)])
        await write(sink, [quake("ak2", 1, 11, magnitude=9.9)])
        # a redelivery of the same revision changes nothing either
        await write(sink, [quake("ak1", 9, 12, magnitude=7.7)])
        got = rows_of(schema_settings, "id, updated, magnitude, kafka_offset")
        assert got == [
            ("ak1", T0 + timedelta(minutes=9), 3.0, 10),
            ("ak2", T0 + timedelta(minutes=5), 2.5, 0),
        ]
    finally:
        sink.close()


@pytest.mark.parametrize("method", METHODS)
async def test_duplicates_in_one_batch_keep_the_latest(
    schema_settings: Settings, method: Any
) -> None:
    sink = QuakeSink(schema_settings, method=method)
    try:
        batch = [
            quake("ak1", 1, 1, magnitude=1.0),
            quake("ak1", 3, 2, magnitude=3.0),
            quake("ak1", 2, 3, magnitude=2.0),
            quake("ak2", 1, 4, magnitude=1.0),
            quake("ak2", 1, 5, magnitude=1.5),  # same updated: later offset wins
        ]
        assert await write(sink, batch) == []
        assert rows_of(schema_settings) == [
            ("ak1", T0 + timedelta(minutes=3), 3.0),
            ("ak2", T0 + timedelta(minutes=1), 1.5),
        ]
    finally:
        sink.close()


@pytest.mark.parametrize("method", METHODS)
async def test_every_column_round_trips(schema_settings: Settings, method: Any) -> None:
    sink = QuakeSink(schema_settings, method=method)
    row = quake(
        "us7000abcd",
        4,
        42,
        place='Tab\there, "quoted", back\\slash, new\nline, ünïcødé',
        tsunami=1,
        felt=12,
        cdi=3.4,
        mmi=4.1,
        alert="green",
        magnitude=None,
    )
    try:
        assert await write(sink, [row]) == []
        columns = ", ".join(c for c in row)
        (got,) = rows_of(schema_settings, columns)
        expected = dict(row, tsunami=True)
        assert dict(zip(row, got, strict=True)) == expected
    finally:
        sink.close()


@pytest.mark.parametrize("method", METHODS)
async def test_one_bad_row_in_fifty_is_rejected_the_rest_written(
    schema_settings: Settings, method: Any
) -> None:
    sink = QuakeSink(schema_settings, method=method)
    rows = [quake(f"ak{i:03d}", offset=i) for i in range(50)]
    rows[17] = quake("ak017", offset=17, latitude=95.0)  # violates the CHECK
    try:
        rejected = await write(sink, rows)
        assert [r.item.ref for r in rejected] == ["ak017"]
        assert rejected[0].sqlstate == "23514"
        assert "check constraint" in rejected[0].error
        ids = [r[0] for r in rows_of(schema_settings)]
        assert len(ids) == 49
        assert "ak017" not in ids
    finally:
        sink.close()


@pytest.mark.parametrize("method", METHODS)
async def test_values_postgres_refuses_are_isolated(
    schema_settings: Settings, method: Any
) -> None:
    sink = QuakeSink(schema_settings, method=method)
    rows = [
        quake("ok1"),
        quake("nul", place="nul\x00byte"),  # text cannot hold NUL
        quake("nan", magnitude=float("nan")),  # fails the magnitude CHECK
        quake("deep", depth=5000.0),
        quake("surrogate", title="lone \ud800 surrogate"),  # not encodable
        quake("ok2"),
    ]
    try:
        rejected = await write(sink, rows)
        assert sorted(r.item.ref for r in rejected) == [
            "deep",
            "nan",
            "nul",
            "surrogate",
        ]
        assert [r[0] for r in rows_of(schema_settings)] == ["ok1", "ok2"]
    finally:
        sink.close()


@pytest.mark.parametrize("method", METHODS)
async def test_fast_json_path_stores_what_the_record_path_stores(
    schema_settings: Settings, method: Any
) -> None:
    """Every real capture, written once from the clean-topic JSON (the agent's fast
    path) and once from ``Quake`` records: the two tables are identical."""

    other = dataclasses.replace(
        schema_settings, postgres_schema=f"{schema_settings.postgres_schema}_rec"[:63]
    )
    db.migrate(other)
    fast_sink = QuakeSink(schema_settings, method=method)
    record_sink = QuakeSink(other, method=method)
    try:
        for offset, q in enumerate(real_quakes()):
            data = bytes(q.dumps())
            fast = quake_row_from_json(data, partition=offset % 4, offset=offset)
            assert fast is not None
            fast_sink.add(Item(fast))
            record_sink.add(
                Item(quake_row(Quake.loads(data), partition=offset % 4, offset=offset))
            )
        assert await fast_sink.flush() == []
        assert await record_sink.flush() == []
        columns = ", ".join(QUAKE_TABLE_COLUMNS)
        fast_rows = rows_of(schema_settings, columns)
        record_rows = rows_of(other, columns)
        assert len(fast_rows) > 100
        assert fast_rows == record_rows
    finally:
        fast_sink.close()
        record_sink.close()
        with db.transaction(other) as cur:
            cur.execute(
                sql.SQL("DROP SCHEMA {} CASCADE").format(
                    sql.Identifier(other.postgres_schema)
                )
            )
        db.get_engine(other).dispose()


def dead_letter(offset: int, **extra: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "source_topic": "earthquakes.raw",
        "source_partition": 2,
        "source_offset": offset,
        "key": b"ak1",
        "payload": b"\xff\x00not json",
        "error_kind": "not_utf8",
        "error_message": "the value is not UTF-8",
        "error_detail": {"position": 0, "fields": {"id": ["missing"]}},
        "failed_at": T0,
    }
    row.update(extra)
    return row


async def test_dead_letters_are_idempotent_on_replay(schema_settings: Settings) -> None:
    sink = DeadLetterSink(schema_settings)
    try:
        batch = [dead_letter(i) for i in range(5)]
        assert await write(sink, batch) == []
        # a replay (crash before the ack), including duplicates within one batch
        assert await write(sink, [*batch, dead_letter(2), dead_letter(5)]) == []
        with db.transaction(schema_settings) as cur:
            cur.execute(
                "SELECT source_offset, key, payload, error_kind, error_detail"
                " FROM dead_letters ORDER BY source_offset"
            )
            got = cur.fetchall()
        assert [g[0] for g in got] == [0, 1, 2, 3, 4, 5]
        assert bytes(got[0][1]) == b"ak1"
        assert bytes(got[0][2]) == b"\xff\x00not json"
        assert got[0][3] == "not_utf8"
        assert got[0][4] == {"position": 0, "fields": {"id": ["missing"]}}
    finally:
        sink.close()


async def test_hostile_dead_letters_are_stored(schema_settings: Settings) -> None:
    sink = DeadLetterSink(schema_settings)
    big = os.urandom(3 * 1024 * 1024)
    try:
        rows = [
            dead_letter(0, error_message="nul\x00here", error_detail={"k\x00": "\x00"}),
            dead_letter(1, error_detail={"x": float("inf"), "s": "\ud800"}),
            dead_letter(2, key=None, payload=b""),
            *[dead_letter(10 + i, payload=big) for i in range(8)],  # > one page
        ]
        assert await write(sink, rows) == []
        with db.transaction(schema_settings) as cur:
            cur.execute(
                "SELECT count(*), sum(length(payload)) FROM dead_letters"
                " WHERE source_offset >= 10"
            )
            assert cur.fetchone() == (8, 8 * len(big))
            cur.execute("SELECT key, payload FROM dead_letters WHERE source_offset = 2")
            assert cur.fetchone() == (None, b"")
    finally:
        sink.close()


def _backends(settings: Settings, waiting: bool = False) -> list[int]:
    query = "SELECT pid FROM pg_stat_activity WHERE application_name = %s"
    if waiting:
        query += " AND wait_event_type = 'Lock'"
    with (
        psycopg2.connect(settings.database_url.get_secret_value()) as conn,
        conn.cursor() as cur,
    ):
        cur.execute(query, (settings.app_id,))
        pids = [row[0] for row in cur.fetchall()]
    conn.close()
    return pids


def _terminate(settings: Settings) -> int:
    with (
        psycopg2.connect(settings.database_url.get_secret_value()) as conn,
        conn.cursor() as cur,
    ):
        cur.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE application_name = %s",
            (settings.app_id,),
        )
        row = cur.fetchone()
    conn.close()
    return int(row[0]) if row else 0


async def _wait_until(predicate: Any, patience: float = 30.0) -> None:
    deadline = time.monotonic() + patience
    while not await asyncio.to_thread(predicate):
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for the sink")
        await asyncio.sleep(0.05)


async def test_sink_recovers_when_its_backends_are_terminated(
    schema_settings: Settings,
) -> None:
    """Outage simulation: the sink's connections are killed (pg_terminate_backend)
    while it writes, twice in a row; it retries the same batch and gets through."""
    sink = QuakeSink(schema_settings, min_backoff=0.05, max_backoff=0.2)
    assert await write(sink, [quake("ak1", 0, 1)]) == []
    before = stats.snapshot()["sink_retries"]
    # A second session holds the row lock, so the sink's upsert of ak1 waits on
    # it: a write is provably in flight when its backend is terminated.
    blocker = psycopg2.connect(schema_settings.database_url.get_secret_value())
    try:
        with blocker.cursor() as cur:
            cur.execute(
                sql.SQL("SELECT id FROM {} WHERE id = 'ak1' FOR UPDATE").format(
                    db.qualified(schema_settings.postgres_schema, "earthquakes")
                )
            )
        batch = [quake("ak1", 5, 2, magnitude=5.0)] + [
            quake(f"ak{i:03d}", 1, 100 + i) for i in range(100, 300)
        ]
        for row in batch:
            sink.add(Item(row, ref=row["id"]))
        flush = asyncio.ensure_future(sink.flush())
        for round_ in range(1, 3):
            await _wait_until(lambda: bool(_backends(schema_settings, waiting=True)))
            assert await asyncio.to_thread(_terminate, schema_settings) >= 1
            await _wait_until(lambda r=round_: sink.retries >= r)
        assert not flush.done()  # still retrying the same batch: nothing skipped
        blocker.rollback()  # the "outage" ends
        rejected = await asyncio.wait_for(flush, 60)
    finally:
        blocker.close()
        sink.close()
    assert rejected == []
    assert sink.retries >= 2
    assert stats.snapshot()["sink_retries"] - before >= 2
    got = rows_of(schema_settings, "id, magnitude")
    assert len(got) == 201
    assert ("ak1", 5.0) in got


# ----------------------------------------------------------------- measurement


def bench_messages(n: int, revision: int = 0, seed: int = 1) -> list[bytes]:
    """``n`` clean-topic values (``Quake.dumps()``, ~700 bytes each), deterministic."""

    rnd = random.Random(seed)
    out = []
    for i in range(n):
        row = quake(
            f"us{i:08d}",
            5 + revision,
            i,
            time=T0 + timedelta(seconds=i),
            magnitude=round(rnd.uniform(-1, 7), 2),
            longitude=rnd.uniform(-180, 180),
            latitude=rnd.uniform(-90, 90),
            depth=rnd.uniform(0, 600),
            significance=rnd.randint(0, 900),
        )
        del row["kafka_partition"], row["kafka_offset"]
        out.append(bytes(Quake(**row).dumps()))
    return out


def _server_cpu(settings: Settings) -> float | None:
    """CPU seconds used so far by the sink's PostgreSQL backends (local server only:
    read from /proc), so the figures hold even on a busy machine."""
    pids = _backends(settings)
    total = 0
    try:
        for pid in pids:
            with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime + stime, in ticks
    except OSError:
        return None
    return total / os.sysconf("SC_CLK_TCK")


@pytest.mark.skipif(
    not os.environ.get("STREAMAPP_SINK_BENCH"),
    reason="measurement, not a test: set STREAMAPP_SINK_BENCH=1 (and use -s)",
)
async def test_measure_upsert_rates(schema_settings: Settings) -> None:
    """Prints the sink's rates: clean-topic JSON -> committed rows, per method and
    batch size, for fresh inserts and for updates of every row; CPU per row of this
    process (decode, format, driver) and of the PostgreSQL backends; decode costs."""

    n = int(os.environ.get("STREAMAPP_SINK_BENCH_ROWS", "50000"))
    wanted = os.environ.get("STREAMAPP_SINK_BENCH_BATCHES", "")
    batches = [int(b) for b in wanted.split(",") if b] or [100, 500, 2000, n]
    methods = os.environ.get("STREAMAPP_SINK_BENCH_METHODS", "copy,values").split(",")
    messages = [bench_messages(n, 0), bench_messages(n, 1)]
    started = time.process_time()
    for data in messages[0][:5000]:
        quake_row(Quake.loads(data), partition=0, offset=0)
    record_cost = (time.process_time() - started) / 5000 * 1e6
    started = time.process_time()
    for data in messages[0]:
        quake_row_from_json(data, partition=0, offset=0)
    json_cost = (time.process_time() - started) / n * 1e6
    print(
        f"\ndecode CPU per event: Quake.loads+to_row {record_cost:.1f} us, "
        f"quake_row_from_json {json_cost:.1f} us; load average {os.getloadavg()}"
    )
    print(f"clean JSON -> committed rows, {n} events, one transaction per batch")
    print(
        f"{'method':7} {'batch':>6} {'phase':7} {'rows/s':>8}"
        f" {'client us/row':>14} {'server us/row':>14}"
    )
    for method in methods:
        for size in batches:
            with db.transaction(schema_settings) as cur:
                cur.execute("TRUNCATE earthquakes")
            sink = QuakeSink(schema_settings, method=method)  # type: ignore[arg-type]
            for phase, data in zip(("insert", "update"), messages, strict=True):
                server = _server_cpu(schema_settings)
                client = time.process_time()
                started = time.perf_counter()
                for i in range(0, n, size):
                    for offset, value in enumerate(data[i : i + size], i):
                        row = quake_row_from_json(value, partition=0, offset=offset)
                        sink.add(Item(row))
                    assert await sink.flush() == []
                rate = n / (time.perf_counter() - started)
                client_us = (time.process_time() - client) / n * 1e6
                after = _server_cpu(schema_settings)
                server_us = (
                    f"{(after - server) / n * 1e6:14.1f}"
                    if server is not None and after is not None
                    else f"{'n/a':>14}"
                )
                print(
                    f"{method:7} {size:>6} {phase:7} {rate:>8,.0f}"
                    f" {client_us:>14.1f} {server_us}"
                )
            sink.close()


async def test_store_quake_batch_against_the_database(
    schema_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The agent's batch step with the real database: good events upserted, the row
    PostgreSQL refuses and an undecodable message dead-lettered, all acked after."""
    from agents import store

    acked: list[int] = []
    sent: list[Any] = []

    async def fake_deliver(messages: list[Any]) -> int:
        sent.extend(messages)
        return 1

    monkeypatch.setattr(store, "deliver", fake_deliver)

    def value(ident: str, minutes: int = 0, **extra: Any) -> bytes:
        row = quake(ident, minutes, **extra)
        del row["kafka_partition"], row["kafka_offset"]
        return bytes(Quake(**row).dumps())

    received = FakeReceived(
        [
            FakeMessage("clean", 1, 10, b"ak1", value("ak1")),
            FakeMessage("clean", 1, 11, b"ak2", value("ak2", depth=-50.0)),
            FakeMessage("clean", 1, 12, b"ak3", b"\x00garbage"),
            FakeMessage("clean", 1, 13, b"ak4", value("ak4", minutes=3)),
        ],
        acked,
    )
    sink = QuakeSink(schema_settings)
    try:
        stored = await store.store_quake_batch(received, sink)  # type: ignore[arg-type]
    finally:
        sink.close()
    assert stored == 2
    assert acked == [10, 11, 12, 13]
    assert rows_of(schema_settings, "id, kafka_partition, kafka_offset") == [
        ("ak1", 1, 10),
        ("ak4", 1, 13),
    ]
    letters = sorted(
        (DeadLetter.loads(m.value) for m in sent), key=lambda d: d.source_offset
    )
    assert [(d.source_offset, d.error_kind) for d in letters] == [
        (11, "sink_rejected"),
        (12, "schema"),
    ]
    assert letters[0].error_detail["sqlstate"] == "23514"
    assert "depth" in letters[0].error_message
    assert "postgresql://" not in letters[0].error_message
    assert letters[0].payload_bytes() == value("ak2", depth=-50.0)
