"""The one retry backoff of streamapp: capped exponential delays with jitter.

Every retry loop (the PostgreSQL sinks, the USGS source, waits for a service)
asks :func:`backoff_delay` how long to sleep before its next attempt::

    delay = backoff_delay(attempt, initial=1.0, maximum=30.0, jitter=1.0)
"""

from __future__ import annotations

import random
from collections.abc import Callable

__all__ = ["backoff_delay"]


def backoff_delay(
    attempt: int,
    initial: float = 0.5,
    maximum: float = 10.0,
    *,
    jitter: float = 0.5,
    rand: Callable[[], float] = random.random,
) -> float:
    """Seconds to wait before retry ``attempt`` (1 for the first retry, 2, ...).

    The delay doubles from ``initial`` and is capped at ``maximum``; then a random
    share of it, at most ``jitter`` (0 to 1), is taken off so workers do not retry
    in step: the result lies in ``[(1 - jitter) * d, d]``. ``jitter=0.5`` (the
    default, "equal jitter") keeps at least half the delay; ``jitter=1.0`` ("full
    jitter") spreads it over ``[0, d]``. ``rand`` returns a number in ``[0, 1]``.
    """
    if not 0.0 <= jitter <= 1.0:
        raise ValueError(f"jitter={jitter} must be between 0 and 1")
    exponent = min(max(attempt - 1, 0), 64)
    delay = min(maximum, initial * (2.0**exponent))
    return delay * (1.0 - jitter + jitter * rand())
