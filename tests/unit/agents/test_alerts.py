"""agents.alerts batch logic with a scripted sink (no database or broker)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import pytest

import agents.alerts as agent
from models.alerts import Alert, event_alerts
from models.records import DeadLetter
from streamapp.metrics import REGISTRY
from streamapp.sinks import Item, Rejected
from tests.support.sinks import FakeMessage, FakeReceived

T0 = datetime(2026, 12, 8, 3, 12, tzinfo=UTC)
TOPIC = "earthquakes.alerts"


def alert(event: str = "us1", **changes: Any) -> Alert:
    quake = {"id": event, "magnitude": 6.4, "latitude": 35.7, "longitude": 139.7}
    made = event_alerts({**quake, "time": T0}, min_magnitude=6.0, now=T0)[0]
    return Alert(**{**made.asdict(), **changes})


def message(offset: int, value: bytes | None, key: bytes = b"k") -> FakeMessage:
    return FakeMessage(TOPIC, 0, offset, key, value)


class ScriptedSink:
    """Stands in for AlertSink: refuses some ids, says which were new."""

    def __init__(self, refuse: set[str] | None = None, fail: bool = False) -> None:
        self.items: list[Item] = []
        self.refuse = refuse or set()
        self.fail = fail
        self.seen: set[str] = set()
        self.inserted: list[tuple[str, str]] = []

    def add(self, item: Item) -> None:
        self.items.append(item)

    async def flush(self) -> list[Rejected]:
        if self.fail:
            raise RuntimeError("worker stopping")
        batch, self.items = self.items, []
        rejected = []
        for item in batch:
            if item.row["id"] in self.refuse:
                rejected.append(Rejected(item, "violates check constraint", "23514"))
            elif item.row["id"] not in self.seen:
                self.seen.add(item.row["id"])
                self.inserted.append((item.row["id"], item.row["rule"]))
        return rejected

    def take_inserted(self) -> list[tuple[str, str]]:
        out, self.inserted = self.inserted, []
        return out


@pytest.fixture
def delivered(monkeypatch: pytest.MonkeyPatch) -> list[DeadLetter]:
    letters: list[DeadLetter] = []

    async def fake_deliver(messages: Sequence[Any]) -> int:
        letters.extend(DeadLetter.loads(m.value) for m in messages)
        return 1

    monkeypatch.setattr(agent, "deliver", fake_deliver)
    return letters


def stored(rule: str) -> float:
    return REGISTRY.get_sample_value("streamapp_alerts_total", {"rule": rule}) or 0.0


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (None, "tombstone"),
        (b"{not json", "JSONDecodeError"),
        (b'{"id": "x"}', "missing"),
        (alert(rule="quake", id="quake:us1").dumps(), "rule 'quake' is not one of"),
        (alert(id="magnitude:other").dumps(), "is not rule:subject"),
        (alert(region="95N130E").dumps(), "not a region cell"),
        (
            alert().dumps().replace(b'03:12:00Z"', b'03:12:00"', 1),
            "occurred_at must be an ISO-8601 time with a zone",
        ),
        (alert(hour_count=-2).dumps(), "hour_count must be a whole number"),
        (alert(summary="").dumps(), "summary must be a non-empty string"),
    ],
)
def test_a_record_that_is_not_an_alert_becomes_a_dead_letter(
    value: bytes | None, reason: str
) -> None:
    items, letters = agent.decode_alert_batch(
        [message(7, value), message(8, alert().dumps())]
    )
    assert [i.row["id"] for i in items] == ["magnitude:us1"]
    assert len(letters) == 1
    letter = letters[0]
    assert letter.error_kind == "schema" and reason in letter.error_message
    assert (letter.source_topic, letter.source_offset) == (TOPIC, 7)
    assert letter.payload_bytes() == (value or b"")
    assert letter.error_detail["stage"] == "alert_sink"


async def test_new_alerts_are_counted_and_acked_after_the_flush(
    delivered: list[DeadLetter],
) -> None:
    sink = ScriptedSink(refuse={"magnitude:bad"})
    before = stored("magnitude")
    received = FakeReceived(
        [
            message(0, alert("a").dumps()),
            message(1, alert("a", magnitude=7.0).dumps()),  # a revision: not new
            message(2, alert("bad").dumps()),
            message(3, b"junk"),
        ],
        [],
    )
    new = await agent.store_alert_batch(received, sink)  # type: ignore[arg-type]
    assert new == 1
    assert received.acked == [0, 1, 2, 3]
    assert stored("magnitude") == before + 1
    assert sorted((d.error_kind, d.source_offset) for d in delivered) == [
        ("schema", 3),
        ("sink_rejected", 2),
    ]
    received = FakeReceived([message(4, alert("a").dumps())], [])
    assert await agent.store_alert_batch(received, sink) == 0  # type: ignore[arg-type]
    assert stored("magnitude") == before + 1


async def test_nothing_is_acked_when_the_write_fails(
    delivered: list[DeadLetter],
) -> None:
    received = FakeReceived([message(0, alert().dumps())], [])
    with pytest.raises(RuntimeError):
        await agent.store_alert_batch(received, ScriptedSink(fail=True))  # type: ignore[arg-type]
    assert received.acked == [] and delivered == []
