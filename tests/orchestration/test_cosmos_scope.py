"""The dbt DAG's Cosmos layout (``RETAIL_DBT_DAG_TASKS=models``) on DuckDB: a run with nothing
new is skipped after ``dbt_plan``, a run after new Bronze rows builds the increment (the answers
equal the truth) and ``dbt_record`` signs it, so the next run is skipped again; the model tasks'
tests read the rows their build wrote (a duplicate among them fails the task, one among old
rows does not), and the param ``all_tests`` builds with nothing new and tests every row.

The first build is ``transform``'s, on half of the events; one whole Cosmos run builds the
other half (about 70 s on 2 cores: a dbt invocation per model; the tasks of tests of two
models are marked successful); the other runs run only the plan and the two staging models'
tasks.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import duckdb
import pytest

from retail_pipeline.orchestration.dbt import PLAN_TASK, scope_model_task
from retail_pipeline.settings import environment
from retail_pipeline.simulation import generate
from retail_pipeline.simulation.truth import compare_with_truth
from retail_pipeline.transform import read_answers
from tests.orchestration.conftest import REPO, run_dags
from tests.orchestration.receiver import receiver
from tests.transform.conftest import load, split_lines, transform

PAYMENTS = "dbt.stg_bronze__payment_events_model_build"
SHIPMENTS = "dbt.stg_bronze__shipment_events_model_build"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list[Path]]:
    """A simulation, a warehouse holding its reference data and half of its events, built by
    ``transform`` (its first build: it records the input signature), and the other half."""
    root = tmp_path_factory.mktemp("cosmos-scope")
    # a copy of the project: its digest is in the signature, and the checkout's may change
    project = root / "dbt"
    shutil.copytree(REPO / "dbt", project, ignore=shutil.ignore_patterns("target", "logs"))
    sim = root / "sim"
    generate(sim, days=2, orders_per_day=30, seed=29)
    first, second = split_lines(
        sorted((sim / "events").glob("*.ndjson")), root / "parts", 2, shuffle_seed=None
    )
    warehouse = root / "wh.duckdb"
    load(warehouse, snapshots=sorted((sim / "snapshots").iterdir()), events=first)
    with environment(
        RETAIL_DBT_PROJECT_DIR=str(project), RETAIL_DBT_TARGET_DIR=str(project / "target")
    ):
        transform(warehouse)
    shutil.copy(warehouse, root / "built.duckdb")
    return sim, warehouse, second


@pytest.fixture
def first_build(built: tuple[Path, Path, list[Path]]) -> tuple[Path, Path, list[Path]]:
    """:func:`built` as ``transform`` left it, at the same path (which its digest holds)."""
    sim, warehouse, second = built
    shutil.copy(warehouse.parent / "built.duckdb", warehouse)
    return sim, warehouse, second


def states(run: dict[str, Any]) -> dict[str, str]:
    return {task_id: task["state"] for task_id, task in run["tasks"].items()}


def model_states(run: dict[str, Any]) -> set[str]:
    return {state for task_id, state in states(run).items() if task_id.startswith("dbt.")}


def dag_env(airflow_env: dict[str, str], warehouse: Path, alerts: str) -> dict[str, str]:
    return {
        **airflow_env,
        "RETAIL_WAREHOUSE": str(warehouse),
        "RETAIL_DBT_DAG_TASKS": "models",
        "RETAIL_DBT_PROJECT_DIR": str(warehouse.parent / "dbt"),
        "RETAIL_ALERT_WEBHOOK": alerts,
        "RETAIL_LINEAGE_DIR": str(warehouse.parent / "lineage"),
    }


def plant_duplicate(warehouse: Path, model: str, stamp: str, copies: int = 1) -> None:
    """Something other than dbt writes ``copies`` more copies of a row of ``silver.<model>``,
    stamped ``stamp`` (``_silver_loaded_at``): a far future stamp makes them rows the next build
    wrote, a past one old rows."""
    con = duckdb.connect(str(warehouse))
    try:
        con.execute(
            f"create temp table copied as select * from silver.{model}"
            f" where event_id = (select min(event_id) from silver.{model})"
        )
        con.execute("update copied set _silver_loaded_at = cast(? as timestamptz)", [stamp])
        for _ in range(copies):
            con.execute(f"insert into silver.{model} select * from copied")
    finally:
        con.close()


def redeliver(events: list[Path], folder: Path) -> list[Path]:
    """A few lines of ``events`` delivered again in new files: new Bronze rows that staging
    drops as duplicates (the answers stay)."""
    folder.mkdir()
    copies = []
    for path in events:
        copy = folder / path.name
        copy.write_bytes(b"".join(path.read_bytes().splitlines(keepends=True)[:3]))
        copies.append(copy)
    return copies


def test_cosmos_runs_skip_when_nothing_is_new_and_test_what_they_wrote(
    airflow_env: dict[str, str], first_build: tuple[Path, Path, list[Path]]
) -> None:
    sim, warehouse, second = first_build
    load(warehouse, events=second)
    # the tasks of the tests of two models only test: marked successful (a quicker test)
    whole = {"dag_id": "retail_dbt_dag", "retries": 0, "mark_success": r"dbt\..*_test$"}
    # only the plan and the two staging models' tasks run; the rest is marked successful
    others = rf"(?!(?:dbt_plan|{re.escape(PAYMENTS)}|{re.escape(SHIPMENTS)})$).*"
    step = {**whole, "mark_success": others}
    all_tests = {**step, "conf": {"all_tests": True}}
    with receiver() as got:
        env = dag_env(airflow_env, warehouse, got.url)
        result = run_dags(env, [whole, whole, all_tests])
        build, again, forced = result["runs"]
        for run in result["runs"]:
            print(f"{run['state']} in {run['seconds']:.1f}s, {len(run['tasks'])} tasks")
        assert build["state"] == "success", result["log"][-6000:]
        assert model_states(build) == {"success"}
        assert states(build)["dbt_record"] == "success"
        assert sum(task_id.endswith("_test") for task_id in build["tasks"]) > 5
        # the model tasks tested the increment: unit tests and whole-table tests left out
        assert "build planned: tests read the increment" in result["log"]
        assert re.search(r"--exclude[^\n]*resource_type:unit_test tag:whole_table", result["log"])
        truth = json.loads((sim / "truth.json").read_text())
        assert compare_with_truth(read_answers(warehouse), truth) == {}
        # dbt_record signed the build: the next run finds nothing new and skips the models
        assert again["state"] == "success", states(again)
        assert model_states(again) == {"skipped"} and states(again)["dbt_record"] == "skipped"
        assert states(again)["health"] == states(again)["gold_deadline"] == "success"
        assert got.posts == []  # skipped tasks alert no one
        # all_tests builds although nothing is new, and tests every row
        assert (states(forced)[PAYMENTS], states(forced)[SHIPMENTS]) == ("success", "success")
        assert "build planned: tests read every row" in result["log"]

        # a key twice among the rows the next build writes, and one among old rows
        plant_duplicate(warehouse, "stg_bronze__shipment_events", "2999-01-01 00:00:00+00", 2)
        plant_duplicate(warehouse, "stg_bronze__payment_events", "2000-01-01 00:00:00+00")
        load(warehouse, events=redeliver(second, warehouse.parent / "again"))
        increment, every = run_dags(env, [step, all_tests])["runs"]
    # new Bronze rows: the tests read what the build wrote, so only the new duplicate fails
    assert (states(increment)[PAYMENTS], states(increment)[SHIPMENTS]) == ("success", "failed")
    assert increment["state"] == "failed"
    # all_tests: every row tested, so the old duplicate fails too
    assert (states(every)[PAYMENTS], states(every)[SHIPMENTS]) == ("failed", "failed")
    failing = [post["json"]["failing_test"] for post in got.posts]
    assert failing.count("unique_stg_bronze__shipment_events_event_id") == 2, failing
    assert failing.count("unique_stg_bronze__payment_events_event_id") == 1, failing


class PlanXCom:
    """A task instance whose ``xcom_pull`` of the plan task gives ``plan``."""

    def __init__(self, plan: dict[str, Any] | None) -> None:
        self.plan = plan

    def xcom_pull(self, task_ids: str) -> dict[str, Any] | None:
        assert task_ids == PLAN_TASK
        return self.plan


def test_the_interceptor_gives_every_task_the_plan() -> None:
    """Every model task reads the increment with the run's one stamp (staging and the models
    downstream alike) and excludes what the plan leaves out, after Cosmos's own excludes; no
    plan changes nothing."""
    env = {
        "RETAIL_DBT_TESTS_SCOPE": "increment",
        "RETAIL_DBT_BRONZE_TESTED_SINCE": "2026-01-01",
        "RETAIL_DBT_LOAD_STAMP": "2026-01-02T00:00:00+00:00",
    }
    plan = {"signature": "ab", "env": env, "exclude": ["resource_type:unit_test", "tag:x"]}
    shared = {"RETAIL_ENVIRONMENT": "dev"}

    def task(select: str, exclude: str | None = None) -> SimpleNamespace:
        return SimpleNamespace(select=select, exclude=exclude, env=shared)

    staging = task("fqn:retail.silver.staging.stg_bronze__order_events", "relationships_a")
    scope_model_task({"ti": PlanXCom(plan)}, staging)
    assert staging.env == {**shared, **env}
    assert staging.exclude == "relationships_a resource_type:unit_test tag:x"
    orders = task("fqn:retail.silver.intermediate.int_orders")
    scope_model_task({"ti": PlanXCom(plan)}, orders)
    assert orders.env == {**shared, **env}
    assert orders.exclude == "resource_type:unit_test tag:x"
    assert shared == {"RETAIL_ENVIRONMENT": "dev"}  # the group's own dict is left alone
    untouched = task("fqn:retail.silver.staging.stg_bronze__products")
    scope_model_task({"ti": PlanXCom(None)}, untouched)
    assert (untouched.env, untouched.exclude) == (shared, None)
