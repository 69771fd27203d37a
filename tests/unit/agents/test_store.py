"""agents.store batch logic with scripted sinks and events (no database or broker)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import pytest

from models.records import DeadLetter, Quake
from streamapp.exceptions import InvalidRecord
from streamapp.sinks import Item, Rejected
from tests.support.sinks import FakeMessage, FakeReceived

T0 = datetime(2024, 5, 31, 12, 0, tzinfo=UTC)


# ------------------------------------------------- agents.store batch logic (fakes)


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
            if item.ref.offset in self.refuse
        ]


def _quake_bytes(ident: str) -> bytes:

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
        FakeMessage("clean", 2, 10, b"a", _quake_bytes("a")),
        FakeMessage("clean", 2, 11, b"b", _quake_bytes("b")),
        FakeMessage("clean", 2, 12, b"c", b"{not a quake"),
        FakeMessage("clean", 2, 13, b"d", None),
    ]
    sink = ScriptedSink(refuse={11})
    stored = await store.store_quake_batch(FakeReceived(events, acked), sink)  # type: ignore[arg-type]
    assert stored == 1
    assert acked == [10, 11, 12, 13]
    kinds = sorted(dict(m.headers)["error.kind"].decode() for m in sent)
    assert kinds == ["schema", "schema", "sink_rejected"]

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
    events = [FakeMessage("clean", 3, 99, b"a", _quake_bytes("a"))]
    flushed: list[Item] = []
    original = sink.flush

    async def capture() -> list[Rejected]:
        flushed.extend(sink.items)
        return await original()

    sink.flush = capture  # type: ignore[method-assign]
    await store.store_quake_batch(FakeReceived(events, acked), sink)  # type: ignore[arg-type]
    assert flushed[0].row["kafka_partition"] == 3
    assert flushed[0].row["kafka_offset"] == 99
    assert flushed[0].row["id"] == "a"
    assert acked == [99]


async def test_store_quake_batch_acks_nothing_when_the_write_fails() -> None:
    from agents import store

    acked: list[int] = []
    events = [FakeMessage("clean", 0, 1, b"a", _quake_bytes("a"))]
    with pytest.raises(RuntimeError):
        await store.store_quake_batch(
            FakeReceived(events, acked), ScriptedSink(fail=True)
        )  # type: ignore[arg-type]
    assert acked == []


async def test_store_dead_letter_batch_stores_undecodable_letters_too() -> None:
    from agents import store

    letter = DeadLetter.build(
        b"\xff", b"k", "raw", 1, 5, InvalidRecord("not_utf8", "bad bytes")
    )
    acked: list[int] = []
    events = [
        FakeMessage("dlq", 0, 0, b"k", bytes(letter.dumps())),
        FakeMessage("dlq", 0, 1, None, b"garbage"),
    ]
    sink = ScriptedSink()
    seen: list[Item] = []
    original = sink.flush

    async def capture() -> list[Rejected]:
        seen.extend(sink.items)
        return await original()

    sink.flush = capture  # type: ignore[method-assign]
    stored = await store.store_dead_letter_batch(FakeReceived(events, acked), sink)  # type: ignore[arg-type]
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

    letter = DeadLetter.build(b"x", None, "raw", 0, 1, InvalidRecord("schema", "m"))
    acked: list[int] = []
    events = [FakeMessage("dlq", 0, 4, None, bytes(letter.dumps()))]

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
    assert await store.store_dead_letter_batch(FakeReceived(events, acked), sink) == 1  # type: ignore[arg-type]
    assert sink.stored[0].row["error_detail"] is None
    assert sink.stored[0].row["payload"] == b"x"
    assert acked == [4]
