"""Probes of a running worker process: its counters and its resident memory."""

from __future__ import annotations

import time
from pathlib import Path

from tests.support.workers import Worker

__all__ = ["handled", "rss_kib", "wait_handling"]


def rss_kib(pid: int) -> tuple[int, int]:
    """``(VmRSS, VmHWM)`` of a process in KiB (current and peak resident memory)."""
    fields: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(rest.split()[0])
    return fields.get("VmRSS", 0), fields.get("VmHWM", 0)


def handled(worker: Worker) -> int:
    """Raw messages this worker process validated (its own counters)."""
    status, stats = worker.get("/api/stats")
    assert status == 200, stats
    return int(stats["valid"]) + int(stats["invalid"])


def wait_handling(worker: Worker, timeout: float, more_than: int = 0) -> float | None:
    """Seconds until ``worker`` has validated more than ``more_than`` messages."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        worker.assert_alive()
        try:
            if handled(worker) > more_than:
                return time.monotonic() - t0
        except OSError:
            pass
        time.sleep(0.25)
    return None
