"""The data a scenario streams, and the fate each message must meet."""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from bench.generate import make_dataset
from tests.chaos.harness.profile import Profile

__all__ = [
    "ChaosData",
    "Expect",
    "Headers",
    "Msg",
    "envelope_expect",
    "expected_totals",
    "make_chaos_data",
    "offered",
    "profile_data",
]

Headers = list[tuple[str, bytes]]


@dataclass(frozen=True)
class Expect:
    """What one raw message must become: a row (id, updated) or a dead letter."""

    valid: bool
    id: str | None = None
    updated: int | None = None  # epoch ms
    #: The dead letter's expected error kind (None: any kind will do).
    kind: str | None = None


@dataclass(frozen=True)
class Msg:
    """One message a test producer writes into the raw topic."""

    key: bytes | None
    value: bytes | None
    headers: Headers = field(default_factory=list)


@dataclass
class ChaosData:
    """Messages to stream and the fate each one must meet."""

    messages: list[Msg]
    expect: dict[bytes | None, Expect]
    describe: dict[str, Any] = field(default_factory=dict)

    def classify(self, value: bytes | None) -> Expect | None:
        """The fate of a raw value (None: not one of these messages)."""
        return self.expect.get(value)

    def __add__(self, other: ChaosData) -> ChaosData:
        return ChaosData(
            self.messages + other.messages,
            {**self.expect, **other.expect},
            {**self.describe, **other.describe},
        )


def envelope_expect(value: bytes) -> Expect:
    """The Expect of a valid raw envelope (its feature's id and updated)."""
    feature = json.loads(value)["feature"]
    return Expect(True, feature["id"], int(feature["properties"]["updated"]))


def make_chaos_data(
    n: int,
    *,
    seed: int,
    invalid_share: float = 0.05,
    revision_share: float = 0.05,
    stale_share: float = 0.01,
    id_offset: int = 0,
) -> ChaosData:
    """``n`` USGS-shaped raw messages (bench.generate), a known share invalid, some
    revisions (larger ``updated``) and some stale copies of first versions sent
    after their revision (a smaller ``updated`` that must not win)."""
    n_stale = round(n * stale_share)
    ds = make_dataset(
        n - n_stale,
        seed=seed,
        invalid_share=invalid_share,
        revision_share=revision_share,
        id_offset=id_offset,
    )
    expect: dict[bytes | None, Expect] = {}
    first: dict[str, bytes] = {}
    versions: Counter[str] = Counter()
    messages: list[Msg] = []
    for m in ds.messages:
        messages.append(Msg(m.key, m.value))
        if m.invalid is not None:
            expect[m.value] = Expect(False, kind=m.invalid)
            continue
        e = envelope_expect(m.value)
        expect[m.value] = e
        versions[e.id or ""] += 1
        first.setdefault(e.id or "", m.value)
    revised = sorted(i for i, count in versions.items() if count > 1)
    rng = random.Random(seed + 1)
    stale = [first[i] for i in rng.sample(revised, min(n_stale, len(revised)))]
    # Old versions re-sent after their revision: they must not overwrite it.
    for value in stale:
        messages.append(Msg((envelope_expect(value).id or "").encode(), value))
    valid_ids = {e.id for e in expect.values() if e.valid}
    return ChaosData(
        messages,
        expect,
        {
            "messages": len(messages),
            "invalid": sum(1 for m in messages if not expect[m.value].valid),
            "valid_ids": len(valid_ids),
            "revisions": ds.revisions,
            "stale_copies": len(stale),
            "invalid_by_kind": ds.invalid_by_kind,
        },
    )


def profile_data(profile: Profile, *, seed: int, id_offset: int = 0) -> ChaosData:
    """A scenario's stream: ``profile.events`` messages with the profile's shares."""
    return make_chaos_data(
        profile.events,
        seed=seed,
        invalid_share=profile.invalid_share,
        revision_share=profile.revision_share,
        stale_share=profile.stale_share,
        id_offset=id_offset,
    )


def offered(data: ChaosData, rate: float) -> str:
    """The report note on what a scenario streamed, and how fast."""
    d = data.describe
    return (
        f"{d['messages']:,} messages offered at {rate:.0f}/s: {d['invalid']:,} "
        f"invalid, {d['revisions']:,} revisions, {d['stale_copies']:,} stale copies"
    )


def expected_totals(
    data: ChaosData, values: Sequence[bytes | None] | None = None
) -> tuple[int, int, int]:
    """``(rows, updated checksum, dead letters)`` the tables must end with when
    ``values`` (default: every message once) reach raw."""
    latest: dict[str, int] = {}
    letters = 0
    for v in values if values is not None else [m.value for m in data.messages]:
        e = data.classify(v)
        if e is None:
            continue
        if e.valid:
            assert e.id is not None and e.updated is not None
            latest[e.id] = max(latest.get(e.id, e.updated), e.updated)
        else:
            letters += 1
    return len(latest), sum(latest.values()), letters
