"""The monitor class (``Monitor=`` setting): Faust's Prometheus sensor, batched.

Subclasses ``faust.sensors.prometheus.PrometheusMonitor`` (faust-streaming 0.15.3)
and overrides its per-message hooks and ``Monitor._sample``; reads its
``_metrics`` and ``_stream_label``. Guarded by
``tests/unit/streamapp/faust_ext/test_upstream_guard.py``. Can go when faust's
monitor stops doing label lookups per message.

Example::

    app = faust.App("streamapp", Monitor=BatchedPrometheusMonitor)
    publish_faust_sensor(app)  # before a scrape of /metrics
"""

from __future__ import annotations

from typing import Any

from faust.sensors.prometheus import FaustMetrics, PrometheusMonitor
from faust.types import TP, AppT, EventT, Message, StreamT

from streamapp.metrics import faust_metrics

__all__ = ["BatchedPrometheusMonitor", "publish_faust_sensor"]


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

    def __init__(self, metrics: FaustMetrics | None = None, **kwargs: Any) -> None:
        super().__init__(metrics=metrics or faust_metrics(), **kwargs)
        self._received: dict[TP, int] = {}
        self._read_offsets: dict[TP, int] = {}
        self._end_offsets: dict[TP, int] = {}
        self._events: dict[StreamT, int] = {}
        self._batch_events: dict[str, int] = {}
        self._out = 0

    def on_message_in(self, tp: TP, offset: int, message: Message) -> None:
        """Count a message handed to the streams (published later)."""
        received = self._received
        received[tp] = received.get(tp, 0) + 1
        self._read_offsets[tp] = offset

    def count_batch_in(self, tp: TP, count: int, last_offset: int) -> None:
        """Count a batch handed to an agent by the batch path (one stream event
        each, as ``on_message_in`` plus ``on_stream_event_in`` would)."""
        received = self._received
        received[tp] = received.get(tp, 0) + count
        self._read_offsets[tp] = last_offset
        self._batch_events[tp.topic] = self._batch_events.get(tp.topic, 0) + count

    def count_batch_out(self, count: int) -> None:
        """Count records acked by the batch path."""
        self._out += count

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
        batch_events, self._batch_events = self._batch_events, {}
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
        for topic, n in batch_events.items():
            self.events_total += n
            self.events_by_stream[f"batches.{topic}"] += n
            metrics.total_events.inc(n)
            metrics.total_events_per_stream.labels(
                stream=f"stream.batches.{topic}.events"
            ).inc(n)
        if out:
            self.messages_active -= out
            metrics.active_messages.dec(out)

    def _sample(
        self, prev_event_total: int, prev_message_total: int
    ) -> tuple[int, int]:
        """Faust's once-a-second sampler (``Monitor._sample``), after a publish."""
        self.publish()
        return super()._sample(prev_event_total, prev_message_total)


def publish_faust_sensor(app: AppT) -> None:
    """Bring the app's monitor metrics up to date (before a scrape)."""
    monitor = app.monitor
    if isinstance(monitor, BatchedPrometheusMonitor):
        monitor.publish()
