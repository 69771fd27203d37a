"""Backfill progress for the worker: ``/api/stats``'s ``backfill`` and ``/metrics``.

The worker reads the latest rows of the progress table in a thread, at most every
``ttl`` seconds, and keeps them; the Prometheus collector exports the kept rows
(it never touches the database while ``/metrics`` renders).

Usage::

    status = BackfillStatus(settings)
    body["backfill"] = await status.get()   # None when no backfill ever ran
    REGISTRY.register(BackfillCollector(status))
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from streamapp.backfill.progress import ProgressStore, RunState
from streamapp.settings import Settings

__all__ = ["RUNS_SHOWN", "BackfillCollector", "BackfillStatus"]

log = logging.getLogger(__name__)

#: Runs shown in ``/api/stats`` and exported to ``/metrics`` (most recent first).
RUNS_SHOWN = 5


class BackfillStatus:
    """The latest backfill runs, read at most every ``ttl`` seconds."""

    def __init__(
        self,
        settings: Settings,
        *,
        ttl: float = 5.0,
        store: ProgressStore | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl = ttl
        self.store = store or ProgressStore(settings)
        self.runs: list[RunState] = []
        self.read_at: datetime | None = None
        self._clock = clock
        self._fresh_until = float("-inf")
        self._lock = asyncio.Lock()
        self._warned = False

    async def refresh(self, *, force: bool = False) -> list[RunState]:
        """Read the table (in a thread) unless the kept rows are fresh enough."""
        async with self._lock:
            if not force and self._clock() < self._fresh_until:
                return self.runs
            try:
                self.runs = await asyncio.to_thread(self.store.latest, RUNS_SHOWN)
                self.read_at = datetime.now(UTC)
                self._warned = False
            except Exception as exc:  # PostgreSQL away, or not migrated yet
                if not self._warned:
                    log.warning("backfill status unavailable: %s", exc)
                    self._warned = True
            self._fresh_until = self._clock() + self.ttl
            return self.runs

    async def get(self) -> dict[str, Any] | None:
        """The ``backfill`` part of ``/api/stats`` (None: no backfill ever ran)."""
        runs = await self.refresh()
        if not runs:
            return None
        return {
            "latest": runs[0].as_dict(),
            "runs": [run.as_dict() for run in runs],
            "read_at": self.read_at.isoformat() if self.read_at else None,
        }


class BackfillCollector(Collector):
    """Gauges of the kept runs, labelled by run id."""

    def __init__(self, status: BackfillStatus) -> None:
        self.status = status

    def collect(self) -> Iterator[Metric]:
        events = GaugeMetricFamily(
            "streamapp_backfill_events",
            "Events of a backfill run by kind: expected (the service's count), "
            "fetched, produced (acknowledged by Kafka), skipped (already sent)",
            labels=["run", "kind"],
        )
        slices = GaugeMetricFamily(
            "streamapp_backfill_slices_done",
            "Slices of a backfill run done (every event acknowledged)",
            labels=["run"],
        )
        fraction = GaugeMetricFamily(
            "streamapp_backfill_fraction_done",
            "Share of a backfill run's time range done, 0 to 1",
            labels=["run"],
        )
        finished = GaugeMetricFamily(
            "streamapp_backfill_finished",
            "1 when a backfill run is finished, else 0",
            labels=["run"],
        )
        updated = GaugeMetricFamily(
            "streamapp_backfill_updated_timestamp_seconds",
            "When a backfill run last made progress (Unix time)",
            labels=["run"],
        )
        for run in self.status.runs:
            rid = str(run.id)
            if run.events_expected is not None:
                events.add_metric([rid, "expected"], run.events_expected)
            events.add_metric([rid, "fetched"], run.events_fetched)
            events.add_metric([rid, "produced"], run.events_produced)
            events.add_metric([rid, "skipped"], run.events_skipped)
            slices.add_metric([rid], run.slices_done)
            fraction.add_metric([rid], run.fraction)
            finished.add_metric([rid], 1.0 if run.finished else 0.0)
            updated.add_metric([rid], run.updated_at.timestamp())
        yield from (events, slices, fraction, finished, updated)
