"""devstack.zookeeper: config, the connect string, and the crashed broker's nodes.

The client is checked against a fake server speaking the same wire protocol; the
integration test (tests/integration/test_stack.py) runs it against ZooKeeper itself.
"""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack import zookeeper
from devstack.paths import StackPaths
from devstack.zookeeper import (
    ZnodeStat,
    ZooKeeper,
    ZooKeeperClient,
    parse_zookeeper_connect,
    remove_crashed_broker,
    render_zookeeper_properties,
    zookeeper_answers,
    zookeeper_chroot,
)
from streamapp.exceptions import ConfigError
from tests.unit.devstack.helpers import alt_settings, props


def test_zookeeper_properties(tmp_path: Path) -> None:
    s = alt_settings(ZOOKEEPER_TICK_TIME="500")
    z = props(render_zookeeper_properties(s, tmp_path / "zk"))
    assert z["clientPort"] == "12181" and z["tickTime"] == "500"
    assert z["dataDir"] == str(tmp_path / "zk")
    assert z["admin.enableServer"] == "false"  # no surprise listener on 8080
    assert "ruok" in z["4lw.commands.whitelist"]


def test_zookeeper_connect_and_chroot() -> None:
    assert parse_zookeeper_connect("a:1,b:2/chroot") == [("a", 1), ("b", 2)]
    with pytest.raises(ConfigError):
        parse_zookeeper_connect("nohostport")
    assert zookeeper_chroot("localhost:2181") == ""
    assert zookeeper_chroot("localhost:2181/kafka") == "/kafka"
    assert zookeeper_chroot("a:1,b:2/kafka/x/") == "/kafka/x"


def test_nothing_listening_does_not_answer() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert not zookeeper_answers(port, timeout=0.5)


# ------------------------------------------------------------------ fake server
class FakeZooKeeper:
    """Answers connect, getData, delete and close like ZooKeeper (no watches)."""

    def __init__(self, nodes: dict[str, ZnodeStat]) -> None:
        self.nodes = dict(nodes)
        self.deleted: list[str] = []
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    @staticmethod
    def frame(body: bytes) -> bytes:
        return struct.pack(">i", len(body)) + body

    @staticmethod
    def read(conn: socket.socket) -> bytes | None:
        head = conn.recv(4, socket.MSG_WAITALL)
        if len(head) < 4:
            return None
        (size,) = struct.unpack(">i", head)
        return conn.recv(size, socket.MSG_WAITALL)

    def serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            with conn:
                self.session(conn)

    def session(self, conn: socket.socket) -> None:
        if self.read(conn) is None:
            return
        conn.sendall(self.frame(struct.pack(">iiqi16s", 0, 5000, 0x42, 16, b"")))
        while (req := self.read(conn)) is not None:
            xid, op = struct.unpack_from(">ii", req)
            if op == zookeeper.OP_CLOSE:
                conn.sendall(self.frame(struct.pack(">iqi", xid, 1, 0)))
                return
            (n,) = struct.unpack_from(">i", req, 8)
            path = req[12 : 12 + n].decode()
            err, body = self.handle(op, path, req[12 + n :])
            conn.sendall(self.frame(struct.pack(">iqi", xid, 1, err) + body))

    def handle(self, op: int, path: str, rest: bytes) -> tuple[int, bytes]:
        node = self.nodes.get(path)
        if node is None:
            return zookeeper.ERR_NO_NODE, b""
        if op == zookeeper.OP_GET_DATA:
            stat = (0, 0, 0, 0, node.version, 0, 0, node.ephemeral_owner, 2, 0, 0)
            return 0, struct.pack(">i2s", 2, b"{}") + zookeeper.STAT.pack(*stat)
        (version,) = struct.unpack(">i", rest)
        if version not in (-1, node.version):
            return -103, b""  # BadVersion
        del self.nodes[path]
        self.deleted.append(path)
        return 0, b""

    def close(self) -> None:
        self.server.close()


@pytest.fixture
def fake() -> Iterator[FakeZooKeeper]:
    server = FakeZooKeeper({})
    yield server
    server.close()


def test_client_stat_and_delete(fake: FakeZooKeeper) -> None:
    fake.nodes["/a"] = ZnodeStat(version=3, ephemeral_owner=7)
    with ZooKeeperClient(fake.port) as zk:
        assert zk.stat("/a") == ZnodeStat(3, 7)
        assert zk.stat("/missing") is None
        zk.delete("/a", 3)
        zk.delete("/a", 3)  # gone already: fine
    assert fake.deleted == ["/a"]


def test_crashed_broker_nodes_of_its_session_are_removed(fake: FakeZooKeeper) -> None:
    fake.nodes.update(
        {
            "/brokers/ids/1": ZnodeStat(1, 0x55),
            "/controller": ZnodeStat(0, 0x55),
            "/brokers/ids/2": ZnodeStat(0, 0x66),
        }
    )
    assert remove_crashed_broker(fake.port, 1) == 0x55
    assert fake.deleted == ["/brokers/ids/1", "/controller"]
    assert remove_crashed_broker(fake.port, 1) is None  # nothing left behind


def test_another_session_s_controller_is_left_alone(fake: FakeZooKeeper) -> None:
    fake.nodes.update(
        {
            "/kafka/brokers/ids/3": ZnodeStat(0, 0x55),
            "/kafka/controller": ZnodeStat(0, 0x77),
        }
    )
    assert remove_crashed_broker(fake.port, 3, "/kafka") == 0x55
    assert fake.deleted == ["/kafka/brokers/ids/3"]


def test_a_persistent_node_is_no_registration(fake: FakeZooKeeper) -> None:
    fake.nodes["/brokers/ids/1"] = ZnodeStat(0, 0)
    assert remove_crashed_broker(fake.port, 1) is None
    assert fake.deleted == []


def test_forget_crashed_broker_says_what_it_removed(
    fake: FakeZooKeeper, tmp_path: Path
) -> None:
    fake.nodes["/brokers/ids/1"] = ZnodeStat(0, 0xABC)
    lines: list[str] = []
    s = alt_settings(
        ZOOKEEPER_CLIENT_PORT=str(fake.port),
        KAFKA_ZOOKEEPER_CONNECT=f"localhost:{fake.port}",
    )
    zk = ZooKeeper(StackPaths(tmp_path), lines.append, 1.0, s)
    zk.forget_crashed_broker()
    zk.forget_crashed_broker()  # nothing left: silent
    assert lines == [
        "zookeeper: removed the registration of a crashed broker "
        "(/brokers/ids/1, session 0xabc)"
    ]


def test_forget_crashed_broker_without_zookeeper_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    lines: list[str] = []
    s = alt_settings(ZOOKEEPER_CLIENT_PORT=str(port))
    zk = ZooKeeper(StackPaths(tmp_path), lines.append, 1.0, s)
    zk.forget_crashed_broker(patience=0.6)
    assert len(lines) == 1
    assert lines[0].startswith("zookeeper: could not look for a crashed broker")
