"""Send messages to Kafka and wait until the broker has them, retrying in place."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from faust.types import TopicT

__all__ = ["Outgoing", "as_bytes", "deliver", "failed_future"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outgoing:
    """One message to produce: topic, key, value and headers (all bytes)."""

    topic: TopicT
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]] = field(default_factory=list)


async def deliver(
    messages: Sequence[Outgoing],
    *,
    max_backoff: float = 10.0,
    attempts: int | None = None,
) -> int:
    """Produce ``messages`` and await every delivery report.

    Messages whose delivery fails (broker gone, timeout) are sent again with
    exponential backoff until they are delivered: the caller acks its input only
    after this returns, so nothing is acked that Kafka does not have. ``attempts``
    bounds the rounds (``None``: retry while the worker runs). Returns the number of
    rounds it took (1 when everything went through the first time).
    """
    pending = list(messages)
    rounds = 0
    delay = 0.2
    while pending:
        rounds += 1
        futures: list[Any] = []
        # The producer and the name of each topic, looked up once per round.
        targets: dict[int, tuple[Any, str]] = {}
        for msg in pending:
            try:
                # Straight to the app's producer: Topic.send adds codec, sensor and
                # callback work per message that bytes in, bytes out do not need.
                topic = msg.topic
                target = targets.get(id(topic))
                if target is None:
                    producer = await topic.app.maybe_start_producer()
                    target = targets[id(topic)] = (producer, topic.get_topic_name())
                producer, name = target
                fut = await producer.send(
                    name, msg.key, msg.value, None, None, msg.headers or None
                )
            except Exception as exc:  # any producer error is retried
                fut = failed_future(exc)
            futures.append(fut)
        failed = await _failures(pending, futures)
        if not failed:
            return rounds
        if attempts is not None and rounds >= attempts:
            raise failed[0][1]
        log.warning(
            "delivery of %d of %d message(s) to Kafka failed (%s); retrying in %.1fs",
            len(failed),
            len(pending),
            failed[0][1],
            delay,
        )
        pending = [msg for msg, _ in failed]
        await asyncio.sleep(delay * (0.5 + random.random() / 2))
        delay = min(delay * 2, max_backoff)
    return rounds


async def _failures(
    messages: Sequence[Outgoing], futures: Sequence[asyncio.Future[Any]]
) -> list[tuple[Outgoing, BaseException]]:
    """Wait for every delivery report; the messages that failed, with the error.

    Reports are checked in send order and the loop suspends only on one that is
    not in yet (they arrive a producer batch at a time): ``asyncio.gather`` adds a
    callback to each of a thousand futures per batch (3 % of the worker's CPU in a
    py-spy profile). ``asyncio.wait`` never cancels the producer's future when the
    caller is cancelled; the cancellation propagates from here.
    """
    failed: list[tuple[Outgoing, BaseException]] = []
    for msg, fut in zip(messages, futures, strict=True):
        if not fut.done():
            await asyncio.wait((fut,))
        if fut.cancelled():
            failed.append((msg, asyncio.CancelledError("the send was cancelled")))
        elif (exc := fut.exception()) is not None:
            failed.append((msg, exc))
    return failed


def failed_future(exc: BaseException) -> asyncio.Future[Any]:
    """A future that already failed with ``exc`` (stands in for a send that raised)."""
    fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    fut.set_exception(exc)
    return fut


def as_bytes(value: Any) -> bytes | None:
    """An event's key or value as bytes (the raw codec gives bytes; None stays None)."""
    if value is None or isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    return bytes(value)
