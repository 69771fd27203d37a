"""``python -m devstack up|down|status|purge [--mode zookeeper|kraft] [--timeout S]``.

Exit codes: 0 done (status: everything answers), 1 a one-line error, 3 status found
something stopped or not answering, 130 interrupted.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from devstack.kafka import MODES
from devstack.stack import DEFAULT_TIMEOUT, Stack
from streamapp.exceptions import StreamappError
from streamapp.settings import load_settings

__all__ = ["build_parser", "main"]

PROG = "streamapp-stack"


def build_parser() -> argparse.ArgumentParser:
    """The command line of the stack."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="The local Kafka (ZooKeeper or KRaft) + PostgreSQL stack.",
    )
    parser.add_argument("command", choices=("up", "down", "status", "purge"))
    parser.add_argument(
        "--mode", choices=MODES, default=None, help="override KAFKA_MODE for this run"
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        help=f"seconds to wait for each service (default {DEFAULT_TIMEOUT:.0f})",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; errors are one line on stderr, never a traceback."""
    args = build_parser().parse_args(argv)
    # The readiness probes fail while the broker starts: keep aiokafka quiet.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    try:
        stack = Stack(load_settings(), mode=args.mode, timeout=args.timeout)
        if args.command == "up":
            stack.up()
        elif args.command == "down":
            stack.down()
        elif args.command == "purge":
            stack.purge()
        else:
            return 0 if stack.status() else 3
    except StreamappError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr, flush=True)
        return 130
    return 0
