"""Backfill throughput and the live path's latency while a backfill runs.

Run against the local stack (``make up``), alone on the machine (under the heavy
lock when others share it); about two minutes::

    flock /tmp/streamapp-heavy.lock .venv/bin/python -m bench.backfill
    .venv/bin/python -m bench.backfill --events 25000 --rate 2000 --json out.json

Steps, all on fresh ``bench-backfill-*`` topics, consumer group and schema (removed
at the end):

1. A worker (``faust -A streamapp worker``) whose live fetcher polls a local feed
   every second; the feed gains 3 new events (ids ``live*``) every second.
2. ``baseline``: ``--baseline`` seconds of the live feed alone.
3. ``backfill``: ``faust -A streamapp backfill`` of ``--events`` events from the
   emulated FDSN service (``tests/support/fdsn.py``, the service's real limit of
   20,000 events per query) at ``--rate`` events/s (default:
   ``BACKFILL_EVENTS_PER_SECOND``), while the live feed goes on.
4. Reported: the backfill's own events/s (its summary line), the seconds until
   every backfilled event is a row, and the live path's latency (the envelope's
   ``fetched_at`` to the row's ``ingested_at``) of the live events fetched in
   the baseline and from the backfill's start until its last event is a row:
   p50, p95, p99, max.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import subprocess
import sys
import threading
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from psycopg2 import sql

from bench.common import (
    Run,
    base_settings,
    delete_groups,
    delete_prefixed_topics,
    drop_schema,
    free_port,
    machine,
    pg_connect,
    prepare_schema,
    settings_env,
)
from bench.latency import percentiles
from streamapp.db import qualified
from tests.support.fdsn import FdsnEmulator, captured_features
from tests.support.feeds import FeedServer

__all__ = ["main"]

ROOT = Path(__file__).resolve().parents[1]
FAUST = Path(sys.executable).with_name("faust")
SINCE = datetime(2024, 1, 1, tzinfo=UTC)
UNTIL = datetime(2024, 2, 1, tzinfo=UTC)
LIVE_PER_SECOND = 3
SUMMARY = re.compile(r"in ([\d.]+)s \((\d+) events/s\)")


class LiveFeed:
    """Serves a feed that gains ``LIVE_PER_SECOND`` new events every second."""

    def __init__(self, feed: FeedServer) -> None:
        self.feed = feed
        self.templates = captured_features()
        self.features: list[dict[str, Any]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        n = 0
        while not self.stop.wait(1.0):
            now = int(time.time() * 1000)
            for _ in range(LIVE_PER_SECOND):
                feature = json.loads(
                    json.dumps(self.templates[n % len(self.templates)])
                )
                feature["id"] = f"live{n:06d}"
                feature["properties"].update(time=now, updated=now)
                self.features.append(feature)
                n += 1
            self.features = self.features[-60:]  # the feed keeps the last minute
            self.feed.serve({"type": "FeatureCollection", "features": self.features})

    def __enter__(self) -> LiveFeed:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(5)


def _wait_healthy(port: int, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the worker exited with {proc.returncode}")
        url = f"http://127.0.0.1:{port}/health"
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=5):
            return
        time.sleep(0.5)
    raise RuntimeError(f"the worker was not healthy within {timeout}s")


def _latencies(settings: Any, start: datetime, end: datetime) -> list[float]:
    """Seconds from fetch to row of the live events fetched in [start, end)."""
    query = sql.SQL(
        "SELECT extract(epoch FROM ingested_at - fetched_at) FROM {}"
        " WHERE id LIKE 'live%%' AND fetched_at >= %s AND fetched_at < %s"
    ).format(qualified(settings.postgres_schema, "earthquakes"))
    with contextlib.closing(pg_connect(settings)) as conn, conn.cursor() as cur:
        cur.execute(query, (start, end))
        return [float(r[0]) for r in cur.fetchall()]


def _backfilled(settings: Any) -> int:
    query = sql.SQL("SELECT count(*) FROM {} WHERE id LIKE 'fd%%'").format(
        qualified(settings.postgres_schema, "earthquakes")
    )
    with contextlib.closing(pg_connect(settings)) as conn, conn.cursor() as cur:
        cur.execute(query)
        return int(cur.fetchone()[0])


def measure(args: argparse.Namespace) -> dict[str, Any]:
    base = base_settings()
    run = Run("backfill")
    settings = run.settings(base)
    prepare_schema(settings)
    port = free_port()
    log = Path(args.log or f"/tmp/{run.prefix}-worker.log")
    result: dict[str, Any] = {"machine": machine(), "events": args.events}
    try:
        with (
            FeedServer() as feed,
            FdsnEmulator(SINCE, UNTIL, count=args.events, tag="bench") as fdsn,
            LiveFeed(feed),
        ):
            env = settings_env(
                settings,
                WEB_PORT=str(port),
                SOURCE="usgs",
                SOURCE_URL=feed.url,
                FETCH_INTERVAL_SECONDS="1",
                BACKFILL_URL=fdsn.url,
                BACKFILL_REQUESTS_PER_SECOND="2",
            )
            if args.rate:
                env["BACKFILL_EVENTS_PER_SECOND"] = str(args.rate)
            with log.open("ab") as out:
                worker = subprocess.Popen(
                    [str(FAUST), "-A", "streamapp", "worker", "-l", "info"],
                    cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                    start_new_session=True,
                )  # fmt: skip
            try:
                _wait_healthy(port, worker, 180)
                time.sleep(5)  # the first polls settle
                t0 = datetime.now(UTC)
                time.sleep(args.baseline)
                t1 = datetime.now(UTC)
                started = time.monotonic()
                done = subprocess.run(
                    [str(FAUST), "-A", "streamapp", "backfill", "--since",
                     SINCE.isoformat(), "--until", UNTIL.isoformat()],
                    cwd=ROOT, env=env, capture_output=True, text=True, check=False,
                )  # fmt: skip
                t2 = datetime.now(UTC)
                if done.returncode != 0:
                    raise RuntimeError(f"backfill failed: {done.stderr.strip()}")
                while _backfilled(settings) < args.events:
                    if time.monotonic() - started > 600:
                        raise RuntimeError("backfilled rows missing after 600 s")
                    time.sleep(0.5)
                stored = time.monotonic() - started
                t3 = datetime.now(UTC)
                time.sleep(3)  # the last live events of the window land
                summary = done.stdout.strip().splitlines()[-1]
                match = SUMMARY.search(summary)
                result.update(
                    summary=summary,
                    backfill_seconds=float(match.group(1)) if match else None,
                    backfill_events_per_second=int(match.group(2)) if match else None,
                    seconds_to_last_row=round(stored, 2),
                    events_per_second_to_table=round(args.events / stored, 1),
                    requests=len(fdsn.log()),
                    live_latency_baseline=percentiles(_latencies(settings, t0, t1)),
                    backfill_command_seconds=round((t2 - t1).total_seconds(), 2),
                    live_latency_during_backfill=percentiles(
                        _latencies(settings, t1, t3 - timedelta(seconds=1))
                    ),
                )
            finally:
                worker.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    worker.wait(30)
                if worker.poll() is None:
                    worker.kill()
    finally:
        asyncio.run(delete_prefixed_topics(settings, run.prefix))
        asyncio.run(delete_groups(settings, run.prefix))
        drop_schema(settings)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=25_000)
    parser.add_argument("--rate", type=float, default=None, help="events/s")
    parser.add_argument("--baseline", type=float, default=20.0, help="seconds")
    parser.add_argument("--json", default=None, help="write the result here")
    parser.add_argument("--log", default=None, help="the worker's log file")
    args = parser.parse_args(argv)
    result = measure(args)
    text = json.dumps(result, indent=2, default=str)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
