"""How big and how long the chaos scenarios are: the ``ci`` and ``full`` profiles."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tests.support.paths import ROOT

__all__ = ["Profile", "load_profile"]


@dataclass(frozen=True)
class Profile:
    """How big and how long the scenarios are."""

    name: str
    #: Messages streamed per scenario (hostile records come on top in scenario 6).
    events: int
    #: Hostile records of scenario 6.
    hostile: int
    #: Seconds the pipeline may take to drain after the last fault (the producer
    #: included).
    drain_timeout: float
    #: Seconds the tables may take to be complete after the last send. Runs take
    #: under a second; a partition left unassigned for minutes (a topic missing
    #: from the group leader's metadata) must fail, not pass late.
    settle_timeout: float
    #: Where the suite writes its report.
    report_path: Path
    #: Multiplies each scenario's streaming time (the CI profile streams faster).
    time_scale: float = 1.0
    invalid_share: float = 0.05
    revision_share: float = 0.05
    stale_share: float = 0.01


def load_profile(environ: dict[str, str] | None = None) -> Profile:
    """``CHAOS_PROFILE=full`` (make chaos) or ``ci`` (the default, inside make test)."""
    env = os.environ if environ is None else environ
    name = env.get("CHAOS_PROFILE", "ci").strip().lower() or "ci"
    override = env.get("CHAOS_REPORT", "").strip()
    if name == "full":
        path = Path(override) if override else ROOT / "docs" / "reliability.md"
        return Profile(
            "full",
            events=20_000,
            hostile=1_200,
            drain_timeout=900.0,
            settle_timeout=120.0,
            report_path=path,
        )
    if name != "ci":
        raise ValueError(f"CHAOS_PROFILE={name!r}: use full or ci")
    default = Path(tempfile.gettempdir()) / "streamapp-chaos" / "reliability-ci.md"
    return Profile(
        "ci",
        events=3_000,
        hostile=1_000,
        drain_timeout=300.0,
        settle_timeout=60.0,
        report_path=Path(override) if override else default,
        time_scale=0.7,
    )
