"""``retail-pipeline health`` on real warehouses: healthy after a fresh run (exact JSON, values
computed here from Bronze and Gold), warning and error past each kind of threshold, exit codes
through the real command line."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb

from retail_pipeline.monitoring.health import check_health
from retail_pipeline.warehouse.duckdb import DuckDBWarehouse
from tests.cli.run import cli

EVENT_TABLES = ("order_events", "payment_events", "shipment_events")
# straight from dbt/models/silver/staging/_bronze__sources.yml
HOURS = 3600.0
EVENT_LIMITS = {"warn": 6 * HOURS, "error": 24 * HOURS}
REFERENCE_LIMITS = {"warn": 36 * HOURS, "error": 72 * HOURS}
NO_KAFKA = {"RETAIL_KAFKA_BOOTSTRAP": ""}


def _rows(path: Path, sql: str, params: list[object] | None = None) -> list[tuple[Any, ...]]:
    with duckdb.connect(str(path), read_only=True) as con:
        con.execute("set timezone = 'UTC'")
        return con.execute(sql, params or []).fetchall()


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def expected_report(path: Path, now: datetime) -> dict[str, Any]:
    """The report, computed here from the warehouse with queries of its own."""
    checks: list[dict[str, Any]] = []

    def add(name: str, value: Any, threshold: Any, status: str = "ok") -> None:
        checks.append({"name": name, "status": status, "value": value, "threshold": threshold})

    def last_run(table: str) -> dict[str, Any]:
        [(load_id,)] = _rows(path, f"select max_by(_load_id, _ingested_at) from bronze.{table}")
        [(rows,)] = _rows(
            path, f"select count(*) from bronze.{table} where _load_id = ?", [load_id]
        )
        [(read, dead)] = _rows(
            path,
            "select rows_read, rows_dead_lettered from bronze._loads where load_id = ?",
            [load_id],
        )
        return {"load_id": load_id, "rows": rows, "dead_letters": dead, "rows_read": read}

    dead_letter_limits = {"warn": 0.1, "error": 0.5}
    event_lag = {"warn": None, "error": None}
    for table in (*EVENT_TABLES, "customers", "products"):
        [(last,)] = _rows(path, f"select max(_ingested_at) from bronze.{table}")
        limits = EVENT_LIMITS if table in EVENT_TABLES else REFERENCE_LIMITS
        add(f"bronze.{table}.last_ingest", (now - last).total_seconds(), limits)
        if table in EVENT_TABLES:
            [(newest,)] = _rows(path, f"select max(event_timestamp) from bronze.{table}")
            add(f"bronze.{table}.event_watermark", _iso(newest), event_lag)
        add(f"bronze.{table}.last_run", last_run(table), dead_letter_limits)
    [(finished,)] = _rows(path, "select max(finished_at) from bronze._loads")
    add("bronze._loads.last_ingest", (now - finished).total_seconds(), EVENT_LIMITS)
    [(finished, command)] = _rows(path, "select finished_at, command from gold.build_log")
    [(built,)] = _rows(path, "select built_at from gold.build_info")
    assert finished > built  # the hook ran after the build
    last_build = {"at": _iso(finished), "command": command, "status": "success"}
    add("gold.last_build", {**last_build, "failed_nodes": 0, "first_failure": None}, None)
    [(newest_in_gold,)] = _rows(
        path,
        "select max(t) from (select unnest([order_created_at, first_captured_at,"
        " first_dispatched_at, first_delivered_at, first_canceled_at, first_refunded_at]) as t"
        " from gold.fct_orders)",
    )
    add("gold.event_watermark", _iso(newest_in_gold), event_lag)
    add("gold.pending_rows", {"rows": 0, "seconds": 0.0}, {"warn": 3600.0, "error": 21600.0})
    return {"status": "ok", "exit_code": 0, "checks": checks}


def without_messages(report: dict[str, Any]) -> dict[str, Any]:
    checks = [{k: v for k, v in c.items() if k != "message"} for c in report["checks"]]
    return {"status": report["status"], "exit_code": report["exit_code"], "checks": checks}


def test_healthy_after_a_fresh_run_exact_json(fresh_run: Path) -> None:
    [(newest,)] = _rows(fresh_run, "select max(finished_at) from bronze._loads")
    now = newest + timedelta(minutes=30)
    with DuckDBWarehouse(fresh_run, read_only=True) as wh:
        report = check_health(wh, now=now)
    document = json.loads(report.to_json())
    assert document["checked_at"] == _iso(now)
    assert document["warehouse"] == f"warehouse {fresh_run}"
    assert without_messages(document) == expected_report(fresh_run, now)
    assert report.exit_code == 0 and report.first_problem is None


def test_the_command_exits_0_and_prints_the_same_checks(fresh_run: Path, tmp_path: Path) -> None:
    run = cli("health", "--json", warehouse=fresh_run, cwd=tmp_path, **NO_KAFKA)
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stderr == ""
    document = json.loads(run.stdout)
    now = datetime.fromisoformat(document["checked_at"])
    assert without_messages(document) == expected_report(fresh_run, now)

    text = cli("health", warehouse=fresh_run, cwd=tmp_path, **NO_KAFKA)
    assert text.returncode == 0
    lines = text.stdout.splitlines()
    assert [line.split(" ")[1].rstrip(":") for line in lines[:-1]] == [
        c["name"] for c in document["checks"]
    ]
    assert all(line.startswith("ok ") for line in lines[:-1])
    assert lines[-1] == f"health ok: {len(document['checks'])} checks"


def test_old_events_warn_then_error(fresh_run: Path) -> None:
    [(newest,)] = _rows(fresh_run, "select max(_ingested_at) from bronze.order_events")
    with DuckDBWarehouse(fresh_run, read_only=True) as wh:
        at_7h = check_health(wh, now=newest + timedelta(hours=7))
        at_25h = check_health(wh, now=newest + timedelta(hours=25))
        at_80h = check_health(wh, now=newest + timedelta(hours=80))
    status = {id(r): {c.name: c.status for c in r.checks} for r in (at_7h, at_25h, at_80h)}
    assert status[id(at_7h)]["bronze.order_events.last_ingest"] == "warning"
    assert status[id(at_7h)]["bronze.customers.last_ingest"] == "ok"  # 36 h for reference data
    assert (at_7h.status, at_7h.exit_code) == ("warning", 1)
    assert at_7h.first_problem is not None
    assert at_7h.first_problem.name == "bronze.order_events.last_ingest"
    assert status[id(at_25h)]["bronze.order_events.last_ingest"] == "error"
    assert status[id(at_25h)]["bronze.customers.last_ingest"] == "ok"
    assert (at_25h.status, at_25h.exit_code) == ("error", 2)
    assert status[id(at_80h)]["bronze.customers.last_ingest"] == "error"
    # Gold's lag counts only Bronze rows it misses: none, however late it is
    assert status[id(at_80h)]["gold.pending_rows"] == "ok"


def test_an_old_bronze_exits_1_then_2_through_the_command(copy_of: Path, tmp_path: Path) -> None:
    with duckdb.connect(str(copy_of)) as con:
        for table in EVENT_TABLES:
            con.execute(f"update bronze.{table} set _ingested_at = _ingested_at - interval 7 hour")
        con.execute("update bronze._loads set finished_at = finished_at - interval 7 hour")
    run = cli("health", warehouse=copy_of, cwd=tmp_path, **NO_KAFKA)
    assert run.returncode == 1, run.stdout + run.stderr
    warned = [line for line in run.stdout.splitlines() if line.startswith("warning ")]
    assert [line.split(" ")[1] for line in warned] == [
        *(f"bronze.{t}.last_ingest:" for t in EVENT_TABLES),
        "bronze._loads.last_ingest:",
    ]
    assert run.stdout.splitlines()[-1].startswith(
        "health warning: 17 checks, 4 warning; bronze.order_events.last_ingest: last _ingested_at"
    )
    with duckdb.connect(str(copy_of)) as con:
        con.execute("update bronze.order_events set _ingested_at = _ingested_at - interval 1 day")
    run = cli("health", "--json", warehouse=copy_of, cwd=tmp_path, **NO_KAFKA)
    assert run.returncode == 2
    document = json.loads(run.stdout)
    assert document["status"] == "error"
    assert [c["name"] for c in document["checks"] if c["status"] == "error"] == [
        "bronze.order_events.last_ingest"
    ]


def test_dead_letter_and_gold_thresholds_come_from_settings(
    fresh_run: Path, tmp_path: Path
) -> None:
    [(read, dead)] = _rows(
        fresh_run,
        "select rows_read, rows_dead_lettered from bronze._loads where kind = 'events'",
    )
    assert 0 < dead < read
    share = dead / read
    warn = {"RETAIL_HEALTH_DEAD_LETTER_WARN": str(share / 2), **NO_KAFKA}
    run = cli("health", "--json", warehouse=fresh_run, cwd=tmp_path, **warn)
    assert run.returncode == 1
    problems = {c["name"]: c for c in json.loads(run.stdout)["checks"] if c["status"] != "ok"}
    assert set(problems) == {f"bronze.{t}.last_run" for t in EVENT_TABLES}
    assert problems["bronze.order_events.last_run"]["threshold"] == {
        "warn": share / 2,
        "error": 0.5,
    }
    error = {**warn, "RETAIL_HEALTH_DEAD_LETTER_ERROR": str(share)}
    assert cli("health", warehouse=fresh_run, cwd=tmp_path, **error).returncode == 1  # not past
    error["RETAIL_HEALTH_DEAD_LETTER_ERROR"] = str(share / 2)
    assert cli("health", warehouse=fresh_run, cwd=tmp_path, **error).returncode == 2
    bad = cli("health", warehouse=fresh_run, cwd=tmp_path, RETAIL_HEALTH_GOLD_LAG_WARN="-1")
    assert bad.returncode == 1 and bad.stderr.startswith("error: RETAIL_HEALTH_GOLD_LAG_WARN=")


def test_a_missing_warehouse_is_one_error_check(tmp_path: Path) -> None:
    run = cli("health", "--json", warehouse=tmp_path / "none.duckdb", cwd=tmp_path, **NO_KAFKA)
    assert run.returncode == 2
    [check] = json.loads(run.stdout)["checks"]
    assert check["name"] == "warehouse" and check["status"] == "error"
    assert "does not exist" in check["message"]
