"""SQL of the sink connectors: built from identifiers and placeholders only."""

from __future__ import annotations

from typing import Any

import pytest
from psycopg2 import sql

from streamapp.settings import Settings
from streamapp.sinks import (
    DEAD_LETTER_TABLE_COLUMNS,
    QUAKE_TABLE_COLUMNS,
    build_dead_letter_insert,
    build_quake_copy,
    build_quake_upsert,
)

# ------------------------------------------------------------------ SQL composition


def _pieces(composable: sql.Composable) -> list[sql.Composable]:
    if isinstance(composable, sql.Composed):
        out: list[sql.Composable] = []
        for part in composable.seq:
            out.extend(_pieces(part))
        return out
    return [composable]


HOSTILE = 'evil"; DROP TABLE earthquakes; --'


@pytest.mark.parametrize(
    ("build", "names_the_table"),
    [
        (build_quake_upsert, True),
        (build_dead_letter_insert, True),
        (lambda s: build_quake_copy(s)[0], True),  # CREATE TEMP TABLE ... AS
        (lambda s: build_quake_copy(s)[1], False),  # COPY into the temp table
        (lambda s: build_quake_copy(s)[2], True),  # INSERT ... SELECT ... ON CONFLICT
    ],
)
def test_sql_is_built_from_identifiers_only(build: Any, names_the_table: bool) -> None:
    # Settings() bypasses validation on purpose: even a hostile schema name is data
    # that only ever travels inside an Identifier.
    settings = Settings(postgres_schema=HOSTILE)
    statement = build(settings)
    pieces = _pieces(statement)
    assert all(isinstance(p, sql.SQL | sql.Identifier) for p in pieces), pieces
    literals = "".join(p.string for p in pieces if isinstance(p, sql.SQL))
    assert HOSTILE not in literals
    assert '"' not in literals  # no hand-made quoting anywhere
    identifiers = [p.strings for p in pieces if isinstance(p, sql.Identifier)]
    assert any(HOSTILE in strings for strings in identifiers) is names_the_table


def test_upsert_updates_only_when_newer(settings: Settings) -> None:
    pieces = _pieces(build_quake_upsert(settings))
    literals = " ".join(p.string for p in pieces if isinstance(p, sql.SQL))
    assert "ON CONFLICT" in literals
    assert "DO UPDATE SET" in literals
    assert "WHERE EXCLUDED." in literals
    assert " > " in literals
    assert literals.count("%s") == 1  # the VALUES placeholder of execute_values
    names = [p.strings for p in pieces if isinstance(p, sql.Identifier)]
    assert ("unit_sink", "earthquakes") in names
    for column in QUAKE_TABLE_COLUMNS:
        assert (column,) in names


def test_dead_letter_insert_ignores_replays(settings: Settings) -> None:
    pieces = _pieces(build_dead_letter_insert(settings))
    literals = " ".join(p.string for p in pieces if isinstance(p, sql.SQL))
    assert "DO NOTHING" in literals
    names = [p.strings for p in pieces if isinstance(p, sql.Identifier)]
    for column in DEAD_LETTER_TABLE_COLUMNS:
        assert (column,) in names
