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
* ``cython_optimizations``: Faust's opt-in repaired Cython fast paths
  (``app.conf.cython_optimizations = True``).
* ``max_poll_500`` / ``max_poll_2000``: ``broker_max_poll_records`` (faust's
  default: no limit per ``getmany``).
* ``fetch_wait_1500``: the consumer's ``fetch_max_wait_ms`` back at faust's 1500
  (streamapp: ``streamapp.faust_ext.FETCH_MAX_WAIT_MS``).
* ``spinner``: faust's own ``Worker`` class (its terminal spinner sets the root
  logger to DEBUG at ``-l warn``, the level the bench runs workers at).
* ``buffer_16k`` / ``buffer_8k``: ``stream_buffer_maxsize`` (faust: 4096).
* ``fused``: the clean topic is still produced, but not consumed back: the
  validation agent upserts its valid rows itself (the same ``QuakeSink``, one
  COPY-merge per batch, lineage = the raw message) before it delivers the clean and
  dead-letter messages and acks; ``store_quakes`` is removed from the app.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Any

CHANGES = (
    "no_prometheus",
    "no_compression",
    "lz4",
    "validate_batch_5000",
    "no_pre_ping",
    "fused",
    "cython_optimizations",
    "max_poll_500",
    "max_poll_2000",
    "fetch_wait_1500",
    "spinner",
    "buffer_16k",
    "buffer_8k",
)


def apply(names: list[str]) -> None:
    unknown = set(names) - set(CHANGES)
    if unknown:
        raise SystemExit(f"bench.whatif: unknown change(s): {', '.join(unknown)}")
    from streamapp.app import app

    if "no_prometheus" in names:
        from faust.sensors import Monitor

        app.conf.Monitor = Monitor  # type: ignore[assignment]

    if "no_compression" in names:
        app.conf.producer_compression_type = None  # type: ignore[assignment]
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

        db.make_engine = _engine
    for name in names:
        if name.startswith("max_poll_"):
            app.conf.broker_max_poll_records = int(name.rsplit("_", 1)[1])
    if "buffer_16k" in names:
        app.conf.stream_buffer_maxsize = 16384
    if "buffer_8k" in names:
        app.conf.stream_buffer_maxsize = 8192
    if "spinner" in names:
        import faust

        app.conf.Worker = faust.Worker  # type: ignore[assignment]
    if "fetch_wait_1500" in names:
        from streamapp.faust_ext import topic_watch

        topic_watch.FETCH_MAX_WAIT_MS = 1500
    if "cython_optimizations" in names:
        app.conf.cython_optimizations = True
    if "fused" in names:
        _fuse(app)


def _fuse(app: Any) -> None:
    """Validate and upsert in one agent (see the module docstring).

    The agent's own routing (``agents.validate.route_batch``) is kept; its I/O
    stage ``deliver_and_ack`` is wrapped to COPY-merge the batch's clean events
    (lineage: the raw message) before it delivers and acks.
    """
    import agents.store
    import agents.validate as v
    from models.records import Quake
    from streamapp.app import settings
    from streamapp.delivery import Outgoing
    from streamapp.faust_ext import Received
    from streamapp.sinks import Item, QuakeSink, quake_row, quake_row_from_json
    from streamapp.stats import stats
    from streamapp.topics import clean_topic

    for name in [n for n in app.agents if n.endswith("store_quakes")]:
        del app.agents[name]
    del agents.store
    sink: list[QuakeSink] = []
    deliver_and_ack = v.deliver_and_ack

    async def upsert_deliver_and_ack(
        received: Received, outgoing: Sequence[Outgoing], valid: int, kinds: list[str]
    ) -> tuple[int, int]:
        if not sink:
            sink.append(QuakeSink(settings))
        for record, out in zip(received.records, outgoing, strict=True):
            if out.topic is not clean_topic:
                continue
            where = {"partition": record.partition, "offset": record.offset}
            row = quake_row_from_json(out.value, **where)
            sink[0].add(Item(row or quake_row(Quake.loads(out.value), **where)))
        rejected = await sink[0].flush()
        if rejected:
            raise RuntimeError(f"fused what-if: {len(rejected)} row(s) rejected")
        result = await deliver_and_ack(received, outgoing, valid, kinds)
        stats.incr("upserted", valid)
        return result

    # The agent looks the name up at every batch.
    v.deliver_and_ack = upsert_deliver_and_ack


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
