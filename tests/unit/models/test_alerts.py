"""The alert rules: which events and which hours alert, with stable ids."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import pytest

from models.alerts import RULES, Alert, energy_joules, event_alerts, surge_alert

NOW = datetime(2026, 12, 8, 4, 0, tzinfo=UTC)
HOUR = datetime(2026, 12, 8, 3, 0, tzinfo=UTC)


def quake(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": "us7000abcd",
        "time": "2026-12-08T03:12:00Z",
        "latitude": 35.7,
        "longitude": 139.7,
        "magnitude": 4.0,
        "place": "10 km S of Town",
    }
    return {**base, **fields}


def rules_of(alerts: list[Alert]) -> list[str]:
    return [a.rule for a in alerts]


def test_a_small_event_does_not_alert() -> None:
    assert event_alerts(quake(), min_magnitude=6.0, now=NOW) == []


@pytest.mark.parametrize(
    ("fields", "rules"),
    [
        ({"magnitude": 6.0}, ["magnitude"]),  # the threshold itself alerts
        ({"magnitude": 5.99}, []),
        ({"magnitude": None}, []),
        ({"tsunami": True}, ["tsunami"]),
        ({"tsunami": False}, []),
        ({"alert": "orange"}, ["pager"]),
        ({"alert": "RED"}, ["pager"]),
        ({"alert": "yellow"}, []),
        ({"alert": "green"}, []),
        ({"magnitude": 7.1, "tsunami": True, "alert": "red"}, list(RULES[:3])),
    ],
)
def test_event_rules(fields: dict[str, Any], rules: list[str]) -> None:
    assert rules_of(event_alerts(quake(**fields), min_magnitude=6.0, now=NOW)) == rules


def test_an_event_alert_names_its_event_region_and_reason() -> None:
    (alert,) = event_alerts(quake(magnitude=6.4), min_magnitude=6.0, now=NOW)
    assert alert.id == "magnitude:us7000abcd"
    assert alert.subject == alert.event_id == "us7000abcd"
    assert alert.region == "30N130E"
    assert alert.occurred_at == datetime(2026, 12, 8, 3, 12, tzinfo=UTC)
    assert alert.detected_at == NOW
    assert alert.summary == "M 6.4 - 10 km S of Town (magnitude >= 6)"


def test_a_revision_makes_the_same_id_and_round_trips() -> None:
    first = event_alerts(quake(magnitude=6.1), min_magnitude=6.0, now=NOW)
    revised = event_alerts(quake(magnitude=6.3), min_magnitude=6.0, now=NOW)
    assert [a.id for a in first] == [a.id for a in revised]
    back = Alert.loads(revised[0].dumps())
    assert back == revised[0]


def test_surge_needs_the_factor_and_the_minimum_count() -> None:
    trailing = [1] * 24  # a mean of one event an hour
    assert surge_alert("30N130E", HOUR, 5, trailing, factor=5, min_count=5) is None
    alert = surge_alert("30N130E", HOUR, 6, trailing, factor=5, min_count=5, now=NOW)
    assert alert is not None
    assert alert.id == "surge:30N130E:2026-12-08T03:00:00Z"
    assert (alert.hour_count, alert.trailing_mean, alert.factor) == (6, 1.0, 5)
    quiet = [0] * 24
    assert surge_alert("30N130E", HOUR, 4, quiet, factor=5, min_count=5) is None
    first = surge_alert("30N130E", HOUR, 5, quiet, factor=5, min_count=5, now=NOW)
    assert first is not None and "none in the 24 hours before" in first.summary


def test_surge_mean_is_over_24_hours_with_missing_hours_as_zero() -> None:
    alert = surge_alert("30N130E", HOUR, 13, [48], factor=5, min_count=5, now=NOW)
    assert alert is not None and alert.trailing_mean == 2.0
    assert surge_alert("30N130E", HOUR, 10, [48], factor=5, min_count=5) is None


def test_energy_follows_log10_e_equals_1_5_m_plus_4_8() -> None:
    assert energy_joules(None) == 0.0
    assert math.isclose(math.log10(energy_joules(6.0)), 13.8)
    assert math.isclose(energy_joules(7.0) / energy_joules(6.0), 10**1.5)
