"""The benchmark's shared plumbing that needs no Kafka: CPU per event, polling."""

from __future__ import annotations

from bench.common import cpu_us_per_event, poll_interval


def test_cpu_us_per_event() -> None:
    assert cpu_us_per_event({"cpu_seconds": 2.5}, 20_000) == 125.0
    assert cpu_us_per_event({}, 20_000) is None
    assert cpu_us_per_event({"cpu_seconds": 1.0}, 0) is None


def test_poll_interval_is_a_tenth_of_the_remaining_time() -> None:
    # 1,000 rows/s over the last second, 5,000 rows to go: 5 s left -> 0.5 s.
    assert poll_interval(5_000, (2.0, 2_000), (1.0, 1_000), (0.5, 500)) == 0.5
    assert poll_interval(10, (2.0, 2_000), (1.0, 1_000), None) == 0.02  # floor
    assert poll_interval(10**9, (2.0, 2_000), (1.0, 1_000), None) == 1.0  # ceiling
    assert poll_interval(5_000, (1.0, 0), (0.0, 0), None) == 0.5  # no rate yet


def test_poll_interval_survives_bursts() -> None:
    # A checkpoint a second: nothing since the last count, but 4,000 rows/s since
    # the first rows; 4,000 to go -> 1 s left -> 0.1 s, not the 0.5 s of no rate.
    assert poll_interval(4_000, (4.0, 12_000), (3.5, 12_000), (1.0, 0)) == 0.1
