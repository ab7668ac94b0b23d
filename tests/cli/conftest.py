"""A small simulation to feed the commands, and a warehouse already holding part of it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from retail_pipeline.ingestion.batch import load_reference
from retail_pipeline.ingestion.files import ingest_files
from retail_pipeline.simulation import FaultRates, GenerationSummary, generate
from retail_pipeline.warehouse.duckdb import DuckDBWarehouse
from tests.cli.run import bronze_state


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> GenerationSummary:
    """A small simulation (with faults) to feed the commands."""
    return generate(
        tmp_path_factory.mktemp("cli-sim"), days=2, orders_per_day=50, seed=3, faults=FaultRates()
    )


@pytest.fixture
def loaded(tmp_path: Path, sim: GenerationSummary) -> Iterator[Path]:
    """A warehouse file holding the simulation's reference data and order events."""
    path = tmp_path / "wh" / "warehouse.duckdb"
    with DuckDBWarehouse(path) as wh:
        load_reference(wh, "customers", sim.customers_path)
        load_reference(wh, "products", sim.products_path)
        ingest_files(wh, [sim.topics["orders"].path])
    state = bronze_state(path)
    assert state and state["customers"] and state["order_events"]
    yield path
