"""Incremental runs: arrival order, increments, reruns and full refreshes all give the same Gold."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import duckdb
import orjson
import pytest

from retail_pipeline.transform import read_answers, run_transform

from .conftest import (
    Simulation,
    assert_same_tables,
    build_log_rows,
    load,
    split_lines,
    table_rows,
    transform,
)
from .test_answers import assert_matches_truth

SEED = 11
# Silver models whose content must not depend on how the events were delivered (the others
# record load times or where each row came from).
SILVER_MODELS = (
    "stg_bronze__order_events",
    "stg_bronze__payment_events",
    "stg_bronze__shipment_events",
    "int_orders",
    "int_order_items",
    "quarantined_events",
)


def silver(warehouse: Path) -> dict[str, list[tuple[object, ...]]]:
    tables = table_rows(warehouse, "silver")
    return {name: tables[name] for name in SILVER_MODELS}


def watermarks(warehouse: Path) -> dict[str, tuple[object, ...]]:
    """Row count and newest load stamp of every incremental Silver model."""
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        names = [
            name
            for (name,) in con.execute(
                "select table_name from information_schema.columns where table_schema = 'silver'"
                " and column_name = '_silver_loaded_at' order by 1"
            ).fetchall()
        ]
        return {
            name: tuple(
                con.execute(
                    f"select count(*), max(_silver_loaded_at) from silver.{name}"
                ).fetchone()
                or ()
            )
            for name in names
        }
    finally:
        con.close()


def test_shuffled_arrival_gives_the_same_gold(
    simulations: Callable[[int], Simulation], built: Callable[[int], Path], tmp_path: Path
) -> None:
    sim = simulations(SEED)
    (shuffled,) = split_lines(sim.events, tmp_path / "shuffled", 1, shuffle_seed=5)
    warehouse = tmp_path / "shuffled.duckdb"
    load(warehouse, snapshots=sim.snapshot_days, events=shuffled)
    transform(warehouse, command="run")
    reference = built(SEED)
    assert_same_tables(table_rows(reference, "gold"), table_rows(warehouse, "gold"))
    assert_same_tables(silver(reference), silver(warehouse))


def test_increments_rerun_and_full_refresh_give_the_same_gold(
    simulations: Callable[[int], Simulation], built: Callable[[int], Path], tmp_path: Path
) -> None:
    """Shuffled events in four increments (payments before their orders, duplicates of events
    staged in an earlier run, orphans resolved later), one daily snapshot per increment and a
    transform after each; then a rerun with nothing new, then a full refresh."""
    sim = simulations(SEED)
    parts = split_lines(sim.events, tmp_path / "parts", len(sim.snapshot_days), shuffle_seed=9)
    warehouse = tmp_path / "increments.duckdb"
    for index, (snapshot, files) in enumerate(zip(sim.snapshot_days, parts, strict=True)):
        load(warehouse, snapshots=[snapshot], events=files)
        transform(warehouse, command="build" if index == len(parts) - 1 else "run")

    reference = built(SEED)
    gold = table_rows(warehouse, "gold")
    assert_same_tables(table_rows(reference, "gold"), gold)
    assert_same_tables(silver(reference), silver(warehouse))
    assert_matches_truth(read_answers(warehouse), json.loads(sim.truth.read_text()))

    before, stamps = silver(warehouse), watermarks(warehouse)
    transform(warehouse, command="run")
    assert watermarks(warehouse) == stamps, "a rerun with nothing new must insert nothing"
    assert_same_tables(before, silver(warehouse))
    assert_same_tables(gold, table_rows(warehouse, "gold"))

    transform(warehouse, command="run", full_refresh=True)
    assert_same_tables(gold, table_rows(warehouse, "gold"))
    assert read_answers(warehouse) == read_answers(reference)


def _refund_row(con: duckdb.DuckDBPyConnection, event_id: str, ingested_at: object) -> str:
    """Insert a payment_refunded for a delivered order into Bronze; returns the order id."""
    row = con.execute(
        "select order_id, payment_method, captured_amount, currency, first_delivered_at"
        " from gold.fct_orders where order_status = 'DELIVERED' and is_reporting_currency"
        " order by order_id limit 1 offset ?",
        [int(event_id[-1])],
    ).fetchone()
    assert row is not None
    order_id, method, amount, currency, delivered_at = row
    refunded_at = delivered_at + timedelta(days=1)
    stamp = refunded_at.strftime("%Y-%m-%dT%H:%M:%S.000Z")
    event = {
        "event_id": event_id,
        "event_type": "payment_refunded",
        "event_version": 1,
        "event_timestamp": stamp,
        "produced_at": stamp,
        "source_system": "payment-service",
        "payment_id": "pay_late",
        "order_id": order_id,
        "amount": float(amount),
        "currency": currency,
        "payment_method": method,
        "payment_status": "refunded",
    }
    # Written as a loader would (typed columns beside the payload), but with a chosen stamp.
    con.execute(
        "insert into bronze.payment_events (event_id, event_type, event_version,"
        " event_timestamp, produced_at, source_system, payment_id, order_id, amount, currency,"
        " payment_method, payment_status, payload, _topic, _offset, _source_file, _source_line,"
        " _ingested_at, _load_id) values (?, ?, 1, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'payments', 0,"
        " 'late', 1, ?, 'late')",
        [
            event_id,
            event["event_type"],
            refunded_at,
            refunded_at,
            event["source_system"],
            event["payment_id"],
            order_id,
            amount,
            currency,
            method,
            event["payment_status"],
            orjson.dumps(event).decode(),
            ingested_at,
        ],
    )
    return str(order_id)


def test_lookback_catches_rows_committed_late(
    built: Callable[[int], Path], copy_of: Callable[[Path], Path]
) -> None:
    """A Bronze row stamped before the newest staged row (its transaction started earlier but
    committed later) is staged if it is inside the lookback window; one stamped before the
    window is only picked up by a full refresh."""
    warehouse = copy_of(built(SEED))
    con = duckdb.connect(str(warehouse))
    (newest,) = con.execute(
        "select max(_ingested_at) from silver.stg_bronze__payment_events"
    ).fetchone() or (None,)
    inside = _refund_row(con, "late-refund-1", newest - timedelta(minutes=10))
    outside = _refund_row(con, "late-refund-2", newest - timedelta(hours=3))
    con.close()

    transform(warehouse, command="run")
    con = duckdb.connect(str(warehouse), read_only=True)
    status = dict(
        con.execute(
            "select order_id, order_status from gold.fct_orders where order_id in (?, ?)",
            [inside, outside],
        ).fetchall()
    )
    con.close()
    assert status == {inside: "REFUNDED", outside: "DELIVERED"}

    transform(warehouse, command="run", full_refresh=True)
    con = duckdb.connect(str(warehouse), read_only=True)
    refunded = con.execute(
        "select count(*) from gold.fct_orders where order_id in (?, ?)"
        " and order_status = 'REFUNDED'",
        [inside, outside],
    ).fetchone()
    con.close()
    assert refunded == (2,)


def test_nothing_new_starts_no_build(
    simulations: Callable[[int], Simulation],
    built: Callable[[int], Path],
    copy_of: Callable[[Path], Path],
    tmp_path: Path,
) -> None:
    """A transform whose project, settings and Bronze are those of the last successful build
    does not start dbt; a changed var, a Bronze row, a failed build in between, --all-tests
    and --full-refresh each build, and the answers stay those of the truth."""
    sim = simulations(SEED)
    warehouse = copy_of(built(SEED))
    first = transform(warehouse)  # another path than the fixture's: a new input, a build
    assert not first.skipped and first.tests == "increment", first.line()
    logged = build_log_rows(warehouse)

    again = transform(warehouse)
    assert again.skipped and "nothing new since the last build" in again.line()
    assert build_log_rows(warehouse) == logged, "a skipped build runs no dbt invocation"

    assert not transform(warehouse, extra_vars={"lookback_minutes": 61}).skipped
    assert transform(warehouse, extra_vars={"lookback_minutes": 61}).skipped
    assert not transform(warehouse).skipped
    assert transform(warehouse).skipped
    assert not transform(warehouse, tests="all").skipped
    assert not transform(warehouse, full_refresh=True).skipped
    assert transform(warehouse).skipped

    # A payment delivered again: one Bronze row more, the same answers.
    again_file = tmp_path / "again" / sim.events[1].name
    again_file.parent.mkdir()
    again_file.write_bytes(sim.events[1].read_bytes().splitlines(keepends=True)[0])
    load(warehouse, events=[again_file])
    after = transform(warehouse)
    assert not after.skipped
    assert_matches_truth(read_answers(warehouse), json.loads(sim.truth.read_text()))

    # A failed invocation since the last success: the next transform builds again.
    con = duckdb.connect(str(warehouse))
    con.execute(
        "update gold.build_log set status = 'error'"
        " where finished_at = (select max(finished_at) from gold.build_log)"
    )
    con.close()
    assert not transform(warehouse).skipped
    assert transform(warehouse).skipped
    assert run_transform(warehouse, select=["daily_orders"]).skipped is False


def test_a_batch_committed_during_a_build_reconciles(
    simulations: Callable[[int], Simulation],
    built: Callable[[int], Path],
    copy_of: Callable[[Path], Path],
    tmp_path: Path,
) -> None:
    """`retail-pipeline run` loads while dbt builds: a batch may commit after staging and
    stg_bronze__loads were built and before data_quality_summary counts Bronze. The load
    reconciliation reads the loaders' record and the rows in one statement, so it still
    balances (it compared the staged record with rows counted later, and failed)."""
    sim = simulations(SEED)
    warehouse = copy_of(built(SEED))
    late = tmp_path / "late" / sim.events[1].name
    late.parent.mkdir()
    late.write_bytes(b"".join(sim.events[1].read_bytes().splitlines(keepends=True)[:5]))
    load(warehouse, events=[late])  # committed "during" the build below: staging not rerun
    ran: list[str] = []
    summary = run_transform(
        warehouse,
        progress=lambda node: ran.append(node.name),
        select=["data_quality_summary", "nothing_lost_between_read_and_bronze"],
    )
    assert "nothing_lost_between_read_and_bronze" in ran
    assert summary.success, [f"{f.unique_id}: {f.message}" for f in summary.failures]


def test_a_build_in_pieces_shares_one_stamp(
    built: Callable[[int], Path],
    copy_of: Callable[[Path], Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The Cosmos layout builds one model per dbt invocation and gives them all the run's
    RETAIL_DBT_LOAD_STAMP: staging stamps its rows with it, the models downstream carry it,
    so the tests of a downstream model, in its own invocation, read what the run wrote (with
    each invocation's start they would read nothing, and a duplicate would pass)."""
    warehouse = copy_of(built(SEED))
    con = duckdb.connect(str(warehouse))
    # five order events new to staging (new ids, just ingested): their orders are touched
    con.execute(
        "insert into bronze.order_events select * replace"
        " (event_id || '-again' as event_id, now() as _ingested_at)"
        " from bronze.order_events order by event_id limit 5"
    )
    con.close()
    stamp = "2999-01-01T00:00:00+00:00"
    monkeypatch.setenv("RETAIL_DBT_LOAD_STAMP", stamp)
    for model in ("stg_bronze__order_events", "int_orders"):
        summary = run_transform(warehouse, select=[model])
        assert summary.success, [f"{f.unique_id}: {f.message}" for f in summary.failures]
    con = duckdb.connect(str(warehouse))
    try:
        for model in ("stg_bronze__order_events", "int_orders"):
            newest = con.execute(f"select max(_silver_loaded_at) from silver.{model}").fetchone()
            assert newest is not None and newest[0].isoformat() == stamp, model
        # a key written twice by "this run": the int_orders task's own tests see it
        con.execute(
            "insert into silver.int_orders select * from silver.int_orders"
            " where _silver_loaded_at = cast(? as timestamptz) limit 1",
            [stamp],
        )
    finally:
        con.close()
    summary = run_transform(warehouse, select=["int_orders"], command="test")
    assert not summary.success
    assert any("unique_int_orders_order_id" in f.unique_id for f in summary.failures)

    monkeypatch.setenv("RETAIL_DBT_LOAD_STAMP", "2999-01-01; drop table x")
    summary = run_transform(warehouse, select=["stg_bronze__order_events"])
    assert not summary.success
    assert "RETAIL_DBT_LOAD_STAMP is not an ISO 8601 timestamp" in summary.failures[0].message
