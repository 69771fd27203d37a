"""CopartitionedTable: changelog partition from part of the key; sends awaited."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka.partitioner import murmur2
from faust.tables.base import Collection

from streamapp.app import app
from streamapp.faust_ext import CopartitionedTable, partition_of


def test_partition_of_is_kafkas_murmur2_partitioner() -> None:
    for key in (b"30N130E", b"00N000E", b"80S180W", b""):
        assert partition_of(key, 4) == (murmur2(key) & 0x7FFFFFFF) % 4
        assert partition_of(key, 12) == (murmur2(key) & 0x7FFFFFFF) % 12


def _table(name: str) -> CopartitionedTable:
    return CopartitionedTable(
        app,
        name=name,
        partition_key=lambda key: key.split("/", 1)[0].encode(),
        key_type=str,
    )


def test_the_partition_follows_the_key_part_without_a_current_event() -> None:
    table = _table("unit-copart")
    for region in ("30N130E", "10S080W", "50S130W"):
        want = partition_of(region.encode(), table.changelog_partitions)
        assert table.partition_for_key(f"{region}/a") == want
        assert table.partition_for_key(f"{region}/b") == want


def test_changelog_sent_waits_and_sends_failed_keys_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    table = _table("unit-copart-sent")
    sends: list[tuple[int | None, Any, Any]] = []
    failures = [RuntimeError("broker gone")]

    async def run() -> int:
        loop = asyncio.get_running_loop()

        def send(
            self: Any, partition: Any, key: Any, value: Any, *args: Any
        ) -> asyncio.Future[None]:
            sends.append((partition, key, value))
            fut: asyncio.Future[None] = loop.create_future()
            if failures and key == "30N130E/a":
                fut.set_exception(failures.pop())
            else:
                fut.set_result(None)
            return fut

        monkeypatch.setattr(Collection, "send_changelog", send)
        table.data["30N130E/a"] = [1]
        table.send_changelog(0, "30N130E/a", [1])
        table.send_changelog(0, "30N130E/b", None)
        return await table.changelog_sent(max_backoff=0.01)

    assert asyncio.run(run()) == 2
    part = table.partition_for_key("30N130E/a")
    # The failed key went again with its current value; the other once only.
    assert sends == [
        (0, "30N130E/a", [1]),
        (0, "30N130E/b", None),
        (part, "30N130E/a", [1]),
    ]
    assert asyncio.run(table.changelog_sent()) == 0
