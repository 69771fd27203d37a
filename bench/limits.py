"""The ceilings: Kafka consume-only, CPU of validation alone, PostgreSQL COPY."""

from __future__ import annotations

import contextlib
import io
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from bench.common import pg_connect, topic_partitions
from bench.generate import Message
from bench.sql import EVENT_COLUMNS, event_row
from models.records import Quake
from models.validation import validate_raw
from streamapp.exceptions import InvalidRecord
from streamapp.kafka import aiokafka_kwargs
from streamapp.settings import Settings

__all__ = ["consume_only", "copy_rate", "validate_only"]


async def consume_only(settings: Settings, topic: str, n: int) -> dict[str, Any]:
    """aiokafka reads ``n`` records of ``topic`` (all partitions), decoding nothing.

    Timed from the first fetch request (after metadata and partition assignment)
    to the ``n``-th record.
    """
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        **aiokafka_kwargs(settings),
        enable_auto_commit=False,
        max_partition_fetch_bytes=4 * 1024 * 1024,
        fetch_max_bytes=64 * 1024 * 1024,
    )
    await consumer.start()
    try:
        parts = await topic_partitions(consumer, topic)
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        got = 0
        size = 0
        start = time.perf_counter()
        while got < n:
            batch = await consumer.getmany(timeout_ms=1000, max_records=20_000)
            for records in batch.values():
                got += len(records)
                size += sum(len(r.value or b"") for r in records)
        seconds = time.perf_counter() - start
    finally:
        await consumer.stop()
    return {
        "n": got,
        "seconds": round(seconds, 3),
        "events_per_s": round(got / seconds, 1) if seconds else None,
        "mib_per_s": round(size / seconds / 2**20, 1) if seconds else None,
    }


def validate_only(
    messages: Sequence[Message], settings: Settings
) -> tuple[dict[str, Any], list[Quake]]:
    """``validate_raw`` + ``Quake.dumps``/``loads`` of every message on one core.

    Not a ceiling of I/O but of the Python work each message needs in any
    contender: it tells how far one process can go at all.
    """
    quakes: list[Quake] = []
    start = time.perf_counter()
    for offset, m in enumerate(messages):
        with contextlib.suppress(InvalidRecord):
            quakes.append(
                validate_raw(
                    m.value,
                    max_bytes=settings.max_message_bytes,
                    max_depth=settings.max_json_depth,
                    partition=0,
                    offset=offset,
                )
            )
    validate_s = time.perf_counter() - start
    start = time.perf_counter()
    dumped = [q.dumps() for q in quakes]
    dumps_s = time.perf_counter() - start
    start = time.perf_counter()
    for d in dumped:
        Quake.loads(d)
    loads_s = time.perf_counter() - start
    n = len(messages)
    return {
        "n": n,
        "validate_seconds": round(validate_s, 3),
        "validate_per_s": round(n / validate_s, 1),
        "validate_us_per_msg": round(validate_s / n * 1e6, 1),
        "quake_dumps_us": round(dumps_s / max(len(quakes), 1) * 1e6, 1),
        "quake_loads_us": round(loads_s / max(len(quakes), 1) * 1e6, 1),
        "python_per_s": round(n / (validate_s + dumps_s + loads_s), 1),
    }, quakes


def _copy_text(value: Any) -> str:
    if value is None:
        return "\\N"
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bool):
        return "t" if value else "f"
    text = str(value)
    return (
        text.replace("\\", "\\\\")
        .replace("\t", "\\t")
        .replace("\n", "\\n")
        .replace("\r", "\\r")
    )


def copy_rate(settings: Settings, quakes: Sequence[Quake]) -> dict[str, Any]:
    """COPY the rows of ``quakes`` into an UNLOGGED copy of ``earthquakes``.

    The rows are rendered to COPY text before the clock starts; the time is that of
    ``COPY ... FROM STDIN`` plus the commit (constraints and indexes included).
    """
    lines = []
    seen: set[str] = set()
    for offset, q in enumerate(quakes):
        if q.id in seen:
            continue
        seen.add(q.id)
        lines.append("\t".join(_copy_text(v) for v in event_row(q, 0, offset)))
    data = ("\n".join(lines) + "\n").encode("utf-8")
    with contextlib.closing(pg_connect(settings)) as conn, conn.cursor() as cur:
        cur.execute(
            "CREATE UNLOGGED TABLE earthquakes_copy (LIKE earthquakes INCLUDING ALL)"
        )
        conn.commit()
        start = time.perf_counter()
        cur.copy_expert(
            f"COPY earthquakes_copy ({', '.join(EVENT_COLUMNS)}) FROM STDIN",
            io.BytesIO(data),
        )
        conn.commit()
        seconds = time.perf_counter() - start
        cur.execute("SELECT count(*) FROM earthquakes_copy")
        (count,) = cur.fetchone()
        cur.execute("DROP TABLE earthquakes_copy")
        conn.commit()
    return {
        "n": count,
        "seconds": round(seconds, 3),
        "events_per_s": round(count / seconds, 1) if seconds else None,
        "mib_per_s": round(len(data) / seconds / 2**20, 1) if seconds else None,
    }
