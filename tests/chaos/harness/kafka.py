"""The chaos runs' topics: create with a config, read back whole, delete by prefix."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from streamapp.faust_ext import fetch_cluster
from streamapp.kafka import aiokafka_kwargs
from streamapp.settings import Settings
from tests.support.aio import run_sync
from tests.support.kafka import ensure_topic, with_admin

__all__ = ["Rec", "create_topic", "delete_topics_with_prefix", "read_topic"]

#: Admin requests wait longer than the default: the private broker may be restarting.
_ADMIN_TIMEOUT_MS = 30000


@dataclass(frozen=True)
class Rec:
    """One message read back from a topic."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: dict[str, bytes]


async def _partitions(consumer: Any, topic: str, idle: float) -> set[int]:
    """The partitions of ``topic`` (empty if it does not appear within ``idle`` s)."""
    deadline = time.monotonic() + idle
    while True:
        cluster = await fetch_cluster(consumer)
        parts: set[int] = cluster.partitions_for_topic(topic) or set()
        if parts or time.monotonic() > deadline:
            return parts
        await asyncio.sleep(0.5)


async def _drain(consumer: Any, topic: str, parts: set[int], idle: float) -> list[Rec]:
    """Every record of ``parts`` from the beginning up to the end offsets of now."""
    from aiokafka import TopicPartition

    tps = [TopicPartition(topic, p) for p in sorted(parts)]
    consumer.assign(tps)
    ends = await consumer.end_offsets(tps)
    await consumer.seek_to_beginning(*tps)
    out: list[Rec] = []
    pending = {tp for tp in tps if ends[tp] > 0}
    last = time.monotonic()
    while pending:
        batch = await consumer.getmany(*pending, timeout_ms=1000)
        for tp, records in batch.items():
            out.extend(
                Rec(r.partition, r.offset, r.key, r.value, dict(r.headers))
                for r in records
                if r.offset < ends[tp]
            )
            last = time.monotonic()
        for tp in list(pending):
            if await consumer.position(tp) >= ends[tp]:
                pending.discard(tp)
        if pending and time.monotonic() - last > idle:
            raise TimeoutError(f"reading {topic}: no data for {idle}s")
    return out


async def _read_topic(kwargs: dict[str, Any], topic: str, idle: float) -> list[Rec]:
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        **kwargs,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=8 * 1024 * 1024,
        fetch_max_bytes=64 * 1024 * 1024,
    )
    await consumer.start()
    try:
        parts = await _partitions(consumer, topic, idle)
        return await _drain(consumer, topic, parts, idle) if parts else []
    finally:
        await consumer.stop()


def read_topic(settings: Settings, topic: str, idle: float = 60.0) -> list[Rec]:
    """Every message of ``topic`` up to its current end (no consumer group)."""
    return run_sync(_read_topic(aiokafka_kwargs(settings), topic, idle))


def _admin_kwargs(settings: Settings) -> dict[str, Any]:
    return {**aiokafka_kwargs(settings), "request_timeout_ms": _ADMIN_TIMEOUT_MS}


def create_topic(
    settings: Settings,
    name: str,
    partitions: int,
    config: dict[str, str] | None = None,
) -> None:
    """Create ``name`` (or find it) and wait until every partition has a leader."""

    async def create(admin: Any) -> None:
        await ensure_topic(admin, name, partitions, config=config, wait_s=60.0)

    run_sync(with_admin(_admin_kwargs(settings), create))


def delete_topics_with_prefix(settings: Settings, prefix: str) -> list[str]:
    """Delete every topic whose name starts with ``prefix``; returns the names."""

    async def delete(admin: Any) -> list[str]:
        names = [t for t in await admin.list_topics() if t.startswith(prefix)]
        if names:
            await admin.delete_topics(names)
        return names

    return run_sync(with_admin(_admin_kwargs(settings), delete))
