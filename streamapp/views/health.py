"""``/health`` (Kafka and PostgreSQL reachable) and ``/api/stats`` (the counters)."""

from __future__ import annotations

from faust.web import Request, Response, View

from streamapp.app import app, settings
from streamapp.health import check_health
from streamapp.stats import stats

__all__ = ["HealthView", "StatsView"]


@app.page("/health")
class HealthView(View):
    """200 when Kafka and PostgreSQL answer, else 503 naming the one that failed."""

    async def get(self, request: Request) -> Response:
        report = await check_health(settings)
        return self.json(report.as_dict(), status=200 if report.ok else 503)


@app.page("/api/stats")
class StatsView(View):
    """The pipeline counters, the same ones the worker logs."""

    async def get(self, request: Request) -> Response:
        return self.json(stats.snapshot())
