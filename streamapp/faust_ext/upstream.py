"""The upstream code this layer copies, overrides or relies on, by source hash.

Each entry names a function (or property) of faust-streaming 0.15.3, aiokafka
0.14.0 or mode-streaming 0.7.1 and the first 16 hex digits of the SHA-256 of its
source as those releases ship it. :func:`changed_upstream` lists the entries
whose installed source differs; the guard test
(``tests/unit/streamapp/faust_ext/test_upstream_guard.py``) fails naming them,
so an upgrade cannot silently change what an override was written against.
After reviewing the layer against a new release, print the new table with
``python -m streamapp.faust_ext.upstream``.

Example::

    changed_upstream()  # [] while the pinned versions are installed
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
from collections.abc import Mapping
from typing import Any

__all__ = ["UPSTREAM_SOURCES", "changed_upstream", "source_hash"]

#: "module:Qualified.name" -> SHA-256 prefix of its source, and why the layer
#: depends on it.
UPSTREAM_SOURCES: Mapping[str, tuple[str, str]] = {
    # consumer.GaplessConsumer
    "faust.transport.consumer:Consumer._new_offset": (
        "1d2c7ea89a7ad4f1",
        "overridden: hole check (faust-streaming#606)",
    ),
    "faust.transport.consumer:Consumer._drain_messages": (
        "44a2500309e83c63",
        "copied and changed: GaplessConsumer._drain_messages",
    ),
    "faust.transport.consumer:Consumer.perform_seek": (
        "0e8c130ff4b0afd8",
        "extended: GaplessConsumer.perform_seek",
    ),
    "faust.transport.consumer:Consumer.getmany": (
        "4b168d84882a70d6",
        "drops a batch when a rebalance begins (perform_seek relies on it)",
    ),
    "faust.transport.consumer:Consumer._wait_next_records": (
        "6218e1969a636b3f",
        "called by GaplessConsumer._fetch (getmany's fetch, per partition)",
    ),
    "faust.transport.drivers.aiokafka:Consumer._to_message": (
        "7c24f6511b2fcef7",
        "called for records of topics without a batch receiver",
    ),
    "faust.transport.drivers.aiokafka:Consumer.highwater": (
        "f52cb0d26a713c3a",
        "called per partition fetch",
    ),
    "faust.transport.consumer:Consumer._add_gap": (
        "4df2573ded7c1c2c",
        "called by the drain loop",
    ),
    "faust.transport.consumer:Consumer.commit": (
        "a354437baaa08bf8",
        "called by the drain loop",
    ),
    "faust.transport.consumer:Consumer.__init__": (
        "302410d59e6972d1",
        "state read: _acked, _acked_index, _committed_offset, _gap, "
        "_read_offset, _n_acked, _commit_every",
    ),
    "faust.transport.consumer:Consumer.ack": (
        "5fcf41cf45153475",
        "fills _acked and _acked_index",
    ),
    "faust.transport.drivers.aiokafka:Consumer._new_consumer_thread": (
        "0870ec53dea75083",
        "overridden: StreamConsumerThread",
    ),
    "faust.transport.drivers.aiokafka:Consumer._is_changelog_tp": (
        "88867d75cfe9aecf",
        "called by the drain loop and the seek",
    ),
    "faust.transport.drivers.aiokafka:Consumer.earliest_offsets": (
        "2833b09d2888825b",
        "called by the seek",
    ),
    # topic_watch.StreamConsumerThread
    "faust.transport.drivers.aiokafka:AIOKafkaConsumerThread._create_worker_consumer": (
        "c2701bfc3e6f6cad",
        "extended: fetch_max_wait_ms literal 1500",
    ),
    "faust.transport.drivers.aiokafka:AIOKafkaConsumerThread._ensure_consumer": (
        "ff4a4c693b7ec63f",
        "called by the seek",
    ),
    "aiokafka.consumer.consumer:AIOKafkaConsumer.__init__": (
        "01506f316191f7c9",
        "attributes read: _fetch_max_wait_ms, _subscription, _coordinator, _client",
    ),
    "aiokafka.consumer.consumer:AIOKafkaConsumer.start": (
        "2f1ba70443327538",
        "reads _fetch_max_wait_ms after _create_worker_consumer",
    ),
    "aiokafka.consumer.group_coordinator:GroupCoordinator._perform_assignment": (
        "a5cf61fa97320199",
        "sets _group_subscription on the leader (read by missing_topics)",
    ),
    "aiokafka.consumer.group_coordinator:GroupCoordinator._on_join_prepare": (
        "4d9524afc0ee2c2f",
        "clears _group_subscription",
    ),
    "aiokafka.client:AIOKafkaClient.force_metadata_update": (
        "cb7befef21c8f3f9",
        "called by refresh_missing_topics",
    ),
    "aiokafka.client:AIOKafkaClient.fetch_all_metadata": (
        "8eeea5926b0ddbe2",
        "called by fetch_cluster",
    ),
    # producer, transport, worker
    "faust.transport.drivers.aiokafka:Producer._settings_extra": (
        "a4c7bc41b6382223",
        "extended: acks=all, enable_idempotence",
    ),
    "faust.app.base:App._new_transport": (
        "42db531312dd776f",
        "overridden: DurableTransport",
    ),
    "faust.app.base:App.on_first_start": (
        "ec655d9c223403cc",
        "extended: datadir parents",
    ),
    "faust.worker:Worker.__init__": (
        "25a4d782432f0968",
        "sets the spinner StreamWorker removes",
    ),
    "faust.worker:Worker.on_setup_root_logger": (
        "0d468284fb5c8880",
        "reads the spinner",
    ),
    # boot
    "faust.app.base:BootStrategy.server": (
        "97e47ea1dec34b55",
        "reordered: web, wait, Kafka",
    ),
    "mode.services:ServiceCallbacks.on_start": (
        "5ca815c94c4f9972",
        "WaitForKafka waits in it",
    ),
    # monitor.BatchedPrometheusMonitor
    "faust.sensors.prometheus:PrometheusMonitor.__init__": (
        "c0d8ca8cca0a20a1",
        "sets _metrics",
    ),
    "faust.sensors.prometheus:PrometheusMonitor.on_message_in": (
        "ca24793cbc41deb7",
        "replaced by a batched count",
    ),
    "faust.sensors.prometheus:PrometheusMonitor.on_stream_event_in": (
        "f592409433679cf8",
        "replaced by a batched count",
    ),
    "faust.sensors.prometheus:PrometheusMonitor.on_stream_event_out": (
        "8dce2fcf20165d4d",
        "replaced: nothing per event",
    ),
    "faust.sensors.prometheus:PrometheusMonitor.on_message_out": (
        "347089e00334fd75",
        "replaced by a batched count",
    ),
    "faust.sensors.prometheus:PrometheusMonitor.track_tp_end_offset": (
        "85f7fca946f5c2be",
        "called once per partition per publish",
    ),
    "faust.sensors.prometheus:PrometheusMonitor._stream_label": (
        "4753db036cdfceab",
        "called by publish",
    ),
    "faust.sensors.monitor:Monitor._sample": (
        "300bfadb9f6b3648",
        "extended: publish first",
    ),
    # records.record_fields
    "faust.models.record:Record._contribute_to_options": (
        "76bab6e032411e3d",
        "fills _options.fields",
    ),
    # tables.CopartitionedTable
    "faust.tables.base:Collection.partition_for_key": (
        "3b2291811b8dd791",
        "overridden: the partition of part of the key, no current event",
    ),
    "faust.tables.base:Collection.send_changelog": (
        "3dd3884e1b5fc0e1",
        "extended: the send is kept for changelog_sent",
    ),
    "faust.tables.table:Table.on_key_set": (
        "a370e35ca55c2c7e",
        "calls partition_for_key and send_changelog per write",
    ),
    "faust.tables.table:Table.on_key_del": (
        "4f2900b2f9d24a08",
        "calls partition_for_key and send_changelog per delete",
    ),
    # mode: the stopped events the drain loop tests
    "mode.services:Service.__init__": ("ab4d12a25b93044a", "creates _stopped"),
}


def _resolve(name: str) -> Any:
    module_name, _, qualname = name.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in qualname.split("."):
        obj = inspect.getattr_static(obj, part)
    if isinstance(obj, (staticmethod, classmethod)):
        obj = obj.__func__
    if isinstance(obj, property):
        obj = obj.fget
    return obj


def source_hash(name: str) -> str:
    """The first 16 hex digits of the SHA-256 of ``name``'s installed source."""
    source = inspect.getsource(_resolve(name))
    return hashlib.sha256(source.encode("utf-8")).hexdigest()[:16]


def changed_upstream() -> list[str]:
    """``name (why)`` for every entry whose installed source differs or is gone."""
    changed: list[str] = []
    for name, (expected, why) in UPSTREAM_SOURCES.items():
        try:
            found = source_hash(name)
        except (ImportError, AttributeError, OSError, TypeError):
            found = "missing"
        if found != expected:
            changed.append(f"{name} ({why})")
    return changed


if __name__ == "__main__":  # pragma: no cover - a maintainer's tool
    for entry in UPSTREAM_SOURCES:
        print(f"{entry}  {source_hash(entry)}")
