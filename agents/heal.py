"""The ``heal_commit_holes`` timer: re-read a message fetched but never acked."""

from __future__ import annotations

import logging
import time
from collections.abc import Set
from typing import Any

from aiokafka.errors import IllegalStateError

from streamapp.app import app

__all__ = [
    "HOLE_GRACE_SECONDS",
    "drop_revoked",
    "heal_commit_holes",
    "heal_holes",
    "holes_to_heal",
]

log = logging.getLogger(__name__)

#: How long a hole at the head of a partition's acked offsets may last before the
#: consumer seeks back to it. Agents ack in offset order, so a hole that outlives a
#: few batch windows is a message the agent never got, not one still in flight.
HOLE_GRACE_SECONDS = 10.0


def holes_to_heal(
    holes: dict[Any, tuple[int, float]], now: float, grace: float = HOLE_GRACE_SECONDS
) -> list[tuple[Any, int]]:
    """The ``(tp, offset)`` holes older than ``grace`` seconds at ``now``."""
    return [
        (tp, offset) for tp, (offset, since) in holes.items() if now - since > grace
    ]


def drop_revoked(holes: dict[Any, tuple[int, float]], assigned: Set[Any]) -> list[Any]:
    """Forget the holes of partitions no longer assigned; return those partitions.

    The partition's new owner starts from its committed offset, which the hole
    held back, so the message is read again there.
    """
    revoked = [tp for tp in holes if tp not in assigned]
    for tp in revoked:
        holes.pop(tp, None)
    return revoked


async def heal_holes(consumer: Any, now: float) -> list[tuple[Any, int]]:
    """Seek back to every hole older than the grace period; the ``(tp, offset)`` done.

    A hole left by a partition this worker lost in a rebalance is forgotten, not
    sought: seeking it raises IllegalStateError, which stops the worker when it
    escapes a timer.
    """
    holes = getattr(consumer, "holes", None)
    if not holes:
        return []
    drop_revoked(holes, consumer.assignment())
    done: list[tuple[Any, int]] = []
    for tp, offset in holes_to_heal(holes, now):
        holes.pop(tp, None)
        try:
            await consumer.seek(tp, offset)
        except IllegalStateError:  # revoked since the assignment was read
            log.info("%s[%d] was revoked before the seek back", tp.topic, tp.partition)
            continue
        log.warning(
            "%s[%d] offset %d was fetched but never acked; sought back to read it "
            "again (later messages may be processed twice: the sinks are idempotent)",
            tp.topic,
            tp.partition,
            offset,
        )
        done.append((tp, offset))
    return done


@app.timer(HOLE_GRACE_SECONDS / 2)
async def heal_commit_holes() -> None:
    """Seek a partition back to an offset it skipped, so the message is read again."""
    if not app.rebalancing:
        await heal_holes(app.consumer, time.monotonic())
