"""Prometheus metrics of the alerts, on :data:`streamapp.metrics.REGISTRY`.

* ``streamapp_alerts_total{rule}``: alerts this worker stored for the first time
  (a replayed or revised alert is not counted again);
* ``streamapp_alert_deliveries_total{outcome}``: webhook requests that delivered
  an alert (``delivered``), that failed (``failed``, one per attempt), and rounds
  that ended without delivery (``gave_up``: the alert waits for the next round);
* ``streamapp_alerts_awaiting_delivery``: alerts pending or failing in the table,
  as the delivery loop last counted them.

Example::

    count_stored([("magnitude:us1", "magnitude")])
    deliveries.labels(outcome="delivered").inc()
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import Counter, Gauge

from models.alerts import RULES
from streamapp.metrics import REGISTRY
from streamapp.stats import stats

__all__ = [
    "DELIVERY_OUTCOMES",
    "alerts_awaiting",
    "alerts_stored",
    "count_stored",
    "deliveries",
]

#: Labels of ``streamapp_alert_deliveries_total``.
DELIVERY_OUTCOMES = ("delivered", "failed", "gave_up")

#: Alerts stored for the first time, by rule.
alerts_stored = Counter(
    "streamapp_alerts_total",
    "Alerts stored for the first time by this worker, by rule",
    ["rule"],
    registry=REGISTRY,
)

#: Webhook requests and rounds, by outcome.
deliveries = Counter(
    "streamapp_alert_deliveries_total",
    "Webhook deliveries by outcome: delivered (a 2xx), failed (one failed "
    "attempt), gave_up (a round ended undelivered; retried later)",
    ["outcome"],
    registry=REGISTRY,
)

#: Alerts pending or failing (the outbox), as last counted.
alerts_awaiting = Gauge(
    "streamapp_alerts_awaiting_delivery",
    "Alerts not yet delivered to the webhook (pending or failing)",
    registry=REGISTRY,
)

for _rule in RULES:
    alerts_stored.labels(rule=_rule)
for _outcome in DELIVERY_OUTCOMES:
    deliveries.labels(outcome=_outcome)


def count_stored(inserted: Iterable[tuple[str, str]]) -> int:
    """Count ``(id, rule)`` pairs stored for the first time; returns how many."""
    n = 0
    for _id, rule in inserted:
        alerts_stored.labels(rule=rule).inc()
        n += 1
    stats.incr("alerts_stored", n)
    return n
