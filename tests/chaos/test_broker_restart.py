"""Scenario 4: the Kafka broker is restarted mid-stream (private stack)."""

from __future__ import annotations

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

STREAM_SECONDS = 60.0
DOWN_SECONDS = 10.0


def test_broker_restarted_mid_stream(
    profile: Profile,
    private: PrivateStack,
    private_target: Target,
    chaos_run: Callable[[Target, str], ChaosRun],
    chaos_report: Report,
) -> None:
    run = chaos_run(private_target, "broker")
    stream_seconds = STREAM_SECONDS * profile.time_scale
    data = profile_data(profile, seed=404)
    figures = Figures("broker", "Kafka broker restarted mid-stream", profile.name)
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
    stored_at_stop = progress.latest()[1]
    sent_at_stop = producer.delivered
    stop_took = private.stop_kafka()
    health: list[tuple[int, dict]] = []
    while time.monotonic() - stopping < stop_took + DOWN_SECONDS:
        worker.assert_alive()
        health.append(worker.get("/health", timeout=15))
        time.sleep(1.0)
    # Start the broker again (ZooKeeper and PostgreSQL still run); note when it
    # answers a metadata request (probed while `stack up` waits for it).
    starter = threading.Thread(target=private.up, daemon=True)
    starter.start()
    while not kafka_answers(run.settings.kafka_bootstrap_servers, timeout=1.0):
        assert starter.is_alive() or private.kafka_pid(), "the broker did not start"
        time.sleep(0.1)
    up = time.monotonic()
    starter.join(300)
    recovered = progress.wait_progress(up, 300, alive=worker.assert_alive)
    healthy_again = None
    while time.monotonic() - up < 180:
        worker.assert_alive()
        if worker.get("/health")[0] == 200:
            healthy_again = time.monotonic() - up
            break
        time.sleep(0.5)

    producer.wait(profile.drain_timeout)
    settle(run, data, figures, alive=[worker], timeout=profile.settle_timeout)
    down = [b for s, b in health if s == 503]
    figures.notes[:0] = [
        f"broker stopped (SIGTERM, controlled shutdown, {stop_took:.1f} s) at "
        f"t+{stopping - run.started:.0f} s with {stored_at_stop:,} stored and the "
        f"test producer at {sent_at_stop:,}/{len(data.messages):,}; started again "
        f"(`stack up`); answering again {up - stopping:.1f} s after the stop",
        f"/health while the broker was down: {len(down)} of {len(health)} probes 503"
        + (f", failed={down[0].get('failed')}" if down else ""),
        f"the test producer retried {producer.failed_sends:,} failed sends (it "
        "resends until delivered; the broker deduplicates idempotent retries)",
        f"broker answering -> first new row {fmt_seconds([recovered])}; /health "
        f"200 again after {fmt_seconds([healthy_again])}; the worker process "
        "stayed up (no restart)",
        f"{data.describe['messages']:,} messages offered at {rate:.0f}/s",
        "time to recover = broker answering a metadata request again (probed) -> "
        "first new row stored (0.5 s sampling)",
    ]
    figures.time_to_recover = fmt_seconds([recovered])
    chaos_report.add("broker", figures)
    assert recovered is not None and healthy_again is not None
    assert figures.ok, "\n".join(figures.problems)
