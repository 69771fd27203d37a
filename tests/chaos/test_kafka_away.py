"""Scenario 8: the worker starts while the broker is down, then the broker starts."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable

import pytest

from devstack import kafka_answers
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

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(1800)]

#: Seconds the worker runs with no broker before the broker is started.
AWAY_SECONDS = 12.0


def test_worker_started_before_the_broker(
    profile: Profile,
    private: PrivateStack,
    private_target: Target,
    chaos_run: Callable[[Target, str], ChaosRun],
    chaos_report: Report,
) -> None:
    run = chaos_run(private_target, "kafka-away")
    data = profile_data(profile, seed=808)
    figures = Figures("kafka-away", "Worker started before the broker", profile.name)
    run.create_raw_topic()
    bootstrap = run.settings.kafka_bootstrap_servers
    private.stop_kafka()
    assert not kafka_answers(bootstrap, timeout=1.0)

    worker = run.start_worker()
    started = time.monotonic()
    health: list[tuple[int, dict]] = []
    while time.monotonic() - started < AWAY_SECONDS:
        worker.assert_alive()
        with contextlib.suppress(OSError):  # the web server is not up yet
            health.append(worker.get("/health", timeout=15))
        time.sleep(1.0)
    log_away = worker.tail(400)

    starter = threading.Thread(target=private.up, daemon=True)
    starter.start()
    while not kafka_answers(bootstrap, timeout=1.0):
        assert starter.is_alive() or private.kafka_pid(), "the broker did not start"
        time.sleep(0.2)
    up = time.monotonic()
    starter.join(300)
    worker.wait_healthy(timeout=180)
    healthy_after = time.monotonic() - up
    progress = run.watch()
    producer = BackgroundProducer(
        run.settings, run.settings.topic_raw, data.messages, rate=200.0
    ).start()
    first = progress.wait_progress(up, 300, alive=worker.assert_alive)
    producer.wait(profile.drain_timeout)
    settle(run, data, figures, alive=[worker], timeout=profile.settle_timeout)
    worker.assert_alive()

    waits = [line for line in log_away.splitlines() if "does not answer" in line]
    unavailable = [body for status, body in health if status == 503]
    figures.notes[:0] = [
        f"worker started with the broker down, for {AWAY_SECONDS:.0f} s: "
        f"{len(waits)} wait lines in its log, {len(unavailable)} of {len(health)} "
        "/health probes 503 naming kafka, no traceback",
        f"broker answering -> worker healthy {healthy_after:.1f} s, first row "
        f"{fmt_seconds([first])}",
        f"{data.describe['messages']:,} messages offered at 200/s after the start",
    ]
    figures.time_to_recover = f"{healthy_after:.1f} s"
    chaos_report.add("kafka-away", figures)
    assert waits, log_away
    assert all(f"Kafka at {bootstrap} does not answer" in line for line in waits)
    assert "Traceback" not in log_away, log_away
    assert unavailable and all(b["failed"] == ["kafka"] for b in unavailable)
    assert first is not None
    assert figures.ok, "\n".join(figures.problems)
