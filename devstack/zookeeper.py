"""ZooKeeper for the zookeeper mode: config, probe, a crashed broker's leftovers.

A broker killed with SIGKILL leaves its ephemeral registration (``/brokers/ids/<id>``,
and ``/controller`` when it was the controller) behind until its ZooKeeper session
expires (``zookeeper.session.timeout.ms``, 18 s); a broker started before that dies
with ``NodeExists``. :func:`remove_crashed_broker` deletes exactly those nodes of the
dead session, as a clean shutdown would have, so the next broker starts at once. The
caller makes sure no broker of ours runs (no pid, the port free) before it calls it.
"""

from __future__ import annotations

import socket
import struct
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from devstack.jvm import JavaService, render_properties
from devstack.paths import StackPaths
from devstack.process import Echo
from streamapp.exceptions import ConfigError, StackError
from streamapp.settings import Settings

__all__ = [
    "ZnodeStat",
    "ZooKeeper",
    "ZooKeeperClient",
    "parse_zookeeper_connect",
    "remove_crashed_broker",
    "render_zookeeper_properties",
    "zookeeper_answers",
    "zookeeper_chroot",
]

ZOOKEEPER_HEAP = ("-Xms32m", "-Xmx256m")
MAIN_CLASS = "org.apache.zookeeper.server.quorum.QuorumPeerMain"
# ZooKeeper's wire protocol (jute): op codes and the one error code we expect.
OP_DELETE, OP_GET_DATA, OP_CLOSE = 2, 4, -11
ERR_NO_NODE = -101
STAT = struct.Struct(">qqqqiiiqiiq")


def render_zookeeper_properties(settings: Settings, data_dir: Path) -> str:
    """zookeeper.properties for a standalone ZooKeeper on ZOOKEEPER_CLIENT_PORT."""
    return render_properties(
        [
            ("dataDir", data_dir),
            ("clientPort", settings.zookeeper_client_port),
            ("clientPortAddress", "127.0.0.1"),
            ("tickTime", settings.zookeeper_tick_time),
            ("maxClientCnxns", 0),
            ("admin.enableServer", "false"),
            ("4lw.commands.whitelist", "ruok,srvr,stat,mntr"),
            ("autopurge.snapRetainCount", 3),
            ("autopurge.purgeInterval", 24),
        ],
        "ZooKeeper (standalone) for the streamapp local stack",
    )


def parse_zookeeper_connect(spec: str) -> list[tuple[str, int]]:
    """Parse ``host:port[,host:port][/chroot]`` (KAFKA_ZOOKEEPER_CONNECT)."""
    hosts = spec.split("/", 1)[0]
    out: list[tuple[str, int]] = []
    for item in hosts.split(","):
        host, colon, port = item.strip().rpartition(":")
        if not colon or not host or not port.isdigit():
            raise ConfigError(
                f"KAFKA_ZOOKEEPER_CONNECT={spec!r} is malformed; use host:port, "
                "e.g. localhost:2181"
            )
        out.append((host, int(port)))
    return out


def zookeeper_chroot(spec: str) -> str:
    """The chroot of KAFKA_ZOOKEEPER_CONNECT ('' for none)."""
    _, slash, chroot = spec.partition("/")
    return ("/" + chroot).rstrip("/") if slash else ""


def zookeeper_answers(port: int, timeout: float = 2.0) -> bool:
    """ZooKeeper serves requests: ``srvr`` reports its version.

    (``ruok`` answers ``imok`` while a restarted server still loads its data and
    closes every session request.)
    """
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.sendall(b"srvr")
            reply = b""
            while chunk := sock.recv(4096):
                reply += chunk
    except OSError:
        return False
    return reply.startswith(b"Zookeeper version:")


@dataclass(frozen=True)
class ZnodeStat:
    """The two fields of a znode's Stat the stack needs."""

    version: int
    ephemeral_owner: int


class ZooKeeperClient:
    """Just enough of ZooKeeper's client protocol: a session, getData and delete."""

    def __init__(self, port: int, timeout: float = 5.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.xid = 0
        try:
            # ConnectRequest: protocol 0, last zxid 0, session timeout, no session,
            # a 16-byte empty password, not read-only.
            body = struct.pack(">iqiqi16s?", 0, 0, int(timeout * 1000), 0, 16, b"", 0)
            reply = self._roundtrip(body)
            if len(reply) < 16 or struct.unpack_from(">i", reply, 4)[0] <= 0:
                raise StackError("zookeeper refused a session")
        except BaseException:
            self.sock.close()
            raise

    def __enter__(self) -> ZooKeeperClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _recv(self, size: int) -> bytes:
        data = b""
        while len(data) < size:
            chunk = self.sock.recv(size - len(data))
            if not chunk:
                raise StackError("zookeeper closed the connection")
            data += chunk
        return data

    def _roundtrip(self, body: bytes) -> bytes:
        self.sock.sendall(struct.pack(">i", len(body)) + body)
        (size,) = struct.unpack(">i", self._recv(4))
        return self._recv(size)

    def _request(self, op: int, payload: bytes) -> tuple[int, bytes]:
        self.xid += 1
        reply = self._roundtrip(struct.pack(">ii", self.xid, op) + payload)
        _xid, _zxid, err = struct.unpack_from(">iqi", reply)
        return err, reply[16:]

    @staticmethod
    def _path(path: str) -> bytes:
        raw = path.encode()
        return struct.pack(">i", len(raw)) + raw

    def stat(self, path: str) -> ZnodeStat | None:
        """The znode's Stat, None when it does not exist."""
        err, body = self._request(OP_GET_DATA, self._path(path) + b"\0")
        if err == ERR_NO_NODE:
            return None
        if err != 0:
            raise StackError(f"zookeeper: getData {path} failed (error {err})")
        (length,) = struct.unpack_from(">i", body)
        fields = STAT.unpack_from(body, 4 + max(length, 0))
        return ZnodeStat(version=fields[4], ephemeral_owner=fields[7])

    def delete(self, path: str, version: int) -> None:
        """Delete the znode at ``version`` (gone already counts as deleted)."""
        err, _ = self._request(OP_DELETE, self._path(path) + struct.pack(">i", version))
        if err not in (0, ERR_NO_NODE):
            raise StackError(f"zookeeper: delete {path} failed (error {err})")

    def close(self) -> None:
        try:
            self._request(OP_CLOSE, b"")
        except (OSError, StackError, struct.error):
            pass
        finally:
            self.sock.close()


def remove_crashed_broker(port: int, broker_id: int, chroot: str = "") -> int | None:
    """Delete a dead broker's registration (and /controller when it held it).

    Returns the dead session's id, or None when no registration was left behind.
    Only the nodes owned by that one session are deleted.
    """
    registration = f"{chroot}/brokers/ids/{broker_id}"
    with ZooKeeperClient(port) as zk:
        stat = zk.stat(registration)
        if stat is None or stat.ephemeral_owner == 0:
            return None
        owner = stat.ephemeral_owner
        for path in (registration, f"{chroot}/controller"):
            node = stat if path == registration else zk.stat(path)
            if node is not None and node.ephemeral_owner == owner:
                zk.delete(path, node.version)
    return owner


class ZooKeeper(JavaService):
    """The standalone ZooKeeper of the zookeeper mode."""

    name = "zookeeper"

    def __init__(
        self, paths: StackPaths, echo: Echo, timeout: float, settings: Settings
    ) -> None:
        super().__init__(paths, echo, timeout)
        self.settings = settings
        self.port = settings.zookeeper_client_port

    def answers(self) -> bool:
        return zookeeper_answers(self.port)

    def launch(self, java: str) -> subprocess.Popen[bytes]:
        """Write zookeeper.properties and start the JVM (not awaited)."""
        conf = self.paths.conf / "zookeeper.properties"
        data = self.paths.data / "zookeeper"
        data.mkdir(parents=True, exist_ok=True)
        conf.write_text(render_zookeeper_properties(self.settings, data))
        return self.spawn(java, ZOOKEEPER_HEAP, [MAIN_CLASS, str(conf)])

    def forget_crashed_broker(self, patience: float = 10.0) -> None:
        """Remove what a killed broker left registered, so the next one can start.

        Retried for ``patience`` seconds: a server that just started may still
        refuse sessions. Failing that, one line; the broker's start then decides.
        """
        s = self.settings
        chroot = zookeeper_chroot(s.kafka_zookeeper_connect)
        deadline = time.monotonic() + patience
        while True:
            try:
                session = remove_crashed_broker(self.port, s.kafka_broker_id, chroot)
                break
            except (OSError, StackError, struct.error) as exc:
                if time.monotonic() > deadline:
                    self.echo(f"zookeeper: could not look for a crashed broker: {exc}")
                    return
                time.sleep(0.5)
        if session is not None:
            self.echo(
                f"zookeeper: removed the registration of a crashed broker "
                f"({chroot}/brokers/ids/{s.kafka_broker_id}, session {session:#x})"
            )
