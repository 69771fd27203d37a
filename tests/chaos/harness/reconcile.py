"""Reconciliation: the raw topic against the clean and dead-letter topics and tables.

Works from the offsets the broker really holds in raw (producer retry copies
included): every raw offset must reach exactly one of the clean topic and the
dead-letter topic; every valid id must be stored once at its latest ``updated``,
pointing at a raw offset that holds that version; every invalid raw message must be
in ``dead_letters`` once, with a kind and a reason.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from psycopg2 import sql

from streamapp.settings import Settings
from tests.chaos.harness.data import Expect
from tests.chaos.harness.db import Db
from tests.chaos.harness.figures import Figures
from tests.chaos.harness.kafka import Rec, read_topic

__all__ = ["Offset", "reconcile"]

#: ``(raw partition, raw offset)``
Offset = tuple[int, int]


def _limit(items: Sequence[Any], n: int = 5) -> str:
    shown = ", ".join(map(str, list(items)[:n]))
    return shown + (f", ... ({len(items)} in all)" if len(items) > n else "")


@dataclass
class _Raw:
    """What the raw topic holds, by offset, and what it implies."""

    expect: dict[Offset, Expect]
    unknown: list[Offset]
    valid: dict[Offset, Expect]
    invalid: dict[Offset, Expect]
    #: The largest ``updated`` per valid id.
    latest: dict[str, int]
    #: The raw offsets holding an id's latest version.
    best: set[Offset]


def _read_raw(
    figures: Figures,
    raw: list[Rec],
    classify: Callable[[bytes | None], Expect | None],
) -> _Raw:
    """1. The raw topic: what really entered the system."""
    expect: dict[Offset, Expect] = {}
    unknown: list[Offset] = []
    for r in raw:
        e = classify(r.value)
        if e is None:
            unknown.append((r.partition, r.offset))
            continue
        expect[(r.partition, r.offset)] = e
    if unknown:
        figures.problems.append(
            f"{len(unknown)} raw messages of unknown origin: {_limit(unknown)}"
        )
    figures.raw_messages = len(raw)
    valid = {o: e for o, e in expect.items() if e.valid}
    invalid = {o: e for o, e in expect.items() if not e.valid}
    latest: dict[str, int] = {}
    for e in valid.values():
        assert e.id is not None and e.updated is not None
        latest[e.id] = max(latest.get(e.id, e.updated), e.updated)
    best = {o for o, e in valid.items() if latest[e.id or ""] == e.updated}
    figures.expected_rows = len(latest)
    figures.expected_dead_letters = len(invalid)
    return _Raw(expect, unknown, valid, invalid, latest, best)


def _compare_intended(
    figures: Figures, raw: list[Rec], intended: Sequence[bytes | None] | None
) -> int:
    """Produced messages missing from raw (0 when nothing was ``intended``)."""
    if intended is None:
        return 0
    have = Counter(r.value for r in raw)
    want = Counter(intended)
    missing = sum(max(0, n - have[v]) for v, n in want.items())
    extra = sum(max(0, n - want[v]) for v, n in have.items())
    figures.events_sent = len(intended)
    if missing:
        figures.problems.append(f"{missing} produced messages are not in raw")
    if extra:
        figures.notes.append(
            f"{extra} raw message(s) are producer retry copies (counted as input)"
        )
    return missing


def _forwarded(
    raw_topic: str, clean: list[Rec], letters: list[Rec]
) -> tuple[Counter[Offset], Counter[Offset], int]:
    """Raw offsets seen in clean, in the dead-letter topic, and other letters."""
    clean_seen: Counter[Offset] = Counter()
    for r in clean:
        doc = json.loads(r.value or b"null")
        clean_seen[(int(doc["raw_partition"]), int(doc["raw_offset"]))] += 1
    dl_seen: Counter[Offset] = Counter()
    other_letters = 0
    for r in letters:
        if r.headers.get("source.topic", b"").decode() != raw_topic:
            other_letters += 1
            continue
        dl_seen[
            (int(r.headers["source.partition"]), int(r.headers["source.offset"]))
        ] += 1
    return clean_seen, dl_seen, other_letters


def _check_topics(
    figures: Figures,
    raw_topic: str,
    view: _Raw,
    clean: list[Rec],
    letters: list[Rec],
) -> None:
    """2. The topics: every raw offset forwarded to clean XOR dead-letter."""
    clean_seen, dl_seen, other_letters = _forwarded(raw_topic, clean, letters)
    figures.clean_offsets = len(clean_seen)
    figures.dead_letter_offsets = len(dl_seen)
    figures.redelivered = sum(n - 1 for n in clean_seen.values()) + sum(
        n - 1 for n in dl_seen.values()
    )
    both = set(clean_seen) & set(dl_seen)
    neither = set(view.expect) - set(clean_seen) - set(dl_seen)
    phantom = (set(clean_seen) | set(dl_seen)) - set(view.expect) - set(view.unknown)
    wrong_way = [o for o in clean_seen if o in view.invalid] + [
        o for o in dl_seen if o in view.valid
    ]
    figures.raw_balanced = (
        not both
        and not neither
        and not phantom
        and len(clean_seen) + len(dl_seen) == figures.raw_messages
    )
    problems = figures.problems
    if both:
        problems.append(f"{len(both)} raw offsets in BOTH clean and dead-letter")
    if neither:
        problems.append(
            f"{len(neither)} raw offsets in neither clean nor dead-letter: "
            f"{_limit(sorted(neither))}"
        )
    if phantom:
        problems.append(f"{len(phantom)} forwarded offsets not in raw")
    if wrong_way:
        problems.append(f"{len(wrong_way)} messages routed the wrong way")
    if other_letters:
        figures.notes.append(
            f"{other_letters} dead letter(s) from the clean topic (sink_rejected)"
        )


def _check_rows(figures: Figures, db: Db, view: _Raw) -> int:
    """3a. ``earthquakes``: every valid id once, at its latest ``updated``, pointing
    at a raw offset holding that version. Returns the ids lost (missing or stale)."""
    rows = db.rows(
        sql.SQL(
            "SELECT id, (extract(epoch FROM updated) * 1000)::bigint,"
            " raw_partition, raw_offset FROM {}"
        ).format(db.table("earthquakes"))
    )
    figures.rows_stored = len(rows)
    latest = view.latest
    stored = {r[0]: r for r in rows}
    missing = sorted(set(latest) - set(stored))
    stale = sorted(i for i, r in stored.items() if i in latest and r[1] < latest[i])
    newer = sorted(i for i, r in stored.items() if i in latest and r[1] > latest[i])
    strange = sorted(set(stored) - set(latest))
    lineage = sorted(
        i
        for i, r in stored.items()
        if i in latest and r[1] == latest[i] and (r[2], r[3]) not in view.best
    )
    problems = figures.problems
    if missing:
        problems.append(f"{len(missing)} valid ids missing: {_limit(missing)}")
    if stale:
        problems.append(
            f"{len(stale)} rows not at their latest updated: {_limit(stale)}"
        )
    if newer or strange:
        problems.append(f"{len(newer) + len(strange)} unexpected rows/versions")
    if lineage:
        problems.append(f"{len(lineage)} rows point at the wrong raw offset")
    dup_rows = db.rows(
        sql.SQL("SELECT count(*) - count(DISTINCT id) FROM {}").format(
            db.table("earthquakes")
        )
    )[0][0]
    figures.duplicated += int(dup_rows)
    return len(missing) + len(stale)


def _check_letters(figures: Figures, db: Db, raw_topic: str, view: _Raw) -> int:
    """3b. ``dead_letters``: every invalid raw message once, with a kind and a
    reason. Returns the invalid messages without their dead letter."""
    dl_rows = db.rows(
        sql.SQL(
            "SELECT source_partition, source_offset, error_kind, error_message"
            " FROM {} WHERE source_topic = %s"
        ).format(db.table("dead_letters")),
        (raw_topic,),
    )
    figures.dead_letters = len(dl_rows)
    invalid = view.invalid
    dl_count: Counter[Offset] = Counter((int(p), int(o)) for p, o, _, _ in dl_rows)
    lost_letters = sorted(set(invalid) - set(dl_count))
    extra_letters = sorted(set(dl_count) - set(invalid))
    no_reason = [(p, o) for p, o, kind, msg in dl_rows if not kind or not msg]
    wrong_kind = [
        (p, o, kind)
        for p, o, kind, _ in dl_rows
        if (p, o) in invalid and invalid[(p, o)].kind not in (None, kind)
    ]
    problems = figures.problems
    if lost_letters:
        problems.append(
            f"{len(lost_letters)} invalid messages not in dead_letters: "
            f"{_limit(lost_letters)}"
        )
    if extra_letters:
        problems.append(f"{len(extra_letters)} dead letters for valid/unknown offsets")
    if no_reason:
        problems.append(f"{len(no_reason)} dead letters without a reason")
    if wrong_kind:
        problems.append(
            f"{len(wrong_kind)} dead letters of the wrong kind: {_limit(wrong_kind)}"
        )
    figures.duplicated += sum(n - 1 for n in dl_count.values())
    return len(lost_letters)


def reconcile(
    figures: Figures,
    settings: Settings,
    db: Db,
    classify: Callable[[bytes | None], Expect | None],
    intended: Sequence[bytes | None] | None = None,
) -> Figures:
    """Compare what the broker holds in raw with the clean and dead-letter topics and
    the two tables; fill ``figures`` (lost, duplicated, ...) and its problems."""
    raw = read_topic(settings, settings.topic_raw)
    clean = read_topic(settings, settings.topic_clean)
    letters = read_topic(settings, settings.topic_dead_letter)
    view = _read_raw(figures, raw, classify)
    missing_in_raw = _compare_intended(figures, raw, intended)
    _check_topics(figures, settings.topic_raw, view, clean, letters)
    figures.duplicated = 0
    lost_rows = _check_rows(figures, db, view)
    lost_letters = _check_letters(figures, db, settings.topic_raw, view)
    figures.lost = lost_rows + lost_letters + missing_in_raw
    return figures
