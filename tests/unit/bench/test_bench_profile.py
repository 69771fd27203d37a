"""The py-spy summary of the benchmark: shares per function and per category."""

from __future__ import annotations

from pathlib import Path

from bench.profile import categorise, summarise_folded


def test_categorise_uses_the_innermost_matching_frame() -> None:
    stack = [
        "validate_quakes (agents/validate.py)",
        "validate_raw (models/validation.py)",
        "loads (json/__init__.py)",
    ]
    assert categorise(stack) == "JSON decode/encode"
    assert categorise(stack[:2]) == "validation (models.validation, marshmallow)"
    assert categorise(["main (x.py)"]) == "other"


def test_summarise_folded(tmp_path: Path) -> None:
    folded = tmp_path / "p.folded"
    folded.write_text(
        "run (a.py);validate_raw (models/validation.py) 30\n"
        "run (a.py);_copy_merge (streamapp/sinks/earthquakes.py) 10\n"
        "not a sample line\n"
    )
    s = summarise_folded(folded)
    assert s["samples"] == 40
    assert s["self"][0] == ("validate_raw (models/validation.py)", 75.0)
    assert ("run (a.py)", 100.0) in s["inclusive"]
    cats = dict(s["categories"])
    assert cats["validation (models.validation, marshmallow)"] == 75.0
    assert cats["PostgreSQL (psycopg2, sink, SQLAlchemy)"] == 25.0
