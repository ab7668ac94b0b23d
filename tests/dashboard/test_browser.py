"""The dashboard in a real browser: it renders cleanly, shows exactly `answers --json`, filters
as SQL says, and follows the warehouse while events stream in.

The streaming test changes the session's warehouse, so it runs last (tests run in file order).
"""

from __future__ import annotations

import json
import time
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import duckdb
import pytest

from retail_pipeline.errors import WarehouseError
from retail_pipeline.ingestion.files import ingest_files
from retail_pipeline.transform import read_answers
from retail_pipeline.warehouse import open_warehouse
from tests.dashboard.conftest import Problems, Server, Shop, transform


def kpis(page: Any) -> dict[str, Any]:
    """Every value the page shows with a ``data-kpi`` path, as the page holds it (JSON)."""
    pairs = page.eval_on_selector_all(
        "[data-kpi]", "els => els.map(e => [e.dataset.kpi, e.dataset.value])"
    )
    return {path: json.loads(value) if value else None for path, value in pairs}


def lookup(answers: dict[str, Any], path: str) -> Any:
    node: Any = answers
    for key in path.split("."):
        node = node[int(key)] if isinstance(node, list) else node[key]
    return node


def assert_kpis_equal_answers(page: Any, answers: dict[str, Any]) -> None:
    shown = kpis(page)
    required = {
        "cancel_refund.orders",
        "revenue.gross",
        "revenue.refunds",
        "revenue.net",
        "conversion_rate.overall",
        "cancel_refund.canceled_rate",
        "cancel_refund.refunded_rate",
        "cancel_refund.canceled_or_refunded_rate",
        *(
            f"top_products.{rank}.{field}"
            for rank in range(len(answers["top_products"]))
            for field in ("product_id", "category", "units", "revenue")
        ),
        *(
            f"lead_times_hours.{segment}.{stat}"
            for segment in answers["lead_times_hours"]
            for stat in ("count", "mean", "p50", "p90")
        ),
    }
    assert required <= shown.keys()
    for path, value in shown.items():
        assert value == lookup(answers, path), path


def test_page_renders_without_console_errors(
    page: Any, server: Server, page_problems: Problems
) -> None:
    for chart in ("orders", "revenue", "conversion", "status", "products", "lead-times"):
        assert page.locator(f"#chart-{chart} svg").count() == 1, chart
    assert "Amount (USD)" in (page.locator("#chart-revenue svg").text_content() or "")
    # under the Content-Security-Policy (no inline script or style, no eval): a refused
    # script, style or eval would be a console error here
    assert page_problems.console == []
    assert page_problems.requests == []  # everything came from the server itself: no CDN
    assert page.get_attribute("body", "data-state") == "ready"


def test_every_kpi_equals_answers_json(page: Any, shop: Shop) -> None:
    answers = read_answers(shop.warehouse)
    assert_kpis_equal_answers(page, answers)
    net = page.locator(".kpi [data-kpi='revenue.net']").inner_text()
    assert answers["revenue"]["net"] == kpis(page)["revenue.net"]  # exact decimal text
    assert net == f"${Decimal(answers['revenue']['net']):,.2f}"
    assert page.locator("#top-products tbody tr").count() == len(answers["top_products"])


def expected_for(
    warehouse: Path, country: str, category: str, first: str, last: str
) -> dict[str, Any]:
    """The filtered figures, from Silver with SQL of its own (not the dashboard's queries)."""
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        selected = """
            select o.order_id, o.order_date, o.is_converted, o.is_canceled, o.is_refunded
            from silver.int_orders as o
            join silver.customers_history as c on c.customer_id = o.customer_id and c.is_current
            where c.country_code = $country
              and o.order_id in (
                  select i.order_id from silver.int_order_items as i
                  join silver.products_history as p on p.product_id = i.product_id and p.is_current
                  where p.category = $category)
        """
        params = {"country": country, "category": category, "first": first, "last": last}
        orders, converted, gone = con.execute(
            f"""select count(*), count(*) filter (where is_converted),
                       count(*) filter (where is_canceled or is_refunded)
                from ({selected}) where order_date between $first and $last""",
            params,
        ).fetchone()  # type: ignore[misc]
        gross, refunds = con.execute(
            f"""select
                    coalesce(sum(amount) filter (where event_type = 'payment_captured'), 0),
                    coalesce(sum(amount) filter (where event_type = 'payment_refunded'), 0)
                from (select distinct event_id, event_type, amount, order_id, event_date, currency
                      from silver.stg_bronze__payment_events)
                where currency = 'USD' and event_date between $first and $last
                  and order_id in (select order_id from ({selected}))""",
            params,
        ).fetchone()  # type: ignore[misc]
        top = con.execute(
            f"""select i.product_id, sum(i.line_amount) as exact
                from silver.int_order_items as i
                join silver.products_history as p on p.product_id = i.product_id and p.is_current
                join silver.int_orders as o on o.order_id = i.order_id
                where o.is_revenue_eligible and p.category = $category
                  and o.order_id in (select order_id from ({selected})
                                     where order_date between $first and $last)
                group by i.product_id order by exact desc, i.product_id limit 1""",
            params,
        ).fetchone()
    finally:
        con.close()
    cents = Decimal("0.01")
    return {
        "cancel_refund.orders": orders,
        "conversion_rate.overall": converted / orders if orders else 0.0,
        "cancel_refund.canceled_or_refunded_rate": gone / orders if orders else 0.0,
        "revenue.gross": f"{gross:.2f}",
        "revenue.refunds": f"{refunds:.2f}",
        "revenue.net": f"{gross - refunds:.2f}",
        "top_products.0.product_id": top[0] if top else None,
        "top_products.0.revenue": f"{top[1].quantize(cents, ROUND_HALF_UP):f}" if top else None,
    }


def test_a_filter_changes_the_numbers_as_sql_says(page: Any, shop: Shop) -> None:
    unfiltered = kpis(page)
    options = page.eval_on_selector_all(
        "select[name=country] option, select[name=category] option",
        "els => els.map(e => [e.parentElement.name, e.value])",
    )
    countries = [value for name, value in options if name == "country" and value]
    categories = [value for name, value in options if name == "category" and value]
    first, last = (
        page.get_attribute("input[name=date_from]", "min"),
        page.get_attribute("input[name=date_to]", "max"),
    )
    first_day = "2026-01-02" if first <= "2026-01-02" <= last else first
    # The first pair that has orders in the window (which pairs do depends on the simulation).
    country, category = next(
        (country, category)
        for country in countries
        for category in categories
        if expected_for(shop.warehouse, country, category, first_day, last)["cancel_refund.orders"]
    )
    page.fill("input[name=date_from]", first_day)
    page.dispatch_event("input[name=date_from]", "change")
    page.select_option("select[name=country]", country)
    page.select_option("select[name=category]", category)
    wanted = f"date_from={first_day}&category={category.replace(' ', '+').replace('&', '%26')}"
    wanted += f"&country={country}"
    page.wait_for_function("q => document.body.dataset.query === q", arg=wanted)

    shown = kpis(page)
    expected = expected_for(shop.warehouse, country, category, first_day, last)
    assert expected["cancel_refund.orders"] > 0
    assert shown["cancel_refund.orders"] < unfiltered["cancel_refund.orders"]
    for path, value in expected.items():
        if path.startswith("top_products.0.") and "top_products.0.product_id" not in shown:
            assert value is None
            continue
        assert shown[path] == value, path

    page.click("#reset")
    page.wait_for_function("() => document.body.dataset.query === ''")
    assert kpis(page) == unfiltered


def test_screenshot(page: Any, tmp_path: Path) -> None:
    out = tmp_path / "dashboard.png"
    page.screenshot(path=str(out), full_page=True)
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 50_000


def wait_for(page: Any, script: str, arg: object = None, timeout_s: float = 60) -> None:
    page.wait_for_function(script, arg=arg, timeout=timeout_s * 1000, polling=200)


def transform_when_free(warehouse: Path, timeout_s: float = 60) -> None:
    """`transform`, retried while the dashboard's moment-long read holds the file."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            transform(warehouse)
            return
        except WarehouseError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@pytest.mark.timeout(300)
def test_numbers_refresh_while_events_stream(page: Any, shop: Shop) -> None:
    before = read_answers(shop.warehouse)
    # A consumer takes turns with readers (exclusive=False), like `ingest --kafka` does.
    with open_warehouse(shop.warehouse, exclusive=False) as wh:
        ingest_files(wh, shop.second_half)
    wait_for(page, "() => /ingested since/.test(document.getElementById('warning').textContent)")
    shown = kpis(page)
    assert shown.get("cancel_refund.orders") == before["cancel_refund"]["orders"], shown

    transform_when_free(shop.warehouse)
    after = read_answers(shop.warehouse)
    assert after["cancel_refund"]["orders"] > before["cancel_refund"]["orders"]
    wait_for(
        page,
        "n => document.querySelector(\".kpi [data-kpi='cancel_refund.orders']\").dataset.value"
        " === String(n) && document.getElementById('warning').hidden",
        after["cancel_refund"]["orders"],
    )
    assert_kpis_equal_answers(page, after)


def late_orders(shop: Shop, day: str) -> set[str]:
    """Orders of ``day`` whose order_created first arrived in the second half (read from the
    event files; Bronze says only which lines the contract accepted)."""

    def created(paths: list[Path]) -> dict[str, str]:
        found: dict[str, str] = {}
        for path in paths:
            if not path.name.endswith("orders.ndjson"):
                continue
            for line in path.read_bytes().splitlines():
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                if (
                    isinstance(event, dict)
                    and event.get("event_type") == "order_created"
                    and str(event.get("event_timestamp", ""))[:10] == day
                ):
                    found.setdefault(str(event.get("event_id")), str(event.get("order_id")))
        return found

    first, second = created(shop.first_half), created(shop.second_half)
    con = duckdb.connect(str(shop.warehouse), read_only=True)
    try:  # the lines the contract accepted (a malformed one is a dead letter, no order)
        valid = {
            str(event_id)
            for (event_id,) in con.execute(
                "select event_id from bronze.order_events where event_type = 'order_created'"
            ).fetchall()
        }
    finally:
        con.close()
    return {
        order for event_id, order in second.items() if event_id not in first and event_id in valid
    }


@pytest.mark.timeout(300)
def test_a_restated_day_is_marked_and_drills_through_to_its_late_events(
    page: Any, shop: Shop
) -> None:
    """After the streaming test's second build (it runs before this one): the days whose
    published orders a later build changed carry the "restated" badge, and the drill-through
    of one lists its figures, its restatement and, marked late, the orders whose events came
    in the load that restated it."""
    con = duckdb.connect(str(shop.warehouse), read_only=True)
    try:
        restated = {
            key
            for (key,) in con.execute(
                "select distinct figure_key from gold.figure_ledger"
                " where is_restatement and grain in ('order_date', 'revenue_date')"
            ).fetchall()
        }
        days = sorted(
            key
            for (key,) in con.execute(
                "select distinct figure_key from gold.figure_ledger where is_restatement"
                " and figure = 'orders_created'"
            ).fetchall()
        )
    finally:
        con.close()
    assert days, "the second half restated the orders of some day"
    wait_for(
        page,
        "d => document.querySelector(`#daily tr[data-date='${d}']`)?.dataset.restated === 'true'",
        days[0],
    )
    marks = page.eval_on_selector_all(
        "#daily tbody tr", "rows => rows.map(r => [r.dataset.date, r.dataset.restated])"
    )
    assert marks and {day for day, on in marks if on == "true"} == restated & {d for d, _ in marks}

    late = set()
    day = days[0]
    for day in days:  # a day with orders that arrived late (the ledger says which loads)
        late = late_orders(shop, day)
        if late:
            break
    assert late
    page.click(f"#daily tr[data-date='{day}'] td")
    wait_for(
        page,
        "t => document.body.dataset.drill === 'ready' && document.body.dataset.drillTitle === t",
        f"Behind {day}",
    )
    marked = page.eval_on_selector_all(
        "#drill-body article:first-child tr[data-late='true'][data-rule='counted']",
        "rows => rows.map(r => r.dataset.order)",
    )
    assert set(marked) == late
    text = page.text_content("#drill-body") or ""
    assert "orders_created: published" in text and "adds up" in text
    assert "does not add up" not in text
    assert page.locator("#drill-body article:first-child li.restatement").count() >= 1
