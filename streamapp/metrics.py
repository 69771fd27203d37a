"""Prometheus metrics: Faust's sensor plus the pipeline's own, in one registry."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

from faust.sensors.prometheus import FaustMetrics, PrometheusMonitor
from faust.types import TP, AppT, EventT, Message, StreamT
from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from streamapp.lag import LagReport
from streamapp.stats import COUNTERS, PipelineStats, stats

__all__ = [
    "FAUST_PREFIX",
    "REGISTRY",
    "BatchedPrometheusMonitor",
    "install_faust_sensor",
    "observe_fetch",
    "observe_sink_batch",
    "publish_faust_sensor",
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


class BatchedPrometheusMonitor(PrometheusMonitor):
    """Faust's Prometheus monitor, with the per-message hooks counted in plain dicts.

    Faust calls ``on_message_in``, ``on_stream_event_in``/``out`` and
    ``track_tp_end_offset`` for every event; the stock monitor does label lookups,
    a stream-label regex and several metric updates in each (8 to 10 % of the
    worker's CPU in py-spy). Here those hooks only write to dicts; :meth:`publish`
    moves the sums into the same Prometheus metrics and Faust counters once a
    second (Faust's sampler) and on every scrape of ``/metrics``. Nothing is lost:
    the metrics lag by <= 1 s. The per-event runtime histogram is not kept:
    ``noack_take`` streams never call ``on_stream_event_out`` (the agents ack the
    events), so it stayed empty.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._received: dict[TP, int] = {}
        self._read_offsets: dict[TP, int] = {}
        self._end_offsets: dict[TP, int] = {}
        self._events: dict[StreamT, int] = {}
        self._out = 0

    def on_message_in(self, tp: TP, offset: int, message: Message) -> None:
        """Count a message handed to the streams (published later)."""
        received = self._received
        received[tp] = received.get(tp, 0) + 1
        self._read_offsets[tp] = offset

    def track_tp_end_offset(self, tp: TP, offset: int) -> None:
        """Note a partition's end offset (faust calls this for every record)."""
        self._end_offsets[tp] = offset

    def on_stream_event_in(
        self, tp: TP, offset: int, stream: StreamT, event: EventT
    ) -> dict[str, Any] | None:
        """Count an event a stream started on (published later)."""
        events = self._events
        events[stream] = events.get(stream, 0) + 1
        return None

    def on_stream_event_out(
        self,
        tp: TP,
        offset: int,
        stream: StreamT,
        event: EventT,
        state: dict[str, Any] | None = None,
    ) -> None:
        """Nothing per event (see the class docstring)."""

    def on_message_out(self, tp: TP, offset: int, message: Message) -> None:
        """Count a message fully acked by a stream (published later)."""
        self._out += 1

    def publish(self) -> None:
        """Move the counts gathered since the last call into the metrics."""
        # The hooks, Faust's sampler and the web view (web_in_thread=False) all run
        # on the event loop's thread: swapping the dicts loses no count.
        received, self._received = self._received, {}
        offsets, self._read_offsets = self._read_offsets, {}
        ends, self._end_offsets = self._end_offsets, {}
        events, self._events = self._events, {}
        out, self._out = self._out, 0
        metrics = self._metrics
        for tp, n in received.items():
            self.messages_received_total += n
            self.messages_active += n
            self.messages_received_by_topic[tp.topic] += n
            metrics.messages_received.inc(n)
            metrics.active_messages.inc(n)
            metrics.messages_received_per_topics.labels(topic=tp.topic).inc(n)
        for tp, offset in offsets.items():
            self.tp_read_offsets[tp] = offset
            metrics.messages_received_per_topics_partition.labels(
                topic=tp.topic, partition=tp.partition
            ).set(offset)
        for tp, offset in ends.items():
            super().track_tp_end_offset(tp, offset)
        for stream, n in events.items():
            self.events_total += n
            self.events_by_stream[str(stream)] += n
            metrics.total_events.inc(n)
            metrics.total_events_per_stream.labels(
                stream=f"stream.{self._stream_label(stream)}.events"
            ).inc(n)
        if out:
            self.messages_active -= out
            metrics.active_messages.dec(out)

    def _sample(
        self, prev_event_total: int, prev_message_total: int
    ) -> tuple[int, int]:
        self.publish()
        return super()._sample(prev_event_total, prev_message_total)


def publish_faust_sensor(app: AppT) -> None:
    """Bring the app's monitor metrics up to date (before a scrape)."""
    monitor = app.monitor
    if isinstance(monitor, BatchedPrometheusMonitor):
        monitor.publish()


_installed: dict[int, FaustMetrics] = {}


def install_faust_sensor(app: AppT) -> None:
    """Make Faust's Prometheus monitor the app's monitor, reporting into REGISTRY.

    Does what ``faust.sensors.prometheus.setup_prometheus_sensors`` does, minus its
    own ``/metrics`` page (ours serves the same registry plus the pipeline's
    metrics). Must run before the worker starts; calling it twice is harmless.
    """
    if id(app) in _installed:
        return
    if not _installed:
        faust_metrics = FaustMetrics.create(REGISTRY, FAUST_PREFIX)
    else:  # another app in the same process (tests): share the metric objects
        faust_metrics = next(iter(_installed.values()))
    _installed[id(app)] = faust_metrics
    app.monitor = BatchedPrometheusMonitor(metrics=faust_metrics)
