"""The backfill's progress bar: one line redrawn on a terminal, plain lines otherwise.

Usage::

    bar = ProgressBar(sys.stderr)
    backfill = Backfill(..., on_progress=bar.update)
    summary = await backfill.run()
    bar.close(summary.line())
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TextIO

from streamapp.backfill.run import Progress

__all__ = ["ProgressBar", "format_progress"]

#: Width of the bar itself, in characters.
BAR_WIDTH = 24


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}"


def format_progress(p: Progress, *, bar: bool = True) -> str:
    """One line: bar, slices done/estimate, events, events/s and ETA."""
    slices = (
        f"{p.slices_done}/~{p.slices_estimate}"
        if p.slices_estimate
        else (f"{p.slices_done}/?")
    )
    if p.events_expected:
        share = min(1.0, p.events_fetched / p.events_expected)
        events = f"{p.events_fetched}/{p.events_expected}"
    else:
        share = None
        events = str(p.events_fetched)
    head = "backfill"
    if bar:
        filled = int(BAR_WIDTH * (share or 0.0))
        head += f" [{'#' * filled}{'-' * (BAR_WIDTH - filled)}]"
    if share is not None:
        head += f" {share * 100:3.0f}%"
    return (
        f"{head} slices {slices} events {events} produced {p.produced} "
        f"skipped {p.skipped} {p.rate:.0f} ev/s ETA {_duration(p.eta)}"
    )


class ProgressBar:
    """Shows :class:`Progress` on ``stream``.

    On a terminal the line is redrawn at most every ``tty_interval`` seconds; on
    anything else (a log file, CI) a plain line is written every ``interval``.
    """

    def __init__(
        self,
        stream: TextIO,
        *,
        tty: bool | None = None,
        interval: float = 10.0,
        tty_interval: float = 0.2,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream
        self.tty = stream.isatty() if tty is None else tty
        self.interval = tty_interval if self.tty else interval
        self._clock = clock
        self._last: float | None = None
        self._width = 0

    def update(self, progress: Progress) -> None:
        """Show ``progress`` if the last line is old enough."""
        now = self._clock()
        if self._last is not None and now - self._last < self.interval:
            return
        self._last = now
        line = format_progress(progress, bar=self.tty)
        if self.tty:
            pad = max(0, self._width - len(line))
            self.stream.write(f"\r{line}{' ' * pad}")
            self._width = len(line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self, summary: str | None = None) -> None:
        """End the redrawn line; write ``summary`` on its own line."""
        if self.tty and self._width:
            self.stream.write("\n")
        if summary:
            self.stream.write(summary + "\n")
        self.stream.flush()
