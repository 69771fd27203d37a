"""The progress bar: redrawn on a terminal, plain lines elsewhere, a summary."""

from __future__ import annotations

import io

from streamapp.backfill.display import ProgressBar, format_progress
from streamapp.backfill.run import Progress


def progress(fetched: int, seconds: float = 10.0) -> Progress:
    return Progress(
        slices_done=3,
        slices_estimate=8,
        events_fetched=fetched,
        events_expected=40_000,
        produced=fetched - 100,
        skipped=100,
        seconds=seconds,
        handled=fetched,
    )


def test_the_line_shows_slices_events_rate_and_eta() -> None:
    line = format_progress(progress(10_000))
    assert line == (
        "backfill [######------------------]  25% slices 3/~8 events 10000/40000 "
        "produced 9900 skipped 100 1000 ev/s ETA 0:00:30"
    )
    unknown = Progress(0, None, 5, None, 5, 0, 0.0, 0)
    assert format_progress(unknown, bar=False) == (
        "backfill slices 0/? events 5 produced 5 skipped 0 0 ev/s ETA ?"
    )


def test_a_terminal_gets_one_redrawn_line_then_the_summary() -> None:
    out = io.StringIO()
    now = [0.0]
    bar = ProgressBar(out, tty=True, clock=lambda: now[0])
    bar.update(progress(10_000))
    bar.update(progress(11_000))  # too soon: not drawn
    now[0] = 1.0
    bar.update(progress(20_000))
    bar.close("backfill finished: ...")
    text = out.getvalue()
    assert text.count("\r") == 2 and "11000" not in text
    assert text.endswith("\nbackfill finished: ...\n")


def test_elsewhere_plain_lines_at_the_interval() -> None:
    out = io.StringIO()
    now = [0.0]
    bar = ProgressBar(out, tty=False, interval=10.0, clock=lambda: now[0])
    for second in range(25):
        now[0] = float(second)
        bar.update(progress(1_000 * second + 1))
    bar.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 3 and "\r" not in out.getvalue() and "[" not in lines[0]
