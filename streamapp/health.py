"""Reachability checks of Kafka and PostgreSQL, for /health and the entrypoint."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from aiokafka import AIOKafkaClient

from streamapp.kafka import aiokafka_kwargs
from streamapp.settings import Settings

__all__ = ["HealthReport", "check_health", "check_kafka", "check_postgres"]

#: How long one check may take before the service counts as unreachable.
CHECK_TIMEOUT = 5.0


@dataclass(frozen=True)
class HealthReport:
    """Which dependency answered; ``problems`` maps a failed one to its error."""

    problems: dict[str, str]
    checked_at: float

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, object]:
        return {
            "status": "ok" if self.ok else "unavailable",
            "kafka": self.problems.get("kafka", "ok"),
            "postgres": self.problems.get("postgres", "ok"),
            "failed": sorted(self.problems),
        }


async def check_kafka(
    settings: Settings,
    timeout: float = CHECK_TIMEOUT,  # noqa: ASYNC109
) -> None:
    """Raise if no broker answers a metadata request within ``timeout`` seconds."""
    kwargs = aiokafka_kwargs(settings)
    client = AIOKafkaClient(
        request_timeout_ms=int(timeout * 1000),
        client_id=f"{settings.app_id}-health",
        **kwargs,
    )
    try:
        await asyncio.wait_for(client.bootstrap(), timeout)
    finally:
        await client.close()


async def check_postgres(
    settings: Settings,
    timeout: float = CHECK_TIMEOUT,  # noqa: ASYNC109
) -> None:
    """Raise if PostgreSQL does not answer ``SELECT 1`` within ``timeout`` seconds."""
    # Imported late: keeps SQLAlchemy off the import path of the Kafka-only users.
    from streamapp.db import check_database

    await asyncio.wait_for(asyncio.to_thread(check_database, settings), timeout)


async def check_health(
    settings: Settings,
    timeout: float = CHECK_TIMEOUT,  # noqa: ASYNC109
) -> HealthReport:
    """Check Kafka and PostgreSQL concurrently; the errors never contain secrets."""
    results = await asyncio.gather(
        check_kafka(settings, timeout),
        check_postgres(settings, timeout),
        return_exceptions=True,
    )
    problems: dict[str, str] = {}
    for name, result in zip(("kafka", "postgres"), results, strict=True):
        if isinstance(result, BaseException):
            problems[name] = _describe(result, settings)
    return HealthReport(problems=problems, checked_at=time.time())


def _describe(exc: BaseException, settings: Settings) -> str:
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    secret = settings.postgres_password.get_secret_value()
    if secret:
        text = text.replace(secret, "***")
    return text[:300]
