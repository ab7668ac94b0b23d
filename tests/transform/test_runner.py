"""The Python entry points: errors a user can cause, the readable table, dbt docs."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import duckdb
import pytest

from retail_pipeline.errors import PipelineError, WarehouseError
from retail_pipeline.transform import (
    NodeProgress,
    format_answers,
    project_dir,
    read_answers,
    run_dbt,
    run_transform,
    target_dir,
)

from .conftest import Simulation, build_log_rows, load

SEED = 11


def test_missing_warehouse_is_a_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(WarehouseError, match="does not exist"):
        run_transform(tmp_path / "nowhere.duckdb")
    with pytest.raises(WarehouseError, match="does not exist"):
        read_answers(tmp_path / "nowhere.duckdb")


def test_answers_before_transform_say_what_to_run(
    simulations: Callable[[int], Simulation], tmp_path: Path
) -> None:
    warehouse = tmp_path / "bronze_only.duckdb"
    load(warehouse, snapshots=simulations(SEED).snapshot_days[:1])
    with pytest.raises(PipelineError, match="retail-pipeline transform"):
        read_answers(warehouse)


def test_progress_reports_every_node(
    built: Callable[[int], Path], copy_of: Callable[[Path], Path]
) -> None:
    seen: list[NodeProgress] = []
    summary = run_transform(copy_of(built(SEED)), progress=seen.append, command="run")
    assert summary.success
    models = summary.counts["model"]["success"]
    assert len(seen) == models
    assert [p.index for p in seen] == list(range(1, models + 1))
    assert all(p.total == models and p.resource_type == "model" for p in seen)
    assert "models: " in summary.line()


def test_format_answers_shows_the_six_answers(built: Callable[[int], Path]) -> None:
    answers = read_answers(built(SEED))
    text = format_answers(answers)
    for title in (
        "Orders, conversion and revenue per day",
        "Top products by revenue",
        "Canceled or refunded",
        "Fulfillment lead times",
    ):
        assert title in text
    assert answers["top_products"][0]["product_id"] in text
    assert answers["orders_per_day"][0]["date"] in text


def test_docs_generate(built: Callable[[int], Path]) -> None:
    outcome = run_dbt(["docs", "generate"], built(SEED))
    assert outcome.success
    catalog = json.loads((target_dir() / "catalog.json").read_text())
    assert "model.retail.fct_orders" in catalog["nodes"]


def test_locked_warehouse_is_a_one_line_error(
    built: Callable[[int], Path], copy_of: Callable[[Path], Path]
) -> None:
    warehouse = copy_of(built(SEED))
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb, sys; con = duckdb.connect(sys.argv[1]); print('locked', flush=True);"
            " sys.stdin.read()",
            str(warehouse),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        with pytest.raises(WarehouseError, match="locked by another process"):
            run_transform(warehouse, command="run")
        with pytest.raises(WarehouseError, match="locked by another process"):
            read_answers(warehouse)
    finally:
        holder.communicate("")


def _duplicate_a_staged_payment(warehouse: Path, *, stamp: str | None = None) -> str:
    """Something other than dbt writes a second copy of a staged payment event into Silver
    (with ``stamp`` as its ``_silver_loaded_at``, else the original's); returns its id."""
    con = duckdb.connect(str(warehouse))
    try:
        (event_id,) = con.execute(
            "select min(event_id) from silver.stg_bronze__payment_events"
        ).fetchone() or (None,)
        con.execute(
            "create temp table copied as"
            " select * from silver.stg_bronze__payment_events where event_id = ?",
            [event_id],
        )
        if stamp is not None:
            con.execute("update copied set _silver_loaded_at = cast(? as timestamptz)", [stamp])
        con.execute("insert into silver.stg_bronze__payment_events select * from copied")
    finally:
        con.close()
    return str(event_id)


def _failing_rows(warehouse: Path, query: str) -> list[object]:
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        return [row[0] for row in con.execute(query).fetchall()]
    finally:
        con.close()


def test_failing_data_test_says_where_its_rows_are(
    built: Callable[[int], Path], copy_of: Callable[[Path], Path]
) -> None:
    """A failed build names the failing test and the query that shows its failing rows.

    The duplicate is old (written outside dbt, stamped as its original), so the incremental
    build, whose tests read what it wrote, does not see it (docs/transform.md, "What an
    incremental build tests"); testing every row (``tests="all"``, ``--all-tests``) does."""
    warehouse = copy_of(built(SEED))
    event_id = _duplicate_a_staged_payment(warehouse)
    select = ["stg_bronze__payment_events"]

    increment = run_transform(warehouse, select=select)
    assert increment.success and increment.tests == "increment", increment.line()

    summary = run_transform(warehouse, select=select, tests="all")
    assert not summary.success
    (failure,) = summary.failures
    assert failure.status == "fail"
    assert "unique_stg_bronze__payment_events_event_id" in failure.unique_id
    query = "select * from test_failures.unique_stg_bronze__payment_events_event_id"
    assert failure.rows_query == query
    assert failure.message.endswith(f"failing rows: {query}")
    assert "FAILED (1 failing)" in summary.line()
    assert _failing_rows(warehouse, query) == [event_id]


def _failure_views(warehouse: Path) -> set[str]:
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        rows = con.execute(
            "select table_name from information_schema.tables where table_schema = 'test_failures'"
        ).fetchall()
    finally:
        con.close()
    return {name for (name,) in rows}


def test_failing_rows_are_kept_only_while_their_test_fails(
    built: Callable[[int], Path], copy_of: Callable[[Path], Path]
) -> None:
    """`test_failures` holds a view for each test failing now: a passing test keeps none, and
    the build where a failed test passes again drops its view (dbt's own materialization kept
    an empty view per test and rewrote every one on every build)."""
    warehouse = copy_of(built(SEED))
    assert _failure_views(warehouse) == set()
    event_id = _duplicate_a_staged_payment(warehouse)
    select = ["stg_bronze__payment_events"]
    assert not run_transform(warehouse, select=select, tests="all").success
    assert _failure_views(warehouse) == {"unique_stg_bronze__payment_events_event_id"}

    con = duckdb.connect(str(warehouse))
    try:
        table = "silver.stg_bronze__payment_events"
        con.execute(
            f"create temp table kept as select distinct * from {table} where event_id = ?",
            [event_id],
        )
        con.execute(f"delete from {table} where event_id = ?", [event_id])
        con.execute(f"insert into {table} select * from kept")
    finally:
        con.close()
    summary = run_transform(warehouse, select=select, tests="all")
    assert summary.success, summary.line()
    assert _failure_views(warehouse) == set()


def test_an_incremental_build_tests_the_rows_it_wrote(
    built: Callable[[int], Path], copy_of: Callable[[Path], Path]
) -> None:
    """Rows the build counts as written (stamped after it started) are what its tests read:
    two of them with one key fail its `unique` test, and the failing-rows view lists the key."""
    warehouse = copy_of(built(SEED))
    event_id = _duplicate_a_staged_payment(warehouse, stamp="2999-01-01 00:00:00+00")
    _duplicate_a_staged_payment(warehouse, stamp="2999-01-01 00:00:00+00")
    summary = run_transform(warehouse, select=["stg_bronze__payment_events"])
    assert not summary.success and summary.tests == "increment"
    failing = {failure.unique_id.split(".")[2] for failure in summary.failures}
    assert "unique_stg_bronze__payment_events_event_id" in failing, summary.line()
    query = "select * from test_failures.unique_stg_bronze__payment_events_event_id"
    assert _failing_rows(warehouse, query) == [event_id]


def test_an_incremental_model_older_than_its_columns_says_to_rebuild(
    built: Callable[[int], Path], copy_of: Callable[[Path], Path]
) -> None:
    """After `migrate` adds Bronze columns, a Silver built before them fails its incremental
    run (on_schema_change: fail): one line naming the model, the new columns and the fix,
    not dbt's page of advice; the full refresh it names then builds."""
    warehouse = copy_of(built(SEED))
    con = duckdb.connect(str(warehouse))
    # Silver as the release before order_created version 2 built it
    con.execute("alter table silver.stg_bronze__order_events drop column channel")
    con.execute("alter table silver.stg_bronze__order_events drop column discount")
    con.close()

    summary = run_transform(warehouse, select=["stg_bronze__order_events"])
    assert not summary.success
    (failure,) = summary.failures
    assert failure.message == (
        "silver.stg_bronze__order_events was built before its columns changed (new: channel,"
        " discount), after a Bronze `migrate` or a model change: run `retail-pipeline"
        " transform --full-refresh` once to rebuild the incremental models from Bronze"
    )
    rebuilt = run_transform(warehouse, select=["stg_bronze__order_events"], full_refresh=True)
    assert rebuilt.success, rebuilt.failures


def test_data_is_never_markup() -> None:
    row = {"product_id": "[/red]", "product_name": "[bold]x[/bold]", "category": "[/]"}
    answers = {
        "orders_per_day": [],
        "revenue": {"gross": 0.0, "refunds": 0.0, "net": 0.0, "by_day": []},
        "conversion_rate": {"overall": 0.0, "by_day": []},
        "top_products": [{**row, "units": 1, "revenue": 1.0}],
        "cancel_refund": {
            "orders": 0,
            "canceled_rate": 0.0,
            "refunded_rate": 0.0,
            "canceled_or_refunded_rate": 0.0,
        },
        "lead_times_hours": {
            segment: {"count": 0, "mean": None, "p50": None, "p90": None}
            for segment in ("created_to_shipped", "shipped_to_delivered", "created_to_delivered")
        },
    }
    text = format_answers(answers)
    assert "[/red]" in text and "[bold]x[/bold]" in text and "[/]" in text


def test_a_build_waits_for_a_lock_held_for_a_moment(
    built: Callable[[int], Path], copy_of: Callable[[Path], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reader (the dashboard's snapshot, say) that takes the file between the runner's check
    and dbt's own open makes dbt wait for it, as the loaders do, instead of failing."""
    from retail_pipeline.transform import runner

    warehouse = copy_of(built(SEED))
    holders: list[subprocess.Popen[str]] = []
    checked = runner._dbt_target

    def then_lock(*args: object, **kwargs: object) -> object:
        target = checked(*args, **kwargs)  # type: ignore[arg-type]
        holder = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "import duckdb, sys, time; con = duckdb.connect(sys.argv[1], read_only=True);"
                " print('locked', flush=True); time.sleep(8)",
                str(warehouse),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        holders.append(holder)
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        return target

    monkeypatch.setattr(runner, "_dbt_target", then_lock)
    try:
        summary = run_transform(warehouse, command="run", select=["daily_orders"])
    finally:
        for holder in holders:
            holder.wait()
    assert summary.success, summary.failures
    assert holders and holders[0].returncode == 0


def test_builds_in_one_process_parse_once_until_the_project_changes(
    built: Callable[[int], Path],
    copy_of: Callable[[Path], Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Builds in one process (as `retail-pipeline run` makes them) share one parse while
    nothing it depends on changes; a file added to the project, a setting dbt reads while
    parsing, or another warehouse makes the next build parse again and see the change."""
    from retail_pipeline.transform import runner

    project = tmp_path / "dbt"
    shutil.copytree(project_dir(), project, ignore=shutil.ignore_patterns("target", "logs"))
    monkeypatch.setenv("RETAIL_DBT_PROJECT_DIR", str(project))
    monkeypatch.setenv("RETAIL_DBT_TARGET_DIR", str(project / "target"))
    warehouse = copy_of(built(SEED))
    select = ["stg_bronze__order_events"]

    def build() -> tuple[bool, object]:
        summary = run_transform(warehouse, select=select)
        assert runner._last_parse is not None
        return summary.success, runner._last_parse.manifest

    ok, first = build()
    assert ok
    assert build() == (True, first)  # nothing changed: the same parse

    planted = project / "tests" / "planted_failure.sql"
    planted.write_text(
        "-- depends_on: {{ ref('stg_bronze__order_events') }}\nselect 1 as planted_failure\n"
    )
    ok, second = build()
    assert not ok and second is not first  # the new test was parsed, and it failed
    planted.unlink()
    ok, third = build()
    assert ok and third is not second

    monkeypatch.setenv("RETAIL_DBT_ENFORCE_CONTRACTS", "false")  # read by dbt_project.yml
    ok, fourth = build()
    assert ok and fourth is not third

    other = tmp_path / "other.duckdb"
    shutil.copy(warehouse, other)
    assert run_transform(other, select=select).success
    assert runner._last_parse is not None and runner._last_parse.manifest is not fourth


def test_a_ctrl_c_dbt_swallows_while_parsing_starts_no_build(
    built: Callable[[int], Path], copy_of: Callable[[Path], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """dbt catches a Ctrl-C in some phases of its parse and returns a failure: the build that
    would follow never starts, and the Ctrl-C reaches the caller."""
    from retail_pipeline.transform import runner

    def parse_that_swallows_a_ctrl_c(*_: object) -> None:
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)  # the runner's handler raises KeyboardInterrupt here
        except KeyboardInterrupt:
            pass  # as dbt does
        return None

    warehouse = copy_of(built(SEED))
    before = build_log_rows(warehouse)
    monkeypatch.setattr(runner, "_parsed", parse_that_swallows_a_ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        run_transform(warehouse, select=["stg_bronze__order_events"])
    assert build_log_rows(warehouse) == before
