"""Sample a contender with py-spy and summarise where its CPU time goes."""

from __future__ import annotations

import argparse
import contextlib
import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

__all__ = ["CATEGORIES", "PySpy", "categorise", "summarise_folded"]

#: Where a sample's time goes, by the innermost frame that matches (first rule
#: wins, checked from the leaf up). Order matters: the specific before the generic.
CATEGORIES: list[tuple[str, re.Pattern[str]]] = [
    ("gzip / compression", re.compile(r"gzip|zlib|codec\.py|cramjam|lz4", re.I)),
    (
        "JSON decode/encode",
        re.compile(r"\(json/|json\.decoder|json\.encoder|orjson|\bloads\b.*json", re.I),
    ),
    (
        "validation (models.validation, marshmallow)",
        re.compile(r"models/validation|models/schema|marshmallow"),
    ),
    ("Faust records (Quake/DeadLetter)", re.compile(r"faust/models|models/records")),
    (
        "PostgreSQL (psycopg2, sink, SQLAlchemy)",
        re.compile(r"psycopg2|streamapp/sinks/|sqlalchemy|db\.py"),
    ),
    ("Kafka client (aiokafka, confluent-kafka)", re.compile(r"aiokafka|kafka/")),
    ("Quix Streams (peer)", re.compile(r"quixstreams/")),
    ("Faust streams / agents / topics", re.compile(r"faust/|mode/")),
    ("asyncio event loop", re.compile(r"asyncio/|selectors|uvloop")),
]


def categorise(frames: list[str]) -> str:
    """The category of one stack (leaf last): the first rule matching from the leaf."""
    for frame in reversed(frames):
        for name, pattern in CATEGORIES:
            if pattern.search(frame):
                return name
    return "other"


def summarise_folded(path: Path, top: int = 15) -> dict[str, Any]:
    """Self and inclusive shares per function, and shares per category.

    ``path`` holds py-spy's ``raw`` (collapsed) output: ``f1;f2;...;leaf count``.
    """
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    categories: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [f for f in stack.split(";") if f]
        if not frames:
            continue
        total += n
        self_time[frames[-1]] += n
        for frame in set(frames):
            inclusive[frame] += n
        categories[categorise(frames)] += n
        threads[frames[0]] += n

    def share(counter: Counter[str]) -> list[tuple[str, float]]:
        return [(k, round(100 * v / total, 1)) for k, v in counter.most_common(top)]

    return {
        "samples": total,
        "self": share(self_time),
        "inclusive": share(inclusive),
        "categories": share(categories),
        "roots": share(threads),
    }


class PySpy:
    """``py-spy record`` of one process (raw/collapsed output), stopped with SIGINT.

    ``--gil``: only the thread holding the GIL is sampled, so the profile shows
    where the Python CPU time of the process goes (the worker is GIL-bound); waits
    (epoll, the DB thread blocked in libpq) are not in it. ``--nonblocking`` keeps
    the worker running at full speed while it is sampled.
    """

    def __init__(self, pid: int, out: Path, rate: int = 100) -> None:
        self.out = out
        exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        self.proc = subprocess.Popen(
            [
                exe,
                "record",
                "--pid",
                str(pid),
                "--format",
                "raw",
                "--nolineno",
                "--gil",
                "--nonblocking",
                "--rate",
                str(rate),
                "--output",
                str(out),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def stop(self) -> dict[str, Any] | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        if not self.out.exists():
            return None
        with contextlib.suppress(OSError, ValueError):
            return summarise_folded(self.out)
        return None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Summarise a py-spy raw profile.")
    parser.add_argument("folded", type=Path)
    parser.add_argument("--top", type=int, default=20)
    args = parser.parse_args(argv)
    summary = summarise_folded(args.folded, args.top)
    print(f"{summary['samples']} samples")
    for key in ("categories", "self", "inclusive"):
        print(f"\n{key}:")
        for name, pct in summary[key]:
            print(f"  {pct:5.1f} %  {name}")


if __name__ == "__main__":
    main()
