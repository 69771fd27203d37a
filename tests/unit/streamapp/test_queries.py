"""Unit tests of streamapp.queries: parameter parsing, SQL building, cursors."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from multidict import MultiDict

from streamapp.exceptions import BadRequest
from streamapp.queries import (
    API_DEFAULT_LIMIT,
    API_MAX_LIMIT,
    ERROR_KINDS,
    DeadLetterQuery,
    QuakeQuery,
    RedriveSelection,
    claim_dead_letters,
    decode_cursor,
    encode_cursor,
    get_earthquake,
    jsonable,
    list_dead_letters,
    list_earthquakes,
    parse_dead_letter_query,
    parse_event_id,
    parse_quake_query,
    parse_time,
    preview_redrive,
)


class FakeResult:
    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.rows = rows

    def mappings(self) -> FakeResult:
        return self

    def all(self) -> list[dict[str, Any]]:
        return self.rows

    def first(self) -> dict[str, Any] | None:
        return self.rows[0] if self.rows else None


class FakeConnection:
    """Records the SQL text and the bound parameters of every statement."""

    def __init__(self, rows: list[dict[str, Any]] | None = None) -> None:
        self.rows = rows or []
        self.statements: list[tuple[str, dict[str, Any]]] = []

    def execute(self, statement: Any, params: dict[str, Any]) -> FakeResult:
        self.statements.append((str(statement), dict(params)))
        limit = params.get("limit")
        rows = self.rows[:limit] if isinstance(limit, int) else self.rows
        return FakeResult(rows)


def quake_row(i: int, time: datetime) -> dict[str, Any]:
    """A row as the list query returns it: sort key plus the JSON built by SQL."""
    doc = {"id": f"ev{i:04d}", "time": jsonable(time), "magnitude": 1.5}
    return {"time": time, "id": f"ev{i:04d}", "doc": json.dumps(doc)}


# ------------------------------------------------------------------ parsing
def test_defaults() -> None:
    q = parse_quake_query({})
    assert q == QuakeQuery(limit=API_DEFAULT_LIMIT)
    assert parse_dead_letter_query({}) == DeadLetterQuery(limit=API_DEFAULT_LIMIT)


def test_full_quake_query() -> None:
    q = parse_quake_query(
        {
            "since": "2014-04-14T00:00:00Z",
            "until": "2014-04-15",
            "min_magnitude": "2.5",
            "max_magnitude": "7",
            "bbox": "-125,32,-114,42",
            "limit": "10",
        }
    )
    assert q.since == datetime(2014, 4, 14, tzinfo=UTC)
    assert q.until == datetime(2014, 4, 15, tzinfo=UTC)
    assert q.min_magnitude == 2.5 and q.max_magnitude == 7
    assert q.bbox == (-125, 32, -114, 42)
    assert q.limit == 10


def test_time_with_offset_is_converted_to_utc() -> None:
    assert parse_time("since", "2014-04-14T02:00:00+02:00") == datetime(
        2014, 4, 14, tzinfo=UTC
    )


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"limit": "0"}, "limit"),
        ({"limit": str(API_MAX_LIMIT + 1)}, "limit"),
        ({"limit": "-1"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"limit": "1e3"}, "limit"),
        ({"since": "yesterday"}, "since"),
        ({"since": "2014-13-01"}, "since"),
        ({"since": "2014-04-15", "until": "2014-04-14"}, "since"),
        ({"min_magnitude": "big"}, "min_magnitude"),
        ({"min_magnitude": "nan"}, "min_magnitude"),
        ({"min_magnitude": "inf"}, "min_magnitude"),
        ({"min_magnitude": "99"}, "min_magnitude"),
        ({"min_magnitude": "5", "max_magnitude": "4"}, "min_magnitude"),
        ({"bbox": "1,2,3"}, "bbox"),
        ({"bbox": "0,10,10,0"}, "min_lat"),
        ({"bbox": "-200,0,10,10"}, "min_lon"),
        ({"bbox": "a,b,c,d"}, "bbox"),
        ({"cursor": "not-a-cursor"}, "cursor"),
        ({"cursor": "W10"}, "cursor"),  # base64 of [] : valid JSON, wrong shape
        ({"magnitude": "3"}, "unknown parameter"),
        ({"since": "x" * 500}, "too long"),
        ({"since": "2014-04-14\x00"}, "NUL"),
    ],
)
def test_bad_quake_params(params: dict[str, str], message: str) -> None:
    with pytest.raises(BadRequest, match=message):
        parse_quake_query(params)


def test_repeated_parameter_is_refused() -> None:
    with pytest.raises(BadRequest, match="more than once"):
        parse_quake_query(MultiDict([("limit", "1"), ("limit", "2")]))


def test_bbox_across_the_antimeridian_is_allowed() -> None:
    assert parse_quake_query({"bbox": "170,-60,-170,-10"}).bbox == (170, -60, -170, -10)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"kind": "nonsense"}, "kind"),
        ({"kind": "schema' OR 1=1 --"}, "kind"),
        ({"redriven": "maybe"}, "redriven"),
        ({"cursor": encode_cursor(["x"])}, "cursor"),
        ({"cursor": encode_cursor([0])}, "cursor"),
        ({"id": "1"}, "unknown parameter"),
    ],
)
def test_bad_dead_letter_params(params: dict[str, str], message: str) -> None:
    with pytest.raises(BadRequest, match=message):
        parse_dead_letter_query(params)


def test_dead_letter_query() -> None:
    q = parse_dead_letter_query(
        {
            "kind": "schema",
            "redriven": "false",
            "limit": "5",
            "cursor": encode_cursor([42]),
        }
    )
    assert q == DeadLetterQuery(kind="schema", redriven=False, limit=5, before_id=42)


@pytest.mark.parametrize(
    "good", ["ak0144m5b4r6", "us10004u1y", "nc72212501", "a.b:c-d_e"]
)
def test_event_ids(good: str) -> None:
    assert parse_event_id(good) == good


@pytest.mark.parametrize("bad", ["", "x" * 129, "1' OR '1'='1", "a b", "../etc", "é"])
def test_bad_event_ids(bad: str) -> None:
    with pytest.raises(BadRequest):
        parse_event_id(bad)


def test_cursor_roundtrip() -> None:
    values = ["2014-04-14T23:59:01.123000Z", "ak0144m5b4r6"]
    assert decode_cursor(encode_cursor(values)) == values


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(
            [
                "since",
                "until",
                "min_magnitude",
                "max_magnitude",
                "bbox",
                "limit",
                "cursor",
            ]
        ),
        st.text(max_size=60),
    )
)
def test_any_input_parses_or_is_a_bad_request(params: dict[str, str]) -> None:
    try:
        q = parse_quake_query(params)
    except BadRequest as exc:
        assert str(exc)
        return
    conn = FakeConnection()
    list_earthquakes(conn, "public", q)
    sql, bound = conn.statements[0]
    for value in params.values():
        if len(value) > 3:
            assert value not in sql  # never interpolated, always bound
    assert bound["limit"] == q.limit + 1


# ----------------------------------------------------------------------- SQL
def test_a_hostile_schema_never_reaches_the_sql() -> None:
    with pytest.raises(ValueError, match="identifier"):
        list_earthquakes(FakeConnection(), 'x"; DROP TABLE y; --', QuakeQuery())


def test_list_earthquakes_sql_and_next_cursor() -> None:
    t0 = datetime(2014, 4, 14, 12, tzinfo=UTC)
    rows = [quake_row(i, t0.replace(minute=59 - i)) for i in range(3)]
    conn = FakeConnection(rows)
    q = parse_quake_query(
        {"min_magnitude": "1", "bbox": "170,-60,-170,-10", "limit": "2"}
    )
    page = list_earthquakes(conn, "myschema", q)
    sql, params = conn.statements[0]
    assert 'FROM "myschema"."earthquakes"' in sql
    assert "json_build_object('id', id, 'time', to_char(time AT TIME ZONE 'UTC'" in sql
    assert "ORDER BY time DESC, id DESC" in sql
    assert "(longitude >= :min_lon OR longitude <= :max_lon)" in sql
    assert params["min_mag"] == 1 and params["limit"] == 3
    items = page.as_dict()["items"]
    assert [item["id"] for item in items] == ["ev0000", "ev0001"]
    assert items[0]["time"] == "2014-04-14T12:59:00Z"
    assert json.loads(page.to_json()) == page.as_dict()
    assert page.next_cursor is not None
    follow = parse_quake_query({"cursor": page.next_cursor})
    assert follow.after == (t0.replace(minute=58), "ev0001")
    list_earthquakes(conn, "myschema", follow)
    sql2, params2 = conn.statements[1]
    assert "(time, id) < (:after_time, :after_id)" in sql2
    assert params2["after_id"] == "ev0001"


def test_last_page_has_no_cursor() -> None:
    conn = FakeConnection([quake_row(0, datetime(2014, 4, 14, tzinfo=UTC))])
    page = list_earthquakes(conn, "public", QuakeQuery(limit=5))
    assert page.next_cursor is None and page.as_dict()["count"] == 1


def test_get_earthquake_binds_the_id() -> None:
    conn = FakeConnection([])
    assert get_earthquake(conn, "public", "ak1") is None
    sql, params = conn.statements[0]
    assert "WHERE id = :id" in sql and params == {"id": "ak1"}


def test_list_dead_letters() -> None:
    row = {
        "id": 7,
        "source_topic": "raw",
        "source_partition": 1,
        "source_offset": 9,
        "key": memoryview(b"ev1"),
        "error_kind": "not_json",
        "error_message": "not JSON",
        "error_detail": {"pos": 0},
        "failed_at": datetime(2014, 4, 14, tzinfo=UTC),
        "stored_at": datetime(2014, 4, 14, tzinfo=UTC),
        "redriven_at": None,
        "payload_size": 4,
        "payload_preview": memoryview(b"\xffab"),
    }
    conn = FakeConnection([row, {**row, "id": 6}])
    page = list_dead_letters(conn, "s1", DeadLetterQuery(kind="not_json", limit=1))
    assert json.loads(page.to_json())["items"][0]["id"] == 7
    sql, params = conn.statements[0]
    assert 'FROM "s1"."dead_letters"' in sql and "error_kind = :kind" in sql
    assert params["kind"] == "not_json"
    item = page.items[0]
    assert item["key"] == "ev1" and item["payload_preview"] == "\ufffdab"
    assert item["payload_size"] == 4 and item["failed_at"] == "2014-04-14T00:00:00Z"
    assert decode_cursor(page.next_cursor or "") == [7]


# ------------------------------------------------------------------ redrive
def test_redrive_selection_needs_a_filter() -> None:
    with pytest.raises(BadRequest, match="select"):
        RedriveSelection()
    with pytest.raises(BadRequest, match="kind"):
        RedriveSelection(kind="bogus")
    with pytest.raises(BadRequest, match="ids"):
        RedriveSelection(ids=(0,))
    assert RedriveSelection(kind="schema").as_dict()["kind"] == "schema"
    assert set(ERROR_KINDS) >= {"schema", "sink_rejected"}


def test_claim_is_one_guarded_update() -> None:
    conn = FakeConnection(
        [
            {
                "id": 3,
                "source_topic": "raw",
                "error_kind": "schema",
                "key": None,
                "payload": memoryview(b"{}"),
            },
            {
                "id": 2,
                "source_topic": "raw",
                "error_kind": "schema",
                "key": b"k",
                "payload": b"[]",
            },
        ]
    )
    sel = RedriveSelection(kind="schema", ids=(2, 3))
    letters = claim_dead_letters(conn, "s1", sel)
    sql, params = conn.statements[0]
    assert sql.startswith('UPDATE "s1"."dead_letters" SET redriven_at = now()')
    assert "redriven_at IS NULL" in sql and "FOR UPDATE SKIP LOCKED" in sql
    assert "RETURNING" in sql and "id = ANY(:ids)" in sql
    assert "'truncated'" in sql  # partially kept payloads are never sent
    assert params["ids"] == [2, 3] and params["kind"] == "schema"
    assert [(x.id, x.key, x.payload) for x in letters] == [
        (2, b"k", b"[]"),
        (3, None, b"{}"),
    ]


def test_preview_changes_nothing() -> None:
    conn = FakeConnection([])
    preview_redrive(
        conn, "s1", RedriveSelection(since=datetime(2014, 1, 1, tzinfo=UTC))
    )
    sql, params = conn.statements[0]
    assert sql.startswith("SELECT") and "UPDATE" not in sql
    assert params["since"] == datetime(2014, 1, 1, tzinfo=UTC)


def test_jsonable() -> None:
    naive = datetime(2014, 4, 14, 1, 2, 3)
    assert jsonable(naive) == "2014-04-14T01:02:03Z"
    assert jsonable(b"\xff") == "\ufffd"
    assert jsonable(None) is None
