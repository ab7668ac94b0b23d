"""The orchestration helpers that need no Airflow: landing folder, manifest digest, local env,
the dbt DAG's layout and its build task's error."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from retail_pipeline.errors import PipelineError
from retail_pipeline.orchestration import alerts, dbt, tasks
from retail_pipeline.settings import schema_prefix
from retail_pipeline.transform.runner import NodeFailure

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


def test_dag_layout_follows_the_target_unless_set(monkeypatch: pytest.MonkeyPatch) -> None:
    assert (dbt.dag_layout("duckdb"), dbt.dag_layout("snowflake")) == ("build", "models")
    for chosen in ("build", "models"):
        monkeypatch.setenv("RETAIL_DBT_DAG_TASKS", chosen)
        assert dbt.dag_layout("duckdb") == dbt.dag_layout("snowflake") == chosen
    monkeypatch.setenv("RETAIL_DBT_DAG_TASKS", "cosmos")
    with pytest.raises(PipelineError, match=r"^RETAIL_DBT_DAG_TASKS='cosmos': Input should be"):
        dbt.dag_layout("duckdb")


def test_build_failure_names_every_node_and_the_alert_the_first_test() -> None:
    """A model that errored, then a failing data test: the error names both (with the test's
    failing rows), the alert the model as the first failing node and the test as the test."""
    failures = [
        NodeFailure("model.retail.daily_orders", "error", "Runtime Error\n  division by zero"),
        NodeFailure(
            "test.retail.not_null_fct_orders_order_id.5e8ae1a3b4",
            "fail",
            "Got 3 results, configured to fail if != 0; failing rows: select * from t.x",
            "select * from t.x",
        ),
        NodeFailure("unit_test.retail.fct_orders.status_precedence", "fail", "actual differs"),
    ]
    error = dbt.build_failure("DuckDB file /w.duckdb", failures)
    assert str(error) == (
        "dbt build failed on DuckDB file /w.duckdb: 3 failing:"
        " model daily_orders (error): Runtime Error division by zero"
        " | test not_null_fct_orders_order_id (fail): Got 3 results, configured to fail if"
        " != 0; failing rows: select * from t.x"
        " | unit_test status_precedence (fail): actual differs"
    )
    payload = alerts.alert_payload(dag_id="d", task_id="dbt_build", run_id="r", error=error)
    assert (payload["failing_node"], payload["failing_test"]) == (
        "daily_orders",
        "not_null_fct_orders_order_id",
    )
    assert "dbt test not_null_fct_orders_order_id failed" in payload["text"]
    only_model = dbt.build_failure("w", failures[:1])
    payload = alerts.alert_payload(dag_id="d", task_id="t", run_id="r", error=only_model)
    assert (payload["failing_node"], payload["failing_test"]) == ("daily_orders", None)
    assert "dbt node daily_orders failed" in payload["text"]


def test_the_build_task_tests_every_row_when_asked_and_names_its_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The DAG param all_tests reaches the runner as tests="all" (transform --all-tests);
    without it the build tests the rows it wrote."""
    import retail_pipeline.transform as transform
    from retail_pipeline.transform.runner import TransformSummary

    asked: list[object] = []
    parents: list[object] = []

    def run_transform(*args: object, **kwargs: object) -> TransformSummary:
        asked.append(kwargs.get("tests"))
        parents.append(kwargs.get("lineage_parent"))
        return TransformSummary("warehouse w", "build", False, True, 0.1)

    monkeypatch.setattr(transform, "run_transform", run_transform)
    dbt.build_project("w.duckdb", all_tests=True)
    dbt.build_project("w.duckdb")
    assert asked == ["all", "increment"]

    # in a task, the models' lineage runs belong to the task's run (stable per run and try)
    class TaskInstance:
        dag_id, task_id, run_id, try_number = "retail_dbt_dag", "dbt_build", "manual__1", 2

    dbt.build_project("w.duckdb", ti=TaskInstance())
    parent = parents[-1]
    assert parents[:2] == [None, None] and parent == dbt.task_run(TaskInstance())
    assert getattr(parent, "job", None) == "retail_dbt_dag.dbt_build"
