"""Unit tests of the API views over HTTP, with the database and Kafka replaced."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import psycopg2
import pytest
import sqlalchemy.exc
from aiohttp.test_utils import TestClient

import streamapp.views.api as api
from streamapp.exceptions import BadRequest
from streamapp.lag import LagReport, PartitionLag
from streamapp.queries import Page, RedriveSelection
from streamapp.redrive import RedriveResult
from streamapp.settings import Secret

Client = TestClient[Any, Any]


@pytest.fixture
def db(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Replace the blocking query runner: records calls, answers from ``answers``."""
    state: dict[str, Any] = {"calls": [], "answer": Page(), "error": None}

    def fake_read(fn: Any, *args: Any) -> Any:
        state["calls"].append((fn.__name__, args))
        if state["error"] is not None:
            raise state["error"]
        return state["answer"]

    monkeypatch.setattr(api, "read_db", fake_read)
    return state


@pytest.fixture
def token(monkeypatch: pytest.MonkeyPatch) -> str:
    value = "s3cret-token"
    patched = dataclasses.replace(api.settings, redrive_token=Secret(value))
    monkeypatch.setattr(api, "settings", patched)
    return value


async def test_earthquakes_page(client: Client, db: dict[str, Any]) -> None:
    db["answer"] = Page(items=[{"id": "ak1", "magnitude": 1.2}], next_cursor="abc")
    resp = await client.get("/api/earthquakes?min_magnitude=1&limit=1")
    assert resp.status == 200
    body = await resp.json()
    assert body == {
        "items": [{"id": "ak1", "magnitude": 1.2}],
        "count": 1,
        "next_cursor": "abc",
    }
    name, (query,) = db["calls"][0]
    assert name == "list_earthquakes" and query.limit == 1 and query.min_magnitude == 1


@pytest.mark.parametrize(
    "query",
    [
        "limit=100000",
        "limit=abc",
        "since=not-a-date",
        "bbox=1,2",
        "min_magnitude=1%27%20OR%201%3D1",
        "since=2014-01-01%27;DROP%20TABLE%20earthquakes;--",
        "nope=1",
    ],
)
async def test_bad_parameters_are_400_json(
    client: Client, db: dict[str, Any], query: str
) -> None:
    resp = await client.get(f"/api/earthquakes?{query}")
    assert resp.status == 400
    assert resp.content_type == "application/json"
    body = await resp.json()
    assert body["status"] == 400 and body["error"]
    assert "Traceback" not in body["error"]
    assert db["calls"] == []  # nothing reached the database


async def test_unknown_earthquake_is_404(client: Client, db: dict[str, Any]) -> None:
    db["answer"] = None
    resp = await client.get("/api/earthquakes/ak0000000")
    assert resp.status == 404
    assert "ak0000000" in (await resp.json())["error"]


async def test_malformed_event_id_is_400(client: Client, db: dict[str, Any]) -> None:
    resp = await client.get("/api/earthquakes/1'%20OR%20'1'='1")
    assert resp.status == 400
    assert db["calls"] == []


async def test_earthquake_found(client: Client, db: dict[str, Any]) -> None:
    db["answer"] = json.dumps({"id": "ak1", "place": "Alaska"})
    resp = await client.get("/api/earthquakes/ak1")
    assert resp.status == 200 and (await resp.json())["place"] == "Alaska"


async def test_database_down_is_503_without_secrets(
    client: Client, db: dict[str, Any]
) -> None:
    password = api.settings.postgres_password.get_secret_value()
    orig = psycopg2.OperationalError(f"connection failed for password={password}")
    db["error"] = sqlalchemy.exc.OperationalError("SELECT 1", {}, orig)
    resp = await client.get("/api/dead-letters")
    assert resp.status == 503
    text = await resp.text()
    assert "unavailable" in text and password not in text and "SELECT" not in text


async def test_unexpected_error_is_500_without_trace(
    client: Client, db: dict[str, Any]
) -> None:
    db["error"] = RuntimeError("boom at /secret/path")
    resp = await client.get("/api/earthquakes")
    assert resp.status == 500
    text = await resp.text()
    assert "boom" not in text and "Traceback" not in text
    assert (await resp.json())["error"].startswith("internal error")


async def test_dead_letters_filter(client: Client, db: dict[str, Any]) -> None:
    resp = await client.get("/api/dead-letters?kind=not_json&redriven=false")
    assert resp.status == 200
    _, (query,) = db["calls"][0]
    assert query.kind == "not_json" and query.redriven is False
    resp = await client.get("/api/dead-letters?kind=bogus")
    assert resp.status == 400 and "kind must be one of" in (await resp.json())["error"]


async def test_lag(client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    report = LagReport(
        group="g",
        partitions=[
            PartitionLag("raw", 0, 0, 10, 4),
            PartitionLag("raw", 1, 0, 5, None),
        ],
    )

    class Reader:
        async def report(self) -> LagReport:
            return report

    monkeypatch.setattr(api, "lag_reader", lambda settings: Reader())
    body = await (await client.get("/api/lag")).json()
    assert body["total_lag"] == 11
    assert body["topics"]["raw"]["partitions"][1] == {
        "partition": 1,
        "end_offset": 5,
        "committed_offset": None,
        "lag": 5,
    }


# ------------------------------------------------------------------ redrive
async def test_redrive_disabled_without_token(client: Client) -> None:
    assert not api.settings.redrive_token
    resp = await client.post("/api/dead-letters/redrive", json={"kind": "schema"})
    assert resp.status == 403
    assert "disabled" in (await resp.json())["error"]


@pytest.mark.parametrize(
    "header", [None, "Bearer wrong", "Basic czNjcmV0LXRva2Vu", "Bearer "]
)
async def test_redrive_needs_the_token(
    client: Client, token: str, header: str | None
) -> None:
    headers = {"Authorization": header} if header is not None else {}
    resp = await client.post(
        "/api/dead-letters/redrive", json={"kind": "schema"}, headers=headers
    )
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    assert token not in await resp.text()


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[1, 2]",
        b"{}",
        json.dumps({"kind": "bogus"}).encode(),
        json.dumps({"ids": ["1"]}).encode(),
        json.dumps({"ids": [1], "dry_run": "yes"}).encode(),
        json.dumps({"kind": "schema", "extra": 1}).encode(),
        json.dumps({"since": "last tuesday"}).encode(),
    ],
)
async def test_redrive_bad_body_is_400(client: Client, token: str, body: bytes) -> None:
    resp = await client.post(
        "/api/dead-letters/redrive",
        data=body,
        headers={
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json",
        },
    )
    assert resp.status == 400, await resp.text()


async def test_redrive_runs_and_refuses_repeats(
    client: Client, token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[RedriveSelection, bool]] = []
    outcome: dict[str, Any] = {"redriven": [5]}

    async def fake_redrive(
        engine: Any, settings: Any, selection: RedriveSelection, *, dry_run: bool
    ) -> RedriveResult:
        calls.append((selection, dry_run))
        result = RedriveResult(dry_run=dry_run, selection=selection.as_dict())
        result.redriven = list(outcome["redriven"])
        if not result.redriven:
            result.already_redriven = {5: "2026-01-01T00:00:00Z"}
        return result

    monkeypatch.setattr(api, "redrive", fake_redrive)
    monkeypatch.setattr(api, "get_engine", lambda settings: object())
    auth = {"Authorization": f"Bearer {token}"}
    resp = await client.post(
        "/api/dead-letters/redrive", json={"ids": [5, 5]}, headers=auth
    )
    assert resp.status == 200
    assert (await resp.json())["redriven"] == [5]
    assert calls[0][0].ids == (5,) and calls[0][1] is False
    outcome["redriven"] = []
    resp = await client.post(
        "/api/dead-letters/redrive", json={"ids": [5]}, headers=auth
    )
    assert resp.status == 409
    body = await resp.json()
    assert body["already_redriven"] == {"5": "2026-01-01T00:00:00Z"}


async def test_redrive_send_failure_is_503(
    client: Client, token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def failing(*args: Any, **kwargs: Any) -> RedriveResult:
        raise TimeoutError("broker gone")

    monkeypatch.setattr(api, "redrive", failing)
    monkeypatch.setattr(api, "get_engine", lambda settings: object())
    resp = await client.post(
        "/api/dead-letters/redrive",
        json={"kind": "schema"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert resp.status == 503
    assert "nothing was marked" in (await resp.json())["error"]


def test_parse_redrive_body() -> None:
    selection, dry_run = api.parse_redrive_body(
        b'{"kind": "schema", "since": "2014-04-14", "dry_run": true}'
    )
    assert selection.kind == "schema" and dry_run is True
    with pytest.raises(BadRequest, match="too large"):
        api.parse_redrive_body(b" " * (api.MAX_REDRIVE_BODY + 1))


def test_check_bearer_is_constant_time_compare() -> None:
    settings = dataclasses.replace(api.settings, redrive_token=Secret("abc"))
    assert api.check_bearer("Bearer abc", settings) is None
    assert api.check_bearer("bearer abc", settings) is None
    assert api.check_bearer("Bearer abd", settings) == "invalid token"
    assert "missing" in (api.check_bearer(None, settings) or "")
