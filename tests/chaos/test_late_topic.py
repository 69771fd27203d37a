"""Scenario 7: the group's first assignment misses the clean topic (it was still
being created); a later rebalance assigns it with records in it and nothing
committed, and every record still reaches the table."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.chaos.harness import (
    BackgroundProducer,
    ChaosRun,
    Figures,
    Profile,
    Report,
    Target,
    fmt_seconds,
    handled,
    offered,
    profile_data,
    settle,
    wait_handling,
)

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(1800)]

STREAM_SECONDS = 40.0
#: Holds ``sitecustomize.py``, which withholds a topic from the first assignment.
INJECT = Path(__file__).resolve().parent / "inject"


def upserted(worker_stats: dict[str, object]) -> int:
    return int(str(worker_stats["upserted"]))


def test_a_topic_assigned_late_loses_nothing(
    profile: Profile,
    shared_target: Target,
    chaos_run: Callable[[Target, str], ChaosRun],
    chaos_report: Report,
) -> None:
    run = chaos_run(shared_target, "latetopic")
    stream_seconds = STREAM_SECONDS * profile.time_scale
    data = profile_data(profile, seed=707)
    figures = Figures(
        "latetopic", "Clean topic assigned late (after data)", profile.name
    )
    run.create_raw_topic()
    pythonpath = os.pathsep.join(
        p for p in (str(INJECT), os.environ.get("PYTHONPATH", "")) if p
    )
    first = run.start_worker(
        "a",
        {"PYTHONPATH": pythonpath, "CHAOS_WITHHOLD_TOPIC": run.settings.topic_clean},
    )
    first.wait_healthy()
    rate = max(20.0, profile.events / stream_seconds)
    producer = BackgroundProducer(
        run.settings, run.settings.topic_raw, data.messages, rate=rate
    ).start()

    # Worker A validates into the clean topic, which no member consumes yet.
    assert wait_handling(first, 120, 200) is not None, first.tail()
    status, stats = first.get("/api/stats")
    assert status == 200, stats
    stored_before = upserted(stats)
    validated_before = handled(first)
    logs = first.log_path.read_text(encoding="utf-8", errors="replace")
    withheld = f"Ignoring missing topic: '{run.settings.topic_clean}'" in logs

    # Worker B joins: the rebalance assigns the clean partitions to A and B.
    second = run.start_worker("b")
    joined = time.monotonic()
    second.wait_healthy()
    took = wait_handling(second, 180)
    assert took is not None, f"worker B got no partitions:\n{second.tail()}"
    assigned = time.monotonic() - joined

    producer.wait(profile.drain_timeout)
    settle(run, data, figures, alive=[first, second], timeout=profile.settle_timeout)
    figures.notes[:0] = [
        f"worker A alone, the clean topic withheld from its first assignment "
        f"(faust logged 'Ignoring missing topic': {'yes' if withheld else 'NO'}): "
        f"{validated_before:,} raw messages validated, {stored_before:,} rows "
        f"stored before worker B joined",
        f"worker B started; validating {fmt_seconds([assigned])} later; the "
        f"rebalance assigned the clean partitions with records in them and no "
        f"committed offset",
        offered(data, rate),
        "time to recover = worker B started -> worker B validating",
    ]
    figures.time_to_recover = f"B validating {fmt_seconds([assigned])}"
    chaos_report.add("latetopic", figures)
    # The scenario happened: the clean topic was consumed by nobody at first.
    assert withheld, "the clean topic was not withheld from the first assignment"
    assert stored_before == 0, "clean records were stored before the rebalance"
    assert figures.ok, "\n".join(figures.problems)
