"""One run's PostgreSQL schema: counts, rows, in-flight sink transactions, drop."""

from __future__ import annotations

from typing import Any

import psycopg2
import psycopg2.errors
from psycopg2 import sql

from streamapp.settings import Settings
from tests.support.stack import drop_schema

__all__ = ["Db", "sink_transaction_open"]


class Db:
    """Reads (and finally drops) one test's PostgreSQL schema."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.schema = settings.postgres_schema

    def connect(self) -> Any:
        """A new autocommit connection (5 s connect timeout); the caller closes it."""
        conn = psycopg2.connect(
            self.settings.database_url.get_secret_value(), connect_timeout=5
        )
        conn.autocommit = True
        return conn

    def table(self, name: str) -> sql.Composable:
        """``<schema>.<name>``, quoted."""
        return sql.SQL("{}.{}").format(
            sql.Identifier(self.schema), sql.Identifier(name)
        )

    def rows(self, query: sql.Composable | str, args: tuple[Any, ...] = ()) -> list:
        """Every row ``query`` returns (on a connection of its own)."""
        conn = self.connect()
        try:
            with conn.cursor() as cur:
                cur.execute(query, args)
                return list(cur.fetchall())
        finally:
            conn.close()

    def counts(self, raw_topic: str) -> tuple[int, int, int]:
        """``(earthquakes rows, sum of their updated in ms, raw dead letters)``;
        zeros before the migration ran."""
        try:
            rows = self.rows(
                sql.SQL(
                    "SELECT (SELECT count(*) FROM {q}),"
                    " (SELECT coalesce(sum((extract(epoch FROM updated) * 1000)"
                    "::bigint), 0) FROM {q}),"
                    " (SELECT count(*) FROM {d} WHERE source_topic = %s)"
                ).format(q=self.table("earthquakes"), d=self.table("dead_letters")),
                (raw_topic,),
            )
        except psycopg2.errors.UndefinedTable:
            return 0, 0, 0
        n, checksum, letters = rows[0]
        return int(n), int(checksum), int(letters)

    def drop(self) -> None:
        """Drop the schema and everything in it."""
        drop_schema(self.settings.database_url.get_secret_value(), self.schema)


def sink_transaction_open(db: Db, app_id: str) -> bool:
    """True while a backend of the worker (application_name = APP_ID) is inside a
    transaction writing earthquakes or dead_letters (a batch in flight)."""
    rows = db.rows(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s"
        " AND state IN ('active', 'idle in transaction')"
        " AND (query ILIKE '%%earthquakes%%' OR query ILIKE '%%dead_letters%%'"
        "      OR query ILIKE 'COPY%%')",
        (app_id[:63],),
    )
    return bool(rows[0][0])
