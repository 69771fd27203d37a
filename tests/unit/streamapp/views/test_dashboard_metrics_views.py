"""Unit tests of the dashboard page, its static assets and /metrics."""

from __future__ import annotations

import re
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families

import streamapp.views.metrics as metrics_view
from streamapp.lag import LagReport, PartitionLag
from streamapp.metrics import REGISTRY, observe_fetch, observe_sink_batch
from streamapp.stats import stats
from streamapp.views.dashboard import STATIC_DIR

Client = TestClient[Any, Any]


@pytest.mark.parametrize("path", ["/", "/dashboard/"])
async def test_dashboard_page(client: Client, path: str) -> None:
    resp = await client.get(path)
    assert resp.status == 200
    assert resp.content_type == "text/html"
    assert "default-src 'self'" in resp.headers["Content-Security-Policy"]
    html = await resp.text()
    assert '<script src="/static/dashboard.js"' in html
    for element_id in ("c-fetched", "c-lag", "quakes", "dead-letters", "hist", "map"):
        assert f'id="{element_id}"' in html


async def test_dashboard_without_slash_redirects(client: Client) -> None:
    resp = await client.get("/dashboard", allow_redirects=False)
    assert resp.status == 301 and resp.headers["Location"] == "/dashboard/"


@pytest.mark.parametrize(
    ("name", "ctype"),
    [
        ("dashboard.js", "javascript"),
        ("dashboard.css", "text/css"),
        ("world.js", "javascript"),
    ],
)
async def test_static_assets(client: Client, name: str, ctype: str) -> None:
    resp = await client.get(f"/static/{name}")
    assert resp.status == 200
    assert ctype in resp.content_type


async def test_static_does_not_escape_its_folder(client: Client) -> None:
    resp = await client.get("/static/../views/api.py")
    assert resp.status in (403, 404)
    resp = await client.get("/static/%2e%2e/settings.py")
    assert resp.status in (403, 404)


def test_assets_load_nothing_from_other_origins() -> None:
    """No CDN: the page must work offline (the SVG namespace is not a fetch)."""
    for path in STATIC_DIR.iterdir():
        if path.suffix not in (".html", ".js", ".css"):
            continue
        text = path.read_text(encoding="utf-8")
        urls = re.findall(r"(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}[^\s\"')]*", text)
        assert [u for u in urls if "www.w3.org/2000/svg" not in u] == [], path.name


def test_dashboard_never_injects_html() -> None:
    """API values (payload previews, places) are set as text, never parsed as HTML."""
    js = (STATIC_DIR / "dashboard.js").read_text(encoding="utf-8")
    assert "innerHTML" not in js and "insertAdjacentHTML" not in js
    assert "document.write" not in js and "eval(" not in js


async def test_metrics_parse_and_contain_lag_and_sink(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    report = LagReport(group="g1", partitions=[PartitionLag("t.raw", 2, 0, 30, 12)])

    class Reader:
        async def report(self) -> LagReport:
            return report

    monkeypatch.setattr(metrics_view, "lag_reader", lambda settings: Reader())
    stats.incr_invalid("not_json", 3)
    stats.incr("upserted", 5)
    observe_sink_batch("earthquakes", 5, 0.012)
    observe_fetch(0.3, ok=True)
    resp = await client.get("/metrics")
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(await resp.text())}
    lag = families["streamapp_consumer_lag"].samples
    assert [(s.labels, s.value) for s in lag] == [
        ({"group": "g1", "topic": "t.raw", "partition": "2"}, 18.0)
    ]
    assert "streamapp_consumer_committed_offset" in families
    invalid = {
        s.labels["kind"]: s.value
        for s in families["streamapp_pipeline_invalid"].samples
        if s.name.endswith("_total")
    }
    assert invalid["not_json"] >= 3
    assert families["streamapp_pipeline_upserted"].samples[0].value >= 5
    for name in ("streamapp_sink_batch_size", "streamapp_sink_write_seconds"):
        assert families[name].type == "histogram"
        counts = [
            s.value
            for s in families[name].samples
            if s.name.endswith("_count") and s.labels["table"] == "earthquakes"
        ]
        assert counts and counts[0] >= 1
    assert families["streamapp_source_fetch_seconds"].type == "histogram"
    # Faust's own sensor reports into the same registry.
    assert any(name.startswith("streamapp_faust_") for name in families)


def test_faust_sensor_is_the_app_monitor() -> None:
    from faust.sensors.prometheus import PrometheusMonitor

    from streamapp.app import app

    assert isinstance(app.monitor, PrometheusMonitor)
    assert REGISTRY is metrics_view.REGISTRY
