"""Topics on a real broker: create (and wait for leaders), delete, from any test."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from streamapp.kafka import aiokafka_kwargs
from streamapp.settings import Settings
from tests.support.aio import run_sync

__all__ = ["KafkaAdmin", "ensure_topic", "with_admin"]

T = TypeVar("T")

#: Kafka's TOPIC_ALREADY_EXISTS error code: creating an existing topic is fine.
_TOPIC_ALREADY_EXISTS = 36


async def with_admin(kwargs: dict[str, Any], fn: Callable[[Any], Awaitable[T]]) -> T:
    """Start an ``AIOKafkaAdminClient(**kwargs)``, await ``fn(admin)``, close it."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(**kwargs)
    await admin.start()
    try:
        return await fn(admin)
    finally:
        await admin.close()


async def ensure_topic(
    admin: Any,
    name: str,
    partitions: int,
    *,
    config: dict[str, str] | None = None,
    wait_s: float = 30.0,
) -> None:
    """Create ``name`` (or find it) and wait until every partition has a leader."""
    from aiokafka.admin import NewTopic

    topic = NewTopic(
        name, num_partitions=partitions, replication_factor=1, topic_configs=config
    )
    response = await admin.create_topics([topic])
    for topic_error in response.topic_errors:
        if topic_error[1] not in (0, _TOPIC_ALREADY_EXISTS):
            raise RuntimeError(f"creating topic {name!r} failed: {topic_error}")
    deadline = time.monotonic() + wait_s
    while True:
        described = await admin.describe_topics([name])
        parts = described[0].get("partitions", []) if described else []
        if len(parts) == partitions and all(p["leader"] >= 0 for p in parts):
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"topic {name!r} has no leaders after {wait_s}s")
        await asyncio.sleep(0.1)


class KafkaAdmin:
    """Create (and later delete) topics on a real broker, from sync or async tests."""

    def __init__(
        self, bootstrap_servers: str, settings: Settings | None = None
    ) -> None:
        self.kwargs: dict[str, Any] = (
            aiokafka_kwargs(settings) if settings is not None else {}
        )
        self.kwargs["bootstrap_servers"] = bootstrap_servers
        self.created: list[str] = []

    def create_topic(
        self, name: str, partitions: int = 4, timeout: float = 30.0
    ) -> str:
        """Create ``name`` and wait until every partition has a leader."""

        async def create(admin: Any) -> None:
            await ensure_topic(admin, name, partitions, wait_s=timeout)

        run_sync(with_admin(self.kwargs, create))
        self.created.append(name)
        return name

    def delete_topics(self, names: list[str]) -> None:
        """Delete ``names`` (nothing to do for an empty list)."""

        async def delete(admin: Any) -> None:
            await admin.delete_topics(names)

        if names:
            run_sync(with_admin(self.kwargs, delete))

    def cleanup(self) -> None:
        """Delete every topic this admin created; a failure is printed, not raised."""
        try:
            self.delete_topics(self.created)
        except Exception as exc:  # cleanup must not hide the test's own result
            print(f"kafka_admin: deleting {self.created} failed: {exc!r}")
        self.created.clear()
