"""Gold reproduces the simulator's truth.json exactly, for several seeds with faults on."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pytest

from retail_pipeline.simulation.truth import compare_with_truth
from retail_pipeline.transform import format_answers, gold_status, read_answers
from retail_pipeline.warehouse import open_warehouse

from .conftest import Simulation

SEEDS = (11, 23, 37)


def assert_matches_truth(answers: dict[str, Any], truth: dict[str, Any]) -> None:
    """Everything exact (money to the cent, counts, rates of exact counts), except lead-time
    statistics, which are floating-point hours (see ``compare_with_truth``)."""
    assert compare_with_truth(answers, truth) == {}


@pytest.mark.parametrize("seed", SEEDS)
def test_answers_equal_truth(
    seed: int,
    simulations: Callable[[int], Simulation],
    built: Callable[[int], Path],
) -> None:
    truth = json.loads(simulations(seed).truth.read_text())
    answers = read_answers(built(seed))
    assert_matches_truth(answers, truth)
    # the JSON is exactly METRICS.md's shape: same keys at every level, lists of 10 at most
    assert json.loads(json.dumps(answers)).keys() == truth.keys()
    assert len(answers["top_products"]) == 10
    assert answers["lead_times_hours"].keys() == truth["lead_times_hours"].keys()
    for row in answers["revenue"]["by_day"]:
        assert row.keys() == {"date", "gross", "refunds", "net"}
        assert all(isinstance(row[key], str) for key in ("gross", "refunds", "net"))


def test_orders_by_channel_equal_truth(
    simulations: Callable[[int], Simulation], built: Callable[[int], Path]
) -> None:
    """Gold's daily_orders_by_channel (versions 1 and 2 of order_created side by side) equals
    the simulator's truth_by_channel.json, to the cent; its rows add up to daily_orders."""
    seed = SEEDS[0]
    truth = json.loads((simulations(seed).path / "truth_by_channel.json").read_text())
    con = duckdb.connect(str(built(seed)), read_only=True)
    try:
        rows = con.execute(
            "select order_date, channel, orders_created, discount_total"
            " from gold.daily_orders_by_channel order by order_date, channel"
        ).fetchall()
        per_day = dict(
            con.execute("select order_date, orders_created from gold.daily_orders").fetchall()
        )
    finally:
        con.close()
    assert [(d.isoformat(), c, n, Decimal(str(x))) for d, c, n, x in rows] == [
        (r["date"], r["channel"], r["orders"], Decimal(str(r["discount"])))
        for r in truth["orders_by_channel"]
    ]
    assert {channel for _, channel, _, _ in rows} >= {"unknown", "web", "mobile_app"}
    assert any(discount > 0 for *_, discount in rows)
    totals: dict[Any, int] = {}
    for day, _, orders, _ in rows:
        totals[day] = totals.get(day, 0) + orders
    assert totals == per_day


def handmade_gold(path: Path, *, freshness: bool = True) -> Path:
    """A warehouse whose Gold holds hand-built figures (no dbt): money beyond a float's 2^53."""
    with open_warehouse(path):
        pass  # Bronze's schema, as a real warehouse has it
    con = duckdb.connect(str(path))
    try:
        con.execute("create schema gold")
        con.execute(
            "create table gold.daily_orders as select * from (values"
            " (date '2026-01-01', 2::bigint), (date '2026-01-02', 1::bigint))"
            " t(order_date, orders_created)"
        )
        con.execute(
            "create table gold.daily_revenue (revenue_date date, gross_revenue decimal(38, 2),"
            " refunds decimal(38, 2), net_revenue decimal(38, 2))"
        )
        con.execute(
            "insert into gold.daily_revenue values"
            " ('2026-01-01', 9999999999999999.99, 0, 9999999999999999.99),"
            " ('2026-01-02', 90071992547409.93, 0.10, 90071992547409.83)"
        )
        con.execute(
            "create table gold.daily_conversion as select * from (values"
            " (date '2026-01-01', 2::bigint, 1::bigint, 0.5::double),"
            " (date '2026-01-02', 1::bigint, 1::bigint, 1.0::double))"
            " t(order_date, orders_created, orders_converted, conversion_rate)"
        )
        con.execute(
            "create table gold.order_rates as select 3::bigint as orders_created,"
            " 2 / 3 as conversion_rate, 0.0 as canceled_rate, 1 / 3 as refunded_rate,"
            " 1 / 3 as canceled_or_refunded_rate"
        )
        con.execute(
            "create table gold.top_products (product_id varchar, product_name varchar,"
            " category varchar, units_sold bigint, revenue decimal(38, 2), revenue_rank bigint)"
        )
        con.execute(
            "insert into gold.top_products values"
            " ('p1', 'Big', 'c', 1, 9999999999999999.99, 1),"
            " ('p2', 'Odd', 'c', 3, 90071992547409.93, 2)"
        )
        con.execute(
            "create table gold.fulfillment_lead_times (segment varchar, orders bigint,"
            " mean_hours double, p50_hours double, p90_hours double)"
        )
        con.execute(
            "create table gold.build_info as select"
            " timestamptz '2026-01-03 00:00:00+00' as built_at,"
            " timestamptz '2026-01-02 23:00:00+00' as events_ingested_through,"
            " 5::bigint as bronze_event_rows, 4::bigint as bronze_reference_rows"
        )
        if freshness:  # Bronze now: 7 event rows (2 since the build), 4 reference rows
            con.execute(
                "create table gold.pipeline_freshness as select * from (values"
                " ('events', 'order_events', 3::bigint, timestamptz '2026-01-03 01:00:00+00'),"
                " ('events', 'payment_events', 4::bigint, timestamptz '2026-01-02 23:00:00+00'),"
                " ('events', 'shipment_events', 0::bigint, null::timestamptz),"
                " ('reference', 'customers', 4::bigint, timestamptz '2026-01-01 00:00:00+00'),"
                " ('reference', 'products', 0::bigint, null::timestamptz))"
                " t(bronze_kind, bronze_table, bronze_rows, last_ingested_at)"
            )
    finally:
        con.close()
    return path


def answers_cli(warehouse: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "retail_pipeline.cli", "answers", "--json"],
        env={**os.environ, "RETAIL_WAREHOUSE": str(warehouse)},
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=300,
        check=False,
    )


def test_money_leaves_gold_as_exact_decimal_text(tmp_path: Path) -> None:
    warehouse = handmade_gold(tmp_path / "hand.duckdb")
    result = answers_cli(warehouse)
    assert result.returncode == 0, result.stderr
    answers = json.loads(result.stdout)
    revenue = answers["revenue"]
    # 9999999999999999.99 + 90071992547409.93, summed exactly: a float gives 1.0090071992547409e16
    assert revenue["gross"] == "10090071992547409.92"
    assert revenue["refunds"] == "0.10"
    assert revenue["net"] == "10090071992547409.82"
    assert revenue["by_day"] == [
        {"date": "2026-01-01", "gross": "9999999999999999.99", "refunds": "0.00",
         "net": "9999999999999999.99"},
        {"date": "2026-01-02", "gross": "90071992547409.93", "refunds": "0.10",
         "net": "90071992547409.83"},
    ]  # fmt: skip
    assert [row["revenue"] for row in answers["top_products"]] == [
        "9999999999999999.99",
        "90071992547409.93",
    ]
    assert "e+" not in result.stdout and '"9999999999999999.99"' in result.stdout
    # rates and counts stay JSON numbers
    assert answers["cancel_refund"]["orders"] == 3
    assert answers["conversion_rate"]["overall"] == pytest.approx(2 / 3)
    # the tables print the same exact figures
    table = format_answers(read_answers(warehouse))
    assert "9,999,999,999,999,999.99" in table and "90,071,992,547,409.93" in table


def test_freshness_is_read_from_gold_alone(tmp_path: Path) -> None:
    warehouse = handmade_gold(tmp_path / "hand.duckdb")
    status = gold_status(warehouse)
    assert (status.events_since, status.reference_rows_since) == (2, 0)
    assert status.bronze_ingested_through == datetime(2026, 1, 3, 1, tzinfo=UTC)
    warning = answers_cli(warehouse).stderr.strip()
    assert warning == (
        "warning: Gold was built at 2026-01-03 00:00:00 UTC; Bronze has 2 events ingested"
        " since; run `retail-pipeline transform`"
    )

    old = handmade_gold(tmp_path / "old.duckdb", freshness=False)
    status = gold_status(old)
    assert not status.freshness_known
    assert "gold.pipeline_freshness is missing" in (status.warning() or "")
    assert answers_cli(old).returncode == 0
