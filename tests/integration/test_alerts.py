"""Alerts on the real PostgreSQL: stored once, the webhook outbox, /api/alerts.

The outbox runs its real SQL and real HTTP against a local receiver
(:class:`tests.support.webhook.WebhookServer`) that fails the first tries; the
pauses between attempts are recorded instead of slept.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import psycopg2
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from psycopg2 import sql

import streamapp.views.alerts  # noqa: F401 - registers /api/alerts on the app
import streamapp.views.api as api
from models.alerts import Alert, event_alerts, surge_alert
from streamapp.alerts.outbox import claim_due, outbox_state
from streamapp.alerts.webhook import (
    HttpWebhook,
    WebhookOutbox,
    WebhookTarget,
    alert_payload,
)
from streamapp.app import app
from streamapp.db import get_engine, migrate
from streamapp.settings import Secret, Settings
from streamapp.sinks.alerts import AlertSink, alert_row
from streamapp.sinks.base import Item
from tests.support.webhook import WebhookServer

pytestmark = pytest.mark.integration

Client = TestClient[Any, Any]
T0 = datetime(2026, 12, 8, 3, 0, tzinfo=UTC)
PASSWORD = "s3cr3t-p4ss"


def quake(i: int, **extra: Any) -> dict[str, Any]:
    return {
        "id": f"us{i:04d}",
        "magnitude": 6.0 + i / 10,
        "latitude": -60 + 7 * i,
        "longitude": -170 + 23 * i,
        "time": T0 + timedelta(minutes=i),
        "place": f"{i} km N of Town",
        **extra,
    }


def alert(i: int, **extra: Any) -> Alert:
    return event_alerts(
        quake(i, **extra), min_magnitude=6.0, now=T0 + timedelta(seconds=i)
    )[0]


def revise(a: Alert, **changes: Any) -> Alert:
    return Alert(**{**a.asdict(), **changes})


@pytest.fixture
def schema_settings(stack_ready: Settings, pg_schema: str) -> Iterator[Settings]:
    s = dataclasses.replace(stack_ready, postgres_schema=pg_schema)
    migrate(s)
    yield s
    get_engine(s).dispose()


def rows(s: Settings) -> dict[str, dict[str, Any]]:
    conn = psycopg2.connect(s.database_url.get_secret_value())
    try:
        with conn, conn.cursor() as cur:
            cur.execute(
                sql.SQL("SELECT *, now() AS db_now FROM {}").format(
                    sql.Identifier(s.postgres_schema, "alerts")
                )
            )
            names = [d[0] for d in cur.description or ()]
            return {r[0]: dict(zip(names, r, strict=True)) for r in cur.fetchall()}
    finally:
        conn.close()


async def store(sink: AlertSink, alerts: list[Alert]) -> list[tuple[str, str]]:
    for a in alerts:
        sink.add(Item(alert_row(a)))
    assert await sink.flush() == []
    return sink.take_inserted()


async def test_each_alert_is_stored_once_the_first_detection_kept(
    schema_settings: Settings,
) -> None:
    sink = AlertSink(schema_settings, webhook=True)
    first = alert(1)
    revised = revise(first, magnitude=7.5, detected_at=T0 + timedelta(hours=1))
    surge = surge_alert("30N130E", T0, 12, [1] * 24, factor=5, min_count=5, now=T0)
    assert surge is not None
    # A revision in the same batch and in a later one: one row, the first kept.
    new = await store(sink, [first, revised, surge])
    assert sorted(new) == sorted([(first.id, "magnitude"), (surge.id, "surge")])
    assert await store(sink, [revised]) == []
    stored = rows(schema_settings)
    assert set(stored) == {first.id, surge.id}
    row = stored[first.id]
    assert row["magnitude"] == pytest.approx(first.magnitude)
    assert row["detected_at"] == first.detected_at
    assert row["delivery_status"] == "pending"
    assert row["next_attempt_at"] is not None and row["attempts"] == 0
    assert stored[surge.id]["hour_count"] == 12
    sink.close()

    off = AlertSink(schema_settings, webhook=False)
    assert await store(off, [alert(2)]) == [(alert(2).id, "magnitude")]
    row = rows(schema_settings)[alert(2).id]
    assert row["delivery_status"] == "off" and row["next_attempt_at"] is None
    off.close()


async def test_a_row_the_database_refuses_is_isolated(
    schema_settings: Settings,
) -> None:
    sink = AlertSink(schema_settings, webhook=False)
    good = alert(3)
    bad = {**alert_row(alert(4)), "hour_count": -1}  # CHECK (hour_count >= 0)
    sink.add(Item(alert_row(good), ref="good"))
    sink.add(Item(bad, ref="bad"))
    rejected = await sink.flush()
    assert [r.item.ref for r in rejected] == ["bad"]
    assert rejected[0].sqlstate == "23514"
    assert sink.take_inserted() == [(good.id, "magnitude")]
    assert set(rows(schema_settings)) == {good.id}
    sink.close()


def test_claims_are_exclusive_and_leases_expire(schema_settings: Settings) -> None:
    sink = AlertSink(schema_settings, webhook=True)
    alerts = [alert(i) for i in range(10, 30)]
    asyncio.run(store(sink, alerts))
    sink.close()
    claimed: list[list[str]] = []
    barrier = threading.Barrier(4)

    def claim() -> None:
        barrier.wait()
        got = claim_due(schema_settings, limit=8, lease_seconds=1.5)
        claimed.append([a["id"] for a in got])

    threads = [threading.Thread(target=claim) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    everything = [i for batch in claimed for i in batch]
    assert len(everything) == len(set(everything)) == len(alerts)
    assert claim_due(schema_settings, limit=50, lease_seconds=1.5) == []
    count, due_in = outbox_state(schema_settings)
    assert count == len(alerts) and due_in is not None and 0 < due_in <= 1.5
    time.sleep(due_in + 0.1)
    again = claim_due(schema_settings, limit=50, lease_seconds=60)
    assert {a["id"] for a in again} == {a.id for a in alerts}


@pytest.fixture
def hook() -> Iterator[WebhookServer]:
    with WebhookServer() as server:
        yield server


async def test_outbox_retries_records_and_delivers_after_recovery(
    schema_settings: Settings, hook: WebhookServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="streamapp.alerts")
    s = dataclasses.replace(
        schema_settings,
        alert_webhook_url=Secret(hook.url_with("streamapp", PASSWORD)),
        alert_webhook_max_retries=3,
        alert_webhook_retry_seconds=1.0,
        alert_webhook_timeout_seconds=5.0,
    )
    flaky, down = alert(40), alert(41)
    hook.script(flaky.id, [500, 503])
    hook.fail(down.id)
    sink = AlertSink(s, webhook=True)
    await store(sink, [flaky, down])
    sink.close()
    pauses: list[float] = []

    async def pause(seconds: float) -> None:
        pauses.append(seconds)

    outbox = WebhookOutbox(s, sleep=pause)
    run = asyncio.create_task(outbox.run())
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            state = rows(s)
            if (
                state[flaky.id]["delivery_status"] == "delivered"
                and state[down.id]["delivery_status"] == "failing"
            ):
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError(f"no outcome recorded: {rows(s)}")
        row = state[flaky.id]
        assert row["attempts"] == 3 and row["delivered_at"] is not None
        assert row["last_error"] is None and row["next_attempt_at"] is None
        calls = hook.requests_for(flaky.id)
        assert [c.status for c in calls] == [500, 503, 200]
        for c in calls:
            assert c.method == "POST" and c.path == "/hook"
            assert c.headers["Content-Type"] == "application/json"
            assert c.auth == ("streamapp", PASSWORD)
            assert c.body == json.loads(json.dumps(alert_payload(row)))
        assert calls[0].body["id"] == flaky.id
        assert calls[0].body["occurred_at"] == "2026-12-08T03:40:00Z"

        failing = state[down.id]
        assert failing["attempts"] == 3
        assert "HTTP 500" in failing["last_error"]
        assert "\n" not in failing["last_error"]
        assert PASSWORD not in failing["last_error"]
        assert failing["next_attempt_at"] > failing["db_now"]
        # Two pauses per round of three attempts, from the one backoff policy.
        assert len(pauses) == 4 and all(0.2 <= p <= 1.0 for p in pauses)

        hook.recover(down.id)
        deadline = time.monotonic() + 15
        while rows(s)[down.id]["delivery_status"] != "delivered":
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        assert rows(s)[down.id]["attempts"] == 4
        assert [c.status for c in hook.requests_for(flaky.id)] == [500, 503, 200]
        # The URL is logged redacted; the password never.
        assert f"streamapp:***@127.0.0.1:{hook.port}/hook" in caplog.text
        assert "HTTP 500" in caplog.text
        assert PASSWORD not in caplog.text
    finally:
        run.cancel()
        await asyncio.gather(run, return_exceptions=True)


async def test_retry_after_longer_than_a_round_sets_the_next_round(
    schema_settings: Settings, hook: WebhookServer
) -> None:
    s = dataclasses.replace(
        schema_settings,
        alert_webhook_url=Secret(hook.url),
        alert_webhook_max_retries=4,
        alert_webhook_retry_seconds=1.0,
    )
    busy = alert(50)
    hook.script(busy.id, [429])
    hook.retry_after = "120"
    sink = AlertSink(s, webhook=True)
    await store(sink, [busy])
    sink.close()
    async with aiohttp.ClientSession() as session:
        sender = HttpWebhook(WebhookTarget.parse(hook.url), session, 5.0)
        outbox = WebhookOutbox(s, sender=sender)
        assert await outbox.deliver_due() == 1
    row = rows(s)[busy.id]
    assert row["delivery_status"] == "failing" and row["attempts"] == 1
    wait = (row["next_attempt_at"] - row["db_now"]).total_seconds()
    assert 100 < wait <= 120
    assert hook.requests_for(busy.id)[0].auth is None


async def test_two_workers_deliver_each_alert_once(
    schema_settings: Settings, hook: WebhookServer
) -> None:
    s = dataclasses.replace(schema_settings, alert_webhook_url=Secret(hook.url))
    alerts = [alert(i) for i in range(60, 90)]
    sink = AlertSink(s, webhook=True)
    await store(sink, alerts)
    sink.close()
    outboxes = [WebhookOutbox(s, claim_limit=4) for _ in range(2)]
    runs = [asyncio.create_task(o.run()) for o in outboxes]
    try:
        deadline = time.monotonic() + 20
        while {r["delivery_status"] for r in rows(s).values()} != {"delivered"}:
            assert time.monotonic() < deadline, rows(s)
            await asyncio.sleep(0.05)
    finally:
        for run in runs:
            run.cancel()
        await asyncio.gather(*runs, return_exceptions=True)
    keys = [r.headers["Idempotency-Key"] for r in hook.requests]
    assert sorted(keys) == sorted(a.id for a in alerts)
    assert {r["attempts"] for r in rows(s).values()} == {1}


# ------------------------------------------------------------------------ /api/alerts
@pytest.fixture
async def client(
    schema_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Client]:
    """The worker's /api/alerts on a test server, reading the test's schema, with
    alerts of every rule over three regions."""
    sink = AlertSink(schema_settings, webhook=False)
    made: list[Alert] = []
    for i in range(12):
        made += event_alerts(
            quake(i, tsunami=i % 3 == 0, alert="red" if i % 4 == 0 else None),
            min_magnitude=6.0,
            now=T0 + timedelta(seconds=i % 6),  # ties on detected_at
        )
    for h in range(3):
        surge = surge_alert(
            "30N130E", T0 + timedelta(hours=h), 9, [0] * 24, factor=5, min_count=5
        )
        assert surge is not None
        made.append(revise(surge, detected_at=T0 + timedelta(hours=h)))
    await store(sink, made)
    sink.close()
    # The view reads through streamapp.views.api.read_db (its settings).
    monkeypatch.setattr(api, "settings", schema_settings)
    fresh = web.Application()
    for resource in app.web.web_app.router.resources():  # type: ignore[attr-defined]
        if resource.canonical == "/api/alerts":
            for route in resource:
                fresh.router.add_route(route.method, resource.canonical, route.handler)
    async with TestClient(TestServer(fresh)) as test_client:
        test_client.made = made  # type: ignore[attr-defined]
        yield test_client


async def get_json(client: Client, path: str, status: int = 200) -> Any:
    resp = await client.get(path)
    body = await resp.json()
    assert resp.status == status, (path, body)
    return body


async def walk(client: Client, path: str) -> list[dict[str, Any]]:
    sep = "&" if "?" in path else "?"
    page = await get_json(client, path)
    items = list(page["items"])
    while page["next_cursor"]:
        page = await get_json(client, f"{path}{sep}cursor={page['next_cursor']}")
        items += page["items"]
    return items


async def test_api_pages_and_filters(client: Client) -> None:
    made: list[Alert] = client.made  # type: ignore[attr-defined]
    expected = sorted(made, key=lambda a: (a.detected_at, a.id), reverse=True)
    page = await get_json(client, "/api/alerts?limit=4")
    assert set(page) == {"items", "next_cursor"}
    item = page["items"][0]
    assert item["delivery"] == {
        "status": "off",
        "attempts": 0,
        "last_error": None,
        "delivered_at": None,
        "next_attempt_at": None,
    }
    assert item["stored_at"].endswith("Z")
    walked = await walk(client, "/api/alerts?limit=4")
    assert [i["id"] for i in walked] == [a.id for a in expected]

    for rule in ("magnitude", "tsunami", "pager", "surge"):
        got = await walk(client, f"/api/alerts?rule={rule}&limit=3")
        assert [i["id"] for i in got] == [a.id for a in expected if a.rule == rule]
    region = made[0].region
    got = await walk(client, f"/api/alerts?region={region}")
    assert got and all(i["region"] == region for i in got)
    assert len(got) == sum(1 for a in made if a.region == region)
    got = await walk(client, "/api/alerts?since=2026-12-08T04:00:00Z")
    assert [i["id"] for i in got] == [
        a.id for a in expected if a.detected_at >= T0 + timedelta(hours=1)
    ]
    surge = next(i for i in walked if i["rule"] == "surge")
    assert surge["hour_count"] == 9 and surge["event_id"] is None


@pytest.mark.parametrize(
    "query",
    [
        "rule=shaking",
        "region=31N130E",
        "region=north",
        "limit=0",
        "limit=1001",
        "cursor=bm9wZQ",
        "cursor=!!",
        "since=yesterday",
        "order=time",
    ],
)
async def test_api_bad_parameters_are_400(client: Client, query: str) -> None:
    body = await get_json(client, f"/api/alerts?{query}", status=400)
    assert body["status"] == 400 and body["error"]
