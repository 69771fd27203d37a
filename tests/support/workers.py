"""A real ``faust -A streamapp worker`` process, driven and probed over HTTP."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tests.support.paths import FAUST, ROOT

__all__ = ["Worker"]


class Worker:
    """A real ``faust -A streamapp worker`` process with its own environment.

    ``env["WEB_PORT"]`` is its web port; its output goes to ``log_path``. It runs
    in its own session, so :meth:`kill` and :meth:`stop` reach its whole group.
    """

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.env = env
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.web_port = int(env["WEB_PORT"])

    def start(self) -> Worker:
        """Start the process (output appended to the log); returns ``self``."""
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
        """``(status, JSON body)`` of a GET on the worker's web server."""
        url = f"http://127.0.0.1:{self.web_port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp:
                return resp.status, json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"null")

    def wait_healthy(self, timeout: float = 120.0) -> None:
        """Block until ``/health`` answers 200; fail with the log's tail if not."""
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
        """Fail (with the log's tail) if the process has exited."""
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(
                f"worker exited with {self.proc.returncode}:\n{self.tail()}"
            )

    def tail(self, lines: int = 60) -> str:
        """The last ``lines`` lines of the worker's log."""
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
