"""Shared fixtures: settings, the real local stack, unique names, schemas, topics."""

from __future__ import annotations

import asyncio
import re
import threading
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

import psycopg2
import pytest
from psycopg2 import sql

from devstack import kafka_answers
from streamapp.kafka import aiokafka_kwargs
from streamapp.settings import Settings, load_settings

T = TypeVar("T")


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion from sync or async code (in its own thread)."""
    result: list[T] = []
    error: list[BaseException] = []

    def target() -> None:
        try:
            result.append(asyncio.run(coro))
        except BaseException as exc:
            error.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join()
    if error:
        raise error[0]
    return result[0]


@pytest.fixture(scope="session")
def settings() -> Settings:
    """The settings of this run (environment, then .env, then defaults)."""
    return load_settings()


def _stack_problems(settings: Settings) -> list[str]:
    problems: list[str] = []
    if not kafka_answers(settings.kafka_bootstrap_servers, timeout=10.0):
        problems.append(f"Kafka at {settings.kafka_bootstrap_servers} does not answer")
    try:
        psycopg2.connect(
            settings.database_url.get_secret_value(), connect_timeout=10
        ).close()
    except psycopg2.Error as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
        problems.append(f"PostgreSQL at {settings.database_url_redacted}: {first}")
    return problems


@pytest.fixture(scope="session")
def stack_ready(settings: Settings) -> Settings:
    """The real stack answers (Kafka metadata, a Postgres login), else FAIL: no skip."""
    problems = _stack_problems(settings)
    if problems:
        pytest.fail(
            "the local stack is not answering: "
            + "; ".join(problems)
            + " -- start it with `make up` (see `make status`)",
            pytrace=False,
        )
    return settings


@pytest.fixture
def unique_name(request: pytest.FixtureRequest) -> Callable[..., str]:
    """A factory of names unique to this test: ``t_<testname>_<uuid8>``.

    Lower case letters, digits and ``_`` only, at most 63 characters, so the name is
    valid as a Kafka topic, a consumer group, a Faust app id and a Postgres schema.
    """

    def make(prefix: str = "t") -> str:
        test = re.sub(r"[^a-z0-9]+", "_", request.node.name.lower()).strip("_")
        base = f"{prefix}_{test}"[:50].rstrip("_")
        return f"{base}_{uuid.uuid4().hex[:8]}"

    return make


@pytest.fixture
def pg_schema(stack_ready: Settings, unique_name: Callable[..., str]) -> Iterator[str]:
    """A fresh PostgreSQL schema (owned by the app user), dropped after the test."""
    schema = unique_name("s")
    dsn = stack_ready.database_url.get_secret_value()
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    conn.close()
    try:
        yield schema
    finally:
        conn = psycopg2.connect(dsn)
        try:
            with conn, conn.cursor() as cur:
                cur.execute(
                    sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
                        sql.Identifier(schema)
                    )
                )
        finally:
            conn.close()


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

    async def _create(self, name: str, partitions: int, wait_s: float) -> None:
        from aiokafka.admin import AIOKafkaAdminClient, NewTopic

        admin = AIOKafkaAdminClient(**self.kwargs)
        await admin.start()
        try:
            response = await admin.create_topics(
                [NewTopic(name, num_partitions=partitions, replication_factor=1)]
            )
            for topic_error in response.topic_errors:
                code = topic_error[1]
                if code not in (0, 36):  # 36: TOPIC_ALREADY_EXISTS
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
        finally:
            await admin.close()

    async def _delete(self, names: list[str]) -> None:
        from aiokafka.admin import AIOKafkaAdminClient

        admin = AIOKafkaAdminClient(**self.kwargs)
        await admin.start()
        try:
            await admin.delete_topics(names)
        finally:
            await admin.close()

    def create_topic(
        self, name: str, partitions: int = 4, timeout: float = 30.0
    ) -> str:
        """Create ``name`` and wait until every partition has a leader."""
        run_sync(self._create(name, partitions, timeout))
        self.created.append(name)
        return name

    def delete_topics(self, names: list[str]) -> None:
        if names:
            run_sync(self._delete(names))

    def cleanup(self) -> None:
        try:
            self.delete_topics(self.created)
        except Exception as exc:  # cleanup must not hide the test's own result
            print(f"kafka_admin: deleting {self.created} failed: {exc!r}")
        self.created.clear()


@pytest.fixture
def kafka_admin(stack_ready: Settings) -> Iterator[KafkaAdmin]:
    """Topic helper on the shared broker; topics it created are deleted afterwards."""
    admin = KafkaAdmin(stack_ready.kafka_bootstrap_servers, stack_ready)
    try:
        yield admin
    finally:
        admin.cleanup()
