"""Reading a topic: every partition assigned by hand, no group, no commit."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition
from tqdm import tqdm

from streamapp.exceptions import TopicNotFound
from streamapp.faust_ext import fetch_cluster
from streamapp.kafka import aiokafka_kwargs
from streamapp.replay.columns import DEFAULT_TIMEOUT
from streamapp.replay.decoding import (
    ReplayKind,
    decode_record,
    in_window,
    resolve_kind,
    to_millis,
)
from streamapp.replay.frames import build_frame
from streamapp.settings import Settings, load_settings

__all__ = ["FETCH_WAIT_MS", "consume", "replay", "replay_topic"]

log = logging.getLogger(__name__)

#: Seconds a replay waits for the broker to hand over messages before giving up.
#: How long one fetch waits for data (ms).
FETCH_WAIT_MS = 500


async def replay_topic(
    settings: Settings,
    topic: str,
    *,
    limit: int | None = None,
    since: Any = None,
    until: Any = None,
    kind: ReplayKind | str = "auto",
    progress: bool = False,
    timeout: float = DEFAULT_TIMEOUT,  # noqa: ASYNC109 - an idle timeout, not a deadline
) -> pd.DataFrame:
    """Read ``topic`` from the beginning into a DataFrame, one row per message.

    No consumer group is joined and no offset is committed: every partition is
    assigned by hand and read from its beginning (or from the first offset at or
    after ``since``) up to the end offset taken when the replay starts, so a topic
    that is still being written terminates. ``until`` (exclusive) bounds the
    window, ``limit`` caps the rows. ``timeout`` is how long the broker may stay
    silent while messages remain before :class:`TimeoutError` is raised.
    ``frame.attrs["replay"]`` records the offsets read and the time it took.
    """
    decoder = resolve_kind(settings, topic, kind)
    if limit is not None and limit < 0:
        raise ValueError(f"limit={limit} must not be negative")
    since_ms, until_ms = to_millis(since), to_millis(until)
    started = time.monotonic()
    consumer = AIOKafkaConsumer(
        **aiokafka_kwargs(settings),
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        client_id=f"{settings.app_id}-replay",
        fetch_max_wait_ms=FETCH_WAIT_MS,
        request_timeout_ms=max(int(timeout * 1000), 5000),
    )
    await consumer.start()
    try:
        numbers = await _partitions(consumer, topic, timeout)
        tps = [TopicPartition(topic, p) for p in numbers]
        consumer.assign(tps)
        stop = dict(await consumer.end_offsets(tps))
        start = dict(await consumer.beginning_offsets(tps))
        if since_ms is not None:
            found = await consumer.offsets_for_times({tp: since_ms for tp in tps})
            for tp in tps:
                hit = found.get(tp)
                start[tp] = stop[tp] if hit is None else max(hit.offset, start[tp])
        if until_ms is not None:
            found = await consumer.offsets_for_times({tp: until_ms for tp in tps})
            for tp in tps:
                hit = found.get(tp)
                if hit is not None:
                    stop[tp] = min(stop[tp], hit.offset)
        if since_ms is None:
            await consumer.seek_to_beginning(*tps)
        else:
            for tp in tps:
                consumer.seek(tp, start[tp])
        rows, scanned = await consume(
            consumer,
            tps,
            start,
            stop,
            decoder=decoder,
            window=(since_ms, until_ms),
            limit=limit,
            progress=progress,
            timeout=timeout,
            topic=topic,
        )
    finally:
        await consumer.stop()
    frame = build_frame(rows, decoder)
    seconds = time.monotonic() - started
    frame.attrs["replay"] = {
        "topic": topic,
        "kind": decoder,
        "start_offsets": {tp.partition: start[tp] for tp in tps},
        "end_offsets": {tp.partition: stop[tp] for tp in tps},
        "scanned": scanned,
        "rows": len(frame),
        "seconds": round(seconds, 3),
    }
    log.info(
        "replayed %d message(s) of %s into %d row(s) in %.2fs",
        scanned,
        topic,
        len(frame),
        seconds,
    )
    return frame


async def _partitions(
    consumer: AIOKafkaConsumer, topic: str, patience: float
) -> list[int]:
    """The partition numbers of ``topic``, read from fresh cluster metadata.

    ``consumer.topics()`` fetches the metadata but throws it away, and a consumer
    without a subscription tracks no topic, so the cluster is asked directly (a
    request for all topics never auto-creates one).
    """
    deadline = time.monotonic() + patience
    while True:
        cluster = await fetch_cluster(consumer)
        if topic not in cluster.topics():
            raise TopicNotFound(f"topic {topic!r} does not exist on the broker")
        numbers = sorted(cluster.partitions_for_topic(topic) or ())
        if numbers:
            return numbers
        if time.monotonic() > deadline:  # partitions without a leader yet
            raise TimeoutError(f"topic {topic!r} has no available partition")
        await asyncio.sleep(0.5)


async def consume(
    consumer: Any,
    tps: Sequence[Any],
    start: Mapping[Any, int],
    stop: Mapping[Any, int],
    *,
    decoder: str,
    window: tuple[int | None, int | None],
    limit: int | None,
    progress: bool,
    timeout: float,  # noqa: ASYNC109 - an idle timeout, not a deadline
    topic: str,
) -> tuple[list[dict[str, Any]], int]:
    """Read the assigned partitions ``tps`` from ``start`` up to ``stop`` (the end
    offsets taken when the replay started); returns the decoded rows in the window
    and how many messages were scanned. Raises :class:`TimeoutError` when the
    broker sends nothing for ``timeout`` seconds while messages remain."""
    active = {tp for tp in tps if start[tp] < stop[tp]}
    done = [tp for tp in tps if tp not in active]
    if done:
        consumer.pause(*done)
    total = sum(max(stop[tp] - start[tp], 0) for tp in tps)
    if limit is not None and window == (None, None):
        total = min(total, limit)  # every message scanned is a row
    rows: list[dict[str, Any]] = []
    scanned = 0
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    with tqdm(
        total=total, desc=topic, unit="msg", disable=not progress, leave=False
    ) as bar:
        while active and (limit is None or len(rows) < limit):
            batch = await consumer.getmany(*active, timeout_ms=FETCH_WAIT_MS)
            moved = 0
            for tp, records in batch.items():
                for record in records:
                    if record.offset >= stop[tp]:
                        break
                    moved += 1
                    if in_window(record.timestamp, *window):
                        rows.append(decode_record(record, decoder))
                        if limit is not None and len(rows) >= limit:
                            break
                if limit is not None and len(rows) >= limit:
                    break
            scanned += moved
            bar.update(moved)
            for tp in list(active):
                if await consumer.position(tp) >= stop[tp]:
                    active.discard(tp)
                    consumer.pause(tp)
            if moved:
                deadline = loop.time() + timeout
            elif active and loop.time() > deadline:
                left = {
                    tp.partition: (await consumer.position(tp), stop[tp])
                    for tp in active
                }
                raise TimeoutError(
                    f"replay of {topic!r} got nothing for {timeout:.0f}s with "
                    f"messages left (partition: (position, end)) {left}"
                )
    return rows, scanned


def replay(
    settings: Settings | None,
    topic: str,
    *,
    limit: int | None = None,
    since: Any = None,
    until: Any = None,
    kind: ReplayKind | str = "auto",
    progress: bool = False,
    timeout: float = DEFAULT_TIMEOUT,
) -> pd.DataFrame:
    """Synchronous :func:`replay_topic`, also usable inside Jupyter.

    Jupyter already runs an event loop in the kernel's thread, so when a loop is
    running the replay runs in a worker thread with an event loop of its own.
    ``settings=None`` loads them with :func:`streamapp.settings.load_settings`.
    """
    if settings is None:
        settings = load_settings()
    kwargs: dict[str, Any] = {
        "limit": limit,
        "since": since,
        "until": until,
        "kind": kind,
        "progress": progress,
        "timeout": timeout,
    }
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(replay_topic(settings, topic, **kwargs))
    with concurrent.futures.ThreadPoolExecutor(1, "streamapp-replay") as pool:
        future = pool.submit(asyncio.run, replay_topic(settings, topic, **kwargs))
        return future.result()
