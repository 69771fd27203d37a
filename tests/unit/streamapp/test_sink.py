"""streamapp.sink and the agents.store batch logic, without a database or broker."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from psycopg2 import sql
from psycopg2.extras import Json

from streamapp import sink as sink_mod
from streamapp.exceptions import PermanentSinkError, TransientSinkError
from streamapp.settings import Settings, load_settings
from streamapp.sink import (
    DEAD_LETTER_COLUMNS,
    QUAKE_COLUMNS,
    DeadLetterSink,
    Item,
    QuakeSink,
    Rejected,
    Sink,
    backoff_delay,
    build_dead_letter_insert,
    build_quake_copy,
    build_quake_upsert,
    dedupe_latest,
)
from streamapp.stats import stats

T0 = datetime(2024, 5, 31, 12, 0, tzinfo=UTC)


@pytest.fixture
def settings() -> Settings:
    return load_settings({"POSTGRES_SCHEMA": "unit_sink"}, env_file=None)


async def _no_sleep(_: float) -> None:
    await asyncio.sleep(0)


def _row(ident: str, minutes: int = 0, offset: int = 0, **extra: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "id": ident,
        "time": T0,
        "updated": T0 + timedelta(minutes=minutes),
        "longitude": 1.0,
        "latitude": 2.0,
        "depth": 3.0,
        "kafka_partition": 0,
        "kafka_offset": offset,
    }
    row.update(extra)
    return row


# ------------------------------------------------------------------------- dedupe


def test_dedupe_keeps_the_largest_updated_per_id() -> None:
    items = [
        Item(_row("b", minutes=1, offset=1), "b1"),
        Item(_row("a", minutes=5, offset=2), "a5"),
        Item(_row("b", minutes=3, offset=3), "b3"),
        Item(_row("a", minutes=2, offset=4), "a2"),  # older revision arrives later
        Item(_row("c", minutes=0, offset=5), "c0"),
    ]
    kept = dedupe_latest(items)
    assert [item.ref for item in kept] == ["a5", "b3", "c0"]  # sorted by id


def test_dedupe_tie_on_updated_keeps_the_later_offset() -> None:
    items = [
        Item(_row("a", 1, offset=7), "first"),
        Item(_row("a", 1, offset=9), "last"),
    ]
    assert [item.ref for item in dedupe_latest(items)] == ["last"]


def test_dedupe_accepts_iso_text_times() -> None:
    items = [
        Item({"id": "a", "updated": "2024-05-31T12:05:00Z", "kafka_offset": 1}, "new"),
        Item({"id": "a", "updated": "2024-05-31T12:01:00+00:00", "kafka_offset": 2}, 0),
    ]
    assert [item.ref for item in dedupe_latest(items)] == ["new"]


# ------------------------------------------------------------------ SQL composition


def _pieces(composable: sql.Composable) -> list[sql.Composable]:
    if isinstance(composable, sql.Composed):
        out: list[sql.Composable] = []
        for part in composable.seq:
            out.extend(_pieces(part))
        return out
    return [composable]


HOSTILE = 'evil"; DROP TABLE earthquakes; --'


@pytest.mark.parametrize(
    ("build", "names_the_table"),
    [
        (build_quake_upsert, True),
        (build_dead_letter_insert, True),
        (lambda s: build_quake_copy(s)[0], True),  # CREATE TEMP TABLE ... AS
        (lambda s: build_quake_copy(s)[1], False),  # COPY into the temp table
        (lambda s: build_quake_copy(s)[2], True),  # INSERT ... SELECT ... ON CONFLICT
    ],
)
def test_sql_is_built_from_identifiers_only(build: Any, names_the_table: bool) -> None:
    # Settings() bypasses validation on purpose: even a hostile schema name is data
    # that only ever travels inside an Identifier.
    settings = Settings(postgres_schema=HOSTILE)
    statement = build(settings)
    pieces = _pieces(statement)
    assert all(isinstance(p, sql.SQL | sql.Identifier) for p in pieces), pieces
    literals = "".join(p.string for p in pieces if isinstance(p, sql.SQL))
    assert HOSTILE not in literals
    assert '"' not in literals  # no hand-made quoting anywhere
    identifiers = [p.strings for p in pieces if isinstance(p, sql.Identifier)]
    assert any(HOSTILE in strings for strings in identifiers) is names_the_table


def test_upsert_updates_only_when_newer(settings: Settings) -> None:
    pieces = _pieces(build_quake_upsert(settings))
    literals = " ".join(p.string for p in pieces if isinstance(p, sql.SQL))
    assert "ON CONFLICT" in literals
    assert "DO UPDATE SET" in literals
    assert "WHERE EXCLUDED." in literals
    assert " > " in literals
    assert literals.count("%s") == 1  # the VALUES placeholder of execute_values
    names = [p.strings for p in pieces if isinstance(p, sql.Identifier)]
    assert ("unit_sink", "earthquakes") in names
    for column in QUAKE_COLUMNS:
        assert (column,) in names


def test_dead_letter_insert_ignores_replays(settings: Settings) -> None:
    pieces = _pieces(build_dead_letter_insert(settings))
    literals = " ".join(p.string for p in pieces if isinstance(p, sql.SQL))
    assert "DO NOTHING" in literals
    names = [p.strings for p in pieces if isinstance(p, sql.Identifier)]
    for column in DEAD_LETTER_COLUMNS:
        assert (column,) in names


# ---------------------------------------------------------------- retry and bisect


@dataclass
class FakeSink(Sink):
    """A sink whose database is a list; failures are scripted."""

    settings: Settings
    transient_failures: int = 0
    bad: set[str] = field(default_factory=set)
    calls: list[list[str]] = field(default_factory=list)
    written: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        Sink.__init__(self, self.settings, sleep=_no_sleep)

    def write_batch(self, items: Sequence[Item]) -> None:
        ids = [str(item.row["id"]) for item in items]
        self.calls.append(ids)
        if self.transient_failures:
            self.transient_failures -= 1
            raise TransientSinkError("server closed the connection unexpectedly")
        refused = [i for i in ids if i in self.bad]
        if refused:
            raise PermanentSinkError(f"check constraint violated by {refused[0]}")
        self.written.extend(ids)


async def test_transient_errors_retry_the_same_batch_in_place(
    settings: Settings,
) -> None:
    sink = FakeSink(settings, transient_failures=2)
    before = stats.snapshot()["sink_retries"]
    for i in range(10):
        sink.add(Item({"id": f"e{i}"}))
    rejected = await sink.flush()
    assert rejected == []
    expected = [f"e{i}" for i in range(10)]
    assert sink.calls == [expected, expected, expected]  # same batch, three tries
    assert sink.written == expected  # nothing skipped, nothing twice
    assert stats.snapshot()["sink_retries"] - before == 2
    assert sink.retries == 2
    assert len(sink) == 0
    sink.close()


async def test_bisection_isolates_exactly_the_bad_rows(settings: Settings) -> None:
    ids = [f"e{i:03d}" for i in range(50)]
    bad = {"e007", "e031", "e032"}
    sink = FakeSink(settings, bad=bad)
    for i in ids:
        sink.add(Item({"id": i}, ref=f"event-{i}"))
    rejected = await sink.flush()
    assert sorted(r.item.row["id"] for r in rejected) == sorted(bad)
    assert all(r.item.ref == f"event-{r.item.row['id']}" for r in rejected)
    assert all("check constraint" in r.error for r in rejected)
    assert sorted(sink.written) == sorted(set(ids) - bad)
    assert len(sink.written) == len(set(sink.written))  # each good row once
    # 3 bad rows in 50: far fewer round trips than row by row
    assert len(sink.calls) < 40
    sink.close()


async def test_bisection_retries_transient_errors_of_a_half(settings: Settings) -> None:
    sink = FakeSink(settings, bad={"e3"})
    for i in range(8):
        sink.add(Item({"id": f"e{i}"}))
    original = sink.write_batch
    state = {"failed": False}

    def flaky(items: Sequence[Item]) -> None:
        if len(items) == 4 and not state["failed"]:
            state["failed"] = True
            raise TransientSinkError("terminating connection due to administrator")
        original(items)

    sink.write_batch = flaky  # type: ignore[method-assign]
    rejected = await sink.flush()
    assert [r.item.row["id"] for r in rejected] == ["e3"]
    assert sorted(sink.written) == [f"e{i}" for i in range(8) if i != 3]
    sink.close()


async def test_all_rows_bad(settings: Settings) -> None:
    sink = FakeSink(settings, bad={"a", "b", "c"})
    for i in "abc":
        sink.add(Item({"id": i}))
    rejected = await sink.flush()
    assert sorted(r.item.row["id"] for r in rejected) == ["a", "b", "c"]
    assert sink.written == []
    sink.close()


async def test_cancelled_flush_clears_the_buffer_and_propagates(
    settings: Settings,
) -> None:
    sink = FakeSink(settings, transient_failures=10**9)
    sink._sleep = asyncio.sleep  # real sleeps, so the task can be cancelled in one
    sink.min_backoff = 5.0
    sink.add(Item({"id": "x"}))
    task = asyncio.ensure_future(sink.flush())
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(sink) == 0
    assert sink.written == []
    sink.close()


async def test_empty_flush_touches_nothing(settings: Settings) -> None:
    sink = FakeSink(settings)
    assert await sink.flush() == []
    assert sink.calls == []
    sink.close()


async def test_write_batch_runs_off_the_event_loop(settings: Settings) -> None:
    import threading

    seen: list[str] = []

    class Probe(FakeSink):
        def write_batch(self, items: Sequence[Item]) -> None:
            seen.append(threading.current_thread().name)

    sink = Probe(settings)
    sink.add(Item({"id": "x"}))
    await sink.flush()
    assert seen and seen[0] != threading.current_thread().name
    assert seen[0].startswith("sink-db")
    sink.close()


def test_backoff_is_capped_and_grows() -> None:
    assert 0.25 <= backoff_delay(1) <= 0.5
    assert 0.5 <= backoff_delay(2) <= 1.0
    assert all(5.0 <= backoff_delay(n) <= 10.0 for n in (6, 10, 100, 10_000))


# -------------------------------------------------------------- value conversions


def test_copy_text_format() -> None:
    assert sink_mod._copy_text(None) == "\\N"
    assert sink_mod._copy_text(True) == "t"
    assert sink_mod._copy_text(False) == "f"
    assert sink_mod._copy_text(7) == "7"
    assert sink_mod._copy_text(1.5) == "1.5"
    assert sink_mod._copy_text(float("nan")) == "nan"
    assert sink_mod._copy_text(T0) == "2024-05-31T12:00:00+00:00"
    assert sink_mod._copy_text("a\tb\nc\\d\re") == "a\\tb\\nc\\\\d\\re"
    assert sink_mod._copy_text("") == ""


def test_quake_values_follow_the_column_order() -> None:
    row = _row("a", tsunami=1, magnitude=4.2)
    values = sink_mod._quake_values(row)
    assert len(values) == len(QUAKE_COLUMNS)
    assert values[QUAKE_COLUMNS.index("id")] == "a"
    assert values[QUAKE_COLUMNS.index("tsunami")] is True  # int 0/1 -> boolean
    assert values[QUAKE_COLUMNS.index("magnitude")] == 4.2


def test_dead_letter_values_are_sanitised_for_postgres() -> None:
    row = {
        "source_topic": "raw",
        "source_partition": 1,
        "source_offset": 2,
        "key": b"k",
        "payload": b"\x00\xffraw",
        "error_kind": "schema",
        "error_message": "bad\x00value \ud800",
        "error_detail": {"field\x00": ["nul\x00", float("nan")], "n": 1},
        "failed_at": "2024-05-31T12:00:00Z",
    }
    values = sink_mod._dead_letter_values(row)
    assert values[4] == b"\x00\xffraw"  # the bytes are never touched
    assert "\x00" not in values[6]
    values[6].encode("utf-8")  # no lone surrogate left
    detail = values[7]
    assert isinstance(detail, Json)
    text = detail.dumps(detail.adapted)
    assert "\\u0000" not in text and "NaN" not in text.replace('"nan"', "")
    json.loads(text)
    assert values[8] == T0


def test_dead_letter_pages_bound_the_statement_size() -> None:
    rows = [("t", 0, i, None, b"x" * 1000, "k", "m", None, None) for i in range(100)]
    pages = list(sink_mod._pages(rows, 10_000))
    assert sum(len(p) for p in pages) == 100
    assert all(len(p) <= 9 for p in pages)
    assert [r[2] for p in pages for r in p] == list(range(100))


def test_dead_letter_fallback_keeps_the_bytes() -> None:
    item = Item({"payload": b"x", "error_kind": "schema", "error_detail": {"a": 1}}, 7)
    minimal = DeadLetterSink.fallback(Rejected(item, "invalid input", "22P02"))
    assert minimal.ref == 7
    assert minimal.row["payload"] == b"x"
    assert minimal.row["error_detail"] is None
    assert "invalid input" in minimal.row["error_message"]


def test_quake_sink_rejects_unknown_methods(settings: Settings) -> None:
    with pytest.raises(ValueError, match="unknown method"):
        QuakeSink(settings, method="bulk")  # type: ignore[arg-type]


# ------------------------------------------------- agents.store batch logic (fakes)


@dataclass
class FakeMessage:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


@dataclass
class FakeEvent:
    message: FakeMessage
    acked: list[int]

    @property
    def value(self) -> bytes | None:
        return self.message.value

    @property
    def key(self) -> bytes | None:
        return self.message.key

    def ack(self) -> bool:
        self.acked.append(self.message.offset)
        return True


class ScriptedSink:
    """Stands in for QuakeSink/DeadLetterSink: records rows, refuses some."""

    def __init__(self, refuse: set[int] | None = None, fail: bool = False) -> None:
        self.items: list[Item] = []
        self.refuse = refuse or set()
        self.fail = fail
        self.flushes = 0

    def add(self, item: Item) -> None:
        self.items.append(item)

    async def flush(self) -> list[Rejected]:
        self.flushes += 1
        if self.fail:
            raise RuntimeError("worker stopping")
        batch, self.items = self.items, []
        return [
            Rejected(item, "new row violates check constraint", "23514")
            for item in batch
            if item.ref.message.offset in self.refuse
        ]


def _quake_bytes(ident: str) -> bytes:
    from models.records import Quake

    return bytes(
        Quake(
            id=ident,
            time=T0,
            updated=T0,
            longitude=1.0,
            latitude=2.0,
            depth=3.0,
        ).dumps()
    )


async def test_store_quake_batch_acks_after_commit_and_dead_letters(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from agents import store

    acked: list[int] = []
    sent: list[Any] = []

    async def fake_deliver(messages: Sequence[Any]) -> int:
        assert acked == []  # dead letters reach Kafka before anything is acked
        sent.extend(messages)
        return 1

    monkeypatch.setattr(store, "deliver", fake_deliver)
    events = [
        FakeEvent(FakeMessage("clean", 2, 10, b"a", _quake_bytes("a")), acked),
        FakeEvent(FakeMessage("clean", 2, 11, b"b", _quake_bytes("b")), acked),
        FakeEvent(FakeMessage("clean", 2, 12, b"c", b"{not a quake"), acked),
        FakeEvent(FakeMessage("clean", 2, 13, b"d", None), acked),
    ]
    sink = ScriptedSink(refuse={11})
    stored = await store.store_quake_batch(events, sink)  # type: ignore[arg-type]
    assert stored == 1
    assert acked == [10, 11, 12, 13]
    kinds = sorted(dict(m.headers)["error.kind"].decode() for m in sent)
    assert kinds == ["schema", "schema", "sink_rejected"]
    from models.records import DeadLetter

    letters = {
        DeadLetter.loads(m.value).source_offset: DeadLetter.loads(m.value) for m in sent
    }
    assert letters[11].error_kind == "sink_rejected"
    assert letters[11].payload_bytes() == _quake_bytes("b")
    assert letters[11].error_detail["sqlstate"] == "23514"
    assert letters[12].payload_bytes() == b"{not a quake"
    assert letters[12].source_topic == "clean"


async def test_store_quake_batch_sets_lineage() -> None:
    from agents import store

    acked: list[int] = []
    sink = ScriptedSink()
    events = [FakeEvent(FakeMessage("clean", 3, 99, b"a", _quake_bytes("a")), acked)]
    flushed: list[Item] = []
    original = sink.flush

    async def capture() -> list[Rejected]:
        flushed.extend(sink.items)
        return await original()

    sink.flush = capture  # type: ignore[method-assign]
    await store.store_quake_batch(events, sink)  # type: ignore[arg-type]
    assert flushed[0].row["kafka_partition"] == 3
    assert flushed[0].row["kafka_offset"] == 99
    assert flushed[0].row["id"] == "a"
    assert acked == [99]


async def test_store_quake_batch_acks_nothing_when_the_write_fails() -> None:
    from agents import store

    acked: list[int] = []
    events = [FakeEvent(FakeMessage("clean", 0, 1, b"a", _quake_bytes("a")), acked)]
    with pytest.raises(RuntimeError):
        await store.store_quake_batch(events, ScriptedSink(fail=True))  # type: ignore[arg-type]
    assert acked == []


async def test_store_dead_letter_batch_stores_undecodable_letters_too() -> None:
    from agents import store
    from models.records import DeadLetter
    from streamapp.exceptions import InvalidRecord

    letter = DeadLetter.build(
        b"\xff", b"k", "raw", 1, 5, InvalidRecord("not_utf8", "bad bytes")
    )
    acked: list[int] = []
    events = [
        FakeEvent(FakeMessage("dlq", 0, 0, b"k", bytes(letter.dumps())), acked),
        FakeEvent(FakeMessage("dlq", 0, 1, None, b"garbage"), acked),
    ]
    sink = ScriptedSink()
    seen: list[Item] = []
    original = sink.flush

    async def capture() -> list[Rejected]:
        seen.extend(sink.items)
        return await original()

    sink.flush = capture  # type: ignore[method-assign]
    stored = await store.store_dead_letter_batch(events, sink)  # type: ignore[arg-type]
    assert stored == 2
    assert acked == [0, 1]
    first, second = (item.row for item in seen)
    assert (
        first["source_topic"],
        first["source_partition"],
        first["source_offset"],
    ) == (
        "raw",
        1,
        5,
    )
    assert first["payload"] == b"\xff"
    assert first["error_kind"] == "not_utf8"
    assert (second["source_topic"], second["source_offset"]) == ("dlq", 1)
    assert second["payload"] == b"garbage"
    assert second["error_kind"] == "schema"


async def test_store_dead_letter_batch_falls_back_to_a_minimal_row() -> None:
    from agents import store
    from models.records import DeadLetter
    from streamapp.exceptions import InvalidRecord

    letter = DeadLetter.build(b"x", None, "raw", 0, 1, InvalidRecord("schema", "m"))
    acked: list[int] = []
    events = [FakeEvent(FakeMessage("dlq", 0, 4, None, bytes(letter.dumps())), acked)]

    class RefuseOnce(ScriptedSink):
        async def flush(self) -> list[Rejected]:
            self.flushes += 1
            batch, self.items = self.items, []
            if self.flushes == 1:
                return [
                    Rejected(item, "unsupported Unicode escape", "22P05")
                    for item in batch
                ]
            self.stored = batch
            return []

    sink = RefuseOnce()
    assert await store.store_dead_letter_batch(events, sink) == 1  # type: ignore[arg-type]
    assert sink.stored[0].row["error_detail"] is None
    assert sink.stored[0].row["payload"] == b"x"
    assert acked == [4]


# ------------------------------------------------- fast JSON path == Quake records


def _real_quakes() -> list[Any]:
    from pathlib import Path

    from models.validation import validate_raw

    fixtures = Path(__file__).resolve().parents[2] / "fixtures" / "usgs"
    quakes = []
    for path in sorted(fixtures.glob("*.geojson")):
        collection = json.loads(path.read_text(encoding="utf-8"))
        for offset, feat in enumerate(collection["features"]):
            envelope = {
                "feature": feat,
                "fetched_at": "2024-05-31T23:30:00.123456Z",
                "source_url": f"file://{path.name}",
            }
            quakes.append(
                validate_raw(
                    json.dumps(envelope).encode(),
                    max_bytes=1024 * 1024,
                    max_depth=32,
                    partition=offset % 4,
                    offset=offset,
                )
            )
    assert len(quakes) > 100
    return quakes


def _normalised(row: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for name, value in row.items():
        if name in ("time", "updated", "fetched_at") and isinstance(value, str):
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        out[name] = value
    return out


def test_fast_json_rows_equal_the_record_rows_for_every_real_capture() -> None:
    from models.records import Quake

    for quake in _real_quakes():
        data = bytes(quake.dumps())
        fast = sink_mod.quake_row_from_json(data, partition=3, offset=7)
        assert fast is not None, quake.id
        slow = sink_mod.quake_row(Quake.loads(data), partition=3, offset=7)
        assert set(fast) == set(QUAKE_COLUMNS)
        assert _normalised(fast) == {c: slow.get(c) for c in QUAKE_COLUMNS}, quake.id


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xff\xfe",
        b"not json",
        b"[1, 2]",
        b'"text"',
        b'{"time": "2024-05-31T12:00:00Z", "updated": "2024-05-31T12:00:00Z",'
        b' "longitude": 1, "latitude": 2, "depth": 3}',  # no id
        b'{"id": "", "time": "t", "updated": "u", "longitude": 1, "latitude": 2,'
        b' "depth": 3}',  # empty id
        b'{"id": 5, "time": "t", "updated": "u", "longitude": 1, "latitude": 2,'
        b' "depth": 3}',  # id not text
        b'{"id": "a", "time": 1, "updated": "u", "longitude": 1, "latitude": 2,'
        b' "depth": 3}',  # time not text
        b'{"id": "a", "time": "t", "updated": "u", "longitude": "1", "latitude": 2,'
        b' "depth": 3}',  # longitude as text (Quake.loads decides)
        b'{"id": "a", "time": "t", "updated": "u", "longitude": true, "latitude": 2,'
        b' "depth": 3}',
        b'{"id": "a", "time": "t", "updated": "u", "longitude": 1, "latitude": 2,'
        b' "depth": 3, "place": {"nested": 1}}',
    ],
)
def test_fast_json_path_leaves_odd_values_to_the_record(data: bytes) -> None:
    assert sink_mod.quake_row_from_json(data, partition=0, offset=0) is None


def test_copy_lines_match_the_field_formatter() -> None:
    values = ("a\tb", None, 1.25, 3, True, T0, "plain")
    line = sink_mod._copy_line(values)
    assert line == "\t".join(sink_mod._copy_text(v) for v in values) + "\n"
    assert line == "a\\tb\t\\N\t1.25\t3\tt\t2024-05-31T12:00:00+00:00\tplain\n"
