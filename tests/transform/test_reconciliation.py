"""Reconciliation: every Bronze row belongs to a recorded loader run, and each run's record
matches what Bronze holds under its load id (``load_mismatch`` in data_quality_summary, enforced
by the ``nothing_lost_between_read_and_bronze`` test).

Each case changes Bronze behind the loaders' back, as a lost write, a writer that records
nothing or a miscounting loader would, and expects the build to fail and say by how much.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import duckdb
import pytest

from retail_pipeline.transform import run_transform

SEED = 11
RECONCILE = ["stg_bronze__loads", "data_quality_summary"]


def mismatches(warehouse: Path) -> dict[tuple[str, str], int]:
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        rows = con.execute(
            "select topic, detail, row_count from silver.data_quality_summary"
            " where check_name = 'load_mismatch' and row_count != 0"
        ).fetchall()
    finally:
        con.close()
    return {(topic, detail): count for topic, detail, count in rows}


def test_a_loaded_warehouse_reconciles(built: Callable[[int], Path]) -> None:
    warehouse = built(SEED)
    assert mismatches(warehouse) == {}
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        # The check is not empty: it covered every kind of load.
        kinds = con.execute(
            "select distinct topic from silver.data_quality_summary"
            " where check_name = 'load_mismatch' order by 1"
        ).fetchall()
    finally:
        con.close()
    assert kinds == [("customers",), ("events",), ("products",)]


TAMPERING = {
    "a written event row was lost": (
        "delete from bronze.payment_events where rowid = (select min(rowid)"
        " from bronze.payment_events)",
        {("events", "rows recorded as loaded vs rows in Bronze"): 1},
    ),
    "rows written by a run that recorded nothing": (
        "insert into bronze.order_events select * replace ('rogue-run' as _load_id)"
        " from bronze.order_events limit 3",
        {("unrecorded", "rows recorded as loaded vs rows in Bronze"): 3},
    ),
    "dead letters written by a run that recorded nothing": (
        "insert into bronze.dead_letter select * replace ('rogue-run' as _load_id)"
        " from bronze.dead_letter limit 2",
        {("unrecorded", "dead letters recorded vs dead letters in Bronze"): 2},
    ),
    "a run recorded more reads than it accounted for": (
        "update bronze._loads set rows_read = rows_read + 5 where load_id = (select min(load_id)"
        " from bronze._loads where kind = 'events')",
        {("events", "rows read minus loaded minus dead-lettered"): 5},
    ),
    "a reference row was lost": (
        "delete from bronze.products where rowid = (select min(rowid) from bronze.products)",
        {("products", "rows recorded as loaded vs rows in Bronze"): 1},
    ),
}


@pytest.mark.parametrize("case", TAMPERING)
def test_bronze_changed_behind_the_loaders_back_fails_the_build(
    case: str, built: Callable[[int], Path], copy_of: Callable[[Path], Path]
) -> None:
    statement, expected = TAMPERING[case]
    warehouse = copy_of(built(SEED))
    con = duckdb.connect(str(warehouse))
    con.execute(statement)
    con.close()

    summary = run_transform(warehouse, select=RECONCILE)
    assert not summary.success
    assert [f.unique_id.split(".")[2] for f in summary.failures] == [
        "nothing_lost_between_read_and_bronze"
    ]
    assert mismatches(warehouse) == expected
