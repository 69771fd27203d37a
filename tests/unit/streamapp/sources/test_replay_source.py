"""The replay source: the bundled capture re-timed to now, deterministically."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from streamapp.exceptions import SourceResponseError
from streamapp.settings import Settings
from streamapp.sources import ReplaySource, build_source, retime
from streamapp.sources.usgs import UsgsSource
from tests.unit.streamapp.sources.source_testkit import FEED_2017, NOW, fixed_clock

BUNDLED = Settings().replay_path


def ms(when: datetime) -> int:
    return int(when.timestamp() * 1000)


def times(features: list[Any], name: str) -> list[int]:
    return [f["properties"][name] for f in features]


def test_bundled_capture_is_the_default() -> None:
    assert BUNDLED.name == "all_day_2014-04-14.geojson"
    assert BUNDLED.is_file()


def untimed(feature: dict[str, Any]) -> dict[str, Any]:
    """The properties of a feature without its timestamps."""
    props = feature["properties"]
    return {k: v for k, v in props.items() if k not in ("time", "updated")}


def gaps(features: list[Any]) -> list[int]:
    """Each event's time-to-update."""
    pairs = zip(times(features, "updated"), times(features, "time"), strict=True)
    return [u - t for u, t in pairs]


async def test_replay_retimes_the_newest_change_to_now() -> None:
    source = ReplaySource(BUNDLED, clock=fixed_clock)
    result = await source.fetch()
    original = json.loads(BUNDLED.read_bytes())["features"]
    features = result.features
    assert len(features) == len(original) == 146
    stamps = times(features, "time") + times(features, "updated")
    assert max(stamps) == ms(NOW)
    # spacing preserved: every timestamp moved by the same amount
    before = times(original, "time") + times(original, "updated")
    assert len({a - b for a, b in zip(stamps, before, strict=True)}) == 1
    # nothing else changed
    for new, old in zip(features, original, strict=True):
        assert new["id"] == old["id"]
        assert new["geometry"] == old["geometry"]
        assert untimed(new) == untimed(old)
    assert result.source_url == BUNDLED.resolve().as_uri()
    assert result.fetched_at == NOW
    assert result.size_bytes == BUNDLED.stat().st_size
    assert source.anchor == NOW


async def test_replay_is_deterministic_across_fetches() -> None:
    ticks = iter([NOW + timedelta(minutes=n) for n in range(10)])
    source = ReplaySource(BUNDLED, clock=lambda: next(ticks))
    first = await source.fetch()
    second = await source.fetch()
    assert first.features == second.features  # same anchor: the dedup table skips them
    assert second.fetched_at == NOW + timedelta(minutes=2)
    first.features[0]["id"] = "mutated"
    third = ReplaySource(BUNDLED, anchor=NOW)
    assert (await third.fetch()).features == second.features
    assert (await source.fetch()).features[0]["id"] != "mutated"


def test_retime_is_pure_and_deterministic() -> None:
    features = json.loads(FEED_2017.read_bytes())["features"]
    snapshot = json.dumps(features)
    anchor = datetime(2030, 1, 1, tzinfo=UTC)
    a = retime(features, anchor)
    assert a == retime(features, anchor)
    assert json.dumps(features) == snapshot  # input untouched
    assert max(times(a, "updated") + times(a, "time")) == ms(anchor)
    assert gaps(features) == gaps(a)


def test_retime_leaves_odd_features_alone() -> None:
    features: list[Any] = [
        7,
        None,
        {"id": "x"},
        {"id": "y", "properties": {"time": "noon", "updated": True}},
        {"id": "z", "properties": {"time": 1_000, "updated": 2_000}},
    ]
    out = retime(features, datetime.fromtimestamp(10, tz=UTC))
    assert out[:4] == features[:4]
    assert out[4]["properties"] == {"time": 9_000, "updated": 10_000}
    assert retime([1, 2], NOW) == [1, 2]


async def test_missing_or_bad_replay_file(tmp_path: Path) -> None:
    with pytest.raises(SourceResponseError, match="cannot read the replay file"):
        await ReplaySource(tmp_path / "nope.geojson").fetch()
    bad = tmp_path / "bad.geojson"
    bad.write_text('{"type": "Feature"}')
    with pytest.raises(SourceResponseError, match="not a GeoJSON FeatureCollection"):
        await ReplaySource(bad).fetch()


async def test_build_source_picks_by_setting(tmp_path: Path) -> None:
    replay = build_source(Settings(source="replay"))
    assert isinstance(replay, ReplaySource)
    assert replay.path == BUNDLED
    own = tmp_path / "own.geojson"
    own.write_text('{"type": "FeatureCollection", "features": []}')
    assert build_source(Settings(source="replay", replay_file=str(own))).url == (
        own.resolve().as_uri()
    )
    usgs = build_source(
        Settings(source="usgs", source_url="http://x.test/f", source_max_retries=2)
    )
    assert isinstance(usgs, UsgsSource)
    assert usgs.url == "http://x.test/f"
    assert usgs.attempts == 3
    await usgs.close()
    with pytest.raises(ValueError, match="unknown source"):
        build_source(Settings(source="ftp"))
