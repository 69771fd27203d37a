"""1,000 keyed messages through a new 4-partition topic on the real broker, and back."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from streamapp.settings import Settings
from tests.support.kafka import KafkaAdmin

pytestmark = pytest.mark.integration

MESSAGES = 1000
PARTITIONS = 4
KEYS = 50


@dataclass
class RoundTrip:
    """What went in and what came back."""

    sent: dict[tuple[bytes, bytes], int] = field(default_factory=dict)  # -> partition
    received: list[tuple[bytes, bytes, int, int]] = field(default_factory=list)


async def roundtrip(
    client_kwargs: dict[str, Any],
    topic: str,
    group_id: str,
    messages: int = MESSAGES,
    wait_s: float = 120.0,
) -> RoundTrip:
    """Produce ``messages`` keyed messages to ``topic``, then consume them all back."""
    result = RoundTrip()
    producer = AIOKafkaProducer(**client_kwargs, acks="all", linger_ms=5)
    await producer.start()
    try:
        futures = []
        for i in range(messages):
            key = f"key-{i % KEYS:03d}".encode()
            value = f"value-{i:05d}".encode()
            futures.append((key, value, await producer.send(topic, value, key=key)))
        for key, value, fut in futures:
            metadata = await fut
            result.sent[(key, value)] = metadata.partition
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(
        topic,
        **client_kwargs,
        group_id=group_id,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        deadline = time.monotonic() + wait_s
        while len(result.received) < messages and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=1000)
            for tp, records in batches.items():
                for rec in records:
                    assert rec.key is not None and rec.value is not None
                    result.received.append(
                        (rec.key, rec.value, tp.partition, rec.offset)
                    )
        await consumer.commit()
    finally:
        await consumer.stop()
    return result


def check_roundtrip(result: RoundTrip, messages: int = MESSAGES) -> None:
    """Every message came back once, each key lives in one partition, order per key."""
    assert len(result.sent) == messages
    got = [(k, v) for k, v, _, _ in result.received]
    assert len(got) == messages, f"received {len(got)} of {messages} messages"
    assert set(got) == set(result.sent), "the consumed keys/values differ from the sent"
    partitions_of_key: dict[bytes, set[int]] = defaultdict(set)
    values_of_key: dict[bytes, list[bytes]] = defaultdict(list)
    for key, value, partition, _ in sorted(result.received, key=lambda r: (r[2], r[3])):
        assert result.sent[(key, value)] == partition, "consumed from another partition"
        partitions_of_key[key].add(partition)
        values_of_key[key].append(value)
    assert all(len(p) == 1 for p in partitions_of_key.values()), partitions_of_key
    assert all(v == sorted(v) for v in values_of_key.values()), "per-key order broken"
    assert len({p for ps in partitions_of_key.values() for p in ps}) == PARTITIONS


async def test_thousand_keyed_messages_roundtrip(
    stack_ready: Settings,
    kafka_admin: KafkaAdmin,
    unique_name: Callable[..., str],
) -> None:
    topic = kafka_admin.create_topic(unique_name("t"), partitions=PARTITIONS)
    result = await asyncio.wait_for(
        roundtrip(kafka_admin.kwargs, topic, group_id=unique_name("g")), timeout=300
    )
    check_roundtrip(result)
