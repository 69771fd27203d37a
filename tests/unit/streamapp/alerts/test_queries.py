"""streamapp.alerts.queries: parameters of /api/alerts and the item's shape."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from multidict import MultiDict

from streamapp.alerts.queries import alert_item, parse_alert_query
from streamapp.exceptions import BadRequest
from streamapp.queries import encode_cursor

T0 = datetime(2026, 12, 8, 3, 0, 0, 123456, tzinfo=UTC)


def test_defaults_and_every_filter() -> None:
    q = parse_alert_query({})
    assert (q.since, q.rule, q.region, q.limit, q.after) == (
        None,
        None,
        None,
        100,
        None,
    )
    cursor = encode_cursor(["2026-12-08T03:00:00.123456Z", "surge:30N130E:x"])
    q = parse_alert_query(
        {
            "since": "2026-12-08",
            "rule": "surge",
            "region": "10S080W",
            "limit": "1000",
            "cursor": cursor,
        }
    )
    assert q.since == datetime(2026, 12, 8, tzinfo=UTC)
    assert (q.rule, q.region, q.limit) == ("surge", "10S080W", 1000)
    assert q.after == (T0, "surge:30N130E:x")


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"rule": "big"}, "rule must be one of: magnitude, tsunami, pager, surge"),
        ({"region": "35N130E"}, "region must be a region cell"),
        ({"region": "30N130"}, "region must be a region cell"),
        ({"limit": "0"}, "limit must be a whole number from 1 to 1000"),
        ({"limit": "-5"}, "limit must be a whole number from 1 to 1000"),
        ({"since": "noon"}, "since must be an ISO-8601"),
        ({"cursor": "xyz"}, "cursor is not valid"),
        ({"cursor": encode_cursor(["2026-12-08"])}, "cursor is not valid"),
        ({"cursor": encode_cursor(["then", "a:b"])}, "cursor is not valid"),
        ({"cursor": encode_cursor(["2026-12-08", ""])}, "cursor is not valid"),
        ({"window": "1h"}, "unknown parameter"),
    ],
)
def test_bad_parameters(params: dict[str, str], message: str) -> None:
    with pytest.raises(BadRequest, match=message):
        parse_alert_query(params)


def test_a_repeated_parameter_is_refused() -> None:
    with pytest.raises(BadRequest, match="more than once"):
        parse_alert_query(MultiDict([("rule", "pager"), ("rule", "surge")]))


def test_the_item_nests_the_delivery() -> None:
    row = {
        "id": "pager:us1",
        "rule": "pager",
        "subject": "us1",
        "region": "30N130E",
        "event_id": "us1",
        "magnitude": 6.4,
        "place": "x",
        "url": None,
        "tsunami": False,
        "pager": "red",
        "hour_count": None,
        "trailing_mean": None,
        "factor": None,
        "summary": "M 6.4 - x (PAGER alert red)",
        "occurred_at": T0,
        "detected_at": T0,
        "stored_at": T0,
        "delivery_status": "failing",
        "attempts": 4,
        "last_error": "HTTP 500",
        "delivered_at": None,
        "next_attempt_at": T0,
    }
    item = alert_item(row)
    assert item["occurred_at"] == "2026-12-08T03:00:00.123456Z"
    assert item["delivery"] == {
        "status": "failing",
        "attempts": 4,
        "last_error": "HTTP 500",
        "delivered_at": None,
        "next_attempt_at": "2026-12-08T03:00:00.123456Z",
    }
    assert "delivery_status" not in item and "attempts" not in item
