"""Benchmark: the dbt DAG under the real scheduler against plain ``retail-pipeline transform``.

Prints figures, asserts nothing. On one small simulation (``--days`` x ``--orders-per-day``):

1. ``airflow db migrate`` into a scratch ``AIRFLOW_HOME`` and ``dag.test()`` of the batch
   ingestion DAG: the simulation's Bronze in one DuckDB file;
2. ``airflow standalone`` (as ``retail-pipeline airflow up`` starts it: LocalExecutor,
   parallelism 4, the ``retail_warehouse`` pool of one slot, every task a process of its own)
   with a copy of the dbt DAG per layout (``RETAIL_DBT_DAG_TASKS``), each on a warehouse file
   of its own: ``build`` (one ``dbt_build`` task, the project's in-process build) and
   ``models`` (``dbt_plan``, Cosmos LOCAL with a task per model and its tests, ``dbt_record``),
   each followed by ``health`` and ``gold_deadline``: the tasks of ``retail_dbt_dag``;
3. ``--rounds`` rounds, interleaved in the same minutes: ``retail-pipeline transform`` on a
   fresh copy of that Bronze (the baseline: the same dbt build, no Airflow), then each layout's
   DAG triggered over the REST API on a fresh copy, timed from the run's start to its end.

Per round it prints the run's wall time, its build part (the build task, or ``dbt_plan``'s start
to ``dbt_record``'s end) and the ratio to the baseline (the issue's target: at most 2x), with
the machine's load (``uptime``), since the 2 cores are shared.

    python bench/airflow_dbt.py [--days 2 --orders-per-day 60] [--rounds 2] [--layouts build models]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

LAYOUT_DAG = """
from datetime import datetime

from airflow.sdk import dag, task

from retail_pipeline.orchestration import DEFAULT_ARGS, dbt
from retail_pipeline.orchestration.checks import check_gold_deadline, check_pipeline_health
from retail_pipeline.settings import environment

WAREHOUSE = {warehouse!r}


@dag(
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args={{**DEFAULT_ARGS, "retries": 0}},
)
def {dag_id}():
    with environment(RETAIL_WAREHOUSE=WAREHOUSE):
        if {layout!r} == "build":

            @task(outlets=dbt.model_assets())
            def dbt_build() -> dict:
                with environment(RETAIL_WAREHOUSE=WAREHOUSE):
                    return dbt.build_project()

            build = dbt_build()
        else:  # as airflow/dags/retail_dbt_dag.py: plan, a task per model, record
            from cosmos import DbtTaskGroup

            @task.short_circuit(task_id=dbt.PLAN_TASK, ignore_downstream_trigger_rules=False)
            def dbt_plan() -> dict:
                with environment(RETAIL_WAREHOUSE=WAREHOUSE):
                    return dbt.plan_models_build()

            @task
            def dbt_record(plan: dict) -> dict:
                with environment(RETAIL_WAREHOUSE=WAREHOUSE):
                    return dbt.record_models_build(plan)

            plan = dbt_plan()
            build = DbtTaskGroup(group_id="dbt", **dbt.task_group_args())
            plan >> build >> dbt_record(plan)

    @task(trigger_rule="none_failed")
    def health() -> dict:
        with environment(RETAIL_WAREHOUSE=WAREHOUSE):
            return check_pipeline_health()

    @task(trigger_rule="all_done")
    def gold_deadline() -> dict:
        with environment(RETAIL_WAREHOUSE=WAREHOUSE):
            return check_gold_deadline()

    build >> [health(), gold_deadline()]


{dag_id}()
"""

RUN_DAG = """
import json, sys, time
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder=sys.argv[1])
assert not bag.import_errors, bag.import_errors
dag = bag.dags[sys.argv[2]]
run = dag.test(run_conf=json.loads(sys.argv[3]))
print("RESULT " + json.dumps({"state": str(run.state)}))
"""


def load() -> str:
    """The machine's load averages (1, 5, 15 minutes): the cores are shared."""
    one, five, fifteen = os.getloadavg()
    return f"load {one:.2f} {five:.2f} {fifteen:.2f}"


def run(cmd: list[str], env: dict[str, str]) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT)
    seconds = time.perf_counter() - started
    if done.returncode:
        sys.exit(f"{' '.join(cmd[:3])} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return seconds, done.stdout


def _moment(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def scheduled_run(url: str, token: str, dag_id: str) -> dict[str, Any]:
    """Trigger ``dag_id`` over the REST API and wait for its end: wall time, build time."""
    from retail_pipeline.local import airflow as local

    run_ = local.api(url, token, "POST", f"/api/v2/dags/{dag_id}/dagRuns", {"logical_date": None})
    path = f"/api/v2/dags/{dag_id}/dagRuns/{run_['dag_run_id']}"
    deadline = time.monotonic() + 1800
    while run_["state"] not in ("success", "failed") and time.monotonic() < deadline:
        time.sleep(1)
        run_ = local.api(url, token, "GET", path)
    tis = local.api(url, token, "GET", f"{path}/taskInstances?limit=500")["task_instances"]
    builds = [ti for ti in tis if ti["task_id"] not in ("health", "gold_deadline")]
    starts = [m for ti in builds if (m := _moment(ti.get("start_date")))]
    ends = [m for ti in builds if (m := _moment(ti.get("end_date")))]
    start, end = _moment(run_.get("start_date")), _moment(run_.get("end_date"))
    return {
        "state": run_["state"],
        "tasks": len(tis),
        "failed": sorted(ti["task_id"] for ti in tis if ti["state"] != "success"),
        "seconds": (end - start).total_seconds() if start and end else float("nan"),
        "build": (max(ends) - min(starts)).total_seconds() if starts and ends else float("nan"),
        "busy": sum(ti["duration"] or 0 for ti in builds),
    }


def wait_for_dag(url: str, token: str, dag_id: str, timeout: float = 180) -> None:
    """Until the DAG processor has parsed ``dag_id``; then unpause it."""
    from retail_pipeline.local import airflow as local

    deadline = time.monotonic() + timeout
    while True:
        try:
            local.api(url, token, "GET", f"/api/v2/dags/{dag_id}")
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)
    local.api(url, token, "PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--days", type=int, default=2)
    parser.add_argument("--orders-per-day", type=int, default=60)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds (default 2)")
    parser.add_argument(
        "--layouts",
        nargs="+",
        choices=["build", "models"],
        default=["build", "models"],
        help="dbt DAG layouts to run (default both; models takes minutes a round)",
    )
    parser.add_argument(
        "--models-rounds", type=int, default=1, help="rounds of the models layout (default 1)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder")
    args = parser.parse_args()

    from retail_pipeline.local import airflow as local

    work = Path(tempfile.mkdtemp(prefix="bench-airflow-"))
    dags = work / "dags"
    dags.mkdir()
    shutil.copy(ROOT / "airflow" / "dags" / "retail_batch_ingestion_dag.py", dags)
    warehouses = {layout: work / f"{layout}.duckdb" for layout in args.layouts}
    for layout, warehouse in warehouses.items():
        text = LAYOUT_DAG.format(dag_id=f"bench_{layout}", layout=layout, warehouse=str(warehouse))
        (dags / f"bench_{layout}.py").write_text(text)
    base = {
        **os.environ,
        "AIRFLOW_HOME": str(work / "home"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__COSMOS__ENABLE_TELEMETRY": "False",
        "RETAIL_LINEAGE_DIR": str(work / "lineage"),
        "PATH": os.pathsep.join([str(BIN), os.environ.get("PATH", "")]),
    }
    home = work / "standalone"
    try:
        seconds, _ = run([str(BIN / "airflow"), "db", "migrate"], base)
        print(f"airflow db migrate (SQLite): {seconds:.1f} s")
        sim = work / "sim"
        run(
            [str(BIN / "retail-pipeline"), "generate", "--out", str(sim), "--days",
             str(args.days), "--orders-per-day", str(args.orders_per_day),
             "--seed", str(args.seed)],
            base,
        )  # fmt: skip
        bronze = work / "loaded.duckdb"
        env = {**base, "RETAIL_WAREHOUSE": str(bronze), "RETAIL_LANDING_DIR": str(sim)}
        spec = [sys.executable, "-c", RUN_DAG, str(dags), "retail_batch_ingestion_dag", "{}"]
        seconds, out = run(spec, env)
        print(f"dag.test retail_batch_ingestion_dag: {seconds:.1f} s, {out.split('RESULT ')[1]}")

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        started = time.perf_counter()
        os.environ.update({k: v for k, v in base.items() if k.startswith("RETAIL_")})
        airflow = local.start(home, port=port, extra_env={"AIRFLOW__CORE__DAGS_FOLDER": str(dags)})
        print(f"airflow standalone healthy after {time.perf_counter() - started:.1f} s")
        url, token = airflow.url, local.login(airflow)
        for layout in args.layouts:
            wait_for_dag(url, token, f"bench_{layout}")

        ratios: dict[str, list[float]] = {layout: [] for layout in args.layouts}
        baselines = []
        for round_ in range(1, args.rounds + 1):
            copy = work / "baseline.duckdb"
            shutil.copy(bronze, copy)
            transform = [str(BIN / "retail-pipeline"), "transform", "--warehouse", str(copy)]
            baseline, _ = run(transform, base)
            baselines.append(baseline)
            print(f"round {round_}: retail-pipeline transform {baseline:.1f} s ({load()})")
            for layout in args.layouts:
                if layout == "models" and round_ > args.models_rounds:
                    continue
                shutil.copy(bronze, warehouses[layout])
                got = scheduled_run(url, token, f"bench_{layout}")
                ratio = got["seconds"] / baseline
                ratios[layout].append(ratio)
                print(
                    f"round {round_}: dbt DAG, layout {layout}: {got['seconds']:.1f} s"
                    f" = {ratio:.1f}x transform ({got['tasks']} tasks, {got['state']}"
                    f"{', not ok: ' + ', '.join(got['failed']) if got['failed'] else ''});"
                    f" build {got['build']:.1f} s = {got['build'] / baseline:.1f}x,"
                    f" sum of build task durations {got['busy']:.1f} s ({load()})"
                )
        print(
            "summary: transform "
            + ", ".join(f"{b:.1f}" for b in baselines)
            + " s; "
            + "; ".join(
                f"{layout} DAG / transform " + ", ".join(f"{r:.1f}x" for r in values)
                for layout, values in ratios.items()
            )
            + " (target <= 2x)"
        )
    finally:
        local.stop(home)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
