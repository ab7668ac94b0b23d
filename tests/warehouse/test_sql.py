"""warehouse.sql: the one place a value becomes SQL text, round-tripped through real DuckDB."""

from __future__ import annotations

import duckdb
import pytest

from retail_pipeline.errors import PipelineError
from retail_pipeline.warehouse.sql import identifier, literal

HOSTILE = [
    "",
    "plain",
    "it's",
    "''",
    "'; drop table t; --",
    "\\",
    "back\\slash\\'",
    "$$",
    "$tag$ body $tag$",
    '"double"',
    "?",
    "$1",
    "%s %(x)s",
    "line\nbreak\r\ttab",
    "\x1b[31mred\x1b[0m",
    "é ü 漢字 🦆 \u202e\u200b",
    "1GB'; copy (select 42) to 'pwn.csv'; --",
]


@pytest.mark.parametrize("value", HOSTILE)
def test_a_literal_reads_back_as_the_value(value: str) -> None:
    with duckdb.connect() as con:
        row = con.execute("select " + literal(value)).fetchone()
    assert row == (value,)


@pytest.mark.parametrize("value", [v for v in HOSTILE if v])
def test_an_identifier_names_exactly_the_value(value: str) -> None:
    with duckdb.connect() as con:
        con.execute(f"create table {identifier(value)} (x integer)")
        con.execute(f"insert into {identifier(value)} values (7)")
        tables = [
            name for (name,) in con.execute("select table_name from duckdb_tables()").fetchall()
        ]
        assert tables == [value]
        assert con.execute(f"select x from {identifier(value)}").fetchall() == [(7,)]


def test_a_crafted_literal_runs_no_second_statement(tmp_path: object) -> None:
    import pathlib

    target = pathlib.Path(str(tmp_path)) / "pwn.csv"
    value = f"x'; copy (select 42) to '{target}'; select '"
    with duckdb.connect() as con:
        assert con.execute("select " + literal(value)).fetchall() == [(value,)]
    assert not target.exists()


def test_snowflake_literals_double_backslashes_too() -> None:
    assert literal("a\\'b") == "'a\\''b'"
    assert literal("a\\'b", "snowflake") == "'a\\\\''b'"
    assert literal("$$", "snowflake") == "'$$'"


@pytest.mark.parametrize("quote", [literal, identifier])
def test_nul_is_refused_not_passed_on(quote: object) -> None:
    assert callable(quote)
    with pytest.raises(PipelineError, match=r"NUL|identifier"):
        quote("a\x00b")


def test_an_empty_identifier_is_refused() -> None:
    with pytest.raises(PipelineError):
        identifier("")
