"""Scenario 1: the worker is SIGKILLed three times while data flows, and restarted."""

from __future__ import annotations

import random
import time
from collections.abc import Callable

import pytest

from tests.chaos.harness import (
    BackgroundProducer,
    ChaosRun,
    Figures,
    Profile,
    Report,
    Target,
    expected_totals,
    fmt_seconds,
    offered,
    profile_data,
    settle,
    sink_transaction_open,
)

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(1800)]

#: Seconds over which the stream is offered (the kills happen inside it).
STREAM_SECONDS = 90.0


def test_worker_sigkilled_three_times(
    profile: Profile,
    shared_target: Target,
    chaos_run: Callable[[Target, str], ChaosRun],
    chaos_report: Report,
) -> None:
    rng = random.Random()
    run = chaos_run(shared_target, "sigkill")
    stream_seconds = STREAM_SECONDS * profile.time_scale
    data = profile_data(profile, seed=101)
    figures = Figures("sigkill", "Worker SIGKILLed 3x, restarted", profile.name)
    run.create_raw_topic()
    worker = run.start_worker()
    worker.wait_healthy()
    progress = run.watch()
    producer = BackgroundProducer(
        run.settings,
        run.settings.topic_raw,
        data.messages,
        rate=max(20.0, profile.events / stream_seconds),
    ).start()
    total_rows, _, total_letters = expected_totals(data)

    recoveries: list[float | None] = []
    details: list[str] = []
    started = time.monotonic()
    for i in range(3):
        # Let the (re)started worker process for a random while.
        moving = progress.wait_progress(started, 240, alive=worker.assert_alive)
        assert moving is not None, f"no progress after (re)start:\n{worker.tail()}"
        time.sleep(rng.uniform(0.5, 4.0))
        mid_batch = False
        if i == 1:
            # This kill waits for a sink transaction in flight: mid-batch.
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                if sink_transaction_open(run.db, run.settings.app_id):
                    mid_batch = True
                    break
                time.sleep(0.005)
        else:
            mid_batch = sink_transaction_open(run.db, run.settings.app_id)
        stored = progress.latest()[1]
        worker.kill()
        killed = time.monotonic()
        time.sleep(rng.uniform(0.2, 2.0))
        worker = run.restart(worker)
        started = time.monotonic()
        took = progress.wait_progress(started, 240, alive=worker.assert_alive)
        recoveries.append(took)
        details.append(
            f"kill {i + 1} at t+{killed - run.started:.0f} s"
            f"{' during an open sink transaction (mid-batch)' if mid_batch else ''}, "
            f"{stored:,}/{total_rows + total_letters:,} stored, producer at "
            f"{producer.delivered:,}/{len(data.messages):,}; restart -> first new "
            f"row {fmt_seconds([took])}"
        )
        assert took is not None, f"no progress after restart {i + 1}:\n{worker.tail()}"
    producer.wait(profile.drain_timeout)
    worker.wait_healthy()
    settle(run, data, figures, alive=[worker], timeout=profile.settle_timeout)
    figures.notes[:0] = details
    figures.notes.append(offered(data, max(20.0, profile.events / stream_seconds)))
    figures.notes.append(
        "time to recover = restart of the killed worker -> first new row or dead "
        "letter stored (includes process start, group rejoin and the wait for the "
        "dead member's session to expire)"
    )
    done = [r for r in recoveries if r is not None]
    figures.time_to_recover = f"max {max(done):.1f} s" if done else "never"
    chaos_report.add("sigkill", figures)
    assert figures.ok, "\n".join(figures.problems)
