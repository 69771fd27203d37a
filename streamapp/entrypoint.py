"""Entrypoint: wait for Kafka and PostgreSQL, migrate, run worker or Jupyter."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shlex
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from streamapp.exceptions import ConfigError, StreamappError
from streamapp.settings import APP_MODES, Settings, load_settings

__all__ = [
    "JUPYTER_PORT",
    "WAIT_TIMEOUT_SECONDS",
    "Plan",
    "build_plan",
    "healthcheck",
    "main",
    "run_migration",
    "wait_for_dependencies",
]

PROG = "streamapp-entrypoint"
#: How long the entrypoint waits for Kafka and PostgreSQL before it gives up.
WAIT_TIMEOUT_SECONDS = 60.0
#: How long one reachability check may take.
CHECK_TIMEOUT_SECONDS = 5.0
#: Pause between two rounds of checks.
CHECK_INTERVAL_SECONDS = 1.0
#: The port Jupyter listens on (the notebook service publishes it).
JUPYTER_PORT = 8888
#: The folder Jupyter serves, relative to the working directory (/app in the image).
NOTEBOOKS_DIR = "notebooks"

EXIT_OK = 0
EXIT_UNAVAILABLE = 1
EXIT_CONFIG = 2

#: Faust's ``-l`` choices, and the usual names that map onto them.
FAUST_LOG_LEVELS = ("crit", "error", "warn", "info", "debug")
_LOG_LEVEL_ALIASES = {"critical": "crit", "warning": "warn"}


@dataclass(frozen=True)
class Plan:
    """What the entrypoint runs for a mode: the command and whether to migrate first."""

    mode: str
    argv: list[str]
    migrate: bool
    #: Variables set in the environment of the command (never on its command line).
    env: dict[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        """The command as one shell line; secrets in ``env`` are only named."""
        hidden = "".join(
            f" ({name} set in the environment)" for name in sorted(self.env)
        )
        return shlex.join(self.argv) + hidden


def _executable(name: str) -> str:
    """The console script installed next to this Python, else ``name`` on PATH."""
    candidate = Path(sys.executable).with_name(name)
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    return name


def faust_log_level(settings: Settings) -> str:
    """LOG_LEVEL as one of Faust's ``-l`` choices; ConfigError if it is none."""
    level = settings.log_level.strip().lower()
    level = _LOG_LEVEL_ALIASES.get(level, level)
    if level not in FAUST_LOG_LEVELS:
        raise ConfigError(
            f"LOG_LEVEL={settings.log_level!r} is not valid; "
            f"use one of: {', '.join(FAUST_LOG_LEVELS)}"
        )
    return level


def build_plan(
    settings: Settings,
    *,
    jupyter_port: int = JUPYTER_PORT,
    notebooks_dir: Path | str = NOTEBOOKS_DIR,
    running_as_root: bool | None = None,
) -> Plan:
    """The command for ``settings.app_mode``; ConfigError for an unknown/empty mode."""
    mode = settings.app_mode.strip()
    if mode == "web":
        argv = [
            _executable("faust"),
            "-A",
            "streamapp",
            "worker",
            "-l",
            faust_log_level(settings),
            "--web-port",
            str(settings.web_port),
        ]
        return Plan(mode=mode, argv=argv, migrate=True)
    if mode == "jupyter":
        root = Path(notebooks_dir).resolve()
        if not root.is_dir():
            raise ConfigError(f"the notebooks folder {str(root)!r} does not exist")
        argv = [
            _executable("jupyter"),
            "lab",
            f"--ip={settings.web_host}",
            f"--port={jupyter_port}",
            "--ServerApp.port_retries=0",
            "--no-browser",
            f"--ServerApp.root_dir={root}",
        ]
        if running_as_root is None:
            running_as_root = os.geteuid() == 0
        if running_as_root:
            # The image runs as a non-root user; this only happens outside it.
            argv.append("--allow-root")
        # Jupyter reads its token from JUPYTER_TOKEN, so it stays off the command line
        # (which every user sees in `ps`). Empty: Jupyter makes a random one, logs it.
        token = settings.jupyter_token.get_secret_value()
        env = {"JUPYTER_TOKEN": token} if token else {}
        return Plan(mode=mode, argv=argv, migrate=False, env=env)
    shown = repr(settings.app_mode) if mode else "not set"
    raise ConfigError(f"APP_MODE is {shown}; use one of: {', '.join(APP_MODES)}")


def _describe_targets(settings: Settings) -> dict[str, str]:
    return {
        "kafka": f"Kafka at {settings.kafka_bootstrap_servers}",
        "postgres": f"PostgreSQL at {settings.database_url_redacted}",
    }


async def _wait(settings: Settings, limit: float, interval: float) -> str | None:
    from streamapp.health import check_health  # late: aiokafka, SQLAlchemy

    targets = _describe_targets(settings)
    deadline = time.monotonic() + limit
    announced = False
    while True:
        remaining = deadline - time.monotonic()
        attempt = max(0.5, min(CHECK_TIMEOUT_SECONDS, remaining))
        report = await check_health(settings, timeout=attempt)
        if report.ok:
            return None
        if not announced:
            names = " and ".join(targets[name] for name in sorted(report.problems))
            _say(f"waiting up to {limit:g}s for {names}")
            announced = True
        if time.monotonic() + interval >= deadline:
            missing = "; ".join(
                f"{targets[name]} did not answer ({problem})"
                for name, problem in sorted(report.problems.items())
            )
            return f"gave up after {limit:g}s: {missing}"
        await asyncio.sleep(interval)


def wait_for_dependencies(
    settings: Settings,
    timeout: float = WAIT_TIMEOUT_SECONDS,
    interval: float = CHECK_INTERVAL_SECONDS,
) -> str | None:
    """Wait until Kafka and PostgreSQL answer: None, or a line naming who is silent."""
    # aiokafka logs every refused connection at ERROR; the summary line says it all.
    kafka_logger = logging.getLogger("aiokafka")
    previous = kafka_logger.level
    kafka_logger.setLevel(logging.CRITICAL)
    try:
        return asyncio.run(_wait(settings, timeout, interval))
    finally:
        kafka_logger.setLevel(previous)


def run_migration(settings: Settings) -> list[str]:
    """Apply the schema migrations (``streamapp.db.migrate``); the names applied."""
    from streamapp.db import migrate  # late: keeps SQLAlchemy off --dry-run and --help

    return list(migrate(settings))


def healthcheck(settings: Settings, jupyter_port: int = JUPYTER_PORT) -> int:
    """Docker HEALTHCHECK: 0 when this container's server answers 200, else 1."""
    headers: dict[str, str] = {}
    if settings.app_mode == "jupyter":
        token = settings.jupyter_token.get_secret_value()
        if token:
            url = f"http://127.0.0.1:{jupyter_port}/api/status"
            headers["Authorization"] = f"token {token}"
        else:  # the token is random and unknown here: the unauthenticated API root
            url = f"http://127.0.0.1:{jupyter_port}/api"
    else:
        url = f"http://127.0.0.1:{settings.web_port}/health"
    request = urllib.request.Request(url, headers=headers)  # noqa: S310 - http only
    try:
        with urllib.request.urlopen(request, timeout=CHECK_TIMEOUT_SECONDS) as resp:  # noqa: S310
            status = int(resp.status)
    except urllib.error.HTTPError as exc:
        status = exc.code
    except OSError as exc:
        _say(f"healthcheck: {url} did not answer ({type(exc).__name__}: {exc})")
        return EXIT_UNAVAILABLE
    if status != 200:
        _say(f"healthcheck: {url} answered {status}")
        return EXIT_UNAVAILABLE
    return EXIT_OK


def _say(message: str) -> None:
    print(f"{PROG}: {message}", file=sys.stderr, flush=True)


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=(
            "Run streamapp in the mode APP_MODE names: web (the Faust worker and its "
            "web views) or jupyter (JupyterLab). Waits for Kafka and PostgreSQL first."
        ),
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="print the command for APP_MODE and exit; contacts nothing",
    )
    parser.add_argument(
        "--healthcheck",
        action="store_true",
        help="probe this container's server (/health or the Jupyter API) and exit",
    )
    parser.add_argument(
        "--wait-timeout",
        type=float,
        default=WAIT_TIMEOUT_SECONDS,
        metavar="SECONDS",
        help=f"give Kafka and PostgreSQL this long (default {WAIT_TIMEOUT_SECONDS:g})",
    )
    parser.add_argument(
        "--jupyter-port",
        type=int,
        default=JUPYTER_PORT,
        metavar="PORT",
        help=f"the port of Jupyter in jupyter mode (default {JUPYTER_PORT})",
    )
    parser.add_argument(
        "--notebooks-dir",
        default=NOTEBOOKS_DIR,
        metavar="DIR",
        help=f"the folder Jupyter serves (default ./{NOTEBOOKS_DIR})",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Console script ``streamapp-entrypoint``; only returns when it does not exec."""
    args = _parse_args(argv)
    try:
        settings = load_settings()
        if args.healthcheck:
            return healthcheck(settings, jupyter_port=args.jupyter_port)
        plan = build_plan(
            settings, jupyter_port=args.jupyter_port, notebooks_dir=args.notebooks_dir
        )
    except ConfigError as exc:
        _say(f"configuration error: {exc}")
        return EXIT_CONFIG
    if args.dry_run:
        print(plan.describe(), flush=True)
        return EXIT_OK

    problem = wait_for_dependencies(settings, timeout=args.wait_timeout)
    if problem is not None:
        _say(problem)
        return EXIT_UNAVAILABLE
    _say("Kafka and PostgreSQL answer")
    if plan.migrate:
        try:
            applied = run_migration(settings)
        except StreamappError as exc:
            _say(f"schema migration failed: {exc}")
            return EXIT_UNAVAILABLE
        done = f"applied {', '.join(applied)}" if applied else "already up to date"
        _say(f"schema {settings.postgres_schema!r}: {done}")
    _say(f"APP_MODE={plan.mode}: exec {plan.describe()}")
    # Writing (not reading) the environment: the exec'd program inherits it.
    os.environ.update(plan.env)
    os.execvp(plan.argv[0], plan.argv)  # noqa: S606 - argv is built above, no shell
    return EXIT_UNAVAILABLE  # pragma: no cover - execvp does not return


if __name__ == "__main__":
    sys.exit(main())
