"""The measured outcome of one scenario: one row (and section) of the report."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Figures", "fmt_seconds"]


@dataclass
class Figures:
    """The measured outcome of one scenario (one row of docs/reliability.md)."""

    scenario: str
    title: str
    profile: str
    events_sent: int = 0
    raw_messages: int = 0
    expected_rows: int = 0
    rows_stored: int = 0
    expected_dead_letters: int = 0
    dead_letters: int = 0
    clean_offsets: int = 0
    dead_letter_offsets: int = 0
    lost: int = 0
    duplicated: int = 0
    redelivered: int = 0
    raw_balanced: bool = False
    time_to_recover: str = "n/a"
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    measured_at: str = ""

    @property
    def ok(self) -> bool:
        """Nothing lost, nothing duplicated, no problem found."""
        return not self.problems and self.lost == 0 and self.duplicated == 0

    def as_dict(self) -> dict[str, Any]:
        """Every field, for the report's JSON block."""
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Figures:
        """The figures of a report's JSON block (unknown keys ignored)."""
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


def fmt_seconds(values: Sequence[float | None]) -> str:
    """``"1.2 s, never, 3.0 s"``: recovery times for a report note."""
    return ", ".join("never" if v is None else f"{v:.1f} s" for v in values)
