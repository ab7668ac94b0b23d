"""gold.build_log (dbt's on-run-end hook, dbt/macros/build_log.sql) on real dbt builds: a planted
failing data test makes ``health`` exit 2 naming it, the next good build makes it exit 0; the log
keeps every build through a full refresh, logs a partial run with its selection and nothing for
``dbt source freshness``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import duckdb

from retail_pipeline.transform import run_transform
from tests.cli.run import cli

DBT_PROJECT = Path(__file__).resolve().parents[2] / "dbt"
NO_KAFKA = {"RETAIL_KAFKA_BOOTSTRAP": ""}


def _log(path: Path) -> list[tuple[Any, ...]]:
    with duckdb.connect(str(path), read_only=True) as con:
        return con.execute(
            "select command, selected, is_full_refresh, status, failed_nodes, first_failure,"
            " first_failure_type from gold.build_log order by finished_at"
        ).fetchall()


def _health(path: Path, cwd: Path) -> tuple[int, dict[str, Any]]:
    run = cli("health", "--json", warehouse=path, cwd=cwd, **NO_KAFKA)
    assert run.stderr == ""
    return run.returncode, json.loads(run.stdout)


def test_a_failed_build_is_an_error_until_a_good_build(copy_of: Path, tmp_path: Path) -> None:
    assert _log(copy_of) == [("build", None, False, "success", 0, None, None)]
    project = tmp_path / "dbt"
    shutil.copytree(DBT_PROJECT, project, ignore=shutil.ignore_patterns("target", "logs"))
    planted = project / "tests" / "planted_failure.sql"
    planted.write_text(
        "-- depends_on: {{ ref('stg_bronze__order_events') }}\nselect 1 as planted_failure\n"
    )
    env = {"RETAIL_DBT_PROJECT_DIR": str(project), "RETAIL_DBT_TARGET_DIR": str(project / "target")}
    failed = cli("transform", warehouse=copy_of, cwd=tmp_path, **env)
    assert failed.returncode != 0, failed.stdout
    assert "planted_failure" in failed.stdout + failed.stderr

    code, report = _health(copy_of, tmp_path)
    assert (code, report["status"]) == (2, "error")
    errors = [c for c in report["checks"] if c["status"] != "ok"]
    assert [c["name"] for c in errors] == ["gold.last_build"]
    [check] = errors
    assert {k: v for k, v in check["value"].items() if k != "at"} == {
        "command": "build",
        "status": "error",
        "failed_nodes": 1,
        "first_failure": "planted_failure",
    }
    assert "failed: 1 failing nodes, the first test planted_failure" in check["message"]

    planted.unlink()
    fixed = cli("transform", "--full-refresh", warehouse=copy_of, cwd=tmp_path, **env)
    assert fixed.returncode == 0, fixed.stderr
    code, report = _health(copy_of, tmp_path)
    assert code == 0, [c for c in report["checks"] if c["status"] != "ok"]
    [last] = [c for c in report["checks"] if c["name"] == "gold.last_build"]
    assert last["value"]["status"] == "success" and last["value"]["command"] == "build"

    # one row per build (transform's `dbt source freshness` logs none), kept by --full-refresh
    assert _log(copy_of) == [
        ("build", None, False, "success", 0, None, None),
        ("build", None, False, "error", 1, "planted_failure", "test"),
        ("build", None, True, "success", 0, None, None),
    ]
    partial = run_transform(copy_of, command="run", select=["daily_orders"])
    assert partial.success
    assert _log(copy_of)[-1] == ("run", "daily_orders", False, "success", 0, None, None)
