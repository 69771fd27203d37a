"""Fixtures for end-to-end tests: real worker processes and a local feed server.

Helpers live in :mod:`tests.support` (``feeds``, ``workers``, ``ports``); this
module holds fixtures only.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.feeds import FeedServer
from tests.support.ports import free_port
from tests.support.workers import Worker


@pytest.fixture
def isolated_env() -> dict[str, str]:
    """Environment for a worker with its own app id, topics, schema and web port."""
    tag = uuid.uuid4().hex[:8]
    env = dict(os.environ)
    env.update(
        {
            "APP_ID": f"e2e-{tag}",
            "TOPIC_RAW": f"e2e-{tag}.raw",
            "TOPIC_CLEAN": f"e2e-{tag}.clean",
            "TOPIC_DEAD_LETTER": f"e2e-{tag}.dead-letter",
            "TOPIC_ACTIVITY": f"e2e-{tag}.activity",
            "TOPIC_ALERTS": f"e2e-{tag}.alerts",
            "POSTGRES_SCHEMA": f"e2e_{tag}",
            "WEB_PORT": str(free_port()),
            "FETCH_INTERVAL_SECONDS": "1",
            "SINK_BATCH_SECONDS": "0.2",
            "SOURCE_TIMEOUT_SECONDS": "5",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


@pytest.fixture
def feed() -> Iterator[FeedServer]:
    """A running local feed server (serves an empty FeatureCollection until told)."""
    with FeedServer() as server:
        yield server


@pytest.fixture
def start_worker(tmp_path: Path) -> Iterator[Callable[..., Worker]]:
    """Factory: start workers with a given env; every one is stopped at teardown."""
    workers: list[Worker] = []

    def start(env: dict[str, str], name: str = "worker") -> Worker:
        worker = Worker(env, tmp_path / f"{name}-{len(workers)}.log").start()
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        worker.stop()
