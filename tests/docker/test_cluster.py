"""Three Kafka brokers (docker-compose.cluster.yml): one stops mid-stream and returns.

The app's topics have three replicas and min.insync.replicas 2; with kafka-2
stopped the two workers keep storing new events; after it starts again every event
is a row exactly once, its replicas are back in sync and the consumer lag drains.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from tests.docker.compose import ROOT, Compose, Database, Feed, HostPorts, http_get
from tests.docker.compose import wait_for as wait
from tests.docker.test_compose import FEED_ENV, feed_while, rows_match

CLUSTER_FILE = ROOT / "docker-compose.cluster.yml"
TOPICS = ["earthquakes.raw", "earthquakes.clean", "earthquakes.dead-letter"]


async def _describe(bootstrap: str) -> dict[str, dict[str, Any]]:
    """Per topic: replica counts, in-sync counts and min.insync.replicas."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10000)
    await admin.start()
    try:
        topics = await admin.describe_topics(TOPICS)
        configs = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, t) for t in TOPICS]
        )
    finally:
        await admin.close()
    out: dict[str, dict[str, Any]] = {}
    for topic in topics:
        name = topic.get("topic") or topic.get("name")
        parts = topic["partitions"]
        out[name] = {
            "replicas": {len(p["replicas"]) for p in parts},
            "isr": {len(p["isr"]) for p in parts},
            "partitions": len(parts),
        }
    for response in configs:
        for resource in response.resources:
            name, entries = resource[3], resource[4]
            for entry in entries:
                if entry[0] == "min.insync.replicas" and name in out:
                    out[name]["min_insync"] = entry[1]
    return out


def describe(ports: HostPorts) -> dict[str, dict[str, Any]]:
    return asyncio.run(_describe(f"127.0.0.1:{ports.kafka}"))


def total_lag(port: int) -> int | None:
    status, body = http_get(f"http://127.0.0.1:{port}/api/lag")
    report = json.loads(body) if status == 200 else {}
    if report.get("error") or "total_lag" not in report:
        return None
    return int(report["total_lag"])


@pytest.mark.timeout(1500)
def test_one_broker_of_three_stops_mid_stream(
    make_project: Any, db: Database, host_ports: HostPorts, tmp_path: Any
) -> None:
    feed = Feed(tmp_path / "feed", prefix="dc")
    feed.add(40)
    compose: Compose = make_project(
        "cluster",
        CLUSTER_FILE,
        {**FEED_ENV, "FEED_DIR": str(feed.directory)},
        feed=True,
    )
    compose.run("up", "--detach", "--scale", "app=2", "app", timeout=600)
    compose.wait_healthy({"kafka-1": 1, "kafka-2": 1, "kafka-3": 1, "app": 2})
    rows_match(db, feed, "the first 40 events on three brokers")

    topics = describe(host_ports)
    for name in TOPICS:
        assert topics[name]["replicas"] == {3}, f"{name}: {topics[name]}"
        assert topics[name]["isr"] == {3}, f"{name}: {topics[name]}"
        assert topics[name].get("min_insync") == "2", f"{name}: {topics[name]}"

    # ---- kafka-2 stops while events arrive: the workers go on storing
    feed_while(feed, batches=2, size=20)
    compose.run("stop", "kafka-2", timeout=120)
    feed_while(feed, batches=4, size=20)
    rows_match(db, feed, "events stored while kafka-2 is down", timeout=240)
    assert compose.healthy("app", 2), compose.containers("app")

    # ---- kafka-2 returns: in sync again, nothing lost or doubled, the lag drains
    compose.run("start", "kafka-2", timeout=120)
    compose.wait_healthy({"kafka-2": 1})
    feed_while(feed, batches=2, size=20)
    rows_match(db, feed, "every event after kafka-2 returned", timeout=240)
    wait(
        "kafka-2's replicas back in sync",
        lambda: all(describe(host_ports)[t]["isr"] == {3} for t in TOPICS),
        180,
        every=3.0,
    )
    ports = compose.published("app")
    assert len(ports) == 2, ports
    for port in ports:

        def drained(port: int = port) -> bool:
            return total_lag(port) == 0

        wait(f"the lag seen from :{port} at 0", drained, 120)
    time.sleep(1)
    assert db.ids() == feed.ids
