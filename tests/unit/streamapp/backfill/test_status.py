"""What the worker shows of the backfill: cached reads, the gauges."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from prometheus_client import CollectorRegistry, generate_latest

from streamapp.backfill.progress import ProgressStore, RunState
from streamapp.backfill.status import BackfillCollector, BackfillStatus
from streamapp.settings import Settings

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def state(run_id: int, done_days: int, finished: bool) -> RunState:
    return RunState(
        run_id, T0, T0 + timedelta(days=4), None, None, "http://x",
        T0 + timedelta(days=done_days), done_days, 400, 100 * done_days,
        90 * done_days, 10 * done_days, T0, T0 + timedelta(hours=1),
        T0 + timedelta(days=5) if finished else None, None,
    )  # fmt: skip


class Store:
    def __init__(self, runs: list[RunState] | Exception) -> None:
        self.runs = runs
        self.reads = 0

    def latest(self, limit: int) -> list[RunState]:
        self.reads += 1
        if isinstance(self.runs, Exception):
            raise self.runs
        return self.runs[:limit]


def status(store: Store, clock: Any) -> BackfillStatus:
    return BackfillStatus(
        cast(Settings, None), ttl=5.0, store=cast(ProgressStore, store), clock=clock
    )


def test_the_table_is_read_at_most_once_per_ttl() -> None:
    now = [0.0]
    store = Store([state(2, 1, False), state(1, 4, True)])
    s = status(store, lambda: now[0])
    body = asyncio.run(s.get())
    assert body is not None and body["latest"]["id"] == 2
    assert (
        body["latest"]["state"] == "running" and body["latest"]["fraction_done"] == 0.25
    )
    assert [r["state"] for r in body["runs"]] == ["running", "finished"]
    asyncio.run(s.get())
    assert store.reads == 1
    now[0] = 6.0
    asyncio.run(s.get())
    assert store.reads == 2


def test_no_backfill_or_no_database_gives_null() -> None:
    assert asyncio.run(status(Store([]), lambda: 0.0).get()) is None
    assert asyncio.run(status(Store(OSError("down")), lambda: 0.0).get()) is None


def test_the_gauges_export_the_kept_runs() -> None:
    s = status(Store([state(7, 2, False)]), lambda: 0.0)
    asyncio.run(s.refresh())
    registry = CollectorRegistry()
    registry.register(BackfillCollector(s))
    text = generate_latest(registry).decode()
    assert 'streamapp_backfill_events{kind="produced",run="7"} 180.0' in text
    assert 'streamapp_backfill_events{kind="expected",run="7"} 400.0' in text
    assert 'streamapp_backfill_fraction_done{run="7"} 0.5' in text
    assert 'streamapp_backfill_finished{run="7"} 0.0' in text
