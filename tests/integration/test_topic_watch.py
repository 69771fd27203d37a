"""A topic still being created when the group formed is assigned once it exists."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient

from streamapp.faust_ext import missing_topics, refresh_missing_topics
from streamapp.kafka import aiokafka_kwargs
from streamapp.settings import Settings
from tests.support.aio import run_sync
from tests.support.kafka import KafkaAdmin

pytestmark = pytest.mark.integration


def assigned_topics(consumer: AIOKafkaConsumer) -> set[str]:
    return {tp.topic for tp in consumer.assignment()}


async def has_leaders(settings: Settings, topic: str) -> bool:
    admin = AIOKafkaAdminClient(**aiokafka_kwargs(settings))
    await admin.start()
    try:
        described = await admin.describe_topics([topic])
    finally:
        await admin.close()
    parts = described[0].get("partitions", []) if described else []
    return bool(parts) and all(p["leader"] >= 0 for p in parts)


async def wait_until(check: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        await asyncio.sleep(0.2)
    return check()


async def late_topic_scenario(
    settings: Settings, existing: str, late: str, group: str
) -> dict[str, object]:
    """Subscribe to ``existing`` and to ``late``, which the broker auto-creates.

    The broker answers the metadata request that auto-creates ``late`` with
    LEADER_NOT_AVAILABLE: the same state as a topic another worker is creating
    while this one joins. aiokafka keeps it out of the metadata, so the group is
    formed without it.
    """
    seen: dict[str, object] = {}
    consumer = AIOKafkaConsumer(
        **aiokafka_kwargs(settings), group_id=group, metadata_max_age_ms=300_000
    )
    await consumer.start()
    try:
        consumer.subscribe([existing, late])
        assert await wait_until(lambda: bool(consumer.assignment()), 60), "no join"
        seen["assigned_at_join"] = assigned_topics(consumer)
        seen["missing_at_join"] = missing_topics(consumer)
        # Baseline: the topic now exists with leaders, yet aiokafka does not see
        # it and nothing is rebalanced (it would wait for metadata_max_age_ms).
        leaders = False
        deadline = time.monotonic() + 30
        while not leaders and time.monotonic() < deadline:
            leaders = await has_leaders(settings, late)
            await asyncio.sleep(0.2)
        seen["late_has_leaders"] = leaders
        await asyncio.sleep(3)
        seen["assigned_without_refresh"] = assigned_topics(consumer)
        # The watch: refresh while something is missing; the group rebalances.
        started = time.monotonic()
        refreshed: set[str] = set()
        while time.monotonic() - started < 30 and late not in assigned_topics(consumer):
            refreshed |= await refresh_missing_topics(consumer)
            await asyncio.sleep(0.5)
        seen["refreshed"] = refreshed
        seen["assigned_after_refresh"] = assigned_topics(consumer)
        seen["seconds_to_assign"] = time.monotonic() - started
        seen["missing_after"] = missing_topics(consumer)
    finally:
        await consumer.stop()
    return seen


def test_a_topic_missing_at_join_is_assigned_after_refresh(
    stack_ready: Settings,
    kafka_admin: KafkaAdmin,
    unique_name: Callable[..., str],
) -> None:
    existing = kafka_admin.create_topic(unique_name("existing"), partitions=2)
    late = unique_name("late")
    kafka_admin.created.append(late)  # auto-created below; deleted at teardown
    seen = run_sync(
        late_topic_scenario(stack_ready, existing, late, f"watch-{uuid.uuid4().hex}")
    )
    print(f"\n[topic-watch] {seen}")
    # The failure this guards against, reproduced on the real broker.
    assert seen["assigned_at_join"] == {existing}
    assert seen["missing_at_join"] == {late}
    assert seen["late_has_leaders"] is True
    assert seen["assigned_without_refresh"] == {existing}
    # The fix: one refresh finds the topic and the group assigns it.
    assert seen["refreshed"] == {late}
    assert seen["assigned_after_refresh"] == {existing, late}
    assert seen["missing_after"] == set()
