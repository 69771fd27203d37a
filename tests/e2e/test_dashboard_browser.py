"""The dashboard in headless Chromium while a real worker runs the pipeline."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from streamapp.db import get_engine, migrate
from streamapp.kafka import aiokafka_kwargs
from streamapp.settings import Settings
from tests.support.aio import run_sync
from tests.support.kafka import KafkaAdmin

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOT = ROOT / "docs" / "dashboard.png"
CHROMIUM = "/usr/bin/chromium"
TOPICS = (
    "TOPIC_RAW",
    "TOPIC_CLEAN",
    "TOPIC_DEAD_LETTER",
    "TOPIC_ACTIVITY",
    "TOPIC_ALERTS",
)
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
def deployment(
    isolated_env: dict[str, str], stack_ready: Settings, kafka_admin: KafkaAdmin
) -> Iterator[dict[str, str]]:
    """The isolated environment with its topics created and its schema migrated."""
    env = {**isolated_env, "SOURCE": "replay"}
    for key in TOPICS:
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


def number(text: str) -> int:
    digits = re.sub(r"[^0-9]", "", text)
    return int(digits) if digits else -1


def wait_for(
    what: str, check: Callable[[], Any], worker: Any, patience: float = 90
) -> Any:
    deadline = time.monotonic() + patience
    while time.monotonic() < deadline:
        worker.assert_alive()
        result = check()
        if result:
            return result
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}:\n{worker.tail()}")


async def _produce(settings: Settings, topic: str, key: bytes, value: bytes) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(acks="all", **aiokafka_kwargs(settings))
    await producer.start()
    try:
        await producer.send_and_wait(topic, value, key=key)
    finally:
        await producer.stop()


def test_dashboard_shows_the_live_pipeline(
    deployment: dict[str, str], start_worker: Any, stack_ready: Settings
) -> None:
    if not Path(CHROMIUM).exists():
        pytest.fail(
            f"{CHROMIUM} is missing: apt-get install -y chromium", pytrace=False
        )
    from playwright.sync_api import sync_playwright

    worker = start_worker(deployment)
    worker.wait_healthy()
    base = f"http://127.0.0.1:{worker.web_port}"

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 900})
            problems: list[str] = []
            page.on(
                "console",
                lambda m: (
                    problems.append(f"{m.type}: {m.text}")
                    if m.type in ("error", "warning")
                    else None
                ),
            )
            page.on("pageerror", lambda e: problems.append(f"pageerror: {e}"))
            page.on(
                "requestfailed",
                lambda r: problems.append(f"request failed: {r.url}"),
            )
            page.goto(f"{base}/", wait_until="load")
            assert page.title().startswith("streamapp")

            def counter(name: str) -> int:
                return number(page.inner_text(f"#c-{name}"))

            # The counters are live: they appear, then rise while the worker polls.
            first = wait_for("a fetch counter", lambda: counter("fetched") > 0, worker)
            assert first
            seen = counter("fetched")
            wait_for(
                "the fetch counter to rise", lambda: counter("fetched") > seen, worker
            )
            wait_for("valid events", lambda: counter("valid") > 0, worker)
            wait_for("upserted rows", lambda: counter("upserted") > 0, worker)
            assert page.inner_text("#status-text") == "live"

            # The most recent stored event appears at the top of the table.
            with urllib.request.urlopen(f"{base}/api/earthquakes?limit=1") as resp:
                newest = json.loads(resp.read())["items"][0]
            row = f'#quakes tbody tr[data-id="{newest["id"]}"]'
            wait_for(
                "the newest event in the table",
                lambda: page.query_selector(row),
                worker,
            )
            top = page.query_selector("#quakes tbody tr")
            assert top is not None and top.get_attribute("data-id") == newest["id"]
            cells = [c.inner_text() for c in top.query_selector_all("td")]
            assert cells[0] == newest["time"].replace("T", " ")[:19]
            assert cells[1] == f"{newest['magnitude']:.1f}"
            assert cells[2] == newest["place"]
            assert cells[3] == f"{newest['depth']:.1f}"

            # Charts are drawn from the same rows.
            assert len(page.query_selector_all("#map circle")) > 10
            bars = page.query_selector_all("#hist rect.bar")
            assert sum(float(b.get_attribute("height") or 0) > 0 for b in bars) >= 3

            # A bad message becomes a dead letter that shows up with its reason.
            before = counter("invalid")
            run_sync(
                _produce(
                    stack_ready,
                    deployment["TOPIC_RAW"],
                    b"broken-1",
                    b"<html>502 Bad Gateway</html>",
                )
            )
            wait_for(
                "the invalid counter to rise",
                lambda: counter("invalid") > before,
                worker,
            )
            wait_for(
                "the dead letter in the table",
                lambda: "not_json" in page.inner_text("#dead-letters tbody"),
                worker,
            )
            assert "not_json" in page.inner_text("#kinds")

            # The hottest regions: the busiest cell-days, outlined on the map.
            with urllib.request.urlopen(
                f"{base}/api/activity?window=1d&order=count&limit=10"
            ) as resp:
                hottest = json.loads(resp.read())["items"]
            assert hottest, "the replayed capture makes activity windows"
            wait_for(
                "the hottest region in the activity table",
                lambda: page.query_selector(
                    f'#activity tbody tr[data-region="{hottest[0]["region"]}"]'
                ),
                worker,
            )
            top_cells = [
                c.inner_text()
                for c in page.query_selector_all("#activity tbody tr:first-child td")
            ]
            assert top_cells[0] == hottest[0]["region"]
            assert number(top_cells[2]) == hottest[0]["count"]
            assert page.query_selector(
                f'#map rect.hot[data-region="{hottest[0]["region"]}"]'
            )

            # The latest alert, with its rule, summary and delivery status.
            def latest_alert() -> Any:
                with urllib.request.urlopen(f"{base}/api/alerts?limit=1") as resp:
                    items = json.loads(resp.read())["items"]
                return items[0] if items else None

            # The capture's M 7.4 (tsunami flag set) alerts with the default rules.
            alert = wait_for("an alert from the capture", latest_alert, worker)
            wait_for(
                "the latest alert in the alerts table",
                lambda: page.query_selector(
                    f'#alerts tbody tr[data-id="{alert["id"]}"]'
                ),
                worker,
            )
            row_text = page.inner_text(f'#alerts tbody tr[data-id="{alert["id"]}"]')
            assert alert["rule"] in row_text and alert["summary"] in row_text
            assert alert["delivery"]["status"] == "off"  # no ALERT_WEBHOOK_URL here
            assert "off" in row_text

            # Lag per topic is listed; wait for the group to catch up for the picture.
            wait_for(
                "the raw topic in the lag table",
                lambda: deployment["TOPIC_RAW"] in page.inner_text("#lag-table"),
                worker,
            )
            wait_for("zero lag", lambda: counter("lag") == 0, worker, patience=60)
            page.wait_for_timeout(2500)  # one more refresh: fresh deltas on the cards
            assert problems == [], problems

            SCREENSHOT.parent.mkdir(exist_ok=True)
            shot = Path(worker.log_path).with_name("dashboard.png")
            page.screenshot(path=str(shot), full_page=True)
            shutil.copyfile(shot, SCREENSHOT)
        finally:
            browser.close()
