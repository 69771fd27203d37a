"""The one layer where streamapp overrides faust-streaming, aiokafka and mode.

Every subclass of, and every access to a private name of, faust-streaming 0.15.3,
aiokafka 0.14.0 and mode-streaming 0.7.1 lives in this package; ``setup.cfg``
pins those versions, :func:`check_versions` refuses others at start-up, and
``tests/unit/streamapp/faust_ext/test_upstream_guard.py`` fails, naming the
function, when an upgrade changes upstream code the layer copies or relies on.

Each module is one extension point, plugged in through a setting or a class
attribute where faust has one:

========================  =====================================================
``transport``             :class:`StreamApp` -> :class:`DurableTransport`
``producer``              :class:`DurableProducer`: acks=all, idempotence
``consumer``              :class:`GaplessConsumer`: no commit past an unacked
                          offset (faust-streaming#606), seek of uncommitted
                          partitions, the drain loop
``topic_watch``           :class:`StreamConsumerThread`: fetch wait, topics
                          missing from metadata
``worker``                :class:`StreamWorker` (``Worker=``): no spinner
``batches``               :func:`receive_batches`: an agent receives a
                          fetch per partition, acks it as a unit
``boot``                  :class:`WaitingBootStrategy`: web first, then
                          :class:`WaitForKafka` before the producer
``monitor``               :class:`BatchedPrometheusMonitor` (``Monitor=``)
``tables``                :class:`CopartitionedTable`: changelog partition
                          from part of the key, changelog sends awaited
``metadata``              :func:`fetch_cluster`: fresh metadata of all topics
``records``               :func:`record_fields`: a Record's field names
``versions``              :func:`check_versions`
========================  =====================================================

Example::

    check_versions()
    app = StreamApp("streamapp", Worker=StreamWorker, Monitor=BatchedPrometheusMonitor)
"""

from __future__ import annotations

from streamapp.faust_ext.batches import (
    Batch,
    BatchReceiver,
    Received,
    Record,
    receive_batches,
)
from streamapp.faust_ext.boot import WaitForKafka, WaitingBootStrategy
from streamapp.faust_ext.consumer import START_OFFSETS_TIMEOUT, GaplessConsumer
from streamapp.faust_ext.metadata import fetch_cluster
from streamapp.faust_ext.monitor import BatchedPrometheusMonitor, publish_faust_sensor
from streamapp.faust_ext.producer import DurableProducer
from streamapp.faust_ext.records import record_fields
from streamapp.faust_ext.tables import CopartitionedTable, partition_of
from streamapp.faust_ext.topic_watch import (
    FETCH_MAX_WAIT_MS,
    TOPIC_WATCH_MAX_SECONDS,
    TOPIC_WATCH_SECONDS,
    StreamConsumerThread,
    missing_topics,
    refresh_missing_topics,
)
from streamapp.faust_ext.transport import DurableTransport, StreamApp
from streamapp.faust_ext.versions import (
    SUPPORTED_VERSIONS,
    check_versions,
    unsupported_versions,
)
from streamapp.faust_ext.worker import StreamWorker

__all__ = [
    "FETCH_MAX_WAIT_MS",
    "START_OFFSETS_TIMEOUT",
    "SUPPORTED_VERSIONS",
    "TOPIC_WATCH_MAX_SECONDS",
    "TOPIC_WATCH_SECONDS",
    "Batch",
    "BatchReceiver",
    "BatchedPrometheusMonitor",
    "CopartitionedTable",
    "DurableProducer",
    "DurableTransport",
    "GaplessConsumer",
    "Received",
    "Record",
    "StreamApp",
    "StreamConsumerThread",
    "StreamWorker",
    "WaitForKafka",
    "WaitingBootStrategy",
    "check_versions",
    "fetch_cluster",
    "missing_topics",
    "partition_of",
    "publish_faust_sensor",
    "receive_batches",
    "record_fields",
    "refresh_missing_topics",
    "unsupported_versions",
]
