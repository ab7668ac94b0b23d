"""The end-to-end demo on embedded defaults (no broker, no services)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from retail_pipeline.events.simulator import FaultRates, generate
from retail_pipeline.ingestion.batch import load_reference
from retail_pipeline.ingestion.files import ingest_files
from retail_pipeline.warehouse.duckdb import DuckDBWarehouse


def run_demo(
    workdir: Path,
    *,
    days: int,
    orders_per_day: int,
    seed: int,
    warehouse: Path | None = None,
    echo: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Simulate with faults, load reference data and events into Bronze; return a report.

    Rerunning it is safe: the simulation is deterministic and the loaders skip what is
    already in the warehouse.
    """
    sim = workdir / "sim"
    echo(f"simulating {days} days x {orders_per_day} orders/day into {sim} (seed {seed})")
    generate(sim, days=days, orders_per_day=orders_per_day, seed=seed, faults=FaultRates())
    with DuckDBWarehouse(warehouse) as wh:
        echo(f"warehouse: {wh.path}")
        for entity in ("customers", "products"):
            echo(load_reference(wh, entity, sim / f"{entity}.json").line())
        files = sorted((sim / "events").glob("*.ndjson"))
        summary = ingest_files(wh, files)
        echo(f"events: {summary.line()}")
        return {"warehouse": str(wh.path), "bronze_counts": wh.counts()}
