"""Where the stack's sources (jars, log4j config) and its state (``STACK_DIR``) live."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from streamapp.settings import Settings

__all__ = [
    "LIB_DIR",
    "LOG4J",
    "POM",
    "REPO_ROOT",
    "StackPaths",
    "resolve_stack_dir",
]

REPO_ROOT = Path(__file__).resolve().parent.parent
STACK_SRC = REPO_ROOT / "stack"
LIB_DIR = STACK_SRC / "lib"
POM = STACK_SRC / "pom.xml"
LOG4J = STACK_SRC / "log4j.properties"


@dataclass(frozen=True)
class StackPaths:
    """Where the stack keeps its state: configs, data, pid files and logs."""

    root: Path

    @property
    def conf(self) -> Path:
        return self.root / "conf"

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def run(self) -> Path:
        return self.root / "run"

    @property
    def postgres(self) -> Path:
        """The PostgreSQL data dir (maybe a symlink to a place postgres can reach)."""
        return self.root / "postgres"

    @property
    def marker(self) -> str:
        """What the command line of every JVM this stack started contains."""
        return str(self.conf) + os.sep

    def kafka_conf(self, mode: str) -> Path:
        return self.conf / f"server-{mode}.properties"

    def kafka_data(self, mode: str) -> Path:
        return self.data / f"kafka-{mode}"

    def pid(self, name: str) -> Path:
        return self.run / f"{name}.pid"

    def log(self, name: str) -> Path:
        return self.logs / f"{name}.log"

    def out(self, name: str) -> Path:
        return self.logs / f"{name}.out"

    def prepare(self) -> None:
        """Create the state dirs (the root readable by the postgres OS user)."""
        for d in (self.root, self.conf, self.data, self.logs, self.run):
            d.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o755)


def resolve_stack_dir(settings: Settings) -> Path:
    """STACK_DIR, relative to the repository root unless absolute."""
    path = Path(settings.stack_dir).expanduser()
    return (path if path.is_absolute() else REPO_ROOT / path).resolve()
