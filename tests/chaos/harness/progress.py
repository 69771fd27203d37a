"""Samples a run's schema while it streams: how far each raw partition got, when."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

import psycopg2
from psycopg2 import sql

from tests.chaos.harness.db import Db

__all__ = ["Progress", "Sample"]

#: ``(monotonic time, rows + dead letters, largest raw offset stored per partition)``
Sample = tuple[float, int, dict[int, int]]


class Progress(threading.Thread):
    """Samples the schema every ``interval`` s: rows + dead letters, and the largest
    raw offset stored per raw partition (how far each partition got)."""

    def __init__(self, db: Db, raw_topic: str, interval: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.db = db
        self.raw_topic = raw_topic
        self.interval = interval
        self.samples: list[Sample] = []
        self._halt = threading.Event()
        self._lock = threading.Lock()

    def _query(self) -> sql.Composable:
        return sql.SQL(
            "SELECT p, max(o), count(*) FROM ("
            " SELECT raw_partition AS p, raw_offset AS o FROM {q}"
            " UNION ALL SELECT source_partition, source_offset FROM {d}"
            " WHERE source_topic = %s) x GROUP BY p"
        ).format(q=self.db.table("earthquakes"), d=self.db.table("dead_letters"))

    def run(self) -> None:
        """Sample until :meth:`halt`; a failed sample (database down) is skipped."""
        conn = None
        query = self._query()
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
        """Stop sampling and wait (up to 10 s) for the thread."""
        self._halt.set()
        self.join(10)

    def latest(self) -> Sample:
        """The last sample (a zero one before the first)."""
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

    def first_after(self, t: float) -> Sample | None:
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
