"""Shared fixtures: settings, the real local stack, unique names, schemas, topics.

Helpers live in :mod:`tests.support`; this module holds fixtures only.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator

import pytest

from streamapp.settings import Settings, load_settings
from tests.support.kafka import KafkaAdmin
from tests.support.stack import create_schema, drop_schema, stack_problems


@pytest.fixture(scope="session")
def settings() -> Settings:
    """The settings of this run (environment, then .env, then defaults)."""
    return load_settings()


@pytest.fixture(scope="session")
def stack_ready(settings: Settings) -> Settings:
    """The real stack answers (Kafka metadata, a Postgres login), else FAIL: no skip."""
    problems = stack_problems(settings)
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
    create_schema(dsn, schema)
    try:
        yield schema
    finally:
        drop_schema(dsn, schema)


@pytest.fixture
def kafka_admin(stack_ready: Settings) -> Iterator[KafkaAdmin]:
    """Topic helper on the shared broker; topics it created are deleted afterwards."""
    admin = KafkaAdmin(stack_ready.kafka_bootstrap_servers, stack_ready)
    try:
        yield admin
    finally:
        admin.cleanup()
