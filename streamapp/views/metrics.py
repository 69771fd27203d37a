"""``/metrics``: Faust's Prometheus sensor plus the pipeline's own metrics and lag."""

from __future__ import annotations

from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from streamapp.app import app, settings
from streamapp.lag import lag_reader
from streamapp.metrics import (
    REGISTRY,
    install_faust_sensor,
    publish_faust_sensor,
    set_lag_report,
)

__all__ = ["MetricsView"]

# Faust's sensor must replace the default monitor before the worker starts; views
# are discovered before that. Its own /metrics page is not registered: this one
# serves the same registry.
install_faust_sensor(app)


@app.page("/metrics")
class MetricsView(View):
    """Prometheus text exposition of every streamapp and Faust metric."""

    async def get(self, request: Request) -> Response:
        set_lag_report(await lag_reader(settings).report())
        publish_faust_sensor(self.app)
        return self.bytes(
            generate_latest(REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )
