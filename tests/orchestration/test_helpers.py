"""The orchestration helpers that need no Airflow: landing folder, manifest digest, local env."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from retail_pipeline.errors import PipelineError
from retail_pipeline.orchestration import dbt, tasks
from retail_pipeline.settings import schema_prefix

REPO = Path(__file__).resolve().parents[2]


def test_snapshot_folders_oldest_first_and_bad_names_refused(tmp_path: Path) -> None:
    for day in ("2026-01-03", "2026-01-01", "2026-01-02"):
        (tmp_path / "snapshots" / day).mkdir(parents=True)
    assert [p.name for p in tasks.snapshot_folders(tmp_path)] == [
        "2026-01-01",
        "2026-01-02",
        "2026-01-03",
    ]
    (tmp_path / "snapshots" / "latest").mkdir()
    with pytest.raises(PipelineError, match="named YYYY-MM-DD"):
        tasks.snapshot_folders(tmp_path)
    assert tasks.snapshot_folders(tmp_path / "snapshots" / "2026-01-01") == []


def test_missing_landing_folder_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RETAIL_LANDING_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(PipelineError, match=r"landing folder .*nowhere does not exist"):
        tasks.landing_dir()
    assert tasks.landing_dir(tmp_path) == tmp_path.resolve()


def test_manifest_path_follows_the_project_sources_and_target(tmp_path: Path) -> None:
    project = tmp_path / "dbt"
    shutil.copytree(REPO / "dbt", project, ignore=shutil.ignore_patterns("target", "logs"))
    duckdb_path = dbt.manifest_path("duckdb", project)
    assert duckdb_path.parent.parent == project / "target" / "cosmos"
    assert dbt.manifest_path("duckdb", project) == duckdb_path
    assert dbt.manifest_path("snowflake", project) != duckdb_path
    (project / "target" / "run").mkdir(parents=True)
    (project / "target" / "run" / "x.sql").write_text("select 1")  # build output: ignored
    assert dbt.manifest_path("duckdb", project) == duckdb_path
    model = project / "models" / "gold" / "marts" / "daily_orders.sql"
    model.write_text(model.read_text() + "\n-- edited\n")
    assert dbt.manifest_path("duckdb", project) != duckdb_path


def test_dbt_env_hands_over_an_absolute_warehouse(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RETAIL_WAREHOUSE", "data/wh.duckdb")
    production = {"RETAIL_ENVIRONMENT": "prod", "RETAIL_SCHEMA_PREFIX": ""}
    warehouse = str(tmp_path / "data" / "wh.duckdb")
    assert dbt.dbt_env("duckdb") == {**production, "RETAIL_WAREHOUSE": warehouse}
    assert dbt.dbt_env("snowflake") == production


def test_dbt_env_hands_over_the_resolved_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The DAG builds the schemas the readers read: a dev environment's default prefix (the OS
    user) is resolved here, not left to dbt; each environment has a manifest of its own."""
    monkeypatch.setenv("RETAIL_ENVIRONMENT", "dev")
    monkeypatch.delenv("RETAIL_SCHEMA_PREFIX", raising=False)
    monkeypatch.setenv("USER", "Ann-Marie")
    monkeypatch.setenv("LOGNAME", "Ann-Marie")
    env = dbt.dbt_env("snowflake")
    assert env["RETAIL_ENVIRONMENT"] == "dev"
    assert env["RETAIL_SCHEMA_PREFIX"] == schema_prefix()
    assert re.fullmatch(r"[a-z][a-z0-9_]{0,30}", env["RETAIL_SCHEMA_PREFIX"])
    dev = dbt.manifest_path("duckdb", tmp_path)
    monkeypatch.setenv("RETAIL_SCHEMA_PREFIX", "pr_42")
    assert dbt.manifest_path("duckdb", tmp_path) != dev
    monkeypatch.setenv("RETAIL_SCHEMA_PREFIX", "pr_42; drop schema gold")
    with pytest.raises(PipelineError, match="RETAIL_SCHEMA_PREFIX"):
        dbt.dbt_env("duckdb")
