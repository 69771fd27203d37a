"""Unit tests of the timer that re-reads a message fetched but never acked."""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka.errors import IllegalStateError
from faust.types import TP

from agents.heal import drop_revoked, heal_holes, holes_to_heal

RAW0 = TP("raw", 0)
RAW1 = TP("raw", 1)


def test_holes_are_healed_only_after_the_grace_period() -> None:
    holes = {RAW0: (42, 100.0)}
    assert holes_to_heal(holes, now=105.0, grace=10.0) == []
    assert holes_to_heal(holes, now=110.5, grace=10.0) == [(RAW0, 42)]


def test_holes_of_revoked_partitions_are_forgotten() -> None:
    holes = {RAW0: (154, 1.0), RAW1: (7, 1.0)}
    assert drop_revoked(holes, {RAW1}) == [RAW0]
    assert holes == {RAW1: (7, 1.0)}


class FakeConsumer:
    def __init__(self, holes: dict[Any, tuple[int, float]], assigned: set[Any]) -> None:
        self.holes = holes
        self.assigned = assigned
        self.seeks: list[tuple[Any, int]] = []
        self.attempts: list[Any] = []
        self.revoke_on_seek = False

    def assignment(self) -> set[Any]:
        return set(self.assigned)

    async def seek(self, tp: Any, offset: int) -> None:
        self.attempts.append(tp)
        if self.revoke_on_seek or tp not in self.assigned:
            raise IllegalStateError(f"No current assignment for partition {tp}")
        self.seeks.append((tp, offset))


def run_timer(consumer: FakeConsumer) -> list[tuple[Any, int]]:
    return asyncio.run(heal_holes(consumer, now=100.0))


def test_the_timer_seeks_only_assigned_partitions() -> None:
    """The chaos rebalance scenario crashed the worker: a hole of a partition lost
    in the rebalance was sought (IllegalStateError in the timer stops faust)."""
    consumer = FakeConsumer({RAW0: (154, 0.0), RAW1: (7, 0.0)}, {RAW1})
    assert run_timer(consumer) == [(RAW1, 7)]
    assert consumer.attempts == [RAW1]  # RAW0 was lost in a rebalance: not sought
    assert consumer.holes == {}


def test_a_partition_revoked_during_the_seek_does_not_stop_the_worker() -> None:
    consumer = FakeConsumer({RAW1: (7, 0.0)}, {RAW1})
    consumer.revoke_on_seek = True
    assert run_timer(consumer) == []  # no exception
    assert consumer.seeks == [] and consumer.holes == {}


def test_young_holes_wait() -> None:
    consumer = FakeConsumer({RAW1: (7, 95.0)}, {RAW1})
    assert run_timer(consumer) == []
    assert consumer.holes == {RAW1: (7, 95.0)}
