"""The slice runner with a fake service, store and sender: splitting, resuming,
dedup against the fetcher's table, progress, failures."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest

from agents.fetch import dedup_key
from streamapp.backfill.fdsn import FdsnClient, Page, TooManyEvents, Window
from streamapp.backfill.progress import Params, ProgressStore, RunState
from streamapp.backfill.run import Backfill, Progress, Summary
from streamapp.exceptions import SourceUnavailable

SINCE = datetime(2024, 1, 1, tzinfo=UTC)
UNTIL = SINCE + timedelta(days=10)


def feature(i: int, t: datetime) -> dict[str, Any]:
    ms = int(t.timestamp() * 1000)
    return {
        "type": "Feature",
        "id": f"ev{i}",
        "properties": {"time": ms, "updated": ms + 1},
        "geometry": {"type": "Point", "coordinates": [1.0, 2.0, 3.0]},
    }


class FakeService:
    """``count``/``query`` over evenly spread events, refusing more than ``limit``."""

    def __init__(self, n: int, limit: int, *, count_ok: bool = True) -> None:
        step = (UNTIL - SINCE) / n
        self.events = [feature(i, SINCE + step * (i + 0.5)) for i in range(n)]
        self.max_events = limit
        self.count_ok = count_ok
        self.url = "http://fdsn.test/fdsnws/event/1"
        self.requests = 0
        self.queries: list[tuple[datetime, datetime, int]] = []
        self.fail_at: int | None = None

    def _in(self, w: Window) -> list[dict[str, Any]]:
        lo, hi = w.since.timestamp() * 1000, w.until.timestamp() * 1000
        return [e for e in self.events if lo <= e["properties"]["time"] < hi]

    async def count(self, w: Window) -> int | None:
        self.requests += 1
        return len(self._in(w)) if self.count_ok else None

    async def query(self, w: Window) -> Page:
        self.requests += 1
        if self.fail_at is not None and len(self.queries) >= self.fail_at:
            raise SourceUnavailable("the service is down")
        found = self._in(w)
        self.queries.append((w.since, w.until, len(found)))
        if len(found) > self.max_events:
            raise TooManyEvents("too many")
        return Page(found, f"{self.url}/query", SINCE, 0)


class FakeStore:
    """The progress table in a dict."""

    def __init__(self) -> None:
        self.rows: dict[str, RunState] = {}

    def open(
        self, params: Params, *, source_url: str, expected: Any = None
    ) -> RunState:
        if params.key not in self.rows:
            self.rows[params.key] = RunState(
                len(self.rows) + 1, params.since, params.until, params.min_magnitude,
                params.bbox, source_url, params.since, 0, expected, 0, 0, 0,
                SINCE, SINCE, None, None,
            )  # fmt: skip
        return self.rows[params.key]

    def _set(self, run_id: int, **changes: Any) -> RunState:
        key = next(k for k, r in self.rows.items() if r.id == run_id)
        self.rows[key] = dataclasses.replace(self.rows[key], **changes)
        return self.rows[key]

    def _get(self, run_id: int) -> RunState:
        return next(r for r in self.rows.values() if r.id == run_id)

    def expect(self, run_id: int, expected: int | None) -> RunState:
        return self._set(run_id, events_expected=expected)

    def restart(self, run_id: int) -> RunState:
        r = self._get(run_id)
        return self._set(
            run_id, done_until=r.since, slices_done=0, events_fetched=0,
            events_produced=0, events_skipped=0, finished_at=None, last_error=None,
        )  # fmt: skip

    def slice_done(
        self, run_id: int, *, done_until: datetime, fetched: int, produced: int,
        skipped: int,
    ) -> RunState:  # fmt: skip
        r = self._get(run_id)
        return self._set(
            run_id, done_until=done_until, slices_done=r.slices_done + 1,
            events_fetched=r.events_fetched + fetched,
            events_produced=r.events_produced + produced,
            events_skipped=r.events_skipped + skipped, last_error=None,
        )  # fmt: skip

    def finish(self, run_id: int) -> RunState:
        return self._set(run_id, finished_at=UNTIL)

    def fail(self, run_id: int, error: str) -> RunState:
        return self._set(run_id, last_error=error)


class Sender:
    def __init__(self, fail_after: int | None = None) -> None:
        self.sent: list[bytes | None] = []
        self.calls = 0
        self.fail_after = fail_after

    async def __call__(self, messages: Sequence[tuple[bytes | None, bytes]]) -> None:
        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            raise ConnectionError("broker gone")
        self.sent.extend(k for k, _ in messages)


async def no_sleep(seconds: float) -> None:
    return None


def run(
    service: FakeService,
    store: FakeStore,
    sender: Sender,
    params: Params | None = None,
    **kw: Any,
) -> Summary:
    runner = Backfill(
        params or Params(SINCE, UNTIL),
        cast(FdsnClient, service),
        cast(ProgressStore, store),
        sender,
        key_of=dedup_key,
        sleep=no_sleep,
        **kw,
    )
    return asyncio.run(runner.run())


def test_the_count_sizes_the_slices_below_the_limit() -> None:
    service, store, sender = FakeService(1000, 100), FakeStore(), Sender()
    summary = run(service, store, sender)
    assert summary.state.finished and summary.splits == 0
    assert all(n <= 100 for _, _, n in service.queries)
    assert len(sender.sent) == 1000 == len(set(sender.sent))
    assert summary.slices == summary.state.slices_done == len(service.queries)
    # the slices tile the range without a gap or an overlap
    bounds = [(s, u) for s, u, _ in service.queries]
    assert bounds[0][0] == SINCE and bounds[-1][1] == UNTIL
    assert all(a[1] == b[0] for a, b in itertools.pairwise(bounds))


def test_without_a_count_a_slice_too_large_is_halved() -> None:
    service, store, sender = (
        FakeService(1000, 300, count_ok=False),
        FakeStore(),
        Sender(),
    )
    summary = run(service, store, sender)
    assert summary.splits == 2  # 1000 -> 500 -> 250
    assert [n for _, _, n in service.queries[:3]] == [1000, 500, 250]
    assert len(set(sender.sent)) == 1000 and summary.state.events_expected is None


def test_features_the_fetcher_sent_at_that_updated_are_skipped() -> None:
    service, store, sender = FakeService(20, 100), FakeStore(), Sender()
    known = {e["id"]: e["properties"]["updated"] for e in service.events[:5]}
    known["ev5"] = service.events[5]["properties"]["updated"] - 1  # older: resent
    summary = run(service, store, sender, known=known)
    assert (summary.produced, summary.skipped) == (15, 5)
    assert b"ev5" in sender.sent and b"ev0" not in sender.sent


def test_a_feature_too_large_for_kafka_is_counted_not_sent() -> None:
    service, store, sender = FakeService(3, 100), FakeStore(), Sender()
    service.events[1]["properties"]["place"] = "x" * 5000
    summary = run(service, store, sender, max_value_bytes=4000)
    assert summary.oversized == 1 and sender.sent == [b"ev0", b"ev2"]
    assert summary.state.events_skipped == 1


def test_a_failed_send_keeps_the_slice_unfinished_and_the_run_resumes() -> None:
    service, store = FakeService(1000, 100), FakeStore()
    first = Sender(fail_after=3)
    with pytest.raises(ConnectionError):
        run(service, store, first, rate=200.0)  # chunks of 20 events
    state = next(iter(store.rows.values()))
    assert state.slices_done == 0 and state.done_until == SINCE
    assert state.last_error == "ConnectionError: broker gone"

    service.queries.clear()
    service2 = FakeService(1000, 100)
    service2.fail_at = 4  # the service fails on the fifth query
    with pytest.raises(SourceUnavailable):
        run(service2, store, Sender())
    stopped = next(iter(store.rows.values()))
    assert stopped.slices_done == 4 and stopped.done_until > SINCE

    resumed_sender = Sender()
    resumed = run(FakeService(1000, 100), store, resumed_sender)
    assert resumed.resumed_from == stopped.done_until
    assert resumed.state.finished and resumed.state.events_fetched == 1000
    assert resumed.state.slices_done == 4 + resumed.slices
    again = run(FakeService(1000, 100), store, Sender())
    assert again.already_finished and "already finished" in again.line()


def test_restart_runs_a_finished_range_again() -> None:
    store = FakeStore()
    run(FakeService(50, 100), store, Sender())
    sender = Sender()
    runner = Backfill(
        Params(SINCE, UNTIL),
        cast(FdsnClient, FakeService(50, 100)),
        cast(ProgressStore, store),
        sender,
        key_of=dedup_key,
        sleep=no_sleep,
    )
    summary = asyncio.run(runner.run(restart=True))
    assert summary.state.finished and len(sender.sent) == 50
    assert summary.state.events_produced == 50  # counted once, not twice


def test_progress_is_reported_with_an_estimate_and_a_rate() -> None:
    seen: list[Progress] = []
    ticks = iter(range(10_000))
    summary = run(
        FakeService(1000, 100),
        FakeStore(),
        Sender(),
        on_progress=seen.append,
        clock=lambda: float(next(ticks)),
        rate=1000.0,
    )
    assert seen[0].events_expected == 1000 and seen[0].slices_estimate == 13
    assert seen[-1].events_fetched == 1000 and seen[-1].produced == 1000
    assert seen[-1].eta == 0.0 and seen[-1].rate > 0
    assert all(a.produced <= b.produced for a, b in itertools.pairwise(seen))
    assert "1000 events fetched, 1000 produced, 0 skipped" in summary.line()
