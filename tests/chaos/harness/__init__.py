"""Chaos harness: profiles, data, paced producers, topic readers, reconciliation.

* :mod:`.profile`: how big and how long the scenarios are (``CHAOS_PROFILE``).
* :mod:`.data`: the messages a scenario streams and the fate each must meet.
* :mod:`.kafka`: create, read back and delete a run's topics.
* :mod:`.producer`: a paced producer thread that re-sends until delivered.
* :mod:`.db` and :mod:`.progress`: a run's schema, and how far it got when.
* :mod:`.figures` and :mod:`.reconcile`: the measured outcome of a scenario.
* :mod:`.run`: one scenario's isolated namespace, workers and teardown.
* :mod:`.probes`: a worker's counters and memory.
* :mod:`.report`: the figures of the session, written as the reliability report.

Generic helpers (real workers, the feed server, topics, ports) live in
:mod:`tests.support`.
"""

from tests.chaos.harness.data import (
    ChaosData,
    Expect,
    Msg,
    envelope_expect,
    expected_totals,
    make_chaos_data,
    offered,
    profile_data,
)
from tests.chaos.harness.db import Db, sink_transaction_open
from tests.chaos.harness.figures import Figures, fmt_seconds
from tests.chaos.harness.kafka import (
    Rec,
    create_topic,
    delete_topics_with_prefix,
    read_topic,
)
from tests.chaos.harness.probes import handled, rss_kib, wait_handling
from tests.chaos.harness.producer import BackgroundProducer
from tests.chaos.harness.profile import Profile, load_profile
from tests.chaos.harness.progress import Progress
from tests.chaos.harness.reconcile import reconcile
from tests.chaos.harness.report import Report
from tests.chaos.harness.run import ChaosRun, Target, settle

__all__ = [
    "BackgroundProducer",
    "ChaosData",
    "ChaosRun",
    "Db",
    "Expect",
    "Figures",
    "Msg",
    "Profile",
    "Progress",
    "Rec",
    "Report",
    "Target",
    "create_topic",
    "delete_topics_with_prefix",
    "envelope_expect",
    "expected_totals",
    "fmt_seconds",
    "handled",
    "load_profile",
    "make_chaos_data",
    "offered",
    "profile_data",
    "read_topic",
    "reconcile",
    "rss_kib",
    "settle",
    "sink_transaction_open",
    "wait_handling",
]
