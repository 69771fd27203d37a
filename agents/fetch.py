"""The ``fetch_quakes`` timer: poll the source, send new or revised features to raw."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import (
    Awaitable,
    Callable,
    Collection,
    Container,
    Iterable,
    Mapping,
)
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from streamapp.app import app, settings
from streamapp.delivery import failed_future
from streamapp.exceptions import SourceError, SourceUnavailable
from streamapp.metrics import observe_fetch
from streamapp.sources import Source, build_source, encode_raw, feature_id
from streamapp.sources.base import is_json_int
from streamapp.stats import PipelineStats, stats
from streamapp.topics import raw_topic

__all__ = [
    "DedupExpiry",
    "FetchState",
    "MemoryVersions",
    "PollResult",
    "Sender",
    "TableVersions",
    "VersionStore",
    "dedup_key",
    "expired_keys",
    "fetch_quakes",
    "fetch_state",
    "fetch_tick",
    "poll_once",
    "remembered_version",
    "sent_versions",
    "sweep_interval",
]

log = logging.getLogger(__name__)

#: Room left in a producer request for the key, headers and record overhead.
RECORD_OVERHEAD_BYTES = 1024

#: One day in milliseconds.
DAY_MS = 86_400_000

#: Prefix of the dedup key of a feature that cannot be versioned (a content hash).
HASH_PREFIX = "sha256:"

#: Dedup entries the expiry sweep examines per timer tick (the bound on the work of
#: one tick: a dict lookup each, and a changelog tombstone for each expired one).
SWEEP_BATCH = 2_000

#: Changelog writes queued between two yields to the event loop, so a large batch
#: of writes does not hold up the agents that share the loop.
WRITES_PER_YIELD = 100

#: A sweep over the whole table starts at most this often; with a short retention
#: more often: :func:`sweep_interval`.
SWEEP_MAX_SECONDS = 600.0

# ----------------------------------------------------------------------------------
# The dedup table, and why it is written the way it is (faust-streaming 0.15.3).
#
# ``table[key] = value`` calls ``Table.on_key_set`` -> ``send_changelog(
# partition_for_key(key), ...)``. For a normal table ``partition_for_key`` takes the
# partition of ``current_event()`` and raises "Cannot modify table key from outside
# of stream iteration" in a timer, which has no current event. With
# ``use_partitioner=True`` it returns None and ``send_changelog`` uses
# ``send_soon(..., eager_partitioning=True)``, which hashes the key with the
# *producer's* metadata; aiokafka's producer only keeps metadata for the topics it
# has sent to, so it finds no partitions for the changelog and the write fails
# with TypeError "'NoneType' object is not iterable" (the key is never stored).
# ``del table[key]`` goes the same way, and ``send_soon`` gives no way to wait for
# the write either. So the timer never uses ``table[key] = ...`` or ``del``:
# :class:`TableVersions` awaits ``changelog_topic.send(key, value)`` (the producer
# waits for the topic's metadata and partitions by key) and puts the value in the
# local store (``table.data``), which is exactly what ``__setitem__`` does minus
# the eager partitioning; it forgets a key the same way, with a tombstone (value
# None), which is what ``__delitem__`` writes.
#
# It is a *global* table because a sharded one is wrong here: a worker only holds
# the changelog partitions of its own active partitions (the memory store drops the
# others after each rebalance), while the one leader that fetches must know every
# id. With ``is_global`` every worker recovers every changelog partition as active
# before the rebalance completes, and ``use_partitioner=True`` also makes every
# partition a standby on every worker (faust-streaming #283: without it, some
# workers stop following the changelog after recovery). One partition and a
# recovery buffer of 1 are what faust's GlobalTable docstring prescribes against
# recovery loops with several workers (``app.GlobalTable`` already sets the standby
# buffer to 1, so each standby update is applied at once and a worker that becomes
# leader is current).
# The timer fetches only after table recovery has completed and while no rebalance
# is running, so a new leader never polls with a half-recovered table.
#
# Bounded size: an entry whose version (the event's ``updated``; for a content
# hash, the time it was sent) is older than ``DEDUP_RETENTION_DAYS`` and whose key
# the source no longer returns is expired by :class:`DedupExpiry` on the leader:
# removed from the local store and tombstoned in the changelog, so the broker's
# compaction drops it and a restarted worker does not recover it. Keys the last
# document still holds are never expired (that would re-send them on every poll).
# A revision of an expired event is simply sent again; the sink's upsert keeps the
# newest. The changelog rolls a segment a day (``segment.ms``) so that compaction,
# which never touches the active segment, can drop expired ids within days.
#
# Crash safety: features are produced first and their delivery awaited; only the
# delivered ones are written to the table, and that write is awaited too. A crash
# between the two re-sends those features after the restart (at-least-once; the
# sink's upsert makes that harmless); a failed send is never marked as sent.
# ----------------------------------------------------------------------------------
sent_versions = app.GlobalTable(
    "sent-versions",
    key_type=str,
    value_type=int,
    default=None,
    partitions=1,
    use_partitioner=True,
    recovery_buffer_size=1,
    # Compaction never touches the active segment: roll one a day (Kafka's default
    # is 7 days) so tombstoned ids leave the changelog soon. Applies on creation.
    extra_topic_configs={"segment.ms": str(DAY_MS)},
    help=(
        "Event id -> `updated` (epoch ms) last sent to raw; sha256: content hash -> "
        "when it was sent (epoch ms)."
    ),
)


class Sender(Protocol):
    """Produces one raw message; awaiting the call returns the delivery future."""

    def __call__(self, key: bytes | None, value: bytes, /) -> Awaitable[Awaitable[Any]]:
        """Queue ``value`` under ``key``; the result resolves once delivered."""
        ...


class VersionStore(Protocol):
    """What has been sent: dedup key -> version (``updated`` in epoch ms)."""

    def get(self, key: str) -> int | None:
        """The version last sent under ``key``, or None."""
        ...

    async def save(self, versions: Mapping[str, int]) -> None:
        """Remember ``versions`` as sent (durably, when the store is durable)."""
        ...

    def keys(self) -> list[str]:
        """A snapshot of every key held."""
        ...

    async def expire(self, keys: Collection[str]) -> None:
        """Forget ``keys`` (durably, when the store is durable)."""
        ...


@dataclass
class MemoryVersions:
    """A :class:`VersionStore` in a dict (tests, and tools without a worker)."""

    data: dict[str, int] = field(default_factory=dict)

    def get(self, key: str) -> int | None:
        return self.data.get(key)

    async def save(self, versions: Mapping[str, int]) -> None:
        self.data.update(versions)

    def keys(self) -> list[str]:
        return list(self.data)

    async def expire(self, keys: Collection[str]) -> None:
        for key in keys:
            self.data.pop(key, None)


class TableVersions:
    """A :class:`VersionStore` over a Faust table, writable from a timer.

    ``save`` puts the values in the local store and awaits their changelog
    delivery; values whose changelog write failed are kept and written again on
    the next ``save`` (the local store already has them, so they are not re-sent
    to the raw topic meanwhile). ``expire`` removes keys from the local store and
    awaits their tombstones (value None) in the changelog; a tombstone that failed
    is written again on the next ``expire`` unless the key was saved meanwhile.
    """

    def __init__(self, table: Any) -> None:
        self.table = table
        self._unsaved: dict[str, int] = {}
        self._undeleted: set[str] = set()

    def get(self, key: str) -> int | None:
        value = self.table.data.get(key)
        return value if is_json_int(value) else None

    def keys(self) -> list[str]:
        return list(self.table.data.keys())

    async def save(self, versions: Mapping[str, int]) -> None:
        self._undeleted.difference_update(versions)
        pending = {**self._unsaved, **versions}
        if not pending:
            return
        store = self.table.data
        for key, value in versions.items():
            store[key] = value
        self._unsaved = await self._write(pending, "dedup entries")

    async def expire(self, keys: Collection[str]) -> None:
        store = self.table.data
        for key in keys:
            store.pop(key, None)
            self._unsaved.pop(key, None)
        pending = dict.fromkeys([*self._undeleted, *keys])
        if not pending:
            return
        self._undeleted = set(await self._write(pending, "dedup tombstones"))

    async def _write(
        self, pending: Mapping[str, int | None], what: str
    ) -> dict[str, Any]:
        """Send ``pending`` to the changelog (None: a tombstone); the failed ones."""
        topic = self.table.changelog_topic
        futures: list[Awaitable[Any]] = []
        keys = list(pending)
        for i, key in enumerate(keys, 1):
            if i % WRITES_PER_YIELD == 0:
                await asyncio.sleep(0)
            value = pending[key]
            try:
                if value is None:
                    sent = await topic.send(key=key, value=None, value_serializer="raw")
                else:
                    sent = await topic.send(key=key, value=value)
                futures.append(sent)
            except Exception as exc:
                futures.append(failed_future(exc))
        results = await asyncio.gather(*futures, return_exceptions=True)
        failed = {
            key: pending[key]
            for key, res in zip(keys, results, strict=True)
            if isinstance(res, BaseException)
        }
        if failed:
            first = next(r for r in results if isinstance(r, BaseException))
            log.warning(
                "could not write %d of %d %s to %s (%s); retried next time",
                len(failed),
                len(keys),
                what,
                topic.get_topic_name(),
                first,
            )
        return failed


def remembered_version(key: str, version: int, fetched_at: datetime) -> int:
    """The value the dedup table keeps for a feature sent under ``key``.

    The version (``updated``) for an event id; for a content hash (version 0) the
    time it was fetched, in epoch ms: the age the expiry goes by, and never 0 (the
    memory store drops a recovered 0 that follows a tombstone in one batch). A
    content hash is never re-sent while it is known, as 0 is below any such time.
    """
    if key.startswith(HASH_PREFIX):
        if fetched_at.tzinfo is None:
            fetched_at = fetched_at.replace(tzinfo=UTC)
        return max(1, int(fetched_at.timestamp() * 1000))
    return version


def expired_keys(
    entries: Iterable[tuple[str, int | None]],
    cutoff_ms: int,
    keep: Container[str] = (),
) -> list[str]:
    """The keys of ``entries`` (key, version) that expire at ``cutoff_ms``.

    A key expires when its version is below ``cutoff_ms`` (now minus the retention)
    or unusable (None), unless it is in ``keep`` (the keys the source still returns).
    """
    return [
        key
        for key, version in entries
        if (version is None or version < cutoff_ms) and key not in keep
    ]


def sweep_interval(retention_days: float) -> float:
    """Seconds between the starts of two sweeps: a hundredth of the retention (an
    entry outlives it by at most 1 %), at most :data:`SWEEP_MAX_SECONDS`."""
    return min(SWEEP_MAX_SECONDS, retention_days * DAY_MS / 1000 / 100)


@dataclass
class DedupExpiry:
    """Expires old dedup entries, a bounded batch of keys per :meth:`step`.

    A sweep takes a snapshot of the keys, then examines ``batch`` of them per step
    and expires those :func:`expired_keys` selects; the next sweep starts
    ``interval`` seconds after this one started (or when it ends, if later).
    """

    retention_days: float
    batch: int = SWEEP_BATCH
    interval: float | None = None
    #: Keys of the running sweep not examined yet (examined from the end).
    pending: list[str] = field(default_factory=list, repr=False)
    #: ``time.monotonic()`` at which the next sweep may start.
    next_sweep: float = 0.0
    examined: int = 0
    expired: int = 0

    @property
    def retention_ms(self) -> int:
        """The retention in milliseconds."""
        return int(self.retention_days * DAY_MS)

    async def step(
        self,
        versions: VersionStore,
        keep: Container[str],
        *,
        now_ms: int,
        monotonic: float,
        counters: PipelineStats = stats,
    ) -> int:
        """Examine the next batch (starting a sweep when due); the count expired."""
        if not self.pending:
            if monotonic < self.next_sweep:
                return 0
            interval = self.interval
            if interval is None:
                interval = sweep_interval(self.retention_days)
            self.next_sweep = monotonic + interval
            self.pending = versions.keys()
            self.examined = self.expired = 0
            if not self.pending:
                return 0
        chunk = self.pending[-self.batch :]
        del self.pending[-self.batch :]
        cutoff = now_ms - self.retention_ms
        gone = expired_keys(((k, versions.get(k)) for k in chunk), cutoff, keep)
        await versions.expire(gone)  # also retries tombstones that failed before
        if gone:
            counters.incr("dedup_expired", len(gone))
        self.examined += len(chunk)
        self.expired += len(gone)
        if not self.pending and self.expired:
            log.info(
                "fetch_quakes: expired %d of %d dedup entries (older than %g days)",
                self.expired,
                self.examined,
                self.retention_days,
            )
        return len(gone)


@dataclass(frozen=True)
class PollResult:
    """What one poll did."""

    source_url: str
    fetched: int = 0
    produced: int = 0
    skipped_unchanged: int = 0
    failed: int = 0
    oversized: int = 0
    error: str | None = None
    retry_after: float | None = None
    unavailable: bool = False
    #: The dedup keys of the document the source returned (None: no document).
    keys: frozenset[str] | None = field(default=None, repr=False, compare=False)

    @property
    def ok(self) -> bool:
        """True when the source answered and every new feature was delivered."""
        return self.error is None

    @property
    def summary(self) -> str:
        """The ``ok: ...`` / ``error: ...`` text given to ``record_fetch``."""
        if self.error is not None:
            return f"error: {self.error}"
        return f"ok: {self.fetched} features, {self.produced} new"


def dedup_key(feature: Any) -> tuple[str, int]:
    """``(key, version)`` under which a feature is remembered as sent.

    A feature with a usable id and an integer ``properties.updated`` is keyed by
    its id, versioned by ``updated``: it is sent again only when ``updated`` grows.
    Anything else (not an object, no id, no integer ``updated``) cannot be
    versioned, so it is keyed by the SHA-256 of its canonical JSON with version 0:
    it is sent once (and dead-lettered once), not on every poll.
    """
    fid = feature_id(feature)
    if fid is not None:
        props = feature.get("properties")
        updated = props.get("updated") if isinstance(props, dict) else None
        if is_json_int(updated):
            return fid, updated
    canonical = json.dumps(feature, sort_keys=True, separators=(",", ":"))
    digest = hashlib.sha256(canonical.encode("ascii")).hexdigest()
    return f"{HASH_PREFIX}{digest}", 0


async def poll_once(
    source: Source,
    sender: Sender,
    versions: VersionStore,
    *,
    counters: PipelineStats = stats,
    max_value_bytes: int | None = None,
) -> PollResult:
    """Fetch once and produce every new or revised feature; never raises SourceError.

    A feature is produced when its dedup key is unknown or its version (``updated``)
    is larger than the one sent; of several copies in one document the largest
    version is sent. Deliveries are awaited together and only the delivered
    features are saved in ``versions``: a failed send is retried on the next poll.
    A value larger than ``max_value_bytes`` cannot go to Kafka at all: it is logged,
    counted in ``oversized`` and remembered as sent so it is not retried forever.
    What is saved per key is :func:`remembered_version`.
    Counts go to ``counters`` (fetched, produced, skipped_unchanged, fetch_errors)
    and the outcome to ``counters.record_fetch``.
    """
    started = time.perf_counter()
    try:
        result = await source.fetch()
    except SourceError as exc:
        observe_fetch(time.perf_counter() - started, ok=False)
        counters.incr("fetch_errors")
        counters.record_fetch(f"error: {exc}")
        return PollResult(
            source_url=source.url,
            error=str(exc),
            retry_after=getattr(exc, "retry_after", None),
            unavailable=isinstance(exc, SourceUnavailable),
        )
    observe_fetch(time.perf_counter() - started, ok=True)
    features = result.features
    counters.incr("fetched", len(features))

    chosen: dict[str, tuple[int, Any]] = {}
    for feature in features:
        key, version = dedup_key(feature)
        seen = chosen.get(key)
        if seen is None or version > seen[0]:
            chosen[key] = (version, feature)
    new = [
        (key, version, feature)
        for key, (version, feature) in chosen.items()
        if (sent := versions.get(key)) is None or version > sent
    ]

    keys: list[str] = []
    futures: list[Awaitable[Any]] = []
    delivered: dict[str, int] = {}
    oversized = 0
    for key, version, feature in new:
        raw_key, value = encode_raw(feature, result.fetched_at, result.source_url)
        if max_value_bytes is not None and len(value) > max_value_bytes:
            oversized += 1
            delivered[key] = remembered_version(key, version, result.fetched_at)
            log.warning(
                "feature %s is %d bytes, more than Kafka takes (%d): not produced",
                key,
                len(value),
                max_value_bytes,
            )
            continue
        try:
            futures.append(await sender(raw_key, value))
        except Exception as exc:
            futures.append(failed_future(exc))
        keys.append(key)
    outcomes = await asyncio.gather(*futures, return_exceptions=True)
    errors = [res for res in outcomes if isinstance(res, BaseException)]
    for key, res in zip(keys, outcomes, strict=True):
        if not isinstance(res, BaseException):
            delivered[key] = remembered_version(key, chosen[key][0], result.fetched_at)
    try:
        await versions.save(delivered)
    except Exception:  # a version store that raises must not lose the poll's counts
        log.exception("could not save the dedup versions")

    produced = len(keys) - len(errors)
    skipped = len(features) - len(new)
    counters.incr("produced", produced)
    counters.incr("skipped_unchanged", skipped)
    error: str | None = None
    if errors:
        error = (
            f"{len(errors)} of {len(keys)} sends to Kafka failed "
            f"(first: {type(errors[0]).__name__}: {errors[0]}); retried next poll"
        )
        counters.incr("fetch_errors")
    poll = PollResult(
        source_url=result.source_url,
        fetched=len(features),
        produced=produced,
        skipped_unchanged=skipped,
        failed=len(errors),
        oversized=oversized,
        error=error,
        keys=frozenset(chosen),
    )
    counters.record_fetch(poll.summary)
    return poll


# ---------------------------------------------------------------------- the timer
@dataclass
class FetchState:
    """What the timer keeps between ticks (one per worker process)."""

    interval: float
    source_name: str
    source_factory: Callable[[], Source]
    versions: VersionStore
    sender: Sender
    ready: Callable[[], bool] = lambda: True
    max_value_bytes: int | None = None
    source: Source | None = None
    #: ``time.monotonic()`` before which no poll is made: the next interval, or a
    #: longer ``Retry-After``. 0 polls on the first tick, right after start.
    not_before: float = 0.0
    waiting_logged: bool = False
    #: Expires old dedup entries on the ticks after the first document (None: never).
    expiry: DedupExpiry | None = None
    #: The dedup keys of the last document the source returned (None: none yet).
    seen: frozenset[str] | None = None


async def fetch_tick(
    state: FetchState,
    *,
    counters: PipelineStats = stats,
    monotonic: Callable[[], float] = time.monotonic,
    clock: Callable[[], float] = time.time,
) -> PollResult | None:
    """One tick of the timer: poll unless the tables are not ready or the server
    asked for a pause, then one bounded step of the dedup expiry; never raises (but
    CancelledError). The poll's result, or None when it did not poll.
    """
    if not state.ready():
        if not state.waiting_logged:
            log.info("fetch_quakes: waiting for table recovery before polling")
            state.waiting_logged = True
        return None
    state.waiting_logged = False
    result = None
    if monotonic() >= state.not_before:
        result = await _poll(state, counters, monotonic)
    if state.expiry is not None and state.seen is not None:
        try:
            await state.expiry.step(
                state.versions,
                state.seen,
                now_ms=int(clock() * 1000),
                monotonic=monotonic(),
                counters=counters,
            )
        except Exception:  # the sweep must not stop the fetcher either
            log.exception("fetch_quakes: dedup expiry failed; retried next tick")
    return result


async def _poll(
    state: FetchState, counters: PipelineStats, monotonic: Callable[[], float]
) -> PollResult | None:
    """Poll the source once and schedule the next poll."""
    if state.source is None:
        state.source = state.source_factory()
    source = state.source
    try:
        result = await poll_once(
            source,
            state.sender,
            state.versions,
            counters=counters,
            max_value_bytes=state.max_value_bytes,
        )
    except Exception as exc:  # a bug or a Kafka error must not stop the worker
        counters.incr("fetch_errors")
        counters.record_fetch(f"error: {type(exc).__name__}: {exc}")
        log.exception("fetch_quakes: poll of %s failed", source.url)
        return None
    if result.keys is not None:
        state.seen = result.keys
    if result.ok:
        state.not_before = monotonic() + state.interval
        log.info("fetch_quakes: %s from %s", result.summary, result.source_url)
        return result
    wait = max(state.interval, result.retry_after or 0.0)
    state.not_before = monotonic() + wait
    _log_failure(result, wait, offline_hint=state.source_name == "usgs")
    return result


def _log_failure(result: PollResult, wait: float, *, offline_hint: bool) -> None:
    """Log the one line of a failed poll, with the time of the next one."""
    at = (datetime.now(UTC) + timedelta(seconds=wait)).isoformat(timespec="seconds")
    error = result.error or "unknown error"
    if result.failed:
        log.warning(
            "fetch_quakes: %s (Kafka); next poll at %s (in %.0fs)", error, at, wait
        )
        return
    if result.source_url not in error:
        error = f"{result.source_url}: {error}"
    log.warning(
        "fetch_quakes: source failed: %s; next poll at %s (in %.0fs)%s",
        error,
        at,
        wait,
        "; to run offline set SOURCE=replay" if offline_hint else "",
    )


async def _send_raw(key: bytes | None, value: bytes) -> Awaitable[Any]:
    return await raw_topic.send(key=key, value=value)


def _tables_ready() -> bool:
    """True when table recovery is complete and no rebalance is running."""
    recovery = app.tables.recovery  # type: ignore[attr-defined]
    return bool(
        recovery.completed.is_set() and not app.rebalancing and not app.in_recovery
    )


#: The timer's state in this worker.
fetch_state = FetchState(
    interval=settings.fetch_interval_seconds,
    source_name=settings.source,
    source_factory=lambda: build_source(settings),
    versions=TableVersions(sent_versions),
    sender=_send_raw,
    ready=_tables_ready,
    max_value_bytes=int(app.conf.producer_max_request_size) - RECORD_OVERHEAD_BYTES,
    expiry=DedupExpiry(settings.dedup_retention_days),
)


#: The timer wakes up this often and polls when the interval has passed, so the
#: first poll comes right after start (and after a rebalance), not an interval later.
TICK_SECONDS = min(settings.fetch_interval_seconds, 1.0)


@app.timer(TICK_SECONDS, on_leader=True)
async def fetch_quakes() -> None:
    """Poll the source when due (leader only) and send what is new to raw."""
    await fetch_tick(fetch_state)


@app.on_before_shutdown.connect
async def _close_source(sender: Any, /, *args: Any, **kwargs: Any) -> None:
    """Close the source's HTTP session when the worker stops."""
    source, fetch_state.source = fetch_state.source, None
    if source is not None:
        await source.close()
