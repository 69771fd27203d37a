"""Start the streamapp worker with what-if changes patched in (experiments only).

The product code is never edited for an experiment: this launcher applies the
changes named in ``BENCH_WHATIF`` (comma-separated) in memory, then runs the same
``faust ... worker`` command line. ``python -m bench.run --whatif NAME[,NAME]`` uses
it for the streamapp contender, so every row of the tuning log can be re-run.

Changes:

* ``no_prometheus``: do not install Faust's Prometheus sensor (``app.monitor``).
* ``no_compression`` / ``lz4``: producer compression none / lz4 instead of gzip
  (lz4 needs ``cramjam``).
* ``validate_batch_5000``: ``noack_take(5000, within=0.2)`` in ``validate_quakes``.
* ``no_pre_ping``: the sink's SQLAlchemy engine without ``pool_pre_ping`` (one
  round trip less per batch).
"""

from __future__ import annotations

import os
import sys
from typing import Any

CHANGES = (
    "no_prometheus",
    "no_compression",
    "lz4",
    "validate_batch_5000",
    "no_pre_ping",
)


def apply(names: list[str]) -> None:
    unknown = set(names) - set(CHANGES)
    if unknown:
        raise SystemExit(f"bench.whatif: unknown change(s): {', '.join(unknown)}")
    if "no_prometheus" in names:
        from streamapp import metrics

        def _no_sensor(app: Any) -> None:
            del app

        metrics.install_faust_sensor = _no_sensor  # type: ignore[assignment]
    from streamapp.app import app

    if "no_compression" in names:
        app.conf.producer_compression_type = None
    if "lz4" in names:
        app.conf.producer_compression_type = "lz4"
    if "validate_batch_5000" in names:
        import agents.validate

        agents.validate.VALIDATE_BATCH = 5000
    if "no_pre_ping" in names:
        from streamapp import db

        make = db.make_engine

        def _engine(settings: Any, **kwargs: Any) -> Any:
            kwargs["pool_pre_ping"] = False
            return make(settings, **kwargs)

        db.make_engine = _engine  # type: ignore[assignment]


def main() -> None:
    names = [n for n in os.environ.get("BENCH_WHATIF", "").split(",") if n]
    apply(names)
    from faust.cli.faust import cli

    # ``streamapp`` the package now has ``app`` as a submodule attribute (imported
    # above), so name the App object itself; argv is edited in place because the
    # CLI keeps a reference to the original list.
    sys.argv[:] = ["faust"] + [
        "streamapp.app:app" if a == "streamapp" else a for a in sys.argv[1:]
    ]
    cli()


if __name__ == "__main__":
    main()
