"""The OpenAPI document: valid OpenAPI 3.1, every page of the app documented, bodies
derived from the code's constants."""

from __future__ import annotations

import base64
import importlib
import json
import pkgutil
import re
from typing import Any

import jsonschema
import pytest
from faust.web import View
from schemathesis.specs.openapi.definitions import OPENAPI_31_VALIDATOR

import streamapp.views
from models.alerts import RULES
from streamapp.app import app
from streamapp.exceptions import BadRequest
from streamapp.openapi import openapi_document
from streamapp.queries import API_MAX_LIMIT, ERROR_KINDS, QUAKE_API_COLUMNS, parse_time
from streamapp.stats import COUNTERS
from streamapp.views.api import REDRIVE_KEYS, parse_redrive_body
from streamapp.views.openapi import openapi_json

METHODS = ("get", "post", "put", "patch", "delete", "head", "options")


def app_pages() -> dict[str, set[str]]:
    """Every ``@app.page`` of streamapp: path -> the HTTP methods its view has."""
    for module in pkgutil.iter_modules(streamapp.views.__path__):
        importlib.import_module(f"streamapp.views.{module.name}")
    pages: dict[str, set[str]] = {}
    for path, view in app.web.views.items():
        cls = view if isinstance(view, type) else type(view)
        if cls.__module__.startswith("streamapp."):
            pages[path] = {
                m for m in METHODS if getattr(cls, m) is not getattr(View, m)
            }
    return pages


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    return openapi_document()


def test_the_document_is_valid_openapi_3_1(doc: dict[str, Any]) -> None:
    assert doc["openapi"].startswith("3.1.")
    errors = [e.message for e in OPENAPI_31_VALIDATOR.iter_errors(doc)]
    assert errors == []
    # Every component schema is a valid JSON Schema (2020-12, OpenAPI 3.1's dialect).
    for schema in doc["components"]["schemas"].values():
        jsonschema.Draft202012Validator.check_schema(schema)


def test_the_validator_rejects_a_broken_document(doc: dict[str, Any]) -> None:
    broken = {**doc, "paths": {"/api/lag": {"get": {"responses": "none"}}}}
    del broken["info"]
    assert len(list(OPENAPI_31_VALIDATOR.iter_errors(broken))) >= 2


def test_every_reference_resolves(doc: dict[str, Any]) -> None:
    refs = re.findall(r'"\$ref": "#/components/schemas/([^"]+)"', json.dumps(doc))
    assert refs
    assert set(refs) <= set(doc["components"]["schemas"])


def test_every_page_of_the_app_is_documented_and_nothing_else(
    doc: dict[str, Any],
) -> None:
    pages = app_pages()
    documented = {
        path: {m for m in item if m in METHODS} for path, item in doc["paths"].items()
    }
    assert documented == pages


def test_operation_ids_are_unique(doc: dict[str, Any]) -> None:
    ids = [op["operationId"] for item in doc["paths"].values() for op in item.values()]
    assert len(ids) == len(set(ids))


def test_bodies_follow_the_code(doc: dict[str, Any]) -> None:
    schemas = doc["components"]["schemas"]
    quake = schemas["Earthquake"]
    assert list(quake["properties"]) == list(QUAKE_API_COLUMNS)
    assert quake["properties"]["magnitude"]["type"] == ["number", "null"]
    assert quake["properties"]["time"] == {"type": "string", "format": "date-time"}
    assert quake["properties"]["tsunami"]["type"] == ["boolean", "null"]
    assert schemas["DeadLetter"]["properties"]["error_kind"]["enum"] == list(
        ERROR_KINDS
    )
    assert list(schemas["RedriveRequest"]["properties"]) == list(REDRIVE_KEYS)
    assert set(COUNTERS) <= set(schemas["Stats"]["required"])
    assert schemas["Alert"]["properties"]["rule"]["enum"] == list(RULES)
    limits = [
        p["schema"]["maximum"]
        for item in doc["paths"].values()
        for op in item.values()
        for p in op.get("parameters", [])
        if p["name"] == "limit"
    ]
    assert limits and set(limits) == {API_MAX_LIMIT}


def test_every_error_status_has_the_error_body(doc: dict[str, Any]) -> None:
    for path, item in doc["paths"].items():
        for method, op in item.items():
            for status, response in op["responses"].items():
                if status in ("400", "401", "403", "404"):
                    schema = response["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/Error"}, (
                        path,
                        method,
                        status,
                    )


def test_redrive_documents_the_bearer_scheme(doc: dict[str, Any]) -> None:
    op = doc["paths"]["/api/dead-letters/redrive"]["post"]
    assert op["security"] == [{"redriveToken": []}]
    assert doc["components"]["securitySchemes"]["redriveToken"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "the worker's REDRIVE_TOKEN",
    }
    assert set(op["responses"]) == {"200", "400", "401", "403", "409", "503"}


def test_the_served_bytes_are_the_document(doc: dict[str, Any]) -> None:
    assert json.loads(openapi_json()) == doc


# Inputs that were 500s: the redrive id was found by the schema-driven fuzz test
# (tests/e2e/test_openapi.py), the time while writing it.
def test_a_time_out_of_range_once_made_utc_is_a_bad_request() -> None:
    for raw in ("0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"):
        with pytest.raises(BadRequest, match="since is out of range"):
            parse_time("since", raw)


def test_a_redrive_id_above_bigint_is_a_bad_request() -> None:
    for ids in ([2**63], [2**64, 1], [0]):
        with pytest.raises(BadRequest, match="positive whole numbers"):
            parse_redrive_body(json.dumps({"ids": ids}).encode())
    selection, _ = parse_redrive_body(b'{"ids": [9223372036854775807]}')
    assert selection.ids == (2**63 - 1,)


def test_an_alert_cursor_with_a_nul_is_a_bad_request() -> None:
    """Found by the fuzz test's chosen requests: PostgreSQL takes no NUL in text."""
    from streamapp.alerts.queries import parse_alert_query

    raw = json.dumps(["2026-12-08T00:00:00Z", "surge:a\x00b"]).encode()
    cursor = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    with pytest.raises(BadRequest, match="cursor is not valid"):
        parse_alert_query({"cursor": cursor})
