"""/metrics of a real worker: Prometheus text with the lag, sink and Faust metrics."""

from __future__ import annotations

import dataclasses
import time
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from streamapp.db import get_engine, migrate
from streamapp.settings import Settings
from tests.support.kafka import KafkaAdmin

pytestmark = pytest.mark.e2e


@pytest.fixture
def deployment(
    isolated_env: dict[str, str], stack_ready: Settings, kafka_admin: KafkaAdmin
) -> Iterator[dict[str, str]]:
    """The isolated environment with its topics created and its schema migrated."""
    env = {**isolated_env, "SOURCE": "replay", "REDRIVE_TOKEN": uuid.uuid4().hex}
    for key in ("TOPIC_RAW", "TOPIC_CLEAN", "TOPIC_DEAD_LETTER"):
        kafka_admin.create_topic(env[key], partitions=stack_ready.topic_partitions)
    settings = dataclasses.replace(stack_ready, postgres_schema=env["POSTGRES_SCHEMA"])
    migrate(settings)
    yield env
    engine = get_engine(settings)
    with engine.begin() as conn:
        conn.exec_driver_sql(
            f'DROP SCHEMA IF EXISTS "{settings.postgres_schema}" CASCADE'
        )
    engine.dispose()


def scrape(port: int) -> tuple[str, dict[str, Any]]:
    url = f"http://127.0.0.1:{port}/metrics"
    with urllib.request.urlopen(url, timeout=30) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain")
        text = resp.read().decode("utf-8")
    return text, {f.name: f for f in text_string_to_metric_families(text)}


def value(families: dict[str, Any], name: str, **labels: str) -> float:
    total = 0.0
    for sample in families[name].samples:
        if sample.name.endswith("_created"):
            continue
        if all(sample.labels.get(k) == v for k, v in labels.items()):
            total += sample.value
    return total


def test_metrics_of_a_running_worker(
    deployment: dict[str, str], start_worker: Any, stack_ready: Settings
) -> None:
    worker = start_worker(deployment)
    worker.wait_healthy()
    raw = deployment["TOPIC_RAW"]
    deadline = time.monotonic() + 120
    families: dict[str, Any] = {}
    while time.monotonic() < deadline:
        worker.assert_alive()
        text, families = scrape(worker.web_port)
        raw_lag = [
            s
            for s in families["streamapp_consumer_lag"].samples
            if s.labels["topic"] == raw
        ]
        produced = value(families, "streamapp_pipeline_produced")
        ends = value(families, "streamapp_consumer_end_offset", topic=raw)
        # The lag is cached a few seconds: wait until it has seen every message.
        if produced > 0 and ends == produced and sum(s.value for s in raw_lag) == 0:
            break
        time.sleep(1)
    else:
        raise AssertionError(f"the raw topic was not consumed:\n{worker.tail()}")

    # Consumer lag per topic/partition, from end offsets and the group's commits.
    partitions = {s.labels["partition"] for s in raw_lag}
    assert partitions == {str(p) for p in range(stack_ready.topic_partitions)}
    assert all(s.labels["group"] == deployment["APP_ID"] for s in raw_lag)
    committed = value(families, "streamapp_consumer_committed_offset", topic=raw)
    assert ends == committed == produced > 0
    assert value(families, "streamapp_pipeline_valid") == produced
    assert value(families, "streamapp_consumer_lag_up") == 1

    # The pipeline's counters, the sink and source histograms, Faust's sensor.
    assert value(families, "streamapp_pipeline_fetched") > 0
    assert "streamapp_pipeline_invalid" in families
    for name in (
        "streamapp_sink_batch_size",
        "streamapp_sink_write_seconds",
        "streamapp_source_fetch_seconds",
    ):
        assert families[name].type == "histogram"
    assert {
        s.labels["table"] for s in families["streamapp_sink_batch_size"].samples
    } >= {
        "earthquakes",
        "dead_letters",
    }
    assert value(families, "streamapp_faust_messages_received") > 0
    assert value(families, "streamapp_faust_topic_messages_sent") > 0

    # Nothing secret is exported.
    assert deployment["REDRIVE_TOKEN"] not in text
    assert stack_ready.database_url.get_secret_value() not in text
