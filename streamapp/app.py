"""Builds the one ``faust.App`` of streamapp, and nothing else."""

from __future__ import annotations

import functools
import sys
import tempfile
from pathlib import Path

from streamapp.exceptions import ConfigError
from streamapp.faust_ext import (
    BatchedPrometheusMonitor,
    StreamApp,
    StreamWorker,
    WaitForKafka,
    check_versions,
)
from streamapp.health import check_kafka
from streamapp.kafka import faust_credentials
from streamapp.settings import Settings, load_settings

__all__ = ["app", "settings"]

#: Modules whose agents, timers, views and commands the app discovers.
#: ``agents`` lives outside the app package, so it is listed explicitly.
AUTODISCOVER = ["agents", "streamapp.views", "streamapp.commands"]


def _load() -> Settings:
    try:
        check_versions()
        return load_settings()
    except ConfigError as exc:
        # Fail fast with one line that says what to fix, never a stack trace.
        print(f"streamapp: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


settings: Settings = _load()

#: Tables live in memory and recover from their changelog topics; Faust still wants
#: a data directory, kept out of the working tree (created when the app starts).
DATADIR = Path(tempfile.gettempdir()) / "streamapp-faust" / settings.app_id

app = StreamApp(
    settings.app_id,
    # Faust would read its own environment variables (BROKER_URL, BROKER_*,
    # PRODUCER_*, ...) over these options; streamapp.settings is the one reader.
    env={},
    broker=settings.kafka_broker_url,
    broker_credentials=faust_credentials(settings),
    autodiscover=AUTODISCOVER,
    origin="streamapp",
    store="memory://",
    datadir=str(DATADIR),
    topic_partitions=settings.topic_partitions,
    topic_replication_factor=settings.topic_replication_factor,
    topic_allow_declare=True,
    web_host=settings.web_host,
    web_port=settings.web_port,
    web_in_thread=False,
    producer_acks=-1,
    producer_compression_type="gzip",
    producer_linger_ms=20,
    producer_max_batch_size=256 * 1024,
    stream_wait_empty=False,
    # Events buffered per stream before faust pauses fetching its partition (4096 by
    # default): the pauses left the worker idle ~10 % of the time (docs/benchmarks.md).
    stream_buffer_maxsize=8192,
    broker_commit_every=1000,
    # A killed worker's partitions move to the others after this many seconds
    # (Faust's default is 60 s); heartbeats go every 3 s from their own task.
    broker_session_timeout=15.0,
    broker_heartbeat_interval=3.0,
    broker_commit_interval=1.0,
    table_cleanup_interval=60.0,
    Worker=StreamWorker,
    # Faust's Prometheus sensor, batched; /metrics serves its registry.
    Monitor=BatchedPrometheusMonitor,
)

#: The worker serves /health (503 naming Kafka) while it waits for the broker.
app.kafka_wait = WaitForKafka(
    functools.partial(check_kafka, settings),
    address=settings.kafka_bootstrap_servers,
    limit=settings.kafka_wait_seconds,
    give_up=app.crash,
)
