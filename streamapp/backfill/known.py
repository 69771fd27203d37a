"""What the live fetcher already sent: its dedup table, read from the changelog.

The fetcher remembers each event id with the ``updated`` it sent (and a content
hash for features it cannot version) in the global table ``sent-versions``, whose
changelog is the compacted topic ``{APP_ID}-sent-versions-changelog`` (key: the
JSON string of the dedup key; value: the JSON integer, or a tombstone). The
backfill reads it once, from the beginning to the end offsets taken at start, and
does not resend a feature the fetcher sent at the same ``updated``.

Usage::

    versions = await load_sent_versions(settings)     # {} when the topic is absent
    versions.get("us7000abcd")                       # the `updated` sent, or None
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from streamapp.faust_ext import fetch_cluster
from streamapp.kafka import aiokafka_kwargs
from streamapp.settings import Settings
from streamapp.sources.base import is_json_int

__all__ = ["SENT_VERSIONS_TABLE", "changelog_topic_name", "load_sent_versions"]

log = logging.getLogger(__name__)

#: The fetcher's dedup table (agents/fetch.py ``sent_versions``).
SENT_VERSIONS_TABLE = "sent-versions"


def changelog_topic_name(app_id: str) -> str:
    """The changelog topic of the fetcher's dedup table for ``APP_ID``."""
    return f"{app_id}-{SENT_VERSIONS_TABLE}-changelog"


def _decode_key(raw: bytes | None) -> str | None:
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", errors="replace")
    return value if isinstance(value, str) else None


def _decode_value(raw: bytes | None) -> int | None:
    if raw is None:
        return None
    try:
        value: Any = json.loads(raw)
    except ValueError:
        return None
    return value if is_json_int(value) else None


async def load_sent_versions(
    settings: Settings,
    *,
    topic: str | None = None,
    timeout: float = 60.0,  # noqa: ASYNC109 - an idle timeout, not a deadline
) -> dict[str, int]:
    """Dedup key -> version of every entry of the changelog (tombstones applied).

    An absent topic (the fetcher never ran with this ``APP_ID``) gives ``{}``.
    Raises :class:`TimeoutError` when the broker sends nothing for ``timeout``
    seconds while entries remain.
    """
    name = topic or changelog_topic_name(settings.app_id)
    consumer = AIOKafkaConsumer(
        **aiokafka_kwargs(settings),
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        group_id=None,
    )
    await consumer.start()
    try:
        cluster = await fetch_cluster(consumer)
        if name not in cluster.topics():
            return {}
        tps = [TopicPartition(name, p) for p in cluster.partitions_for_topic(name)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps)
        out: dict[str, int] = {}
        active = {tp for tp in tps if end[tp] > 0}
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while active:
            batch = await consumer.getmany(*active, timeout_ms=500)
            for tp, records in batch.items():
                for record in records:
                    if record.offset >= end[tp]:
                        break
                    key = _decode_key(record.key)
                    if key is None:
                        continue
                    version = _decode_value(record.value)
                    if version is None:
                        out.pop(key, None)
                    else:
                        out[key] = version
            for tp in list(active):
                if await consumer.position(tp) >= end[tp]:
                    active.discard(tp)
            if batch:
                deadline = loop.time() + timeout
            elif active and loop.time() > deadline:
                raise TimeoutError(
                    f"reading {name} got nothing for {timeout:.0f}s with entries left"
                )
        log.info("backfill: %d entries in the fetcher's dedup table %s", len(out), name)
        return out
    finally:
        await consumer.stop()
