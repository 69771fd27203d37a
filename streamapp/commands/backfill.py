"""``faust -A streamapp backfill --since DATE --until DATE``: history from USGS FDSN.

Example::

    faust -A streamapp backfill --since 2024-01-01 --until 2024-02-01 \\
        --min-magnitude 4.5
    faust -A streamapp backfill --since 2011-03-01 --until 2011-04-01 \\
        --bbox 135,30,150,45 --rate 200

Queries ``BACKFILL_URL`` (the USGS FDSN event service) slice by slice, produces
each feature into the raw topic in the live fetcher's envelope at most at
``BACKFILL_EVENTS_PER_SECOND`` (``--rate``), shows a progress bar on stderr and
prints one summary line. Interrupted, the same command resumes after the last
finished slice; finished, it does nothing unless ``--restart``. Exit codes: 0 done,
1 the service or Kafka failed (run it again to resume), 2 bad arguments,
130 interrupted (SIGINT/SIGTERM; run it again to resume).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import signal
import sys
from collections.abc import Coroutine, Sequence
from datetime import datetime
from typing import Any, NoReturn, TypeVar

import click
from faust.cli import AppCommand, option

from streamapp.app import app, settings
from streamapp.backfill.display import ProgressBar
from streamapp.backfill.fdsn import FdsnClient
from streamapp.backfill.known import load_sent_versions
from streamapp.backfill.progress import Params, ProgressStore
from streamapp.backfill.run import Backfill
from streamapp.db import migrate
from streamapp.delivery import Outgoing, deliver
from streamapp.exceptions import BadRequest, Interrupted, StreamappError
from streamapp.queries import parse_time

__all__ = ["backfill", "parse_bbox", "parse_params"]

T = TypeVar("T")

#: Delivery rounds (with backoff) before the backfill stops and says so.
DELIVERY_ATTEMPTS = 8
#: Room left in a producer request for the key, headers and record overhead.
RECORD_OVERHEAD_BYTES = 1024


def parse_bbox(raw: str) -> tuple[float, float, float, float]:
    """``min_lon,min_lat,max_lon,max_lat`` as four floats; BadRequest if malformed."""
    parts = raw.split(",")
    try:
        values = [float(p) for p in parts]
    except ValueError:
        values = []
    if len(values) != 4 or not all(math.isfinite(v) for v in values):
        raise BadRequest(
            f"--bbox {raw!r} must be min_lon,min_lat,max_lon,max_lat, "
            "e.g. 135,30,150,45"
        )
    min_lon, min_lat, max_lon, max_lat = values
    if not (-360 <= min_lon < max_lon <= 360 and -90 <= min_lat < max_lat <= 90):
        raise BadRequest(
            f"--bbox {raw!r}: longitudes must be -360..360 and latitudes -90..90, "
            "each minimum below its maximum"
        )
    return min_lon, min_lat, max_lon, max_lat


def parse_params(
    since: str, until: str, min_magnitude: float | None, bbox: str | None
) -> Params:
    """The backfill's parameters from the command line; BadRequest if wrong."""
    start: datetime = parse_time("--since", since)
    end: datetime = parse_time("--until", until)
    if end <= start:
        raise BadRequest(f"--until {until} must be after --since {since}")
    if min_magnitude is not None and not -2 <= min_magnitude <= 10:
        raise BadRequest(f"--min-magnitude {min_magnitude:g} must be -2..10")
    return Params(
        start, end, min_magnitude, parse_bbox(bbox) if bbox is not None else None
    )


async def _send(messages: Sequence[tuple[bytes | None, bytes]]) -> None:
    from streamapp.topics import raw_topic

    await deliver(
        [Outgoing(raw_topic, key, value) for key, value in messages],
        attempts=DELIVERY_ATTEMPTS,
    )


async def _interruptible(work: Coroutine[Any, Any, T]) -> T:
    """Await ``work``; SIGINT/SIGTERM cancel it and raise :class:`Interrupted`
    (the worker machinery would otherwise stop the command with exit code 0)."""
    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(work)
    signals = (signal.SIGINT, signal.SIGTERM)
    for sig in signals:
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, task.cancel)
    try:
        return await task
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise  # this command itself is being cancelled
        raise Interrupted from None
    finally:
        for sig in signals:
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)


def _fail(message: str, code: int) -> NoReturn:
    click.echo(f"streamapp backfill: {message}", err=True)
    raise SystemExit(code)


@app.command(
    option("--since", required=True, help="Start of the range (ISO-8601; naive=UTC)."),
    option("--until", required=True, help="End of the range, exclusive (ISO-8601)."),
    option("--min-magnitude", type=float, default=None, help="Only events >= this."),
    option(
        "--bbox",
        default=None,
        help="Only events in min_lon,min_lat,max_lon,max_lat (degrees).",
    ),
    option(
        "--rate",
        type=float,
        default=None,
        help="Events per second produced at most [BACKFILL_EVENTS_PER_SECOND].",
    ),
    option(
        "--requests-per-second",
        type=float,
        default=None,
        help="Requests per second to the service at most "
        "[BACKFILL_REQUESTS_PER_SECOND].",
    ),
    option(
        "--restart",
        is_flag=True,
        default=False,
        help="Run a finished (or interrupted) range again from its start.",
    ),
    option(
        "--progress/--no-progress",
        default=True,
        show_default=True,
        help="Show the progress bar on stderr.",
    ),
)
async def backfill(
    self: AppCommand,
    since: str,
    until: str,
    min_magnitude: float | None,
    bbox: str | None,
    rate: float | None,
    requests_per_second: float | None,
    restart: bool,
    progress: bool,
    **_: Any,
) -> None:
    """Load a time range of USGS events through the pipeline (resumable)."""
    from agents.fetch import dedup_key  # late: the worker's module, loaded by now

    try:
        params = parse_params(since, until, min_magnitude, bbox)
        for name, value in (
            ("--rate", rate),
            ("--requests-per-second", requests_per_second),
        ):
            if value is not None and not (math.isfinite(value) and value > 0):
                raise BadRequest(f"{name} must be a positive number")
    except BadRequest as exc:
        _fail(str(exc), 2)
    events_per_second = rate or settings.backfill_events_per_second
    client = FdsnClient.from_settings(settings, requests_per_second=requests_per_second)
    bar = ProgressBar(sys.stderr) if progress else None
    try:
        await asyncio.to_thread(migrate, settings)
        known = await load_sent_versions(settings)
        runner = Backfill(
            params,
            client,
            ProgressStore(settings),
            _send,
            key_of=dedup_key,
            known=known,
            rate=events_per_second,
            max_value_bytes=int(app.conf.producer_max_request_size)
            - RECORD_OVERHEAD_BYTES,
            on_progress=bar.update if bar is not None else None,
        )
        summary = await _interruptible(runner.run(restart=restart))
    except Interrupted:  # Ctrl-C or SIGTERM: the finished slices are kept
        if bar is not None:
            bar.close()
        _fail("interrupted; run the same command again to resume", 130)
    except (StreamappError, TimeoutError, OSError) as exc:
        if bar is not None:
            bar.close()
        _fail(
            f"{exc}; stopped (run the same command again to resume after the last "
            "finished slice)",
            1,
        )
    except Exception as exc:  # Kafka errors after the delivery attempts
        if bar is not None:
            bar.close()
        _fail(
            f"{type(exc).__name__}: {exc}; stopped (run the same command again to "
            "resume)",
            1,
        )
    finally:
        await client.close()
    if bar is not None:
        bar.close()
    click.echo(summary.line())
