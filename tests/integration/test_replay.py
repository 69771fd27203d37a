"""streamapp.replay against the real broker: windows, limits, no group, live topics."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from models.records import DeadLetter
from models.validation import validate_raw
from streamapp.exceptions import InvalidRecord
from streamapp.kafka import aiokafka_kwargs
from streamapp.replay import (
    CLEAN_FRAME_COLUMNS,
    DEAD_LETTER_FRAME_COLUMNS,
    RAW_FRAME_COLUMNS,
    TopicNotFound,
    replay,
    replay_topic,
)
from streamapp.settings import Settings, load_settings

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

ROOT = Path(__file__).resolve().parents[2]
CAPTURE = ROOT / "tests/fixtures/usgs/all_day_2014-04-14.geojson"
FAUST = Path(sys.executable).with_name("faust")
PARTITIONS = 4
T0 = 1_600_000_000_000  # 2020-09-13T12:26:40Z: the first batch's timestamps
T1 = T0 + 3_600_000  # one hour later: the second batch's


@dataclass(frozen=True)
class Topics:
    tag: str
    settings: Settings
    env: dict[str, str]

    @property
    def raw(self) -> str:
        return self.settings.topic_raw

    @property
    def clean(self) -> str:
        return self.settings.topic_clean

    @property
    def dead_letter(self) -> str:
        return self.settings.topic_dead_letter


def features() -> list[dict[str, Any]]:
    return list(json.loads(CAPTURE.read_text("utf-8"))["features"])


def envelope(feature: dict[str, Any]) -> bytes:
    return json.dumps(
        {
            "feature": feature,
            "fetched_at": "2014-04-14T11:52:07Z",
            "source_url": "https://example.invalid/all_day.geojson",
        }
    ).encode("utf-8")


async def admin_client(settings: Settings) -> AIOKafkaAdminClient:
    admin = AIOKafkaAdminClient(**aiokafka_kwargs(settings))
    await admin.start()
    return admin


async def list_groups(settings: Settings) -> set[str]:
    admin = await admin_client(settings)
    try:
        return {str(group[0]) for group in await admin.list_consumer_groups()}
    finally:
        await admin.close()


async def create_topics(settings: Settings, names: list[str]) -> None:
    admin = await admin_client(settings)
    try:
        await admin.create_topics(
            [
                NewTopic(n, num_partitions=PARTITIONS, replication_factor=1)
                for n in names
            ]
        )
        for _ in range(100):  # wait for the leaders
            described = await admin.describe_topics(names)
            if all(
                len(t.get("partitions", [])) == PARTITIONS
                and all(p["leader"] >= 0 for p in t["partitions"])
                for t in described
            ):
                return
            await asyncio.sleep(0.1)
        raise AssertionError(f"topics {names} have no leaders")
    finally:
        await admin.close()


async def delete_topics(settings: Settings, names: list[str]) -> None:
    admin = await admin_client(settings)
    try:
        await admin.delete_topics(names)
    finally:
        await admin.close()


@pytest.fixture
def topics() -> Iterator[Topics]:
    """Unique raw/clean/dead-letter topics (4 partitions), deleted afterwards."""
    tag = uuid.uuid4().hex[:8]
    env = {
        "APP_ID": f"it-replay-{tag}",
        "TOPIC_RAW": f"it-replay-{tag}.raw",
        "TOPIC_CLEAN": f"it-replay-{tag}.clean",
        "TOPIC_DEAD_LETTER": f"it-replay-{tag}.dead-letter",
    }
    settings = load_settings(environ=env, env_file=None)
    names = [settings.topic_raw, settings.topic_clean, settings.topic_dead_letter]
    asyncio.run(create_topics(settings, names))
    try:
        yield Topics(tag, settings, env)
    finally:
        asyncio.run(delete_topics(settings, names))


@pytest.fixture
async def producer(topics: Topics) -> AsyncIterator[AIOKafkaProducer]:
    prod = AIOKafkaProducer(**aiokafka_kwargs(topics.settings), acks="all")
    await prod.start()
    try:
        yield prod
    finally:
        await prod.stop()


async def send_all(
    producer: AIOKafkaProducer,
    topic: str,
    messages: list[tuple[bytes | None, bytes | None]],
    *,
    timestamp_ms: int | None = None,
    headers: list[list[tuple[str, bytes]]] | None = None,
) -> None:
    futures = []
    for i, (key, value) in enumerate(messages):
        futures.append(
            await producer.send(
                topic,
                value,
                key=key,
                timestamp_ms=None if timestamp_ms is None else timestamp_ms + i,
                headers=None if headers is None else headers[i],
            )
        )
    await asyncio.gather(*futures)


# ----------------------------------------------------------------------- tests


async def test_replays_the_three_kinds(
    topics: Topics, producer: AIOKafkaProducer
) -> None:
    feats = features()
    raw = [(f["id"].encode(), envelope(f)) for f in feats]
    raw += [(b"bad-1", b"\xff\xfe not utf-8"), (b"bad-2", b"{not json")]
    await send_all(producer, topics.raw, raw)
    quakes = [
        validate_raw(
            envelope(f), max_bytes=1 << 20, max_depth=32, partition=0, offset=i
        )
        for i, f in enumerate(feats)
    ]
    await send_all(producer, topics.clean, [(q.id.encode(), q.dumps()) for q in quakes])
    error = InvalidRecord("not_utf8", "value is not UTF-8")
    letters = [
        DeadLetter.build(b"\xff\xfe not utf-8", b"bad-1", topics.raw, 1, 5, error),
        DeadLetter.build(b"\x80" * 10, None, topics.raw, 2, 9, error),
    ]
    await send_all(
        producer,
        topics.dead_letter,
        [(None, d.dumps()) for d in letters],
        headers=[d.headers() for d in letters],
    )

    frame = await replay_topic(topics.settings, topics.raw)
    assert list(frame.columns) == list(RAW_FRAME_COLUMNS)
    assert len(frame) == len(feats) + 2
    assert frame["partition"].nunique() == PARTITIONS  # every partition read
    assert frame["id"].dropna().nunique() == len(feats)
    assert frame["decode_error"].notna().sum() == 2
    assert str(frame["time"].dt.tz) == "UTC"
    assert frame.attrs["replay"]["scanned"] == len(raw)

    clean = await replay_topic(topics.settings, topics.clean)
    assert list(clean.columns) == list(CLEAN_FRAME_COLUMNS)
    assert set(clean["id"]) == {f["id"] for f in feats}

    dead = await replay_topic(topics.settings, topics.dead_letter)
    assert list(dead.columns)[: len(DEAD_LETTER_FRAME_COLUMNS)] == list(
        DEAD_LETTER_FRAME_COLUMNS
    )
    dead = dead.sort_values("source_offset")
    assert dead["payload"].tolist() == [b"\xff\xfe not utf-8", b"\x80" * 10]
    assert dead["error_kind"].tolist() == ["not_utf8", "not_utf8"]


async def test_limit_and_time_window(
    topics: Topics, producer: AIOKafkaProducer
) -> None:
    first = [(b"a%d" % i, envelope({"id": f"a{i}"})) for i in range(40)]
    second = [(b"b%d" % i, envelope({"id": f"b{i}"})) for i in range(30)]
    await send_all(producer, topics.raw, first, timestamp_ms=T0)
    await send_all(producer, topics.raw, second, timestamp_ms=T1)

    assert len(await replay_topic(topics.settings, topics.raw, limit=7)) == 7
    assert len(await replay_topic(topics.settings, topics.raw, limit=0)) == 0

    since = pd.Timestamp(T1, unit="ms", tz="UTC")
    late = await replay_topic(topics.settings, topics.raw, since=since)
    assert sorted(late["id"]) == sorted(f"b{i}" for i in range(30))
    assert (late["timestamp"] >= since).all()

    early = await replay_topic(topics.settings, topics.raw, until=since.isoformat())
    assert sorted(early["id"]) == sorted(f"a{i}" for i in range(40))

    window = await replay_topic(
        topics.settings, topics.raw, since=T0 + 10, until=T0 + 20, limit=100
    )
    assert sorted(window["id"]) == sorted(f"a{i}" for i in range(10, 20))

    nothing = await replay_topic(topics.settings, topics.raw, since=T1 + 10**9)
    assert nothing.empty and list(nothing.columns) == list(RAW_FRAME_COLUMNS)


async def test_no_consumer_group_is_created(
    topics: Topics, producer: AIOKafkaProducer
) -> None:
    await send_all(producer, topics.raw, [(b"k", envelope({"id": "x"}))] * 20)
    before = await list_groups(topics.settings)
    for _ in range(2):
        frame = await replay_topic(topics.settings, topics.raw)
        assert len(frame) == 20
    after = await list_groups(topics.settings)
    # other tests may create groups meanwhile; none of them may be ours
    assert not {g for g in after - before if topics.tag in g}
    assert not {g for g in after if topics.tag in g}


async def test_terminates_while_a_producer_keeps_writing(
    topics: Topics, producer: AIOKafkaProducer
) -> None:
    await send_all(producer, topics.raw, [(b"k%d" % i, b"{}") for i in range(500)])
    stop = asyncio.Event()
    live = asyncio.Event()
    sent = 0

    async def keep_writing() -> None:
        nonlocal sent
        while not stop.is_set():
            await (await producer.send(topics.raw, b"{}", key=b"live%d" % sent))
            sent += 1
            if sent >= 50:
                live.set()
            await asyncio.sleep(0.002)

    writer = asyncio.create_task(keep_writing())
    try:
        await asyncio.wait_for(live.wait(), 60)  # the topic is live
        frame = await asyncio.wait_for(
            replay_topic(topics.settings, topics.raw, kind="raw"), timeout=120
        )
        snapshot = sum(frame.attrs["replay"]["end_offsets"].values())
        # A fast replay can finish before the writer's next message: give the live
        # topic time to grow past the snapshot the replay stopped at.
        for _ in range(300):
            if sent > snapshot - 500:
                break
            await asyncio.sleep(0.1)
        written_meanwhile = sent
    finally:
        stop.set()
        await writer
    info = frame.attrs["replay"]
    snapshot = sum(info["end_offsets"].values())
    assert len(frame) == snapshot  # exactly what was there when it started
    assert snapshot >= 550
    assert written_meanwhile > snapshot - 500  # the writer kept going


async def test_missing_topic_is_an_error_and_is_not_created(topics: Topics) -> None:
    name = f"it-replay-{topics.tag}.missing"
    with pytest.raises(TopicNotFound):
        await replay_topic(topics.settings, name)
    admin = await admin_client(topics.settings)
    try:
        assert name not in await admin.list_topics()
    finally:
        await admin.close()


async def test_sync_replay_works_inside_a_running_loop(
    topics: Topics, producer: AIOKafkaProducer
) -> None:
    # what a notebook does: the kernel's loop is running, the API is synchronous
    await send_all(producer, topics.clean, [(b"k", b'{"id": "q1"}')] * 3)
    frame = replay(topics.settings, topics.clean, progress=True)
    assert frame["id"].tolist() == ["q1", "q1", "q1"]


async def run_cli(args: list[str], env: dict[str, str], cwd: Path) -> Any:
    return await asyncio.to_thread(
        subprocess.run,
        [str(FAUST), "-A", "streamapp", "replay", *args, "--no-progress"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )


async def test_faust_replay_command(
    topics: Topics, producer: AIOKafkaProducer, tmp_path: Path
) -> None:
    feats = features()[:25]
    await send_all(
        producer, topics.raw, [(f["id"].encode(), envelope(f)) for f in feats]
    )
    env = {**os.environ, **topics.env}
    out = tmp_path / "raw.parquet"
    proc = await run_cli(
        [topics.raw, "--out", str(out), "--limit", "20"], env, tmp_path
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "into 20 row(s)" in proc.stdout
    frame = pd.read_parquet(out)
    assert len(frame) == 20 and set(frame["id"]) <= {f["id"] for f in feats}

    csv = tmp_path / "raw.csv"
    proc = await run_cli([topics.raw, "-o", str(csv), "--kind", "raw"], env, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(pd.read_csv(csv)) == 25

    proc = await run_cli([f"{topics.raw}.missing", "-o", str(csv)], env, tmp_path)
    assert proc.returncode == 1
    assert "does not exist" in proc.stderr
    groups = await list_groups(topics.settings)
    assert not {g for g in groups if topics.tag in g}
