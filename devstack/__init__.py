"""The local development stack: ZooKeeper or KRaft, a Kafka broker and PostgreSQL.

Developer tooling, not part of the runtime package (it is neither installed nor in
the image): it assumes a source checkout, with the Kafka jars in ``stack/lib``
(``make jars``). ``python -m devstack up|down|status|purge`` from the repository root,
or ``make up|down|status``.

Modules: :mod:`devstack.stack` (the orchestration), :mod:`devstack.zookeeper`,
:mod:`devstack.kafka` and :mod:`devstack.postgres` (one service each),
:mod:`devstack.jvm` (java, the jars, launching a JVM), :mod:`devstack.process`
(pids, ports, waiting), :mod:`devstack.paths` and :mod:`devstack.cli`.
"""

from __future__ import annotations

from devstack.cli import main
from devstack.kafka import (
    Listener,
    kafka_answers,
    parse_listeners,
    render_kafka_properties,
)
from devstack.paths import StackPaths
from devstack.postgres import as_postgres_prefix, find_pg_bindir
from devstack.process import pid_alive, read_pid
from devstack.stack import Stack
from devstack.zookeeper import render_zookeeper_properties, zookeeper_answers

__all__ = [
    "Listener",
    "Stack",
    "StackPaths",
    "as_postgres_prefix",
    "find_pg_bindir",
    "kafka_answers",
    "main",
    "parse_listeners",
    "pid_alive",
    "read_pid",
    "render_kafka_properties",
    "render_zookeeper_properties",
    "zookeeper_answers",
]
