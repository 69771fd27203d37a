"""Unit tests of streamapp.replay: decoding, windows and the consume loop, no Kafka."""

from __future__ import annotations

import asyncio
import base64
import json
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from models.records import DeadLetter
from models.validation import validate_raw
from streamapp.exceptions import InvalidRecord
from streamapp.replay import (
    CLEAN_FRAME_COLUMNS,
    DEAD_LETTER_FRAME_COLUMNS,
    RAW_FRAME_COLUMNS,
    decode_record,
    records_to_frame,
    resolve_kind,
    to_millis,
    write_frame,
)
from streamapp.replay import reader as replay_mod
from streamapp.settings import Settings, load_settings

CAPTURE = Path(__file__).resolve().parents[3] / "tests/fixtures/usgs"
FETCHED_AT = "2014-04-14T11:52:07.000000Z"
SOURCE_URL = "http://earthquake.usgs.gov/earthquakes/feed/v1.0/summary/all_day.geojson"
TS = 1_397_476_327_000  # 2014-04-14T11:52:07Z


@dataclass
class Rec:
    """A ConsumerRecord look-alike."""

    value: bytes | None
    partition: int = 0
    offset: int = 0
    timestamp: int = TS
    key: bytes | None = None
    headers: list[tuple[str, bytes]] = field(default_factory=list)
    topic: str = "t"


@pytest.fixture(scope="module")
def settings() -> Settings:
    return load_settings(environ={}, env_file=None)


@pytest.fixture(scope="module")
def features() -> list[dict[str, Any]]:
    doc = json.loads((CAPTURE / "all_day_2014-04-14.geojson").read_text("utf-8"))
    return list(doc["features"])


def envelope(feature: dict[str, Any]) -> bytes:
    return json.dumps(
        {"feature": feature, "fetched_at": FETCHED_AT, "source_url": SOURCE_URL}
    ).encode("utf-8")


def utc(ms: int) -> pd.Timestamp:
    return pd.Timestamp(datetime.fromtimestamp(ms / 1000, UTC))


# ------------------------------------------------------------------------ raw


def test_raw_feature_is_flattened(features: list[dict[str, Any]]) -> None:
    feature = features[0]
    frame = records_to_frame(
        [Rec(envelope(feature), partition=2, offset=9, key=b"nc72199065")], "raw"
    )
    assert list(frame.columns) == list(RAW_FRAME_COLUMNS)
    row = frame.iloc[0]
    props = feature["properties"]
    assert (row["partition"], row["offset"], row["key"]) == (2, 9, "nc72199065")
    assert row["timestamp"] == utc(TS)
    assert row["id"] == feature["id"]
    assert row["mag"] == props["mag"]
    assert row["place"] == props["place"]
    assert row["time"] == utc(props["time"])
    assert row["updated"] == utc(props["updated"])
    assert str(frame["time"].dt.tz) == "UTC"
    assert row["status"] == "AUTOMATIC"
    assert row["magType"] == "Md"
    assert row["type"] == "earthquake"
    lon, lat, depth = feature["geometry"]["coordinates"]
    assert (row["lon"], row["lat"], row["depth"]) == (lon, lat, depth)
    assert row["fetched_at"] == pd.Timestamp("2014-04-14T11:52:07Z")
    assert row["source_url"] == SOURCE_URL
    assert pd.isna(row["decode_error"])


def test_the_whole_capture_decodes(features: list[dict[str, Any]]) -> None:
    records = [Rec(envelope(f), offset=i) for i, f in enumerate(features)]
    frame = records_to_frame(records, "raw")
    assert len(frame) == 146
    assert frame["decode_error"].isna().all()
    assert frame["id"].nunique() == 146
    assert frame["mag"].dtype == "float64"  # integer mags ("mag": 2) included
    assert frame["time"].notna().all()
    assert set(frame["magType"]) >= {"ml", "Md", "mb"}


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        (None, "empty"),
        (b"", "empty"),
        (b"\xff\xfe\x00garbage", "not_utf8"),
        (b"{not json", "not_json"),
        (b"[1, 2, 3]", "not_object"),
        (b'{"fetched_at": "x"}', "no_feature"),
        (b'{"feature": "nope"}', "no_feature"),
    ],
)
def test_undecodable_raw_becomes_an_error_row(value: bytes | None, kind: str) -> None:
    frame = records_to_frame([Rec(value, offset=3, key=b"k")], "raw")
    assert len(frame) == 1
    row = frame.iloc[0]
    assert row["decode_error"].startswith(kind + ":")
    assert (row["offset"], row["key"]) == (3, "k")
    assert pd.isna(row["id"])


def test_partial_raw_feature_is_kept_leniently() -> None:
    value = json.dumps(
        {
            "feature": {
                "id": "x1",
                "properties": {"mag": "big", "time": "soon", "offset": 5, "extra": [1]},
                "geometry": {"coordinates": [1.5]},
            }
        }
    ).encode()
    row = records_to_frame([Rec(value)], "raw").iloc[0]
    assert row["id"] == "x1"
    assert pd.isna(row["mag"]) and pd.isna(row["time"])  # wrong types: missing
    assert row["properties.offset"] == 5  # no clash with the Kafka offset
    assert row["offset"] == 0
    assert row["extra"] == "[1]"  # nested values stay scalar (JSON text)
    assert row["lon"] == 1.5 and pd.isna(row["lat"])
    assert pd.isna(row["decode_error"])


def test_non_utf8_key_never_raises() -> None:
    row = decode_record(Rec(b"{}", key=b"\xff\x01"), "raw")
    assert row["key"] == "\\xff\x01"


# ---------------------------------------------------------------------- clean


def test_clean_quake_fields(features: list[dict[str, Any]]) -> None:
    quake = validate_raw(
        envelope(features[0]), max_bytes=1 << 20, max_depth=32, partition=1, offset=42
    )
    frame = records_to_frame([Rec(quake.dumps(), key=quake.id.encode())], "clean")
    assert list(frame.columns) == list(
        CLEAN_FRAME_COLUMNS
    )  # no "__faust" metadata column
    row = frame.iloc[0]
    assert row["id"] == features[0]["id"] == row["key"]
    assert row["time"] == utc(features[0]["properties"]["time"])
    assert row["magnitude"] == 1.7 and row["mag_type"] == "Md"
    assert row["status"] == "automatic"
    assert (row["raw_partition"], row["raw_offset"]) == (1, 42)
    assert row["fetched_at"] == pd.Timestamp(FETCHED_AT)
    assert frame["raw_offset"].dtype == "Int64"


def test_clean_garbage_is_an_error_row() -> None:
    frame = records_to_frame([Rec(b"\x00\x01")], "clean")
    assert frame.iloc[0]["decode_error"].startswith("not_json:")


# ---------------------------------------------------------------- dead letters


def dead_letter(value: bytes | None, key: bytes | None = b"key-1") -> DeadLetter:
    error = InvalidRecord("not_utf8", "value is not UTF-8", {"position": 0})
    return DeadLetter.build(value, key, "earthquakes.raw", 3, 77, error)


def test_dead_letter_with_non_utf8_payload() -> None:
    original = b"\xff\xfe\x00\x80 not text"
    letter = dead_letter(original)
    frame = records_to_frame(
        [Rec(letter.dumps(), offset=5, key=b"key-1", headers=letter.headers())],
        "dead-letter",
    )
    assert list(frame.columns)[: len(DEAD_LETTER_FRAME_COLUMNS)] == list(
        DEAD_LETTER_FRAME_COLUMNS
    )
    row = frame.iloc[0]
    assert row["error_kind"] == "not_utf8"
    assert row["error_message"] == "value is not UTF-8"
    assert json.loads(row["error_detail"]) == {"position": 0}
    assert row["source_topic"] == "earthquakes.raw"
    assert (row["source_partition"], row["source_offset"]) == (3, 77)
    assert row["source_key"] == "key-1"
    assert isinstance(row["payload"], bytes)
    assert row["payload"] == original  # kept byte for byte
    assert row["payload_size"] == len(original)
    assert "not text" in row["payload_text"]  # best-effort preview
    assert "\ufffd" in row["payload_text"]
    assert row["failed_at"].tzinfo is not None
    assert pd.isna(row["decode_error"])


def test_dead_letter_of_a_tombstone() -> None:
    letter = dead_letter(None, key=None)
    row = records_to_frame([Rec(letter.dumps())], "dead-letter").iloc[0]
    assert row["payload"] == b""
    assert json.loads(row["error_detail"])["_payload"] == {"null": True}
    assert pd.isna(row["source_key"])


def test_unreadable_dead_letter_falls_back_to_headers() -> None:
    letter = dead_letter(b"x")
    row = records_to_frame(
        [Rec(b"\xffbroken", headers=letter.headers())], "dead-letter"
    ).iloc[0]
    assert row["decode_error"].startswith("not_utf8:")
    assert row["error_kind"] == "not_utf8"
    assert row["source_topic"] == "earthquakes.raw"
    assert (row["source_partition"], row["source_offset"]) == (3, 77)


def test_dead_letter_with_bad_base64() -> None:
    value = json.dumps({"error_kind": "schema", "payload_b64": "***"}).encode()
    row = records_to_frame([Rec(value)], "dead-letter").iloc[0]
    assert row["error_kind"] == "schema"
    assert row["decode_error"].startswith("bad_payload:")


def test_auto_sniffs_each_message(features: list[dict[str, Any]]) -> None:
    quake = validate_raw(
        envelope(features[1]), max_bytes=1 << 20, max_depth=32, partition=0, offset=1
    )
    letter = dead_letter(b"\xff")
    rows = [
        decode_record(Rec(envelope(features[1])), "auto"),
        decode_record(Rec(quake.dumps()), "auto"),
        decode_record(Rec(letter.dumps()), "auto"),
    ]
    assert "lon" in rows[0] and "magType" in rows[0]
    assert "longitude" in rows[1] and "mag_type" in rows[1]
    assert rows[2]["payload"] == b"\xff"


# ------------------------------------------------------------- window / limit


def test_time_window_since_inclusive_until_exclusive() -> None:
    base = 1_700_000_000_000
    records = [Rec(b"{}", offset=i, timestamp=base + i * 1000) for i in range(10)]
    since = datetime.fromtimestamp((base + 3000) / 1000, UTC)
    until = pd.Timestamp(base + 7000, unit="ms", tz="UTC")
    frame = records_to_frame(records, "clean", since=since, until=until)
    assert list(frame["offset"]) == [3, 4, 5, 6]
    naive = datetime.fromtimestamp((base + 8000) / 1000, UTC).replace(tzinfo=None)
    assert list(records_to_frame(records, "clean", since=naive)["offset"]) == [8, 9]
    iso = pd.Timestamp(base + 2000, unit="ms", tz="UTC").isoformat()
    assert list(records_to_frame(records, "clean", until=iso)["offset"]) == [0, 1]
    assert records_to_frame(records, "clean", since=base + 20_000).empty


def test_limit_caps_rows_after_the_window() -> None:
    records = [Rec(b"{}", offset=i, timestamp=1000 + i) for i in range(10)]
    frame = records_to_frame(records, "clean", since=1004, limit=3)
    assert list(frame["offset"]) == [4, 5, 6]
    assert records_to_frame(records, "clean", limit=0).empty


def test_empty_frames_keep_their_columns() -> None:
    assert list(records_to_frame([], "raw").columns) == list(RAW_FRAME_COLUMNS)
    assert list(records_to_frame([], "clean").columns) == list(CLEAN_FRAME_COLUMNS)
    assert list(records_to_frame([], "dead-letter").columns) == list(
        DEAD_LETTER_FRAME_COLUMNS
    )


def test_to_millis() -> None:
    assert to_millis(None) is None
    assert to_millis(1234) == 1234
    assert to_millis("1970-01-01T00:00:01Z") == 1000
    assert to_millis(datetime(1970, 1, 1, 0, 0, 2)) == 2000  # naive = UTC
    assert to_millis(pd.Timestamp("1970-01-01T01:00:03+01:00")) == 3000
    with pytest.raises(TypeError):
        to_millis(True)


def test_resolve_kind(settings: Settings) -> None:
    assert resolve_kind(settings, settings.topic_raw) == "raw"
    assert resolve_kind(settings, settings.topic_clean) == "clean"
    assert resolve_kind(settings, settings.topic_dead_letter) == "dead-letter"
    assert resolve_kind(settings, "x.dlq") == "dead-letter"
    assert resolve_kind(settings, "t-1.raw") == "raw"
    assert resolve_kind(settings, "t-1.clean") == "clean"
    assert resolve_kind(settings, "whatever") == "auto"
    assert resolve_kind(settings, "whatever", "clean") == "clean"
    with pytest.raises(ValueError, match="kind="):
        resolve_kind(settings, "t", "json")


# ------------------------------------------------------------------- output


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_write_frame_round_trips(tmp_path: Path, suffix: str) -> None:
    letter = dead_letter(b"\xff\xfe bytes")
    frame = records_to_frame([Rec(letter.dumps(), headers=letter.headers())], "auto")
    path = write_frame(frame, tmp_path / f"out{suffix}")
    back = pd.read_parquet(path) if suffix == ".parquet" else pd.read_csv(path)
    assert len(back) == 1
    payload = back.iloc[0]["payload"]
    if suffix == ".csv":
        payload = base64.b64decode(payload)
    assert payload == b"\xff\xfe bytes"
    with pytest.raises(ValueError, match=r"parquet or \.csv"):
        write_frame(frame, tmp_path / "out.xlsx")


# ------------------------------------------------------------- consume loop


@dataclass(frozen=True)
class TP:
    topic: str
    partition: int


class FakeConsumer:
    """Partitions of records; getmany hands out at most ``step`` per partition."""

    def __init__(self, data: dict[TP, list[Rec]], step: int = 2) -> None:
        self.data = data
        self.pos = {tp: 0 for tp in data}
        self.step = step
        self.paused: set[TP] = set()
        self.calls = 0

    async def getmany(self, *tps: TP, timeout_ms: int = 0) -> dict[TP, list[Rec]]:
        self.calls += 1
        out: dict[TP, list[Rec]] = {}
        for tp in tps:
            chunk = [r for r in self.data[tp] if r.offset >= self.pos[tp]][: self.step]
            if chunk:
                out[tp] = chunk
                self.pos[tp] = chunk[-1].offset + 1
        if not out:
            await asyncio.sleep(timeout_ms / 1000)
        return out

    async def position(self, tp: TP) -> int:
        return self.pos[tp]

    def pause(self, *tps: TP) -> None:
        self.paused.update(tps)


def partitions(sizes: list[int]) -> dict[TP, list[Rec]]:
    return {
        TP("t", p): [Rec(b"{}", partition=p, offset=o) for o in range(n)]
        for p, n in enumerate(sizes)
    }


async def consume(consumer: FakeConsumer, stop: dict[TP, int], **kw: Any) -> Any:
    options: dict[str, Any] = {
        "decoder": "clean",
        "window": (None, None),
        "limit": None,
        "progress": False,
        "timeout": 5.0,
        "topic": "t",
    }
    options.update(kw)
    tps = sorted(consumer.data, key=lambda tp: tp.partition)
    return await replay_mod.consume(
        consumer, tps, dict.fromkeys(tps, 0), stop, **options
    )


async def test_consume_stops_at_the_end_offsets_taken_at_start() -> None:
    data = partitions([5, 0, 3])
    consumer = FakeConsumer(data)
    # messages written after the start (offsets >= stop) are never read
    stop = {TP("t", 0): 4, TP("t", 1): 0, TP("t", 2): 3}
    rows, scanned = await consume(consumer, stop)
    assert scanned == 7
    got = sorted((r["partition"], r["offset"]) for r in rows)
    assert got == [(0, 0), (0, 1), (0, 2), (0, 3), (2, 0), (2, 1), (2, 2)]
    assert consumer.paused == set(data)


async def test_consume_limit() -> None:
    consumer = FakeConsumer(partitions([50, 50]), step=7)
    stop = {TP("t", 0): 50, TP("t", 1): 50}
    rows, _ = await consume(consumer, stop, limit=10)
    assert len(rows) == 10


async def test_consume_times_out_when_the_broker_is_silent() -> None:
    consumer = FakeConsumer(partitions([2]))
    with pytest.raises(TimeoutError, match="got nothing"):
        await consume(consumer, {TP("t", 0): 5}, timeout=0.3)


# ------------------------------------------------------------- sync wrapper


def test_replay_runs_without_a_loop(
    monkeypatch: pytest.MonkeyPatch, settings: Settings
) -> None:
    seen: dict[str, Any] = {}

    async def fake(settings: Settings, topic: str, **kw: Any) -> pd.DataFrame:
        seen.update(kw, topic=topic, thread=threading.current_thread().name)
        return pd.DataFrame({"a": [1]})

    monkeypatch.setattr(replay_mod, "replay_topic", fake)
    frame = replay_mod.replay(settings, "t", limit=3)
    assert frame["a"].tolist() == [1]
    assert seen["limit"] == 3 and seen["topic"] == "t"
    assert seen["thread"] == threading.current_thread().name


async def test_replay_inside_a_running_loop_uses_a_thread(
    monkeypatch: pytest.MonkeyPatch, settings: Settings
) -> None:
    # what Jupyter does: call the sync API while the kernel's loop is running
    outer = asyncio.get_running_loop()
    seen: dict[str, Any] = {}

    async def fake(settings: Settings, topic: str, **kw: Any) -> pd.DataFrame:
        seen["loop"] = asyncio.get_running_loop()
        seen["thread"] = threading.current_thread().name
        return pd.DataFrame()

    monkeypatch.setattr(replay_mod, "replay_topic", fake)
    replay_mod.replay(settings, "t")
    assert seen["loop"] is not outer
    assert seen["thread"].startswith("streamapp-replay")
