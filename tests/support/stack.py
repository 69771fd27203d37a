"""The shared local stack: is it answering, and per-test PostgreSQL schemas."""

from __future__ import annotations

import psycopg2
from psycopg2 import sql

from devstack import kafka_answers
from streamapp.settings import Settings

__all__ = ["create_schema", "drop_schema", "stack_problems"]


def stack_problems(settings: Settings) -> list[str]:
    """One line per service of ``settings`` that does not answer (empty: all do)."""
    problems: list[str] = []
    if not kafka_answers(settings.kafka_bootstrap_servers, timeout=10.0):
        problems.append(f"Kafka at {settings.kafka_bootstrap_servers} does not answer")
    try:
        psycopg2.connect(
            settings.database_url.get_secret_value(), connect_timeout=10
        ).close()
    except psycopg2.Error as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
        problems.append(f"PostgreSQL at {settings.database_url_redacted}: {first}")
    return problems


def _execute(dsn: str, statement: sql.Composable) -> None:
    conn = psycopg2.connect(dsn, connect_timeout=10)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(statement)
    finally:
        conn.close()


def create_schema(dsn: str, schema: str) -> None:
    """``CREATE SCHEMA <schema>`` as the user of ``dsn`` (who then owns it)."""
    _execute(dsn, sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))


def drop_schema(dsn: str, schema: str) -> None:
    """``DROP SCHEMA IF EXISTS <schema> CASCADE``."""
    _execute(
        dsn,
        sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)),
    )
