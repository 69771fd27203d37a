"""Settings: defaults == .env.example, .env parsing, one-line errors, hidden secrets."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest

from streamapp.exceptions import ConfigError
from streamapp.settings import Secret, Settings, load_settings, read_env_file

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = ROOT / ".env.example"
FIELD_NAMES = {f.name.upper() for f in fields(Settings)}


def test_defaults_match_env_example_for_every_shared_key() -> None:
    example = read_env_file(EXAMPLE)
    shared = sorted(set(example) & FIELD_NAMES)
    assert len(shared) >= 20, shared  # the example really documents the settings
    from_example = load_settings(environ={}, env_file=EXAMPLE)
    defaults = load_settings(environ={}, env_file=None)
    for key in shared:
        name = key.lower()
        assert getattr(from_example, name) == getattr(defaults, name), key
        if example[key]:  # the literal text too, not only the converted value
            default = getattr(Settings(), name)
            if isinstance(default, Secret):
                default = default.get_secret_value()
            assert type(default)(example[key]) == default, key


def test_every_key_of_env_example_is_a_setting() -> None:
    assert set(read_env_file(EXAMPLE)) - FIELD_NAMES == set()


def test_commented_database_url_in_env_example_is_the_derived_default() -> None:
    line = next(
        ln
        for ln in EXAMPLE.read_text().splitlines()
        if ln.startswith("# DATABASE_URL=")
    )
    derived = load_settings(environ={}, env_file=None).database_url.get_secret_value()
    assert line.split("=", 1)[1] == derived


def test_env_file_parsing(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text(
        "# a comment\n"
        "\n"
        "export POSTGRES_PORT=6543\n"
        "APP_ID = 'quoted-app'\n"
        'TOPIC_RAW="raw.topic"\n'
        "SINK_BATCH_SECONDS=2.5\n"
        "REDRIVE_TOKEN=\n"
        "POSTGRES_PASSWORD=p#ss=word\n"
    )
    s = load_settings(environ={}, env_file=env)
    assert s.postgres_port == 6543
    assert s.app_id == "quoted-app"
    assert s.topic_raw == "raw.topic"
    assert s.sink_batch_seconds == 2.5
    assert s.redrive_token == Secret("")
    assert s.postgres_password.get_secret_value() == "p#ss=word"
    assert "p%23ss%3Dword@localhost:6543" in s.database_url.get_secret_value()


def test_environment_wins_over_env_file(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text("POSTGRES_PORT=6543\nAPP_ID=from-file\n")
    s = load_settings(environ={"APP_ID": "from-env"}, env_file=env)
    assert (s.app_id, s.postgres_port) == ("from-env", 6543)


def test_missing_env_file_means_defaults(tmp_path: Path) -> None:
    assert load_settings(environ={}, env_file=tmp_path / "nope") == Settings(
        database_url=load_settings(environ={}, env_file=None).database_url
    )


def test_malformed_env_file_line_names_file_and_line(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text("APP_ID=ok\nthis is not an assignment\n")
    with pytest.raises(ConfigError) as info:
        load_settings(environ={}, env_file=env)
    message = str(info.value)
    assert f"{env}:2" in message and "\n" not in message


def test_explicit_database_url_wins() -> None:
    url = "postgresql://u:pw@db.example:5999/other"
    s = load_settings(environ={"DATABASE_URL": url}, env_file=None)
    assert s.database_url.get_secret_value() == url
    assert s.sqlalchemy_url == "postgresql+psycopg2://u:pw@db.example:5999/other"


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"ZOOKEEPER_CLIENT_PORT": "abc"}, "ZOOKEEPER_CLIENT_PORT"),
        ({"KAFKA_BROKER_ID": "one"}, "KAFKA_BROKER_ID"),
        pytest.param(
            {"POSTGRES_PORT": "70000"},
            "POSTGRES_PORT",
        ),
        ({"POSTGRES_PORT": "0"}, "POSTGRES_PORT"),
        ({"WEB_PORT": "http"}, "WEB_PORT"),
        ({"KAFKA_MODE": "bogus"}, "KAFKA_MODE"),
        ({"APP_MODE": "batch"}, "APP_MODE"),
        ({"SOURCE": "ftp"}, "SOURCE"),
        ({"KAFKA_SECURITY_PROTOCOL": "TLS"}, "KAFKA_SECURITY_PROTOCOL"),
        ({"KAFKA_SASL_MECHANISM": "MD5"}, "KAFKA_SASL_MECHANISM"),
        ({"KAFKA_BOOTSTRAP_SERVERS": "localhost"}, "KAFKA_BOOTSTRAP_SERVERS"),
        ({"KAFKA_BOOTSTRAP_SERVERS": "a:1,,b:2"}, "KAFKA_BOOTSTRAP_SERVERS"),
        ({"DATABASE_URL": "mysql://u:p@h:1/db"}, "DATABASE_URL"),
        ({"DATABASE_URL": "postgresql://u:p@h:1/"}, "DATABASE_URL"),
        ({"DATABASE_URL": "postgresql://u:p@h:port/db"}, "DATABASE_URL"),
        ({"POSTGRES_SCHEMA": "Bad-Schema"}, "POSTGRES_SCHEMA"),
        ({"TOPIC_RAW": "bad topic!"}, "TOPIC_RAW"),
        ({"TOPIC_CLEAN": "earthquakes.raw"}, "TOPIC_CLEAN"),
        ({"TOPIC_PARTITIONS": "0"}, "TOPIC_PARTITIONS"),
        ({"TOPIC_REPLICATION_FACTOR": "0"}, "TOPIC_REPLICATION_FACTOR"),
        ({"SINK_BATCH_SIZE": "-1"}, "SINK_BATCH_SIZE"),
        ({"SINK_BATCH_SECONDS": "0"}, "SINK_BATCH_SECONDS"),
        ({"FETCH_INTERVAL_SECONDS": "soon"}, "FETCH_INTERVAL_SECONDS"),
        ({"SOURCE_TIMEOUT_SECONDS": "0"}, "SOURCE_TIMEOUT_SECONDS"),
        ({"SOURCE_MAX_BYTES": "10"}, "SOURCE_MAX_BYTES"),
        ({"MAX_MESSAGE_BYTES": "1"}, "MAX_MESSAGE_BYTES"),
        ({"MAX_JSON_DEPTH": "1"}, "MAX_JSON_DEPTH"),
        ({"SOURCE": "replay", "REPLAY_FILE": "/nonexistent.geojson"}, "REPLAY_FILE"),
        ({"TOPIC_ALERTS": "earthquakes.clean"}, "TOPIC_ALERTS"),
        ({"TOPIC_ACTIVITY": "bad topic"}, "TOPIC_ACTIVITY"),
        ({"ALERT_MIN_MAGNITUDE": "big"}, "ALERT_MIN_MAGNITUDE"),
        ({"ALERT_SURGE_FACTOR": "0.5"}, "ALERT_SURGE_FACTOR"),
        ({"ALERT_SURGE_MIN_COUNT": "0"}, "ALERT_SURGE_MIN_COUNT"),
        ({"ALERT_WEBHOOK_URL": "ftp://hooks.example.com/x"}, "ALERT_WEBHOOK_URL"),
        ({"ALERT_WEBHOOK_URL": "hooks.example.com/x"}, "ALERT_WEBHOOK_URL"),
        ({"ALERT_WEBHOOK_URL": "http://h:99999/x"}, "ALERT_WEBHOOK_URL"),
        ({"ALERT_WEBHOOK_MAX_RETRIES": "0"}, "ALERT_WEBHOOK_MAX_RETRIES"),
        ({"ALERT_WEBHOOK_RETRY_SECONDS": "0"}, "ALERT_WEBHOOK_RETRY_SECONDS"),
        ({"BACKFILL_URL": "file:///etc/passwd"}, "BACKFILL_URL"),
        ({"BACKFILL_REQUESTS_PER_SECOND": "0"}, "BACKFILL_REQUESTS_PER_SECOND"),
        ({"BACKFILL_EVENTS_PER_SECOND": "-5"}, "BACKFILL_EVENTS_PER_SECOND"),
        ({"BACKFILL_MAX_EVENTS_PER_QUERY": "0"}, "BACKFILL_MAX_EVENTS_PER_QUERY"),
    ],
)
def test_each_malformed_value_is_a_one_line_config_error(
    env: dict[str, str], needle: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(environ=env, env_file=None)
    message = str(info.value)
    assert needle in message
    assert "\n" not in message and message.strip() == message


SECRETS = {
    "POSTGRES_PASSWORD": "pg-S3cret-value",
    "KAFKA_SASL_PASSWORD": "sasl-S3cret-value",
    "REDRIVE_TOKEN": "redrive-S3cret-value",
    "JUPYTER_TOKEN": "jupyter-S3cret-value",
    "ALERT_WEBHOOK_URL": "https://hook:webhook-S3cret-value@hooks.example.com/x",
}


def test_secrets_never_in_repr_str_or_public_dict() -> None:
    s = load_settings(environ=dict(SECRETS), env_file=None)
    assert s.postgres_password.get_secret_value() == SECRETS["POSTGRES_PASSWORD"]
    shown = " ".join([repr(s), str(s), repr(s.public_dict()), s.database_url_redacted])
    for value in SECRETS.values():
        assert value not in shown
    assert s.public_dict()["database_url"].startswith("postgresql://streamapp:***@")


def test_explicit_database_url_password_is_redacted() -> None:
    url = "postgresql://u:url-S3cret@h:5432/db"
    s = load_settings(environ={"DATABASE_URL": url}, env_file=None)
    assert "url-S3cret" not in repr(s) + repr(s.public_dict())
    assert s.database_url_redacted == "postgresql://u:***@h:5432/db"


def test_webhook_url_is_never_echoed_by_its_config_error() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(
            environ={"ALERT_WEBHOOK_URL": "gopher://u:hook-S3cret@h/x"}, env_file=None
        )
    assert "hook-S3cret" not in str(info.value)
    assert "http or https" in str(info.value)


def test_valid_webhook_urls_load() -> None:
    for url in ("http://127.0.0.1:8080/hook", "https://u:p@hooks.example.com/a?b=c"):
        s = load_settings(environ={"ALERT_WEBHOOK_URL": url}, env_file=None)
        assert s.alert_webhook_url.get_secret_value() == url


def test_secret_value_not_in_config_error() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(
            environ={"DATABASE_URL": "mysql://u:err-S3cret@h/db"}, env_file=None
        )
    assert "err-S3cret" not in str(info.value)


def test_secret_behaviour() -> None:
    secret = Secret("x")
    assert repr(secret) == str(secret) == "Secret('**********')"
    assert repr(Secret("")) == "Secret('')"
    assert secret == Secret("x") and secret != Secret("y") and bool(secret)
    assert not Secret("")
    assert hash(secret) == hash(Secret("x"))


def test_stack_dir_setting() -> None:
    assert Settings().stack_dir == ".stack"
    s = load_settings(environ={"STACK_DIR": "/tmp/elsewhere"}, env_file=None)
    assert s.stack_dir == "/tmp/elsewhere"
