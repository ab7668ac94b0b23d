"""The Snowflake path end to end on the package's local Snowflake (snowduck, patched): the real
loaders write Bronze through the Snowflake warehouse (Parquet, PUT, COPY INTO, positions),
dbt builds with ``--target snowflake`` (first run, then incremental with SCD2 snapshots), and
the answers, read through the seam, equal DuckDB's on the same input and the simulation's truth.
Then the whole demo on both targets: ``demo --json`` prints the same answers.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from retail_pipeline.simulation import FaultRates, generate
from retail_pipeline.simulation.truth import compare_with_truth
from retail_pipeline.transform import read_answers, run_dbt, run_transform
from retail_pipeline.warehouse import open_warehouse
from tests.accounting import stored_messages, unaccounted_rows

from .conftest import load, split_lines


@pytest.fixture
def snowflake_env(
    snowduck_emulator: tuple[dict[str, Any], Any], monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """The settings that point ``--target snowflake`` and dbt at a fresh emulator database."""

    import snowflake.connector

    args, _ = snowduck_emulator
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
    yield database


def test_snowflake_target_builds_incrementally_and_answers_like_duckdb(
    snowflake_env: str, tmp_path: Path
) -> None:
    sim = tmp_path / "sim"
    generate(sim, days=2, orders_per_day=60, seed=13, faults=FaultRates())
    first, later = split_lines(
        sorted((sim / "events").glob("*.ndjson")), tmp_path / "parts", 2, shuffle_seed=None
    )
    snapshots = sorted((sim / "snapshots").iterdir())
    local = tmp_path / "wh.duckdb"

    for events, days in ((first, snapshots[:1]), (later, snapshots[1:])):
        load(local, snapshots=days, events=events)
        with open_warehouse() as wh:  # RETAIL_TARGET=snowflake: the emulator
            assert wh.target == "snowflake"
            load(wh, snapshots=days, events=events)
            assert unaccounted_rows(wh) == []
        summary = run_transform(local, target="duckdb")
        assert summary.success, summary.failures
        summary = run_transform()
        failures = [f"{f.unique_id}: {f.message}" for f in summary.failures]
        assert summary.success, failures
        assert read_answers() == read_answers(local, target="duckdb")

    with open_warehouse(read_only=True) as wh:
        assert stored_messages(wh) == stored_messages(local)
    truth: dict[str, Any] = json.loads((sim / "truth.json").read_text())
    assert compare_with_truth(read_answers(), truth) == {}


def test_dbt_compiles_every_node_for_snowflake(snowflake_env: str) -> None:
    """``dbt compile --target snowflake`` against the emulator: every model, test and snapshot
    compiles to the Snowflake variants of the dialect macros."""
    with open_warehouse() as wh:  # Bronze, so that the sources exist
        assert wh.target == "snowflake"
    result = run_dbt(["compile"])
    assert result.success, result.exception
    compiled = {node.node.unique_id: node.node.compiled_code for node in result.result}
    assert len(compiled) > 100
    order_lines = compiled["model.retail.int_order_items"]
    assert "lateral flatten" in order_lines.lower()  # snowflake__basket_lines
    assert "unnest(" not in order_lines.lower()  # duckdb__basket_lines
