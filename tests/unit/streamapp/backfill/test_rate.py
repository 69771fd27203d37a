"""The token bucket: bursts, debt paid back at the rate, no drift."""

from __future__ import annotations

import asyncio

import pytest

from streamapp.backfill.rate import TokenBucket


class Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_a_full_bucket_gives_its_burst_then_paces_at_the_rate() -> None:
    clock = Clock()
    bucket = TokenBucket(10.0, 5.0, clock=clock, sleep=clock.sleep)

    async def take(n: int) -> None:
        for _ in range(n):
            await bucket.acquire()

    asyncio.run(take(25))
    assert clock.slept[:1] == [pytest.approx(0.1)]
    assert len(clock.slept) == 20  # the first five were the burst
    assert clock.now == pytest.approx(2.0)  # 20 tokens at 10/s


def test_a_request_larger_than_the_burst_is_paid_at_the_rate() -> None:
    clock = Clock()
    bucket = TokenBucket(100.0, 10.0, clock=clock, sleep=clock.sleep)
    asyncio.run(bucket.acquire(60))
    assert clock.now == pytest.approx(0.5)  # 60 - 10 in the bucket, at 100/s
    clock.now += 1.0  # idle time refills up to the burst only
    asyncio.run(bucket.acquire(10))
    assert clock.now == pytest.approx(1.5)


def test_the_rate_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        TokenBucket(0.0)
