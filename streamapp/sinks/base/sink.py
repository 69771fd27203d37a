"""The batching sink: buffer, write on a worker thread, retry transient errors, bisect.

In the style of Quix Streams' ``BatchingSink``: a connector subclasses
:class:`Sink` and implements only :meth:`Sink.write_batch` (one transaction per
batch); the retry and bisection policy lives here, once.
"""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ClassVar

from sqlalchemy.engine import Engine

from streamapp.backoff import backoff_delay
from streamapp.db import get_engine
from streamapp.exceptions import PermanentSinkError, TransientSinkError
from streamapp.settings import Settings
from streamapp.sinks.base.item import Item, Rejected
from streamapp.stats import stats

__all__ = ["Sink"]

log = logging.getLogger(__name__)


class Sink(ABC):
    """A batching sink in the style of Quix Streams' ``BatchingSink``.

    ``add()`` buffers items; ``await flush()`` writes them with :meth:`write_batch`
    (blocking, run on the sink's own single worker thread so the event loop keeps
    serving heartbeats and timers) and returns the rows the database rejected.

    * :class:`TransientSinkError`: the SAME batch is retried in place with capped
      exponential backoff, for as long as the worker runs (cancel the task to stop);
      nothing is skipped, the caller simply waits.
    * :class:`PermanentSinkError`: the batch is bisected until every row the
      database refuses is isolated; all other rows are written, the refused ones
      are returned as :class:`Rejected` for the caller to dead-letter.

    The buffer is cleared in ``finally``: whatever happens, the next ``flush()``
    starts empty (items of a failed flush are the caller's to redeliver: it has not
    acked them).
    """

    #: Short name for logs and the worker thread.
    name: ClassVar[str] = "sink"

    def __init__(
        self,
        settings: Settings,
        *,
        engine: Engine | None = None,
        executor: ThreadPoolExecutor | None = None,
        min_backoff: float = 0.5,
        max_backoff: float = 10.0,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        self.settings = settings
        self._engine = engine
        self._own_executor = executor is None
        self._executor = executor or ThreadPoolExecutor(
            max_workers=1, thread_name_prefix=f"{self.name}-db"
        )
        self.min_backoff = min_backoff
        self.max_backoff = max_backoff
        self._sleep = sleep
        self._batch: list[Item] = []
        #: Transient failures retried over the sink's lifetime.
        self.retries = 0

    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine (the process-wide one of the settings by default)."""
        if self._engine is None:
            self._engine = get_engine(self.settings)
        return self._engine

    def add(self, item: Item) -> None:
        """Buffer one item for the next :meth:`flush`."""
        self._batch.append(item)

    def __len__(self) -> int:
        return len(self._batch)

    async def flush(self) -> list[Rejected]:
        """Write every buffered item; return those the database refused for good."""
        items = list(self._batch)
        try:
            if not items:
                return []
            return await self._write_isolating(items)
        finally:
            self._batch.clear()

    @abstractmethod
    def write_batch(self, items: Sequence[Item]) -> None:
        """Write ``items`` in ONE transaction (blocking; runs in a worker thread).

        Raises :class:`TransientSinkError` or :class:`PermanentSinkError` only.
        """

    def close(self) -> None:
        """Release the worker thread (the engine is shared and stays open)."""
        if self._own_executor:
            self._executor.shutdown(wait=False)

    # ------------------------------------------------------------------ internals

    async def _run(self, items: Sequence[Item]) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self.write_batch, items)

    async def _write_retrying(self, items: Sequence[Item]) -> None:
        """Write ``items``, retrying transient errors in place; raises only
        :class:`PermanentSinkError` (or ``CancelledError`` when the worker stops)."""
        attempt = 0
        while True:
            try:
                await self._run(items)
            except TransientSinkError as exc:
                attempt += 1
                self.retries += 1
                stats.incr("sink_retries")
                delay = backoff_delay(attempt, self.min_backoff, self.max_backoff)
                log.warning(
                    "%s: %s; retrying the same %d row(s) in %.1fs (attempt %d)",
                    self.name,
                    exc,
                    len(items),
                    delay,
                    attempt,
                )
                await self._sleep(delay)
                continue
            if attempt:
                log.info(
                    "%s: database write succeeded after %d retr%s",
                    self.name,
                    attempt,
                    "y" if attempt == 1 else "ies",
                )
            return

    async def _write_isolating(self, items: Sequence[Item]) -> list[Rejected]:
        """Write ``items``; on a permanent error, bisect to isolate refused rows."""
        try:
            await self._write_retrying(items)
        except PermanentSinkError as exc:
            if len(items) == 1:
                sqlstate = getattr(exc, "sqlstate", None)
                reason = getattr(exc, "reason", None) or str(exc)
                log.warning("%s: row rejected by the database: %s", self.name, exc)
                return [Rejected(items[0], reason, sqlstate)]
            middle = len(items) // 2
            left = await self._write_isolating(items[:middle])
            right = await self._write_isolating(items[middle:])
            return left + right
        return []
