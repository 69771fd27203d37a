"""streamapp.sinks.base: the batch is retried in place on transient errors, bisected
on permanent ones (a scripted fake database)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest

from streamapp.exceptions import PermanentSinkError, TransientSinkError
from streamapp.settings import Settings
from streamapp.sinks import (
    Item,
    Sink,
)
from streamapp.stats import stats

T0 = datetime(2024, 5, 31, 12, 0, tzinfo=UTC)


async def _no_sleep(_: float) -> None:
    await asyncio.sleep(0)


# ---------------------------------------------------------------- retry and bisect


@dataclass
class FakeSink(Sink):
    """A sink whose database is a list; failures are scripted."""

    settings: Settings
    transient_failures: int = 0
    bad: set[str] = field(default_factory=set)
    calls: list[list[str]] = field(default_factory=list)
    written: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        Sink.__init__(self, self.settings, sleep=_no_sleep)

    def write_batch(self, items: Sequence[Item]) -> None:
        ids = [str(item.row["id"]) for item in items]
        self.calls.append(ids)
        if self.transient_failures:
            self.transient_failures -= 1
            raise TransientSinkError("server closed the connection unexpectedly")
        refused = [i for i in ids if i in self.bad]
        if refused:
            raise PermanentSinkError(f"check constraint violated by {refused[0]}")
        self.written.extend(ids)


async def test_transient_errors_retry_the_same_batch_in_place(
    settings: Settings,
) -> None:
    sink = FakeSink(settings, transient_failures=2)
    before = stats.snapshot()["sink_retries"]
    for i in range(10):
        sink.add(Item({"id": f"e{i}"}))
    rejected = await sink.flush()
    assert rejected == []
    expected = [f"e{i}" for i in range(10)]
    assert sink.calls == [expected, expected, expected]  # same batch, three tries
    assert sink.written == expected  # nothing skipped, nothing twice
    assert stats.snapshot()["sink_retries"] - before == 2
    assert sink.retries == 2
    assert len(sink) == 0
    sink.close()


async def test_bisection_isolates_exactly_the_bad_rows(settings: Settings) -> None:
    ids = [f"e{i:03d}" for i in range(50)]
    bad = {"e007", "e031", "e032"}
    sink = FakeSink(settings, bad=bad)
    for i in ids:
        sink.add(Item({"id": i}, ref=f"event-{i}"))
    rejected = await sink.flush()
    assert sorted(r.item.row["id"] for r in rejected) == sorted(bad)
    assert all(r.item.ref == f"event-{r.item.row['id']}" for r in rejected)
    assert all("check constraint" in r.error for r in rejected)
    assert sorted(sink.written) == sorted(set(ids) - bad)
    assert len(sink.written) == len(set(sink.written))  # each good row once
    # 3 bad rows in 50: far fewer round trips than row by row
    assert len(sink.calls) < 40
    sink.close()


async def test_bisection_retries_transient_errors_of_a_half(settings: Settings) -> None:
    sink = FakeSink(settings, bad={"e3"})
    for i in range(8):
        sink.add(Item({"id": f"e{i}"}))
    original = sink.write_batch
    state = {"failed": False}

    def flaky(items: Sequence[Item]) -> None:
        if len(items) == 4 and not state["failed"]:
            state["failed"] = True
            raise TransientSinkError("terminating connection due to administrator")
        original(items)

    sink.write_batch = flaky  # type: ignore[method-assign]
    rejected = await sink.flush()
    assert [r.item.row["id"] for r in rejected] == ["e3"]
    assert sorted(sink.written) == [f"e{i}" for i in range(8) if i != 3]
    sink.close()


async def test_all_rows_bad(settings: Settings) -> None:
    sink = FakeSink(settings, bad={"a", "b", "c"})
    for i in "abc":
        sink.add(Item({"id": i}))
    rejected = await sink.flush()
    assert sorted(r.item.row["id"] for r in rejected) == ["a", "b", "c"]
    assert sink.written == []
    sink.close()


async def test_cancelled_flush_clears_the_buffer_and_propagates(
    settings: Settings,
) -> None:
    sink = FakeSink(settings, transient_failures=10**9)
    # real sleeps, so the task can be cancelled in one
    sink._sleep = asyncio.sleep  # noqa: SLF001 - the test's own fake sink
    sink.min_backoff = 5.0
    sink.add(Item({"id": "x"}))
    task = asyncio.ensure_future(sink.flush())
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(sink) == 0
    assert sink.written == []
    sink.close()


async def test_empty_flush_touches_nothing(settings: Settings) -> None:
    sink = FakeSink(settings)
    assert await sink.flush() == []
    assert sink.calls == []
    sink.close()


async def test_write_batch_runs_off_the_event_loop(settings: Settings) -> None:

    seen: list[str] = []

    class Probe(FakeSink):
        def write_batch(self, items: Sequence[Item]) -> None:
            seen.append(threading.current_thread().name)

    sink = Probe(settings)
    sink.add(Item({"id": "x"}))
    await sink.flush()
    assert seen and seen[0] != threading.current_thread().name
    assert seen[0].startswith("sink-db")
    sink.close()
