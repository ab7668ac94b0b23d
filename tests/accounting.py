"""What a loader owes: every non-blank line of its inputs in Bronze or the dead-letter table,
once, and every run recorded in ``bronze._loads`` with exactly the rows it wrote.

Shared by the tests that stop loaders half way (crashes, Ctrl-C, a full disk) and by the
warehouse conformance suite, on DuckDB files and on any ``Warehouse`` alike.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import duckdb

from retail_pipeline.warehouse import Warehouse

EVENT_TABLES = ("order_events", "payment_events", "shipment_events")


def message_lines(paths: Iterable[Path]) -> int:
    """Messages in NDJSON files: their non-blank lines."""
    return sum(1 for path in paths for line in path.read_bytes().split(b"\n") if line.strip())


def _rows(where: Warehouse | duckdb.DuckDBPyConnection | Path, sql: str) -> list[tuple[Any, ...]]:
    if isinstance(where, Path):
        with duckdb.connect(str(where), read_only=True) as con:
            return con.execute(sql).fetchall()
    if isinstance(where, duckdb.DuckDBPyConnection):
        return where.execute(sql).fetchall()
    return where.query(sql)


def stored_messages(where: Warehouse | duckdb.DuckDBPyConnection | Path) -> int:
    """Event rows plus dead letters in Bronze (a redriven dead letter is an event row now)."""
    counts = " + ".join(f"(select count(*) from bronze.{t})" for t in EVENT_TABLES)
    counts += " + (select count(*) from bronze.dead_letter where redriven_at is null)"
    [(total,)] = _rows(where, f"select {counts}")
    return int(total)


def unaccounted_rows(
    where: Warehouse | duckdb.DuckDBPyConnection | Path,
) -> list[tuple[Any, ...]]:
    """Loader runs (events and reference data) whose ``bronze._loads`` record differs from the
    Bronze rows under their load id, or Bronze rows of a run with no record: (load_id, recorded
    loaded, stored, recorded dead letters, stored). Empty when every run, a killed one too, is
    recorded with exactly what it wrote."""
    stored = " union all ".join(
        f"select _load_id, 1 as loaded, 0 as dead from bronze.{t}"
        for t in (*EVENT_TABLES, "customers", "products")
    )
    return _rows(
        where,
        f"""
        select coalesce(recorded.load_id, stored.load_id), recorded.rows_loaded, stored.loaded,
            recorded.rows_dead_lettered, stored.dead
        from bronze._loads as recorded
        full outer join (
            select _load_id as load_id, sum(loaded) as loaded, sum(dead) as dead
            from ({stored} union all select _load_id, 0, 1 from bronze.dead_letter) as rows_
            group by _load_id
        ) as stored
            on recorded.load_id = stored.load_id
        where recorded.rows_loaded is distinct from stored.loaded
            or recorded.rows_dead_lettered is distinct from stored.dead
            or recorded.rows_read is distinct from stored.loaded + stored.dead
        """,
    )
