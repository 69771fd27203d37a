"""Scenario 2: two workers in one group on 4 partitions; one is killed, the other
takes over its partitions; it comes back and the group rebalances."""

from __future__ import annotations

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
    fmt_seconds,
    handled,
    offered,
    profile_data,
    settle,
    wait_handling,
)

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(1800)]

STREAM_SECONDS = 100.0


def session_timeout() -> float:
    """The worker's Kafka session timeout (faust ``broker_session_timeout``)."""
    from streamapp.app import app

    return float(app.conf.broker_session_timeout)


def test_two_workers_one_killed_takeover_and_rejoin(
    profile: Profile,
    shared_target: Target,
    chaos_run: Callable[[Target, str], ChaosRun],
    chaos_report: Report,
) -> None:
    run = chaos_run(shared_target, "rebalance")
    stream_seconds = STREAM_SECONDS * profile.time_scale
    data = profile_data(profile, seed=202)
    figures = Figures(
        "rebalance", "2 workers, 1 killed, takeover, rejoin", profile.name
    )
    partitions = list(range(run.settings.topic_partitions))
    assert len(partitions) >= 4
    run.create_raw_topic()
    first = run.start_worker("a")
    second = run.start_worker("b")
    first.wait_healthy()
    second.wait_healthy()
    progress = run.watch()
    rate = max(20.0, profile.events / stream_seconds)
    producer = BackgroundProducer(
        run.settings, run.settings.topic_raw, data.messages, rate=rate
    ).start()

    # Both members hold partitions: each process validates messages.
    for w in (first, second):
        took = wait_handling(w, 180)
        assert took is not None, f"a worker never got partitions:\n{w.tail()}"
    time.sleep(stream_seconds * 0.15)
    before = (handled(first), handled(second))

    second.kill()
    killed = time.monotonic()
    takeover = progress.wait_progress(
        killed, 180, partitions=partitions, alive=first.assert_alive
    )
    assert takeover is not None, f"no takeover of every partition:\n{first.tail()}"
    taken = handled(first)
    time.sleep(3)

    back = run.restart(second)
    restarted = time.monotonic()
    back.wait_healthy()
    waited = wait_handling(back, 180)
    assert waited is not None, f"the restarted worker got no partitions:\n{back.tail()}"
    rejoined = time.monotonic()
    rejoin = rejoined - restarted
    # Both members keep working after the rebalance.
    survivor_before = handled(first)
    both = [wait_handling(first, 120, survivor_before), wait_handling(back, 120, 0)]
    stall = progress.longest_stall(restarted, min(rejoined + 10, time.monotonic()))

    producer.wait(profile.drain_timeout)
    settle(run, data, figures, alive=[first, back], timeout=profile.settle_timeout)
    figures.notes[:0] = [
        f"before the kill: worker A validated {before[0]:,}, worker B {before[1]:,}",
        f"worker B SIGKILLed at t+{killed - run.started:.0f} s; takeover (every one of "
        f"the {len(partitions)} partitions stores new data again) after "
        f"{fmt_seconds([takeover])}; the app's broker_session_timeout is "
        f"{session_timeout():g} s",
        f"worker A had validated {taken:,} when the takeover was seen",
        f"worker B restarted: validating again {fmt_seconds([rejoin])} after its "
        f"restart; longest stall of the stream during that rebalance "
        f"{stall:.1f} s; both members validating afterwards: "
        f"{'yes' if all(x is not None for x in both) else 'NO'}",
        offered(data, rate),
        "time to recover = kill -> every partition progressing on the survivor "
        "(takeover); then restart -> the returning worker validating (rejoin)",
    ]
    figures.time_to_recover = (
        f"takeover {fmt_seconds([takeover])}; rejoin {fmt_seconds([rejoin])}"
    )
    chaos_report.add("rebalance", figures)
    assert all(x is not None for x in both), "a member stopped after the rebalance"
    assert figures.ok, "\n".join(figures.problems)
