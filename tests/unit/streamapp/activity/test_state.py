"""The windows a worker holds: revisions, replays, retention, late events, hours."""

from __future__ import annotations

from typing import Any

from streamapp.activity.state import RegionWindows, Update, table_key
from streamapp.activity.windows import (
    DAY_MS,
    HOUR_MS,
    EventContribution,
    aggregate,
    ms_of_iso,
)

DAY = ms_of_iso("2026-12-08T00:00:00Z")
R = "30N130E"


def ev(
    event_id: str,
    at_ms: int,
    mag: float | None = 3.0,
    updated: int | None = None,
    region: str = R,
    depth: float = 10.0,
) -> EventContribution:
    return EventContribution(
        region, event_id, at_ms, mag, depth, at_ms if updated is None else updated
    )


def rows(update: Update) -> dict[tuple[str, str, int], tuple[dict[str, Any], bool]]:
    return {
        row.key: (aggregate(row.contributions.values()), row.merge)
        for row in update.rows
    }


def test_a_batch_writes_each_event_and_its_two_windows() -> None:
    state = RegionWindows()
    update = state.apply([ev("a", DAY + 10), ev("b", DAY + HOUR_MS + 5, mag=5.0)])
    assert set(update.sets) == {table_key(R, "a"), table_key(R, "b")}
    got = rows(update)
    assert got[(R, "1d", DAY)][0]["count"] == 2
    assert got[(R, "1d", DAY)][0]["max_magnitude"] == 5.0
    assert got[(R, "1h", DAY)][0]["count"] == 1
    assert got[(R, "1h", DAY + HOUR_MS)][0]["count"] == 1
    assert not any(merge for _, merge in got.values())
    assert update.deletes == []


def test_a_revision_replaces_its_own_entry_and_a_replay_changes_nothing() -> None:
    state = RegionWindows()
    state.apply([ev("a", DAY + 10, mag=4.0, updated=1)])
    update = state.apply([ev("a", DAY + 10, mag=4.6, updated=2)])
    got = rows(update)
    assert got[(R, "1h", DAY)][0]["count"] == 1
    assert got[(R, "1h", DAY)][0]["max_magnitude"] == 4.6
    assert state.apply([ev("a", DAY + 10, mag=4.6, updated=2)]).rows == []
    older = state.apply([ev("a", DAY + 10, mag=9.9, updated=1)])
    assert older.rows == [] and older.sets == {}


def test_a_revision_that_moves_the_hour_updates_both_hours() -> None:
    state = RegionWindows()
    state.apply([ev("a", DAY + 10, updated=1)])
    got = rows(state.apply([ev("a", DAY + HOUR_MS + 10, updated=2)]))
    assert got[(R, "1h", DAY)][0]["count"] == 0
    assert got[(R, "1h", DAY + HOUR_MS)][0]["count"] == 1
    assert got[(R, "1d", DAY)][0]["count"] == 1


def test_the_index_is_rebuilt_from_the_table_entries() -> None:
    state = RegionWindows()
    update = state.apply([ev("a", DAY + 10), ev("b", DAY + 20)])
    recovered = RegionWindows()
    assert recovered.load(update.sets.items()) == 2
    got = rows(recovered.apply([ev("c", DAY + 30)]))
    assert got[(R, "1h", DAY)][0]["count"] == 3  # not 1: the table's events count


def test_entries_behind_the_horizon_are_deleted() -> None:
    state = RegionWindows()
    state.apply([ev("old", DAY - 2 * DAY_MS + 5), ev("kept", DAY - DAY_MS)])
    update = state.apply([ev("new", DAY + DAY_MS + 1)])  # the horizon moves a day
    assert update.deletes == [table_key(R, "old")]
    assert set(state.events[R]) == {"kept", "new"}
    assert (R, "1h", DAY - 2 * DAY_MS) not in state.windows


def test_a_late_event_is_merged_into_the_stored_rows() -> None:
    state = RegionWindows()
    state.apply([ev("now", DAY + 10)])
    late_at = DAY - 3 * DAY_MS + 7
    update = state.apply([ev("late", late_at)])
    assert update.sets == {}  # not in the table
    got = rows(update)
    assert got[(R, "1h", late_at - late_at % HOUR_MS)] == (
        aggregate([[late_at, 3.0, 10.0, late_at]]),
        True,
    )
    assert got[(R, "1d", DAY - 3 * DAY_MS)][1] is True


def test_hour_changes_carry_before_after_and_the_trailing_counts() -> None:
    state = RegionWindows()
    state.apply([ev("q", DAY + 2 * HOUR_MS)])
    hour = DAY + 10 * HOUR_MS
    update = state.apply([ev(f"b{i}", hour + i) for i in range(3)])
    (change,) = update.hours
    assert (change.region, change.hour_start_ms, change.before, change.after) == (
        R,
        hour,
        0,
        3,
    )
    assert change.trailing is not None and len(change.trailing) == 24
    assert sum(change.trailing) == 1
    assert change.trailing[-8] == 1  # 8 hours before


def test_regions_are_independent() -> None:
    state = RegionWindows()
    update = state.apply([ev("a", DAY, region="00N000E"), ev("b", DAY)])
    assert {k[0] for k in rows(update)} == {"00N000E", R}
    # A far newer event in one region does not expire another region's events.
    assert state.apply([ev("c", DAY + 9 * DAY_MS, region="00N000E")]).deletes == [
        table_key("00N000E", "a")
    ]
    assert "b" in state.events[R]
