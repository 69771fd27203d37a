"""The typed settings of streamapp, read from the environment here and nowhere else."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from streamapp.exceptions import ConfigError

__all__ = ["Secret", "Settings", "load_settings", "read_env_file"]

APP_MODES = ("web", "jupyter")
KAFKA_MODES = ("zookeeper", "kraft")
SOURCES = ("usgs", "replay")
SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
_HOSTPORT = re.compile(r"^[A-Za-z0-9_.\-\[\]:]+:\d{1,5}$")
_IDENT = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_TOPIC = re.compile(r"^[A-Za-z0-9._\-]{1,200}$")


class Secret:
    """A string that never shows itself in repr, str, logs or error messages."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get_secret_value(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __repr__(self) -> str:
        return "Secret('**********')" if self._value else "Secret('')"

    __str__ = __repr__


@dataclass(frozen=True)
class Settings:
    """Every setting of the platform; field names are the environment names, lowered."""

    # --- ZooKeeper and Kafka (names from the seed; used by the local stack and compose)
    kafka_mode: str = "zookeeper"
    zookeeper_client_port: int = 2181
    zookeeper_tick_time: int = 2000
    kafka_broker_id: int = 1
    kafka_zookeeper_connect: str = "localhost:2181"
    kafka_advertised_listeners: str = "PLAINTEXT://localhost:9092"
    kafka_listener_security_protocol_map: str = (
        "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"
    )
    kafka_heap_opts: str = "-Xms256m -Xmx512m"
    # --- the local stack (make up): state dir for data, configs, pid files, logs
    stack_dir: str = ".stack"
    # --- what the app connects to
    kafka_bootstrap_servers: str = "localhost:9092"
    kafka_security_protocol: str = "PLAINTEXT"
    kafka_sasl_mechanism: str = "PLAIN"
    kafka_sasl_username: str = ""
    kafka_sasl_password: Secret = field(default_factory=lambda: Secret(""))
    kafka_ssl_cafile: str = ""
    kafka_ssl_certfile: str = ""
    kafka_ssl_keyfile: str = ""
    #: Seconds a worker waits for the broker at start or after losing it before it
    #: exits with one line; 0 waits for ever.
    kafka_wait_seconds: float = 0.0
    # --- PostgreSQL (names from the seed)
    postgres_user: str = "streamapp"
    postgres_password: Secret = field(default_factory=lambda: Secret("streamapp"))
    postgres_db: str = "streamapp"
    postgres_host: str = "localhost"
    postgres_port: int = 5320
    postgres_schema: str = "public"
    database_url: Secret = field(default_factory=lambda: Secret(""))
    # --- the app
    app_mode: str = ""  # the container entrypoint requires web or jupyter
    app_id: str = "streamapp"
    web_host: str = "0.0.0.0"  # noqa: S104 - containers publish it; read-only views
    web_port: int = 6066
    log_level: str = "info"
    source: str = "usgs"
    source_url: str = (
        "https://earthquake.usgs.gov/earthquakes/feed/v1.0/summary/all_hour.geojson"
    )
    replay_file: str = ""
    fetch_interval_seconds: float = 60.0
    source_timeout_seconds: float = 20.0
    source_max_bytes: int = 20 * 1024 * 1024
    source_max_retries: int = 4
    topic_raw: str = "earthquakes.raw"
    topic_clean: str = "earthquakes.clean"
    topic_dead_letter: str = "earthquakes.dead-letter"
    topic_partitions: int = 4
    topic_replication_factor: int = 1
    sink_batch_size: int = 500
    sink_batch_seconds: float = 0.25
    max_message_bytes: int = 1024 * 1024
    max_json_depth: int = 32
    #: Days (by the event's ``updated`` time) an event id stays in the fetcher's
    #: dedup table; a revision of an older event is sent again (the upsert keeps
    #: the newest).
    dedup_retention_days: float = 30.0
    redrive_token: Secret = field(default_factory=lambda: Secret(""))
    # --- activity windows and alerts (Faust tables on the clean topic)
    #: Clean events re-keyed by region cell (the activity tables' source topic).
    topic_activity: str = "earthquakes.activity"
    #: Alerts (``models.alerts.Alert`` JSON), keyed by the alert's id.
    topic_alerts: str = "earthquakes.alerts"
    #: An event of at least this magnitude alerts (rule ``magnitude``).
    alert_min_magnitude: float = 6.0
    #: A region's hourly count above this many times its trailing 24-hour hourly
    #: mean alerts (rule ``surge``) ...
    alert_surge_factor: float = 5.0
    #: ... when the hour has at least this many events (one event in a quiet cell
    #: is no surge).
    alert_surge_min_count: int = 5
    #: Alerts are POSTed here as JSON when set (http or https; may hold credentials,
    #: so it is a secret and logged redacted).
    alert_webhook_url: Secret = field(default_factory=lambda: Secret(""))
    alert_webhook_timeout_seconds: float = 10.0
    #: Attempts per delivery round (with backoff) before the alert waits for the
    #: next round with its last error kept.
    alert_webhook_max_retries: int = 4
    #: Seconds between delivery rounds of alerts not yet delivered.
    alert_webhook_retry_seconds: float = 60.0
    # --- backfill from the USGS FDSN event service
    backfill_url: str = "https://earthquake.usgs.gov/fdsnws/event/1"
    #: Requests per second to the event service (at most).
    backfill_requests_per_second: float = 2.0
    #: Events per second the backfill produces to the raw topic (at most), so the
    #: live path keeps its latency.
    backfill_events_per_second: float = 500.0
    #: Most events one query may return (the service answers 400 above 20,000).
    backfill_max_events_per_query: int = 20000
    jupyter_token: Secret = field(default_factory=lambda: Secret(""))

    # ------------------------------------------------------------------ derived
    @property
    def sqlalchemy_url(self) -> str:
        """The SQLAlchemy URL (psycopg2) with the password in it: never log it."""
        url = self.database_url.get_secret_value()
        if url.startswith("postgresql://") or url.startswith("postgres://"):
            url = "postgresql+psycopg2://" + url.split("://", 1)[1]
        return url

    @property
    def database_url_redacted(self) -> str:
        """DATABASE_URL with the password replaced, safe for logs and pages."""
        return redact_url(self.database_url.get_secret_value())

    @property
    def kafka_broker_url(self) -> str:
        """The bootstrap servers in Faust's ``kafka://host:port;host:port`` form."""
        hosts = [
            h.strip() for h in self.kafka_bootstrap_servers.split(",") if h.strip()
        ]
        return ";".join(f"kafka://{h}" for h in hosts)

    @property
    def replay_path(self) -> Path:
        """The capture the replay source plays (the bundled sample by default)."""
        if self.replay_file:
            return Path(self.replay_file)
        return Path(__file__).parent / "data" / "all_day_2014-04-14.geojson"

    def public_dict(self) -> dict[str, Any]:
        """All settings with secrets masked: safe for logs, pages and error messages."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = repr(value) if isinstance(value, Secret) else value
        out["database_url"] = self.database_url_redacted
        return out


def redact_url(url: str) -> str:
    """Replace the password of a URL with ``***``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable url>"
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()


def read_env_file(path: Path) -> dict[str, str]:
    """Parse a docker-compose style ``.env`` file (KEY=VALUE, # comments, quotes)."""
    values: dict[str, str] = {}
    if not path.is_file():
        return values
    for lineno, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export ") :]
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", key):
            raise ConfigError(f"{path}:{lineno}: expected KEY=VALUE, got {raw!r}")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key] = value
    return values


def _convert(name: str, raw: str, kind: Any) -> Any:
    env = name.upper()
    if kind in (int, "int"):
        try:
            return int(raw)
        except ValueError:
            raise ConfigError(f"{env}={raw!r} is not a whole number") from None
    if kind in (float, "float"):
        try:
            return float(raw)
        except ValueError:
            raise ConfigError(f"{env}={raw!r} is not a number") from None
    if kind in (Secret, "Secret"):
        return Secret(raw)
    return raw


def _check_choice(env: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(
            f"{env}={value!r} is not valid; use one of: {', '.join(choices)}"
        )


def _check_positive(env: str, value: float, minimum: float = 1) -> None:
    if value < minimum:
        raise ConfigError(f"{env}={value!r} must be at least {minimum}")


def _check_database_url(url: str) -> None:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise ConfigError(
            "DATABASE_URL is malformed; use postgresql://USER:PASSWORD@HOST:PORT/DB"
        ) from None
    if parts.scheme not in ("postgresql", "postgres", "postgresql+psycopg2"):
        raise ConfigError(
            f"DATABASE_URL scheme {parts.scheme!r} is not PostgreSQL; "
            "use postgresql://USER:PASSWORD@HOST:PORT/DB"
        )
    if not parts.hostname or not parts.path.strip("/"):
        raise ConfigError(
            "DATABASE_URL needs a host and a database name; "
            "use postgresql://USER:PASSWORD@HOST:PORT/DB"
        )
    del port


def _check_http_url(env: str, url: str, *, secret: bool, example: str) -> None:
    """An absolute http(s) URL with a host; a secret one is never echoed."""
    shown = "the value" if secret else repr(redact_url(url))
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise ConfigError(
            f"{env}: {shown} is not a URL; use http(s)://host[:port]/path"
        ) from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            f"{env}: {shown} must be an http or https URL with a host, e.g. {example}"
        )


def _check_alert_settings(s: Settings) -> None:
    _check_positive("ALERT_MIN_MAGNITUDE", s.alert_min_magnitude, -2.0)
    _check_positive("ALERT_SURGE_FACTOR", s.alert_surge_factor, 1.0)
    _check_positive("ALERT_SURGE_MIN_COUNT", s.alert_surge_min_count, 1)
    _check_positive(
        "ALERT_WEBHOOK_TIMEOUT_SECONDS", s.alert_webhook_timeout_seconds, 0.1
    )
    _check_positive("ALERT_WEBHOOK_MAX_RETRIES", s.alert_webhook_max_retries, 1)
    _check_positive("ALERT_WEBHOOK_RETRY_SECONDS", s.alert_webhook_retry_seconds, 0.1)
    if s.alert_webhook_url:
        _check_http_url(
            "ALERT_WEBHOOK_URL",
            s.alert_webhook_url.get_secret_value(),
            secret=True,
            example="https://hooks.example.com/streamapp",
        )


def _validate(s: Settings) -> None:
    _check_choice("KAFKA_MODE", s.kafka_mode, KAFKA_MODES)
    if s.app_mode:
        _check_choice("APP_MODE", s.app_mode, APP_MODES)
    _check_choice("SOURCE", s.source, SOURCES)
    _check_choice(
        "KAFKA_SECURITY_PROTOCOL", s.kafka_security_protocol, SECURITY_PROTOCOLS
    )
    _check_choice("KAFKA_SASL_MECHANISM", s.kafka_sasl_mechanism, SASL_MECHANISMS)
    servers = [h.strip() for h in s.kafka_bootstrap_servers.split(",")]
    if not servers or any(
        not _HOSTPORT.match(h) or not 1 <= int(h.rsplit(":", 1)[1]) <= 65535
        for h in servers
    ):
        raise ConfigError(
            f"KAFKA_BOOTSTRAP_SERVERS={s.kafka_bootstrap_servers!r} is malformed; "
            "use host:port[,host:port], e.g. localhost:9092"
        )
    for env, port in (
        ("ZOOKEEPER_CLIENT_PORT", s.zookeeper_client_port),
        ("POSTGRES_PORT", s.postgres_port),
        ("WEB_PORT", s.web_port),
    ):
        if not 1 <= port <= 65535:
            raise ConfigError(f"{env}={port} is not a TCP port (1-65535)")
    _check_database_url(s.database_url.get_secret_value())
    if not _IDENT.match(s.postgres_schema):
        raise ConfigError(
            f"POSTGRES_SCHEMA={s.postgres_schema!r} must be a lower-case SQL identifier"
        )
    topics = {
        "TOPIC_RAW": s.topic_raw,
        "TOPIC_CLEAN": s.topic_clean,
        "TOPIC_DEAD_LETTER": s.topic_dead_letter,
        "TOPIC_ACTIVITY": s.topic_activity,
        "TOPIC_ALERTS": s.topic_alerts,
    }
    for env, topic in topics.items():
        if not _TOPIC.match(topic):
            raise ConfigError(f"{env}={topic!r} is not a valid Kafka topic name")
    if len(set(topics.values())) != len(topics):
        raise ConfigError(f"{', '.join(topics)} must differ")
    _check_positive("TOPIC_PARTITIONS", s.topic_partitions)
    _check_positive("TOPIC_REPLICATION_FACTOR", s.topic_replication_factor)
    _check_positive("SINK_BATCH_SIZE", s.sink_batch_size)
    _check_positive("SINK_BATCH_SECONDS", s.sink_batch_seconds, 0.001)
    _check_positive("FETCH_INTERVAL_SECONDS", s.fetch_interval_seconds, 0.1)
    _check_positive("SOURCE_TIMEOUT_SECONDS", s.source_timeout_seconds, 0.1)
    _check_positive("SOURCE_MAX_BYTES", s.source_max_bytes, 1024)
    _check_positive("MAX_MESSAGE_BYTES", s.max_message_bytes, 1024)
    _check_positive("MAX_JSON_DEPTH", s.max_json_depth, 4)  # an envelope is 4 deep
    _check_positive("DEDUP_RETENTION_DAYS", s.dedup_retention_days, 0.001)
    if s.kafka_wait_seconds < 0:
        raise ConfigError(
            f"KAFKA_WAIT_SECONDS={s.kafka_wait_seconds!r} must be 0 (wait for ever) "
            "or more"
        )
    _check_alert_settings(s)
    _check_positive(
        "BACKFILL_REQUESTS_PER_SECOND", s.backfill_requests_per_second, 0.001
    )
    _check_positive("BACKFILL_EVENTS_PER_SECOND", s.backfill_events_per_second, 0.001)
    _check_positive("BACKFILL_MAX_EVENTS_PER_QUERY", s.backfill_max_events_per_query)
    _check_http_url(
        "BACKFILL_URL", s.backfill_url, secret=False, example=Settings.backfill_url
    )
    if s.source == "replay" and not s.replay_path.is_file():
        raise ConfigError(f"REPLAY_FILE={str(s.replay_path)!r} does not exist")


def load_settings(
    environ: Mapping[str, str] | None = None, env_file: Path | str | None = ".env"
) -> Settings:
    """Build the settings: defaults, then the ``.env`` file, then the environment.

    Raises :class:`ConfigError` with a one-line message naming what to fix.
    """
    env = dict(os.environ if environ is None else environ)
    file_values = read_env_file(Path(env_file)) if env_file else {}
    merged = {**file_values, **env}
    kwargs: dict[str, Any] = {}
    for f in fields(Settings):
        key = f.name.upper()
        if key in merged and merged[key] != "":
            kwargs[f.name] = _convert(f.name, merged[key].strip(), f.type)
    if "database_url" not in kwargs:
        user = quote(merged.get("POSTGRES_USER") or Settings.postgres_user, safe="")
        password = quote(
            merged.get("POSTGRES_PASSWORD")
            or Settings().postgres_password.get_secret_value(),
            safe="",
        )
        host = merged.get("POSTGRES_HOST") or Settings.postgres_host
        port = merged.get("POSTGRES_PORT") or str(Settings.postgres_port)
        db = quote(merged.get("POSTGRES_DB") or Settings.postgres_db, safe="")
        kwargs["database_url"] = Secret(
            f"postgresql://{user}:{password}@{host}:{port}/{db}"
        )
    settings = Settings(**kwargs)
    _validate(settings)
    return settings
