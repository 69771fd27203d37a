"""Known answers for the activity windows, and readers of what the pipeline made.

:func:`expected_windows` computes every region's hourly and daily windows from
GeoJSON features in plain Python (its own cell and window arithmetic, not the
app's): the newest revision of each id counts once. :func:`activity_rows` reads
the ``activity`` table of a schema; :func:`read_alerts` reads an alerts topic.

Example::

    expected = expected_windows(load_capture("all_day_2014-04-14.geojson")["features"])
    assert activity_rows(dsn, schema) == expected   # after the pipeline ran
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg2
from aiokafka import AIOKafkaConsumer, TopicPartition
from psycopg2 import sql

from streamapp.faust_ext import fetch_cluster
from tests.support.aio import run_sync

__all__ = [
    "activity_rows",
    "cell_name",
    "expected_windows",
    "feature",
    "read_alerts",
]

#: ``(region, window, window_start)``
Key = tuple[str, str, datetime]


def cell_name(lat: float, lon: float) -> str:
    """The 10-degree cell of a point, named by its south-west corner."""
    south = max(-90, min(80, math.floor(lat / 10.0) * 10))
    west = math.floor(lon / 10.0) * 10
    if west >= 180:
        west -= 360
    ns = "S" if south < 0 else "N"
    ew = "W" if west < 0 else "E"
    return f"{abs(south):02d}{ns}{abs(west):03d}{ew}"


def _starts(ms: int) -> dict[str, datetime]:
    when = datetime.fromtimestamp(ms / 1000, UTC)
    hour = when.replace(minute=0, second=0, microsecond=0)
    return {"1h": hour, "1d": hour.replace(hour=0)}


def expected_windows(features: Iterable[dict[str, Any]]) -> dict[Key, dict[str, Any]]:
    """``{(region, window, start): {count, max_magnitude, energy_joules,
    min_depth_km, max_depth_km}}`` of the features (newest revision per id)."""
    newest: dict[str, dict[str, Any]] = {}
    for f in features:
        seen = newest.get(f["id"])
        if seen is None or f["properties"]["updated"] >= seen["properties"]["updated"]:
            newest[f["id"]] = f
    out: dict[Key, dict[str, Any]] = {}
    for f in newest.values():
        lon, lat, depth = f["geometry"]["coordinates"][:3]
        mag = f["properties"].get("mag")
        for window, start in _starts(f["properties"]["time"]).items():
            row = out.setdefault(
                (cell_name(lat, lon), window, start),
                {
                    "count": 0,
                    "max_magnitude": None,
                    "energy_joules": 0.0,
                    "min_depth_km": None,
                    "max_depth_km": None,
                },
            )
            row["count"] += 1
            if mag is not None:
                row["energy_joules"] += 10 ** (1.5 * mag + 4.8)
                if row["max_magnitude"] is None or mag > row["max_magnitude"]:
                    row["max_magnitude"] = float(mag)
            for name, pick in (("min_depth_km", min), ("max_depth_km", max)):
                row[name] = (
                    float(depth) if row[name] is None else pick(row[name], depth)
                )
    return out


def activity_rows(dsn: str, schema: str) -> dict[Key, dict[str, Any]]:
    """The ``activity`` rows of ``schema`` (empty when the table is missing)."""
    query = sql.SQL(
        'SELECT region, "window", window_start, window_end, count, max_magnitude,'
        " energy_joules, min_depth_km, max_depth_km FROM {}"
    ).format(sql.Identifier(schema, "activity"))
    conn = psycopg2.connect(dsn)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(query)
            rows = cur.fetchall()
    except psycopg2.errors.UndefinedTable:
        return {}
    finally:
        conn.close()
    out: dict[Key, dict[str, Any]] = {}
    for region, window, start, end, count, mag, energy, dmin, dmax in rows:
        length = timedelta(hours=1) if window == "1h" else timedelta(days=1)
        assert end - start == length, (region, window, start, end)
        out[(region, window, start.astimezone(UTC))] = {
            "count": count,
            "max_magnitude": mag,
            "energy_joules": energy,
            "min_depth_km": dmin,
            "max_depth_km": dmax,
        }
    return out


def feature(
    event_id: str,
    when: datetime,
    *,
    lat: float,
    lon: float,
    depth: float = 10.0,
    mag: float | None = 2.0,
    updated: datetime | None = None,
    tsunami: int = 0,
    alert: str | None = None,
) -> dict[str, Any]:
    """A USGS-shaped GeoJSON feature."""
    ms = int(when.timestamp() * 1000)
    return {
        "type": "Feature",
        "id": event_id,
        "properties": {
            "mag": mag,
            "place": f"test place {event_id}",
            "time": ms,
            "updated": int((updated or when).timestamp() * 1000),
            "url": f"https://example.test/{event_id}",
            "tsunami": tsunami,
            "alert": alert,
            "status": "reviewed",
            "type": "earthquake",
            "net": "us",
            "code": event_id,
            "title": f"M {mag} - test place {event_id}",
            "magType": "mww",
            "sig": 10,
        },
        "geometry": {"type": "Point", "coordinates": [lon, lat, depth]},
    }


def read_alerts(bootstrap: str, topic: str) -> list[dict[str, Any]]:
    """Every alert on ``topic`` (all partitions, from the start to the end)."""

    async def run() -> list[dict[str, Any]]:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap, enable_auto_commit=False
        )
        await consumer.start()
        try:
            cluster = await fetch_cluster(consumer)
            parts = cluster.partitions_for_topic(topic) or set()
            tps = [TopicPartition(topic, p) for p in sorted(parts)]
            if not tps:
                return []
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            ends = await consumer.end_offsets(tps)
            out: list[dict[str, Any]] = []
            while True:
                positions = [await consumer.position(tp) for tp in tps]
                if all(p >= ends[tp] for p, tp in zip(positions, tps, strict=True)):
                    break
                batch = await consumer.getmany(timeout_ms=1000)
                for records in batch.values():
                    out.extend(json.loads(r.value) for r in records)
            return out
        finally:
            await consumer.stop()

    return run_sync(run())
