"""The restatement ledger (gold.figure_ledger): late events in a second run produce exactly the
rows worked out by hand (which figures, old, new, delta, the loads that caused them); a rerun
with nothing new, one testing everything and a full refresh add none."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb

from retail_pipeline.transform.ledger import read_restatements
from retail_pipeline.transform.semantic import semantic_layer

from .conftest import load, transform
from .test_handbuilt import Events, at, run_cli

DAY = "2026-02-01"
DAY2 = "2026-02-02"


def first_run() -> Events:
    e = Events()
    e.order("order_created", "o1", at(DAY, 1), "USD", [("p_a", 2, "10.00")])
    e.payment("payment_captured", "o1", at(DAY, 2), "USD", "20.00")
    e.order("order_created", "o2", at(DAY, 3), "USD", [("p_b", 1, "5.00")])
    # o3's capture comes first; its order_created is late (an orphan until then)
    e.payment("payment_captured", "o3", at(DAY, 5), "USD", "7.00")
    e.order("order_created", "o4", at(DAY2, 1), "USD", [("p_c", 1, "4.00")])
    e.payment("payment_captured", "o4", at(DAY2, 2), "USD", "4.00")
    return e


def late_arrivals(e: Events) -> tuple[list[str], list[str]]:
    """Two later loads: o2's capture and o3's order (L2); o4's refund and a duplicate (L3)."""
    start = len(e.lines)
    e.payment("payment_captured", "o2", at(DAY, 4), "USD", "5.00")
    e.order("order_created", "o3", "2026-02-01T04:30:00.000Z", "USD", [("p_a", 1, "7.00")])
    second = e.lines[start:]
    start = len(e.lines)
    e.payment("payment_refunded", "o4", at(DAY2, 6), "USD", "4.00")
    third = [*e.lines[start:], e.lines[1]]  # o1's capture delivered again: nothing changes
    return second, third


def write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def ledger(warehouse: Path) -> list[tuple[object, ...]]:
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        return con.execute(
            "select figure, figure_key, previous_value::varchar, figure_value::varchar,"
            " delta::varchar,"
            " is_restatement, cause_loads, is_current from gold.figure_ledger"
            " order by recorded_at, figure, figure_key"
        ).fetchall()
    finally:
        con.close()


def load_of(warehouse: Path, path: Path) -> str:
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        rows = con.execute("select load_id from bronze._loads where source = ?", [str(path)])
        (load_id,) = rows.fetchone() or (None,)
    finally:
        con.close()
    assert load_id, path
    return str(load_id)


def test_late_events_restate_exactly_the_figures_worked_out_by_hand(tmp_path: Path) -> None:
    warehouse = tmp_path / "ledger.duckdb"
    events = first_run()
    first = write(tmp_path / "first.ndjson", list(events.lines))
    second_lines, third_lines = late_arrivals(events)
    second = write(tmp_path / "second.ndjson", second_lines)
    third = write(tmp_path / "third.ndjson", third_lines)

    load(warehouse, events=[first])
    transform(warehouse)
    published = ledger(warehouse)
    assert published, "the first build publishes every figure"
    assert not any(row[5] for row in published), "a first publication is not a restatement"
    assert all(row[7] for row in published)
    current = {(figure, key): value for figure, key, _, value, *_ in published}
    assert current[("orders_created", DAY)] == "2.000000"  # o3 is an orphan so far
    assert current[("gross_revenue", DAY)] == "20.000000"
    assert current[("product_revenue", "p_a")] == "20.000000"
    assert current[("lead_time_orders", "created_to_shipped")] == "0.000000"
    assert current[("lead_time_mean_hours", "created_to_shipped")] is None

    load(warehouse, events=[second])
    load(warehouse, events=[third])
    l2, l3 = load_of(warehouse, second), load_of(warehouse, third)
    transform(warehouse)

    rows = ledger(warehouse)[len(published) :]
    restated = {
        (f, k): (old, new, delta, causes) for f, k, old, new, delta, r, causes, _ in rows if r
    }
    assert restated == {
        ("orders_created", DAY): ("2.000000", "3.000000", "1.000000", l2),
        ("orders_converted", DAY): ("1.000000", "3.000000", "2.000000", l2),
        ("gross_revenue", DAY): ("20.000000", "32.000000", "12.000000", l2),
        ("net_revenue", DAY): ("20.000000", "32.000000", "12.000000", l2),
        ("product_revenue", "p_a"): ("20.000000", "27.000000", "7.000000", l2),
        ("product_units", "p_a"): ("2.000000", "3.000000", "1.000000", l2),
        ("orders_refunded", DAY2): ("0.000000", "1.000000", "1.000000", l3),
        ("orders_canceled_or_refunded", DAY2): ("0.000000", "1.000000", "1.000000", l3),
        ("refunds", DAY2): ("0.000000", "4.000000", "4.000000", l3),
        ("net_revenue", DAY2): ("4.000000", "0.000000", "-4.000000", l3),
        # every order of p_c was refunded: it leaves top_products, its figures are 0 now
        ("product_revenue", "p_c"): ("4.000000", "0.000000", "-4.000000", l3),
        ("product_units", "p_c"): ("1.000000", "0.000000", "-1.000000", l3),
    }
    first_published = {(f, k): new for f, k, _, new, _, r, _, _ in rows if not r}
    assert first_published == {
        ("product_revenue", "p_b"): "5.000000",
        ("product_units", "p_b"): "1.000000",
    }

    # The current rows are the answers now; each figure has exactly one.
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        twice = con.execute(
            "select figure, figure_key from gold.figure_ledger where is_current"
            " group by all having count(*) > 1"
        ).fetchall()
        gross = con.execute(
            "select figure_value::varchar from gold.figure_ledger where is_current"
            " and figure = 'gross_revenue' and figure_key = ?",
            [DAY],
        ).fetchall()
        # The Restatements metric (Power BI's measure of that name) counts these rows.
        count = semantic_layer().sql("restatements")
        query = f"select figure, {count} from gold.figure_ledger group by figure"
        by_figure = dict(con.execute(query).fetchall())
    finally:
        con.close()
    assert twice == []
    assert gross == [("32.000000",)]
    assert sum(by_figure.values()) == len(restated) == 12
    assert by_figure["net_revenue"] == 2 and by_figure["product_units"] == 2
    assert by_figure["orders_created"] == 1 and by_figure["lead_time_orders"] == 0

    # Nothing new, everything tested again, a full refresh: the same Gold, no row.
    before = ledger(warehouse)
    assert transform(warehouse).skipped
    transform(warehouse, tests="all")
    transform(warehouse, full_refresh=True)
    assert ledger(warehouse) == before

    listed = read_restatements(warehouse)
    assert listed.more == 0
    assert {(row.figure, row.key): (row.previous, row.value, row.delta) for row in listed.rows}[
        ("gross_revenue", DAY)
    ] == ("20.00", "32.00", "12.00")
    assert {row.cause_loads for row in listed.rows} == {(l2,), (l3,)}

    shown = json.loads(run_cli("answers", "--restatements", "--json", warehouse=warehouse).stdout)
    assert len(shown["restatements"]) == len(restated)
    net = [r for r in shown["restatements"] if (r["figure"], r["key"]) == ("net_revenue", DAY2)]
    assert net[0]["old"] == "4.00" and net[0]["new"] == "0.00" and net[0]["delta"] == "-4.00"
    assert net[0]["cause_loads"] == [l3]
    later = run_cli("answers", "--restatements", "--since", "2999-01-01", warehouse=warehouse)
    assert "No published figure has been restated." in later.stdout
