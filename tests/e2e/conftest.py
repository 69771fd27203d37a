"""Fixtures for end-to-end tests: real worker processes and a local feed server."""

from __future__ import annotations

import http.server
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "usgs"
FAUST = Path(sys.executable).with_name("faust")


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def load_capture(name: str) -> dict[str, Any]:
    """A real USGS capture from tests/fixtures/usgs."""
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


class FeedServer:
    """A local HTTP server that serves a GeoJSON document the test can swap."""

    def __init__(self) -> None:
        self.body = b'{"type": "FeatureCollection", "features": []}'
        self.status = 200
        self.requests = 0
        feed = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                feed.requests += 1
                self.send_response(feed.status)
                self.send_header("Content-Type", "application/geo+json")
                self.send_header("Content-Length", str(len(feed.body)))
                self.end_headers()
                self.wfile.write(feed.body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/all_hour.geojson"

    def serve(self, document: dict[str, Any]) -> None:
        self.body = json.dumps(document).encode("utf-8")

    def __enter__(self) -> FeedServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


class Worker:
    """A real ``faust -A streamapp worker`` process with its own environment."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.env = env
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.web_port = int(env["WEB_PORT"])

    def start(self) -> Worker:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [
                str(FAUST),
                "-A",
                "streamapp",
                "worker",
                "-l",
                "info",
                "--web-port",
                str(self.web_port),
            ],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        return self

    def get(self, path: str, timeout: float = 10.0) -> tuple[int, Any]:
        url = f"http://127.0.0.1:{self.web_port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp:
                return resp.status, json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"null")

    def wait_healthy(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.assert_alive()
            try:
                status, _ = self.get("/health", timeout=10)
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.5)
        raise AssertionError(f"worker not healthy in {timeout}s:\n{self.tail()}")

    def assert_alive(self) -> None:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(
                f"worker exited with {self.proc.returncode}:\n{self.tail()}"
            )

    def tail(self, lines: int = 60) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def kill(self) -> None:
        """SIGKILL the whole process group: no shutdown hooks, no final commit."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM, then SIGKILL if it does not exit in time."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
def isolated_env(tmp_path: Path) -> dict[str, str]:
    """Environment for a worker with its own app id, topics, schema and web port."""
    tag = uuid.uuid4().hex[:8]
    env = dict(os.environ)
    env.update(
        {
            "APP_ID": f"e2e-{tag}",
            "TOPIC_RAW": f"e2e-{tag}.raw",
            "TOPIC_CLEAN": f"e2e-{tag}.clean",
            "TOPIC_DEAD_LETTER": f"e2e-{tag}.dead-letter",
            "POSTGRES_SCHEMA": f"e2e_{tag}",
            "WEB_PORT": str(free_port()),
            "FETCH_INTERVAL_SECONDS": "1",
            "SINK_BATCH_SECONDS": "0.2",
            "SOURCE_TIMEOUT_SECONDS": "5",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


@pytest.fixture
def feed() -> Iterator[FeedServer]:
    with FeedServer() as server:
        yield server


@pytest.fixture
def start_worker(tmp_path: Path) -> Iterator[Any]:
    """Factory: start workers with a given env; every one is stopped at teardown."""
    workers: list[Worker] = []

    def start(env: dict[str, str], name: str = "worker") -> Worker:
        worker = Worker(env, tmp_path / f"{name}-{len(workers)}.log").start()
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        worker.stop()
