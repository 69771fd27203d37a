"""Dead-letter redrive: send the original bytes back for reprocessing, exactly once."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.engine import Connection, Engine

from streamapp.delivery import Outgoing, deliver
from streamapp.queries import (
    ClaimedLetter,
    RedriveSelection,
    claim_dead_letters,
    dead_letter_states,
    preview_redrive,
)
from streamapp.settings import Settings

__all__ = ["RedriveResult", "redrive", "target_topic_name"]

log = logging.getLogger(__name__)

#: Delivery rounds before a redrive gives up and leaves the letters unmarked.
REDRIVE_ATTEMPTS = 5

Sender = Callable[[Sequence[Outgoing]], Awaitable[Any]]


@dataclass
class RedriveResult:
    """What a redrive did (or, for a dry run, would do)."""

    dry_run: bool
    selection: dict[str, Any]
    redriven: list[int] = field(default_factory=list)
    would_redrive: list[dict[str, Any]] = field(default_factory=list)
    already_redriven: dict[int, str] = field(default_factory=dict)
    not_redrivable: list[int] = field(default_factory=list)
    not_found: list[int] = field(default_factory=list)
    topics: dict[str, int] = field(default_factory=dict)

    @property
    def refused(self) -> bool:
        """True when ids were named and none of them could be redriven."""
        explicit = bool(self.selection.get("ids"))
        done = self.would_redrive if self.dry_run else self.redriven
        return explicit and not done

    def as_dict(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "selection": self.selection,
            "redriven": self.redriven,
            "would_redrive": self.would_redrive,
            "already_redriven": {str(k): v for k, v in self.already_redriven.items()},
            "not_redrivable": self.not_redrivable,
            "not_found": self.not_found,
            "topics": self.topics,
        }


def target_topic_name(letter_topic: str, settings: Settings) -> str:
    """Where a letter goes back: the clean topic for rows the database refused
    (their bytes are clean events), else the raw topic to be validated again."""
    return (
        settings.topic_clean
        if letter_topic == settings.topic_clean
        else settings.topic_raw
    )


def _outgoing(letters: Sequence[ClaimedLetter], settings: Settings) -> list[Outgoing]:
    from streamapp.topics import clean_topic, raw_topic  # late: builds the Faust app

    out: list[Outgoing] = []
    for letter in letters:
        name = target_topic_name(letter.source_topic, settings)
        topic = clean_topic if name == settings.topic_clean else raw_topic
        headers = [
            ("redrive.dead_letter_id", str(letter.id).encode("ascii")),
            ("redrive.error_kind", letter.error_kind.encode("utf-8")),
        ]
        out.append(Outgoing(topic, letter.key, letter.payload, headers=headers))
    return out


async def _send(messages: Sequence[Outgoing]) -> None:
    await deliver(messages, attempts=REDRIVE_ATTEMPTS)


async def redrive(
    engine: Engine,
    settings: Settings,
    selection: RedriveSelection,
    *,
    dry_run: bool = False,
    send: Sender | None = None,
) -> RedriveResult:
    """Redrive the dead letters of ``selection`` (or only list them: ``dry_run``).

    The letters are marked (``redriven_at``) and their original key and payload
    sent in one guarded step: the UPDATE ... RETURNING runs in a transaction that
    commits only after Kafka acknowledged every message and rolls back if the send
    fails, so a letter is never marked without being sent, and a letter marked
    once is never selected again. All database calls run off the event loop.
    """
    schema = settings.postgres_schema
    result = RedriveResult(dry_run=dry_run, selection=selection.as_dict())
    if dry_run:
        result.would_redrive = await asyncio.to_thread(
            _preview, engine, schema, selection
        )
    else:
        letters = await _claim_and_send(engine, settings, selection, send or _send)
        result.redriven = [letter.id for letter in letters]
        for letter in letters:
            name = target_topic_name(letter.source_topic, settings)
            result.topics[name] = result.topics.get(name, 0) + 1
    if selection.ids:
        done = {row["id"] for row in result.would_redrive} | set(result.redriven)
        rest = [i for i in selection.ids if i not in done]
        states = await asyncio.to_thread(_states, engine, schema, rest)
        for i in rest:
            state = states.get(i)
            if state is None:
                result.not_found.append(i)
            elif state["redriven_at"] is not None:
                result.already_redriven[i] = state["redriven_at"]
            elif not state["redrivable"]:
                result.not_redrivable.append(i)
    log.info(
        "redrive%s: %d letter(s) %s, %d already redriven, %d not found",
        " (dry run)" if dry_run else "",
        len(result.would_redrive if dry_run else result.redriven),
        "selected" if dry_run else "sent",
        len(result.already_redriven),
        len(result.not_found),
    )
    return result


def _preview(
    engine: Engine, schema: str, sel: RedriveSelection
) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return preview_redrive(conn, schema, sel)


def _states(
    engine: Engine, schema: str, ids: Sequence[int]
) -> dict[int, dict[str, Any]]:
    with engine.connect() as conn:
        return dead_letter_states(conn, schema, ids)


async def _claim_and_send(
    engine: Engine, settings: Settings, sel: RedriveSelection, send: Sender
) -> list[ClaimedLetter]:
    conn: Connection = await asyncio.to_thread(engine.connect)
    try:
        await asyncio.to_thread(conn.begin)
        letters = await asyncio.to_thread(
            claim_dead_letters, conn, settings.postgres_schema, sel
        )
        if not letters:
            await asyncio.to_thread(conn.rollback)
            return []
        try:
            await send(_outgoing(letters, settings))
        except BaseException:
            # Not (all) in Kafka: leave every letter unmarked so it can be retried.
            await asyncio.to_thread(conn.rollback)
            raise
        await asyncio.to_thread(conn.commit)
        return letters
    finally:
        await asyncio.to_thread(conn.close)
