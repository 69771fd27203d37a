"""``faust -A streamapp redrive``: send dead letters back for reprocessing, once."""

from __future__ import annotations

import json
from typing import Any

import click
from faust.cli import AppCommand, option

from streamapp.app import app, settings
from streamapp.db import get_engine
from streamapp.exceptions import BadRequest
from streamapp.queries import ERROR_KINDS, RedriveSelection, parse_time
from streamapp.redrive import RedriveResult
from streamapp.redrive import redrive as run_redrive

__all__ = ["redrive"]


def build_selection(
    kind: str | None, since: str | None, ids: tuple[int, ...], limit: int
) -> RedriveSelection:
    """The selection of the command line; exits with 2 and one line when it is wrong."""
    try:
        return RedriveSelection(
            kind=kind,
            since=parse_time("--since", since) if since else None,
            ids=tuple(dict.fromkeys(ids)),
            limit=limit,
        )
    except BadRequest as exc:
        click.echo(f"streamapp redrive: {exc}", err=True)
        raise SystemExit(2) from None


def summary(result: RedriveResult) -> str:
    """One human-readable line about what happened."""
    if result.dry_run:
        head = f"dry run: {len(result.would_redrive)} dead letter(s) would be redriven"
    else:
        sent = ", ".join(f"{n} to {t}" for t, n in sorted(result.topics.items()))
        head = f"redriven {len(result.redriven)} dead letter(s)" + (
            f" ({sent})" if sent else ""
        )
    parts = [head]
    if result.already_redriven:
        ids = ", ".join(str(i) for i in sorted(result.already_redriven))
        parts.append(f"refused, already redriven: {ids}")
    if result.not_redrivable:
        ids = ", ".join(map(str, result.not_redrivable))
        parts.append(f"refused, payload kept only in part: {ids}")
    if result.not_found:
        parts.append(f"not found: {', '.join(map(str, result.not_found))}")
    return "; ".join(parts)


@app.command(
    option(
        "--kind",
        type=click.Choice(ERROR_KINDS),
        default=None,
        help="Only dead letters of this error kind.",
    ),
    option(
        "--since",
        default=None,
        help="Only dead letters that failed at or after this ISO-8601 time (UTC).",
    ),
    option(
        "--id",
        "ids",
        type=int,
        multiple=True,
        help="Only this dead-letter id (repeat for more).",
    ),
    option(
        "--limit",
        type=int,
        default=10_000,
        show_default=True,
        help="At most this many dead letters.",
    ),
    option(
        "--dry-run",
        is_flag=True,
        default=False,
        help="List what would be redriven; change and send nothing.",
    ),
)
async def redrive(
    self: AppCommand,
    kind: str | None,
    since: str | None,
    ids: tuple[int, ...],
    limit: int,
    dry_run: bool,
) -> None:
    """Send dead letters' original bytes back to the raw topic, marking them redriven.

    Letters refused by the database go back to the clean topic instead. A letter
    already redriven is never sent again; naming only such letters exits with 1.
    """
    selection = build_selection(kind, since, ids, limit)
    result = await run_redrive(
        get_engine(settings), settings, selection, dry_run=dry_run
    )
    payload: dict[str, Any] = result.as_dict()
    self.say(json.dumps(payload, indent=2, sort_keys=True))
    self.say(summary(result))
    if result.refused:
        raise SystemExit(1)
