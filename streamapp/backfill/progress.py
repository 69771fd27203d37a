"""The backfill's progress in PostgreSQL (table ``backfill_runs``, migration 0004).

Usage (blocking calls: run them in a thread from async code)::

    store = ProgressStore(settings)
    run = store.open(params, source_url=client.url)     # new, or the one to resume
    store.slice_done(run.id, done_until=end, fetched=120, produced=118, skipped=2)
    store.finish(run.id)
    store.latest(5)                                      # for /api/stats and /metrics

One row per set of parameters (:attr:`Params.key`): a run interrupted anywhere
resumes after its last finished slice, and a finished one is not run again
unless it is restarted (:meth:`ProgressStore.restart`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from psycopg2 import sql
from sqlalchemy.engine import Engine

from streamapp.backfill.fdsn import Window
from streamapp.db import qualified, transaction
from streamapp.settings import Settings

__all__ = ["TABLE", "Params", "ProgressStore", "RunState"]

#: The progress table (in ``POSTGRES_SCHEMA``).
TABLE = "backfill_runs"

_COLUMNS = (
    "id",
    "since",
    "until",
    "min_magnitude",
    "bbox",
    "source_url",
    "done_until",
    "slices_done",
    "events_expected",
    "events_fetched",
    "events_produced",
    "events_skipped",
    "started_at",
    "updated_at",
    "finished_at",
    "last_error",
)


@dataclass(frozen=True)
class Params:
    """What identifies a backfill: its range and filters."""

    since: datetime
    until: datetime
    min_magnitude: float | None = None
    bbox: tuple[float, float, float, float] | None = None

    @property
    def key(self) -> str:
        """The canonical text of the parameters (the resume key)."""
        mag = "-" if self.min_magnitude is None else f"{self.min_magnitude:g}"
        box = "-" if self.bbox is None else ",".join(f"{v:g}" for v in self.bbox)
        return (
            f"since={self.since.astimezone(UTC).isoformat()} "
            f"until={self.until.astimezone(UTC).isoformat()} minmag={mag} bbox={box}"
        )

    def window(self) -> Window:
        """The whole range as a :class:`Window` of the service."""
        return Window(self.since, self.until, self.min_magnitude, self.bbox)


@dataclass(frozen=True)
class RunState:
    """One row of the progress table."""

    id: int
    since: datetime
    until: datetime
    min_magnitude: float | None
    bbox: tuple[float, ...] | None
    source_url: str
    done_until: datetime
    slices_done: int
    events_expected: int | None
    events_fetched: int
    events_produced: int
    events_skipped: int
    started_at: datetime
    updated_at: datetime
    finished_at: datetime | None
    last_error: str | None

    @property
    def finished(self) -> bool:
        """True when the whole range is done."""
        return self.finished_at is not None

    @property
    def fraction(self) -> float:
        """The share of the time range done, 0 to 1."""
        span = (self.until - self.since).total_seconds()
        done = (self.done_until - self.since).total_seconds()
        return 1.0 if span <= 0 else max(0.0, min(1.0, done / span))

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (``/api/stats``)."""

        def iso(value: datetime | None) -> str | None:
            return value.astimezone(UTC).isoformat() if value is not None else None

        return {
            "id": self.id,
            "since": iso(self.since),
            "until": iso(self.until),
            "min_magnitude": self.min_magnitude,
            "bbox": list(self.bbox) if self.bbox is not None else None,
            "source_url": self.source_url,
            "done_until": iso(self.done_until),
            "fraction_done": round(self.fraction, 4),
            "slices_done": self.slices_done,
            "events_expected": self.events_expected,
            "events_fetched": self.events_fetched,
            "events_produced": self.events_produced,
            "events_skipped": self.events_skipped,
            "started_at": iso(self.started_at),
            "updated_at": iso(self.updated_at),
            "finished_at": iso(self.finished_at),
            "state": "finished"
            if self.finished
            else ("failed" if self.last_error else "running"),
            "last_error": self.last_error,
        }


def _row(values: Any) -> RunState:
    data = dict(zip(_COLUMNS, values, strict=True))
    if data["bbox"] is not None:
        data["bbox"] = tuple(float(v) for v in data["bbox"])
    return RunState(**data)


class ProgressStore:
    """Reads and writes ``backfill_runs``; every call is one short transaction."""

    def __init__(self, settings: Settings, *, engine: Engine | None = None) -> None:
        self.settings = settings
        self.engine = engine
        self.table = qualified(settings.postgres_schema, TABLE)
        self._select = sql.SQL("SELECT {} FROM {}").format(
            sql.SQL(", ").join(sql.Identifier(c) for c in _COLUMNS), self.table
        )

    def open(
        self, params: Params, *, source_url: str, expected: int | None = None
    ) -> RunState:
        """The row of ``params``, created (done up to ``since``) if there is none."""
        with self._tx("backfill progress") as cur:
            cur.execute(
                sql.SQL(
                    "INSERT INTO {} (params_key, since, until, min_magnitude, bbox,"
                    " source_url, done_until, events_expected)"
                    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
                    " ON CONFLICT (params_key) DO UPDATE SET source_url ="
                    " EXCLUDED.source_url"
                ).format(self.table),
                (
                    params.key,
                    params.since,
                    params.until,
                    params.min_magnitude,
                    list(params.bbox) if params.bbox is not None else None,
                    source_url,
                    params.since,
                    expected,
                ),
            )
            cur.execute(self._select + sql.SQL(" WHERE params_key = %s"), (params.key,))
            return _row(cur.fetchone())

    def restart(self, run_id: int) -> RunState:
        """Start the row's range over (counts zeroed, not finished)."""
        return self._update(
            run_id,
            "done_until = since, slices_done = 0, events_fetched = 0,"
            " events_produced = 0, events_skipped = 0, finished_at = NULL,"
            " last_error = NULL, started_at = now()",
            (),
        )

    def expect(self, run_id: int, expected: int | None) -> RunState:
        """Record how many events the range holds (the service's count)."""
        return self._update(run_id, "events_expected = %s", (expected,))

    def slice_done(
        self,
        run_id: int,
        *,
        done_until: datetime,
        fetched: int,
        produced: int,
        skipped: int,
    ) -> RunState:
        """A slice ending at ``done_until`` is done: every event of it is in Kafka."""
        return self._update(
            run_id,
            "done_until = %s, slices_done = slices_done + 1,"
            " events_fetched = events_fetched + %s,"
            " events_produced = events_produced + %s,"
            " events_skipped = events_skipped + %s, last_error = NULL",
            (done_until, fetched, produced, skipped),
        )

    def finish(self, run_id: int) -> RunState:
        """The whole range is done."""
        return self._update(run_id, "finished_at = now(), last_error = NULL", ())

    def fail(self, run_id: int, error: str) -> RunState:
        """Record why the run stopped (it resumes after its last finished slice)."""
        return self._update(run_id, "last_error = %s", (error[:2000],))

    def latest(self, limit: int = 5) -> list[RunState]:
        """The ``limit`` most recently updated rows, newest first."""
        with self._tx("backfill status") as cur:
            cur.execute(
                self._select + sql.SQL(" ORDER BY updated_at DESC, id DESC LIMIT %s"),
                (limit,),
            )
            return [_row(r) for r in cur.fetchall()]

    def _update(self, run_id: int, assignments: str, args: tuple[Any, ...]) -> RunState:
        # ``assignments`` is one of this class's literals, never outside input.
        with self._tx("backfill progress") as cur:
            statement = sql.SQL(
                "UPDATE {} SET " + assignments + ", updated_at = now()"
                " WHERE id = %s RETURNING {}"
            ).format(self.table, sql.SQL(", ").join(map(sql.Identifier, _COLUMNS)))
            cur.execute(statement, (*args, run_id))
            row = cur.fetchone()
        if row is None:
            raise KeyError(f"no backfill run {run_id}")
        return _row(row)

    def _tx(self, action: str) -> Any:
        return transaction(self.settings, engine=self.engine, action=action)
