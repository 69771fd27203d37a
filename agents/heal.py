"""The ``heal_commit_holes`` timer: re-read a message fetched but never acked."""

from __future__ import annotations

import logging
import time
from typing import Any

from streamapp.app import app

__all__ = ["HOLE_GRACE_SECONDS", "heal_commit_holes", "holes_to_heal"]

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


@app.timer(HOLE_GRACE_SECONDS / 2)
async def heal_commit_holes() -> None:
    """Seek a partition back to an offset it skipped, so the message is read again."""
    consumer = app.consumer
    holes = getattr(consumer, "holes", None)
    if not holes or app.rebalancing:
        return
    for tp, offset in holes_to_heal(holes, time.monotonic()):
        log.warning(
            "%s[%d] offset %d was fetched but never acked; seeking back to read it "
            "again (later messages may be processed twice: the sinks are idempotent)",
            tp.topic,
            tp.partition,
            offset,
        )
        holes.pop(tp, None)
        await consumer.seek(tp, offset)
