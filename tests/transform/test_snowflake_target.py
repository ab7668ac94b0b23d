"""The Snowflake path end to end on the snowduck emulator: Bronze created by the Snowflake
warehouse, dbt built with ``--target snowflake`` (first and incremental), the answers read
through the seam, equal to DuckDB's on the same data and to the simulation's truth.

snowduck cannot ``COPY`` from a stage (fakesnow, which can, runs the loader's own tests), so
Bronze rows are copied from a DuckDB warehouse the real loaders filled, through the emulator's
DuckDB connection: the rows are the same, the DDL and everything after it is the Snowflake
path.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest

from retail_pipeline.events.simulator import FaultRates, generate
from retail_pipeline.events.truth import compare_with_truth
from retail_pipeline.transform import read_answers, run_transform
from retail_pipeline.warehouse import open_warehouse

from .conftest import load, split_lines

BRONZE = [
    "order_events",
    "payment_events",
    "shipment_events",
    "customers",
    "products",
    "dead_letter",
    "_positions",
    "_loads",
]


@pytest.fixture
def snowflake_env(
    snowduck_emulator: tuple[dict[str, Any], Any], monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[str, Any]]:
    """The settings that point ``--target snowflake`` and dbt at a fresh emulator database."""

    import snowflake.connector

    args, duck = snowduck_emulator
    database = f"DBT_{uuid.uuid4().hex[:8].upper()}"
    with snowflake.connector.connect(**args) as con:
        con.cursor().execute(f"create database {database}")
    for name in ("account", "user", "password", "host", "port", "protocol"):
        monkeypatch.setenv(f"SNOWFLAKE_{name.upper()}", str(args[name]))
    monkeypatch.setenv("SNOWFLAKE_DATABASE", database)
    monkeypatch.setenv("SNOWFLAKE_THREADS", "1")  # the emulator shares one DuckDB connection
    monkeypatch.setenv("SNOWFLAKE_CONNECT_RETRIES", "0")
    # snowduck cannot parse `create table t (columns) as select` (an enforced contract)
    monkeypatch.setenv("RETAIL_DBT_ENFORCE_CONTRACTS", "false")
    monkeypatch.setenv("RETAIL_TARGET", "snowflake")
    yield database, duck


def copy_bronze(source: Path, database: str, duck: Any) -> None:
    """Make the emulator's Bronze equal the DuckDB warehouse's (rows replaced, not appended)."""
    con = duckdb.connect(str(source), read_only=True)
    try:
        for table in BRONZE:
            rows = con.execute(f"select * from bronze.{table}").to_arrow_table()
            columns = [
                "to_json(items) as items" if name == "items" else f'"{name}"'
                for name in rows.column_names
            ]
            target = f"{database}.BRONZE.{table}"
            duck.register("bronze_rows", rows)
            try:
                duck.execute(f"delete from {target}")
                duck.execute(
                    f"insert into {target} ({', '.join(rows.column_names)})"
                    f" select {', '.join(columns)} from bronze_rows"
                )
            finally:
                duck.unregister("bronze_rows")
    finally:
        con.close()


def test_snowflake_target_builds_incrementally_and_answers_like_duckdb(
    snowflake_env: tuple[str, Any], tmp_path: Path
) -> None:
    database, duck = snowflake_env
    sim = tmp_path / "sim"
    generate(sim, days=2, orders_per_day=60, seed=13, faults=FaultRates())
    first, later = split_lines(
        sorted((sim / "events").glob("*.ndjson")), tmp_path / "parts", 2, shuffle_seed=None
    )
    snapshots = sorted((sim / "snapshots").iterdir())
    local = tmp_path / "wh.duckdb"

    with open_warehouse() as wh:  # the Snowflake warehouse creates Bronze (schema v2)
        assert wh.target == "snowflake"
        assert "order_events" in wh.tables("bronze")

    for events, days in ((first, snapshots[:1]), (later, snapshots[1:])):
        load(local, snapshots=days, events=events)
        copy_bronze(local, database, duck)
        summary = run_transform(local, target="duckdb")
        assert summary.success, summary.failures
        summary = run_transform()
        failures = [f"{f.unique_id}: {f.message}" for f in summary.failures]
        assert summary.success, failures
        assert read_answers() == read_answers(local, target="duckdb")

    truth: dict[str, Any] = json.loads((sim / "truth.json").read_text())
    assert compare_with_truth(read_answers(), truth) == {}
