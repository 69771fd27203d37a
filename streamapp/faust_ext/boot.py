"""The boot order (``App.BootStrategy``): the web server, then a wait for Kafka.

faust-streaming 0.15.3 starts the producer before the web server, and the
producer's start raises ``KafkaConnectionError`` at once when no broker answers:
the worker exits with a traceback, and ``/health`` never answers. Here
:class:`WaitForKafka` sits between the web server and the producer: it waits
for a broker with capped backoff (one log line per attempt, naming the address),
so ``/health`` answers 503 naming Kafka meanwhile, and it keeps watching while
the worker runs. With a limit (``KAFKA_WAIT_SECONDS``) a worker that waited that
long stops with one line. Overrides ``BootStrategy.server`` (a public method);
can go when faust waits for the broker itself.

Example::

    class MyApp(faust.App):
        BootStrategy = WaitingBootStrategy

    app = MyApp("x")
    app.kafka_wait = WaitForKafka(probe, address="localhost:9092", limit=60.0)
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from faust.app.base import BootStrategy
from mode import Service, ServiceT

from streamapp.backoff import backoff_delay
from streamapp.exceptions import KafkaUnavailable

__all__ = [
    "KAFKA_WAIT_FIRST_SECONDS",
    "KAFKA_WAIT_MAX_SECONDS",
    "KAFKA_WATCH_SECONDS",
    "WaitForKafka",
    "WaitingBootStrategy",
]

log = logging.getLogger(__name__)

#: The first pause between two attempts to reach the broker; doubles each time.
KAFKA_WAIT_FIRST_SECONDS = 1.0
#: The longest pause between two attempts.
KAFKA_WAIT_MAX_SECONDS = 15.0
#: Seconds between two checks that the broker still answers, while running.
KAFKA_WATCH_SECONDS = 10.0


def _first_line(exc: BaseException) -> str:
    """The error's first line, without aiokafka's list of resolved addresses."""
    text = str(exc).strip()
    line = text.splitlines()[0] if text else type(exc).__name__
    return _ADDRESSES.sub("", line)


#: aiokafka's "Unable to bootstrap from [('host', 9092, <AddressFamily...>)]".
_ADDRESSES = re.compile(r"\s*from \[.*\]")


class _QuietBootstrap(logging.Filter):
    """Drops aiokafka's own per-attempt bootstrap errors while the wait logs its own."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Unable connect to ")


class WaitForKafka(Service):
    """Starts once a broker answers ``probe``; watches it while the worker runs.

    ``probe`` raises when no broker answers (e.g. ``streamapp.health.check_kafka``).
    ``limit`` is the longest wait in seconds before the worker stops (0: for ever);
    ``give_up`` stops it (pass the app's ``crash``).
    """

    def __init__(
        self,
        probe: Callable[[], Awaitable[None]],
        *,
        address: str,
        limit: float = 0.0,
        watch_seconds: float = KAFKA_WATCH_SECONDS,
        give_up: Callable[[BaseException], Awaitable[None]] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.probe = probe
        #: Stops the worker (the app's ``crash``); the service's own by default.
        self.give_up = give_up or self.crash
        self.address = address
        self.limit = limit
        self.watch_seconds = watch_seconds
        #: The monotonic time the broker was last seen unreachable since, or None.
        self.unreachable_since: float | None = None
        self.attempts = 0

    def _delay(self) -> float:
        # No jitter: one worker per broker address, and the log shows the plan.
        return backoff_delay(
            self.attempts,
            KAFKA_WAIT_FIRST_SECONDS,
            KAFKA_WAIT_MAX_SECONDS,
            jitter=0.0,
        )

    async def _answers(self) -> bool:
        try:
            await self.probe()
        except Exception as exc:  # any failure means: not reachable yet
            self.attempts += 1
            now = time.monotonic()
            if self.unreachable_since is None:
                self.unreachable_since = now
            waited = now - self.unreachable_since
            if self.limit and waited >= self.limit:
                raise KafkaUnavailable(
                    f"Kafka at {self.address} did not answer for {waited:.0f} s "
                    f"(KAFKA_WAIT_SECONDS={self.limit:g}): {_first_line(exc)}"
                ) from None
            log.warning(
                "Kafka at %s does not answer (%s); attempt %d, retrying in %.0f s",
                self.address,
                _first_line(exc),
                self.attempts,
                self._pause(),
            )
            return False
        if self.unreachable_since is not None:
            log.info(
                "Kafka at %s answers again after %.1f s",
                self.address,
                time.monotonic() - self.unreachable_since,
            )
        self.unreachable_since = None
        self.attempts = 0
        return True

    async def wait_for_broker(self) -> None:
        """Return once a broker answers; raise :class:`KafkaUnavailable` past limit."""
        quiet = _QuietBootstrap()
        aiokafka_log = logging.getLogger("aiokafka")  # aiokafka.client logs as it
        aiokafka_log.addFilter(quiet)
        try:
            while not await self._answers():
                await self.sleep(self._pause())
                if self.should_stop:
                    return
        finally:
            aiokafka_log.removeFilter(quiet)

    def _pause(self) -> float:
        """The backoff delay, cut short so the limit is checked when it passes."""
        delay = self._delay()
        if self.limit and self.unreachable_since is not None:
            left = self.unreachable_since + self.limit - time.monotonic()
            delay = max(0.0, min(delay, left))
        return delay

    async def on_start(self) -> None:
        """Hold the services after this one (producer, consumer) until Kafka answers."""
        await self._stop_on_limit(self.wait_for_broker())

    @Service.task
    async def _watch(self) -> None:
        """Check the broker while the worker runs; stop past the limit."""
        while not self.should_stop:
            await self.sleep(self.watch_seconds)
            if self.should_stop or await self._stop_on_limit(self._answers()):
                return

    async def _stop_on_limit(self, check: Awaitable[Any]) -> bool:
        """Await ``check``; past the limit stop the worker and return True."""
        try:
            await check
        except KafkaUnavailable as exc:
            failure: KafkaUnavailable | None = exc
        else:
            failure = None
        if failure is None:
            return False
        await self._stop_worker(failure)  # outside the except block: no traceback
        return True

    async def _stop_worker(self, exc: KafkaUnavailable) -> None:
        log.critical("streamapp: %s; stopping the worker", exc)
        # A fresh exception, outside any except block: faust's crash report then
        # has no traceback to repeat.
        await self.give_up(KafkaUnavailable(str(exc)))


class WaitingBootStrategy(BootStrategy):
    """faust's server boot order with the web server first and a wait for Kafka.

    The app's ``kafka_wait`` attribute (a :class:`WaitForKafka`) starts after
    the sensors and the web server and before the producer; without one the order
    is faust's.
    """

    def server(self) -> Iterable[ServiceT]:
        """Sensors, web server, Kafka wait, then faust's Kafka services in order."""
        gate = getattr(self.app, "kafka_wait", None)
        if gate is None:
            return super().server()
        return self._chain(
            self.sensors(),
            self.web_server(),
            [gate],
            self.kafka_producer(),
            self.kafka_consumer(),
            self.agents(),
            self.kafka_conductor(),
            self.tables(),
        )
