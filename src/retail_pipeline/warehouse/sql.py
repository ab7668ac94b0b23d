"""The one place a value becomes SQL text.

Queries bind their values as parameters. Where SQL text itself must hold a value (DDL, a view,
a setting DuckDB does not take as a parameter), :func:`literal` and :func:`identifier` quote it,
and nothing edits the text afterwards. Both refuse what no quoting makes safe (a NUL) instead
of passing it on.
"""

from __future__ import annotations

import re
from typing import Literal

from retail_pipeline.errors import PipelineError, WarehouseError

Dialect = Literal["duckdb", "snowflake"]
_PLAIN_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_$]{0,254}")


def literal(value: str, dialect: Dialect = "duckdb") -> str:
    """``value`` as a single-quoted SQL string literal of ``dialect``.

    Both dialects double a single quote; Snowflake also reads a backslash as an escape inside
    single quotes, so it is doubled there too.
    """
    if "\x00" in value:
        raise PipelineError("a NUL character cannot be written into SQL text")
    text = value.replace("\\", "\\\\") if dialect == "snowflake" else value
    return "'" + text.replace("'", "''") + "'"


def identifier(name: str) -> str:
    """``name`` as a double-quoted SQL identifier (the same in DuckDB and Snowflake)."""
    if "\x00" in name or not name:
        raise PipelineError(f"not a usable SQL identifier: {name!r}")
    return '"' + name.replace('"', '""') + '"'


def plain_identifier(name: str) -> str:
    """``name``, checked to be a plain (unquoted) Snowflake identifier before SQL text holds
    it: a letter or ``_``, then letters, digits, ``_`` or ``$``."""
    if not _PLAIN_IDENTIFIER.fullmatch(name):
        raise WarehouseError(
            f"Snowflake name {name!r} is not a plain identifier (letters, digits, _ and $)"
        )
    return name
