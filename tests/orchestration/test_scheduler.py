"""The three DAGs through the real scheduler and API server (``airflow standalone``, as
``retail-pipeline airflow up`` starts it), their credentials only in Airflow Connections.

The Postgres password, the API's URL and token and the Kafka bootstrap are given as
``AIRFLOW_CONN_RETAIL_POSTGRES`` / ``_API`` / ``_KAFKA`` (Airflow's JSON form) and not as
``RETAIL_*`` variables (unset for Airflow; the Kafka default ``127.0.0.1:9092`` is not the
test's broker, the API refuses a request without the token, and the Postgres password is in
no passfile the DSN names). Unpaused, the two ingestion DAGs load a simulation: the batch DAG
the snapshots and order events of a landing folder, the customers from the reference API and
the products from Postgres; the Kafka DAG the payment and shipment events from the session
broker (topics of the test's own). A dbt DAG run follows in its DuckDB layout: ``dbt_build``
builds Silver and Gold whole and announces every model's Asset, then ``health`` and
``gold_deadline`` run. Meanwhile a batch run whose landing folder is gone fails for good and
posts exactly one alert, and the Kafka DAG runs again and loads nothing (its task skips:
exactly once; test_dags.py reruns both). No secret appears in a task log or in Bronze.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from retail_pipeline.local import airflow as local
from retail_pipeline.simulation import generate
from retail_pipeline.simulation.truth import compare_with_truth
from retail_pipeline.transform import read_answers
from tests.accounting import _rows
from tests.local.kafka_fixtures import free_port
from tests.orchestration.conftest import (
    CREDENTIAL_VARIABLES,
    airflow_unavailable,
    connection_env,
)
from tests.orchestration.receiver import Receiver, receiver
from tests.orchestration.test_dags import BRONZE, built_models, check_loaded_once, stage_sources

BATCH, KAFKA, DBT = "retail_batch_ingestion_dag", "retail_kafka_ingestion_dag", "retail_dbt_dag"
DBT_TASKS = {"dbt_build", "health", "gold_deadline"}
TOKEN = "t0ken-0nly-in-a-connection"


@pytest.fixture
def alerts(monkeypatch: pytest.MonkeyPatch) -> Iterator[Receiver]:
    """A webhook receiver on 127.0.0.1 that the local Airflow's tasks post their alerts to."""
    with receiver() as got:
        monkeypatch.setenv("RETAIL_ALERT_WEBHOOK", got.url)
        yield got


def _runs(url: str, token: str, dag_id: str) -> list[dict[str, Any]]:
    runs: list[dict[str, Any]] = local.api(url, token, "GET", f"/api/v2/dags/{dag_id}/dagRuns")[
        "dag_runs"
    ]
    return runs


def _ended(url: str, token: str, dag_id: str, run_id: str | None, timeout: float) -> dict[str, Any]:
    """The run (``run_id``, else the DAG's first) once it ends; polled, with a deadline."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = _runs(url, token, dag_id)
        found = [r for r in runs if run_id in (None, r["dag_run_id"])]
        if found and found[0]["state"] in ("success", "failed"):
            return found[0]
        time.sleep(1)
    raise AssertionError(f"{dag_id} run {run_id} did not end within {timeout:.0f}s: {runs}")


def _tasks(url: str, token: str, dag_id: str, run_id: str) -> dict[str, tuple[str, float]]:
    path = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances?limit=100"
    tis = local.api(url, token, "GET", path)["task_instances"]
    return {ti["task_id"]: (ti["state"], ti["duration"] or 0.0) for ti in tis}


def _trigger(url: str, token: str, dag_id: str, conf: dict[str, Any] | None = None) -> str:
    body = {"logical_date": None, "conf": conf or {}}
    run_id: str = local.api(url, token, "POST", f"/api/v2/dags/{dag_id}/dagRuns", body)[
        "dag_run_id"
    ]
    return run_id


def _unpause(url: str, token: str, dag_id: str) -> None:
    local.api(url, token, "PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False})


@pytest.mark.kafka
def test_three_dags_through_the_scheduler_with_connections(
    airflow_env: dict[str, str],
    kafka_broker: str,
    postgres_db: str,
    alerts: Receiver,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    started = time.monotonic()
    sim = tmp_path / "sim"
    generate(sim, days=2, orders_per_day=60, seed=31)
    landing = tmp_path / "landing"
    api, products, prefix = stage_sources(sim, landing, TOKEN, postgres_db, kafka_broker)

    connections, secrets = connection_env(
        api_url=api.url, api_token=TOKEN, postgres_dsn=postgres_db, kafka_bootstrap=kafka_broker
    )
    for name, value in connections.items():
        monkeypatch.setenv(name, value)
    for name in CREDENTIAL_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    warehouse = tmp_path / "wh.duckdb"
    lineage = tmp_path / "lineage"
    monkeypatch.setenv("RETAIL_WAREHOUSE", str(warehouse))
    monkeypatch.setenv("RETAIL_LANDING_DIR", str(landing))
    monkeypatch.setenv("RETAIL_TOPIC_PREFIX", prefix)
    monkeypatch.setenv("RETAIL_BATCH_LAG", "0")
    monkeypatch.setenv("RETAIL_TASK_RETRY_DELAY", "1")  # the failing run's retries: 1 s, 2 s
    monkeypatch.setenv("RETAIL_LINEAGE_DIR", str(lineage))

    home = tmp_path / "airflow"
    try:
        airflow = local.start(home, port=free_port(), timeout=240)
    except local.AirflowError as exc:
        api.stop()
        airflow_unavailable(str(exc))
    try:
        url, token = airflow.url, local.login(airflow)
        up = time.monotonic()
        assert local.api(url, token, "GET", "/api/v2/importErrors")["total_entries"] == 0
        # unpaused, each ingestion DAG starts its scheduled run (the params' defaults)
        _unpause(url, token, BATCH)
        _unpause(url, token, KAFKA)
        batch = _ended(url, token, BATCH, None, 300)
        kafka = _ended(url, token, KAFKA, None, 300)
        ingested = time.monotonic()
        batch_tasks = _tasks(url, token, BATCH, batch["dag_run_id"])
        kafka_tasks = _tasks(url, token, KAFKA, kafka["dag_run_id"])
        assert (batch["state"], kafka["state"]) == ("success", "success"), (
            batch_tasks,
            kafka_tasks,
        )
        assert {task: state for task, (state, _) in batch_tasks.items()} == {
            "load_snapshots": "success",
            "load_api_and_postgres": "success",
            "load_event_files": "success",
        }
        assert {task: state for task, (state, _) in kafka_tasks.items()} == {
            "consume_micro_batch": "success"
        }

        # A batch run whose landing folder is gone, which fails for good after its retries
        # waits; meanwhile the dbt DAG, paused while the ingestion ran (so no asset event
        # queued a run of it), runs once, and the Kafka DAG again (nothing new: skipped).
        gone = tmp_path / "gone"
        failing = _trigger(url, token, BATCH, {"source_dir": str(gone)})  # first: retries wait
        dbt_run = _trigger(url, token, DBT)
        _unpause(url, token, DBT)
        kafka_again = _trigger(url, token, KAFKA)
        dbt = _ended(url, token, DBT, dbt_run, 900)
        built = time.monotonic()
        dbt_tasks = _tasks(url, token, DBT, dbt_run)
        failed_run = _ended(url, token, BATCH, failing, 300)
        again = _tasks(url, token, KAFKA, _ended(url, token, KAFKA, kafka_again, 300)["dag_run_id"])
        events = local.api(url, token, "GET", "/api/v2/assets/events?limit=1000")["asset_events"]
        failed_tasks = _tasks(url, token, BATCH, failing)
        alerts_posted = _alerts(alerts, 1)
    finally:
        api.stop()
        local.stop(home, timeout=5)
    print(
        f"airflow up in {up - started:.0f}s (setup included); ingestion in {ingested - up:.0f}s;"
        f" dbt run in {built - ingested:.0f}s (dbt_build {dbt_tasks['dbt_build'][1]:.1f}s);"
        f" total {time.monotonic() - started:.0f}s"
    )

    assert dbt["state"] == "success", {t: s for t, (s, _) in dbt_tasks.items() if s != "success"}
    assert {task: state for task, (state, _) in dbt_tasks.items()} == dict.fromkeys(
        DBT_TASKS, "success"
    )
    assert again == {"consume_micro_batch": ("skipped", again["consume_micro_batch"][1])}
    # the Bronze assets of the ingestion, and the build task's Asset of every model it built
    uris = {event["uri"] for event in events}
    assert {uri for uri in uris if uri.startswith("retail://")} == BRONZE
    models = {uri for uri in uris if uri.startswith(f"duckdb:{warehouse}/")}
    assert {uri.rsplit("/", 1)[1] for uri in models} == built_models(), uris
    assert {uri.rsplit("/", 2)[1] for uri in models} == {"silver", "gold"}
    assert _rows(warehouse, "select count(*) from silver.stg_bronze__payment_events")[0][0] > 0
    truth = json.loads((sim / "truth.json").read_text())
    assert compare_with_truth(read_answers(warehouse), truth) == {}

    # the failing run: the snapshots task fails for good, one alert names DAG, task, run, error
    assert failed_run["state"] == "failed"
    assert sorted(t for t, (s, _) in failed_tasks.items() if s == "failed") == ["load_snapshots"]
    (body,) = alerts_posted
    assert body["alert"] == "failure" and body["dag_id"] == BATCH
    assert (body["task_id"], body["run_id"]) == ("load_snapshots", failing)
    assert f"landing folder {gone} does not exist" in body["error"], body
    assert BATCH in body["text"] and "load_snapshots" in body["text"]

    check_loaded_once(warehouse, sim, api.url, len(products))

    # no credential in a task log, in Bronze's source names or in the lineage
    logs = [p for p in (home / "logs").rglob("*") if p.is_file()]
    assert logs
    for secret in secrets:
        assert not [p for p in logs if secret in p.read_text(errors="replace")], secret
        assert secret not in (lineage / "openlineage.ndjson").read_text()
        assert secret not in (home / local.LOG_FILE).read_text(errors="replace")
        sources = "select count(*) from bronze.{} where _source_file like '%{}%'"
        for table in ("customers", "products"):
            assert _rows(warehouse, sources.format(table, secret)) == [(0,)]


def _alerts(got: Receiver, expected: int) -> list[dict[str, Any]]:
    """The alerts posted, once ``expected`` arrived (and a moment after, for a second one)."""
    deadline = time.monotonic() + 30
    while len(got.posts) < expected and time.monotonic() < deadline:
        time.sleep(0.5)
    time.sleep(2)
    return [post["json"] for post in got.posts]
