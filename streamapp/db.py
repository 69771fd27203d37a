"""PostgreSQL access: engine, versioned migrations, health check, error translation."""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

import psycopg2
import psycopg2.errorcodes
import psycopg2.errors
import sqlalchemy.exc
from psycopg2 import sql
from psycopg2.extensions import cursor as PgCursor
from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine

from streamapp.exceptions import PermanentSinkError, SinkError, TransientSinkError
from streamapp.settings import Settings

__all__ = [
    "CONNECT_TIMEOUT",
    "Migration",
    "applied_migrations",
    "check_database",
    "classify",
    "column_list",
    "get_engine",
    "load_migrations",
    "make_engine",
    "migrate",
    "qualified",
    "qualified_text",
    "sqlstate_of",
    "transaction",
    "translate_error",
]

log = logging.getLogger(__name__)

#: Seconds libpq waits for a TCP connection (and the server's answer) before failing.
CONNECT_TIMEOUT = 5
#: Advisory-lock class id of the migration lock ("stm" + 1); the object id is the
#: hash of the schema name, so workers of different schemas never wait for each other.
MIGRATION_LOCK_CLASS = 0x73746D01 & 0x7FFFFFFF
#: The bookkeeping table of the migration runner (in the configured schema).
MIGRATIONS_TABLE = "schema_migrations"

_MIGRATION_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
#: A plain lower-case SQL identifier (what ``POSTGRES_SCHEMA`` and table names are).
_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")

# --------------------------------------------------------------------------- errors

#: SQLSTATE classes worth retrying: connection exception, insufficient resources
#: (too many connections, disk full, out of memory), operator intervention (admin
#: shutdown, crash shutdown, cannot connect now, query cancelled), system error.
TRANSIENT_CLASSES = frozenset({"08", "53", "57", "58"})
#: Single SQLSTATEs worth retrying outside those classes.
TRANSIENT_CODES = frozenset(
    {
        "40000",  # transaction_rollback
        "40001",  # serialization_failure
        "40003",  # statement_completion_unknown
        "40P01",  # deadlock_detected
        "55P03",  # lock_not_available
        "55006",  # object_in_use
        "25006",  # read_only_sql_transaction (a standby after failover)
        "25P03",  # idle_in_transaction_session_timeout
    }
)
#: SQLSTATE classes that mean "this data is refused": data exception, integrity
#: constraint violation (check, not-null, unique...), cardinality violation, program
#: limit exceeded (e.g. an index row too large). Retrying never helps; bisect instead.
PERMANENT_CLASSES = frozenset({"21", "22", "23", "54"})
#: Single SQLSTATEs that are data errors outside those classes.
PERMANENT_CODES = frozenset({"40002"})  # transaction_integrity_constraint_violation


def _build_code_map() -> dict[type[BaseException], str]:
    out: dict[type[BaseException], str] = {}
    for name in dir(psycopg2.errorcodes):
        code = getattr(psycopg2.errorcodes, name)
        if name.isupper() and isinstance(code, str) and len(code) == 5:
            try:
                out.setdefault(psycopg2.errors.lookup(code), code)
            except KeyError:
                continue
    return out


_CODE_OF_CLASS = _build_code_map()


def sqlstate_of(exc: BaseException) -> str | None:
    """The SQLSTATE of a psycopg2 (or SQLAlchemy-wrapped) error, if it has one.

    Errors from the server carry ``pgcode``; an error class built without a server
    (``psycopg2.errors.CheckViolation("...")``) is mapped back to its code by class.
    """
    if isinstance(exc, sqlalchemy.exc.DBAPIError) and exc.orig is not None:
        exc = exc.orig
    code = getattr(exc, "pgcode", None)
    if isinstance(code, str) and code:
        return code
    return _CODE_OF_CLASS.get(type(exc))


def classify(exc: BaseException) -> type[SinkError]:
    """Say whether a driver error is worth retrying (transient) or refuses the data.

    * connection trouble, shutdowns, overload, serialization failures and deadlocks
      are :class:`TransientSinkError`: retry the same batch in place;
    * data exceptions, integrity/check violations, cardinality and size limits, and a
      value the driver cannot send (``ValueError``: a NUL in a string, an unencodable
      character) are :class:`PermanentSinkError`: the batch is bisected;
    * anything else (missing table, privileges, SQL errors) is not a fault of one row:
      dead-lettering every row would empty the stream, so it is retried as transient
      while the log says what is wrong and an operator can fix it.
    """
    if isinstance(exc, SinkError):
        return type(exc)
    if isinstance(exc, ValueError):  # includes UnicodeEncodeError
        return PermanentSinkError
    if isinstance(exc, sqlalchemy.exc.DBAPIError):
        if exc.connection_invalidated:
            return TransientSinkError
        if exc.orig is not None:
            return classify(exc.orig)
        return TransientSinkError
    code = sqlstate_of(exc)
    if code:
        if code in PERMANENT_CODES or code[:2] in PERMANENT_CLASSES:
            return PermanentSinkError
        return TransientSinkError
    if isinstance(exc, psycopg2.DataError | psycopg2.IntegrityError):
        return PermanentSinkError
    # OperationalError / InterfaceError without a code: refused, reset, closed;
    # SQLAlchemy pool timeouts and every unknown failure: retry.
    return TransientSinkError


def _describe(exc: BaseException) -> str:
    """One line (plus a short DETAIL) from the driver error, without the SQL or data."""
    orig = exc.orig if isinstance(exc, sqlalchemy.exc.DBAPIError) else exc
    if orig is None:
        orig = exc
    diag = getattr(orig, "diag", None)
    primary = getattr(diag, "message_primary", None) if diag is not None else None
    if primary:
        text = primary
        detail = getattr(diag, "message_detail", None)
        if detail:
            text = f"{text} ({detail})"
    else:
        text = str(orig).strip() or type(orig).__name__
    text = " ".join(text.split())
    return text[:1000]


def translate_error(
    exc: BaseException,
    settings: Settings | None = None,
    *,
    action: str = "database operation",
) -> SinkError:
    """Turn a psycopg2/SQLAlchemy error into :class:`TransientSinkError` or
    :class:`PermanentSinkError` (raise it ``from exc``).

    The message names the action, the SQLSTATE and the redacted database URL, never
    the password, the SQL text or the batch's data.
    """
    if isinstance(exc, SinkError):
        return exc
    kind = classify(exc)
    code = sqlstate_of(exc)
    description = _describe(exc)
    where = ""
    if settings is not None:
        where = f" at {settings.database_url_redacted}"
        secret = settings.postgres_password.get_secret_value()
        if secret:
            description = description.replace(secret, "***")
    state = f" [SQLSTATE {code}]" if code else ""
    error = kind(f"{action} failed{where}{state}: {description}")
    # For callers that store the reason with the data (dead letters): the database's
    # own words, without the URL.
    error.sqlstate = code  # type: ignore[attr-defined]
    error.reason = description  # type: ignore[attr-defined]
    return error


# ---------------------------------------------------------------------- identifiers


def qualified(schema: str, name: str) -> sql.Identifier:
    """``"schema"."name"``: a table of ``schema``, quoted by psycopg2 (any text)."""
    return sql.Identifier(schema, name)


def qualified_text(schema: str, name: str) -> str:
    """``"schema"."name"`` as text, for SQLAlchemy ``text()`` statements.

    Both parts must be plain lower-case identifiers (``[a-z_][a-z0-9_]*``, as the
    settings require of ``POSTGRES_SCHEMA``): anything else is a ``ValueError``, so
    the text never needs escaping.
    """
    if not _IDENTIFIER.match(schema) or not _IDENTIFIER.match(name):
        raise ValueError(f"not an SQL identifier: {schema!r}.{name!r}")
    return f'"{schema}"."{name}"'


def column_list(columns: Sequence[str]) -> sql.Composed:
    """``"a", "b", ...``: column names quoted by psycopg2, comma separated."""
    return sql.SQL(", ").join(sql.Identifier(c) for c in columns)


# --------------------------------------------------------------------------- engine


def make_engine(settings: Settings, **kwargs: Any) -> Engine:
    """A new SQLAlchemy engine (psycopg2) for ``settings``.

    Every connection gets ``search_path`` set to the configured schema (quoted as an
    identifier), a connect timeout, TCP keepalives (a vanished server is noticed),
    and ``application_name`` so it can be told apart in ``pg_stat_activity``.
    """
    options: dict[str, Any] = {
        "pool_pre_ping": True,
        "pool_size": 4,
        "max_overflow": 4,
        "pool_recycle": 1800,
        "pool_timeout": 30,
        "connect_args": {
            "connect_timeout": CONNECT_TIMEOUT,
            "application_name": f"{settings.app_id}"[:63],
            "keepalives": 1,
            "keepalives_idle": 30,
            "keepalives_interval": 10,
            "keepalives_count": 3,
        },
    }
    options.update(kwargs)
    engine = create_engine(settings.sqlalchemy_url, **options)
    set_path = sql.SQL("SET search_path TO {}").format(
        sql.Identifier(settings.postgres_schema)
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, connection_record: Any) -> None:
        autocommit = dbapi_connection.autocommit
        dbapi_connection.autocommit = True
        with dbapi_connection.cursor() as cur:
            cur.execute(set_path)
        dbapi_connection.autocommit = autocommit

    return engine


@lru_cache(maxsize=16)
def get_engine(settings: Settings) -> Engine:
    """The process-wide engine of ``settings`` (one pool per distinct settings)."""
    return make_engine(settings)


@contextmanager
def transaction(
    settings: Settings,
    *,
    engine: Engine | None = None,
    action: str = "database operation",
) -> Iterator[PgCursor]:
    """A psycopg2 cursor inside one transaction: committed on success, rolled back
    on error, with every driver error translated once into a :class:`SinkError`.

    A connection that broke (server gone, backend terminated) is invalidated, so the
    pool never hands it out again.
    """
    eng = engine if engine is not None else get_engine(settings)
    try:
        fairy = eng.raw_connection()
    except (sqlalchemy.exc.SQLAlchemyError, psycopg2.Error) as exc:
        raise translate_error(exc, settings, action=action) from exc
    try:
        conn = fairy.driver_connection
        if conn is None:  # pragma: no cover - a checked-out connection has one
            raise TransientSinkError(f"{action} failed: no database connection")
        try:
            with conn.cursor() as cur:
                yield cur
            conn.commit()
        except BaseException as exc:
            _discard(fairy, conn, exc)
            if isinstance(
                exc, psycopg2.Error | sqlalchemy.exc.SQLAlchemyError | ValueError
            ):
                raise translate_error(exc, settings, action=action) from exc
            raise
    finally:
        fairy.close()


def _discard(fairy: Any, conn: Any, exc: BaseException) -> None:
    """Roll back after ``exc``; drop the connection from the pool if it is broken."""
    if conn.closed or isinstance(
        exc, psycopg2.OperationalError | psycopg2.InterfaceError
    ):
        fairy.invalidate(exc if isinstance(exc, Exception) else None)
        return
    try:
        conn.rollback()
    except psycopg2.Error as rollback_exc:
        fairy.invalidate(rollback_exc)


def check_database(settings: Settings) -> None:
    """Raise :class:`TransientSinkError` unless PostgreSQL answers ``SELECT 1``.

    Blocking (run it in a thread); the error names the redacted URL only.
    """
    try:
        with transaction(settings, action="PostgreSQL health check") as cur:
            cur.execute("SELECT 1")
            cur.fetchone()
    except SinkError as exc:
        raise TransientSinkError(str(exc)) from exc


# ------------------------------------------------------------------------ migrations


@dataclass(frozen=True)
class Migration:
    """One versioned SQL file of ``streamapp/migrations``."""

    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode("utf-8")).hexdigest()


def load_migrations() -> list[Migration]:
    """Every ``NNNN_name.sql`` of the package, in version order (versions unique)."""
    folder = resources.files("streamapp") / "migrations"
    found: list[Migration] = []
    for entry in folder.iterdir():
        match = _MIGRATION_FILE.match(entry.name)
        if match is None:
            continue
        found.append(
            Migration(
                int(match.group(1)), entry.name, entry.read_text(encoding="utf-8")
            )
        )
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise PermanentSinkError(
            f"duplicate migration versions in {folder}: {versions}"
        )
    return found


def applied_migrations(settings: Settings) -> dict[int, str]:
    """``{version: name}`` of the migrations recorded in the schema (empty if none)."""
    with transaction(settings, action="reading schema_migrations") as cur:
        cur.execute(
            "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_tables"
            " WHERE schemaname = %s AND tablename = %s)",
            (settings.postgres_schema, MIGRATIONS_TABLE),
        )
        row = cur.fetchone()
        if not row or not row[0]:
            return {}
        cur.execute(
            sql.SQL("SELECT version, name FROM {} ORDER BY version").format(
                qualified(settings.postgres_schema, MIGRATIONS_TABLE)
            )
        )
        return {int(v): str(n) for v, n in cur.fetchall()}


def migrate(settings: Settings, *, engine: Engine | None = None) -> list[str]:
    """Bring the schema up to date; returns the names of the migrations applied.

    Everything happens in one transaction that first takes a transaction-scoped
    advisory lock keyed by the schema, so workers starting together apply each file
    exactly once (the others wait, then find nothing to do). Running it again is a
    no-op. A file changed after it was applied is refused (add a new file instead).
    """
    migrations = load_migrations()
    schema = sql.Identifier(settings.postgres_schema)
    table = qualified(settings.postgres_schema, MIGRATIONS_TABLE)
    started = time.monotonic()
    applied: list[str] = []
    with transaction(settings, engine=engine, action="database migration") as cur:
        cur.execute(
            "SELECT pg_advisory_xact_lock(%s, hashtext(%s))",
            (MIGRATION_LOCK_CLASS, settings.postgres_schema),
        )
        cur.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(schema))
        cur.execute(sql.SQL("SET LOCAL search_path TO {}").format(schema))
        cur.execute(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} ("
                " version integer PRIMARY KEY,"
                " name text NOT NULL,"
                " checksum text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            ).format(table)
        )
        cur.execute(
            sql.SQL("COMMENT ON TABLE {} IS %s").format(table),
            (
                "Migrations applied by streamapp.db.migrate: version, file name, "
                "sha256 of the file, when (one row per streamapp/migrations file).",
            ),
        )
        cur.execute(sql.SQL("SELECT version, name, checksum FROM {}").format(table))
        done = {int(v): (str(n), str(c)) for v, n, c in cur.fetchall()}
        for migration in migrations:
            if migration.version in done:
                name, checksum = done[migration.version]
                if checksum != migration.checksum:
                    raise PermanentSinkError(
                        f"migration {migration.name} was changed after it was applied "
                        f"(recorded as {name} with another checksum); "
                        "add a new migration file instead"
                    )
                continue
            cur.execute(migration.sql)
            cur.execute(
                sql.SQL(
                    "INSERT INTO {} (version, name, checksum) VALUES (%s, %s, %s)"
                ).format(table),
                (migration.version, migration.name, migration.checksum),
            )
            applied.append(migration.name)
    if applied:
        log.info(
            "database schema %r migrated: applied %s in %.2fs",
            settings.postgres_schema,
            ", ".join(applied),
            time.monotonic() - started,
        )
    else:
        log.info("database schema %r is up to date", settings.postgres_schema)
    return applied
