"""The real PostgreSQL of the stack: write and read a row; a wrong password fails."""

from __future__ import annotations

import uuid

import psycopg2
import pytest
import sqlalchemy as sa
from psycopg2 import sql

from streamapp.settings import Settings

pytestmark = pytest.mark.integration


def test_write_and_read_a_row(stack_ready: Settings, pg_schema: str) -> None:
    s = stack_ready
    marker = f"row-{uuid.uuid4().hex}"
    with (
        psycopg2.connect(
            host=s.postgres_host,
            port=s.postgres_port,
            user=s.postgres_user,
            password=s.postgres_password.get_secret_value(),
            dbname=s.postgres_db,
        ) as conn,
        conn.cursor() as cur,
    ):
        table = sql.Identifier(pg_schema, "roundtrip")
        cur.execute(
            sql.SQL(
                "CREATE TABLE {} (id serial PRIMARY KEY, body text NOT NULL)"
            ).format(table)
        )
        cur.execute(
            sql.SQL("INSERT INTO {} (body) VALUES (%s)").format(table), (marker,)
        )
    conn.close()
    # Read it back through the app's own URL (SQLAlchemy + psycopg2), a new connection.
    engine = sa.create_engine(s.sqlalchemy_url)
    try:
        with engine.connect() as c:
            rows = c.execute(
                sa.text(f'SELECT body, current_user FROM "{pg_schema}".roundtrip')
            ).all()
    finally:
        engine.dispose()
    assert rows == [(marker, s.postgres_user)]


def test_app_user_is_not_a_superuser(stack_ready: Settings) -> None:
    dsn = stack_ready.database_url.get_secret_value()
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
        assert cur.fetchone() == (False,)
    conn.close()


def test_wrong_password_is_a_clear_error(stack_ready: Settings) -> None:
    s = stack_ready
    with pytest.raises(psycopg2.OperationalError) as info:
        psycopg2.connect(
            host=s.postgres_host,
            port=s.postgres_port,
            user=s.postgres_user,
            password="wrong-" + uuid.uuid4().hex,
            dbname=s.postgres_db,
            connect_timeout=10,
        )
    message = str(info.value)
    assert f'password authentication failed for user "{s.postgres_user}"' in message
