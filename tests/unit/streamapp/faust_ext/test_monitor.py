"""Unit tests of ``streamapp.faust_ext.BatchedPrometheusMonitor`` (no Kafka)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from faust.sensors.prometheus import FaustMetrics
from faust.types import TP
from prometheus_client import CollectorRegistry

from streamapp.faust_ext import BatchedPrometheusMonitor


def monitor() -> tuple[BatchedPrometheusMonitor, CollectorRegistry]:
    registry = CollectorRegistry()
    metrics = FaustMetrics.create(registry, "t")
    return BatchedPrometheusMonitor(metrics=metrics), registry


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    found = registry.get_sample_value(name, labels or None)
    return 0.0 if found is None else found


class FakeStream:
    shortlabel = "Stream: validate_quakes"

    def __str__(self) -> str:
        return "stream-validate"


def test_hooks_only_count_until_published() -> None:
    mon, registry = monitor()
    stream: Any = FakeStream()
    raw0, raw1 = TP("raw", 0), TP("raw", 1)
    message: Any = SimpleNamespace()
    for offset in range(5):
        mon.on_message_in(raw0, offset, message)
        assert mon.on_stream_event_in(raw0, offset, stream, message) is None
    mon.on_message_in(raw1, 41, message)
    mon.track_tp_end_offset(raw1, 99)
    mon.on_message_out(raw0, 0, message)
    # Nothing reached Prometheus or Faust's counters yet: the hooks are dict adds.
    assert value(registry, "t_messages_received_total") == 0
    assert mon.messages_received_total == 0

    mon.publish()
    assert value(registry, "t_messages_received_total") == 6
    assert value(registry, "t_messages_received_per_topic_total", topic="raw") == 6
    assert (
        value(
            registry,
            "t_messages_received_per_topics_partition",
            topic="raw",
            partition="1",
        )
        == 41
    )
    assert value(registry, "t_total_events_total") == 5
    assert value(registry, "t_active_messages") == 5  # 6 in, 1 out
    assert mon.messages_received_total == 6
    assert mon.messages_received_by_topic["raw"] == 6
    assert mon.events_total == 5
    assert mon.tp_read_offsets[raw0] == 4
    assert mon.tp_end_offsets[raw1] == 99
    assert (
        value(registry, "t_topic_partition_end_offset", topic="raw", partition="1")
        == 99
    )

    mon.publish()  # nothing new: nothing counted twice
    assert value(registry, "t_messages_received_total") == 6


def test_the_sampler_publishes() -> None:
    mon, registry = monitor()
    mon.on_message_in(TP("clean", 0), 7, SimpleNamespace())  # type: ignore[arg-type]
    mon._sample(0, 0)
    assert value(registry, "t_messages_received_total") == 1
    assert mon.messages_s == 1
