"""A token bucket: the one pacing of the backfill (requests and produced events).

Usage::

    bucket = TokenBucket(rate=500.0, burst=50.0)
    await bucket.acquire(50)   # returns at once, or sleeps until 50 tokens are due
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

__all__ = ["TokenBucket"]


class TokenBucket:
    """At most ``rate`` tokens per second on average, at most ``burst`` at once.

    The bucket starts full. :meth:`acquire` takes ``n`` tokens; when the bucket
    holds fewer it goes into debt and sleeps until the debt is paid back, so a
    request larger than ``burst`` is allowed but paid for at ``rate``.
    """

    def __init__(
        self,
        rate: float,
        burst: float = 1.0,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError(f"rate={rate} must be positive")
        self.rate = float(rate)
        self.burst = max(1.0, float(burst))
        self._clock = clock
        self._sleep = sleep
        self._tokens = self.burst
        self._last = clock()
        self._lock = asyncio.Lock()

    async def acquire(self, n: float = 1.0) -> float:
        """Take ``n`` tokens; the seconds slept for them."""
        async with self._lock:
            now = self._clock()
            self._tokens = min(
                self.burst, self._tokens + (now - self._last) * self.rate
            )
            self._last = now
            self._tokens -= n
            if self._tokens >= 0:
                return 0.0
            wait = -self._tokens / self.rate
            await self._sleep(wait)
            return wait
