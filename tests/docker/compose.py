"""Driving `docker compose` as a user would, plus the feed and the reads the tests use.

Everything here talks to 127.0.0.1 (the host ports the compose project publishes)
or to the containers the tests started.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import psycopg2

from tests.support.ports import port_free

__all__ = [
    "ROOT",
    "Compose",
    "Database",
    "Feed",
    "HostPorts",
    "engine_problem",
    "http_get",
    "wait_for",
]

ROOT = Path(__file__).resolve().parents[2]
T = TypeVar("T")

#: The bundled capture: the template of every synthetic event the feed serves.
CAPTURE = ROOT / "streamapp" / "data" / "all_day_2014-04-14.geojson"


def engine_problem() -> str | None:
    """One line saying what is missing to run compose for real, or None."""
    if shutil.which("docker") is None:
        return "no docker CLI on PATH (install Docker: docker.io or Docker Engine)"
    try:
        info = subprocess.run(
            ["docker", "info", "--format", "{{.ServerVersion}}"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except subprocess.TimeoutExpired:
        return "the Docker engine does not answer within 30 s (docker info)"
    if info.returncode != 0 or not info.stdout.strip():
        return "no Docker engine answers (start dockerd, or set DOCKER_HOST)"
    compose = subprocess.run(
        ["docker", "compose", "version"], capture_output=True, text=True, timeout=30
    )
    if compose.returncode != 0:
        return "the Compose v2 plugin is missing (`docker compose version` fails)"
    return None


def wait_for(
    what: str, probe: Callable[[], T | None], timeout: float, every: float = 1.0
) -> T:
    """Poll ``probe`` until it returns something truthy; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = probe()
        except Exception as exc:
            last = exc
        else:
            if last:
                return last
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f} s (last: {last!r})")
        time.sleep(every)


def http_get(url: str, timeout: float = 10.0) -> tuple[int, bytes]:
    """GET ``url``: (status, body); HTTP errors are answers too."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@dataclass(frozen=True)
class HostPorts:
    """The host ports a compose project publishes (HOST_PORT_* of the files).

    The defaults stay off the local stack's 9092, 2181, 5320 and 6066, so the
    docker test and `make up` can run side by side.
    """

    kafka: int = 19092
    kafka_2: int = 19094
    kafka_3: int = 19095
    postgres: int = 15320
    web: int = 16066
    web_last: int = 16068
    jupyter: int = 18888
    kafka_ui: int = 18080

    def env(self) -> dict[str, str]:
        return {
            "HOST_PORT_KAFKA": str(self.kafka),
            "HOST_PORT_KAFKA_2": str(self.kafka_2),
            "HOST_PORT_KAFKA_3": str(self.kafka_3),
            "HOST_PORT_POSTGRES": str(self.postgres),
            "HOST_PORT_WEB": str(self.web),
            "HOST_PORT_WEB_LAST": str(self.web_last),
            "HOST_PORT_JUPYTER": str(self.jupyter),
            "HOST_PORT_KAFKA_UI": str(self.kafka_ui),
        }

    def busy(self) -> list[int]:
        ports = [self.kafka, self.kafka_2, self.kafka_3, self.postgres, self.jupyter]
        ports += range(self.web, self.web_last + 1)
        return [p for p in ports if not port_free(p, "0.0.0.0")]


@dataclass
class Compose:
    """One compose project: its files, its name and the environment it reads."""

    files: list[Path]
    project: str
    env: dict[str, str]
    env_file: Path
    log: list[str] = field(default_factory=list)

    def run(
        self, *args: str, timeout: float = 300.0, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        command = ["docker", "compose", "--project-name", self.project]
        command += ["--env-file", str(self.env_file)]
        for path in self.files:
            command += ["--file", str(path)]
        command += list(args)
        started = time.monotonic()
        result = subprocess.run(
            command,
            cwd=ROOT,
            env={**os.environ, **self.env},
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        self.log.append(
            f"$ docker compose {' '.join(args)}  "
            f"[{time.monotonic() - started:.1f} s, exit {result.returncode}]"
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"docker compose {' '.join(args)} exited {result.returncode}:\n"
                f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
            )
        return result

    def containers(self, service: str) -> list[dict[str, Any]]:
        """`docker compose ps --format json` of one service (running ones)."""
        out = self.run("ps", "--format", "json", service).stdout
        rows: list[dict[str, Any]] = []
        for line in out.splitlines():
            line = line.strip()
            if not line:
                continue
            parsed = json.loads(line)
            rows.extend(parsed if isinstance(parsed, list) else [parsed])
        return rows

    def healthy(self, service: str, count: int = 1) -> bool:
        rows = self.containers(service)
        return len(rows) == count and all(r.get("Health") == "healthy" for r in rows)

    def wait_healthy(self, services: dict[str, int], timeout: float = 240.0) -> None:
        for service, count in services.items():
            wait_for(
                f"{count} healthy {service} container(s) in {self.project}",
                lambda s=service, c=count: self.healthy(s, c),  # type: ignore[misc]
                timeout,
                every=2.0,
            )

    def published(self, service: str) -> list[int]:
        """The host ports of a service's replicas (its first published port)."""
        ports = []
        for row in self.containers(service):
            for publisher in row.get("Publishers") or []:
                if publisher.get("PublishedPort"):
                    ports.append(int(publisher["PublishedPort"]))
                    break
        return sorted(set(ports))

    def logs(self, *services: str, tail: int = 80) -> str:
        result = self.run(
            "logs", "--no-color", "--tail", str(tail), *services, check=False
        )
        return result.stdout[-8000:] + result.stderr[-2000:]

    def volumes(self) -> list[str]:
        out = subprocess.run(
            [
                "docker",
                "volume",
                "ls",
                "--quiet",
                "--filter",
                f"label=com.docker.compose.project={self.project}",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
        return out.split()


class Feed:
    """A USGS-style GeoJSON document that grows; the ``feed`` container serves it.

    Every event is the first one of the bundled capture with a new id and its own
    times, so each one validates and becomes one row; a served event never changes.
    """

    def __init__(self, directory: Path, prefix: str) -> None:
        self.directory = directory
        self.prefix = prefix
        self.template = json.loads(CAPTURE.read_text(encoding="utf-8"))["features"][0]
        self.events: list[tuple[str, int]] = []
        directory.mkdir(parents=True, exist_ok=True)
        directory.chmod(0o755)
        self._write()

    @property
    def ids(self) -> set[str]:
        return {event_id for event_id, _ in self.events}

    def add(self, n: int) -> list[str]:
        """Add ``n`` new events to the document; returns their ids."""
        now = int(time.time() * 1000)
        new = [f"{self.prefix}{len(self.events) + i:06d}" for i in range(n)]
        self.events.extend((event_id, now - n + i) for i, event_id in enumerate(new))
        self._write()
        return new

    def _write(self) -> None:
        features = []
        for event_id, millis in self.events:
            feature = json.loads(json.dumps(self.template))
            props = feature["properties"]
            props["time"] = props["updated"] = millis
            props["code"] = event_id
            props["ids"] = f",{event_id},"
            props["title"] = f"M 1.7 - synthetic event {event_id}"
            feature["id"] = event_id
            features.append(feature)
        doc = {
            "type": "FeatureCollection",
            "metadata": {"count": len(features)},
            "features": features,
        }
        part = self.directory / "feed.geojson.part"
        part.write_text(json.dumps(doc), encoding="utf-8")
        part.chmod(0o644)
        part.replace(self.directory / "feed.geojson")


@dataclass
class Database:
    """Reads through PostgreSQL's published host port, as a user's psql would."""

    port: int
    user: str
    password: str
    dbname: str

    def query(self, statement: str) -> list[tuple[Any, ...]]:
        conn = psycopg2.connect(
            host="127.0.0.1",
            port=self.port,
            user=self.user,
            password=self.password,
            dbname=self.dbname,
            connect_timeout=5,
        )
        try:
            with conn, conn.cursor() as cur:
                cur.execute(statement)
                return list(cur.fetchall())
        finally:
            conn.close()

    def ids(self) -> set[str]:
        try:
            return {row[0] for row in self.query("SELECT id FROM earthquakes")}
        except psycopg2.errors.UndefinedTable:
            return set()

    def tables(self) -> set[str]:
        rows = self.query(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = 'public'"
        )
        return {row[0] for row in rows}
