"""The backfill: a time range of the FDSN service into the raw topic, slice by slice.

Usage::

    backfill = Backfill(params, client, store, send, known=versions, rate=500.0)
    summary = await backfill.run()           # resumes after the last finished slice
    print(summary.line())

The range is walked oldest first in slices that fit one query: the service's
``count`` of the range sizes the first slice (about 80 % of the per-query limit),
a slice the service refuses as too large (:class:`TooManyEvents`) is halved, and
the next slice's width follows the last one's event count. Each feature goes to
the raw topic in the live fetcher's envelope (:func:`~streamapp.sources.encode_raw`)
unless the fetcher's dedup table says it sent the same ``updated`` already; the
sends are paced by a token bucket at ``rate`` events per second and awaited (Kafka
acknowledged every one) before the slice's end is written to the progress table.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from streamapp.backfill.fdsn import FdsnClient, Page, TooManyEvents
from streamapp.backfill.progress import Params, ProgressStore, RunState
from streamapp.backfill.rate import TokenBucket
from streamapp.exceptions import SourceError
from streamapp.sources.base import encode_raw

__all__ = [
    "MIN_SLICE",
    "Backfill",
    "Progress",
    "Send",
    "Summary",
]

log = logging.getLogger(__name__)

#: Sends the raw messages ``(key, value)`` and returns once Kafka has them all.
Send = Callable[[Sequence[tuple[bytes | None, bytes]]], Awaitable[Any]]
#: The dedup key and version of a feature (``agents.fetch.dedup_key``).
KeyOf = Callable[[Any], tuple[str, int]]

#: The narrowest slice: a range this short that still matches too many events fails.
MIN_SLICE = timedelta(seconds=1)
#: Share of the per-query limit a slice aims at (room for events added meanwhile).
FILL = 0.8
#: Events per send (and per token-bucket request) at most.
MAX_CHUNK = 500


@dataclass(frozen=True)
class Progress:
    """Where a running backfill is (what the progress bar shows)."""

    slices_done: int
    slices_estimate: int | None
    events_fetched: int
    events_expected: int | None
    produced: int
    skipped: int
    seconds: float
    #: Events handled (produced or skipped) by this invocation.
    handled: int

    @property
    def rate(self) -> float:
        """Events per second handled by this invocation."""
        return self.handled / self.seconds if self.seconds > 0 else 0.0

    @property
    def eta(self) -> float | None:
        """Seconds left at the current rate (None: unknown)."""
        if self.events_expected is None or self.rate <= 0:
            return None
        return max(0.0, (self.events_expected - self.events_fetched) / self.rate)


@dataclass
class Summary:
    """What one invocation did (counts of the whole run in ``state``)."""

    state: RunState
    slices: int = 0
    fetched: int = 0
    produced: int = 0
    skipped: int = 0
    oversized: int = 0
    splits: int = 0
    requests: int = 0
    seconds: float = 0.0
    resumed_from: datetime | None = None
    already_finished: bool = False
    #: Of ``produced``, the events of slices already written to the progress table.
    produced_recorded: int = 0

    @property
    def rate(self) -> float:
        """Events (produced or skipped) per second of this invocation."""
        handled = self.produced + self.skipped + self.oversized
        return handled / self.seconds if self.seconds > 0 else 0.0

    def line(self) -> str:
        """The final one-line summary."""
        s = self.state
        span = f"{s.since.isoformat()} .. {s.until.isoformat()}"
        if self.already_finished:
            at = s.finished_at.isoformat(timespec="seconds") if s.finished_at else "?"
            return (
                f"backfill {span} already finished at {at}: "
                f"{s.slices_done} slices, {s.events_produced} events produced, "
                f"{s.events_skipped} skipped as already sent; nothing to do "
                "(--restart runs it again)"
            )
        head = "finished" if s.finished else "stopped"
        resumed = (
            f", resumed from {self.resumed_from.isoformat()}"
            if self.resumed_from is not None
            else ""
        )
        return (
            f"backfill {head}: {self.slices} slices, {self.fetched} events fetched, "
            f"{self.produced} produced, {self.skipped} skipped as already sent"
            + (f", {self.oversized} too large for Kafka" if self.oversized else "")
            + f", in {self.seconds:.1f}s ({self.rate:.0f} events/s); "
            f"{self.requests} requests, {self.splits} splits; {span}{resumed}"
        )


@dataclass
class Backfill:
    """One backfill of ``params``; see the module docstring."""

    params: Params
    client: FdsnClient
    store: ProgressStore
    send: Send
    key_of: KeyOf
    known: Mapping[str, int] = field(default_factory=dict)
    rate: float = 500.0
    max_value_bytes: int | None = None
    on_progress: Callable[[Progress], None] | None = None
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep

    def __post_init__(self) -> None:
        self.chunk = max(1, min(MAX_CHUNK, math.ceil(self.rate / 10)))
        self.bucket = TokenBucket(self.rate, self.chunk, sleep=self.sleep)

    async def run(self, *, restart: bool = False) -> Summary:
        """Run (or resume) the backfill to the end of its range; the summary.

        Raises :class:`SourceError` when the service fails for good (the run
        resumes after its last finished slice next time) and whatever ``send``
        raises when Kafka does not take the events.
        """
        started = self.clock()
        store = self.store
        state = await asyncio.to_thread(
            store.open, self.params, source_url=self.client.url
        )
        if state.finished and not restart:
            return Summary(state=state, already_finished=True)
        if restart and (state.slices_done or state.finished):
            state = await asyncio.to_thread(store.restart, state.id)
        summary = Summary(state=state)
        if state.done_until > state.since:
            summary.resumed_from = state.done_until
        try:
            await self._walk(summary, started)
        except Exception as exc:
            summary.seconds = self.clock() - started
            summary.requests = self.client.requests
            try:
                summary.state = await asyncio.to_thread(
                    store.fail, state.id, f"{type(exc).__name__}: {exc}"
                )
            except Exception:  # the original error is the one to report
                log.exception("backfill: could not record the error")
            raise
        summary.seconds = self.clock() - started
        summary.requests = self.client.requests
        return summary

    async def _walk(self, summary: Summary, started: float) -> None:
        store = self.store
        state = summary.state
        until = state.until
        cursor = state.done_until
        target = max(1, int(self.client.max_events * FILL))
        remaining = await self.client.count(self.params.window().part(cursor, until))
        if remaining is not None:
            expected = state.events_fetched + remaining
            if expected != state.events_expected:
                state = await asyncio.to_thread(store.expect, state.id, expected)
        span = until - cursor
        width = (
            span if not remaining or remaining <= target else span * target / remaining
        )
        summary.state = state
        self._report(summary, started, target)
        while cursor < until:
            end = min(until, _whole_ms(cursor + width))
            window = self.params.window().part(cursor, end)
            try:
                page = await self.client.query(window)
            except TooManyEvents:
                if end - cursor <= MIN_SLICE:
                    raise SourceError(
                        f"{self.client.url}: more than {self.client.max_events} "
                        f"events between {cursor.isoformat()} and {end.isoformat()}; "
                        "cannot split further (BACKFILL_MAX_EVENTS_PER_QUERY)"
                    ) from None
                width = max(MIN_SLICE, (end - cursor) / 2)
                summary.splits += 1
                log.info("backfill: slice from %s too large; halved", cursor)
                continue
            produced, skipped, oversized = await self._produce(
                page, summary, started, target
            )
            n = len(page.features)
            state = await asyncio.to_thread(
                store.slice_done,
                state.id,
                done_until=end,
                fetched=n,
                produced=produced,
                skipped=skipped + oversized,
            )
            summary.state = state
            summary.slices += 1
            summary.fetched += n
            summary.produced_recorded += produced
            cursor = end
            factor = 4.0 if n == 0 else min(4.0, max(0.25, target / n))
            width = max(MIN_SLICE, (end - window.since) * factor)
            self._report(summary, started, target)
        summary.state = await asyncio.to_thread(store.finish, state.id)

    async def _produce(
        self, page: Page, summary: Summary, started: float, target: int
    ) -> tuple[int, int, int]:
        """Send the new features of ``page``: (produced, skipped, oversized)."""
        chosen: dict[str, tuple[int, Any]] = {}
        for feature in page.features:
            key, version = self.key_of(feature)
            seen = chosen.get(key)
            if seen is None or version > seen[0]:
                chosen[key] = (version, feature)
        skipped = len(page.features) - len(chosen)
        messages: list[tuple[bytes | None, bytes]] = []
        oversized = 0
        for key, (version, feature) in chosen.items():
            sent = self.known.get(key)
            if sent is not None and version <= sent:
                skipped += 1
                continue
            raw_key, value = encode_raw(feature, page.fetched_at, page.url)
            if self.max_value_bytes is not None and len(value) > self.max_value_bytes:
                oversized += 1
                log.warning(
                    "backfill: feature %s is %d bytes, more than Kafka takes (%d): "
                    "not produced",
                    key,
                    len(value),
                    self.max_value_bytes,
                )
                continue
            messages.append((raw_key, value))
        summary.skipped += skipped
        summary.oversized += oversized
        for i in range(0, len(messages), self.chunk):
            chunk = messages[i : i + self.chunk]
            await self.bucket.acquire(len(chunk))
            await self.send(chunk)
            summary.produced += len(chunk)
            self._report(summary, started, target)
        return len(messages), skipped, oversized

    def _report(self, summary: Summary, started: float, target: int) -> None:
        if self.on_progress is None:
            return
        state = summary.state
        expected = state.events_expected
        in_flight = summary.produced + summary.skipped + summary.oversized
        fetched = state.events_fetched + max(0, in_flight - summary.fetched)
        estimate = None
        if expected is not None:
            left = max(0, expected - state.events_fetched)
            estimate = state.slices_done + (math.ceil(left / target) if left else 0)
        self.on_progress(
            Progress(
                slices_done=state.slices_done,
                slices_estimate=estimate,
                events_fetched=min(fetched, expected) if expected else fetched,
                events_expected=expected,
                produced=state.events_produced
                + summary.produced
                - summary.produced_recorded,
                skipped=state.events_skipped,
                seconds=self.clock() - started,
                handled=in_flight,
            )
        )


def _whole_ms(when: datetime) -> datetime:
    """``when`` rounded down to the millisecond (the service's time resolution)."""
    return when.replace(microsecond=when.microsecond - when.microsecond % 1000)
