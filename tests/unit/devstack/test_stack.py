"""The stack manager's pure parts: parsing, rendering, prerequisites, pids, ports."""

from __future__ import annotations

import base64
import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest

import devstack.stack as stack
from devstack.stack import (
    Listener,
    Stack,
    client_listener,
    find_java,
    find_pg_bindir,
    parse_listeners,
    parse_protocol_map,
    parse_zookeeper_connect,
    render_kafka_properties,
    render_pg_bootstrap_sql,
    render_postgres_conf,
    render_zookeeper_properties,
)
from streamapp.exceptions import ConfigError, StackError
from streamapp.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parents[3]


def props(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            out[key] = value
    return out


def alt_settings(**env: str) -> Settings:
    base = {
        "ZOOKEEPER_CLIENT_PORT": "12181",
        "KAFKA_ZOOKEEPER_CONNECT": "localhost:12181",
        "KAFKA_ADVERTISED_LISTENERS": "PLAINTEXT://localhost:19092",
        "KAFKA_BOOTSTRAP_SERVERS": "localhost:19092",
        "POSTGRES_PORT": "15320",
    }
    return load_settings(environ={**base, **env}, env_file=None)


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


def test_protocol_map_and_zookeeper_connect() -> None:
    assert parse_protocol_map("PLAINTEXT:PLAINTEXT,controller:plaintext") == {
        "PLAINTEXT": "PLAINTEXT",
        "CONTROLLER": "PLAINTEXT",
    }
    with pytest.raises(ConfigError):
        parse_protocol_map("PLAINTEXT")
    assert parse_zookeeper_connect("a:1,b:2/chroot") == [("a", 1), ("b", 2)]
    with pytest.raises(ConfigError):
        parse_zookeeper_connect("nohostport")


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


def test_alternate_ports_reach_every_config(tmp_path: Path) -> None:
    s = alt_settings(KAFKA_BROKER_ID="7", ZOOKEEPER_TICK_TIME="500")
    p = props(render_kafka_properties(s, "zookeeper", tmp_path))
    assert p["listeners"] == "PLAINTEXT://localhost:19092"
    assert p["zookeeper.connect"] == "localhost:12181"
    assert p["broker.id"] == "7"
    z = props(render_zookeeper_properties(s, tmp_path / "zk"))
    assert z["clientPort"] == "12181" and z["tickTime"] == "500"
    assert z["dataDir"] == str(tmp_path / "zk")
    assert z["admin.enableServer"] == "false"  # no surprise listener on 8080
    assert "ruok" in z["4lw.commands.whitelist"]
    assert "port = 15320" in render_postgres_conf(s)
    assert "listen_addresses = '127.0.0.1'" in render_postgres_conf(s)


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


def test_unknown_mode(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="KAFKA_MODE"):
        render_kafka_properties(Settings(), "docker", tmp_path)
    with pytest.raises(ConfigError, match="KAFKA_MODE"):
        Stack(Settings(), mode="docker")


def test_pg_bootstrap_sql_quotes_and_is_not_superuser() -> None:
    text = render_pg_bootstrap_sql('we"ird', "it's", "db")
    assert 'CREATE ROLE "we""ird"' in text
    assert "PASSWORD 'it''s'" in text
    assert "NOSUPERUSER" in text
    assert 'CREATE DATABASE "db" OWNER "we""ird"' in text
    # single-user mode (-j): each statement ends with ";" and an empty line
    assert text.count(";\n\n") == 4


def test_kraft_cluster_id() -> None:
    ids = {stack.kraft_cluster_id() for _ in range(50)}
    assert len(ids) == 50
    for value in ids:
        assert len(value) == 22 and not value.startswith("-")
        assert len(base64.urlsafe_b64decode(value + "==")) == 16


def test_tail(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    log.write_text("".join(f"line {i}\n" for i in range(100)))
    assert stack.tail(log, 3) == "line 97\nline 98\nline 99"
    assert stack.tail(tmp_path / "missing.log") == ""


# -------------------------------------------------------------- prerequisites
def test_missing_java_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(StackError, match=r"java not found.*install"):
        find_java(path=str(tmp_path))


def test_missing_mvn_when_jars_are_missing(tmp_path: Path) -> None:
    with pytest.raises(StackError, match="mvn is not on PATH: install Maven"):
        stack.ensure_jars(path=str(tmp_path), lib_dir=tmp_path / "lib")


def test_jars_present_needs_kafka_zookeeper_and_logging(tmp_path: Path) -> None:
    for name in ("kafka_2.13-3.9.1.jar", "zookeeper-3.8.4.jar"):
        (tmp_path / name).touch()
    assert not stack.jars_present(tmp_path)
    (tmp_path / "slf4j-reload4j-1.7.36.jar").touch()
    assert stack.jars_present(tmp_path)
    stack.ensure_jars(path=str(tmp_path), lib_dir=tmp_path)  # present: no mvn needed


def test_missing_postgres_binaries(tmp_path: Path) -> None:
    with pytest.raises(StackError, match=r"PostgreSQL server binaries .* install"):
        find_pg_bindir(path=str(tmp_path), globs=())


def _fake_bindir(root: Path, tools: tuple[str, ...] = stack.PG_TOOLS) -> Path:
    root.mkdir(parents=True)
    for tool in tools:
        exe = root / tool
        exe.write_text("#!/bin/sh\nexit 0\n")
        exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    return root


def test_pg_bindir_found_on_path_and_prefers_15(tmp_path: Path) -> None:
    on_path = _fake_bindir(tmp_path / "path")
    assert find_pg_bindir(path=str(on_path), globs=()) == on_path
    _fake_bindir(tmp_path / "pg" / "16" / "bin")
    v15 = _fake_bindir(tmp_path / "pg" / "15" / "bin")
    _fake_bindir(tmp_path / "pg" / "14" / "bin", ("initdb",))  # incomplete: skipped
    found = find_pg_bindir(
        path=str(tmp_path / "empty"), globs=(f"{tmp_path}/pg/*/bin",)
    )
    assert found == v15


def test_cli_without_java_prints_one_line_and_no_traceback(tmp_path: Path) -> None:
    env = {
        "PATH": str(tmp_path),
        "STACK_DIR": str(tmp_path / "stack"),
        "HOME": os.environ.get("HOME", "/root"),
    }
    out = subprocess.run(
        [sys.executable, "-m", "devstack", "up"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 1
    assert out.stdout == ""
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in out.stderr
    assert lines[0].startswith("streamapp-stack: java not found")
    assert not (tmp_path / "stack").exists()  # nothing created before the checks


def test_cli_bad_setting_is_one_line(tmp_path: Path) -> None:
    env = {
        "PATH": os.environ.get("PATH", ""),
        "KAFKA_ADVERTISED_LISTENERS": "localhost:9092",
        "STACK_DIR": str(tmp_path / "stack"),
    }
    out = subprocess.run(
        [sys.executable, "-m", "devstack", "status"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 1
    assert out.stderr.count("\n") == 1 and "KAFKA_ADVERTISED_LISTENERS" in out.stderr


# ------------------------------------------------------------ pids and ports
def test_pid_alive_checks_the_command_line() -> None:
    me = os.getpid()
    assert stack.pid_alive(me, "python")
    assert not stack.pid_alive(me, "no-such-marker-in-my-cmdline")
    assert not stack.pid_alive(2**22 + 12345, "")


def test_read_pid(tmp_path: Path) -> None:
    assert stack.read_pid(tmp_path / "none.pid") is None
    (tmp_path / "a.pid").write_text("123\n")
    assert stack.read_pid(tmp_path / "a.pid") == 123
    (tmp_path / "b.pid").write_text("garbage")
    assert stack.read_pid(tmp_path / "b.pid") is None


def test_port_in_use() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        assert stack.port_in_use(port)
    assert not stack.port_in_use(port)


def test_status_of_a_stack_that_never_ran(tmp_path: Path) -> None:
    ports = []
    for _ in range(3):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
    settings = alt_settings(
        ZOOKEEPER_CLIENT_PORT=str(ports[0]),
        KAFKA_ZOOKEEPER_CONNECT=f"localhost:{ports[0]}",
        KAFKA_ADVERTISED_LISTENERS=f"PLAINTEXT://localhost:{ports[1]}",
        POSTGRES_PORT=str(ports[2]),
        STACK_DIR=str(tmp_path / "stack"),
    )
    lines: list[str] = []
    st = Stack(settings, echo=lines.append)
    assert st.paths.root == tmp_path / "stack"
    assert st.status() is False
    assert sum("stopped" in line for line in lines) == 3


def test_relative_stack_dir_is_under_the_repository() -> None:
    st = Stack(Settings())
    assert st.paths.root == ROOT / ".stack"
    assert (
        st.paths.kafka_conf("kraft")
        == ROOT / ".stack" / "conf" / "server-kraft.properties"
    )
