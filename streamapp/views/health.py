"""``/health`` (Kafka and PostgreSQL reachable) and ``/api/stats`` (the counters).

``/api/stats`` also carries ``"backfill"``: the latest backfill runs from the
progress table (None when no backfill ever ran), read in a thread at most every
few seconds; the same rows are exported to ``/metrics`` as ``streamapp_backfill_*``
gauges, refreshed by a timer so a scrape never waits for the database.
"""

from __future__ import annotations

from faust.web import Request, Response, View

from streamapp.app import app, settings
from streamapp.backfill.status import BackfillCollector, BackfillStatus
from streamapp.health import check_health
from streamapp.metrics import REGISTRY
from streamapp.stats import stats

__all__ = ["HealthView", "StatsView", "backfill_status", "refresh_backfill_status"]

#: Seconds between two reads of the backfill progress table.
BACKFILL_STATUS_SECONDS = 5.0

#: The latest backfill runs as this worker last read them.
backfill_status = BackfillStatus(settings, ttl=BACKFILL_STATUS_SECONDS)
REGISTRY.register(BackfillCollector(backfill_status))


@app.page("/health")
class HealthView(View):
    """200 when Kafka and PostgreSQL answer, else 503 naming the one that failed."""

    async def get(self, request: Request) -> Response:
        report = await check_health(settings)
        return self.json(report.as_dict(), status=200 if report.ok else 503)


@app.page("/api/stats")
class StatsView(View):
    """The pipeline counters, the same ones the worker logs, and backfill progress."""

    async def get(self, request: Request) -> Response:
        body = stats.snapshot()
        body["backfill"] = await backfill_status.get()
        return self.json(body)


@app.timer(BACKFILL_STATUS_SECONDS)
async def refresh_backfill_status() -> None:
    """Keep the backfill gauges of ``/metrics`` current (one short query)."""
    await backfill_status.refresh()
