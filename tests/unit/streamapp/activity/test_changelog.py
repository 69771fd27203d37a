"""write_entries: the local store, then every change acknowledged by the broker."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import orjson

from streamapp.activity.changelog import write_entries


class FakeProducer:
    def __init__(self, fail: set[bytes]) -> None:
        self.fail = fail
        self.sent: list[tuple[str, bytes, bytes | None, int]] = []

    async def send(
        self,
        topic: str,
        key: bytes,
        value: bytes | None,
        partition: int,
        timestamp: Any,
        headers: Any,
    ) -> asyncio.Future[None]:
        self.sent.append((topic, key, value, partition))
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if key in self.fail:
            self.fail.discard(key)  # fails once
            fut.set_exception(RuntimeError("broker gone"))
        else:
            fut.set_result(None)
        return fut


def fake_table(producer: FakeProducer) -> Any:
    async def start() -> FakeProducer:
        return producer

    return SimpleNamespace(
        name="activity-events",
        data={"30N130E/old": [1, 2.0, 3.0, 4]},
        app=SimpleNamespace(maybe_start_producer=start),
        changelog_topic=SimpleNamespace(get_topic_name=lambda: "app-changelog"),
        partition_for_key=lambda key: 3 if key.startswith("30N130E/") else 1,
    )


def test_entries_are_stored_and_sent_to_the_key_partition_in_json() -> None:
    producer = FakeProducer(fail=set())
    table = fake_table(producer)
    rounds = asyncio.run(
        write_entries(table, {"30N130E/a": [5, 4.5, 10.0, 6]}, ["30N130E/old"])
    )
    assert rounds == 1
    assert table.data == {"30N130E/a": [5, 4.5, 10.0, 6]}
    assert producer.sent == [
        ("app-changelog", b'"30N130E/a"', b"[5,4.5,10.0,6]", 3),
        ("app-changelog", b'"30N130E/old"', None, 3),  # a tombstone
    ]
    assert orjson.loads(producer.sent[0][1]) == "30N130E/a"


def test_a_failed_send_is_sent_again_until_acknowledged() -> None:
    producer = FakeProducer(fail={b'"00N000E/b"'})
    table = fake_table(producer)
    sets = {"30N130E/a": [1, None, 1.0, 1], "00N000E/b": [2, 3.0, 1.0, 2]}
    rounds = asyncio.run(write_entries(table, sets, [], max_backoff=0.01))
    assert rounds == 2
    assert [(key, part) for _, key, _, part in producer.sent] == [
        (b'"30N130E/a"', 3),
        (b'"00N000E/b"', 1),
        (b'"00N000E/b"', 1),
    ]


def test_nothing_to_write_sends_nothing() -> None:
    producer = FakeProducer(fail=set())
    assert asyncio.run(write_entries(fake_table(producer), {}, [])) == 0
    assert producer.sent == []
