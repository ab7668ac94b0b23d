"""A warehouse after a fresh pipeline run through the real command line: generate, load-batch,
ingest, transform (real dbt). Module-scoped; a test that changes it works on a copy."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.cli.run import cli, ok


@pytest.fixture(scope="module")
def fresh_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("health")
    warehouse = root / "wh.duckdb"
    ok(
        cli(
            "generate",
            "--out",
            "sim",
            "--days",
            "2",
            "--orders-per-day",
            "40",
            "--seed",
            "10",  # its faults include malformed lines (test_health asserts dead letters)
            warehouse=warehouse,
            cwd=root,
        )
    )
    ok(
        cli(
            "load-batch",
            "--customers",
            "sim/customers.json",
            "--products",
            "sim/products.json",
            warehouse=warehouse,
            cwd=root,
        )
    )
    events = sorted(str(p) for p in (root / "sim" / "events").glob("*.ndjson"))
    ok(cli("ingest", *events, warehouse=warehouse, cwd=root))
    lines = ok(cli("transform", warehouse=warehouse, cwd=root))
    assert lines[-1].startswith("dbt build ok")
    return warehouse


@pytest.fixture
def copy_of(tmp_path: Path, fresh_run: Path) -> Path:
    target = tmp_path / "wh.duckdb"
    shutil.copyfile(fresh_run, target)
    return target
