"""End to end: ``faust -A streamapp backfill`` into a running worker's pipeline.

One worker (module-scoped) with its own app id, topics and schema; the backfill
command runs as a real process against the emulated FDSN service. Every event
lands once in ``earthquakes``, the bad ones in ``dead_letters`` with the reason,
``/api/stats`` and ``/metrics`` show the progress, and a second run sends nothing.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg2
import pytest
from psycopg2 import sql

from streamapp.settings import load_settings
from tests.support.fdsn import FdsnEmulator
from tests.support.feeds import FeedServer
from tests.support.paths import FAUST, ROOT
from tests.support.ports import free_port
from tests.support.stack import drop_schema
from tests.support.workers import Worker

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

SINCE = datetime(2024, 3, 1, tzinfo=UTC)
UNTIL = datetime(2024, 3, 8, tzinfo=UTC)
EVENTS = 600
BAD = (5, 77, 311)
COMMAND = ["backfill", "--since", "2024-03-01", "--until", "2024-03-08"]


@dataclass
class Deployment:
    worker: Worker
    fdsn: FdsnEmulator
    env: dict[str, str]
    schema: str
    dsn: str

    def run(
        self, *args: str, timeout: float = 120.0
    ) -> subprocess.CompletedProcess[str]:
        """``faust -A streamapp <args>`` with the worker's environment."""
        return subprocess.run(
            [str(FAUST), "-A", "streamapp", *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def rows(self, query: str, *names: str) -> list[tuple[Any, ...]]:
        tables = [sql.Identifier(self.schema, n) for n in names]
        conn = psycopg2.connect(self.dsn)
        try:
            with conn, conn.cursor() as cur:
                cur.execute(sql.SQL(query).format(*tables))
                return list(cur.fetchall())
        finally:
            conn.close()

    def wait_for(
        self, what: str, predicate: Callable[[], bool], timeout: float = 90.0
    ) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.worker.assert_alive()
            try:
                if predicate():
                    return
            except psycopg2.Error:
                pass
            time.sleep(0.25)
        raise AssertionError(f"timed out waiting for {what}:\n{self.worker.tail()}")


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    tag = uuid.uuid4().hex[:8]
    schema = f"e2e_bf_{tag}"
    env = dict(os.environ)
    env.update(
        {
            "APP_ID": f"e2e-bf-{tag}",
            "TOPIC_RAW": f"e2e-bf-{tag}.raw",
            "TOPIC_CLEAN": f"e2e-bf-{tag}.clean",
            "TOPIC_DEAD_LETTER": f"e2e-bf-{tag}.dead-letter",
            "TOPIC_ACTIVITY": f"e2e-bf-{tag}.activity",
            "TOPIC_ALERTS": f"e2e-bf-{tag}.alerts",
            "POSTGRES_SCHEMA": schema,
            "WEB_PORT": str(free_port()),
            "FETCH_INTERVAL_SECONDS": "60",
            "SINK_BATCH_SECONDS": "0.2",
            "PYTHONUNBUFFERED": "1",
            "BACKFILL_MAX_EVENTS_PER_QUERY": "200",
            "BACKFILL_REQUESTS_PER_SECOND": "20",
            "BACKFILL_EVENTS_PER_SECOND": "5000",
        }
    )
    log = tmp_path_factory.mktemp("backfill") / "worker.log"
    with (
        FeedServer() as feed,
        FdsnEmulator(SINCE, UNTIL, count=EVENTS, limit=200, bad=BAD, tag="e2e") as fdsn,
    ):
        env["SOURCE_URL"] = feed.url
        env["BACKFILL_URL"] = fdsn.url
        worker = Worker(env, log).start()
        dsn = env.get("DATABASE_URL") or ""
        try:
            worker.wait_healthy()
            dsn = load_settings(env).database_url.get_secret_value()
            yield Deployment(worker, fdsn, env, schema, dsn)
        finally:
            worker.stop()
            if dsn:
                drop_schema(dsn, schema)


def test_every_event_lands_once_and_bad_ones_are_dead_lettered(
    deployment: Deployment,
) -> None:
    d = deployment
    done = d.run(*COMMAND)
    assert done.returncode == 0, done.stderr
    summary = done.stdout.strip().splitlines()[-1]
    assert summary.startswith("backfill finished: ")
    assert f"{EVENTS} events fetched, {EVENTS} produced, 0 skipped" in summary
    assert "backfill" in done.stderr  # the progress lines (not a terminal: plain)

    good = sorted(set(d.fdsn.ids) - {d.fdsn.ids[i] for i in BAD})
    d.wait_for(
        "every good event in the table",
        lambda: d.rows("SELECT count(*) FROM {}", "earthquakes")[0][0] == len(good),
    )
    d.wait_for(
        "the bad events dead-lettered",
        lambda: d.rows("SELECT count(*) FROM {}", "dead_letters")[0][0] == len(BAD),
    )
    ids = [r[0] for r in d.rows("SELECT id FROM {} ORDER BY id", "earthquakes")]
    assert ids == good
    letters = d.rows("SELECT key, error_kind, error_message FROM {}", "dead_letters")
    assert sorted(bytes(k).decode() for k, _, _ in letters) == sorted(
        d.fdsn.ids[i] for i in BAD
    )
    assert all(kind and "latitude" in (message or "") for _, kind, message in letters)
    sources = d.rows("SELECT DISTINCT source_url FROM {}", "earthquakes")
    assert all(s[0].startswith(d.fdsn.url + "/query?") for s in sources)

    def stats_finished() -> bool:
        _, body = d.worker.get("/api/stats")
        latest = (body.get("backfill") or {}).get("latest") or {}
        return latest.get("state") == "finished"

    d.wait_for("/api/stats to show the finished backfill", stats_finished, 30)
    _, body = d.worker.get("/api/stats")
    latest = body["backfill"]["latest"]
    assert latest["events_produced"] == EVENTS
    assert latest["events_expected"] == EVENTS
    assert latest["fraction_done"] == 1.0
    assert latest["slices_done"] >= EVENTS // 200

    def metric(kind: str) -> float | None:
        url = f"http://127.0.0.1:{d.worker.web_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as resp:
            text = resp.read().decode()
        for match in re.finditer(
            r"^streamapp_backfill_events\{(.*)\} (\S+)$", text, re.M
        ):
            labels = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1)))
            if labels == {"run": str(latest["id"]), "kind": kind}:
                return float(match.group(2))
        return None

    d.wait_for(
        "/metrics to export the backfill", lambda: metric("produced") == EVENTS, 30
    )


def test_running_it_again_sends_nothing(deployment: Deployment) -> None:
    d = deployment
    before = len(d.fdsn.log())
    again = d.run(*COMMAND, "--no-progress")
    assert again.returncode == 0, again.stderr
    assert "already finished" in again.stdout
    assert len(d.fdsn.log()) == before  # not a single request


def test_ctrl_c_stops_it_with_130_and_the_same_command_resumes(
    deployment: Deployment,
) -> None:
    d = deployment
    # a range of its own (another progress row), slow enough to interrupt
    command = ["backfill", "--since", "2024-03-02", "--until", "2024-03-06"]
    proc = subprocess.Popen(
        [str(FAUST), "-A", "streamapp", *command, "--rate", "40", "--no-progress"],
        cwd=ROOT,
        env=d.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        d.wait_for(
            "the first slice of the slow backfill",
            lambda: (
                d.rows(
                    "SELECT max(slices_done) FROM {} WHERE since = '2024-03-02'",
                    "backfill_runs",
                )[0][0]
                == 1
            ),
            60,
        )
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130
    assert err.strip().splitlines()[-1] == (
        "streamapp backfill: interrupted; run the same command again to resume"
    )
    resumed = d.run(*command, "--rate", "5000")
    assert resumed.returncode == 0, resumed.stderr
    assert "backfill finished: " in resumed.stdout
    assert ", resumed from 2024-03-" in resumed.stdout
    ((slices, fetched),) = d.rows(
        "SELECT slices_done, events_fetched FROM {} WHERE since = '2024-03-02'",
        "backfill_runs",
    )
    assert fetched == sum(
        1 for t in d.fdsn.times if SINCE.timestamp() * 1000 + 86_400_000 <= t
        and t < SINCE.timestamp() * 1000 + 5 * 86_400_000
    )  # fmt: skip
    assert slices >= 2


def test_bad_arguments_exit_2_with_one_line(deployment: Deployment) -> None:
    bad = deployment.run("backfill", "--since", "2024-03-08", "--until", "2024-03-01")
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines()[-1] == (
        "streamapp backfill: --until 2024-03-01 must be after --since 2024-03-08"
    )
    assert "Traceback" not in bad.stderr
