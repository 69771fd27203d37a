"""The read API on the real PostgreSQL: filters, pages, 400s, 404s, injection."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import psycopg2
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from psycopg2 import sql
from psycopg2.extras import Json

import streamapp.views.api as api
import streamapp.views.dashboard
import streamapp.views.metrics  # noqa: F401 - registers the pages
from streamapp.app import app
from streamapp.db import get_engine, migrate
from streamapp.settings import Secret, Settings

pytestmark = pytest.mark.integration

Client = TestClient[Any, Any]
BASE = datetime(2014, 4, 14, 0, 0, tzinfo=UTC)
N_QUAKES = 60
KINDS = ["not_json", "schema", "schema", "too_deep", "not_utf8", "sink_rejected"]

INJECTIONS = [
    "' OR '1'='1",
    "1; DROP TABLE earthquakes; --",
    "'); DELETE FROM dead_letters; --",
    '" OR ""="',
    "1 UNION SELECT password FROM pg_shadow --",
    "%27%20OR%201%3D1",
    "\\'; SELECT pg_sleep(10); --",
    "$$; DROP SCHEMA public CASCADE; $$",
    "ak0144m5b4r6' --",
    "1/**/OR/**/1=1",
]


def quake(i: int) -> dict[str, Any]:
    """Synthetic, deterministic events; pairs share a time to test tie-breaking."""
    return {
        "id": f"tq{i:03d}",
        "time": BASE + timedelta(minutes=7 * (i // 2)),
        "updated": BASE + timedelta(minutes=7 * (i // 2), seconds=30),
        "magnitude": None if i % 17 == 0 else round(-1 + (i * 0.37) % 8, 2),
        "mag_type": "ml",
        "place": f"{i} km N of Somewhere, Ålaska" if i % 2 else f"Place {i}",
        "longitude": -179.5 + (i * 47.3) % 359,
        "latitude": -80 + (i * 13.7) % 160,
        "depth": (i * 11.1) % 700,
        "kafka_partition": i % 4,
        "kafka_offset": i,
    }


QUAKES = [quake(i) for i in range(N_QUAKES)]


def newest_first(rows: list[dict[str, Any]]) -> list[str]:
    return [
        r["id"] for r in sorted(rows, key=lambda r: (r["time"], r["id"]), reverse=True)
    ]


@pytest.fixture
def schema_settings(stack_ready: Settings, pg_schema: str) -> Iterator[Settings]:
    """Settings of a fresh, migrated schema filled with QUAKES and dead letters."""
    s = dataclasses.replace(stack_ready, postgres_schema=pg_schema)
    migrate(s)
    conn = psycopg2.connect(s.database_url.get_secret_value())
    try:
        with conn, conn.cursor() as cur:
            for q in QUAKES:
                cur.execute(
                    sql.SQL(
                        "INSERT INTO {} (id, time, updated, magnitude, mag_type, place,"
                        " longitude, latitude, depth, kafka_partition, kafka_offset)"
                        " VALUES (%(id)s, %(time)s, %(updated)s, %(magnitude)s,"
                        " %(mag_type)s, %(place)s, %(longitude)s, %(latitude)s,"
                        " %(depth)s, %(kafka_partition)s, %(kafka_offset)s)"
                    ).format(sql.Identifier(pg_schema, "earthquakes")),
                    q,
                )
            for i, kind in enumerate(KINDS):
                cur.execute(
                    sql.SQL(
                        "INSERT INTO {} (source_topic, source_partition, source_offset,"
                        " key, payload, error_kind, error_message, error_detail,"
                        " failed_at, redriven_at) VALUES"
                        " (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
                    ).format(sql.Identifier(pg_schema, "dead_letters")),
                    (
                        "earthquakes.raw",
                        0,
                        i,
                        b"key-%d" % i,
                        b"\xff\xfe<script>alert(1)</script>"
                        if kind == "not_utf8"
                        else b"{",
                        kind,
                        f"reason {i}",
                        Json({"i": i}),
                        BASE + timedelta(hours=i),
                        BASE if i == 2 else None,
                    ),
                )
    finally:
        conn.close()
    yield s
    get_engine(s).dispose()


@pytest.fixture
async def client(
    schema_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Client]:
    """The worker's real routes on a test server, reading the test's schema."""
    monkeypatch.setattr(api, "settings", schema_settings)
    fresh = web.Application()
    for resource in app.web.web_app.router.resources():
        if isinstance(resource, web.StaticResource):
            continue
        for route in resource:
            fresh.router.add_route(route.method, resource.canonical, route.handler)
    async with TestClient(TestServer(fresh)) as test_client:
        yield test_client


async def get_json(client: Client, path: str, status: int = 200) -> Any:
    resp = await client.get(path)
    text = await resp.text()
    assert resp.status == status, (path, resp.status, text)
    assert resp.content_type == "application/json", text
    for leak in ("Traceback", "psycopg2", "sqlalchemy", "SELECT ", "streamapp:"):
        assert leak not in text, (path, text)
    return json.loads(text)


async def walk(client: Client, path: str) -> list[dict[str, Any]]:
    sep = "&" if "?" in path else "?"
    items: list[dict[str, Any]] = []
    page = await get_json(client, path)
    items += page["items"]
    while page["next_cursor"]:
        page = await get_json(client, f"{path}{sep}cursor={page['next_cursor']}")
        items += page["items"]
        assert len(items) <= N_QUAKES
    return items


async def test_pagination_visits_every_row_once_newest_first(client: Client) -> None:
    items = await walk(client, "/api/earthquakes?limit=7")
    assert [i["id"] for i in items] == newest_first(QUAKES)
    first = items[0]
    assert first["time"].endswith("Z") and first["place"]
    assert set(first) >= {"id", "time", "magnitude", "place", "depth", "latitude"}


async def test_limit_cap_and_default(client: Client) -> None:
    page = await get_json(client, "/api/earthquakes")
    assert page["count"] == N_QUAKES and page["next_cursor"] is None
    page = await get_json(client, "/api/earthquakes?limit=1000")
    assert page["count"] == N_QUAKES
    body = await get_json(client, "/api/earthquakes?limit=1001", 400)
    assert "1000" in body["error"]


@pytest.mark.parametrize(
    ("query", "keep"),
    [
        (
            "since=2014-04-14T01:00:00Z",
            lambda q: q["time"] >= BASE + timedelta(hours=1),
        ),
        (
            "since=2014-04-14T00:30:00%2B00:00&until=2014-04-14T02:00:00Z",
            lambda q: (
                BASE + timedelta(minutes=30) <= q["time"] < BASE + timedelta(hours=2)
            ),
        ),
        (
            "min_magnitude=4.5",
            lambda q: q["magnitude"] is not None and q["magnitude"] >= 4.5,
        ),
        (
            "min_magnitude=0&max_magnitude=2",
            lambda q: q["magnitude"] is not None and 0 <= q["magnitude"] <= 2,
        ),
        (
            "bbox=-180,-10,0,90",
            lambda q: -180 <= q["longitude"] <= 0 and -10 <= q["latitude"] <= 90,
        ),
        (
            "bbox=150,-90,-150,90",  # across the antimeridian
            lambda q: q["longitude"] >= 150 or q["longitude"] <= -150,
        ),
        (
            "bbox=-180,0,180,90&min_magnitude=2&since=2014-04-14T00:20:00Z",
            lambda q: (
                q["latitude"] >= 0
                and q["magnitude"] is not None
                and q["magnitude"] >= 2
                and q["time"] >= BASE + timedelta(minutes=20)
            ),
        ),
    ],
)
async def test_filters_match_the_data(client: Client, query: str, keep: Any) -> None:
    expected = newest_first([q for q in QUAKES if keep(q)])
    assert expected, "the filter should keep something"
    items = await walk(client, f"/api/earthquakes?{query}&limit=5")
    assert [i["id"] for i in items] == expected


async def test_one_earthquake_and_404(client: Client) -> None:
    row = await get_json(client, "/api/earthquakes/tq011")
    assert row["id"] == "tq011" and row["place"] == QUAKES[11]["place"]
    assert row["time"] == "2014-04-14T00:35:00.000Z"
    body = await get_json(client, "/api/earthquakes/us99999999", 404)
    assert "us99999999" in body["error"]


@pytest.mark.parametrize(
    "path",
    [
        "/api/earthquakes?since=yesterday",
        "/api/earthquakes?min_magnitude=abc",
        "/api/earthquakes?bbox=1,2,3",
        "/api/earthquakes?limit=0",
        "/api/earthquakes?cursor=%%%",
        "/api/earthquakes?unknown=1",
        "/api/earthquakes/has%20space",
        "/api/dead-letters?kind=nope",
        "/api/dead-letters?redriven=perhaps",
        "/api/dead-letters?limit=-5",
    ],
)
async def test_bad_parameters_are_400(client: Client, path: str) -> None:
    body = await get_json(client, path, 400)
    assert body["status"] == 400 and len(body["error"]) > 10


async def test_sql_injection_is_400_or_empty_and_harmless(
    client: Client, schema_settings: Settings
) -> None:

    params = ["since", "until", "min_magnitude", "bbox", "limit", "cursor"]
    for payload in INJECTIONS:
        q = quote(payload, safe="")
        for name in params:
            resp = await client.get(f"/api/earthquakes?{name}={q}")
            assert resp.status == 400, (name, payload)
            await get_json(client, f"/api/earthquakes?{name}={q}", 400)
        for name in ("kind", "since", "redriven", "cursor"):
            await get_json(client, f"/api/dead-letters?{name}={q}", 400)
        resp = await client.get(f"/api/earthquakes/{q}")
        assert resp.status in (400, 404), payload
        await get_json(client, f"/api/earthquakes/{q}", resp.status)
    # An id that is a valid USGS spelling but still SQL-ish reaches the database
    # as a bound parameter and simply matches nothing.
    await get_json(client, "/api/earthquakes/tq001--", 404)
    # Nothing was dropped or deleted, nobody slept.
    page = await get_json(client, "/api/earthquakes?limit=1000")
    assert page["count"] == N_QUAKES
    page = await get_json(client, "/api/dead-letters?limit=1000")
    assert page["count"] == len(KINDS)


async def test_dead_letters_filters_and_pages(client: Client) -> None:
    page = await get_json(client, "/api/dead-letters?limit=2")
    assert [i["error_kind"] for i in page["items"]] == ["sink_rejected", "not_utf8"]
    items = page["items"]
    while page["next_cursor"]:
        page = await get_json(
            client, f"/api/dead-letters?limit=2&cursor={page['next_cursor']}"
        )
        items += page["items"]
    assert [i["error_kind"] for i in items] == list(reversed(KINDS))
    schema = await get_json(client, "/api/dead-letters?kind=schema")
    assert schema["count"] == 2
    pending = await get_json(client, "/api/dead-letters?kind=schema&redriven=false")
    assert pending["count"] == 1 and pending["items"][0]["redriven_at"] is None
    done = await get_json(client, "/api/dead-letters?redriven=true")
    assert [i["redriven_at"] for i in done["items"]] == ["2014-04-14T00:00:00Z"]
    recent = await get_json(client, "/api/dead-letters?since=2014-04-14T04:00:00Z")
    assert {i["error_kind"] for i in recent["items"]} == {"not_utf8", "sink_rejected"}
    binary = next(i for i in items if i["error_kind"] == "not_utf8")
    assert binary["payload_preview"].startswith("\ufffd\ufffd<script>")  # text, escaped
    assert binary["key"] == "key-4" and binary["payload_size"] == 27
    assert binary["error_detail"] == {"i": 4}


async def test_database_down_is_503_without_the_password(
    client: Client, schema_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    password = schema_settings.postgres_password.get_secret_value()
    url = f"postgresql://streamapp:{password}@127.0.0.1:1/streamapp"
    down = dataclasses.replace(schema_settings, database_url=Secret(url))
    monkeypatch.setattr(api, "settings", down)
    try:
        for path in ("/api/earthquakes", "/api/earthquakes/tq001", "/api/dead-letters"):
            resp = await client.get(path)
            text = await resp.text()
            assert resp.status == 503, text
            assert password not in text and "127.0.0.1" not in text
    finally:
        get_engine(down).dispose()
