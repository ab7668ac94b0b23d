"""The three seed DAGs: a DagBag test, and ``dag.test()`` runs end to end on a fresh warehouse.

The end-to-end run feeds one warehouse through both ingestion DAGs: the batch DAG loads the
simulation's daily snapshots and its order events from a landing folder, its customers from the
reference API and its products from Postgres, the Kafka DAG the payment and shipment events
from a real broker (topics of the test's own), their credentials only in Airflow connections
(``AIRFLOW_CONN_*``); then the dbt DAG builds Silver and Gold in its DuckDB layout (one
``dbt_build`` task), and the six answers must equal the simulation's truth, with the lineage
connected. Running both ingestion DAGs again loads nothing (their tasks are skipped): exactly
once. A planted failing data test fails the build and alerts once, naming the test, in both
layouts: ``dbt_build``, and Cosmos's task per model (``RETAIL_DBT_DAG_TASKS=models``, where
Cosmos's lineage callback is checked too).
"""

from __future__ import annotations

import json
import re
import shutil
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from retail_pipeline.events.contract import TOPICS
from retail_pipeline.ingestion.kafka.producer import produce_files
from retail_pipeline.local import kafka_broker as broker
from retail_pipeline.local.postgres import upsert
from retail_pipeline.local.reference_api import ReferenceApi
from retail_pipeline.orchestration.dbt import manifest_path
from retail_pipeline.simulation import generate
from retail_pipeline.simulation.truth import compare_with_truth
from retail_pipeline.transform import read_answers
from retail_pipeline.warehouse.duckdb import DuckDBWarehouse
from tests.accounting import _rows, message_lines, stored_messages, unaccounted_rows
from tests.lineage_graph import check_connected, events_of, fed_by_bronze, run_states, validate
from tests.orchestration.conftest import (
    CREDENTIAL_VARIABLES,
    DAGS_FOLDER,
    REPO,
    SEED_DAG_IDS,
    connection_env,
    run_dags,
)
from tests.orchestration.receiver import receiver

BRONZE = {
    f"retail://bronze/{table}"
    for table in (
        "order_events",
        "payment_events",
        "shipment_events",
        "dead_letter",
        "customers",
        "products",
    )
}


def task_states(run: dict[str, Any]) -> dict[str, str]:
    return {task_id: task["state"] for task_id, task in run["tasks"].items()}


def built_models() -> set[str]:
    """The relations the dbt project builds: its models but the ephemeral ones."""
    manifest = json.loads(manifest_path("duckdb").read_text())
    return {
        node["name"]
        for node in manifest["nodes"].values()
        if node["resource_type"] == "model" and node["config"]["materialized"] != "ephemeral"
    }


def test_dagbag(airflow_env: dict[str, str]) -> None:
    """No import errors; the seed's three ids; retries, tags, pool, docs and assets set."""
    result = run_dags(airflow_env, [])
    assert result["import_errors"] == {}
    dags = result["dags"]
    assert set(dags) == SEED_DAG_IDS
    for dag_id, dag in dags.items():
        assert Path(dag["fileloc"]).name == f"{dag_id}.py"
        assert "retail" in dag["tags"] and len(dag["tags"]) > 1, dag_id
        assert dag["doc_md"], dag_id
        assert dag["max_active_runs"] == 1, dag_id
        for task_id, task in dag["tasks"].items():
            assert task["retries"] >= 1, (dag_id, task_id)
            assert task["retry_delay"] == 30, (dag_id, task_id)
            assert task["pool"] == "retail_warehouse", (dag_id, task_id)
    for path in DAGS_FOLDER.glob("*.py"):
        assert len(path.read_text().splitlines()) < 80, path
    kafka = dags["retail_kafka_ingestion_dag"]["tasks"]
    assert kafka["consume_micro_batch"]["outlets"] == sorted(
        BRONZE - {"retail://bronze/customers", "retail://bronze/products"}
    )
    batch = dags["retail_batch_ingestion_dag"]["tasks"]
    assert set(batch["load_snapshots"]["outlets"]) | set(batch["load_event_files"]["outlets"]) == (
        BRONZE
    )
    # RETAIL_TASK_RETRY_DELAY and RETAIL_DBT_DAG_TASKS, read when the DAGs are parsed
    quick = run_dags(
        {**airflow_env, "RETAIL_TASK_RETRY_DELAY": "1.5", "RETAIL_DBT_DAG_TASKS": "models"}, []
    )["dags"]
    delays = {t["retry_delay"] for dag in quick.values() for t in dag["tasks"].values()}
    assert delays == {1.5}
    dbt = dags["retail_dbt_dag"]
    assert dbt["schedule"] == "AssetTriggeredTimetable"
    # an asset-triggered build tests what it wrote; a daily run with all_tests tests every row
    assert dbt["params"] == {"all_tests": False}
    assert set(dbt["schedule_assets"]) == BRONZE
    # DuckDB: one build task whose outlets are the Silver and Gold models, as Cosmos names them
    assert set(dbt["tasks"]) == {"dbt_build", "health", "gold_deadline"}
    outlets = dbt["tasks"]["dbt_build"]["outlets"]
    assert {uri.rsplit("/", 2)[1] for uri in outlets} == {"silver", "gold"}
    warehouse = REPO / "data" / "warehouse.duckdb"
    assert f"duckdb:{warehouse}/warehouse/gold/daily_orders" in outlets
    assert {uri.rsplit("/", 1)[1] for uri in outlets} == built_models()
    cosmos = quick["retail_dbt_dag"]["tasks"]
    assert "dbt.daily_orders_model_build" in cosmos and "dbt_build" not in cosmos
    assert {"health", "gold_deadline"} <= set(cosmos)


@pytest.mark.kafka
def stage_sources(
    sim: Path, landing: Path, token: str, postgres_db: str, kafka_broker: str
) -> tuple[ReferenceApi, list[dict[str, Any]], str]:
    """The simulation spread over every source the DAGs read: the snapshots and the order
    events in the ``landing`` folder; the final reference data from the other two batch sources
    (customers from a reference API requiring ``token``, products in Postgres: the same records,
    so no new versions and the same answers); payments and shipments on Kafka topics under a
    fresh prefix. Returns the started API (the caller stops it), the products and the prefix."""
    shutil.copytree(sim / "snapshots", landing / "snapshots")
    (landing / "events").mkdir()
    shutil.copy(sim / "events" / "orders.ndjson", landing / "events")
    api = ReferenceApi(token=token).start()
    api.load_snapshot("customers", sim / "customers.json")
    products = json.loads((sim / "products.json").read_text(), parse_float=Decimal)
    upsert(postgres_db, "products", products)
    prefix = f"af{uuid.uuid4().hex[:8]}."
    broker.ensure_topics(kafka_broker, [prefix + t for t in (*TOPICS, "dead_letter")])
    produce_files(
        [sim / "events" / "payments.ndjson", sim / "events" / "shipments.ndjson"],
        bootstrap=kafka_broker,
        topic_prefix=prefix,
    )
    return api, products, prefix


def test_dags_end_to_end(
    airflow_env: dict[str, str], kafka_broker: str, postgres_db: str, tmp_path: Path
) -> None:
    sim = tmp_path / "sim"
    generate(sim, days=2, orders_per_day=60, seed=23)
    landing = tmp_path / "landing"
    api, products, prefix = stage_sources(sim, landing, "dag-token", postgres_db, kafka_broker)
    warehouse = tmp_path / "wh.duckdb"
    # the credentials only in Airflow connections (AIRFLOW_CONN_*), none in RETAIL_*
    connections, _ = connection_env(
        api_url=api.url,
        api_token="dag-token",
        postgres_dsn=postgres_db,
        kafka_bootstrap=kafka_broker,
    )
    env = {
        **{k: v for k, v in airflow_env.items() if k not in CREDENTIAL_VARIABLES},
        **connections,
        "RETAIL_WAREHOUSE": str(warehouse),
        "RETAIL_LANDING_DIR": str(landing),
        "RETAIL_TOPIC_PREFIX": prefix,
        "RETAIL_BATCH_LAG": "0",
        "RETAIL_LINEAGE_DIR": str(tmp_path / "lineage"),
    }
    kafka_conf = {"max_seconds": 60, "group": f"{prefix}bronze"}
    try:
        result = run_dags(
            env,
            [
                {"dag_id": "retail_batch_ingestion_dag"},
                {"dag_id": "retail_kafka_ingestion_dag", "conf": kafka_conf},
                {"dag_id": "retail_dbt_dag"},
                {"dag_id": "retail_batch_ingestion_dag"},
                {"dag_id": "retail_kafka_ingestion_dag", "conf": kafka_conf},
            ],
        )
    finally:
        api.stop()
    batch, kafka, dbt, batch_again, kafka_again = result["runs"]
    for run in result["runs"]:
        print(
            f"{run['dag_id']}: {run['state']} in {run['seconds']:.1f}s, {len(run['tasks'])} tasks"
        )
    assert (batch["state"], kafka["state"], dbt["state"]) == ("success",) * 3, result["log"][-6000:]
    assert set(task_states(batch).values()) == {"success"}
    assert task_states(kafka) == {"consume_micro_batch": "success"}
    assert task_states(dbt) == dict.fromkeys(("dbt_build", "health", "gold_deadline"), "success")
    # the build task's outlets: an Asset per Silver and Gold model (duckdb:<file>/<db>/<schema>/..)
    emitted = {event["uri"] for event in dbt["asset_events"]}
    assert {event["task_id"] for event in dbt["asset_events"]} == {"dbt_build"}
    assert {uri.rsplit("/", 2)[1] for uri in emitted} == {"silver", "gold"}, emitted
    assert f"duckdb:{warehouse}/wh/gold/daily_orders" in emitted
    assert {uri.rsplit("/", 1)[1] for uri in emitted} == built_models(), emitted
    # the task log: a line per dbt node
    assert re.search(r"dbt \d+/\d+ model daily_orders: success in [\d.]+s", result["log"])
    assert re.search(r"dbt \d+/\d+ test unique_fct_orders_order_id: pass in ", result["log"])
    # nothing new: both succeed with their task skipped, so no Bronze asset is announced
    assert batch_again["state"] == kafka_again["state"] == "success"
    assert set(task_states(batch_again).values()) | set(task_states(kafka_again).values()) == {
        "skipped"
    }

    answers = read_answers(warehouse)
    truth = json.loads((sim / "truth.json").read_text())
    assert compare_with_truth(answers, truth) == {}
    check_loaded_once(warehouse, sim, api.url, len(products))
    check_dag_lineage(tmp_path / "lineage" / "openlineage.ndjson", warehouse, kafka_broker, prefix)


def check_loaded_once(warehouse: Path, sim: Path, api_url: str, products: int) -> None:
    """Customers from the API and products from PostgreSQL, each row once, and every event line
    of the simulation stored once (Bronze or dead letter), every load accounted for."""
    from_sources = "select count(*) from bronze.{} where _source_file like '{}%'"
    customers = len(json.loads((sim / "customers.json").read_text()))
    assert _rows(warehouse, from_sources.format("customers", api_url)) == [(customers,)]
    assert _rows(warehouse, from_sources.format("products", "postgresql://")) == [(products,)]
    dead_batch = (
        "select count(*) from bronze.dead_letter where _source_kind in ('batch', 'api', 'postgres')"
    )
    stored = stored_messages(warehouse) - _rows(warehouse, dead_batch)[0][0]
    assert stored == message_lines((sim / "events").glob("*.ndjson"))  # each line once
    assert unaccounted_rows(warehouse) == []


def check_dag_lineage(file: Path, warehouse: Path, kafka_broker: str, prefix: str) -> None:
    """The OpenLineage file of the run: every event valid, every run START then COMPLETE, each
    model built once, and a path from every source Bronze records (the landing files, the
    topics, the API, the Postgres table) to every Gold model reading it (tests/lineage_graph.py).
    """
    events = events_of(file)
    for event in events:
        validate(event)
    assert set(map(tuple, run_states(events).values())) == {("START", "COMPLETE")}
    manifest = json.loads(manifest_path("duckdb").read_text())
    nodes = manifest["nodes"].values()
    models = sorted(f"dbt.{n['name']}" for n in nodes if n["resource_type"] == "model")
    built = [e["job"]["name"] for e in events if e["eventType"] == "COMPLETE"]
    assert sorted(job for job in built if job.startswith("dbt.")) == models
    fed_by = fed_by_bronze(warehouse, kafka_broker, prefix)
    assert all(fed_by.get(table) for table in ("order_events", "payment_events", "products"))
    assert check_connected(events, manifest, f"duckdb://{warehouse}", fed_by) == []


def planted_failure(airflow_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    """The environment of a dbt DAG run on an empty Bronze, with a copy of the dbt project
    holding a planted failing test on ``stg_bronze__order_events``."""
    project = tmp_path / "dbt"
    shutil.copytree(
        DAGS_FOLDER.parents[1] / "dbt", project, ignore=shutil.ignore_patterns("target", "logs")
    )
    (project / "tests" / "planted_failure.sql").write_text(
        "-- depends_on: {{ ref('stg_bronze__order_events') }}\nselect 1 as planted_failure\n"
    )
    warehouse = tmp_path / "wh.duckdb"
    DuckDBWarehouse(warehouse).close()  # an empty Bronze
    return {
        **airflow_env,
        "RETAIL_WAREHOUSE": str(warehouse),
        "RETAIL_DBT_PROJECT_DIR": str(project),
        "RETAIL_LINEAGE_DIR": str(tmp_path / "lineage"),
    }


def test_failing_data_test_fails_the_build_and_names_the_test(
    airflow_env: dict[str, str], tmp_path: Path
) -> None:
    """The DuckDB layout: ``dbt_build`` fails with one error naming the failing test and the
    query of its rows, its log has the test's line, and one alert names the test."""
    env = planted_failure(airflow_env, tmp_path)
    step = {"dag_id": "retail_dbt_dag", "retries": 0}
    with receiver() as got:
        (run,) = run_dags({**env, "RETAIL_ALERT_WEBHOOK": got.url}, [step])["runs"]
    assert run["state"] == "failed"
    assert task_states(run) == {
        "dbt_build": "failed",
        "health": "upstream_failed",
        "gold_deadline": "success",
    }, got.posts
    assert run["asset_events"] == []  # a failed build announces no model
    assert len(got.posts) == 1, got.posts
    alert = got.posts[0]["json"]
    keys = ("alert", "task_id", "try", "failing_test", "failing_node")
    assert {key: alert[key] for key in keys} == {
        "alert": "failure",
        "task_id": "dbt_build",
        "try": 1,
        "failing_test": "planted_failure",
        "failing_node": "planted_failure",
    }
    assert f"retail_dbt_dag.dbt_build failed (run {alert['run_id']}, try 1)" in alert["text"]
    assert "dbt test planted_failure failed" in alert["text"]
    assert "1 failing: test planted_failure (fail): Got 1 result" in alert["error"]
    assert "failing rows: select * from test_failures.planted_failure" in alert["error"]
    # lineage: the models built, the one under the planted test names it
    events = events_of(tmp_path / "lineage" / "openlineage.ndjson")
    for event in events:
        validate(event)
    (orders,) = [
        e
        for e in events
        if e["job"]["name"] == "dbt.stg_bronze__order_events" and e["eventType"] == "COMPLETE"
    ]
    assert orders["run"]["facets"]["retailDbt"]["failingTests"] == ["planted_failure"]
    # its parent is the build task's run (as a Cosmos model task's models name that task)
    assert orders["run"]["facets"]["parent"]["job"]["name"] == "retail_dbt_dag.dbt_build"


def test_failing_data_test_fails_the_model_task_with_cosmos(
    airflow_env: dict[str, str], tmp_path: Path
) -> None:
    """The Cosmos layout (``RETAIL_DBT_DAG_TASKS=models``): the model's task fails, its
    downstream tasks do not run, one alert names the test, and Cosmos's lineage callback
    records the model's run under the task."""
    env = {**planted_failure(airflow_env, tmp_path), "RETAIL_DBT_DAG_TASKS": "models"}
    failing = "dbt.stg_bronze__order_events_model_build"
    # not run, marked successful: a quicker test (the deadline check runs: nothing waits)
    others = rf"(?!(?:{re.escape(failing)}|gold_deadline)$).*"
    step = {"dag_id": "retail_dbt_dag", "retries": 0, "mark_success": others}
    with receiver() as got:
        (run,) = run_dags({**env, "RETAIL_ALERT_WEBHOOK": got.url}, [step])["runs"]
    assert run["state"] == "failed"
    failed = {task_id for task_id, state in task_states(run).items() if state == "failed"}
    assert failed == {failing}, got.posts
    assert task_states(run)["dbt.daily_orders_model_build"] == "upstream_failed"
    assert task_states(run)["health"] == "upstream_failed"
    assert task_states(run)["gold_deadline"] == "success"
    # exactly one alert, from the failed task, naming the DAG, task, run and the failing test
    assert len(got.posts) == 1, got.posts
    alert = got.posts[0]["json"]
    assert {key: alert[key] for key in ("alert", "dag_id", "task_id", "try", "failing_test")} == {
        "alert": "failure",
        "dag_id": "retail_dbt_dag",
        "task_id": failing,
        "try": 1,
        "failing_test": "planted_failure",
    }
    assert alert["run_id"].startswith("manual__"), alert
    assert f"retail_dbt_dag.{failing} failed (run {alert['run_id']}, try 1)" in alert["text"]
    assert "dbt test planted_failure failed" in alert["text"]
    # lineage: the model was built (COMPLETE) and names its failing test; parent = the task
    events = events_of(tmp_path / "lineage" / "openlineage.ndjson")
    for event in events:
        validate(event)
    assert [(e["eventType"], e["job"]["name"]) for e in events] == [
        ("START", "dbt.stg_bronze__order_events"),
        ("COMPLETE", "dbt.stg_bronze__order_events"),
    ]
    assert events[1]["run"]["facets"]["retailDbt"]["failingTests"] == ["planted_failure"]
    assert events[1]["run"]["facets"]["parent"]["job"]["name"] == f"retail_dbt_dag.{failing}"
