"""devstack.kafka: listeners, server.properties in both modes, cluster ids."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from devstack.kafka import (
    Kafka,
    Listener,
    client_listener,
    controller_port,
    kraft_cluster_id,
    parse_listeners,
    parse_protocol_map,
    render_kafka_properties,
)
from devstack.paths import StackPaths
from streamapp.exceptions import ConfigError
from streamapp.settings import Settings, load_settings
from tests.unit.devstack.helpers import alt_settings, props


# ------------------------------------------------------------------ listeners
def test_parse_default_listener() -> None:
    assert parse_listeners("PLAINTEXT://localhost:9092") == [
        Listener("PLAINTEXT", "localhost", 9092)
    ]


def test_parse_several_listeners_and_pick_the_local_one() -> None:
    listeners = parse_listeners(
        "PLAINTEXT://kafka:29092, PLAINTEXT_HOST://localhost:19092"
    )
    assert [li.port for li in listeners] == [29092, 19092]
    assert client_listener(listeners) == Listener("PLAINTEXT_HOST", "localhost", 19092)


def test_parse_ipv6_listener() -> None:
    (li,) = parse_listeners("PLAINTEXT://[::1]:9092")
    assert (li.host, li.port, li.url()) == ("::1", 9092, "PLAINTEXT://[::1]:9092")


@pytest.mark.parametrize(
    "spec",
    [
        "",
        "localhost:9092",
        "PLAINTEXT://localhost",
        "PLAINTEXT://localhost:port",
        "PLAINTEXT://localhost:70000",
        "://localhost:9092",
        "PLAINTEXT://a:1,PLAINTEXT://b:2",
    ],
)
def test_malformed_listeners_are_config_errors(spec: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_listeners(spec)
    assert "KAFKA_ADVERTISED_LISTENERS" in str(info.value)
    assert "\n" not in str(info.value)


def test_protocol_map() -> None:
    assert parse_protocol_map("PLAINTEXT:PLAINTEXT,controller:plaintext") == {
        "PLAINTEXT": "PLAINTEXT",
        "CONTROLLER": "PLAINTEXT",
    }
    with pytest.raises(ConfigError):
        parse_protocol_map("PLAINTEXT")


def test_controller_port_is_the_client_port_plus_one() -> None:
    assert controller_port(alt_settings()) == 19093


# ------------------------------------------------------------------ rendering
def test_zookeeper_mode_server_properties(tmp_path: Path) -> None:
    p = props(render_kafka_properties(Settings(), "zookeeper", tmp_path / "logs"))
    assert p["broker.id"] == "1"
    assert p["zookeeper.connect"] == "localhost:2181"
    assert p["listeners"] == "PLAINTEXT://localhost:9092"
    assert p["advertised.listeners"] == "PLAINTEXT://localhost:9092"
    assert p["log.dirs"] == str(tmp_path / "logs")
    assert p["offsets.topic.replication.factor"] == "1"
    assert p["transaction.state.log.replication.factor"] == "1"
    assert p["transaction.state.log.min.isr"] == "1"
    assert p["auto.create.topics.enable"] == "true"
    assert p["group.initial.rebalance.delay.ms"] == "0"
    assert "process.roles" not in p


def test_alternate_ports_reach_the_broker_config(tmp_path: Path) -> None:
    s = alt_settings(KAFKA_BROKER_ID="7")
    p = props(render_kafka_properties(s, "zookeeper", tmp_path))
    assert p["listeners"] == "PLAINTEXT://localhost:19092"
    assert p["zookeeper.connect"] == "localhost:12181"
    assert p["broker.id"] == "7"


def test_kraft_properties(tmp_path: Path) -> None:
    s = alt_settings()
    p = props(render_kafka_properties(s, "kraft", tmp_path))
    assert p["process.roles"] == "broker,controller"
    assert p["node.id"] == "1"
    assert p["controller.quorum.voters"] == "1@localhost:19093"
    assert p["listeners"] == "PLAINTEXT://localhost:19092,CONTROLLER://localhost:19093"
    assert p["advertised.listeners"] == "PLAINTEXT://localhost:19092"
    assert p["controller.listener.names"] == "CONTROLLER"
    assert "CONTROLLER:PLAINTEXT" in p["listener.security.protocol.map"]
    assert "zookeeper.connect" not in p and "broker.id" not in p


def test_kraft_adds_controller_protocol_when_missing(tmp_path: Path) -> None:
    s = load_settings(
        environ={"KAFKA_LISTENER_SECURITY_PROTOCOL_MAP": "PLAINTEXT:PLAINTEXT"},
        env_file=None,
    )
    p = props(render_kafka_properties(s, "kraft", tmp_path))
    assert (
        p["listener.security.protocol.map"]
        == "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"
    )


def test_non_local_advertised_host_binds_all_interfaces(tmp_path: Path) -> None:
    s = load_settings(
        environ={"KAFKA_ADVERTISED_LISTENERS": "PLAINTEXT://kafka.example:9092"},
        env_file=None,
    )
    p = props(render_kafka_properties(s, "zookeeper", tmp_path))
    assert p["listeners"] == "PLAINTEXT://:9092"
    assert p["advertised.listeners"] == "PLAINTEXT://kafka.example:9092"


def test_zookeeper_connect_must_point_at_the_local_zookeeper(tmp_path: Path) -> None:
    s = alt_settings(KAFKA_ZOOKEEPER_CONNECT="localhost:2181")
    with pytest.raises(ConfigError, match="ZOOKEEPER_CLIENT_PORT=12181"):
        render_kafka_properties(s, "zookeeper", tmp_path)
    render_kafka_properties(s, "kraft", tmp_path)  # irrelevant without ZooKeeper


def test_listener_missing_from_protocol_map(tmp_path: Path) -> None:
    s = load_settings(
        environ={"KAFKA_ADVERTISED_LISTENERS": "EXTERNAL://localhost:9092"},
        env_file=None,
    )
    with pytest.raises(ConfigError, match="KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"):
        render_kafka_properties(s, "zookeeper", tmp_path)


def test_controller_must_not_be_advertised(tmp_path: Path) -> None:
    s = load_settings(
        environ={
            "KAFKA_ADVERTISED_LISTENERS": "CONTROLLER://localhost:9092",
            "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP": "CONTROLLER:PLAINTEXT",
        },
        env_file=None,
    )
    with pytest.raises(ConfigError, match="must not advertise CONTROLLER"):
        render_kafka_properties(s, "kraft", tmp_path)


def test_unknown_mode(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="KAFKA_MODE"):
        render_kafka_properties(Settings(), "docker", tmp_path)


def test_kraft_cluster_id() -> None:
    ids = {kraft_cluster_id() for _ in range(50)}
    assert len(ids) == 50
    for value in ids:
        assert len(value) == 22 and not value.startswith("-")
        assert len(base64.urlsafe_b64decode(value + "==")) == 16


# ------------------------------------------------------------------ the service
@pytest.mark.parametrize(
    ("listeners", "bootstrap"),
    [
        ("PLAINTEXT://localhost:19092", "localhost:19092"),
        ("PLAINTEXT://0.0.0.0:19092", "127.0.0.1:19092"),
        ("PLAINTEXT://:19092", "127.0.0.1:19092"),
    ],
)
def test_kafka_bootstrap(tmp_path: Path, listeners: str, bootstrap: str) -> None:
    s = alt_settings(KAFKA_ADVERTISED_LISTENERS=listeners)
    kafka = Kafka(StackPaths(tmp_path), print, 1.0, s, "kraft")
    assert (kafka.bootstrap, kafka.port) == (bootstrap, 19092)
    assert kafka.conf == tmp_path / "conf" / "server-kraft.properties"


def test_running_mode_of_a_process_without_our_conf_is_the_configured_one(
    tmp_path: Path,
) -> None:
    kafka = Kafka(StackPaths(tmp_path), print, 1.0, alt_settings(), "kraft")
    assert kafka.running_mode(1) == "kraft"
    assert kafka.pid() is None


def test_a_kraft_node_that_died_is_explained(tmp_path: Path) -> None:
    paths = StackPaths(tmp_path)
    paths.prepare()
    lines: list[str] = []
    kafka = Kafka(paths, lines.append, 1.0, alt_settings(), "kraft")
    kafka.explain_crash_wait()
    assert lines == []  # never started, or stopped by down: no pid file
    paths.pid("kafka").write_text("4242\n")
    kafka.explain_crash_wait()
    assert lines == [
        "kafka: the last node (pid 4242) stopped without `make down`; "
        "it registers again once its 9 s broker session has expired"
    ]
