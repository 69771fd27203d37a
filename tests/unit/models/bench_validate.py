"""Benchmark sanity of validate_raw (not a test): features per second on a capture.

Run: ``.venv/bin/python -m tests.unit.models.bench_validate [capture.geojson]``
"""

from __future__ import annotations

import json
import sys
import time

from models.validation import validate_raw
from tests.unit.models.support import FIXTURES, MAX_BYTES, MAX_DEPTH, envelope

ROUNDS = 20


def main(argv: list[str]) -> int:
    """Validate every feature of the capture ROUNDS times; print the best rate."""
    name = argv[0] if argv else "all_day_2014-04-14.geojson"
    features = json.loads((FIXTURES / name).read_text(encoding="utf-8"))["features"]
    messages = [json.dumps(envelope(f)).encode("utf-8") for f in features]
    best = float("inf")
    for _ in range(ROUNDS + 1):  # the first round warms up
        start = time.perf_counter()
        for offset, message in enumerate(messages):
            validate_raw(
                message,
                max_bytes=MAX_BYTES,
                max_depth=MAX_DEPTH,
                partition=0,
                offset=offset,
            )
        best = min(best, time.perf_counter() - start)
    rate = len(messages) / best
    print(f"{name}: {len(messages)} features, best of {ROUNDS}: {best * 1e3:.2f} ms")
    print(f"validate_raw: {rate:,.0f} features/s ({1e6 / rate:.1f} us/feature)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
