"""Overlap a batch's I/O (broker acks, database commit) with reading the next batch."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

__all__ = ["InFlight"]


class InFlight:
    """At most one batch's I/O stage running in the background, batches in order.

    An agent prepares batch N+1 (CPU: validate, decode) while batch N waits for
    Kafka or PostgreSQL, and only then waits for N: ``submit`` first awaits the
    previous stage, so stages never run concurrently, their side effects happen in
    batch order, and an error in stage N is raised by the ``submit`` of N+1 (or by
    :meth:`drain`) -- the agent fails exactly as if it had awaited N itself, one
    batch later. Whatever was not acked when that happens is redelivered.

    Use it as an async context manager: leaving the block normally drains the last
    stage (its batch gets acked); leaving it with an exception or a cancellation
    cancels the stage (its batch stays unacked and Kafka redelivers it).
    """

    def __init__(self) -> None:
        self._pending: asyncio.Future[Any] | None = None

    @property
    def busy(self) -> bool:
        """Whether a stage is still running."""
        return self._pending is not None and not self._pending.done()

    async def submit(self, stage: Awaitable[Any]) -> None:
        """Wait for the previous stage, then start ``stage`` in the background."""
        try:
            await self.drain()
        except BaseException:
            # Never leave the new coroutine un-awaited (it would warn).
            if asyncio.iscoroutine(stage):
                stage.close()
            raise
        self._pending = asyncio.ensure_future(stage)

    async def drain(self) -> None:
        """Wait for the running stage, if any; raise what it raised."""
        pending, self._pending = self._pending, None
        if pending is not None:
            await pending

    async def cancel(self) -> None:
        """Cancel the running stage, if any, and wait until it has stopped."""
        pending, self._pending = self._pending, None
        if pending is None:
            return
        pending.cancel()
        # asyncio.wait does not raise the stage's error (nor swallow our own
        # cancellation, as suppressing CancelledError around ``await`` would).
        await asyncio.wait([pending])
        if not pending.cancelled():
            pending.exception()  # retrieved: no "never retrieved" warning

    async def __aenter__(self) -> InFlight:
        return self

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            await self.drain()
        else:
            await self.cancel()
