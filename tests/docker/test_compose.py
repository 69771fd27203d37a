"""`docker compose up` for real, checked from the host as a user would.

The ZooKeeper file (docker-compose.yml) goes through a user's whole day: up, rows,
/health, the dashboard, Jupyter; --scale app=3; a Kafka restart and a kill of the
workers mid-stream; down and up (rows kept), down -v (rows gone). The KRaft file
gets the smoke: the bundled replay lands as rows and /health answers 200.
Events come from a ``feed`` container (tests/docker/compose.feed.yml) serving a
document the test grows; rows are read through PostgreSQL's published port.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from tests.docker.compose import (
    CAPTURE,
    ROOT,
    Compose,
    Database,
    Feed,
    HostPorts,
    http_get,
    wait_for,
)

ZOOKEEPER_FILE = ROOT / "docker-compose.yml"
KRAFT_FILE = ROOT / "docker-compose.kraft.yml"
FEED_ENV = {
    "SOURCE": "usgs",
    "SOURCE_URL": "http://feed:8000/feed.geojson",
    "FETCH_INTERVAL_SECONDS": "1",
}


def stats(port: int) -> dict[str, Any]:
    status, body = http_get(f"http://127.0.0.1:{port}/api/stats")
    assert status == 200, body[:300]
    result: dict[str, Any] = json.loads(body)
    return result


def rows_match(db: Database, feed: Feed, what: str, timeout: float = 180.0) -> None:
    """Every event of the feed is a row, and there is no other row."""
    wait_for(what, lambda: db.ids() >= feed.ids, timeout, every=2.0)
    extra = db.ids() - feed.ids
    assert not extra, f"{what}: rows no event was served for: {sorted(extra)[:5]}"


def feed_while(feed: Feed, batches: int, size: int, pause: float = 1.0) -> None:
    """A stream: ``batches`` batches of new events, ``pause`` seconds apart."""
    for _ in range(batches):
        feed.add(size)
        time.sleep(pause)


@pytest.mark.timeout(1800)
def test_a_users_day_with_the_zookeeper_compose_file(
    make_project: Any,
    db: Database,
    host_ports: HostPorts,
    credentials: dict[str, str],
    tmp_path: Any,
) -> None:
    feed = Feed(tmp_path / "feed", prefix="dz")
    feed.add(50)
    compose: Compose = make_project(
        "zk", ZOOKEEPER_FILE, {**FEED_ENV, "FEED_DIR": str(feed.directory)}, feed=True
    )

    # ---- up: rows land, /health and the dashboard on the web port, Jupyter
    compose.run("up", "--detach", timeout=600)
    compose.wait_healthy({"postgres": 1, "kafka": 1, "app": 1, "notebook": 1})
    (web_port,) = compose.published("app")  # from the range; Docker picks
    assert host_ports.web <= web_port <= host_ports.web_last, web_port
    web = f"http://127.0.0.1:{web_port}"
    status, body = http_get(f"{web}/health")
    assert status == 200, body[:300]
    status, body = http_get(f"{web}/")
    assert status == 200 and b"<html" in body.lower(), body[:300]
    jupyter = f"http://127.0.0.1:{host_ports.jupyter}/api/status"
    status, body = http_get(f"{jupyter}?token={credentials['JUPYTER_TOKEN']}")
    assert status == 200, body[:300]
    assert http_get(jupyter)[0] == 403, "Jupyter answers without the token"
    rows_match(db, feed, "the first 50 events as rows")

    # ---- --scale app=3: one host port each, the partitions shared, one fetcher
    compose.run("up", "--detach", "--scale", "app=3", timeout=600)
    compose.wait_healthy({"app": 3})
    ports = compose.published("app")
    assert len(ports) == 3, ports
    assert all(host_ports.web <= p <= host_ports.web_last for p in ports), ports
    # the group settles: probe batches until every replica validates some
    joined = {port: stats(port)["valid"] for port in ports}

    def all_consume() -> bool:
        feed.add(10)
        time.sleep(2)
        return all(stats(port)["valid"] > joined[port] for port in ports)

    wait_for("all three replicas consuming", all_consume, 180, every=1.0)
    rows_match(db, feed, "the probe batches after scaling")
    time.sleep(3)
    before = {port: stats(port) for port in ports}
    feed_while(feed, batches=6, size=30)
    rows_match(db, feed, "180 events with three workers")
    time.sleep(3)
    after = {port: stats(port) for port in ports}
    delta = {
        port: {
            k: after[port][k] - before[port][k]
            for k in ("fetched", "valid", "upserted")
        }
        for port in ports
    }
    assert all(d["valid"] > 0 for d in delta.values()), f"a worker idles: {delta}"
    assert all(d["upserted"] > 0 for d in delta.values()), f"a worker idles: {delta}"
    fetchers = [port for port, d in delta.items() if d["fetched"] > 0]
    assert len(fetchers) == 1, f"fetching replicas {fetchers}: {delta}"
    stored = sum(d["upserted"] for d in delta.values())
    assert stored == 180, f"180 events, {stored} rows written: {delta}"

    # ---- docker compose restart kafka, mid-stream: nothing lost
    feed.add(40)
    compose.run("restart", "kafka", timeout=300)
    feed_while(feed, batches=4, size=20)
    compose.wait_healthy({"kafka": 1})
    feed.add(40)
    rows_match(db, feed, "every event across a Kafka restart", timeout=300)

    # ---- docker compose kill app, mid-stream: nothing lost once they run again
    feed.add(40)
    time.sleep(1.5)
    compose.run("kill", "app")
    feed.add(40)
    compose.run("start", "app", timeout=300)
    compose.wait_healthy({"app": 3})
    feed.add(40)
    rows_match(db, feed, "every event across killed workers", timeout=300)

    # ---- down, then up: the rows are still there (named volume)
    kept = db.ids()
    assert compose.volumes(), "no named volume"
    compose.run("down", timeout=300)
    assert compose.volumes(), "docker compose down removed the volume"
    compose.run("up", "--detach", timeout=600)
    compose.wait_healthy({"postgres": 1})
    assert db.ids() == kept, "rows lost across down/up"
    compose.wait_healthy({"app": 1})
    feed.add(30)
    rows_match(db, feed, "new events after down/up")

    # ---- down -v: the rows are gone
    compose.run("down", "--volumes", timeout=300)
    assert not compose.volumes(), "docker compose down -v left a volume"
    compose.run("up", "--detach", "postgres", timeout=300)
    compose.wait_healthy({"postgres": 1})
    assert "earthquakes" not in db.tables(), "rows survived down -v"


@pytest.mark.timeout(900)
def test_the_kraft_compose_file_smoke(
    make_project: Any, db: Database, host_ports: HostPorts
) -> None:
    capture = json.loads(CAPTURE.read_text(encoding="utf-8"))
    expected = {f["id"] for f in capture["features"]}
    compose: Compose = make_project("kraft", KRAFT_FILE, {"SOURCE": "replay"})
    compose.run("up", "--detach", "app", timeout=600)
    compose.wait_healthy({"kafka": 1, "postgres": 1, "app": 1})
    (web_port,) = compose.published("app")
    status, body = http_get(f"http://127.0.0.1:{web_port}/health")
    assert status == 200, body[:300]
    wait_for("the bundled replay as rows", lambda: db.ids() == expected, 180, every=2.0)
