"""A snapshot is written in batches, and resumes after a crash under the same load id: a dbt run
that sees part of it must not lose the rest, or give any customer a wrong version."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import duckdb
import pytest

from retail_pipeline.ingestion.batch import load_snapshot, read_snapshot
from retail_pipeline.warehouse.duckdb import DuckDBWarehouse
from tests.transform.conftest import transform


class Crashing:
    """The warehouse, its ``write_reference`` failing after ``good`` batches (a crash)."""

    def __init__(self, warehouse: DuckDBWarehouse, good: int) -> None:
        self.warehouse, self.good, self.writes = warehouse, good, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.warehouse, name)

    def write_reference(self, batch: Any) -> None:
        if self.writes >= self.good:
            raise RuntimeError("killed")
        self.writes += 1
        self.warehouse.write_reference(batch)


def snapshot(path: Path, name: str, count: int = 12) -> Path:
    records = [
        {
            "customer_id": f"C{i:02d}",
            "name": f"{name} {i}",
            "email": f"c{i}@example.com",
            "country": "DE",
            "created_at": "2025-01-01T00:00:00Z",
        }
        for i in range(1, count + 1)
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(records), encoding="utf-8")
    return path


def history(warehouse: Path) -> dict[str, list[tuple[str, bool]]]:
    """Each customer's versions: (name, is_current), oldest first."""
    with duckdb.connect(str(warehouse), read_only=True) as con:
        rows = con.execute(
            "select customer_id, customer_name, is_current from silver.customers_history"
            " order by customer_id, valid_from"
        ).fetchall()
    versions: dict[str, list[tuple[str, bool]]] = {}
    for key, name, current in rows:
        versions.setdefault(key, []).append((name, current))
    return versions


@pytest.mark.slow
def test_a_dbt_run_between_the_batches_of_a_snapshot_loses_nothing(tmp_path: Path) -> None:
    warehouse = tmp_path / "wh.duckdb"
    first = snapshot(tmp_path / "day1" / "customers.json", "Old")
    second = snapshot(tmp_path / "day2" / "customers.json", "New")
    with DuckDBWarehouse(warehouse) as wh:
        load_snapshot(wh, read_snapshot("customers", first))
        with pytest.raises(RuntimeError, match="killed"):  # 10 of the 12 records written
            load_snapshot(Crashing(wh, good=2), read_snapshot("customers", second), batch_records=5)
    transform(warehouse)
    partial = history(warehouse)
    assert partial == {
        f"C{i:02d}": [(f"Old {i}", False), (f"New {i}", True)] if i <= 10 else [(f"Old {i}", True)]
        for i in range(1, 13)
    }

    with DuckDBWarehouse(warehouse) as wh:  # the rerun resumes the load: records 11 and 12
        summary = load_snapshot(wh, read_snapshot("customers", second), batch_records=5)
    assert (summary.read, summary.resumed) == (2, 10)
    transform(warehouse)
    assert history(warehouse) == {
        f"C{i:02d}": [(f"Old {i}", False), (f"New {i}", True)] for i in range(1, 13)
    }
    with duckdb.connect(str(warehouse), read_only=True) as con:
        staged = con.execute(
            "select _load_id, count(*), count(distinct customer_id)"
            " from silver.stg_bronze__customers group by 1 order by min(_ingested_at)"
        ).fetchall()
    assert [(rows, keys) for _, rows, keys in staged] == [(12, 12), (12, 12)]
