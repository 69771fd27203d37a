"""The benchmark report: ratios, percentiles, targets and the markdown table."""

from __future__ import annotations

from pathlib import Path

from bench.latency import percentiles
from bench.report import (
    BEGIN,
    END,
    cpu_per_event,
    headline,
    markdown_table,
    peer_ratios,
    ratio,
    targets,
    write_docs,
)


def _results(
    app: float = 30_000.0,
    p99: float = 0.5,
    rss: float = 200.0,
    app_cpu: float = 1.5,
) -> dict:
    return {
        "profile": "quick",
        "started_at": "2024-06-01T00:00:00+00:00",
        "command": "python -m bench.run --quick",
        "machine": {"cpu": "x", "cores": 2},
        "config": {"workers": 1, "latency_rate": 2000, "latency_seconds": 10},
        "dataset": {"n": 1000, "invalid": 20, "valid_ids": 980},
        "contenders": {
            "streamapp": {
                "events_per_s": app,
                "seconds": 1.0,
                "resources": {"peak_rss_mib": rss, "cpu_seconds": app_cpu},
            },
            "naive": {"events_per_s": 1_000.0, "seconds": 30.0, "resources": {}},
            "peer": {
                "events_per_s": 20_000.0,
                "seconds": 1.5,
                "cpu_us_per_event": 2_500.0,
                "resources": {"cpu_seconds": 2.4},
                "repeats": [
                    {"events_per_s": 20_000.0, "cpu_us_per_event": 2_500.0},
                    {"events_per_s": 15_000.0, "cpu_us_per_event": 2_600.0},
                ],
            },
            "peer-functions": {
                "events_per_s": 10_000.0,
                "seconds": 3.0,
                "resources": {"cpu_seconds": 4.0},
            },
        },
        "limits": {
            "consume_only": {"events_per_s": 100_000.0, "seconds": 0.3},
            "copy": {"events_per_s": 50_000.0, "seconds": 0.6},
        },
        "latency": {
            "streamapp": {
                "committed": {"p50": 0.2, "p95": 0.4, "p99": p99, "max": 0.9, "n": 9},
                "written": {"p99": p99 - 0.01},
                "resources": {"peak_rss_mib": rss},
            }
        },
    }


def test_ratio() -> None:
    assert ratio(30, 10) == 3.0
    assert ratio(1, 3) == 0.33
    assert ratio(None, 1) is None
    assert ratio(1, 0) is None


def test_percentiles_nearest_rank() -> None:
    values = [float(i) for i in range(1, 101)]
    p = percentiles(values)
    assert (p["p50"], p["p95"], p["p99"], p["max"]) == (50.0, 95.0, 99.0, 100.0)
    assert p["mean"] == 50.5
    assert p["n"] == 100
    assert percentiles([]) == {}
    assert percentiles([0.3])["p99"] == 0.3


def test_targets_met_and_missed() -> None:
    met = {name: ok for name, _, _, ok in targets(_results())}
    assert all(met.values()), met
    missed = {
        name: ok
        for name, _, _, ok in targets(
            _results(app=5_000, p99=2.0, rss=400, app_cpu=2.5)
        )
    }
    assert not any(missed.values()), missed


def test_targets_name_the_issue_targets() -> None:
    rows = {
        name: (required, measured)
        for name, required, measured, _ in targets(_results())
    }
    assert rows["streamapp vs peer, events/s (1 worker)"] == (">= 1.2x", "1.50x")
    assert rows["streamapp vs peer, CPU per event"] == ("<= 0.8x", "0.60x")
    assert rows["streamapp vs naive"] == (">= 10x", "30.00x")
    assert rows["p99 latency at 2,000/s"] == ("<= 1 s", "0.500 s")
    assert rows["worker peak RSS"] == ("<= 300 MiB", "200 MiB")
    assert len(rows) == 5


def test_cpu_per_event_from_the_result_or_the_window_cpu() -> None:
    results = _results()
    assert cpu_per_event(results, "peer") == 2_500.0  # stored (best of the runs)
    assert cpu_per_event(results, "streamapp") == 1_500.0  # 1.5 s / 1000 events
    assert cpu_per_event(results, "naive") is None  # no window CPU
    assert cpu_per_event(results, "absent") is None


def test_headline_has_both_ratios() -> None:
    line = headline(_results())
    assert "1.50x events/s" in line and "0.60x CPU per event" in line


def test_targets_unknown_without_results() -> None:
    assert all(ok is None for *_, ok in targets({}))


def test_markdown_table_has_ratios() -> None:
    text = markdown_table(_results())
    assert "| streamapp (Faust worker) | 30,000 |" in text
    assert "30.00x" in text  # vs naive
    assert "1.50x" in text  # vs peer
    assert "| 1,500.0 | 0.60x |" in text  # CPU per event, vs the peer's
    assert "| peer: Quix Streams on streamapp's functions | 10,000 |" in text
    assert "| 4,000.0 | 1.60x |" in text
    assert "30.0 %" in text  # of consume-only
    assert "| 0.500 |" in text  # p99
    assert "peer: best of 2 interleaved runs" in text
    assert "events/s 15,000 to 20,000, CPU µs/event 2,500.0 to 2,600.0" in text


def test_markdown_table_rows_have_as_many_cells_as_the_header() -> None:
    results = _results()
    results["limits"].update(
        {
            "faust_consume_only": {"events_per_s": 9_000.0, "n": 1000},
            "python_only": {"validate_per_s": 14_000.0, "validate_us_per_msg": 69.1},
        }
    )
    lines = markdown_table(results).splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| contender"))
    table = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        table.append(line)
    widths = {line.count("|") for line in table}
    assert len(table) >= 8 and len(widths) == 1, table


def test_write_docs_replaces_only_the_generated_block(tmp_path: Path) -> None:
    doc = tmp_path / "benchmarks.md"
    doc.write_text(f"# Benchmarks\n\nintro\n\n{BEGIN}\nold\n{END}\n\nafter\n")
    write_docs(_results(), doc=doc, png=tmp_path / "b.png")
    text = doc.read_text()
    assert "intro" in text and "after" in text and "old" not in text
    assert text.count(BEGIN) == 1
    assert (tmp_path / "b.png").stat().st_size > 1000


def test_peer_ratios_median_of_interleaved_pairs() -> None:
    results = _results()
    results["contenders"]["streamapp"]["repeats"] = [
        {"events_per_s": 30_000.0, "cpu_us_per_event": 1_500.0},
        {"events_per_s": 12_000.0, "cpu_us_per_event": 2_080.0},
    ]
    paired = peer_ratios(results)
    # pairs: 30,000/20,000 = 1.5x and 12,000/15,000 = 0.8x; CPU 0.6x and 0.8x
    assert paired["method"] == "median of 2 pairs"
    assert paired["events_per_s"] == 1.15 and paired["cpu_per_event"] == 0.7
    assert [p["events_per_s"] for p in paired["pairs"]] == [1.5, 0.8]
    rows = {name: measured for name, _, measured, _ in targets(results)}
    assert rows["streamapp vs peer, events/s (1 worker)"] == "1.15x"
    assert rows["streamapp vs peer, CPU per event"] == "0.70x"
    assert "median of 2 pairs" in headline(results)
    assert "1.50x / 0.60x; 0.80x / 0.80x" in headline(results)


def test_peer_ratios_of_single_runs() -> None:
    paired = peer_ratios(_results())
    assert paired["method"] == "one run each" and paired["pairs"] == []
    assert (paired["events_per_s"], paired["cpu_per_event"]) == (1.5, 0.6)
    assert peer_ratios({})["events_per_s"] is None
