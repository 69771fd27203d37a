"""Unit tests of ``streamapp.overlap.InFlight`` (one background stage, in order)."""

from __future__ import annotations

import asyncio

import pytest

from streamapp.overlap import InFlight


async def test_stages_run_one_at_a_time_in_submission_order() -> None:
    log: list[str] = []
    running = 0
    most = 0

    async def stage(name: str, delay: float) -> None:
        nonlocal running, most
        running += 1
        most = max(most, running)
        log.append(f"start {name}")
        await asyncio.sleep(delay)
        log.append(f"end {name}")
        running -= 1

    async with InFlight() as in_flight:
        await in_flight.submit(stage("a", 0.03))
        log.append("prepared b")  # the caller works while "a" runs
        await in_flight.submit(stage("b", 0.0))
        await in_flight.submit(stage("c", 0.01))
    assert most == 1
    assert log == [
        "prepared b",
        "start a",
        "end a",
        "start b",
        "end b",
        "start c",
        "end c",
    ]


async def test_the_caller_overlaps_with_the_running_stage() -> None:
    started = asyncio.Event()
    release = asyncio.Event()

    async def stage() -> None:
        started.set()
        await release.wait()

    in_flight = InFlight()
    await in_flight.submit(stage())
    await started.wait()
    assert in_flight.busy  # submit returned while the stage still runs
    release.set()
    await in_flight.drain()
    assert not in_flight.busy


async def test_a_failed_stage_is_raised_by_the_next_submit_which_never_runs() -> None:
    ran: list[str] = []

    async def boom() -> None:
        raise RuntimeError("broker gone")

    async def after() -> None:
        ran.append("after")

    in_flight = InFlight()
    await in_flight.submit(boom())
    with pytest.raises(RuntimeError, match="broker gone"):
        await in_flight.submit(after())
    await asyncio.sleep(0)
    assert ran == []
    assert not in_flight.busy


async def test_a_failed_last_stage_is_raised_when_the_block_ends() -> None:
    async def boom() -> None:
        raise ValueError("constraint")

    with pytest.raises(ValueError, match="constraint"):
        async with InFlight() as in_flight:
            await in_flight.submit(boom())


async def test_leaving_with_an_error_cancels_the_running_stage() -> None:
    finished: list[bool] = []
    cancelled = asyncio.Event()

    async def slow() -> None:
        try:
            await asyncio.sleep(10)
            finished.append(True)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    with pytest.raises(KeyError):
        async with InFlight() as in_flight:
            await in_flight.submit(slow())
            await asyncio.sleep(0)
            raise KeyError("agent failed")
    assert cancelled.is_set()
    assert finished == []
    assert not in_flight.busy


async def test_cancelling_the_caller_cancels_the_stage() -> None:
    stage_cancelled = asyncio.Event()

    async def slow() -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            stage_cancelled.set()
            raise

    async def agent() -> None:
        async with InFlight() as in_flight:
            await in_flight.submit(slow())
            await asyncio.sleep(10)

    task = asyncio.ensure_future(agent())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert stage_cancelled.is_set()
