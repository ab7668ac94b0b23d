"""Every dashboard figure, under many filters, equals the same figure queried straight from Gold.

The dashboard computes its figures with the SQL rendered from dbt's semantic layer; here each
one is computed again, independently, by queries written out in this file on the star schema
of the warehouse (fct_orders, fct_order_items, fct_payments and the dimensions), following
docs/metrics.md and docs/dashboard.md's filters. Dates, category, country, payment method,
carrier, their combinations and a selection with no order at all are checked.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import duckdb
import pytest

from retail_pipeline.dashboard import Filters, take_snapshot
from tests.dashboard.conftest import Shop

SEGMENTS = ("created_to_shipped", "shipped_to_delivered", "created_to_delivered")
CENT = Decimal("0.01")


def _cents(value: Decimal) -> str:
    return str(value.quantize(CENT, rounding=ROUND_HALF_UP))


def _interpolated(values: list[float], fraction: float) -> float:
    """percentile_cont by hand: linear between the two neighbours of rank fraction x (n - 1)."""
    ordered = sorted(values)
    rank = fraction * (len(ordered) - 1)
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (rank - low) * (ordered[high] - ordered[low])


def expected_figures(con: duckdb.DuckDBPyConnection, filters: Filters) -> dict[str, Any]:
    """The figures of ``filters`` from the Gold star schema, by this file's own queries."""
    con.execute(
        """
        create or replace temp table picked as
        select o.order_id
        from gold.fct_orders as o
        left join gold.dim_customers as c on c.customer_id = o.customer_id
        where ($country::varchar is null or c.country_code = $country)
          and ($method::varchar is null or o.payment_method = $method)
          and ($carrier::varchar is null or o.carrier = $carrier)
          and ($category::varchar is null or o.order_id in (
              select i.order_id from gold.fct_order_items as i
              join gold.dim_products as p on p.product_id = i.product_id
              where p.category = $category))
        """,
        {
            "country": filters.country,
            "method": filters.payment_method,
            "carrier": filters.carrier,
            "category": filters.category,
        },
    )
    dates = {"first": filters.date_from, "last": filters.date_to}
    in_range = "($first::date is null or {0} >= $first) and ($last::date is null or {0} <= $last)"
    con.execute(
        "create or replace temp table picked_orders as select o.* from gold.fct_orders as o"
        " where o.order_id in (select order_id from picked) and " + in_range.format("o.order_date"),
        dates,
    )
    orders = con.execute(
        "select order_date, is_converted, is_canceled, is_refunded, order_status,"
        " hours_created_to_shipped, hours_shipped_to_delivered, hours_created_to_delivered"
        " from picked_orders"
    ).fetchall()

    per_day: dict[date, list[bool]] = {}
    for order_date, converted, *_ in orders:
        per_day.setdefault(order_date, []).append(converted)
    total = len(orders)

    def share(part: int) -> float:
        return part / total if total else 0.0

    converted_all = sum(1 for row in orders if row[1])
    canceled = sum(1 for row in orders if row[2])
    refunded = sum(1 for row in orders if row[3])
    either = sum(1 for row in orders if row[2] or row[3])

    money_rows = con.execute(
        "select movement_date, movement_type, amount from gold.fct_payments"
        " where is_reporting_currency and order_id in (select order_id from picked) and "
        + in_range.format("movement_date"),
        dates,
    ).fetchall()
    revenue_days: dict[date, list[Decimal]] = {}
    for day, kind, amount in money_rows:
        sums = revenue_days.setdefault(day, [Decimal(0), Decimal(0)])
        sums[0 if kind == "capture" else 1] += amount
    gross = sum((sums[0] for sums in revenue_days.values()), Decimal(0))
    refunds = sum((sums[1] for sums in revenue_days.values()), Decimal(0))

    products = con.execute(
        """
        select i.product_id, p.product_name, p.category, sum(i.quantity), sum(i.line_amount)
        from gold.fct_order_items as i
        join picked_orders as o on o.order_id = i.order_id
        left join gold.dim_products as p on p.product_id = i.product_id
        where i.is_revenue_eligible and ($category::varchar is null or p.category = $category)
        group by all
        """,
        {"category": filters.category},
    ).fetchall()
    products.sort(key=lambda row: (-row[4], row[0]))

    statuses = [s for (s,) in con.execute(
        "select order_status from gold.dim_order_statuses order by status_order"
    ).fetchall()]  # fmt: skip
    hours = {
        segment: [row[5 + index] for row in orders if row[5 + index] is not None]
        for index, segment in enumerate(SEGMENTS)
    }

    def lead(values: list[float]) -> dict[str, Any]:
        if not values:
            return {"count": 0, "mean": None, "p50": None, "p90": None}
        return {
            "count": len(values),
            "mean": pytest.approx(sum(values) / len(values), rel=1e-12, abs=1e-9),
            "p50": pytest.approx(_interpolated(values, 0.5), rel=1e-12, abs=1e-9),
            "p90": pytest.approx(_interpolated(values, 0.9), rel=1e-12, abs=1e-9),
        }

    return {
        "orders_per_day": [
            {"date": day.isoformat(), "orders": len(flags)}
            for day, flags in sorted(per_day.items())
        ],
        "conversion_rate": {
            "overall": share(converted_all),
            "by_day": [
                {
                    "date": day.isoformat(),
                    "created": len(flags),
                    "converted": sum(flags),
                    "rate": sum(flags) / len(flags),
                }
                for day, flags in sorted(per_day.items())
            ],
        },
        "cancel_refund": {
            "orders": total,
            "canceled_rate": share(canceled),
            "refunded_rate": share(refunded),
            "canceled_or_refunded_rate": share(either),
        },
        "revenue": {
            "gross": _cents(gross),
            "refunds": _cents(refunds),
            "net": _cents(gross - refunds),
            "by_day": [
                {
                    "date": day.isoformat(),
                    "gross": _cents(day_gross),
                    "refunds": _cents(day_refunds),
                    "net": _cents(day_gross - day_refunds),
                }
                for day, (day_gross, day_refunds) in sorted(revenue_days.items())
            ],
        },
        "top_products": [
            {
                "product_id": product_id,
                "product_name": name,
                "category": category,
                "units": int(units),
                "revenue": _cents(exact),
            }
            for product_id, name, category, units, exact in products[:10]
        ],
        "status_funnel": [
            {
                "status": status,
                "orders": sum(1 for row in orders if row[4] == status),
                "share": share(sum(1 for row in orders if row[4] == status)),
            }
            for status in statuses
        ],
        "lead_times_hours": {segment: lead(values) for segment, values in hours.items()},
    }


def _choices(options: dict[str, Any]) -> list[Filters]:
    """Single filters, combinations and an empty selection, from the values the data offers."""
    first = date.fromisoformat(options["date_min"])
    last = date.fromisoformat(options["date_max"])
    middle = first + timedelta(days=1)
    category, country = options["category"][0], options["country"][-1]
    method, carrier = options["payment_method"][0], options["carrier"][-1]
    dated = Filters(date_from=middle, date_to=last - timedelta(days=1))
    return [
        Filters(),
        dated,
        Filters(date_from=middle),
        Filters(date_to=middle),
        Filters(category=category),
        Filters(country=country),
        Filters(payment_method=method),
        Filters(carrier=carrier),
        replace(dated, category=category, country=country),
        Filters(payment_method=method, carrier=carrier, category=options["category"][-1]),
        replace(dated, payment_method=options["payment_method"][-1], carrier=carrier),
        Filters(country="no such country"),
        Filters(date_from=last + timedelta(days=1)),
        Filters(date_from=last, date_to=first),
    ]


@pytest.fixture(scope="module")
def compared(shop: Shop) -> Iterator[list[tuple[Filters, dict[str, Any], dict[str, Any]]]]:
    """(filters, the dashboard's figures, the star schema's figures) for each selection."""
    snapshot = take_snapshot(shop.warehouse)
    try:
        choices = _choices(snapshot.options())
        shown = [snapshot.figures(filters) for filters in choices]
    finally:
        snapshot.close()
    con = duckdb.connect(str(shop.warehouse), read_only=True)
    try:
        yield [
            (filters, figures, expected_figures(con, filters))
            for filters, figures in zip(choices, shown, strict=True)
        ]
    finally:
        con.close()


FIGURES = (
    "orders_per_day",
    "revenue",
    "conversion_rate",
    "top_products",
    "cancel_refund",
    "status_funnel",
    "lead_times_hours",
)


@pytest.mark.parametrize("figure", FIGURES)
def test_each_figure_equals_the_star_schemas(
    figure: str, compared: list[tuple[Filters, dict[str, Any], dict[str, Any]]]
) -> None:
    for filters, shown, expected in compared:
        assert shown[figure] == expected[figure], filters


def test_the_selections_cover_orders_money_and_nothing(
    compared: list[tuple[Filters, dict[str, Any], dict[str, Any]]],
) -> None:
    """The filters are not vacuous: most select some orders and money, fewer than all, and
    some select nothing."""
    everything = compared[0][2]["cancel_refund"]["orders"]
    counts = [expected["cancel_refund"]["orders"] for _, _, expected in compared]
    assert everything > 0
    assert sum(1 for n in counts if 0 < n < everything) >= 9, counts
    assert counts.count(0) >= 3, counts
    assert all(
        expected["revenue"]["by_day"] and expected["top_products"]
        for _, _, expected in compared
        if expected["cancel_refund"]["orders"] > 20
    )
