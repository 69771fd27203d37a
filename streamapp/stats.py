"""Pipeline counters: the same numbers are logged, served at /api/stats and exported."""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

__all__ = ["COUNTERS", "PipelineStats", "stats"]

#: The counters every part of the pipeline increments (name -> meaning).
COUNTERS: dict[str, str] = {
    "fetched": "features received from the source",
    "fetch_errors": "polls of the source that failed",
    "fetch_retries": "source requests retried within a poll (backoff or Retry-After)",
    "produced": "messages produced to the raw topic",
    "skipped_unchanged": "features not re-sent because their `updated` did not grow",
    "dedup_expired": "fetcher dedup entries expired after DEDUP_RETENTION_DAYS",
    "valid": "raw messages that validated and went to the clean topic",
    "invalid": "raw messages that failed validation and went to the dead-letter topic",
    "upserted": "rows written to the earthquakes table",
    "sink_rejected": "clean events the database rejected for good (dead-lettered)",
    "sink_retries": "database writes retried after a transient error",
    "dead_lettered": "dead letters persisted to the dead_letters table",
    "activity_windows": "activity window rows written to the activity table",
    "alerts_stored": "alerts stored for the first time in the alerts table",
    "alerts_delivered": "alerts the webhook accepted (2xx)",
}


@dataclass
class PipelineStats:
    """Thread-safe counters plus the last fetch's time and result."""

    counts: Counter[str] = field(default_factory=Counter)
    invalid_by_kind: Counter[str] = field(default_factory=Counter)
    last_fetch_at: datetime | None = None
    last_fetch_result: str | None = None
    started_at: float = field(default_factory=time.time)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def incr(self, name: str, n: int = 1) -> None:
        """Add ``n`` to counter ``name`` (one of :data:`COUNTERS`)."""
        if name not in COUNTERS:
            raise KeyError(f"unknown counter {name!r}")
        with self._lock:
            self.counts[name] += n

    def incr_invalid(self, kind: str, n: int = 1) -> None:
        """Count ``n`` invalid messages of error kind ``kind``."""
        with self._lock:
            self.counts["invalid"] += n
            self.invalid_by_kind[kind] += n

    def record_fetch(self, result: str) -> None:
        """Remember when the source was last polled and how it went."""
        with self._lock:
            self.last_fetch_at = datetime.now(UTC)
            self.last_fetch_result = result

    def snapshot(self) -> dict[str, Any]:
        """A JSON-ready copy of every counter."""
        with self._lock:
            out: dict[str, Any] = {name: self.counts.get(name, 0) for name in COUNTERS}
            out["invalid_by_kind"] = dict(self.invalid_by_kind)
            out["last_fetch_at"] = (
                self.last_fetch_at.isoformat() if self.last_fetch_at else None
            )
            out["last_fetch_result"] = self.last_fetch_result
            out["uptime_seconds"] = round(time.time() - self.started_at, 3)
        return out

    def reset(self) -> None:
        """Zero everything (tests)."""
        with self._lock:
            self.counts.clear()
            self.invalid_by_kind.clear()
            self.last_fetch_at = None
            self.last_fetch_result = None


#: The process-wide counters.
stats = PipelineStats()
