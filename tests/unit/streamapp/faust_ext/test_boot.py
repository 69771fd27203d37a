"""Unit tests of the wait for Kafka and the boot order (no broker)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from streamapp.app import app
from streamapp.exceptions import KafkaUnavailable
from streamapp.faust_ext import WaitForKafka, WaitingBootStrategy, boot


class Probe:
    """Fails ``failures`` times with a connection error, then answers."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0

    async def __call__(self) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            raise ConnectionError(
                "Unable to bootstrap from [('localhost', 9999, <AddressFamily: 0>)]"
            )


def gate(probe: Probe, **kwargs: Any) -> tuple[WaitForKafka, list[float]]:
    waits = WaitForKafka(probe, address="localhost:9999", **kwargs)
    pauses: list[float] = []

    async def sleep(seconds: float) -> None:
        pauses.append(seconds)

    waits.sleep = sleep  # type: ignore[method-assign]
    return waits, pauses


def test_waits_with_capped_backoff_and_one_line_per_attempt(
    caplog: pytest.LogCaptureFixture,
) -> None:
    probe = Probe(failures=7)
    waits, pauses = gate(probe)
    with caplog.at_level(logging.WARNING, logger=boot.__name__):
        asyncio.run(waits.wait_for_broker())
    assert probe.calls == 8
    assert pauses == [1.0, 2.0, 4.0, 8.0, 15.0, 15.0, 15.0]
    lines = [r.getMessage() for r in caplog.records if r.name == boot.__name__]
    assert len(lines) == 7
    assert lines[0] == (
        "Kafka at localhost:9999 does not answer "
        "(Unable to bootstrap); attempt 1, retrying in 1 s"
    )
    assert waits.unreachable_since is None and waits.attempts == 0


def test_gives_up_past_the_limit_in_one_line() -> None:
    probe = Probe(failures=10**6)
    waits, _ = gate(probe, limit=0.05)

    async def run() -> None:
        waits.sleep = asyncio.sleep  # type: ignore[method-assign]
        await waits.wait_for_broker()

    with pytest.raises(KafkaUnavailable) as caught:
        asyncio.run(run())
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("Kafka at localhost:9999 did not answer for ")
    assert "(KAFKA_WAIT_SECONDS=0.05): Unable to bootstrap" in message
    assert probe.calls <= 3  # the pause is cut to the limit, not a full backoff


def test_on_start_stops_the_worker_with_a_fresh_exception() -> None:
    stopped: list[BaseException] = []

    async def give_up(exc: BaseException) -> None:
        stopped.append(exc)

    waits = WaitForKafka(
        Probe(failures=10**6), address="kafka:9092", limit=0.01, give_up=give_up
    )
    asyncio.run(waits.on_start())
    assert len(stopped) == 1
    assert isinstance(stopped[0], KafkaUnavailable)
    assert stopped[0].__traceback__ is None  # faust logs no traceback for it


def test_no_limit_waits_for_ever() -> None:
    probe = Probe(failures=50)
    waits, pauses = gate(probe, limit=0.0)
    asyncio.run(waits.wait_for_broker())
    assert probe.calls == 51
    assert max(pauses) == boot.KAFKA_WAIT_MAX_SECONDS


def test_aiokafka_bootstrap_errors_are_quiet_only_while_waiting() -> None:
    aiokafka_log = logging.getLogger("aiokafka")
    seen: list[list[logging.Filter]] = []

    async def probe() -> None:
        seen.append(list(aiokafka_log.filters))
        if len(seen) == 1:
            raise ConnectionError("refused")

    waits, _ = gate(probe)  # type: ignore[arg-type]
    asyncio.run(waits.wait_for_broker())
    assert all(any(isinstance(f, boot._QuietBootstrap) for f in s) for s in seen)
    assert not any(isinstance(f, boot._QuietBootstrap) for f in aiokafka_log.filters)
    record = logging.LogRecord("aiokafka", logging.ERROR, "", 0, "x", None, None)
    record.msg = 'Unable connect to "%s:%s": %s'
    assert boot._QuietBootstrap().filter(record) is False


def test_the_app_waits_for_kafka_after_the_web_server_before_the_producer() -> None:
    assert isinstance(app.boot_strategy, WaitingBootStrategy)
    assert isinstance(app.kafka_wait, WaitForKafka)
    services = list(app.boot_strategy.server())
    gate_at = services.index(app.kafka_wait)
    assert services.index(app.producer) == gate_at + 1
    web = [i for i, s in enumerate(services) if type(s).__name__ == "Web"]
    assert web and web[0] < gate_at
