"""Latency probe: when each row became visible in Postgres, per transaction."""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any

from bench.common import pg_connect
from streamapp.settings import Settings

__all__ = ["LatencyProbe", "install_probe", "percentiles"]

#: Rows scanned behind the highest sequence number seen, per poll: a transaction
#: that wrote earlier sequence numbers may commit after a later one.
LOOKBACK = 50_000


def install_probe(settings: Settings) -> None:
    """Add ``bench_commit`` and a trigger that logs every write to ``earthquakes``.

    The trigger records the event id, the writing transaction (``txid_current()``)
    and ``clock_timestamp()`` (the time of the row write; ``now()`` would be the
    transaction start). The table is schema-qualified in the function body because
    the sink's session may have another ``search_path``.
    """
    schema = settings.postgres_schema
    with contextlib.closing(pg_connect(settings)) as conn, conn.cursor() as cur:
        cur.execute(
            f"""
            CREATE TABLE "{schema}".bench_commit (
                seq bigserial PRIMARY KEY,
                id text NOT NULL,
                tx bigint NOT NULL,
                written_at timestamptz NOT NULL
            );
            CREATE FUNCTION "{schema}".bench_mark() RETURNS trigger
            LANGUAGE plpgsql AS $$
            BEGIN
                INSERT INTO "{schema}".bench_commit (id, tx, written_at)
                VALUES (NEW.id, txid_current(), clock_timestamp());
                RETURN NULL;
            END $$;
            CREATE TRIGGER bench_mark AFTER INSERT OR UPDATE ON "{schema}".earthquakes
                FOR EACH ROW EXECUTE FUNCTION "{schema}".bench_mark();
            """
        )
        conn.commit()


def percentiles(values: list[float]) -> dict[str, float]:
    """p50/p95/p99 (nearest rank), max and mean of ``values``, in seconds."""
    if not values:
        return {}
    ordered = sorted(values)

    def rank(p: float) -> float:
        k = max(0, min(len(ordered) - 1, int(-(-p * len(ordered) // 100)) - 1))
        return ordered[k]

    return {
        "n": len(ordered),
        "p50": round(rank(50), 4),
        "p95": round(rank(95), 4),
        "p99": round(rank(99), 4),
        "max": round(ordered[-1], 4),
        "mean": round(sum(ordered) / len(ordered), 4),
    }


class LatencyProbe:
    """Polls ``bench_commit`` every ``interval`` s; a transaction's rows are
    *committed* (visible to another session) by the first poll that sees them."""

    def __init__(self, settings: Settings, interval: float = 0.02) -> None:
        self.settings = settings
        self.interval = interval
        self.visible_at: dict[int, float] = {}
        self.polls = 0
        self.poll_seconds = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def start(self) -> LatencyProbe:
        self._thread.start()
        return self

    def stop(self) -> None:
        time.sleep(self.interval * 3)
        self._stop.set()
        self._thread.join(timeout=10)

    def _loop(self) -> None:
        schema = self.settings.postgres_schema
        top = 0
        with contextlib.closing(pg_connect(self.settings)) as conn:
            conn.autocommit = True
            with conn.cursor() as cur:
                while not self._stop.is_set():
                    t = time.time()
                    cur.execute(
                        f'SELECT tx, max(seq) FROM "{schema}".bench_commit'
                        " WHERE seq > %s GROUP BY tx",
                        (top - LOOKBACK,),
                    )
                    seen = time.time()
                    for tx, seq in cur.fetchall():
                        self.visible_at.setdefault(int(tx), seen)
                        top = max(top, int(seq))
                    self.polls += 1
                    self.poll_seconds += seen - t
                    self._stop.wait(self.interval)

    def latencies(self, sent_at: dict[str, float]) -> dict[str, Any]:
        """Latency of every id in ``sent_at`` (its first write; ids are not revised).

        ``committed``: first poll that saw the row's transaction minus the send
        time (an upper bound, by at most one poll interval plus the poll's own
        duration); ``written``: ``clock_timestamp()`` of the row write minus the
        send time (a lower bound: the commit follows the write).
        """
        schema = self.settings.postgres_schema
        with (
            contextlib.closing(pg_connect(self.settings)) as conn,
            conn.cursor() as cur,
        ):
            cur.execute(
                "SELECT DISTINCT ON (id) id, tx, extract(epoch FROM written_at)"
                f' FROM "{schema}".bench_commit ORDER BY id, seq'
            )
            rows = cur.fetchall()
        committed: list[float] = []
        written: list[float] = []
        missing = 0
        for event_id, tx, written_epoch in rows:
            sent = sent_at.get(event_id)
            if sent is None:
                continue  # warm-up rows
            visible = self.visible_at.get(int(tx))
            if visible is None:
                missing += 1
                continue
            committed.append(visible - sent)
            written.append(float(written_epoch) - sent)
        return {
            "committed": percentiles(committed),
            "written": percentiles(written),
            "unmatched": missing + len(sent_at) - len(committed) - missing,
            "probe": {
                "interval_s": self.interval,
                "polls": self.polls,
                "mean_poll_ms": round(self.poll_seconds / max(self.polls, 1) * 1e3, 2),
                "transactions": len(self.visible_at),
            },
        }
