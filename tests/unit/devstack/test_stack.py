"""devstack.stack: the orchestration without starting anything."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from devstack.stack import Stack
from streamapp.exceptions import ConfigError
from streamapp.settings import Settings
from tests.unit.devstack.helpers import alt_settings

ROOT = Path(__file__).resolve().parents[3]


def _unused_ports(n: int) -> list[int]:
    ports = []
    for _ in range(n):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
    return ports


def test_unknown_mode() -> None:
    with pytest.raises(ConfigError, match="KAFKA_MODE"):
        Stack(Settings(), mode="docker")


def test_status_of_a_stack_that_never_ran(tmp_path: Path) -> None:
    zk, kafka, pg = _unused_ports(3)
    settings = alt_settings(
        ZOOKEEPER_CLIENT_PORT=str(zk),
        KAFKA_ZOOKEEPER_CONNECT=f"localhost:{zk}",
        KAFKA_ADVERTISED_LISTENERS=f"PLAINTEXT://localhost:{kafka}",
        POSTGRES_PORT=str(pg),
        STACK_DIR=str(tmp_path / "stack"),
    )
    lines: list[str] = []
    st = Stack(settings, echo=lines.append)
    assert st.paths.root == tmp_path / "stack"
    assert (st.kafka_port, st.kafka_bootstrap) == (kafka, f"localhost:{kafka}")
    assert st.status() is False
    assert sum("stopped" in line for line in lines) == 3
    lines.clear()
    assert st.down() is False
    assert lines == ["stack: nothing was running"]


def test_kraft_status_has_no_zookeeper_row(tmp_path: Path) -> None:
    _zk, kafka, pg = _unused_ports(3)
    settings = alt_settings(
        KAFKA_ADVERTISED_LISTENERS=f"PLAINTEXT://localhost:{kafka}",
        POSTGRES_PORT=str(pg),
        STACK_DIR=str(tmp_path / "stack"),
    )
    lines: list[str] = []
    assert Stack(settings, mode="kraft", echo=lines.append).status() is False
    assert lines[0].endswith("(kraft mode)")
    assert [line.split()[0] for line in lines[1:]] == ["kafka", "postgres"]


def test_relative_stack_dir_is_under_the_repository() -> None:
    st = Stack(Settings())
    assert st.paths.root == ROOT / ".stack"
    assert (
        st.paths.kafka_conf("kraft")
        == ROOT / ".stack" / "conf" / "server-kraft.properties"
    )
