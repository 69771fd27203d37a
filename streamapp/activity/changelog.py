"""Write a batch of activity-table entries: the local store, then the changelog.

``table[key] = value`` sends one changelog message per key through faust's
``send_soon`` buffer (a pending message, a future, a buffer task and a
partitioner lookup each). For a batch of entries :func:`write_entries` does what
``__setitem__``/``__delitem__`` do minus that machinery: it puts the values in
the table's local store (``table.data``) and produces each change with the
producer directly, to the key's changelog partition
(``CopartitionedTable.partition_for_key``), with the table's JSON encoding
(a tombstone for a deleted key), and waits until the broker acknowledged every
one, sending failed ones again with backoff. The caller acks its input after.

Example::

    await write_entries(activity_events, {"30N130E/us1": [1, 4.5, 10.0, 2]}, [])
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from typing import Any

import orjson

from streamapp.delivery import failed_future

__all__ = ["write_entries"]

log = logging.getLogger(__name__)


async def write_entries(
    table: Any,
    sets: Mapping[str, Any],
    deletes: Iterable[str],
    *,
    max_backoff: float = 10.0,
) -> int:
    """Store ``sets`` and remove ``deletes`` in ``table`` (a CopartitionedTable),
    locally and in its changelog; returns the rounds the changelog took."""
    data = table.data
    pending: dict[str, Any] = {}
    for key, value in sets.items():
        data[key] = value
        pending[key] = value
    for key in deletes:
        if key in data:
            del data[key]
        pending[key] = None
    if not pending:
        return 0
    producer = await table.app.maybe_start_producer()
    topic = table.changelog_topic.get_topic_name()
    rounds = 0
    delay = 0.2
    while pending:
        rounds += 1
        sends: list[tuple[str, Any, asyncio.Future[Any]]] = []
        for key, value in pending.items():
            try:
                fut = await producer.send(
                    topic,
                    orjson.dumps(key),
                    None if value is None else orjson.dumps(value),
                    table.partition_for_key(key),
                    None,
                    None,
                )
            except Exception as exc:  # any producer error is retried
                fut = failed_future(exc)
            sends.append((key, value, fut))
        failed: dict[str, Any] = {}
        first: BaseException | None = None
        for key, value, fut in sends:
            if not fut.done():
                await asyncio.wait((fut,))
            error = (
                asyncio.CancelledError("the send was cancelled")
                if fut.cancelled()
                else fut.exception()
            )
            if error is not None:
                failed[key] = value
                first = first or error
        if not failed:
            break
        log.warning(
            "%s: %d of %d changelog write(s) failed (%s); sending again in %.1fs",
            table.name,
            len(failed),
            len(pending),
            first,
            delay,
        )
        await asyncio.sleep(delay)
        delay = min(delay * 2, max_backoff)
        pending = failed
    return rounds
