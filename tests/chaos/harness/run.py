"""One scenario's isolated run: namespace, workers, waiting, settling, teardown."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import psycopg2

from streamapp.settings import Settings, load_settings
from tests.chaos.harness.data import ChaosData, expected_totals
from tests.chaos.harness.db import Db
from tests.chaos.harness.figures import Figures
from tests.chaos.harness.kafka import (
    create_topic,
    delete_topics_with_prefix,
    read_topic,
)
from tests.chaos.harness.progress import Progress
from tests.chaos.harness.reconcile import reconcile
from tests.support.feeds import FeedServer
from tests.support.ports import free_port
from tests.support.workers import Worker

__all__ = ["ChaosRun", "Target", "settle"]


@dataclass
class Target:
    """A stack the scenarios run on: the environment its workers get, and the
    settings the test's own clients use."""

    name: str
    env: dict[str, str]

    def settings(self, overrides: dict[str, str] | None = None) -> Settings:
        """The settings of this stack's environment plus ``overrides`` (no .env)."""
        return load_settings({**self.env, **(overrides or {})}, env_file=None)


class ChaosRun:
    """One scenario's isolated namespace: app id, topics, schema, workers, feed."""

    def __init__(self, target: Target, tmp_path: Path, scenario: str) -> None:
        self.target = target
        self.tmp_path = tmp_path
        self.tag = f"chaos-{scenario}-{uuid.uuid4().hex[:6]}"
        schema = self.tag.replace("-", "_")
        self.feed = FeedServer().__enter__()
        self.overrides = {
            "APP_ID": self.tag,
            "TOPIC_RAW": f"{self.tag}.raw",
            "TOPIC_CLEAN": f"{self.tag}.clean",
            "TOPIC_DEAD_LETTER": f"{self.tag}.dead-letter",
            "TOPIC_ACTIVITY": f"{self.tag}.activity",
            "TOPIC_ALERTS": f"{self.tag}.alerts",
            "POSTGRES_SCHEMA": schema,
            "SOURCE": "usgs",
            "SOURCE_URL": self.feed.url,
            "FETCH_INTERVAL_SECONDS": "30",
            "SINK_BATCH_SECONDS": "0.2",
            "PYTHONUNBUFFERED": "1",
        }
        self.settings = target.settings(self.overrides)
        self.db = Db(self.settings)
        self.workers: list[Worker] = []
        self.progress: Progress | None = None
        self.started = time.monotonic()

    # -------------------------------------------------------------- setup
    def create_raw_topic(self, config: dict[str, str] | None = None) -> None:
        """Create the run's raw topic (the settings' partitions, ``config``)."""
        create_topic(
            self.settings,
            self.settings.topic_raw,
            self.settings.topic_partitions,
            config,
        )

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        """A worker's environment: the run's names, a free web port, ``extra``."""
        env = {**self.target.env, **self.overrides, "WEB_PORT": str(free_port())}
        env.update(extra or {})
        return env

    def start_worker(
        self, name: str = "worker", extra: dict[str, str] | None = None
    ) -> Worker:
        """Start a worker of this run (log ``<name>-<n>.log``); stopped at close."""
        worker = Worker(
            self.env(extra), self.tmp_path / f"{name}-{len(self.workers)}.log"
        ).start()
        self.workers.append(worker)
        return worker

    def restart(self, worker: Worker) -> Worker:
        """A new process with the same environment (web port included)."""
        fresh = Worker(
            worker.env, self.tmp_path / f"restart-{len(self.workers)}.log"
        ).start()
        self.workers.append(fresh)
        return fresh

    def watch(self) -> Progress:
        """Start sampling the run's schema (halted at close)."""
        self.progress = Progress(self.db, self.settings.topic_raw)
        self.progress.start()
        return self.progress

    # -------------------------------------------------------------- waiting
    def wait_drained(
        self,
        expected_rows: int,
        checksum: int,
        expected_letters: int,
        timeout: float,
        alive: Sequence[Worker] = (),
    ) -> float | None:
        """Wait until the tables hold exactly what is expected; seconds, or None."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            for w in alive:
                w.assert_alive()
            try:
                if self.db.counts(self.settings.topic_raw) == (
                    expected_rows,
                    checksum,
                    expected_letters,
                ):
                    return time.monotonic() - t0
            except psycopg2.OperationalError:
                pass
            time.sleep(0.5)
        return None

    def logs(self) -> str:
        """Every worker log of this run, concatenated."""
        out = []
        for w in self.workers:
            with contextlib.suppress(FileNotFoundError):
                out.append(w.log_path.read_text(encoding="utf-8", errors="replace"))
        return "\n".join(out)

    # -------------------------------------------------------------- teardown
    def close(self) -> None:
        """Stop everything; delete the topics, schema and Faust data (CHAOS_KEEP=1
        keeps the topics and the schema)."""
        if self.progress is not None:
            self.progress.halt()
        for w in self.workers:
            w.stop()
        self.feed.__exit__(None, None, None)
        if os.environ.get("CHAOS_KEEP", "").strip() == "1":
            print(f"chaos: CHAOS_KEEP=1: kept topics {self.tag}* and the schema")
            return
        try:
            delete_topics_with_prefix(self.settings, self.tag)
        except Exception as exc:  # cleanup must not hide the result
            print(f"chaos: deleting topics {self.tag}*: {exc!r}")
        try:
            self.db.drop()
        except psycopg2.Error as exc:
            print(f"chaos: dropping schema {self.db.schema}: {exc!r}")
        # Faust data dirs of every app id of this run (``<tag>``, ``<tag>-...``).
        for folder in (Path(tempfile.gettempdir()) / "streamapp-faust").glob(
            f"{self.tag}*"
        ):
            shutil.rmtree(folder, ignore_errors=True)


def settle(
    run: ChaosRun,
    data: ChaosData,
    figures: Figures,
    *,
    alive: Sequence[Worker],
    timeout: float,
) -> Figures:
    """Wait until the tables hold what the raw topic implies, then reconcile."""
    raw_values = [r.value for r in read_topic(run.settings, run.settings.topic_raw)]
    want = expected_totals(data, raw_values)
    took = run.wait_drained(*want, timeout=timeout, alive=alive)
    if took is None:
        have = run.db.counts(run.settings.topic_raw)
        figures.problems.append(
            f"not drained within {timeout:.0f} s: (rows, updated checksum, dead "
            f"letters) = {have}, expected {want}"
        )
    else:
        figures.notes.append(f"tables complete {took:.1f} s after the last send")
    reconcile(
        figures,
        run.settings,
        run.db,
        data.classify,
        [m.value for m in data.messages],
    )
    figures.seconds = time.monotonic() - run.started
    return figures
