"""streamapp.db against the real PostgreSQL: migrations, health check, errors."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator

import psycopg2
import pytest
from psycopg2 import sql

from streamapp import db
from streamapp.exceptions import PermanentSinkError, TransientSinkError
from streamapp.settings import Settings

pytestmark = pytest.mark.integration


@pytest.fixture
def schema_settings(stack_ready: Settings, pg_schema: str) -> Iterator[Settings]:
    """The stack's settings with this test's own schema (and its own engine)."""
    settings = dataclasses.replace(stack_ready, postgres_schema=pg_schema)
    try:
        yield settings
    finally:
        db.get_engine(settings).dispose()


#: Every migration file, in the order migrate applies them.
ALL_MIGRATIONS = [m.name for m in db.load_migrations()]


def _tables(settings: Settings) -> set[str]:
    with db.transaction(settings) as cur:
        cur.execute(
            "SELECT tablename FROM pg_catalog.pg_tables WHERE schemaname = %s",
            (settings.postgres_schema,),
        )
        return {row[0] for row in cur.fetchall()}


def test_migrate_twice_is_a_noop(schema_settings: Settings) -> None:
    first = db.migrate(schema_settings)
    assert first == [m.name for m in db.load_migrations()]
    assert {"earthquakes", "dead_letters", "schema_migrations"} <= _tables(
        schema_settings
    )
    assert db.migrate(schema_settings) == []
    assert db.applied_migrations(schema_settings) == {
        m.version: m.name for m in db.load_migrations()
    }


def test_migrate_creates_a_missing_schema(
    stack_ready: Settings, pg_schema: str
) -> None:
    # The fixture's schema exists; a second, new one is created by migrate itself.
    fresh = f"{pg_schema}_new"[:63]
    settings = dataclasses.replace(stack_ready, postgres_schema=fresh)
    try:
        assert db.migrate(settings) == ALL_MIGRATIONS
        assert {"earthquakes", "activity", "alerts"} <= _tables(settings)
    finally:
        with db.transaction(settings) as cur:
            cur.execute(
                sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
                    sql.Identifier(fresh)
                )
            )
        db.get_engine(settings).dispose()


def test_concurrent_migrations_apply_each_file_once(schema_settings: Settings) -> None:
    barrier = threading.Barrier(4)
    results: list[list[str]] = []
    errors: list[BaseException] = []

    def worker() -> None:
        # each "worker process" has its own engine and connection
        engine = db.make_engine(schema_settings)
        try:
            barrier.wait()
            results.append(db.migrate(schema_settings, engine=engine))
        except BaseException as exc:
            errors.append(exc)
        finally:
            engine.dispose()

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert sorted(results, key=len) == [[], [], [], ALL_MIGRATIONS]
    with db.transaction(schema_settings) as cur:
        cur.execute(
            sql.SQL("SELECT count(*) FROM {}").format(
                db.qualified(schema_settings.postgres_schema, "schema_migrations")
            )
        )
        assert cur.fetchone() == (len(db.load_migrations()),)


def test_a_changed_migration_is_refused(
    schema_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    db.migrate(schema_settings)
    original = db.load_migrations()
    edited = [
        dataclasses.replace(original[0], sql=original[0].sql + "\n-- edited\n"),
        *original[1:],
    ]
    monkeypatch.setattr(db, "load_migrations", lambda: edited)
    with pytest.raises(PermanentSinkError, match="changed after it was applied"):
        db.migrate(schema_settings)


def test_a_failing_migration_leaves_nothing_behind(
    schema_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = [db.Migration(1, "0001_broken.sql", "CREATE TABLE a (x int); SELEC 1;")]
    monkeypatch.setattr(db, "load_migrations", lambda: broken)
    with pytest.raises(TransientSinkError, match="SQLSTATE 42601"):
        db.migrate(schema_settings)
    # one transaction: neither the table nor the bookkeeping row survived
    assert "a" not in _tables(schema_settings)
    assert db.applied_migrations(schema_settings) == {}


def test_check_database_passes_on_the_live_stack(schema_settings: Settings) -> None:
    db.check_database(schema_settings)


def test_check_database_names_the_redacted_url_on_failure(
    stack_ready: Settings,
) -> None:
    password = stack_ready.postgres_password.get_secret_value()
    url = stack_ready.database_url.get_secret_value().replace(
        f":{stack_ready.postgres_port}/", ":1/"
    )
    down = dataclasses.replace(
        stack_ready, database_url=type(stack_ready.database_url)(url), postgres_port=1
    )
    try:
        with pytest.raises(TransientSinkError) as info:
            db.check_database(down)
    finally:
        db.get_engine(down).dispose()
    message = str(info.value)
    assert down.database_url_redacted in message
    assert f":{password}@" not in message
    assert isinstance(info.value.__cause__, Exception)


def test_the_search_path_is_the_configured_schema(schema_settings: Settings) -> None:
    db.migrate(schema_settings)
    with db.get_engine(schema_settings).connect() as conn:
        path = conn.exec_driver_sql("SHOW search_path").scalar()
        name = conn.exec_driver_sql(
            "SELECT current_setting('application_name')"
        ).scalar()
        count = conn.exec_driver_sql("SELECT count(*) FROM earthquakes").scalar()
    assert schema_settings.postgres_schema in str(path)
    assert name == schema_settings.app_id
    assert count == 0


def test_comments_document_every_column(schema_settings: Settings) -> None:
    db.migrate(schema_settings)
    with db.transaction(schema_settings) as cur:
        cur.execute(
            "SELECT c.relname, a.attname"
            " FROM pg_attribute a"
            " JOIN pg_class c ON c.oid = a.attrelid"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = %s AND c.relname IN ('earthquakes', 'dead_letters')"
            "   AND a.attnum > 0 AND NOT a.attisdropped"
            "   AND col_description(c.oid, a.attnum) IS NULL",
            (schema_settings.postgres_schema,),
        )
        assert cur.fetchall() == []


def test_constraint_errors_are_permanent_and_connection_errors_transient(
    schema_settings: Settings,
) -> None:
    db.migrate(schema_settings)
    with (
        pytest.raises(PermanentSinkError, match="SQLSTATE 23514"),
        db.transaction(schema_settings) as cur,
    ):
        cur.execute(
            "INSERT INTO earthquakes (id, time, updated, longitude, latitude,"
            " depth, kafka_partition, kafka_offset)"
            " VALUES ('x', now(), now(), 0, 95, 0, 0, 0)"
        )
    # a backend that terminates itself: the client sees 57P01 or a closed socket
    with (
        pytest.raises(TransientSinkError, match=r"57P01|closed the connection"),
        db.transaction(schema_settings) as cur,
    ):
        cur.execute("SELECT pg_terminate_backend(pg_backend_pid())")
    # the broken connection was dropped from the pool: the next one works
    db.check_database(schema_settings)


def test_psycopg2_is_what_the_engine_uses(schema_settings: Settings) -> None:
    with db.transaction(schema_settings) as cur:
        assert isinstance(cur.connection, psycopg2.extensions.connection)
