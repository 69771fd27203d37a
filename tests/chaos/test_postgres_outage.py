"""Scenario 3: PostgreSQL stopped for 15 s mid-stream (private stack), then started."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta

import psycopg2
import pytest

from tests.chaos.harness import (
    BackgroundProducer,
    ChaosRun,
    Figures,
    Profile,
    Report,
    Target,
    fmt_seconds,
    profile_data,
    settle,
)
from tests.support.private_stack import PrivateStack
from tests.support.workers import Worker

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(1800)]

STREAM_SECONDS = 60.0
OUTAGE_SECONDS = 15.0


def answer_time(dsn: str, timeout: float = 300) -> tuple[float, datetime]:
    """Block until PostgreSQL accepts a login; (monotonic, local wall clock)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            psycopg2.connect(dsn, connect_timeout=1).close()
        except psycopg2.OperationalError:
            time.sleep(0.1)
            continue
        return time.monotonic(), datetime.now()
    raise AssertionError(f"PostgreSQL did not answer within {timeout}s")


def first_retried_write(
    worker: Worker, after: datetime, timeout: float
) -> float | None:
    """Seconds from ``after`` to the first 'database write succeeded after N
    retries' line the worker logged after it (log timestamps are local time)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = worker.log_path.read_text(encoding="utf-8", errors="replace")
        for line in text.splitlines():
            if "database write succeeded after" not in line:
                continue
            stamp = datetime.strptime(line[1:24], "%Y-%m-%d %H:%M:%S,%f")
            if stamp >= after - timedelta(seconds=1):
                return max(0.0, (stamp - after).total_seconds())
        time.sleep(0.5)
    return None


def test_postgres_stopped_for_15s_mid_stream(
    profile: Profile,
    private: PrivateStack,
    private_target: Target,
    chaos_run: Callable[[Target, str], ChaosRun],
    chaos_report: Report,
) -> None:
    run = chaos_run(private_target, "postgres")
    stream_seconds = STREAM_SECONDS * profile.time_scale
    data = profile_data(profile, seed=303)
    figures = Figures("postgres", "PostgreSQL stopped 15 s mid-stream", profile.name)
    run.create_raw_topic()
    worker = run.start_worker()
    worker.wait_healthy()
    progress = run.watch()
    rate = max(20.0, profile.events / stream_seconds)
    producer = BackgroundProducer(
        run.settings, run.settings.topic_raw, data.messages, rate=rate
    ).start()
    moving = progress.wait_progress(time.monotonic(), 180, alive=worker.assert_alive)
    assert moving is not None, worker.tail()
    time.sleep(stream_seconds * 0.2)

    stopping = time.monotonic()
    stop_took = private.stop_postgres()
    stopped = time.monotonic()
    stored_at_stop = progress.latest()[1]
    validated_at_stop = worker.get("/api/stats")[1]["valid"]
    health: list[tuple[float, int, dict]] = []
    while time.monotonic() - stopped < OUTAGE_SECONDS:
        worker.assert_alive()
        status, body = worker.get("/health", timeout=15)
        health.append((time.monotonic() - stopped, status, body))
        time.sleep(1.0)
    status_during = worker.get("/api/stats")[1]
    # Start PostgreSQL again (the broker still runs) and note when it answers.
    starter = threading.Thread(target=private.up, daemon=True)
    starter.start()
    started = time.monotonic()
    answered, answered_at = answer_time(run.settings.database_url.get_secret_value())
    starter.join(300)
    recovered = first_retried_write(worker, answered_at, timeout=120)
    rows_again = progress.wait_progress(answered, 300, alive=worker.assert_alive)
    healthy_again = None
    while time.monotonic() - answered < 120:
        if worker.get("/health")[0] == 200:
            healthy_again = time.monotonic() - answered
            break
        time.sleep(0.25)

    producer.wait(profile.drain_timeout)
    settle(run, data, figures, alive=[worker], timeout=profile.settle_timeout)
    logs = run.logs()
    retries = logs.count("retrying the same")
    down = [(t, s, b) for t, s, b in health if s == 503]
    named = [
        b
        for _, _, b in down
        if b.get("failed") == ["postgres"] and b.get("kafka") == "ok"
    ]
    figures.notes[:0] = [
        f"PostgreSQL stopped (pg_ctl stop -m fast, {stop_took:.1f} s) at "
        f"t+{stopping - run.started:.0f} s with {stored_at_stop:,} stored; answering "
        f"again {answered - stopping:.1f} s later (15 s, then `stack up`: "
        f"{answered - started:.1f} s to a login)",
        f"/health during the outage: {len(down)} of {len(health)} probes 503 with "
        f"failed={down[0][2].get('failed') if down else None}, "
        f"kafka={down[0][2].get('kafka') if down else None}; e.g. postgres="
        f"{down[0][2].get('postgres')!r}"
        if down
        else f"/health during the outage: {[s for _, s, _ in health]}",
        f"worker stayed up; it kept validating while the database was down "
        f"(valid {validated_at_stop:,} -> {status_during['valid']:,}); sink retries "
        f"counted {status_during['sink_retries']}, {retries} retry warnings in the log",
        f"PostgreSQL answering (probed every 0.1 s) -> the sink's retried batch "
        f"committed ('database write succeeded after N retries') "
        f"{fmt_seconds([recovered])}; /health 200 again after "
        f"{fmt_seconds([healthy_again])}; rows growing again within "
        f"{fmt_seconds([rows_again])} (0.5 s sampling)",
        f"{data.describe['messages']:,} messages offered at {rate:.0f}/s",
        "time to recover = PostgreSQL answering again -> the retried batch committed "
        "(from the worker log's timestamp; the sink's backoff is capped at 10 s)",
    ]
    figures.time_to_recover = fmt_seconds([recovered])
    if private.password in logs:
        figures.problems.append("the database password appears in the worker log")
    chaos_report.add("postgres", figures)
    assert down and len(named) == len(down), health
    assert recovered is not None and healthy_again is not None
    assert rows_again is not None
    assert retries > 0, "no sink retry was logged while PostgreSQL was down"
    assert figures.ok, "\n".join(figures.problems)
