"""Chaos harness: profiles, data, paced producers, topic readers, reconciliation."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import shutil
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg2
import psycopg2.errors
from psycopg2 import sql

from bench.generate import make_dataset
from streamapp.kafka import aiokafka_kwargs
from streamapp.settings import Settings, load_settings
from tests.conftest import run_sync
from tests.e2e.conftest import FeedServer, Worker, free_port

ROOT = Path(__file__).resolve().parents[2]
Headers = list[tuple[str, bytes]]
Offset = tuple[int, int]


# ---------------------------------------------------------------------- profiles
@dataclass(frozen=True)
class Profile:
    """How big and how long the scenarios are."""

    name: str
    #: Messages streamed per scenario (hostile records come on top in scenario 6).
    events: int
    #: Hostile records of scenario 6.
    hostile: int
    #: Seconds the pipeline may take to drain after the last fault (the producer
    #: included).
    drain_timeout: float
    #: Seconds the tables may take to be complete after the last send. Runs take
    #: under a second; a partition left unassigned for minutes (a topic missing
    #: from the group leader's metadata) must fail, not pass late.
    settle_timeout: float
    #: Where the suite writes its report.
    report_path: Path
    #: Multiplies each scenario's streaming time (the CI profile streams faster).
    time_scale: float = 1.0
    invalid_share: float = 0.05
    revision_share: float = 0.05
    stale_share: float = 0.01


def load_profile(environ: dict[str, str] | None = None) -> Profile:
    """``CHAOS_PROFILE=full`` (make chaos) or ``ci`` (the default, inside make test)."""
    env = os.environ if environ is None else environ
    name = env.get("CHAOS_PROFILE", "ci").strip().lower() or "ci"
    override = env.get("CHAOS_REPORT", "").strip()
    if name == "full":
        path = Path(override) if override else ROOT / "docs" / "reliability.md"
        return Profile(
            "full",
            events=20_000,
            hostile=1_200,
            drain_timeout=900.0,
            settle_timeout=120.0,
            report_path=path,
        )
    if name != "ci":
        raise ValueError(f"CHAOS_PROFILE={name!r}: use full or ci")
    default = Path(tempfile.gettempdir()) / "streamapp-chaos" / "reliability-ci.md"
    return Profile(
        "ci",
        events=3_000,
        hostile=1_000,
        drain_timeout=300.0,
        settle_timeout=60.0,
        report_path=Path(override) if override else default,
        time_scale=0.7,
    )


# ---------------------------------------------------------------------- the data
@dataclass(frozen=True)
class Expect:
    """What one raw message must become: a row (id, updated) or a dead letter."""

    valid: bool
    id: str | None = None
    updated: int | None = None  # epoch ms
    #: The dead letter's expected error kind (None: any kind will do).
    kind: str | None = None


@dataclass(frozen=True)
class Msg:
    """One message a test producer writes into the raw topic."""

    key: bytes | None
    value: bytes | None
    headers: Headers = field(default_factory=list)


@dataclass
class ChaosData:
    """Messages to stream and the fate each one must meet."""

    messages: list[Msg]
    expect: dict[bytes | None, Expect]
    describe: dict[str, Any] = field(default_factory=dict)

    def classify(self, value: bytes | None) -> Expect | None:
        return self.expect.get(value)

    def __add__(self, other: ChaosData) -> ChaosData:
        return ChaosData(
            self.messages + other.messages,
            {**self.expect, **other.expect},
            {**self.describe, **other.describe},
        )


def envelope_expect(value: bytes) -> Expect:
    """The Expect of a valid raw envelope (its feature's id and updated)."""
    feature = json.loads(value)["feature"]
    return Expect(True, feature["id"], int(feature["properties"]["updated"]))


def make_chaos_data(
    n: int,
    *,
    seed: int,
    invalid_share: float = 0.05,
    revision_share: float = 0.05,
    stale_share: float = 0.01,
    id_offset: int = 0,
) -> ChaosData:
    """``n`` USGS-shaped raw messages (bench.generate), a known share invalid, some
    revisions (larger ``updated``) and some stale copies of first versions sent
    after their revision (a smaller ``updated`` that must not win)."""
    n_stale = round(n * stale_share)
    ds = make_dataset(
        n - n_stale,
        seed=seed,
        invalid_share=invalid_share,
        revision_share=revision_share,
        id_offset=id_offset,
    )
    expect: dict[bytes | None, Expect] = {}
    first: dict[str, bytes] = {}
    versions: Counter[str] = Counter()
    messages: list[Msg] = []
    for m in ds.messages:
        messages.append(Msg(m.key, m.value))
        if m.invalid is not None:
            expect[m.value] = Expect(False, kind=m.invalid)
            continue
        e = envelope_expect(m.value)
        expect[m.value] = e
        versions[e.id or ""] += 1
        first.setdefault(e.id or "", m.value)
    revised = sorted(i for i, count in versions.items() if count > 1)
    rng = random.Random(seed + 1)
    stale = [first[i] for i in rng.sample(revised, min(n_stale, len(revised)))]
    # Old versions re-sent after their revision: they must not overwrite it.
    for value in stale:
        messages.append(Msg(envelope_expect(value).id.encode(), value))
    valid_ids = {e.id for e in expect.values() if e.valid}
    return ChaosData(
        messages,
        expect,
        {
            "messages": len(messages),
            "invalid": sum(1 for m in messages if not expect[m.value].valid),
            "valid_ids": len(valid_ids),
            "revisions": ds.revisions,
            "stale_copies": len(stale),
            "invalid_by_kind": ds.invalid_by_kind,
        },
    )


# ---------------------------------------------------------------------- Kafka
@dataclass(frozen=True)
class Rec:
    """One message read back from a topic."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: dict[str, bytes]


async def _read_topic(kwargs: dict[str, Any], topic: str, idle: float) -> list[Rec]:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(
        **kwargs,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=8 * 1024 * 1024,
        fetch_max_bytes=64 * 1024 * 1024,
    )
    await consumer.start()
    try:
        parts: set[int] = set()
        deadline = time.monotonic() + idle
        while not parts:
            await consumer._client.force_metadata_update()
            parts = consumer.partitions_for_topic(topic) or set()
            if not parts:
                if time.monotonic() > deadline:
                    return []
                await asyncio.sleep(0.5)
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        await consumer.seek_to_beginning(*tps)
        out: list[Rec] = []
        pending = {tp for tp in tps if ends[tp] > 0}
        last = time.monotonic()
        while pending:
            batch = await consumer.getmany(*pending, timeout_ms=1000)
            for tp, records in batch.items():
                for r in records:
                    if r.offset < ends[tp]:
                        out.append(
                            Rec(r.partition, r.offset, r.key, r.value, dict(r.headers))
                        )
                last = time.monotonic()
            for tp in list(pending):
                if await consumer.position(tp) >= ends[tp]:
                    pending.discard(tp)
            if pending and time.monotonic() - last > idle:
                raise TimeoutError(f"reading {topic}: no data for {idle}s")
        return out
    finally:
        await consumer.stop()


def profile_data(profile: Profile, *, seed: int, id_offset: int = 0) -> ChaosData:
    """A scenario's stream: ``profile.events`` messages with the profile's shares."""
    return make_chaos_data(
        profile.events,
        seed=seed,
        invalid_share=profile.invalid_share,
        revision_share=profile.revision_share,
        stale_share=profile.stale_share,
        id_offset=id_offset,
    )


def offered(data: ChaosData, rate: float) -> str:
    """The report note on what a scenario streamed, and how fast."""
    d = data.describe
    return (
        f"{d['messages']:,} messages offered at {rate:.0f}/s: {d['invalid']:,} "
        f"invalid, {d['revisions']:,} revisions, {d['stale_copies']:,} stale copies"
    )


def read_topic(settings: Settings, topic: str, idle: float = 60.0) -> list[Rec]:
    """Every message of ``topic`` up to its current end (no consumer group)."""
    return run_sync(_read_topic(aiokafka_kwargs(settings), topic, idle))


async def _admin_call(settings: Settings, fn: Callable[[Any], Any]) -> Any:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(**aiokafka_kwargs(settings), request_timeout_ms=30000)
    await admin.start()
    try:
        return await fn(admin)
    finally:
        await admin.close()


def create_topic(
    settings: Settings,
    name: str,
    partitions: int,
    config: dict[str, str] | None = None,
) -> None:
    """Create ``name`` (or find it) and wait until every partition has a leader."""
    from aiokafka.admin import NewTopic

    async def fn(admin: Any) -> None:
        topic = NewTopic(
            name, partitions, replication_factor=1, topic_configs=config or {}
        )
        response = await admin.create_topics([topic])
        for err in response.topic_errors:
            if err[1] not in (0, 36):
                raise RuntimeError(f"creating topic {name!r} failed: {err}")
        deadline = time.monotonic() + 60
        while True:
            described = await admin.describe_topics([name])
            parts = described[0].get("partitions", []) if described else []
            if len(parts) == partitions and all(p["leader"] >= 0 for p in parts):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"topic {name!r} has no leaders")
            await asyncio.sleep(0.2)

    run_sync(_admin_call(settings, fn))


def delete_topics_with_prefix(settings: Settings, prefix: str) -> list[str]:
    """Delete every topic whose name starts with ``prefix``; returns the names."""

    async def fn(admin: Any) -> list[str]:
        names = [t for t in await admin.list_topics() if t.startswith(prefix)]
        if names:
            await admin.delete_topics(names)
        return names

    return run_sync(_admin_call(settings, fn))


class BackgroundProducer:
    """Writes messages into a topic from a thread, paced, retrying failed sends.

    A send whose delivery fails (broker gone, timeout) is sent again until it is
    delivered; the raw topic may then hold a copy twice, which reconciliation
    handles (it works from the offsets the broker really holds).
    """

    def __init__(
        self,
        settings: Settings,
        topic: str,
        messages: Sequence[Msg],
        *,
        rate: float | None = None,
        chunk: int = 100,
        producer_options: dict[str, Any] | None = None,
    ) -> None:
        self.kwargs = aiokafka_kwargs(settings)
        self.topic = topic
        self.messages = list(messages)
        self.rate = rate
        self.chunk = chunk
        self.options = {
            "acks": "all",
            "enable_idempotence": True,
            "linger_ms": 10,
            "request_timeout_ms": 20000,
            "retry_backoff_ms": 250,
            **(producer_options or {}),
        }
        self.delivered = 0
        self.failed_sends = 0
        self.last_failure = ""
        self.started_at = 0.0
        self.finished_at: float | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, daemon=True)
        self._stop = threading.Event()

    def start(self) -> BackgroundProducer:
        self.started_at = time.monotonic()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    @property
    def done(self) -> bool:
        return self.finished_at is not None

    def wait(self, timeout: float) -> None:
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise AssertionError(
                f"producer still running after {timeout}s "
                f"({self.delivered}/{len(self.messages)} delivered; "
                f"{self.failed_sends} failed sends, last {self.last_failure!r})"
            )
        if self.error is not None:
            raise AssertionError(f"producer failed: {self.error!r}")

    def _main(self) -> None:
        try:
            asyncio.run(self._run())
        except BaseException as exc:
            self.error = exc
        finally:
            self.finished_at = time.monotonic()

    async def _start_producer(self) -> Any:
        from aiokafka import AIOKafkaProducer

        while True:
            producer = AIOKafkaProducer(**self.kwargs, **self.options)
            try:
                await producer.start()
                return producer
            except Exception:
                await producer.stop()
                if self._stop.is_set():
                    raise
                await asyncio.sleep(1.0)

    async def _run(self) -> None:
        producer = await self._start_producer()
        try:
            t0 = time.monotonic()
            for start in range(0, len(self.messages), self.chunk):
                if self._stop.is_set():
                    return
                if self.rate:
                    due = t0 + start / self.rate
                    delay = due - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)
                await self._send_chunk(
                    producer, self.messages[start : start + self.chunk]
                )
        finally:
            await producer.stop()

    async def _send_chunk(self, producer: Any, chunk: Sequence[Msg]) -> None:
        pending = list(chunk)
        delay = 0.5
        while pending:
            futures: list[Any] = []
            for m in pending:
                try:
                    futures.append(
                        await producer.send(
                            self.topic,
                            m.value,
                            key=m.key,
                            headers=m.headers or None,
                        )
                    )
                except Exception as exc:
                    fut = asyncio.get_running_loop().create_future()
                    fut.set_exception(exc)
                    futures.append(fut)
            results = await asyncio.gather(*futures, return_exceptions=True)
            failed = [
                m
                for m, r in zip(pending, results, strict=True)
                if isinstance(r, BaseException)
            ]
            self.delivered += len(pending) - len(failed)
            if failed:
                self.failed_sends += len(failed)
                first = next(r for r in results if isinstance(r, BaseException))
                self.last_failure = f"{type(first).__name__}: {first}"
                if self._stop.is_set():
                    return
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
            pending = failed


# ---------------------------------------------------------------------- PostgreSQL
class Db:
    """Reads (and finally drops) one test's PostgreSQL schema."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.schema = settings.postgres_schema

    def connect(self) -> Any:
        conn = psycopg2.connect(
            self.settings.database_url.get_secret_value(), connect_timeout=5
        )
        conn.autocommit = True
        return conn

    def table(self, name: str) -> sql.Composable:
        return sql.SQL("{}.{}").format(
            sql.Identifier(self.schema), sql.Identifier(name)
        )

    def rows(self, query: sql.Composable | str, args: tuple[Any, ...] = ()) -> list:
        conn = self.connect()
        try:
            with conn.cursor() as cur:
                cur.execute(query, args)
                return list(cur.fetchall())
        finally:
            conn.close()

    def counts(self, raw_topic: str) -> tuple[int, int, int]:
        """``(earthquakes rows, sum of their updated in ms, raw dead letters)``;
        zeros before the migration ran."""
        try:
            rows = self.rows(
                sql.SQL(
                    "SELECT (SELECT count(*) FROM {q}),"
                    " (SELECT coalesce(sum((extract(epoch FROM updated) * 1000)"
                    "::bigint), 0) FROM {q}),"
                    " (SELECT count(*) FROM {d} WHERE source_topic = %s)"
                ).format(q=self.table("earthquakes"), d=self.table("dead_letters")),
                (raw_topic,),
            )
        except psycopg2.errors.UndefinedTable:
            return 0, 0, 0
        n, checksum, letters = rows[0]
        return int(n), int(checksum), int(letters)

    def drop(self) -> None:
        conn = self.connect()
        try:
            with conn.cursor() as cur:
                cur.execute(
                    sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
                        sql.Identifier(self.schema)
                    )
                )
        finally:
            conn.close()


class Progress(threading.Thread):
    """Samples the schema every ``interval`` s: rows + dead letters, and the largest
    raw offset stored per raw partition (how far each partition got)."""

    def __init__(self, db: Db, raw_topic: str, interval: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.db = db
        self.raw_topic = raw_topic
        self.interval = interval
        self.samples: list[tuple[float, int, dict[int, int]]] = []
        self._halt = threading.Event()
        self._lock = threading.Lock()

    def run(self) -> None:
        conn = None
        query = sql.SQL(
            "SELECT p, max(o), count(*) FROM ("
            " SELECT raw_partition AS p, raw_offset AS o FROM {q}"
            " UNION ALL SELECT source_partition, source_offset FROM {d}"
            " WHERE source_topic = %s) x GROUP BY p"
        ).format(q=self.db.table("earthquakes"), d=self.db.table("dead_letters"))
        while not self._halt.is_set():
            try:
                if conn is None or conn.closed:
                    conn = self.db.connect()
                with conn.cursor() as cur:
                    cur.execute(query, (self.raw_topic,))
                    rows = cur.fetchall()
                per = {int(p): int(o) for p, o, _ in rows if p is not None}
                total = sum(int(n) for _, _, n in rows)
                with self._lock:
                    self.samples.append((time.monotonic(), total, per))
            except psycopg2.Error:
                if conn is not None:
                    conn.close()
                conn = None
            self._halt.wait(self.interval)
        if conn is not None:
            conn.close()

    def halt(self) -> None:
        self._halt.set()
        self.join(10)

    def latest(self) -> tuple[float, int, dict[int, int]]:
        with self._lock:
            return self.samples[-1] if self.samples else (time.monotonic(), 0, {})

    def at(self, t: float) -> tuple[int, dict[int, int]]:
        """The last sample taken at or before ``t``."""
        with self._lock:
            best: tuple[int, dict[int, int]] = (0, {})
            for ts, total, per in self.samples:
                if ts > t:
                    break
                best = (total, per)
            return best

    def first_after(self, t: float) -> tuple[float, int, dict[int, int]] | None:
        """The first sample taken at or after ``t``."""
        with self._lock:
            for sample in self.samples:
                if sample[0] >= t:
                    return sample
        return None

    def progressed_since(
        self, t: float, partitions: Sequence[int] | None = None
    ) -> float | None:
        """When (monotonic) a sample first showed progress over the first sample
        taken at or after ``t`` (so nothing stored before ``t`` counts): a larger
        total, or, given ``partitions``, a larger offset in EVERY one of them."""
        first = self.first_after(t)
        if first is None:
            return None
        ts0, total0, per0 = first
        with self._lock:
            samples = [s for s in self.samples if s[0] > ts0]
        for ts, total, per in samples:
            if partitions is None:
                if total > total0:
                    return ts
            elif all(per.get(p, -1) > per0.get(p, -1) for p in partitions):
                return ts
        return None

    def longest_stall(self, t0: float, t1: float) -> float:
        """The longest time within [t0, t1] in which no new row was stored."""
        with self._lock:
            samples = [(ts, total) for ts, total, _ in self.samples if t0 <= ts <= t1]
        longest, since, last = 0.0, t0, None
        for ts, total in samples:
            if last is not None and total != last:
                longest = max(longest, ts - since)
                since = ts
            last = total
        return max(longest, (samples[-1][0] if samples else t1) - since)

    def wait_progress(
        self,
        t: float,
        timeout: float,
        partitions: Sequence[int] | None = None,
        alive: Callable[[], None] | None = None,
    ) -> float | None:
        """Block until :meth:`progressed_since` ``t``; returns seconds after ``t``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            when = self.progressed_since(t, partitions)
            if when is not None:
                return when - t
            if alive is not None:
                alive()
            time.sleep(0.2)
        return None


# ---------------------------------------------------------------------- reconciliation
@dataclass
class Figures:
    """The measured outcome of one scenario (one row of docs/reliability.md)."""

    scenario: str
    title: str
    profile: str
    events_sent: int = 0
    raw_messages: int = 0
    expected_rows: int = 0
    rows_stored: int = 0
    expected_dead_letters: int = 0
    dead_letters: int = 0
    clean_offsets: int = 0
    dead_letter_offsets: int = 0
    lost: int = 0
    duplicated: int = 0
    redelivered: int = 0
    raw_balanced: bool = False
    time_to_recover: str = "n/a"
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    measured_at: str = ""

    @property
    def ok(self) -> bool:
        return not self.problems and self.lost == 0 and self.duplicated == 0

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Figures:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


def _limit(items: Sequence[Any], n: int = 5) -> str:
    shown = ", ".join(map(str, list(items)[:n]))
    return shown + (f", ... ({len(items)} in all)" if len(items) > n else "")


def reconcile(
    figures: Figures,
    settings: Settings,
    db: Db,
    classify: Callable[[bytes | None], Expect | None],
    intended: Sequence[bytes | None] | None = None,
) -> Figures:
    """Compare what the broker holds in raw with the clean and dead-letter topics and
    the two tables; fill ``figures`` (lost, duplicated, ...) and its problems."""
    raw = read_topic(settings, settings.topic_raw)
    clean = read_topic(settings, settings.topic_clean)
    letters = read_topic(settings, settings.topic_dead_letter)
    problems = figures.problems

    # 1. The raw topic: what really entered the system.
    expect: dict[Offset, Expect] = {}
    unknown: list[Offset] = []
    for r in raw:
        e = classify(r.value)
        if e is None:
            unknown.append((r.partition, r.offset))
            continue
        expect[(r.partition, r.offset)] = e
    if unknown:
        problems.append(
            f"{len(unknown)} raw messages of unknown origin: {_limit(unknown)}"
        )
    figures.raw_messages = len(raw)
    missing_in_raw = 0
    if intended is not None:
        have = Counter(r.value for r in raw)
        want = Counter(intended)
        missing_in_raw = sum(max(0, n - have[v]) for v, n in want.items())
        extra = sum(max(0, n - want[v]) for v, n in have.items())
        figures.events_sent = len(intended)
        if missing_in_raw:
            problems.append(f"{missing_in_raw} produced messages are not in raw")
        if extra:
            figures.notes.append(
                f"{extra} raw message(s) are producer retry copies (counted as input)"
            )
    valid = {o: e for o, e in expect.items() if e.valid}
    invalid = {o: e for o, e in expect.items() if not e.valid}
    latest: dict[str, int] = {}
    for e in valid.values():
        assert e.id is not None and e.updated is not None
        latest[e.id] = max(latest.get(e.id, e.updated), e.updated)
    best = {o for o, e in valid.items() if latest[e.id or ""] == e.updated}
    figures.expected_rows = len(latest)
    figures.expected_dead_letters = len(invalid)

    # 2. The topics: every raw offset forwarded to clean XOR dead-letter.
    clean_seen: Counter[Offset] = Counter()
    for r in clean:
        doc = json.loads(r.value or b"null")
        clean_seen[(int(doc["raw_partition"]), int(doc["raw_offset"]))] += 1
    dl_seen: Counter[Offset] = Counter()
    other_letters = 0
    for r in letters:
        if r.headers.get("source.topic", b"").decode() != settings.topic_raw:
            other_letters += 1
            continue
        dl_seen[
            (int(r.headers["source.partition"]), int(r.headers["source.offset"]))
        ] += 1
    figures.clean_offsets = len(clean_seen)
    figures.dead_letter_offsets = len(dl_seen)
    figures.redelivered = sum(n - 1 for n in clean_seen.values()) + sum(
        n - 1 for n in dl_seen.values()
    )
    both = set(clean_seen) & set(dl_seen)
    neither = set(expect) - set(clean_seen) - set(dl_seen)
    phantom = (set(clean_seen) | set(dl_seen)) - set(expect) - set(unknown)
    wrong_way = [o for o in clean_seen if o in invalid] + [
        o for o in dl_seen if o in valid
    ]
    figures.raw_balanced = (
        not both
        and not neither
        and not phantom
        and len(clean_seen) + len(dl_seen) == len(raw)
    )
    if both:
        problems.append(f"{len(both)} raw offsets in BOTH clean and dead-letter")
    if neither:
        problems.append(
            f"{len(neither)} raw offsets in neither clean nor dead-letter: "
            f"{_limit(sorted(neither))}"
        )
    if phantom:
        problems.append(f"{len(phantom)} forwarded offsets not in raw")
    if wrong_way:
        problems.append(f"{len(wrong_way)} messages routed the wrong way")
    if other_letters:
        figures.notes.append(
            f"{other_letters} dead letter(s) from the clean topic (sink_rejected)"
        )

    # 3. The tables: every valid id once with its latest updated; every invalid
    #    raw message once in dead_letters.
    rows = db.rows(
        sql.SQL(
            "SELECT id, (extract(epoch FROM updated) * 1000)::bigint,"
            " raw_partition, raw_offset FROM {}"
        ).format(db.table("earthquakes"))
    )
    figures.rows_stored = len(rows)
    stored = {r[0]: r for r in rows}
    missing = sorted(set(latest) - set(stored))
    stale = sorted(i for i, r in stored.items() if i in latest and r[1] < latest[i])
    newer = sorted(i for i, r in stored.items() if i in latest and r[1] > latest[i])
    strange = sorted(set(stored) - set(latest))
    lineage = sorted(
        i
        for i, r in stored.items()
        if i in latest and r[1] == latest[i] and (r[2], r[3]) not in best
    )
    if missing:
        problems.append(f"{len(missing)} valid ids missing: {_limit(missing)}")
    if stale:
        problems.append(
            f"{len(stale)} rows not at their latest updated: {_limit(stale)}"
        )
    if newer or strange:
        problems.append(f"{len(newer) + len(strange)} unexpected rows/versions")
    if lineage:
        problems.append(f"{len(lineage)} rows point at the wrong raw offset")
    dl_rows = db.rows(
        sql.SQL(
            "SELECT source_partition, source_offset, error_kind, error_message"
            " FROM {} WHERE source_topic = %s"
        ).format(db.table("dead_letters")),
        (settings.topic_raw,),
    )
    figures.dead_letters = len(dl_rows)
    dl_count: Counter[Offset] = Counter((int(p), int(o)) for p, o, _, _ in dl_rows)
    lost_letters = sorted(set(invalid) - set(dl_count))
    extra_letters = sorted(set(dl_count) - set(invalid))
    no_reason = [(p, o) for p, o, kind, msg in dl_rows if not kind or not msg]
    wrong_kind = [
        (p, o, kind)
        for p, o, kind, _ in dl_rows
        if (p, o) in invalid and invalid[(p, o)].kind not in (None, kind)
    ]
    if lost_letters:
        problems.append(
            f"{len(lost_letters)} invalid messages not in dead_letters: "
            f"{_limit(lost_letters)}"
        )
    if extra_letters:
        problems.append(f"{len(extra_letters)} dead letters for valid/unknown offsets")
    if no_reason:
        problems.append(f"{len(no_reason)} dead letters without a reason")
    if wrong_kind:
        problems.append(
            f"{len(wrong_kind)} dead letters of the wrong kind: {_limit(wrong_kind)}"
        )
    dup_rows = db.rows(
        sql.SQL("SELECT count(*) - count(DISTINCT id) FROM {}").format(
            db.table("earthquakes")
        )
    )[0][0]
    figures.duplicated = int(dup_rows) + sum(n - 1 for n in dl_count.values())
    figures.lost = len(missing) + len(stale) + len(lost_letters) + missing_in_raw
    return figures


# ---------------------------------------------------------------------- runs
@dataclass
class Target:
    """A stack the scenarios run on: the environment its workers get, and the
    settings the test's own clients use."""

    name: str
    env: dict[str, str]

    def settings(self, overrides: dict[str, str] | None = None) -> Settings:
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
        create_topic(
            self.settings,
            self.settings.topic_raw,
            self.settings.topic_partitions,
            config,
        )

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = {**self.target.env, **self.overrides, "WEB_PORT": str(free_port())}
        env.update(extra or {})
        return env

    def start_worker(
        self, name: str = "worker", extra: dict[str, str] | None = None
    ) -> Worker:
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
        out = []
        for w in self.workers:
            with contextlib.suppress(FileNotFoundError):
                out.append(w.log_path.read_text(encoding="utf-8", errors="replace"))
        return "\n".join(out)

    # -------------------------------------------------------------- teardown
    def close(self) -> None:
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


def expected_totals(
    data: ChaosData, values: Sequence[bytes | None] | None = None
) -> tuple[int, int, int]:
    """``(rows, updated checksum, dead letters)`` the tables must end with when
    ``values`` (default: every message once) reach raw."""
    latest: dict[str, int] = {}
    letters = 0
    for v in values if values is not None else [m.value for m in data.messages]:
        e = data.classify(v)
        if e is None:
            continue
        if e.valid:
            assert e.id is not None and e.updated is not None
            latest[e.id] = max(latest.get(e.id, e.updated), e.updated)
        else:
            letters += 1
    return len(latest), sum(latest.values()), letters


def rss_kib(pid: int) -> tuple[int, int]:
    """``(VmRSS, VmHWM)`` of a process in KiB (current and peak resident memory)."""
    fields: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(rest.split()[0])
    return fields.get("VmRSS", 0), fields.get("VmHWM", 0)


def handled(worker: Worker) -> int:
    """Raw messages this worker process validated (its own counters)."""
    status, stats = worker.get("/api/stats")
    assert status == 200, stats
    return int(stats["valid"]) + int(stats["invalid"])


def wait_handling(worker: Worker, timeout: float, more_than: int = 0) -> float | None:
    """Seconds until ``worker`` has validated more than ``more_than`` messages."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        worker.assert_alive()
        try:
            if handled(worker) > more_than:
                return time.monotonic() - t0
        except OSError:
            pass
        time.sleep(0.25)
    return None


def fmt_seconds(values: Sequence[float | None]) -> str:
    return ", ".join("never" if v is None else f"{v:.1f} s" for v in values)


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


def sink_transaction_open(db: Db, app_id: str) -> bool:
    """True while a backend of the worker (application_name = APP_ID) is inside a
    transaction writing earthquakes or dead_letters (a batch in flight)."""
    rows = db.rows(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s"
        " AND state IN ('active', 'idle in transaction')"
        " AND (query ILIKE '%%earthquakes%%' OR query ILIKE '%%dead_letters%%'"
        "      OR query ILIKE 'COPY%%')",
        (app_id[:63],),
    )
    return bool(rows[0][0])
