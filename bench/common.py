"""Shared plumbing of the benchmark: settings, topics, schemas, processes, polling."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import platform
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import psycopg2

from streamapp.faust_ext import fetch_cluster
from streamapp.kafka import aiokafka_kwargs
from streamapp.settings import Settings, load_settings

__all__ = [
    "ROOT",
    "Counts",
    "ProcessMonitor",
    "Run",
    "base_settings",
    "count_rows",
    "cpu_us_per_event",
    "create_topics",
    "delete_topics",
    "drop_schema",
    "free_port",
    "machine",
    "pg_connect",
    "poll_interval",
    "prepare_schema",
    "wait_for_rows",
]

ROOT = Path(__file__).resolve().parent.parent
#: The events table and dead-letter table every contender writes.
EVENTS_TABLE = "earthquakes"
DEAD_LETTER_TABLE = "dead_letters"


def base_settings() -> Settings:
    """The settings of this checkout (``.env`` and the environment), as the app has."""
    return load_settings(env_file=str(ROOT / ".env"))


@dataclass(frozen=True)
class Run:
    """Names of one contender's fresh topic set, consumer group and Postgres schema."""

    label: str
    token: str = field(default_factory=lambda: uuid.uuid4().hex[:8])

    @property
    def prefix(self) -> str:
        return f"bench-{self.label}-{self.token}"

    @property
    def raw(self) -> str:
        return f"{self.prefix}.raw"

    @property
    def clean(self) -> str:
        return f"{self.prefix}.clean"

    @property
    def dead_letter(self) -> str:
        return f"{self.prefix}.dead-letter"

    @property
    def topics(self) -> list[str]:
        return [self.raw, self.clean, self.dead_letter]

    @property
    def group(self) -> str:
        return self.prefix

    @property
    def schema(self) -> str:
        return f"bench_{self.label}_{self.token}".replace("-", "_")

    def settings(self, base: Settings, **changes: Any) -> Settings:
        """``base`` pointed at this run's topics and schema."""
        return dataclasses.replace(
            base,
            app_id=self.prefix,
            topic_raw=self.raw,
            topic_clean=self.clean,
            topic_dead_letter=self.dead_letter,
            topic_activity=f"{self.prefix}.activity",
            topic_alerts=f"{self.prefix}.alerts",
            postgres_schema=self.schema,
            **changes,
        )


# --------------------------------------------------------------------------- Kafka
async def _admin(settings: Settings) -> Any:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(**aiokafka_kwargs(settings))
    await admin.start()
    return admin


async def create_topics(
    settings: Settings, names: Sequence[str], partitions: int
) -> None:
    """Create fresh topics (and wait until their metadata is visible)."""
    from aiokafka.admin import NewTopic

    admin = await _admin(settings)
    try:
        await admin.create_topics(
            [
                NewTopic(n, num_partitions=partitions, replication_factor=1)
                for n in names
            ]
        )
    finally:
        await admin.close()
    await asyncio.sleep(0.5)


async def delete_topics(settings: Settings, names: Sequence[str]) -> None:
    """Delete topics whose names start with ``bench-`` (never anything else)."""
    names = [n for n in names if n.startswith("bench-")]
    if not names:
        return
    admin = await _admin(settings)
    try:
        existing = set(await admin.list_topics())
        doomed = [n for n in names if n in existing]
        if doomed:
            await admin.delete_topics(doomed)
    finally:
        await admin.close()


async def delete_groups(settings: Settings, prefix: str) -> None:
    """Delete the consumer groups whose names start with ``prefix`` (``bench-*``)."""
    if not prefix.startswith("bench-"):
        raise ValueError(f"refusing to delete groups named {prefix}*")
    admin = await _admin(settings)
    try:
        with contextlib.suppress(Exception):
            listed = await admin.list_consumer_groups()
            groups = [g[0] for g in listed if str(g[0]).startswith(prefix)]
            if groups:
                await admin.delete_consumer_groups(groups)
    finally:
        await admin.close()


async def wait_group_stable(
    settings: Settings, group: str, members: int, patience: float
) -> float:
    """Wait until consumer group ``group`` is Stable with ``members`` members.

    Returns the seconds it took; raises ``TimeoutError`` after ``patience`` s.
    """
    admin = await _admin(settings)
    started = time.monotonic()
    try:
        while True:
            with contextlib.suppress(Exception):
                responses = await admin.describe_consumer_groups([group])
                for response in responses:
                    for described in response.groups:
                        # (error, group, state, protocol type, protocol, members, ..)
                        state, joined = described[2], described[5]
                        if state == "Stable" and len(joined) == members:
                            return time.monotonic() - started
            if time.monotonic() - started > patience:
                raise TimeoutError(f"group {group} not Stable with {members} members")
            await asyncio.sleep(0.25)
    finally:
        await admin.close()


async def topic_partitions(consumer: Any, topic: str) -> list[Any]:
    """The partitions of ``topic`` as ``TopicPartition`` (fresh metadata)."""
    from aiokafka import TopicPartition

    cluster = await fetch_cluster(consumer)
    return [
        TopicPartition(topic, p)
        for p in sorted(cluster.partitions_for_topic(topic) or ())
    ]


async def first_record_time(settings: Settings, topics: Sequence[str]) -> float | None:
    """The smallest timestamp (epoch seconds) of the first records of ``topics``."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(**aiokafka_kwargs(settings), enable_auto_commit=False)
    await consumer.start()
    try:
        parts = [tp for t in topics for tp in await topic_partitions(consumer, t)]
        consumer.assign(parts)
        ends = await consumer.end_offsets(parts)
        want = {tp for tp in parts if ends.get(tp, 0) > 0}
        for tp in parts:
            consumer.seek(tp, 0)
        best: float | None = None
        deadline = time.monotonic() + 30
        while want and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500, max_records=100)
            for tp, records in batch.items():
                if tp in want and records:
                    want.discard(tp)
                    ts = records[0].timestamp / 1000.0
                    best = ts if best is None else min(best, ts)
                    consumer.pause(tp)
        return best
    finally:
        await consumer.stop()


async def record_time_span(
    settings: Settings, topics: Sequence[str]
) -> tuple[float | None, float | None]:
    """Timestamps (epoch s) of the earliest first and the latest last record."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(**aiokafka_kwargs(settings), enable_auto_commit=False)
    await consumer.start()
    try:
        parts = [tp for t in topics for tp in await topic_partitions(consumer, t)]
        consumer.assign(parts)
        ends = await consumer.end_offsets(parts)
        lasts: list[float] = []
        for tp in parts:
            if ends.get(tp, 0) > 0:
                consumer.seek(tp, ends[tp] - 1)
        want = {tp for tp in parts if ends.get(tp, 0) > 0}
        deadline = time.monotonic() + 30
        while want and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for tp, records in batch.items():
                if tp in want and records:
                    want.discard(tp)
                    lasts.append(records[-1].timestamp / 1000.0)
    finally:
        await consumer.stop()
    first = await first_record_time(settings, topics)
    return first, (max(lasts) if lasts else None)


async def delete_prefixed_topics(settings: Settings, prefix: str) -> list[str]:
    """Delete every topic whose name starts with ``prefix`` (a ``bench-`` prefix)."""
    if not prefix.startswith("bench-"):
        raise ValueError(f"refusing to delete topics named {prefix}*")
    admin = await _admin(settings)
    try:
        doomed = [t for t in await admin.list_topics() if t.startswith(prefix)]
        if doomed:
            await admin.delete_topics(doomed)
    finally:
        await admin.close()
    return doomed


# ------------------------------------------------------------------------ Postgres
def pg_connect(settings: Settings, **kwargs: Any) -> Any:
    """A psycopg2 connection to the benchmark database (search_path = the schema)."""
    schema = settings.postgres_schema
    return psycopg2.connect(
        settings.database_url.get_secret_value(),
        options=f"-c search_path={schema},public",
        **kwargs,
    )


def prepare_schema(settings: Settings) -> None:
    """Create the run's schema and apply the project's migrations inside it."""
    schema = settings.postgres_schema
    if not schema.startswith("bench_"):
        raise ValueError(f"refusing to prepare schema {schema!r}")
    from streamapp import db

    db.migrate(settings)
    with contextlib.closing(pg_connect(settings)) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT count(*) FROM information_schema.tables "
            "WHERE table_schema = %s AND table_name IN (%s, %s)",
            (schema, EVENTS_TABLE, DEAD_LETTER_TABLE),
        )
        (found,) = cur.fetchone()
    if found != 2:
        raise RuntimeError(
            f"migrate() left {found} of the tables {EVENTS_TABLE}, {DEAD_LETTER_TABLE}"
            f" in schema {schema}"
        )


def drop_schema(settings: Settings) -> None:
    """Drop a ``bench_*`` schema and everything in it."""
    schema = settings.postgres_schema
    if not schema.startswith("bench_"):
        raise ValueError(f"refusing to drop schema {schema!r}")
    with contextlib.closing(pg_connect(settings)) as conn, conn.cursor() as cur:
        cur.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        conn.commit()


@dataclass(frozen=True)
class Counts:
    events: int
    dead_letters: int


def count_rows(cur: Any, schema: str) -> Counts:
    cur.execute(
        f'SELECT (SELECT count(*) FROM "{schema}".{EVENTS_TABLE}),'
        f' (SELECT count(*) FROM "{schema}".{DEAD_LETTER_TABLE})'
    )
    events, dead = cur.fetchone()
    return Counts(events, dead)


def wait_for_rows(
    settings: Settings,
    *,
    events: int,
    dead_letters: int,
    timeout: float,
    alive: Any = None,
    progress: Any = None,
    lag_checksum_ms: int | None = None,
) -> tuple[float, Counts]:
    """Poll the tables until they hold the expected rows; return (epoch time, counts).

    The poll interval adapts: ~1/10 of the estimated remaining time, between 20 ms
    and 1 s, so the end time is exact within the last interval (at most ~50 ms
    near the end) without a tight loop loading the database for the whole run.
    The remaining time is estimated from the rate since the first rows as well as
    from the last interval's (:func:`poll_interval`): a contender that writes in
    bursts (a checkpoint a second) shows no rows between them, which must not
    stretch the interval just before its last burst.
    With ``lag_checksum_ms`` the rows must also sum to it (every revision landed).
    """
    schema = settings.postgres_schema
    deadline = time.monotonic() + timeout
    with contextlib.closing(pg_connect(settings)) as conn:
        conn.autocommit = True
        with conn.cursor() as cur:
            last = (time.monotonic(), 0)
            first: tuple[float, int] | None = None
            counts = Counts(0, 0)
            while True:
                now = time.time()
                counts = count_rows(cur, schema)
                done = counts.events + counts.dead_letters
                complete = (
                    counts.events >= events and counts.dead_letters >= dead_letters
                )
                if complete and (
                    lag_checksum_ms is None or _lag_sum(cur, schema) == lag_checksum_ms
                ):
                    return now, counts
                if progress is not None:
                    progress(counts)
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"{schema}: {counts} after {timeout:.0f}s, expected "
                        f"{events} events and {dead_letters} dead letters"
                    )
                if alive is not None and not alive():
                    raise RuntimeError(f"{schema}: contender exited early at {counts}")
                mono = time.monotonic()
                if first is None and done > 0:
                    first = (mono, done)
                time.sleep(
                    poll_interval(
                        events + dead_letters - done, (mono, done), last, first
                    )
                )
                last = (mono, done)


def poll_interval(
    remaining: int,
    now: tuple[float, int],
    last: tuple[float, int],
    first: tuple[float, int] | None,
) -> float:
    """Seconds until the next count: 1/10 of the remaining time at the faster of
    the rate since ``last`` and the rate since ``first`` (``(monotonic time, rows)``
    pairs), within [0.02, 1]; 0.5 while no rate is known."""
    rates = [
        (now[1] - then[1]) / max(now[0] - then[0], 1e-3)
        for then in (last, first)
        if then is not None
    ]
    rate = max(rates, default=0.0)
    interval = 0.5 if rate <= 0 else remaining / rate / 10
    return min(1.0, max(0.02, interval))


def _lag_sum(cur: Any, schema: str) -> int:
    cur.execute(
        "SELECT coalesce(sum(round(extract(epoch FROM updated - time) * 1000)), 0)"
        f' FROM "{schema}".{EVENTS_TABLE}'
    )
    return int(cur.fetchone()[0])


# ------------------------------------------------------------------------ processes
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ProcessMonitor:
    """Samples RSS and CPU seconds of a process tree every ``interval`` seconds."""

    def __init__(self, pid: int, interval: float = 0.2) -> None:
        self.pid = pid
        self.interval = interval
        self.samples: list[tuple[float, float, int]] = []  # (epoch, cpu s, rss bytes)
        #: (epoch, busy CPU seconds of the whole machine, all cores together)
        self.system: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def start(self) -> ProcessMonitor:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _sample(self) -> tuple[float, float, int] | None:
        try:
            root = psutil.Process(self.pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.Error:
            return None
        cpu = 0.0
        rss = 0
        for p in procs:
            with contextlib.suppress(psutil.Error):
                t = p.cpu_times()
                cpu += t.user + t.system
                rss += p.memory_info().rss
        return (time.time(), cpu, rss)

    def _loop(self) -> None:
        while not self._stop.is_set():
            sample = self._sample()
            if sample is not None:
                self.samples.append(sample)
                t = psutil.cpu_times()
                self.system.append((sample[0], t.user + t.nice + t.system + t.irq))
            self._stop.wait(self.interval)

    def cpu_at(self, t: float) -> float:
        """CPU seconds used by ``t`` (linear between samples)."""
        prev: tuple[float, float, int] | None = None
        for s in self.samples:
            if s[0] >= t:
                if prev is None:
                    return s[1]
                span = s[0] - prev[0]
                frac = (t - prev[0]) / span if span > 0 else 1.0
                return prev[1] + frac * (s[1] - prev[1])
            prev = s
        return self.samples[-1][1] if self.samples else 0.0

    def summary(self, start: float | None = None, end: float | None = None) -> dict:
        if not self.samples:
            return {}
        out: dict[str, Any] = {
            "peak_rss_mib": round(max(s[2] for s in self.samples) / 2**20, 1),
            "cpu_seconds_total": round(self.samples[-1][1], 2),
        }
        if start is not None and end is not None and end > start:
            cpu = self.cpu_at(end) - self.cpu_at(start)
            window = [s[2] for s in self.samples if start <= s[0] <= end]
            out["cpu_seconds"] = round(cpu, 2)
            out["cpu_cores"] = round(cpu / (end - start), 2)
            if window:
                out["peak_rss_mib_window"] = round(max(window) / 2**20, 1)
            busy = [b for b in self.system if start <= b[0] <= end]
            if len(busy) >= 2 and busy[-1][0] > busy[0][0]:
                # Everything on the machine: this contender, Kafka, PostgreSQL, the
                # harness and whatever else ran (other people's work).
                out["machine_busy_cores"] = round(
                    (busy[-1][1] - busy[0][1]) / (busy[-1][0] - busy[0][0]), 2
                )
        return out


def cpu_us_per_event(resources: dict[str, Any], events: int) -> float | None:
    """Microseconds of process CPU per event over the measured window (None when
    the window's CPU is unknown or there were no events)."""
    cpu = resources.get("cpu_seconds")
    if cpu is None or events <= 0:
        return None
    return round(1e6 * cpu / events, 1)


@contextlib.contextmanager
def contender_process(
    argv: Sequence[str], env: dict[str, str], log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """Start a contender process; on exit terminate it (SIGTERM, then SIGKILL)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as out:
        proc = subprocess.Popen(
            list(argv), env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT
        )
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=10)


def settings_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment a contender process gets: ours plus the run's settings."""
    env = dict(os.environ)
    env.update(
        {
            "APP_ID": settings.app_id,
            "TOPIC_RAW": settings.topic_raw,
            "TOPIC_CLEAN": settings.topic_clean,
            "TOPIC_DEAD_LETTER": settings.topic_dead_letter,
            "TOPIC_ACTIVITY": settings.topic_activity,
            "TOPIC_ALERTS": settings.topic_alerts,
            "TOPIC_PARTITIONS": str(settings.topic_partitions),
            "POSTGRES_SCHEMA": settings.postgres_schema,
            "SINK_BATCH_SIZE": str(settings.sink_batch_size),
            "SINK_BATCH_SECONDS": str(settings.sink_batch_seconds),
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra)
    return env


def read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def busy_processes(seconds: float = 1.0, top: int = 6) -> list[str]:
    """The processes (other than this one) using the most CPU over ``seconds``."""
    me = os.getpid()
    procs = []
    for p in psutil.process_iter(["pid", "name", "cmdline"]):
        if p.pid == me:
            continue
        with contextlib.suppress(psutil.Error):
            p.cpu_percent(None)
            procs.append(p)
    time.sleep(seconds)
    usage = []
    for p in procs:
        with contextlib.suppress(psutil.Error):
            pct = p.cpu_percent(None)
            if pct >= 5:
                cmd = " ".join(p.info["cmdline"] or [p.info["name"] or "?"])
                if "java" in cmd:
                    cmd = "java " + cmd.rsplit(" ", 2)[-2].rsplit(".", 1)[-1]
                usage.append((pct, f"{cmd[:80]} ({pct:.0f} %)"))
    return [text for _, text in sorted(usage, reverse=True)[:top]]


def machine() -> dict[str, Any]:
    """What the numbers were measured on, and what else was busy at the start."""
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "cpu": cpu,
        "cores": psutil.cpu_count(logical=True),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "os": f"{platform.system()} {platform.release()}",
        "python": sys.version.split()[0],
        "load_avg_before": [round(x, 2) for x in os.getloadavg()],
        "busy_before": busy_processes(),
    }
