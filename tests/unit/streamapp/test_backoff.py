"""streamapp.backoff: capped exponential delays with equal or full jitter."""

from __future__ import annotations

import pytest

from streamapp.backoff import backoff_delay


def test_backoff_is_capped_and_grows() -> None:
    # the sinks' policy: from 0.5 s, capped at 10 s, equal jitter (50-100 %)
    assert 0.25 <= backoff_delay(1) <= 0.5
    assert 0.5 <= backoff_delay(2) <= 1.0
    assert all(5.0 <= backoff_delay(n) <= 10.0 for n in (6, 10, 100, 10_000))


def test_backoff_is_exponential_with_full_jitter() -> None:
    # the USGS source's policy: from 1 s, capped at 30 s, full jitter (0-100 %)
    def full(attempt: int, rand: float) -> float:
        return backoff_delay(attempt, 1.0, 30.0, jitter=1.0, rand=lambda: rand)

    assert full(1, 0.999) < 1.0
    assert full(4, 1.0) == 8.0
    assert full(11, 1.0) == 30.0
    assert full(11, 0.0) == 0.0


def test_equal_jitter_bounds() -> None:
    assert backoff_delay(3, 1.0, 30.0, rand=lambda: 0.0) == 2.0
    assert backoff_delay(3, 1.0, 30.0, rand=lambda: 1.0) == 4.0
    assert backoff_delay(0, 1.0, 30.0, rand=lambda: 1.0) == 1.0  # no shorter step


def test_jitter_outside_zero_to_one_is_refused() -> None:
    with pytest.raises(ValueError, match="jitter"):
        backoff_delay(1, jitter=1.5)
