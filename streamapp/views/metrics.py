"""``/metrics``: Faust's Prometheus sensor plus the pipeline's own metrics and lag."""

from __future__ import annotations

from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from streamapp.app import app, settings
from streamapp.faust_ext import publish_faust_sensor
from streamapp.lag import lag_reader
from streamapp.metrics import REGISTRY, set_lag_report

__all__ = ["MetricsView"]


@app.page("/metrics")
class MetricsView(View):
    """Prometheus text exposition of every streamapp and Faust metric."""

    async def get(self, request: Request) -> Response:
        set_lag_report(await lag_reader(settings).report())
        publish_faust_sensor(self.app)
        return self.bytes(
            generate_latest(REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )
