"""``faust -A streamapp replay TOPIC --out FILE``: a topic into Parquet or CSV."""

from __future__ import annotations

import sys
from typing import Any

import click
from faust.cli import AppCommand, argument, option

from streamapp.app import app, settings
from streamapp.exceptions import StreamappError
from streamapp.replay.columns import DEFAULT_TIMEOUT, KINDS

__all__ = ["replay"]


@app.command(
    argument("topic"),
    option(
        "--out",
        "-o",
        required=True,
        help="Output file: .parquet or .csv (bytes columns become base64 in CSV).",
    ),
    option("--limit", type=int, default=None, help="Read at most this many rows."),
    option(
        "--since",
        default=None,
        help="Only messages at or after this time (ISO-8601; naive = UTC).",
    ),
    option(
        "--until",
        default=None,
        help="Only messages before this time (ISO-8601; naive = UTC).",
    ),
    option(
        "--kind",
        type=click.Choice(KINDS),
        default="auto",
        show_default=True,
        help="How to decode the values (auto: from the topic name, else sniffed).",
    ),
    option(
        "--progress/--no-progress",
        default=True,
        show_default=True,
        help="Show a progress bar on stderr.",
    ),
    option(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        show_default=True,
        help="Seconds the broker may stay silent while messages remain.",
    ),
)
async def replay(
    self: AppCommand,
    topic: str,
    out: str,
    limit: int | None,
    since: str | None,
    until: str | None,
    kind: str,
    progress: bool,
    timeout: float,  # noqa: ASYNC109 - an idle timeout, not a deadline
    **_: Any,
) -> None:
    """Replay TOPIC from the beginning (no consumer group, no commit) into a file."""
    # Late: pandas stays out of the worker, which discovers this command at start.
    from streamapp.replay import check_output, replay_topic, write_frame

    try:
        check_output(out)
        frame = await replay_topic(
            settings,
            topic,
            limit=limit,
            since=since,
            until=until,
            kind=kind,
            progress=progress,
            timeout=timeout,
        )
        path = write_frame(frame, out)
    except (StreamappError, TimeoutError, ValueError, OSError) as exc:
        print(f"streamapp replay: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    except ImportError as exc:  # pyarrow for .parquet is an optional dependency
        print(
            f"streamapp replay: {exc.name or exc} is not installed; "
            "pip install 'streamapp[notebook]' or write .csv",
            file=sys.stderr,
        )
        raise SystemExit(1) from None
    info = frame.attrs.get("replay", {})
    seconds = float(info.get("seconds") or 0.0)
    scanned = int(info.get("scanned") or 0)
    rate = scanned / seconds if seconds > 0 else 0.0
    print(
        f"replayed {scanned} message(s) of {topic} ({info.get('kind', kind)}) "
        f"into {len(frame)} row(s) in {seconds:.2f}s ({rate:.0f} msg/s) -> {path}"
    )
