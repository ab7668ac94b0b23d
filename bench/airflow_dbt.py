"""Benchmark: the dbt DAG under Airflow, Cosmos ``LOCAL`` against ``WATCHER``.

Prints figures, asserts nothing. On one small simulation (``--days`` x ``--orders-per-day``):

1. ``airflow db migrate`` into a scratch ``AIRFLOW_HOME``;
2. ``dag.test()`` of the batch ingestion DAG (loads the simulation into a Bronze-only warehouse);
3. ``retail-pipeline transform`` on a copy (dbt build in-process, no Airflow): the baseline;
4. on copies of that warehouse, ``dag.test()`` of the dbt DAG (every task in one process) with
   Cosmos ``ExecutionMode.LOCAL`` and ``TestBehavior.BUILD`` (as ``retail_dbt_dag``: a task per
   model running ``dbt build`` of the model and its tests) and ``AFTER_EACH`` (a run task and a
   test task per model);
5. through ``airflow standalone`` (each task a process of its own, the ``retail_warehouse`` pool
   of one slot), triggered over the REST API: LOCAL + BUILD against the experimental
   ``ExecutionMode.WATCHER`` (one producer task running a single ``dbt build``, one deferrable
   sensor per model and test task; WATCHER offers no BUILD). WATCHER cannot run under
   ``dag.test()``: it runs tasks one at a time, and the first sensor waits forever for a
   producer that has not started.

Per-task overhead = (DAG wall time - baseline) / tasks.

    python bench/airflow_dbt.py --days 2 --orders-per-day 60 [--variants NAME ...]
"""

from __future__ import annotations

import argparse
import json
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

VARIANT_DAG = """
from datetime import datetime

from airflow.sdk import dag
from cosmos import DbtTaskGroup, ExecutionConfig
from cosmos.constants import ExecutionMode, InvocationMode, TestBehavior

from retail_pipeline.orchestration import DEFAULT_ARGS
from retail_pipeline.orchestration.dbt import task_group_args


@dag(schedule=None, start_date=datetime(2026, 1, 1), default_args={{**DEFAULT_ARGS, "retries": 0}})
def {dag_id}():
    args = task_group_args()
    args["project_config"].env_vars = {{"RETAIL_WAREHOUSE": {warehouse!r}}}
    args["execution_config"] = ExecutionConfig(
        execution_mode=ExecutionMode.{mode}, invocation_mode=InvocationMode.DBT_RUNNER
    )
    args["render_config"].test_behavior = TestBehavior.{behavior}  # WATCHER has no BUILD
    DbtTaskGroup(group_id="dbt", **args)


{dag_id}()
"""
# name: (execution mode, test behavior, run with dag.test() or through the scheduler)
VARIANTS = {
    "local_build": ("LOCAL", "BUILD", "dag.test"),
    "local_after_each": ("LOCAL", "AFTER_EACH", "dag.test"),
    "scheduler_local_build": ("LOCAL", "BUILD", "scheduler"),
    "scheduler_watcher": ("WATCHER", "AFTER_EACH", "scheduler"),
}

RUN_DAG = """
import json, sys, time
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder=sys.argv[1])
assert not bag.import_errors, bag.import_errors
dag = bag.dags[sys.argv[2]]
for task in dag.tasks:
    task.retries = 0
started = time.perf_counter()
run = dag.test(run_conf=json.loads(sys.argv[3]))
seconds = time.perf_counter() - started
tis = run.get_task_instances()
print("RESULT " + json.dumps({
    "state": str(run.state), "seconds": seconds, "tasks": len(tis),
    "task_seconds": sum(ti.duration or 0 for ti in tis),
    "states": sorted({str(ti.state) for ti in tis}),
}))
"""


def run(cmd: list[str], env: dict[str, str]) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT)
    seconds = time.perf_counter() - started
    if done.returncode:
        sys.exit(f"{' '.join(cmd[:3])} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return seconds, done.stdout


def dag_test(env: dict[str, str], dags: Path, dag_id: str, conf: dict[str, Any]) -> dict[str, Any]:
    seconds, out = run([sys.executable, "-c", RUN_DAG, str(dags), dag_id, json.dumps(conf)], env)
    result: dict[str, Any] = json.loads(out.split("RESULT ", 1)[1])
    if result["state"] != "success":
        print(out[-5000:])
    result["process_seconds"] = seconds
    return result


def through_scheduler(work: Path, dags: Path, names: list[str], baseline: float) -> None:
    """Each variant once through ``airflow standalone`` (pool of 1 slot, parallelism 4)."""
    from retail_pipeline.local import airflow as local

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]

    home = work / "standalone"
    started = time.perf_counter()
    airflow = local.start(home, port=port, extra_env={"AIRFLOW__CORE__DAGS_FOLDER": str(dags)})
    print(f"airflow standalone healthy after:       {time.perf_counter() - started:6.1f} s")
    try:
        url, token = airflow.url, local.login(airflow)
        for name in names:
            mode, behavior, _ = VARIANTS[name]
            dag_id = f"bench_{name}"
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                try:
                    local.api(url, token, "GET", f"/api/v2/dags/{dag_id}")
                    break
                except OSError:
                    time.sleep(1)
            local.api(url, token, "PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False})
            run = local.api(
                url, token, "POST", f"/api/v2/dags/{dag_id}/dagRuns", {"logical_date": None}
            )
            path = f"/api/v2/dags/{dag_id}/dagRuns/{run['dag_run_id']}"
            deadline = time.monotonic() + 1800
            while run["state"] not in ("success", "failed") and time.monotonic() < deadline:
                time.sleep(2)
                run = local.api(url, token, "GET", path)
            tis = local.api(url, token, "GET", f"{path}/taskInstances?limit=500")["task_instances"]
            seconds = (
                (
                    datetime.fromisoformat(run["end_date"])
                    - datetime.fromisoformat(run["start_date"])
                ).total_seconds()
                if run.get("end_date")
                else float("nan")
            )
            busy = sum(ti["duration"] or 0 for ti in tis)
            print(
                f"scheduler dbt DAG, Cosmos {mode} + {behavior}: {seconds:.1f} s"
                f" ({len(tis)} tasks, {run['state']}; sum of task durations {busy:.1f} s;"
                f" overhead vs baseline {(seconds - baseline) / max(len(tis), 1):.2f} s/task)"
            )
    finally:
        local.stop(home)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--days", type=int, default=2)
    parser.add_argument("--orders-per-day", type=int, default=60)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--variants",
        nargs="+",
        choices=sorted(VARIANTS),
        default=list(VARIANTS),
        help="dbt DAG variants to run (default: all)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-airflow-"))
    dags = work / "dags"
    shutil.copytree(ROOT / "airflow" / "dags", dags)
    for name, (mode, behavior, _) in VARIANTS.items():
        text = VARIANT_DAG.format(
            dag_id=f"bench_{name}", mode=mode, behavior=behavior, warehouse=str(work / name)
        )
        (dags / f"bench_{name}.py").write_text(text)
    base = {
        **os.environ,
        "AIRFLOW_HOME": str(work / "home"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__COSMOS__ENABLE_TELEMETRY": "False",
        "PATH": os.pathsep.join([str(BIN), os.environ.get("PATH", "")]),
    }
    try:
        seconds, _ = run([str(BIN / "airflow"), "db", "migrate"], base)
        print(f"airflow db migrate (SQLite):            {seconds:6.1f} s")
        sim = work / "sim"
        run(
            [str(BIN / "retail-pipeline"), "generate", "--out", str(sim), "--days",
             str(args.days), "--orders-per-day", str(args.orders_per_day),
             "--seed", str(args.seed)],
            base,
        )  # fmt: skip
        bronze = work / "loaded.duckdb"
        env = {**base, "RETAIL_WAREHOUSE": str(bronze), "RETAIL_LANDING_DIR": str(sim)}
        batch = dag_test(env, dags, "retail_batch_ingestion_dag", {})
        print(
            f"dag.test retail_batch_ingestion_dag:    {batch['seconds']:6.1f} s"
            f" ({batch['tasks']} tasks, {batch['state']}; process {batch['process_seconds']:.1f} s)"
        )

        copy = work / "baseline.duckdb"
        shutil.copy(bronze, copy)
        baseline, _ = run(
            [str(BIN / "retail-pipeline"), "transform", "--warehouse", str(copy)], base
        )
        print(f"retail-pipeline transform (baseline):   {baseline:6.1f} s (process, no Airflow)")

        for name in args.variants:
            mode, behavior, how = VARIANTS[name]
            shutil.copy(bronze, work / name)
            if how == "dag.test":
                result = dag_test(base, dags, f"bench_{name}", {})
                overhead = (result["process_seconds"] - baseline) / max(result["tasks"], 1)
                print(
                    f"dag.test dbt DAG, Cosmos {mode} + {behavior}: {result['seconds']:.1f} s"
                    f" ({result['tasks']} tasks, {result['state']};"
                    f" process {result['process_seconds']:.1f} s; sum of task durations"
                    f" {result['task_seconds']:.1f} s; overhead vs baseline {overhead:.2f} s/task)"
                )
        scheduled = [name for name in args.variants if VARIANTS[name][2] == "scheduler"]
        if scheduled:
            through_scheduler(work, dags, scheduled, baseline)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
