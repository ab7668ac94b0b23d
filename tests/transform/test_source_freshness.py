"""``transform`` runs ``dbt source freshness`` first (real dbt) and says what is stale, then
builds anyway; the limits are _bronze__sources.yml's."""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
import pytest

from retail_pipeline.ingestion.batch import load_reference
from retail_pipeline.ingestion.files import ingest_files
from retail_pipeline.simulation import FaultRates, generate
from retail_pipeline.transform import run_transform
from retail_pipeline.warehouse.duckdb import DuckDBWarehouse
from tests.cli.run import cli, ok


@pytest.fixture
def loaded(tmp_path: Path) -> Path:
    """Reference data and order events only: payments and shipments stay empty."""
    sim = generate(tmp_path / "sim", days=1, orders_per_day=30, seed=4, faults=FaultRates())
    path = tmp_path / "wh.duckdb"
    with DuckDBWarehouse(path) as wh:
        load_reference(wh, "customers", sim.customers_path)
        load_reference(wh, "products", sim.products_path)
        ingest_files(wh, [sim.topics["orders"].path])
    return path


def test_stale_sources_are_named_and_the_build_goes_on(loaded: Path, tmp_path: Path) -> None:
    fresh = run_transform(loaded, source_freshness=True)
    assert fresh.success
    assert fresh.freshness is not None
    assert [f.table for f in fresh.freshness] == [
        "_loads",
        "customers",
        "order_events",
        "payment_events",
        "products",
        "shipment_events",
    ]  # dead_letter declares no freshness
    assert {f.table: f.status for f in fresh.stale} == {
        "payment_events": "error",
        "shipment_events": "error",
    }
    old = tmp_path / "old.duckdb"
    shutil.copyfile(loaded, old)
    with duckdb.connect(str(old)) as con:
        con.execute("update bronze.order_events set _ingested_at = _ingested_at - interval 7 hour")
        con.execute("update bronze.customers set _ingested_at = _ingested_at - interval 73 hour")
    run = cli("transform", warehouse=old, cwd=tmp_path)
    lines = ok(run)
    assert lines[-1].startswith("dbt build ok")
    warnings = run.stderr.splitlines()
    named = {line.split(":")[1].strip().removeprefix("stale source ") for line in warnings}
    assert named == {
        "bronze.customers",
        "bronze.order_events",
        "bronze.payment_events",
        "bronze.shipment_events",
    }
    by_table = {line.split(":")[1].split()[-1]: line for line in warnings}
    assert len(by_table) == len(warnings) == 4
    assert by_table["bronze.customers"].endswith("past error_after (72 hours)")
    assert by_table["bronze.order_events"].endswith("past warn_after (6 hours)")
    assert "7.0 hours ago" in by_table["bronze.order_events"]
    assert by_table["bronze.payment_events"].endswith("no rows yet, past error_after (24 hours)")
