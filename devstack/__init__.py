"""The local development stack: ZooKeeper or KRaft, a Kafka broker and PostgreSQL.

Developer tooling, not part of the runtime package (it is neither installed nor in
the image): it assumes a source checkout, with the Kafka jars in ``stack/lib``
(``make jars``). ``python -m devstack up|down|status|purge`` from the repository root,
or ``make up|down|status``.
"""

from __future__ import annotations

from devstack.stack import (
    Listener,
    Stack,
    StackPaths,
    as_postgres_prefix,
    find_pg_bindir,
    kafka_answers,
    main,
    parse_listeners,
    pid_alive,
    read_pid,
    render_kafka_properties,
    render_zookeeper_properties,
)

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
]
