"""Alerts through a real worker: alerts topic -> ``alerts`` table -> webhook.

One worker (module-scoped, its own app id, topics and schema; one partition, so
the order of what a test produces is the order it is stored) with
``ALERT_WEBHOOK_URL`` pointing at a local receiver
(:class:`tests.support.webhook.WebhookServer`) with Basic-auth credentials. Each
test produces its own alerts (``models.alerts`` JSON keyed by id) and checks the
table, the receiver, ``/metrics``, ``/api/alerts`` and the worker's log.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg2
import pytest
from aiokafka import AIOKafkaProducer
from prometheus_client.parser import text_string_to_metric_families
from psycopg2 import sql

from models.alerts import Alert, event_alerts
from streamapp.db import get_engine
from streamapp.kafka import aiokafka_kwargs
from streamapp.settings import Settings
from tests.support.aio import run_sync
from tests.support.feeds import FeedServer
from tests.support.kafka import KafkaAdmin
from tests.support.ports import free_port
from tests.support.webhook import WebhookServer
from tests.support.workers import Worker

pytestmark = pytest.mark.e2e

PASSWORD = f"pw-{uuid.uuid4().hex[:12]}"
MAX_ATTEMPTS = 3
RETRY_SECONDS = 2.0
T0 = datetime(2026, 12, 8, 3, 0, tzinfo=UTC)


@dataclasses.dataclass
class Deployment:
    worker: Worker
    hook: WebhookServer
    settings: Settings
    topic: str


@pytest.fixture(scope="module")
def deployment(
    stack_ready: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    tag = uuid.uuid4().hex[:8]
    env = dict(os.environ)
    env.update(
        {
            "APP_ID": f"e2e-alerts-{tag}",
            "TOPIC_RAW": f"e2e-alerts-{tag}.raw",
            "TOPIC_CLEAN": f"e2e-alerts-{tag}.clean",
            "TOPIC_DEAD_LETTER": f"e2e-alerts-{tag}.dead-letter",
            "TOPIC_ACTIVITY": f"e2e-alerts-{tag}.activity",
            "TOPIC_ALERTS": f"e2e-alerts-{tag}.alerts",
            "TOPIC_PARTITIONS": "1",
            "POSTGRES_SCHEMA": f"e2e_alerts_{tag}",
            "WEB_PORT": str(free_port()),
            "SINK_BATCH_SECONDS": "0.1",
            "ALERT_WEBHOOK_MAX_RETRIES": str(MAX_ATTEMPTS),
            "ALERT_WEBHOOK_RETRY_SECONDS": str(RETRY_SECONDS),
            "ALERT_WEBHOOK_TIMEOUT_SECONDS": "5",
            "PYTHONUNBUFFERED": "1",
        }
    )
    admin = KafkaAdmin(stack_ready.kafka_bootstrap_servers, stack_ready)
    settings = dataclasses.replace(
        stack_ready,
        postgres_schema=env["POSTGRES_SCHEMA"],
        topic_alerts=env["TOPIC_ALERTS"],
        topic_dead_letter=env["TOPIC_DEAD_LETTER"],
    )
    with FeedServer() as feed, WebhookServer() as hook:
        env["SOURCE_URL"] = feed.url
        env["FETCH_INTERVAL_SECONDS"] = "3600"
        env["ALERT_WEBHOOK_URL"] = hook.url_with("streamapp", PASSWORD)
        admin.create_topic(env["TOPIC_ALERTS"], partitions=1)
        log = tmp_path_factory.mktemp("alerts") / "worker.log"
        worker = Worker(env, log).start()
        try:
            worker.wait_healthy()
            yield Deployment(worker, hook, settings, env["TOPIC_ALERTS"])
        finally:
            worker.stop()
            admin.created = [env[k] for k in env if k.startswith("TOPIC_")]
            admin.cleanup()
            engine = get_engine(settings)
            with engine.begin() as conn:
                conn.exec_driver_sql(
                    f'DROP SCHEMA IF EXISTS "{settings.postgres_schema}" CASCADE'
                )
            engine.dispose()


def produce(d: Deployment, messages: list[tuple[bytes, bytes]]) -> None:
    async def run() -> None:
        producer = AIOKafkaProducer(acks="all", **aiokafka_kwargs(d.settings))
        await producer.start()
        try:
            futures = [
                await producer.send(d.topic, key=key, value=value)
                for key, value in messages
            ]
            await asyncio.gather(*futures)
        finally:
            await producer.stop()

    run_sync(run())


def send(d: Deployment, *alerts: Alert) -> None:
    produce(d, [(a.id.encode(), a.dumps()) for a in alerts])


def make(event: str, magnitude: float = 6.5, **extra: Any) -> Alert:
    return make_all(event, magnitude, **extra)[0]


def make_all(event: str, magnitude: float = 6.5, **extra: Any) -> list[Alert]:
    quake = {
        "id": event,
        "magnitude": magnitude,
        "latitude": 35.7,
        "longitude": 139.7,
        "time": T0,
        "place": "near Tokyo",
        **extra,
    }
    return event_alerts(quake, min_magnitude=6.0)


def revise(a: Alert, **changes: Any) -> Alert:
    return Alert(**{**a.asdict(), **changes})


def query(d: Deployment, statement: str, *args: Any) -> list[dict[str, Any]]:
    conn = psycopg2.connect(d.settings.database_url.get_secret_value())
    try:
        with conn, conn.cursor() as cur:
            cur.execute(
                sql.SQL("SET search_path TO {}").format(
                    sql.Identifier(d.settings.postgres_schema)
                )
            )
            cur.execute(statement, args)
            names = [c[0] for c in cur.description or ()]
            return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
    finally:
        conn.close()


def alert_row(d: Deployment, alert_id: str) -> dict[str, Any] | None:
    found = query(d, "SELECT *, now() AS db_now FROM alerts WHERE id = %s", alert_id)
    return found[0] if found else None


def wait_row(
    d: Deployment, alert_id: str, status: str, timeout: float = 30.0
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    row = None
    while time.monotonic() < deadline:
        d.worker.assert_alive()
        row = alert_row(d, alert_id)
        if row is not None and row["delivery_status"] == status:
            return row
        time.sleep(0.1)
    raise AssertionError(f"{alert_id} not {status}: {row}\n{d.worker.tail()}")


def test_a_flaky_webhook_gets_the_alert_once_with_its_key(
    deployment: Deployment,
) -> None:
    d = deployment
    alert = make(f"flaky{uuid.uuid4().hex[:6]}")
    d.hook.script(alert.id, [500, 500])
    send(d, alert)
    row = wait_row(d, alert.id, "delivered")
    assert row["attempts"] == 3
    assert row["delivered_at"] is not None and row["last_error"] is None
    calls = d.hook.requests_for(alert.id)
    assert [c.status for c in calls] == [500, 500, 200]
    for call in calls:
        assert call.method == "POST"
        assert call.headers["Idempotency-Key"] == alert.id
        assert call.headers["Content-Type"] == "application/json"
        assert call.auth == ("streamapp", PASSWORD)
        assert call.body["id"] == alert.id
        assert call.body["magnitude"] == pytest.approx(alert.magnitude)
        assert call.body["summary"] == alert.summary


def test_an_undeliverable_alert_is_kept_and_delivered_after_recovery(
    deployment: Deployment,
) -> None:
    d = deployment
    alert = make(f"down{uuid.uuid4().hex[:6]}", tsunami=True)
    d.hook.fail(alert.id)
    send(d, alert)
    row = wait_row(d, alert.id, "failing")
    assert row["attempts"] == MAX_ATTEMPTS
    assert "HTTP 500" in row["last_error"] and PASSWORD not in row["last_error"]
    assert row["next_attempt_at"] > row["db_now"]
    assert row["delivered_at"] is None
    d.hook.recover(alert.id)
    row = wait_row(d, alert.id, "delivered", timeout=RETRY_SECONDS * 10)
    # Whole failed rounds of MAX_ATTEMPTS, then the one that was answered 200.
    assert row["attempts"] % MAX_ATTEMPTS == 1 and row["attempts"] > MAX_ATTEMPTS
    statuses = [c.status for c in d.hook.requests_for(alert.id)]
    assert statuses.count(200) == 1 and statuses[-1] == 200
    assert len(statuses) == row["attempts"]


def test_a_revision_is_stored_once_and_posted_once(deployment: Deployment) -> None:
    d = deployment
    first = make(f"rev{uuid.uuid4().hex[:6]}", magnitude=6.1)
    send(d, first)
    stored = wait_row(d, first.id, "delivered")
    revised = revise(
        first, magnitude=7.2, detected_at=first.detected_at + timedelta(minutes=5)
    )
    marker = make(f"mark{uuid.uuid4().hex[:6]}")
    # One partition: once the marker is stored, the revision was handled.
    send(d, revised, marker)
    wait_row(d, marker.id, "delivered")
    again = alert_row(d, first.id)
    assert again is not None
    assert again["magnitude"] == pytest.approx(6.1)
    assert again["detected_at"] == stored["detected_at"] == first.detected_at
    assert again["attempts"] == 1
    assert [c.status for c in d.hook.requests_for(first.id)] == [200]
    assert len(query(d, "SELECT id FROM alerts WHERE id = %s", first.id)) == 1


def test_a_record_that_is_not_an_alert_is_dead_lettered(
    deployment: Deployment,
) -> None:
    d = deployment
    wrong_region = revise(make(f"bad{uuid.uuid4().hex[:6]}"), region="99X999Y")
    produce(d, [(b"junk", b"{not json"), (b"bad", wrong_region.dumps())])
    deadline = time.monotonic() + 30
    letters: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        letters = query(
            d,
            "SELECT key, error_kind, error_message FROM dead_letters"
            " WHERE source_topic = %s ORDER BY source_offset",
            d.topic,
        )
        if len(letters) >= 2:
            break
        time.sleep(0.1)
    assert [bytes(x["key"]) for x in letters] == [b"junk", b"bad"], d.worker.tail()
    assert {x["error_kind"] for x in letters} == {"schema"}
    assert "region cell" in letters[1]["error_message"]
    assert alert_row(d, wrong_region.id) is None


def scrape(d: Deployment) -> dict[str, Any]:
    url = f"http://127.0.0.1:{d.worker.web_port}/metrics"
    with urllib.request.urlopen(url, timeout=30) as resp:
        text = resp.read().decode("utf-8")
    assert PASSWORD not in text
    return {f.name: f for f in text_string_to_metric_families(text)}


def sample(families: dict[str, Any], name: str, **labels: str) -> float:
    return sum(
        s.value
        for s in families[name].samples
        if not s.name.endswith("_created")
        and all(s.labels.get(k) == v for k, v in labels.items())
    )


def test_metrics_api_and_log(deployment: Deployment) -> None:
    d = deployment
    magnitude, pager = make_all(f"api{uuid.uuid4().hex[:6]}", alert="red")
    send(d, magnitude, pager)
    for alert in (magnitude, pager):
        wait_row(d, alert.id, "delivered")
    rows = query(d, "SELECT rule, delivery_status, attempts FROM alerts")
    assert {r["delivery_status"] for r in rows} == {"delivered"}
    deadline = time.monotonic() + 10
    families = scrape(d)
    # The loop counts the outbox after each pass: wait for the pass that saw none.
    while sample(families, "streamapp_alerts_awaiting_delivery") != 0:
        assert time.monotonic() < deadline, "the awaiting gauge stays above 0"
        time.sleep(0.1)
        families = scrape(d)
    for rule in ("magnitude", "tsunami", "pager", "surge"):
        expected = sum(1 for r in rows if r["rule"] == rule)
        assert sample(families, "streamapp_alerts", rule=rule) == expected
    # One request per attempt: each alert's last one delivered it, the rest failed;
    # a round of MAX_ATTEMPTS failures gave up.
    outcomes = {
        "delivered": len(rows),
        "failed": sum(r["attempts"] - 1 for r in rows),
        "gave_up": sum((r["attempts"] - 1) // MAX_ATTEMPTS for r in rows),
    }
    for outcome, expected in outcomes.items():
        got = sample(families, "streamapp_alert_deliveries", outcome=outcome)
        assert got == expected, (outcome, got, expected)

    status, page = d.worker.get("/api/alerts?rule=pager")
    assert status == 200
    assert [i["id"] for i in page["items"]] == [pager.id]
    assert page["items"][0]["delivery"]["status"] == "delivered"
    assert page["next_cursor"] is None
    ids: list[str] = []
    status, page = d.worker.get("/api/alerts?limit=2")
    while True:
        assert status == 200
        ids += [i["id"] for i in page["items"]]
        if page["next_cursor"] is None:
            break
        status, page = d.worker.get(f"/api/alerts?limit=2&cursor={page['next_cursor']}")
    assert len(ids) == len(set(ids)) == len(rows)
    status, body = d.worker.get("/api/alerts?rule=quake")
    assert status == 400 and body["status"] == 400

    log = d.worker.log_path.read_text(encoding="utf-8", errors="replace")
    assert PASSWORD not in log
    assert "streamapp:***@127.0.0.1" in log
