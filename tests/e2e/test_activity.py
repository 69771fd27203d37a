"""End to end: activity windows and alert rules on a real worker (module-scoped).

One worker with its own app id, topics and schema polls a local feed. In order:
the bundled capture's windows match a plain-Python computation of them; a
revision is counted once with its new magnitude; after a SIGKILL a new worker
recovers the windows from the table's changelog (more events in the same
windows add to them); a synthetic surge makes exactly one surge alert; the
event rules make magnitude, tsunami and PAGER alerts; ``GET /api/activity``
serves the windows.
"""

from __future__ import annotations

import math
import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from streamapp.settings import Settings, load_settings
from tests.support.activity import (
    activity_rows,
    cell_name,
    expected_windows,
    feature,
    read_alerts,
)
from tests.support.feeds import FeedServer, load_capture
from tests.support.ports import free_port
from tests.support.stack import drop_schema
from tests.support.workers import Worker

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

CAPTURE = "all_day_2014-04-14.geojson"


@dataclass
class Deployment:
    env: dict[str, str]
    settings: Settings
    feed: FeedServer
    logs: Path
    worker: Worker
    features: list[dict[str, Any]] = field(default_factory=list)

    @property
    def dsn(self) -> str:
        return self.settings.database_url.get_secret_value()

    def serve(self, *more: dict[str, Any]) -> None:
        """Add features to the feed (everything served so far stays in it)."""
        self.features.extend(more)
        self.feed.serve(
            {"type": "FeatureCollection", "metadata": {}, "features": self.features}
        )

    def serve_only(self, *more: dict[str, Any]) -> None:
        """Serve only ``more`` (the earlier features stay in the known answer)."""
        self.features.extend(more)
        self.feed.serve({"type": "FeatureCollection", "metadata": {}, "features": more})

    def restart(self, *, kill: bool) -> None:
        if kill:
            self.worker.kill()
        else:
            self.worker.stop()
        self.worker = Worker(self.env, self.logs / f"w{time.time_ns()}.log").start()

    def rows(self) -> dict[Any, dict[str, Any]]:
        return activity_rows(self.dsn, self.settings.postgres_schema)

    def alerts(self) -> list[dict[str, Any]]:
        return read_alerts(
            self.settings.kafka_bootstrap_servers, self.settings.topic_alerts
        )


def wait_for(
    what: str, predicate: Callable[[], bool], dep: Deployment, timeout: float = 90.0
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        dep.worker.assert_alive()
        if predicate():
            return
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}:\n{dep.worker.tail()}")


@pytest.fixture(scope="module")
def dep(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    tag = uuid.uuid4().hex[:8]
    env = dict(os.environ)
    env.update(
        {
            "APP_ID": f"e2e-act-{tag}",
            "TOPIC_RAW": f"e2e-act-{tag}.raw",
            "TOPIC_CLEAN": f"e2e-act-{tag}.clean",
            "TOPIC_DEAD_LETTER": f"e2e-act-{tag}.dead-letter",
            "TOPIC_ACTIVITY": f"e2e-act-{tag}.activity",
            "TOPIC_ALERTS": f"e2e-act-{tag}.alerts",
            "POSTGRES_SCHEMA": f"e2e_act_{tag}",
            "WEB_PORT": str(free_port()),
            "SOURCE": "usgs",
            "FETCH_INTERVAL_SECONDS": "1",
            "SINK_BATCH_SECONDS": "0.2",
            "SOURCE_TIMEOUT_SECONDS": "5",
            "PYTHONUNBUFFERED": "1",
        }
    )
    logs = tmp_path_factory.mktemp("activity")
    with FeedServer() as feed:
        env["SOURCE_URL"] = feed.url
        settings = load_settings(env, env_file=None)
        worker = Worker(env, logs / "worker.log").start()
        deployment = Deployment(env, settings, feed, logs, worker)
        try:
            yield deployment
        finally:
            deployment.worker.stop()
            drop_schema(deployment.dsn, settings.postgres_schema)


def assert_windows_equal(
    got: dict[Any, dict[str, Any]], expected: dict[Any, dict[str, Any]]
) -> None:
    assert set(got) == set(expected)
    for key, want in expected.items():
        row = got[key]
        assert row["count"] == want["count"], key
        for name in ("max_magnitude", "min_depth_km", "max_depth_km"):
            if want[name] is None:
                assert row[name] is None, (key, name)
            else:
                assert math.isclose(row[name], want[name], rel_tol=1e-9), (key, name)
        assert math.isclose(
            row["energy_joules"], want["energy_joules"], rel_tol=1e-9
        ), key


def _counts(rows: dict[Any, dict[str, Any]]) -> dict[Any, int]:
    return {key: row["count"] for key, row in rows.items()}


def test_capture_windows_match_an_independent_computation(dep: Deployment) -> None:
    capture = load_capture(CAPTURE)["features"]
    dep.serve(*capture)
    expected = expected_windows(capture)
    wait_for(
        "the capture's windows",
        lambda: _counts(dep.rows()) == _counts(expected),
        dep,
        timeout=150,
    )
    assert_windows_equal(dep.rows(), expected)
    assert sum(v["count"] for k, v in expected.items() if k[1] == "1d") == len(
        {f["id"] for f in capture}
    )


def test_a_revision_counts_once_with_its_new_magnitude(dep: Deployment) -> None:
    capture = load_capture(CAPTURE)["features"]
    target = max(capture, key=lambda f: f["properties"]["mag"] or -9)
    revised = feature(
        target["id"],
        datetime.fromtimestamp(target["properties"]["time"] / 1000, UTC),
        lat=target["geometry"]["coordinates"][1],
        lon=target["geometry"]["coordinates"][0],
        depth=target["geometry"]["coordinates"][2],
        mag=round((target["properties"]["mag"] or 0) + 0.3, 2),
        updated=datetime.fromtimestamp(
            target["properties"]["updated"] / 1000 + 600, UTC
        ),
    )
    dep.serve(revised)
    expected = expected_windows(dep.features)
    lon, lat = target["geometry"]["coordinates"][:2]
    hour = datetime.fromtimestamp(target["properties"]["time"] / 1000, UTC).replace(
        minute=0, second=0, microsecond=0
    )
    key = (cell_name(lat, lon), "1h", hour)
    wait_for(
        "the revised magnitude",
        lambda: dep.rows()[key]["max_magnitude"] == revised["properties"]["mag"],
        dep,
    )
    assert_windows_equal(dep.rows(), expected)


def test_windows_survive_a_worker_sigkill(dep: Deployment) -> None:
    before = dep.rows()
    # The busiest hour of the capture: more events in it after the restart.
    key = max((k for k in before if k[1] == "1h"), key=lambda k: before[k]["count"])
    region, _, hour = key
    sample = next(
        f
        for f in dep.features
        if cell_name(f["geometry"]["coordinates"][1], f["geometry"]["coordinates"][0])
        == region
    )
    lon, lat = sample["geometry"]["coordinates"][:2]
    dep.restart(kill=True)
    extra = [
        feature(
            f"ak-after-kill-{i}", hour + timedelta(minutes=5 * i + 1), lat=lat, lon=lon
        )
        for i in range(3)
    ]
    # Only the new events are served: the earlier ones are not fetched again, so
    # the windows can only be right if the table recovered them.
    dep.serve_only(*extra)
    expected = expected_windows(dep.features)
    assert expected[key]["count"] == before[key]["count"] + 3
    wait_for(
        "the windows after the restart",
        lambda: _counts(dep.rows()) == _counts(expected),
        dep,
        timeout=150,
    )
    assert_windows_equal(dep.rows(), expected)


SURGE_CELL = (-45.0, -125.0)  # 50S130W: open ocean, empty in the capture


def test_a_surge_makes_exactly_one_alert(dep: Deployment) -> None:
    lat, lon = SURGE_CELL
    region = cell_name(lat, lon)
    hour = datetime(2014, 4, 14, 18, tzinfo=UTC)
    quiet = [feature("surge-q1", hour - timedelta(hours=7), lat=lat, lon=lon)]
    dep.serve(*quiet)
    wait_for(
        "the quiet hour",
        lambda: (region, "1h", hour - timedelta(hours=7)) in dep.rows(),
        dep,
    )
    burst = [
        feature(f"surge-b{i}", hour + timedelta(minutes=i), lat=lat, lon=lon)
        for i in range(7)
    ]
    dep.serve(*burst[:4])  # below the minimum count of 5
    wait_for(
        "four events",
        lambda: dep.rows().get((region, "1h", hour), {}).get("count") == 4,
        dep,
    )
    dep.serve(*burst[4:])
    wait_for(
        "seven events", lambda: dep.rows()[(region, "1h", hour)]["count"] == 7, dep
    )
    surges = [a for a in dep.alerts() if a["rule"] == "surge" and a["region"] == region]
    assert [a["id"] for a in surges] == [f"surge:{region}:2014-04-14T18:00:00Z"]
    assert surges[0]["hour_count"] >= 5
    assert surges[0]["trailing_mean"] == pytest.approx(1 / 24)


def test_event_rules_alert(dep: Deployment) -> None:
    when = datetime(2014, 4, 14, 20, 30, tzinfo=UTC)
    dep.serve(
        feature("rule-mag", when, lat=-5.0, lon=150.0, mag=6.7),
        feature("rule-tsunami", when, lat=-6.0, lon=151.0, mag=5.1, tsunami=1),
        feature("rule-pager", when, lat=-7.0, lon=152.0, mag=5.2, alert="red"),
        feature("rule-none", when, lat=-8.0, lon=153.0, mag=5.3, alert="green"),
    )

    def rule_alerts() -> set[str]:
        return {
            a["id"]
            for a in dep.alerts()
            if (a.get("event_id") or "").startswith("rule-")
        }

    wait_for("the event alerts", lambda: len(rule_alerts()) >= 3, dep)
    assert rule_alerts() == {
        "magnitude:rule-mag",
        "tsunami:rule-tsunami",
        "pager:rule-pager",
    }


def test_the_api_serves_the_windows(dep: Deployment) -> None:
    expected = expected_windows(dep.features)
    wait_for(
        "every window",
        lambda: _counts(dep.rows()) == _counts(expected),
        dep,
    )
    days = {k: v for k, v in expected.items() if k[1] == "1d"}
    status, body = dep.worker.get(
        "/api/activity?window=1d&since=2014-04-01&order=count&limit=1000"
    )
    assert status == 200, body
    assert body["window"] == "1d" and body["order"] == "count"
    assert body["until"] is None
    items = body["items"]
    assert len(items) == len(days)
    counts = [item["count"] for item in items]
    assert counts == sorted(counts, reverse=True)
    top = items[0]
    start = datetime.fromisoformat(top["window_start"])
    want = days[(top["region"], "1d", start)]
    assert top["count"] == want["count"] == max(v["count"] for v in days.values())
    assert top["max_magnitude"] == pytest.approx(want["max_magnitude"])
    lat0, lon0, lat1, lon1 = top["bounds"]
    assert lon1 - lon0 == 10
    assert cell_name(lat0 + 5, lon0 + 5) == top["region"] and lat1 - lat0 == 10
    region = top["region"]
    status, body = dep.worker.get(
        f"/api/activity?window=1h&region={region}&since=2014-04-14&until=2014-04-15"
    )
    assert status == 200, body
    hours = sorted(
        (k[2] for k in expected if k[0] == region and k[1] == "1h"), reverse=True
    )
    assert [datetime.fromisoformat(i["window_start"]) for i in body["items"]] == [
        h for h in hours if h.day == 14
    ]
    for bad in ("region=30X130E", "window=2h", "order=size", "limit=0", "since=x"):
        status, body = dep.worker.get(f"/api/activity?{bad}")
        assert status == 400 and body["status"] == 400 and body["error"], bad
