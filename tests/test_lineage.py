"""OpenLineage events of every load: `ingest` and `load-batch` as commands, the file they append
to, the HTTP transport against a local receiver, and a transport that fails (the load commits).
Then the dbt build of `transform` (the demo's path): one run per model, whose datasets connect
each file loaded to each Gold model reading it (tests/lineage_graph.py), and a model that fails
(FAIL) with the model it feeds (ABORT).

Every event written is validated against the OpenLineage core schema 2-0-2
(tests/openlineage/README.md says where it comes from)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any, ClassVar

import duckdb
import pytest

from retail_pipeline import lineage
from retail_pipeline.simulation import FaultRates, generate
from tests.lineage_graph import (
    TERMINAL,
    check_connected,
    events_of,
    graph,
    reachable,
    run_states,
    validate,
)

CLI = [sys.executable, "-m", "retail_pipeline.cli"]
EVENT_TABLES = ("order_events", "payment_events", "shipment_events")


def run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=300
    )


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """A faulted simulation ingested and its first day's snapshots loaded, by the commands,
    with the lineage file in a folder of its own: (simulation, warehouse, lineage file)."""
    root = tmp_path_factory.mktemp("lineage")
    sim = root / "sim"
    generate(sim, days=2, orders_per_day=150, seed=5, faults=FaultRates())
    warehouse = root / "wh.duckdb"
    env = {**os.environ, "RETAIL_WAREHOUSE": str(warehouse), "RETAIL_LINEAGE_DIR": "lineage"}
    env.pop("OPENLINEAGE_URL", None)
    events = sorted(str(p) for p in (sim / "events").glob("*.ndjson"))
    done = run(["ingest", *events], env, root)
    assert done.returncode == 0, done.stderr
    day = sorted((sim / "snapshots").iterdir())[0]
    done = run(
        [
            "load-batch",
            "--customers",
            str(day / "customers.json"),
            "--products",
            str(day / "products.json"),
        ],
        env,
        root,
    )
    assert done.returncode == 0, done.stderr
    assert "warning" not in done.stderr
    return sim, warehouse, root / "lineage" / "openlineage.ndjson"


def test_each_load_is_a_start_complete_pair_that_validates(loaded: tuple[Path, Path, Path]) -> None:
    _, _, file = loaded
    events = events_of(file)
    for event in events:
        validate(event)
    runs: dict[str, list[str]] = {}
    for event in events:
        runs.setdefault(event["run"]["runId"], []).append(event["eventType"])
    assert list(runs.values()) == [["START", "COMPLETE"]] * 3
    jobs = [e["job"]["name"] for e in events if e["eventType"] == "COMPLETE"]
    assert jobs == ["ingest_files", "load_batch.customers", "load_batch.products"]
    assert {e["job"]["namespace"] for e in events} == {"retail-pipeline"}


def test_inputs_outputs_and_counts_are_bronze_s(loaded: tuple[Path, Path, Path]) -> None:
    sim, warehouse, file = loaded
    complete = {e["job"]["name"]: e for e in events_of(file) if e["eventType"] == "COMPLETE"}
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        rows = {
            table: con.execute(f"select count(*) from bronze.{table}").fetchone()[0]  # type: ignore[index]
            for table in (*EVENT_TABLES, "customers", "products")
        }
        dead = dict(
            con.execute(
                "select _source_kind, count(*) from bronze.dead_letter group by 1"
            ).fetchall()
        )
    finally:
        con.close()
    namespace = f"duckdb://{warehouse}"

    ingest = complete["ingest_files"]
    assert ingest["inputs"] == [
        {"namespace": "file", "name": str(p.resolve()), "facets": {}, "inputFacets": {}}
        for p in sorted((sim / "events").glob("*.ndjson"))
    ]
    written = {
        o["name"]: o["outputFacets"]["outputStatistics"]["rowCount"] for o in ingest["outputs"]
    }
    assert {o["namespace"] for o in ingest["outputs"]} == {namespace}
    assert written == {
        **{f"bronze.{t}": rows[t] for t in EVENT_TABLES},
        "bronze.dead_letter": dead["file"],
    }
    facet = ingest["run"]["facets"]["retailLoad"]
    lines = sum(
        1
        for p in (sim / "events").glob("*.ndjson")
        for line in p.read_bytes().split(b"\n")
        if line.strip()
    )
    assert facet["rowsRead"] == lines
    assert facet["rowsLoaded"] == sum(rows[t] for t in EVENT_TABLES)
    assert facet["deadLettered"] == dead["file"] > 0
    assert sum(facet["deadLettersByReason"].values()) == dead["file"]

    for entity in ("customers", "products"):
        event = complete[f"load_batch.{entity}"]
        day = sorted((sim / "snapshots").iterdir())[0]
        assert [i["name"] for i in event["inputs"]] == [str((day / f"{entity}.json").resolve())]
        outputs = {
            o["name"]: o["outputFacets"]["outputStatistics"]["rowCount"] for o in event["outputs"]
        }
        assert outputs == {f"bronze.{entity}": rows[entity], "bronze.dead_letter": 0}
        assert event["run"]["facets"]["retailLoad"]["rowsLoaded"] == rows[entity]


def test_no_secret_reaches_a_dataset_name() -> None:
    assert lineage.url_dataset("https://user:pw@api.example:8443/v1/customers?token=x") == (
        lineage.Dataset("https://api.example:8443", "/v1/customers")
    )
    assert lineage.postgres_dataset("postgresql://db.example:5433/retail/products") == (
        lineage.Dataset("postgres://db.example:5433", "retail.public.products")
    )
    assert lineage.kafka_dataset("sasl_ssl://b1:9093,b2:9093", "prod.orders") == (
        lineage.Dataset("kafka://b1:9093", "prod.orders")
    )


class _Receiver(BaseHTTPRequestHandler):
    received: ClassVar[list[tuple[str, dict[str, Any]]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append((self.path, json.loads(body)))
        self.send_response(201)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[tuple[str, dict[str, Any]]]]]:
    server = HTTPServer(("127.0.0.1", 0), _Receiver)
    _Receiver.received = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", _Receiver.received
    finally:
        server.shutdown()
        server.server_close()


def test_openlineage_url_receives_the_events_instead_of_the_file(
    receiver: tuple[str, list[tuple[str, dict[str, Any]]]], tmp_path: Path
) -> None:
    url, received = receiver
    sim = tmp_path / "sim"
    generate(sim, days=1, orders_per_day=20, seed=3, faults=None)
    env = {
        **os.environ,
        "RETAIL_WAREHOUSE": str(tmp_path / "wh.duckdb"),
        "RETAIL_LINEAGE_DIR": str(tmp_path / "lineage"),
        "OPENLINEAGE_URL": url,
    }
    done = run(["ingest", str(sim / "events" / "orders.ndjson")], env, tmp_path)
    assert done.returncode == 0, done.stderr
    assert [(path, event["eventType"]) for path, event in received] == [
        ("/api/v1/lineage", "START"),
        ("/api/v1/lineage", "COMPLETE"),
    ]
    for _, event in received:
        validate(event)
    assert not (tmp_path / "lineage").exists()


def test_a_transport_that_fails_is_a_warning_and_the_load_commits(tmp_path: Path) -> None:
    sim = tmp_path / "sim"
    generate(sim, days=1, orders_per_day=20, seed=3, faults=None)
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the lineage folder should be")
    warehouse = tmp_path / "wh.duckdb"
    env = {**os.environ, "RETAIL_WAREHOUSE": str(warehouse), "RETAIL_LINEAGE_DIR": str(blocker)}
    env.pop("OPENLINEAGE_URL", None)
    done = run(["ingest", str(sim / "events" / "orders.ndjson")], env, tmp_path)
    assert done.returncode == 0, done.stderr
    warnings = [line for line in done.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 2  # START and COMPLETE, one line each
    assert all("lineage event not recorded" in line for line in warnings)
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        assert con.execute("select count(*) from bronze.order_events").fetchone()[0] > 0  # type: ignore[index]
    finally:
        con.close()


def test_a_load_that_fails_emits_fail_with_what_it_committed(tmp_path: Path) -> None:
    """A second writer got there first: the batch is refused, the run ends in FAIL."""
    from retail_pipeline.ingestion.files import ingest_files
    from retail_pipeline.warehouse import open_warehouse
    from retail_pipeline.warehouse.base import PositionConflict

    sim = tmp_path / "sim"
    generate(sim, days=1, orders_per_day=20, seed=3, faults=None)
    env = {"RETAIL_LINEAGE_DIR": str(tmp_path / "lineage")}
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        patch.delenv("OPENLINEAGE_URL", raising=False)
        with open_warehouse(tmp_path / "wh.duckdb") as wh:

            def conflict(batch: object) -> object:
                raise PositionConflict("file:orders.ndjson: stored position moved")

            patch.setattr(wh, "write_events", conflict)
            with pytest.raises(PositionConflict):
                ingest_files(wh, [sim / "events" / "orders.ndjson"])
    events = events_of(tmp_path / "lineage" / "openlineage.ndjson")
    for event in events:
        validate(event)
    assert [e["eventType"] for e in events] == ["START", "FAIL"]
    failed = events[1]["run"]["facets"]
    assert "stored position moved" in failed["errorMessage"]["message"]
    assert failed["retailLoad"]["rowsLoaded"] == 0


# -- dbt: one run per model, connected to the loads' datasets ----------------------------


@pytest.fixture(scope="module")
def transformed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """The demo's path by the commands: `ingest` the event files, `load-batch` the first day's
    snapshots, `transform` (a real dbt build on DuckDB), one lineage file for all three:
    (simulation, warehouse, lineage file)."""
    root = tmp_path_factory.mktemp("lineage-transform")
    sim = root / "sim"
    generate(sim, days=2, orders_per_day=60, seed=7, faults=FaultRates())
    warehouse = root / "wh.duckdb"
    env = {**os.environ, "RETAIL_WAREHOUSE": str(warehouse), "RETAIL_LINEAGE_DIR": "lineage"}
    env.pop("OPENLINEAGE_URL", None)
    day = sorted((sim / "snapshots").iterdir())[0]
    for args in (
        ["ingest", *sorted(str(p) for p in (sim / "events").glob("*.ndjson"))],
        ["load-batch", "--customers", str(day / "customers.json")],
        ["load-batch", "--products", str(day / "products.json")],
        ["transform"],
    ):
        done = run(args, env, root)
        assert done.returncode == 0, done.stderr
        # no lineage complaint (the dead letters ingest names are in a folder called lineage-*)
        said = [line for line in done.stderr.splitlines() if not line.startswith("dead letter: ")]
        assert not [line for line in said if "lineage" in line], done.stderr
    return sim, warehouse, root / "lineage" / "openlineage.ndjson"


def manifest() -> dict[str, Any]:
    from retail_pipeline.transform.runner import target_dir

    return json.loads((target_dir() / "manifest.json").read_text())


def test_transform_connects_each_source_to_each_gold_model(
    transformed: tuple[Path, Path, Path],
) -> None:
    sim, warehouse, file = transformed
    events = events_of(file)
    for event in events:
        validate(event)
    assert set(map(tuple, run_states(events).values())) == {("START", "COMPLETE")}
    project = manifest()
    models = {n["name"] for n in project["nodes"].values() if n["resource_type"] == "model"}
    complete = [e for e in events if e["eventType"] == "COMPLETE"]
    dbt_jobs = [e["job"]["name"] for e in complete if e["job"]["name"].startswith("dbt.")]
    assert sorted(dbt_jobs) == sorted(f"dbt.{name}" for name in models)  # each model once
    (build,) = [e for e in complete if e["job"]["name"] == "transform"]
    for event in complete:
        if event["job"]["name"].startswith("dbt."):
            assert event["run"]["facets"]["parent"]["run"]["runId"] == build["run"]["runId"]

    day = sorted((sim / "snapshots").iterdir())[0]
    events_dir = (sim / "events").resolve()
    fed_by = {
        "order_events": [("file", str(events_dir / "orders.ndjson"))],
        "payment_events": [("file", str(events_dir / "payments.ndjson"))],
        "shipment_events": [("file", str(events_dir / "shipments.ndjson"))],
        "customers": [("file", str((day / "customers.json").resolve()))],
        "products": [("file", str((day / "products.json").resolve()))],
    }
    assert check_connected(events, project, f"duckdb://{warehouse}", fed_by) == []
    # spelled out once, for the reader: the order events reach the daily orders through Silver
    edges = graph(events)
    orders = reachable(edges, fed_by["order_events"][0])
    namespace = f"duckdb://{warehouse}"
    assert {
        (namespace, "bronze.order_events"),
        (namespace, "silver.stg_bronze__order_events"),
        (namespace, "silver.int_orders"),
        (namespace, "gold.fct_orders"),
        (namespace, "gold.daily_orders"),
    } <= orders
    assert (namespace, "gold.daily_revenue") in reachable(edges, fed_by["payment_events"][0])


def test_a_failing_model_fails_and_what_it_feeds_aborts(
    transformed: tuple[Path, Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """fct_payments cannot build: its run is FAIL with dbt's error, daily_revenue (downstream)
    ABORT, the build FAIL; nothing of theirs COMPLETE, and every run ends."""
    from retail_pipeline.transform import run_transform
    from retail_pipeline.transform.runner import project_dir

    project = tmp_path / "dbt"
    shutil.copytree(project_dir(), project, ignore=shutil.ignore_patterns("target", "logs"))
    (project / "models" / "gold" / "facts" / "fct_payments.sql").write_text(
        "select no_such_column from {{ ref('int_orders') }}\n"
    )
    warehouse = tmp_path / "wh.duckdb"
    shutil.copy(transformed[1], warehouse)
    monkeypatch.setenv("RETAIL_DBT_PROJECT_DIR", str(project))
    monkeypatch.setenv("RETAIL_DBT_TARGET_DIR", str(project / "target"))
    monkeypatch.setenv("RETAIL_LINEAGE_DIR", str(tmp_path / "lineage"))
    summary = run_transform(warehouse, select=["+daily_revenue"])
    assert not summary.success
    events = events_of(tmp_path / "lineage" / "openlineage.ndjson")
    for event in events:
        validate(event)
    final = {}
    for states in run_states(events).values():
        assert states[0] == "START" and len(states) == 2 and states[1] in TERMINAL, states
    for event in events:
        if event["eventType"] != "START":
            final[event["job"]["name"]] = event
    assert {job: e["eventType"] for job, e in final.items() if e["eventType"] != "COMPLETE"} == {
        "dbt.fct_payments": "FAIL",
        "dbt.daily_revenue": "ABORT",
        "transform": "FAIL",
    }
    assert "no_such_column" in final["dbt.fct_payments"]["run"]["facets"]["errorMessage"]["message"]
    assert final["dbt.int_orders"]["eventType"] == "COMPLETE"
    namespace = f"duckdb://{warehouse}"
    assert final["dbt.fct_payments"]["outputs"] == [
        {"namespace": namespace, "name": "gold.fct_payments", "facets": {}, "outputFacets": {}}
    ]


def test_dbt_runs_from_a_hand_made_manifest() -> None:
    """No dbt: an ephemeral model stands for what it reads, a test is not a run, a skipped
    model is ABORT, and Snowflake names match the loads' Bronze names."""
    from openlineage.client.serde import Serde

    manifest = {
        "sources": {
            "source.p.bronze.orders": {"schema": "bronze", "identifier": "order_events"},
        },
        "nodes": {
            "model.p.eph": {
                "resource_type": "model",
                "name": "eph",
                "schema": "silver",
                "alias": "eph",
                "config": {"materialized": "ephemeral"},
                "depends_on": {"nodes": ["source.p.bronze.orders", "macro.p.m"]},
            },
            "model.p.daily": {
                "resource_type": "model",
                "name": "daily",
                "schema": "gold",
                "alias": "daily_orders",
                "config": {"materialized": "table"},
                "depends_on": {"nodes": ["model.p.eph"]},
            },
            "test.p.not_null": {
                "resource_type": "test",
                "name": "not_null_daily",
                "attached_node": "model.p.daily",
                "depends_on": {"nodes": ["model.p.daily"]},
            },
        },
    }
    env = {"SNOWFLAKE_ACCOUNT": "Org-Acct", "SNOWFLAKE_DATABASE": "retail"}
    tables = lineage.warehouse_tables("snowflake", env)
    assert tables("bronze", "order_events") == lineage.bronze_dataset(
        "snowflake", "Org-Acct", "order_events", "retail"
    )
    results = [
        lineage.DbtResult(
            "model.p.daily", "success", "2026-01-01T00:00:00Z", "2026-01-01T00:00:01Z"
        ),
        lineage.DbtResult(
            "test.p.not_null", "fail", "2026-01-01T00:00:01Z", "2026-01-01T00:00:02Z"
        ),
    ]
    events = [json.loads(Serde.to_json(e)) for e in lineage.dbt_events(manifest, results, tables)]
    for event in events:
        validate(event)
    assert [(e["eventType"], e["job"]["name"]) for e in events] == [
        ("START", "dbt.daily"),
        ("COMPLETE", "dbt.daily"),
    ]
    assert events[1]["inputs"] == [
        {
            "namespace": "snowflake://org-acct",
            "name": "RETAIL.BRONZE.ORDER_EVENTS",
            "facets": {},
            "inputFacets": {},
        }
    ]
    assert events[1]["outputs"][0]["name"] == "RETAIL.GOLD.DAILY_ORDERS"
    facet = events[1]["run"]["facets"]["retailDbt"]
    assert (facet["testsPassed"], facet["failingTests"]) == (0, ["not_null_daily"])
    skipped = lineage.dbt_events(
        manifest, [lineage.DbtResult("model.p.daily", "skipped", None, None)], tables
    )
    assert [e.eventType.value for e in skipped] == ["START", "ABORT"]
