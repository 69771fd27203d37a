"""streamapp.db without a database: error translation, migrations, SQL quoting."""

from __future__ import annotations

import re

import psycopg2
import psycopg2.errors
import pytest
import sqlalchemy.exc
from psycopg2 import sql

from streamapp import db
from streamapp.exceptions import PermanentSinkError, SinkError, TransientSinkError
from streamapp.settings import Settings, load_settings

PASSWORD = "s3cr3t-pw-value"


@pytest.fixture
def settings() -> Settings:
    return load_settings(
        {"POSTGRES_PASSWORD": PASSWORD, "POSTGRES_SCHEMA": "unit_schema"},
        env_file=None,
    )


def _pg(code: str, message: str = "boom") -> psycopg2.Error:
    """A psycopg2 error of the class the server would raise for ``code``."""
    error: psycopg2.Error = psycopg2.errors.lookup(code)(message)
    return error


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        # connection trouble, shutdowns, overload: retry in place
        ("08000", TransientSinkError),  # connection_exception
        ("08001", TransientSinkError),  # sqlclient_unable_to_establish_sqlconnection
        ("08006", TransientSinkError),  # connection_failure
        ("57P01", TransientSinkError),  # admin_shutdown (pg_terminate_backend, stop)
        ("57P02", TransientSinkError),  # crash_shutdown
        ("57P03", TransientSinkError),  # cannot_connect_now (starting up)
        ("57014", TransientSinkError),  # query_canceled (statement timeout)
        ("53300", TransientSinkError),  # too_many_connections
        ("53100", TransientSinkError),  # disk_full
        ("40001", TransientSinkError),  # serialization_failure
        ("40P01", TransientSinkError),  # deadlock_detected
        ("55P03", TransientSinkError),  # lock_not_available
        ("25006", TransientSinkError),  # read_only_sql_transaction (standby)
        # the data is refused: bisect and dead-letter
        ("23514", PermanentSinkError),  # check_violation
        ("23502", PermanentSinkError),  # not_null_violation
        ("23505", PermanentSinkError),  # unique_violation
        ("22003", PermanentSinkError),  # numeric_value_out_of_range
        ("22007", PermanentSinkError),  # invalid_datetime_format
        ("22P02", PermanentSinkError),  # invalid_text_representation
        ("22021", PermanentSinkError),  # character_not_in_repertoire
        ("21000", PermanentSinkError),  # cardinality_violation
        ("54000", PermanentSinkError),  # program_limit_exceeded (index row size)
        # not a fault of one row: retried (dead-lettering every row would be worse)
        ("42P01", TransientSinkError),  # undefined_table
        ("42501", TransientSinkError),  # insufficient_privilege
        ("42601", TransientSinkError),  # syntax_error
    ],
)
def test_error_translation_table(
    settings: Settings, code: str, expected: type[SinkError]
) -> None:
    exc = _pg(code)
    assert db.sqlstate_of(exc) == code
    assert db.classify(exc) is expected
    translated = db.translate_error(exc, settings, action="upsert")
    assert type(translated) is expected
    assert f"SQLSTATE {code}" in str(translated)
    assert translated.sqlstate == code  # type: ignore[attr-defined]
    assert translated.reason == "boom"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (
            psycopg2.OperationalError(
                'connection to server at "localhost", port 5320 failed: '
                "Connection refused"
            ),
            TransientSinkError,
        ),
        (
            psycopg2.InterfaceError("connection already closed"),
            TransientSinkError,
        ),
        (psycopg2.DataError("bad"), PermanentSinkError),
        (psycopg2.IntegrityError("bad"), PermanentSinkError),
        (ValueError("A string literal cannot contain NUL (0x00) characters."), None),
        (UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates"), None),
        (sqlalchemy.exc.TimeoutError("QueuePool limit reached"), TransientSinkError),
    ],
)
def test_errors_without_a_sqlstate(
    exc: BaseException, expected: type[SinkError] | None
) -> None:
    assert db.classify(exc) is (expected or PermanentSinkError)


def test_sqlalchemy_wrapped_errors_are_classified_by_the_driver_error(
    settings: Settings,
) -> None:
    check = sqlalchemy.exc.IntegrityError("INSERT ...", {}, _pg("23514"))
    assert db.classify(check) is PermanentSinkError
    assert db.sqlstate_of(check) == "23514"
    shutdown = sqlalchemy.exc.OperationalError("SELECT 1", {}, _pg("57P01"))
    assert db.classify(shutdown) is TransientSinkError
    invalidated = sqlalchemy.exc.DBAPIError(
        "SELECT 1", {}, _pg("23514"), connection_invalidated=True
    )
    assert db.classify(invalidated) is TransientSinkError
    message = str(db.translate_error(check, settings, action="upsert"))
    # the SQLAlchemy wrapper's text (statement, parameters, links) is not repeated
    assert "INSERT" not in message
    assert "sqlalche.me" not in message


def test_messages_never_contain_the_password(settings: Settings) -> None:
    exc = psycopg2.OperationalError(
        f"could not connect: password {PASSWORD} rejected for user streamapp"
    )
    message = str(db.translate_error(exc, settings, action="connect"))
    assert PASSWORD not in message
    assert "***" in message
    assert settings.database_url_redacted in message
    assert "postgresql://streamapp:***@localhost:5320/streamapp" in message


def test_translate_keeps_sink_errors_and_raise_from_chains() -> None:
    original = PermanentSinkError("already translated")
    assert db.translate_error(original) is original
    try:
        try:
            raise _pg("40P01", "deadlock detected")
        except psycopg2.Error as exc:
            raise db.translate_error(exc) from exc
    except TransientSinkError as translated:
        assert isinstance(translated.__cause__, psycopg2.errors.DeadlockDetected)


def test_long_driver_messages_are_bounded() -> None:
    message = str(db.translate_error(_pg("22001", "x" * 50_000)))
    assert len(message) < 1200


def test_migrations_on_disk_are_versioned_and_ordered() -> None:
    migrations = db.load_migrations()
    assert migrations, "no migrations found in streamapp/migrations"
    versions = [m.version for m in migrations]
    assert versions == sorted(versions)
    assert len(set(versions)) == len(versions)
    assert migrations[0].name == "0001_initial.sql"
    initial = migrations[0].sql
    for table in ("earthquakes", "dead_letters"):
        assert f"CREATE TABLE {table}" in initial
        assert f"COMMENT ON TABLE {table}" in initial
    assert len(migrations[0].checksum) == 64


def test_every_column_of_the_initial_schema_is_documented() -> None:
    initial = db.load_migrations()[0].sql

    for table in ("earthquakes", "dead_letters"):
        body = initial.split(f"CREATE TABLE {table} (", 1)[1].split(");", 1)[0]
        columns = [
            line.split()[0]
            for line in body.splitlines()
            if line.strip()
            and not line.strip().startswith(("CONSTRAINT", "UNIQUE"))
            and re.match(r"^\s+[a-z_]+\s", line)
        ]
        assert columns, table
        for column in columns:
            assert f"COMMENT ON COLUMN {table}.{column} IS" in initial, (table, column)


def test_qualified_names_are_identifiers(settings: Settings) -> None:
    name = db.qualified(settings.postgres_schema, "earthquakes")
    assert isinstance(name, sql.Identifier)
    assert name.strings == ("unit_schema", "earthquakes")


def test_qualified_text_refuses_non_identifiers() -> None:
    assert db.qualified_text("e2e_x1", "earthquakes") == '"e2e_x1"."earthquakes"'
    with pytest.raises(ValueError, match="identifier"):
        db.qualified_text('x"; DROP TABLE y; --', "earthquakes")
    with pytest.raises(ValueError, match="identifier"):
        db.qualified_text("public", "Earthquakes")


def test_column_list_quotes_every_name() -> None:
    columns = db.column_list(("id", "time"))
    assert [p.strings for p in columns.seq if isinstance(p, sql.Identifier)] == [
        ("id",),
        ("time",),
    ]
