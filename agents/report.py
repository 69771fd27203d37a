"""The ``log_stats`` timer: logs the pipeline counters served at /api/stats."""

from __future__ import annotations

import json
import logging

from streamapp.app import app
from streamapp.stats import stats

__all__ = ["log_stats"]

log = logging.getLogger(__name__)

#: Seconds between two log lines of the counters.
REPORT_INTERVAL = 30.0


@app.timer(REPORT_INTERVAL)
async def log_stats() -> None:
    """Log every counter in one JSON line."""
    log.info("pipeline stats %s", json.dumps(stats.snapshot(), sort_keys=True))
