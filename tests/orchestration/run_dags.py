"""Parse ``airflow/dags`` and run DAGs with ``dag.test()``, in a fresh interpreter.

The tests run this as a subprocess (``python -m tests.orchestration.run_dags SPEC_JSON``) with
the Airflow environment of the session, so that Airflow's logging and settings never enter
the pytest process. It prints one line ``RESULT <json>``: the DagBag's import errors, each
DAG's attributes, and per run its state, wall time, task states and durations and the
asset events its tasks emitted.

SPEC: ``{"dags_folder": ..., "runs": [{"dag_id": ..., "conf": {...}, "retries": 0}]}``
(``retries`` overrides every task's retries for that run; ``mark_success`` is a regex of task
ids marked successful instead of run).
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any


def describe(dag: Any) -> dict[str, Any]:
    """What the DagBag test checks of one DAG."""
    condition = getattr(dag.timetable, "asset_condition", None)
    return {
        "fileloc": dag.fileloc,
        "tags": sorted(dag.tags),
        "doc_md": bool(dag.doc_md),
        "max_active_runs": dag.max_active_runs,
        "schedule": type(dag.timetable).__name__,
        "schedule_assets": sorted(a.uri for a in getattr(condition, "objects", ())),
        "params": dict(dag.params.dump()),
        "tasks": {
            task.task_id: {
                "retries": task.retries,
                "retry_delay": task.retry_delay.total_seconds(),
                "pool": task.pool,
                "outlets": sorted(getattr(o, "uri", str(o)) for o in task.outlets),
            }
            for task in dag.tasks
        },
    }


def asset_events(dag_id: str, run_id: str) -> list[dict[str, Any]]:
    """The asset events the run's tasks emitted: URI, name and the emitting task."""
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = (
            session.query(AssetEvent.source_task_id, AssetModel.uri, AssetModel.name)
            .join(AssetModel, AssetModel.id == AssetEvent.asset_id)
            .filter(AssetEvent.source_dag_id == dag_id, AssetEvent.source_run_id == run_id)
            .all()
        )
    return [{"task_id": task_id, "uri": uri, "name": name} for task_id, uri, name in rows]


def main(spec: dict[str, Any]) -> dict[str, Any]:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=spec["dags_folder"])
    result: dict[str, Any] = {
        "import_errors": bag.import_errors,
        "dags": {dag_id: describe(dag) for dag_id, dag in bag.dags.items()},
        "runs": [],
    }
    for step in spec.get("runs", []):
        dag = bag.dags[step["dag_id"]]
        if "retries" in step:
            for task in dag.tasks:
                task.retries = step["retries"]
        started = time.perf_counter()
        run = dag.test(run_conf=step.get("conf"), mark_success_pattern=step.get("mark_success"))
        seconds = time.perf_counter() - started
        tasks = {
            ti.task_id: {
                "state": str(ti.state),
                "seconds": ti.duration,
            }
            for ti in run.get_task_instances()
        }
        result["runs"].append(
            {
                "dag_id": dag.dag_id,
                "state": str(run.state),
                "seconds": seconds,
                "tasks": tasks,
                "asset_events": asset_events(dag.dag_id, run.run_id),
            }
        )
    return result


if __name__ == "__main__":
    outcome = main(json.loads(sys.argv[1]))
    print("RESULT " + json.dumps(outcome, default=str), flush=True)
