"""Alerts after the rules: stored once, delivered by webhook, served and counted.

* :mod:`streamapp.alerts.webhook`: the webhook target (credentials as Basic auth,
  never logged), one delivery round with retries and backoff, and the outbox loop
  every worker runs over the ``alerts`` table;
* :mod:`streamapp.alerts.outbox`: the outbox's SQL (claim due alerts with a lease,
  record each round's outcome);
* :mod:`streamapp.alerts.queries`: ``GET /api/alerts`` (filters, keyset pages);
* :mod:`streamapp.alerts.metrics`: ``streamapp_alerts_total{rule}``,
  ``streamapp_alert_deliveries_total{outcome}``, alerts awaiting delivery.

The sink is :mod:`streamapp.sinks.alerts`, the agent and the loop's task
``agents/alerts.py``.
"""
