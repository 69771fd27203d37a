"""The benchmark driver's pieces without Kafka: profiles, contenders, best-of-K."""

from __future__ import annotations

import pytest

from bench.run import CONTENDERS, PEER_MODULES, REPEATED, best_of, parse_args


def _run(rate: float, cpu: float | None, rss: float, busy: float) -> dict:
    return {
        "events_per_s": rate,
        "cpu_us_per_event": cpu,
        "seconds": 20_000 / rate,
        "startup_seconds": 3.0,
        "resources": {"peak_rss_mib": rss, "machine_busy_cores": busy},
        "logs": [f"{rate}.log"],
    }


def test_best_of_one_run_is_that_run() -> None:
    run = _run(5_000, 120.0, 200, 1.0)
    assert best_of([run]) is run


def test_best_of_takes_the_fastest_run_the_lowest_cpu_the_highest_rss() -> None:
    runs = [
        _run(4_000, 150.0, 210, 1.9),
        _run(5_000, 130.0, 200, 1.2),
        _run(4_500, 125.0, 220, 1.5),
    ]
    best = best_of(runs)
    assert best["events_per_s"] == 5_000
    assert best["logs"] == ["5000.log"]  # the fastest run's row
    assert best["cpu_us_per_event"] == 125.0
    assert best["resources"]["peak_rss_mib"] == 220
    assert [r["events_per_s"] for r in best["repeats"]] == [4_000, 5_000, 4_500]
    assert best["repeats"][0]["machine_busy_cores"] == 1.9
    assert runs[1]["resources"]["peak_rss_mib"] == 200  # inputs left alone


def test_best_of_without_cpu() -> None:
    best = best_of([_run(4_000, None, 1, 1), _run(5_000, None, 1, 1)])
    assert best["cpu_us_per_event"] is None


def test_quick_profile_repeats_the_headline_pair() -> None:
    args = parse_args(["--quick"])
    assert args.profile == "quick" and args.n == 20_000
    assert args.repeat == 4
    assert args.peer_commit_interval == 1.0
    assert args.contenders == ["limits", "naive", "peer", "streamapp"]
    assert set(REPEATED) <= set(args.contenders)
    full = parse_args([])
    assert full.repeat == 1 and full.peer_commit_interval == 1.0
    assert full.contenders == list(CONTENDERS)
    chosen = parse_args(["--quick", "--contenders", "peer-functions,peer"])
    assert chosen.contenders == ["peer-functions", "peer"]
    assert parse_args(["--quick", "--repeat", "1"]).repeat == 1


def test_bad_arguments_are_one_line_errors(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        parse_args(["--contenders", "peer,bogus"])
    assert "unknown contender(s): bogus" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse_args(["--repeat", "-1"])
    assert "--repeat must be at least 1" in capsys.readouterr().err


def test_every_peer_contender_has_a_module() -> None:
    assert PEER_MODULES["peer"] == "bench.peer_quix_idiomatic"
    assert PEER_MODULES["peer-functions"] == "bench.peer_quix"
    assert {c for c in CONTENDERS if c.startswith("peer")} <= set(PEER_MODULES)
