"""Prometheus metrics: Faust's sensor plus the pipeline's own, in one registry."""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING

from faust.sensors.prometheus import FaustMetrics
from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from streamapp.stats import COUNTERS, PipelineStats, stats

if TYPE_CHECKING:  # streamapp.lag imports faust_ext, whose monitor imports this
    from streamapp.lag import LagReport

__all__ = [
    "FAUST_PREFIX",
    "REGISTRY",
    "faust_metrics",
    "observe_fetch",
    "observe_sink_batch",
    "set_lag_report",
    "sink_batch_size",
    "sink_write_seconds",
    "source_fetch_seconds",
]

#: Everything /metrics exports lives in this registry (not the global default one).
REGISTRY = CollectorRegistry(auto_describe=True)

#: Prefix of Faust's own sensor metrics (fixed, whatever the app id).
FAUST_PREFIX = "streamapp_faust"

#: Rows in one batch a sink wrote (label ``table``: earthquakes, dead_letters).
sink_batch_size = Histogram(
    "streamapp_sink_batch_size",
    "Rows per batch written to PostgreSQL by a sink agent",
    ["table"],
    buckets=(1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000),
    registry=REGISTRY,
)

#: Seconds one sink batch took to write and commit (label ``table``).
sink_write_seconds = Histogram(
    "streamapp_sink_write_seconds",
    "Seconds to write and commit one sink batch to PostgreSQL",
    ["table"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    registry=REGISTRY,
)

#: Seconds one poll of the source took (label ``outcome``: ok or error).
source_fetch_seconds = Histogram(
    "streamapp_source_fetch_seconds",
    "Seconds one poll of the data source took, by outcome (ok, error)",
    ["outcome"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60),
    registry=REGISTRY,
)


def observe_sink_batch(table: str, rows: int, seconds: float) -> None:
    """Record one sink batch: how many rows and how long the write took."""
    sink_batch_size.labels(table=table).observe(rows)
    sink_write_seconds.labels(table=table).observe(seconds)


def observe_fetch(seconds: float, *, ok: bool) -> None:
    """Record one poll of the source and whether it succeeded."""
    source_fetch_seconds.labels(outcome="ok" if ok else "error").observe(seconds)


# Pre-create the children so the series exist (with zero counts) from the start.
for _table in ("earthquakes", "dead_letters"):
    sink_batch_size.labels(table=_table)
    sink_write_seconds.labels(table=_table)
for _outcome in ("ok", "error"):
    source_fetch_seconds.labels(outcome=_outcome)


class PipelineCollector(Collector):
    """Exports :mod:`streamapp.stats` at scrape time (one source of truth)."""

    def __init__(self, pipeline: PipelineStats) -> None:
        self.pipeline = pipeline

    def collect(self) -> Iterator[Metric]:
        snap = self.pipeline.snapshot()
        for name, meaning in COUNTERS.items():
            if name == "invalid":
                continue
            yield CounterMetricFamily(
                f"streamapp_pipeline_{name}", meaning, value=float(snap.get(name, 0))
            )
        invalid = CounterMetricFamily(
            "streamapp_pipeline_invalid",
            COUNTERS["invalid"] + ", by error kind",
            labels=["kind"],
        )
        by_kind: dict[str, int] = dict(snap.get("invalid_by_kind") or {})
        unlabelled = int(snap.get("invalid", 0)) - sum(by_kind.values())
        if unlabelled > 0:
            by_kind["unknown"] = by_kind.get("unknown", 0) + unlabelled
        for kind, count in sorted(by_kind.items()):
            invalid.add_metric([kind], float(count))
        yield invalid
        last = self.pipeline.last_fetch_at
        last_fetch = GaugeMetricFamily(
            "streamapp_source_last_fetch_timestamp_seconds",
            "Unix time of the last poll of the source (0: none yet)",
            value=last.timestamp() if last is not None else 0.0,
        )
        yield last_fetch
        yield GaugeMetricFamily(
            "streamapp_uptime_seconds",
            "Seconds since the pipeline counters started",
            value=float(snap.get("uptime_seconds", 0.0)),
        )


class LagCollector(Collector):
    """Exports the last consumer-lag report (refreshed by the /metrics view)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._report: LagReport | None = None

    def set(self, report: LagReport) -> None:
        with self._lock:
            self._report = report

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            report = self._report
        labels = ["group", "topic", "partition"]
        lag = GaugeMetricFamily(
            "streamapp_consumer_lag",
            "Messages not yet consumed: end offset minus committed offset",
            labels=labels,
        )
        end = GaugeMetricFamily(
            "streamapp_consumer_end_offset",
            "End (next) offset of the partition",
            labels=labels,
        )
        committed = GaugeMetricFamily(
            "streamapp_consumer_committed_offset",
            "Offset the consumer group committed (absent: never committed)",
            labels=labels,
        )
        up = GaugeMetricFamily(
            "streamapp_consumer_lag_up",
            "1 when the last lag query to Kafka succeeded, else 0",
        )
        if report is not None:
            for p in report.partitions:
                values = [report.group, p.topic, str(p.partition)]
                lag.add_metric(values, float(p.lag))
                end.add_metric(values, float(p.end_offset))
                if p.committed is not None:
                    committed.add_metric(values, float(p.committed))
            up.add_metric([], 0.0 if report.error else 1.0)
        else:
            up.add_metric([], 0.0)
        yield lag
        yield end
        yield committed
        yield up


_lag_collector = LagCollector()
REGISTRY.register(PipelineCollector(stats))
REGISTRY.register(_lag_collector)


def set_lag_report(report: LagReport) -> None:
    """Make ``report`` the lag that /metrics exports."""
    _lag_collector.set(report)


@functools.cache
def faust_metrics() -> FaustMetrics:
    """Faust's sensor metrics in :data:`REGISTRY`, created once per process.

    Every app of the process (tests build several) shares them: a Prometheus
    registry refuses a second metric of the same name.
    """
    return FaustMetrics.create(REGISTRY, FAUST_PREFIX)
