"""Unit tests of ``streamapp.delivery.deliver`` (a fake producer, no Kafka)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from streamapp import delivery
from streamapp.delivery import Outgoing, deliver


class FakeProducer:
    """Fails the first ``failures`` deliveries of each value, then succeeds."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.attempts: dict[bytes, int] = {}
        self.delivered: list[tuple[str, bytes | None, bytes, Any]] = []

    async def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes,
        partition: int | None,
        timestamp: float | None,
        headers: Any,
    ) -> asyncio.Future[Any]:
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        n = self.attempts[value] = self.attempts.get(value, 0) + 1
        if n <= self.failures:
            fut.set_exception(ConnectionError("broker gone"))
        else:
            self.delivered.append((topic, key, value, headers))
            fut.set_result(None)
        return fut


class FakeTopic:
    def __init__(self, producer: FakeProducer) -> None:
        async def maybe_start_producer() -> FakeProducer:
            return producer

        self.app = type("App", (), {})()
        self.app.maybe_start_producer = maybe_start_producer

    def get_topic_name(self) -> str:
        return "out"


@pytest.fixture(autouse=True)
def no_sleep(monkeypatch: pytest.MonkeyPatch) -> None:
    async def instant(_: float) -> None:
        return None

    monkeypatch.setattr(delivery.asyncio, "sleep", instant)


def messages(producer: FakeProducer, n: int) -> list[Outgoing]:
    topic: Any = FakeTopic(producer)
    return [
        Outgoing(topic, b"k%d" % i, b"v%d" % i, headers=[("h", b"1")]) for i in range(n)
    ]


async def test_everything_delivered_first_round() -> None:
    producer = FakeProducer()
    assert await deliver(messages(producer, 5)) == 1
    assert [v for _, _, v, _ in producer.delivered] == [b"v%d" % i for i in range(5)]
    assert producer.delivered[0][3] == [("h", b"1")]


async def test_failed_deliveries_are_retried_until_kafka_has_them() -> None:
    producer = FakeProducer(failures=3)
    assert await deliver(messages(producer, 4)) == 4
    assert sorted(v for _, _, v, _ in producer.delivered) == [
        b"v%d" % i for i in range(4)
    ]
    assert all(n == 4 for n in producer.attempts.values())


async def test_bounded_attempts_raise_the_delivery_error() -> None:
    producer = FakeProducer(failures=5)
    with pytest.raises(ConnectionError):
        await deliver(messages(producer, 2), attempts=2)
    assert producer.delivered == []
