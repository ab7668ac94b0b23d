"""The order statuses and their precedence are stated once: dbt/macros/order_statuses.sql.

int_orders renders its status from the macro, gold.dim_order_statuses holds the list for
everyone who reads Gold (orders_by_status, the dashboard, Power BI), and no code states the
list again.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import duckdb

from retail_pipeline.transform import project_dir

ROOT = Path(__file__).resolve().parents[2]
MACRO = project_dir() / "macros" / "order_statuses.sql"
SEED = 11  # the warehouse test_reconciliation and test_incremental build


def macro_statuses() -> list[str]:
    return re.findall(r"'status': '([A-Z_]+)'", MACRO.read_text())


def test_no_code_lists_the_statuses_again() -> None:
    """A status that only the precedence names (PAYMENT_FAILED) appears in no SQL, Python or
    JavaScript outside the macro (unit tests' expected rows and docs are not code)."""
    assert "PAYMENT_FAILED" in macro_statuses()
    code = [
        path
        for folder in (project_dir() / "models", project_dir() / "macros", ROOT / "src")
        for pattern in ("*.sql", "*.py", "*.js")
        for path in folder.rglob(pattern)
        if "vendor" not in path.parts
    ]
    assert len(code) > 50
    stating = [path for path in code if "PAYMENT_FAILED" in path.read_text() and path != MACRO]
    assert stating == []


def test_gold_lists_the_statuses_in_the_macros_order(built: Callable[[int], Path]) -> None:
    con = duckdb.connect(str(built(SEED)), read_only=True)
    try:
        listed = con.execute(
            "select order_status, status_order from gold.dim_order_statuses order by status_order"
        ).fetchall()
        counted = dict(
            con.execute("select order_status, orders from gold.orders_by_status").fetchall()
        )
        rows = con.execute("select distinct order_status from gold.fct_orders").fetchall()
        statuses = {status for (status,) in rows}
    finally:
        con.close()
    assert listed == [(status, index) for index, status in enumerate(macro_statuses(), start=1)]
    assert list(counted) and set(counted) == {status for status, _ in listed}
    assert statuses <= set(counted) and len(statuses) >= 5
