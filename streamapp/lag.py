"""Consumer lag per topic/partition: end offset minus the group's committed offset."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from streamapp.faust_ext.metadata import fetch_cluster
from streamapp.kafka import aiokafka_kwargs
from streamapp.settings import Settings

__all__ = [
    "LagReader",
    "LagReport",
    "PartitionLag",
    "consumer_lag",
    "lag_reader",
    "pipeline_topics",
]

log = logging.getLogger(__name__)

#: How long one lag query may take before it counts as failed.
LAG_TIMEOUT = 5.0
#: How long a lag report is reused before Kafka is asked again.
LAG_TTL = 3.0


@dataclass(frozen=True)
class PartitionLag:
    """Where the group stands in one partition.

    ``committed`` is None when the group never committed there; the lag is then
    counted from the partition's first retained offset.
    """

    topic: str
    partition: int
    beginning_offset: int
    end_offset: int
    committed: int | None

    @property
    def lag(self) -> int:
        position = (
            self.committed if self.committed is not None else self.beginning_offset
        )
        return max(0, self.end_offset - max(position, self.beginning_offset))

    def as_dict(self) -> dict[str, Any]:
        return {
            "partition": self.partition,
            "end_offset": self.end_offset,
            "committed_offset": self.committed,
            "lag": self.lag,
        }


@dataclass(frozen=True)
class LagReport:
    """The lag of one consumer group on some topics, or why it is unknown."""

    group: str
    partitions: list[PartitionLag] = field(default_factory=list)
    checked_at: float = field(default_factory=time.time)
    error: str | None = None

    def by_topic(self) -> dict[str, list[PartitionLag]]:
        out: dict[str, list[PartitionLag]] = {}
        for p in self.partitions:
            out.setdefault(p.topic, []).append(p)
        return out

    def as_dict(self) -> dict[str, Any]:
        topics = {
            topic: {
                "lag": sum(p.lag for p in parts),
                "partitions": [p.as_dict() for p in sorted(parts, key=_partition)],
            }
            for topic, parts in sorted(self.by_topic().items())
        }
        return {
            "group": self.group,
            "total_lag": sum(p.lag for p in self.partitions),
            "topics": topics,
            "checked_at": self.checked_at,
            "error": self.error,
        }


def _partition(p: PartitionLag) -> int:
    return p.partition


def pipeline_topics(settings: Settings) -> list[str]:
    """The topics the worker consumes: raw, clean, dead-letter, activity, alerts."""
    return [
        settings.topic_raw,
        settings.topic_clean,
        settings.topic_dead_letter,
        settings.topic_activity,
        settings.topic_alerts,
    ]


async def consumer_lag(
    settings: Settings,
    topics: Sequence[str],
    *,
    group_id: str | None = None,
    timeout: float = LAG_TIMEOUT,  # noqa: ASYNC109 - also the Kafka request timeout
) -> list[PartitionLag]:
    """Ask Kafka for the lag of ``group_id`` (the app id) on ``topics``.

    Uses an admin client and a group-less consumer, so it never joins the group
    (asking does not trigger a rebalance of the workers). Topics that do not
    exist yet are left out.
    """
    group = group_id or settings.app_id
    kwargs = aiokafka_kwargs(settings)
    timeout_ms = int(timeout * 1000)
    admin = AIOKafkaAdminClient(
        client_id=f"{settings.app_id}-lag-admin",
        request_timeout_ms=timeout_ms,
        **kwargs,
    )
    consumer = AIOKafkaConsumer(
        client_id=f"{settings.app_id}-lag",
        group_id=None,
        enable_auto_commit=False,
        request_timeout_ms=timeout_ms,
        **kwargs,
    )
    try:
        async with asyncio.timeout(timeout):
            await admin.start()
            await consumer.start()
            # Fresh metadata of every topic (asking for all never auto-creates one).
            cluster = await fetch_cluster(consumer)
            tps: list[TopicPartition] = []
            for topic in topics:
                partitions = cluster.partitions_for_topic(topic) or set()
                tps.extend(TopicPartition(topic, p) for p in sorted(partitions))
            if not tps:
                return []
            committed = await admin.list_consumer_group_offsets(group, partitions=tps)
            ends = await consumer.end_offsets(tps)
            begins = await consumer.beginning_offsets(tps)
    finally:
        await consumer.stop()
        await admin.close()
    out: list[PartitionLag] = []
    for tp in tps:
        meta = committed.get(tp)
        offset = meta.offset if meta is not None and meta.offset >= 0 else None
        out.append(
            PartitionLag(
                topic=tp.topic,
                partition=tp.partition,
                beginning_offset=int(begins.get(tp, 0)),
                end_offset=int(ends.get(tp, 0)),
                committed=offset,
            )
        )
    return out


class LagReader:
    """Caches the lag for a few seconds, so many readers cause one Kafka query."""

    def __init__(
        self,
        settings: Settings,
        topics: Sequence[str] | None = None,
        *,
        ttl: float = LAG_TTL,
        timeout: float = LAG_TIMEOUT,
    ) -> None:
        self.settings = settings
        self.topics = list(topics) if topics is not None else pipeline_topics(settings)
        self.ttl = ttl
        self.timeout = timeout
        self._report: LagReport | None = None
        self._lock: asyncio.Lock | None = None

    async def report(self) -> LagReport:
        """The cached report, refreshed when older than the TTL; never raises."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            cached = self._report
            if cached is not None and time.time() - cached.checked_at < self.ttl:
                return cached
            group = self.settings.app_id
            try:
                parts = await consumer_lag(
                    self.settings, self.topics, group_id=group, timeout=self.timeout
                )
                report = LagReport(group=group, partitions=parts)
            except Exception as exc:  # reported, never raised to a page
                log.warning("consumer lag unavailable: %s", type(exc).__name__)
                report = LagReport(group=group, error=_describe(exc))
            self._report = report
            return report

    @property
    def last(self) -> LagReport | None:
        """The last report fetched, without asking Kafka."""
        return self._report


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "Kafka did not answer in time"
    text = str(exc)
    return f"{type(exc).__name__}: {text}"[:200] if text else type(exc).__name__


_readers: dict[Settings, LagReader] = {}


def lag_reader(settings: Settings) -> LagReader:
    """The process-wide cached lag reader of ``settings`` (shared by every view)."""
    reader = _readers.get(settings)
    if reader is None:
        reader = _readers[settings] = LagReader(settings)
    return reader
