"""Unit tests of the ``validate_quakes`` agent (no Kafka: ``test_context``)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

import agents.validate as validate_module
from agents.validate import route, validate_quakes
from models.records import DeadLetter, Quake
from streamapp.delivery import Outgoing
from streamapp.stats import stats
from streamapp.topics import clean_topic, dead_letter_topic
from tests.support.sinks import FakeMessage, FakeReceived

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "usgs"


def envelope(feature: dict[str, Any]) -> bytes:
    return json.dumps(
        {
            "feature": feature,
            "fetched_at": "2024-05-31T23:30:00+00:00",
            "source_url": "http://feed.test/all_hour.geojson",
        }
    ).encode()


@pytest.fixture
def feature() -> dict[str, Any]:
    doc = json.loads((FIXTURES / "all_hour_2024-05-31.geojson").read_text())
    return doc["features"][0]


def test_route_valid_goes_to_clean_keyed_by_id(feature: dict[str, Any]) -> None:
    ok, out = route(envelope(feature), b"ignored", topic="raw", partition=2, offset=7)
    assert ok
    assert out.topic is clean_topic
    assert out.key == feature["id"].encode()
    quake = Quake.loads(out.value)
    assert quake.id == feature["id"]
    assert quake.raw_partition == 2 and quake.raw_offset == 7


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        (None, "empty"),
        (b"", "empty"),
        (b"\xff\xfe", "not_utf8"),
        (b"{oops", "not_json"),
        (b"[1,2]", "not_object"),
        (b"[" * 10_000 + b"]" * 10_000, "too_deep"),
        (b'{"feature": {"id": ""}}', "schema"),
    ],
)
def test_route_bad_goes_to_dead_letter_with_original_bytes(
    value: bytes | None, kind: str
) -> None:
    ok, out = route(value, b"key", topic="raw", partition=1, offset=99)
    assert not ok
    assert out.topic is dead_letter_topic
    letter = DeadLetter.loads(out.value)
    assert letter.error_kind == kind
    assert letter.source_topic == "raw"
    assert (letter.source_partition, letter.source_offset) == (1, 99)
    assert letter.payload_bytes() == (value or b"")
    headers = dict(out.headers)
    assert headers["error.kind"] == kind.encode()
    assert headers["source.offset"] == b"99"


async def test_agent_forwards_batch_then_acks(
    monkeypatch: pytest.MonkeyPatch, feature: dict[str, Any]
) -> None:
    delivered: list[Outgoing] = []

    async def fake_deliver(messages: list[Outgoing]) -> int:
        delivered.extend(messages)
        return 1

    monkeypatch.setattr(validate_module, "deliver", fake_deliver)
    stats.reset()
    async with validate_quakes.test_context() as agent:
        await agent.put(envelope(feature), key=feature["id"].encode())
        await agent.put(b"\x00\xff garbage", key=b"bad")
        await agent.put(b"", key=None)
        for _ in range(100):
            if len(delivered) == 3:
                break
            await asyncio.sleep(0.05)
    assert [m.topic for m in delivered] == [
        clean_topic,
        dead_letter_topic,
        dead_letter_topic,
    ]
    snap = stats.snapshot()
    assert snap["valid"] == 1
    assert snap["invalid"] == 2
    assert snap["invalid_by_kind"] == {"not_utf8": 1, "empty": 1}


async def test_agent_does_not_ack_when_delivery_fails(
    monkeypatch: pytest.MonkeyPatch, feature: dict[str, Any]
) -> None:
    """If Kafka never takes the output, the input event must not be acked."""
    acked: list[int] = []
    calls = 0

    async def failing_deliver(messages: list[Outgoing]) -> int:
        nonlocal calls
        calls += 1
        raise RuntimeError("broker gone")

    monkeypatch.setattr(validate_module, "deliver", failing_deliver)

    received = FakeReceived([FakeMessage("raw", 0, 1, b"k", envelope(feature))], acked)
    with pytest.raises(RuntimeError):
        await validate_module.forward(received)  # type: ignore[arg-type]
    assert calls == 1
    assert acked == []


def test_dead_letter_of_a_huge_key_is_not_keyed_by_it() -> None:
    """A 2 MiB key must not ride along as the dead letter's Kafka key (too large)."""
    huge = b"K" * (2 * 1024 * 1024)
    ok, out = route(b"not json", huge, topic="raw", partition=0, offset=3)
    assert not ok
    assert out.key is None
    assert len(out.value) < 1_000_000  # the producer's max_request_size
    letter = DeadLetter.loads(out.value)
    assert letter.key_truncated()
    assert letter.error_detail["_key"]["original_length"] == len(huge)


def test_dead_letter_keeps_a_normal_key() -> None:
    ok, out = route(b"not json", b"us7000abcd", topic="raw", partition=0, offset=4)
    assert not ok
    assert out.key == b"us7000abcd"
