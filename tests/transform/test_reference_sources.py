"""Silver's SCD2 history across the three reference sources: a snapshot file, then the HTTP
API, then Postgres, built incrementally by dbt; the answers stay equal to the truth."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import duckdb
import orjson

from retail_pipeline.ingestion.api import ApiSource
from retail_pipeline.ingestion.incremental import load_changes
from retail_pipeline.ingestion.postgres import PostgresSource
from retail_pipeline.local.postgres import upsert
from retail_pipeline.local.reference_api import ReferenceApi
from retail_pipeline.simulation import FaultRates
from retail_pipeline.simulation.truth import compare_with_truth
from retail_pipeline.transform import read_answers
from retail_pipeline.warehouse.duckdb import DuckDBWarehouse
from tests.transform.conftest import load, simulate, transform


def history(warehouse: Path, key: str) -> list[tuple[Any, ...]]:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return con.execute(
            "select customer_name, country_code, valid_from, valid_to, is_current"
            " from silver.customers_history where customer_id = ? order by valid_from",
            [key],
        ).fetchall()


def versions(warehouse: Path) -> dict[str, int]:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        rows = con.execute(
            "select customer_id, count(*) from silver.customers_history group by 1"
        ).fetchall()
    return dict(rows)


def test_history_is_one_story_across_file_api_and_postgres(
    tmp_path: Path, postgres_db: str
) -> None:
    sim = simulate(tmp_path / "sim", seed=31, faults=FaultRates())
    warehouse = tmp_path / "wh.duckdb"
    load(warehouse, snapshots=sim.snapshot_days[:1], events=sim.events)
    customers = orjson.loads((sim.snapshot_days[0] / "customers.json").read_bytes())
    first, second = customers[0]["customer_id"], customers[1]["customer_id"]
    transform(warehouse)
    assert set(versions(warehouse).values()) == {1}

    # The same customers from the API, one renamed: only that one gets a version.
    with ReferenceApi() as api:
        for record in customers:
            renamed = record["customer_id"] == first
            api.upsert("customers", record | ({"name": "Renamed by the API"} if renamed else {}))
        with DuckDBWarehouse(warehouse) as wh:
            summary = load_changes(wh, ApiSource(api.url), "customers", lag_seconds=0)
    assert summary.loaded == len(customers)
    transform(warehouse)
    assert versions(warehouse)[first] == 2
    assert sum(versions(warehouse).values()) == len(customers) + 1

    # Then from Postgres: the API's state, the second customer moved country.
    current = [
        record
        | ({"name": "Renamed by the API"} if record["customer_id"] == first else {})
        | ({"country": "NZ"} if record["customer_id"] == second else {})
        for record in customers
    ]
    upsert(postgres_db, "customers", current)
    source = PostgresSource(postgres_db)
    with DuckDBWarehouse(warehouse) as wh:
        assert load_changes(wh, source, "customers", lag_seconds=0).read == len(customers)
    transform(warehouse)
    assert versions(warehouse)[first] == 2
    assert versions(warehouse)[second] == 2

    # A change in Postgres: read alone, a third version.
    upsert(postgres_db, "customers", [current[0] | {"name": "Renamed in Postgres"}])
    with DuckDBWarehouse(warehouse) as wh:
        assert load_changes(wh, source, "customers", lag_seconds=0).read == 1
    transform(warehouse)
    story = history(warehouse, first)
    assert [(name, is_current) for name, _, _, _, is_current in story] == [
        (customers[0]["name"], False),
        ("Renamed by the API", False),
        ("Renamed in Postgres", True),
    ]
    assert [valid_to for *_, valid_to, _ in story[:-1]] == [v for _, _, v, _, _ in story[1:]]
    assert history(warehouse, second)[-1][1] == "NZ"
    assert sum(versions(warehouse).values()) == len(customers) + 3

    truth = json.loads(sim.truth.read_text())
    assert compare_with_truth(read_answers(warehouse), truth) == {}
