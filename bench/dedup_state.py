"""Start-up cost of the fetcher's dedup table, before and after its entries expire.

Run against the local stack (``make up``); it takes several minutes and is not
part of the test suite::

    .venv/bin/python -m bench.dedup_state            # 1,000,000 ids, 10 kept
    .venv/bin/python -m bench.dedup_state --ids 100000 --json out.json

Steps, all on fresh ``bench-dedup-*`` topics, group and schema (removed at the end):

1. Writes ``--ids`` entries straight into the ``sent-versions`` changelog with
   aiokafka, in the table's format (key: the JSON string of the id; value: the
   JSON integer ``updated`` in epoch ms); all but ``--keep`` of them are as old
   as the bench start, the kept ones ten days newer.
2. ``full``: a worker (``SOURCE=replay`` of an empty capture,
   ``DEDUP_RETENTION_DAYS=30``, so nothing expires) recovers the table. Reported:
   seconds from process start to faust's "Restoring state from changelog topics",
   "Done reading from changelog topics" and the fetcher's first poll, and the
   worker's RSS (``VmRSS``) at the first poll and its peak (``VmHWM``).
3. ``sweep``: a worker with ``DEDUP_RETENTION_DAYS=0.001`` (86.4 s; started once
   the old entries are older than that) recovers the same table and expires all
   but the kept entries (``agents.fetch.SWEEP_BATCH`` per one-second tick, with
   tombstones). Reported: the same start-up figures, the seconds from process
   start until ``dedup_expired`` reaches ``ids - keep`` and the RSS then (of the
   process that swept).
4. ``compacted``: waits until the broker's log cleaner has compacted the expired
   values away (their tombstones are still there), then a worker
   (``DEDUP_RETENTION_DAYS=30``) recovers the changelog: the figures of step 2.
   The bench creates the changelog with small segments (``segment.bytes`` 1 MiB,
   ``segment.ms`` 10 s, ``min.cleanable.dirty.ratio`` 0.0001,
   ``delete.retention.ms`` 1 s) and rewrites one kept entry every 11 s to roll
   the last segment, so this takes seconds to minutes; the app's own changelog
   (broker defaults, ``segment.ms`` one day, tombstones kept a day) gets there in
   a day or two. Reported: records left in the changelog.
5. ``after``: the same once the cleaner has dropped the tombstones too.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import tempfile
import time
import urllib.request
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.common import (
    Run,
    base_settings,
    contender_process,
    delete_groups,
    delete_prefixed_topics,
    drop_schema,
    free_port,
    machine,
    settings_env,
)
from streamapp.kafka import aiokafka_kwargs
from streamapp.settings import Settings

__all__ = ["Startup", "main"]

FAUST = Path(sys.executable).with_name("faust")
#: Log lines whose first appearance is timed (label -> text in the line).
MILESTONES = {
    "restoring_s": "Restoring state from changelog topics",
    "restored_s": "Done reading from changelog topics",
    "first_poll_s": "fetch_quakes: ok:",
}
LOG_TIME = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})\]")
DAY_MS = 86_400_000
CHANGELOG_CONFIGS = {
    "cleanup.policy": "compact",
    "segment.bytes": str(1024 * 1024),
    "segment.ms": "10000",
    "min.cleanable.dirty.ratio": "0.0001",
    "min.compaction.lag.ms": "0",
    "delete.retention.ms": "1000",
}


@dataclass
class Startup:
    """One worker start: milestones (seconds after the process started) and RSS."""

    label: str
    restoring_s: float | None = None
    restored_s: float | None = None
    first_poll_s: float | None = None
    rss_first_poll_mib: float | None = None
    peak_rss_mib: float | None = None
    swept_s: float | None = None
    rss_swept_mib: float | None = None


def key_of(i: int) -> bytes:
    return json.dumps(f"bench{i:09d}").encode()


async def write_changelog(
    settings: Settings, topic: str, ids: int, keep: int, old_ms: int
) -> float:
    """Create the changelog and fill it; the seconds the writes took."""
    from aiokafka import AIOKafkaProducer
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(**aiokafka_kwargs(settings))
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(topic, 1, 1, topic_configs=CHANGELOG_CONFIGS)]
        )
    finally:
        await admin.close()
    producer = AIOKafkaProducer(
        **aiokafka_kwargs(settings),
        acks="all",
        linger_ms=50,
        max_batch_size=512 * 1024,
        compression_type="gzip",
    )
    await producer.start()
    started = time.perf_counter()
    try:
        pending: list[Any] = []
        for i in range(ids):
            value = old_ms + 10 * DAY_MS if i < keep else old_ms
            pending.append(
                await producer.send(topic, key=key_of(i), value=str(value).encode())
            )
            if len(pending) >= 20_000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return time.perf_counter() - started


async def roll_and_count(
    settings: Settings,
    topic: str,
    keep: int,
    old_ms: int,
    *,
    tombstones_too: bool,
    patience: float,
) -> dict[str, Any]:
    """Roll the active segment until the cleaner has compacted the changelog.

    Every 11 s (more than ``segment.ms``) kept entry 0 is written again, with the
    same value: that rolls the segment and gives the cleaner dirty bytes, so it
    runs again (a tombstone goes only in a pass after its ``delete.retention.ms``).
    Done when values of no more than the kept keys are left (and, with
    ``tombstones_too``, no tombstone either) or after ``patience`` seconds.
    """
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

    started = time.monotonic()
    tp = TopicPartition(topic, 0)
    while True:
        await asyncio.sleep(11)  # older than segment.ms: the next write rolls
        producer = AIOKafkaProducer(**aiokafka_kwargs(settings), acks="all")
        await producer.start()
        try:
            value = str(old_ms + 10 * DAY_MS).encode()
            await (await producer.send(topic, key=key_of(0), value=value))
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(
            **aiokafka_kwargs(settings),
            enable_auto_commit=False,
            max_partition_fetch_bytes=8 * 1024 * 1024,
        )
        await consumer.start()
        values = tombstones = 0
        live: set[bytes] = set()
        try:
            consumer.assign([tp])
            await consumer.seek_to_beginning(tp)
            end = (await consumer.end_offsets([tp]))[tp]
            while await consumer.position(tp) < end:
                batch = await consumer.getmany(tp, timeout_ms=1000)
                for record in batch.get(tp, []):
                    if record.value is None:
                        tombstones += 1
                    else:
                        values += 1
                        live.add(record.key or b"")
        finally:
            await consumer.stop()
        waited = time.monotonic() - started
        # The last few rewrites of entry 0 are in segments not cleaned yet.
        done = len(live) <= keep and (tombstones == 0 or not tombstones_too)
        print(f"[dedup_state] {values:,} values, {tombstones:,} tombstones left")
        if done or waited > patience:
            return {
                "records_left": values + tombstones,
                "values_left": values,
                "tombstones_left": tombstones,
                "end_offset": end,
                "waited_s": round(waited, 1),
            }


def milestones(log: Path, started: float) -> dict[str, float]:
    """Seconds after ``started`` (epoch) of the first line of each milestone."""
    out: dict[str, float] = {}
    for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
        match = LOG_TIME.match(line)
        if not match:
            continue
        for label, text in MILESTONES.items():
            if label not in out and text in line:
                at = datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f")
                out[label] = round(at.timestamp() - started, 2)
    return out


def rss_mib(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of ``pid`` in MiB."""
    fields: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(rest.split()[0]) / 1024
    return round(fields["VmRSS"], 1), round(fields["VmHWM"], 1)


def api_stats(port: int) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(
            f"http://127.0.0.1:{port}/api/stats", timeout=5
        ) as resp:
            return dict(json.loads(resp.read()))
    except OSError:
        return None


def start_worker(
    label: str,
    settings: Settings,
    replay: Path,
    workdir: Path,
    retention_days: str,
    expire: int | None = None,
    patience: float = 900.0,
) -> Startup:
    """Start a worker, wait for its first poll (and for ``expire`` expiries)."""
    port = free_port()
    env = settings_env(
        settings,
        SOURCE="replay",
        REPLAY_FILE=str(replay),
        WEB_PORT=str(port),
        FETCH_INTERVAL_SECONDS="5",
        DEDUP_RETENTION_DAYS=retention_days,
        LOG_LEVEL="info",
    )
    log = workdir / f"{label}.log"
    argv = [str(FAUST), "-A", "streamapp", "worker", "-l", "info"]
    argv += ["--web-port", str(port)]
    result = Startup(label)
    started = time.time()
    with contender_process(argv, env, log) as proc:
        deadline = time.monotonic() + patience
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{label}: worker exited; see {log}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{label}: no first poll in {patience} s; {log}")
            stats = api_stats(port)
            if stats and stats.get("last_fetch_at"):
                result.rss_first_poll_mib = rss_mib(proc.pid)[0]
                break
            time.sleep(0.2)
        if expire is not None:
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"{label}: worker exited; see {log}")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{label}: sweep unfinished; see {log}")
                stats = api_stats(port)
                if stats and stats.get("dedup_expired", 0) >= expire:
                    result.swept_s = round(time.time() - started, 2)
                    result.rss_swept_mib = rss_mib(proc.pid)[0]
                    break
                time.sleep(0.5)
        result.peak_rss_mib = rss_mib(proc.pid)[1]
    for name, value in milestones(log, started).items():
        setattr(result, name, value)
    print(f"[dedup_state] {asdict(result)}", flush=True)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ids", type=int, default=1_000_000)
    parser.add_argument("--keep", type=int, default=10)
    parser.add_argument("--json", type=Path, default=None, help="write results here")
    args = parser.parse_args(argv)
    run = Run("dedup")
    settings = run.settings(base_settings(), topic_partitions=1)
    changelog = f"{run.prefix}-sent-versions-changelog"
    old_ms = int(time.time() * 1000)
    out: dict[str, Any] = {"ids": args.ids, "keep": args.keep, "machine": machine()}
    with tempfile.TemporaryDirectory(prefix="dedup-state-") as tmp:
        workdir = Path(tmp)
        replay = workdir / "empty.geojson"
        replay.write_text('{"type": "FeatureCollection", "features": []}')
        try:
            wrote = asyncio.run(
                write_changelog(settings, changelog, args.ids, args.keep, old_ms)
            )
            out["write_s"] = round(wrote, 1)
            print(f"[dedup_state] {args.ids:,} entries written in {wrote:.1f} s")
            full = start_worker("full", settings, replay, workdir, "30")
            wait = old_ms / 1000 + 0.001 * 86_400 + 2 - time.time()
            if wait > 0:
                time.sleep(wait)
            sweep = start_worker(
                "sweep",
                settings,
                replay,
                workdir,
                "0.001",
                expire=args.ids - args.keep,
            )
            runs = [full, sweep]
            for label, tombstones_too in (("compacted", False), ("after", True)):
                out[label] = asyncio.run(
                    roll_and_count(
                        settings,
                        changelog,
                        args.keep,
                        old_ms,
                        tombstones_too=tombstones_too,
                        patience=600.0,
                    )
                )
                print(f"[dedup_state] {label}: {out[label]}", flush=True)
                runs.append(start_worker(label, settings, replay, workdir, "30"))
            out["runs"] = [asdict(r) for r in runs]
        finally:
            asyncio.run(delete_prefixed_topics(settings, run.prefix))
            asyncio.run(delete_groups(settings, run.prefix))
            drop_schema(settings)
    text = json.dumps(out, indent=2)
    print(text)
    if args.json is not None:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
