"""The six answers of docs/metrics.md, read from the Gold layer, and how fresh Gold is.

:func:`read_answers` returns exactly the JSON shape of docs/metrics.md (money as exact decimal
text, e.g. ``"90071992547409.93"``; the simulator's ``truth.json`` has the same shape with money
as numbers, and ``compare_with_truth`` compares them as decimals); :func:`format_answers`
renders the same answers as tables. :func:`gold_status` says when Gold was built and whether
Bronze has grown since (stale answers), from Gold alone.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Context, Decimal
from typing import Any

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from retail_pipeline.errors import PipelineError
from retail_pipeline.events.contract import REPORTING_CURRENCY
from retail_pipeline.settings import layer_schema
from retail_pipeline.warehouse import Warehouse, open_warehouse

TOP_PRODUCTS = 10
LEAD_TIME_SEGMENTS = ("created_to_shipped", "shipped_to_delivered", "created_to_delivered")
GOLD_TABLES = (
    "daily_orders",
    "daily_revenue",
    "daily_conversion",
    "order_rates",
    "top_products",
    "fulfillment_lead_times",
)


CENT = Decimal("0.01")
_MONEY_CONTEXT = Context(prec=80)
"""Wide enough for any DECIMAL(38, s): money text is never rounded by the context."""


def money_text(value: Decimal | int | None) -> str:
    """A money figure as reported: Gold rounds to cents (half away from zero) exactly once;
    here the exact decimal becomes its exact text, e.g. ``"90071992547409.93"`` (never a
    binary float, which would print ``…94`` or ``1e+16``)."""
    cents = Decimal(value or 0)
    if not cents.is_finite() or cents != cents.quantize(CENT, context=_MONEY_CONTEXT):
        raise PipelineError(f"Gold holds a money figure that is not in cents: {cents}")
    text = f"{cents.quantize(CENT, context=_MONEY_CONTEXT):f}"
    return "0.00" if text == "-0.00" else text


def revenue_answer(by_day: Sequence[Sequence[Any]]) -> dict[str, Any]:
    """docs/metrics.md's revenue answer from (day, gross, refunds, net) rows, one per day:
    totals summed exactly, each figure rounded to cents once. ``answers`` reads the rows from
    Gold; the dashboard computes them for its filters."""
    gross, refunds, net = (sum((row[i] for row in by_day), Decimal(0)) for i in (1, 2, 3))
    return {
        "gross": money_text(gross),
        "refunds": money_text(refunds),
        "net": money_text(net),
        "by_day": [
            {
                "date": day.isoformat(),
                "gross": money_text(day_gross),
                "refunds": money_text(day_refunds),
                "net": money_text(day_net),
            }
            for day, day_gross, day_refunds, day_net in by_day
        ],
    }


@contextmanager
def _gold(warehouse: str | os.PathLike[str] | None, target: str | None) -> Iterator[Warehouse]:
    """The warehouse, read-only, once it is known to hold the Gold answers (in this
    environment's Gold schema, :func:`~retail_pipeline.settings.layer_schema`)."""
    gold = layer_schema("gold")
    with open_warehouse(
        warehouse, target=target, read_only=True, missing_hint="load and transform first"
    ) as wh:
        present = wh.tables(gold)
        missing = [name for name in GOLD_TABLES if name not in present]
        if missing:
            raise PipelineError(
                f"{wh.describe()} has no Gold answers yet (missing {gold}.{missing[0]});"
                " run `retail-pipeline transform` first"
            )
        yield wh


def read_answers(
    warehouse: str | os.PathLike[str] | None = None, *, target: str | None = None
) -> dict[str, Any]:
    """The six answers from Gold, in docs/metrics.md's JSON shape (``warehouse`` and ``target``
    as for ``run_transform``).

    Lists are sorted by date; money is in the reporting currency (dbt var
    ``reporting_currency``), summed exactly, rounded to cents once and given as exact decimal
    text (``"1234.50"``: JSON numbers are binary floats to most readers); rates are fractions;
    lead-time statistics of an empty segment are ``None``.
    """
    schema = layer_schema("gold")
    with _gold(warehouse, target) as gold:
        orders_per_day = [
            {"date": day.isoformat(), "orders": int(orders)}
            for day, orders in gold.query(
                f"select order_date, orders_created from {schema}.daily_orders order by order_date"
            )
        ]
        revenue_rows = gold.query(
            f"select revenue_date, gross_revenue, refunds, net_revenue from {schema}.daily_revenue"
            " order by revenue_date"
        )
        conversion_by_day = [
            {
                "date": day.isoformat(),
                "created": int(created),
                "converted": int(converted),
                "rate": float(rate),
            }
            for day, created, converted, rate in gold.query(
                "select order_date, orders_created, orders_converted, conversion_rate"
                f" from {schema}.daily_conversion order by order_date"
            )
        ]
        rates = gold.query(
            "select orders_created, conversion_rate, canceled_rate, refunded_rate,"
            f" canceled_or_refunded_rate from {schema}.order_rates"
        )
        orders, conversion, canceled, refunded, either = (
            rates[0] if rates else (0, 0.0, 0.0, 0.0, 0.0)
        )
        top_products = [
            {
                "product_id": product_id,
                "product_name": name,
                "category": category,
                "units": int(units),
                "revenue": money_text(revenue),
            }
            for product_id, name, category, units, revenue in gold.query(
                "select product_id, product_name, category, units_sold, revenue"
                f" from {schema}.top_products where revenue_rank <= ? order by revenue_rank",
                [TOP_PRODUCTS],
            )
        ]
        lead_rows = {
            segment: (count, mean, p50, p90)
            for segment, count, mean, p50, p90 in gold.query(
                "select segment, orders, mean_hours, p50_hours, p90_hours"
                f" from {schema}.fulfillment_lead_times"
            )
        }

    def stats(segment: str) -> dict[str, Any]:
        count, mean, p50, p90 = lead_rows.get(segment, (0, None, None, None))
        if not count:
            return {"count": 0, "mean": None, "p50": None, "p90": None}
        return {"count": int(count), "mean": float(mean), "p50": float(p50), "p90": float(p90)}

    return {
        "orders_per_day": orders_per_day,
        "revenue": revenue_answer(revenue_rows),
        "conversion_rate": {"overall": float(conversion), "by_day": conversion_by_day},
        "top_products": top_products,
        "cancel_refund": {
            "orders": int(orders),
            "canceled_rate": float(canceled),
            "refunded_rate": float(refunded),
            "canceled_or_refunded_rate": float(either),
        },
        "lead_times_hours": {segment: stats(segment) for segment in LEAD_TIME_SEGMENTS},
    }


FRESHNESS_VIEW = "pipeline_freshness"
"""The Gold view of Bronze's row counts and newest ``_ingested_at`` (read live)."""


@dataclass(frozen=True)
class GoldStatus:
    """When Gold was last built and how much Bronze has arrived since (``gold.build_info``
    against the live view ``gold.pipeline_freshness``: Gold alone, no Bronze privilege)."""

    built_at: datetime | None
    """When the last successful build wrote Gold (UTC); None if Gold has no build_info."""
    events_ingested_through: datetime | None
    """Newest Bronze event that build read (by ``_ingested_at``)."""
    events_since: int
    """Bronze event rows (duplicate deliveries included) ingested after that build."""
    reference_rows_since: int
    """Reference snapshot rows (customers, products) ingested after that build."""
    bronze_ingested_through: datetime | None = None
    """Newest ``_ingested_at`` in Bronze now (events and reference rows)."""
    freshness_known: bool = True
    """False when ``gold.pipeline_freshness`` is missing (Gold built by an older version) or
    cannot be read."""

    @property
    def is_stale(self) -> bool:
        """Bronze holds rows the answers do not include yet (or the build time is unknown)."""
        return self.built_at is None or self.events_since > 0 or self.reference_rows_since > 0

    def line(self) -> str:
        """One line saying when Gold was built, for the top of the answers."""
        if self.built_at is None:
            return "Gold build time unknown (no gold.build_info)"
        through = (
            f", from Bronze events ingested through {_utc(self.events_ingested_through)}"
            if self.events_ingested_through is not None
            else ""
        )
        return f"Gold built at {_utc(self.built_at)}{through}"

    def warning(self) -> str | None:
        """A one-line warning when the answers are stale, else None."""
        if self.built_at is None:
            return (
                "warning: Gold has no gold.build_info (its last build failed or predates it);"
                " run `retail-pipeline transform`"
            )
        if not self.freshness_known:
            return (
                f"warning: Gold was built at {_utc(self.built_at)}; gold.{FRESHNESS_VIEW} is"
                " missing or unreadable, so whether Bronze has grown since is unknown;"
                " run `retail-pipeline transform`"
            )
        if not self.is_stale:
            return None
        arrived = [
            f"{count:,} {label}{'' if count == 1 else 's'}"
            for count, label in (
                (self.events_since, "event"),
                (self.reference_rows_since, "reference row"),
            )
            if count
        ]
        return (
            f"warning: Gold was built at {_utc(self.built_at)}; Bronze has"
            f" {' and '.join(arrived)} ingested since; run `retail-pipeline transform`"
        )


def _utc(value: datetime | None) -> str:
    return "?" if value is None else value.strftime("%Y-%m-%d %H:%M:%S UTC")


def _utc_datetime(value: datetime | None) -> datetime | None:
    """A timestamp from Gold as an aware UTC datetime (a naive one is taken to be UTC)."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def gold_status(
    warehouse: str | os.PathLike[str] | None = None, *, target: str | None = None
) -> GoldStatus:
    """When Gold was last built, and how many Bronze rows were ingested after that build.

    Compares the Bronze row counts recorded in ``gold.build_info`` by the last successful
    build with Bronze now, as the live view ``gold.pipeline_freshness`` counts it (Bronze is
    append-only, so a larger count means rows the answers do
    not include yet, even rows whose batch was stamped before the build).
    """
    with _gold(warehouse, target) as gold:
        return status_of(gold)


def status_of(gold: Warehouse) -> GoldStatus:
    """:func:`gold_status` of a warehouse already open (e.g. by the dashboard's snapshot).

    Reads Gold only (``build_info`` and the view ``pipeline_freshness``), so the reporting
    role, which has no privilege on Bronze, can run it."""
    schema = layer_schema("gold")
    present = gold.tables(schema)
    if "build_info" not in present:
        return GoldStatus(None, None, 0, 0)
    rows = gold.query(
        "select built_at, events_ingested_through, bronze_event_rows, bronze_reference_rows"
        f" from {schema}.build_info order by built_at desc limit 1"
    )
    if not rows:
        return GoldStatus(None, None, 0, 0)
    built_at, through, event_rows, reference_rows = rows[0]
    if FRESHNESS_VIEW not in present:
        return GoldStatus(
            _utc_datetime(built_at), _utc_datetime(through), 0, 0, freshness_known=False
        )
    try:
        live = gold.query(
            f"select bronze_kind, bronze_rows, last_ingested_at from {schema}.{FRESHNESS_VIEW}"
        )
    except Exception:  # a view Bronze no longer matches: freshness unknown, answers still read
        return GoldStatus(
            _utc_datetime(built_at), _utc_datetime(through), 0, 0, freshness_known=False
        )
    now: dict[str, int] = {"events": 0, "reference": 0}
    newest: datetime | None = None
    for kind, count, last in live:
        now[str(kind)] = now.get(str(kind), 0) + int(count)
        stamp = _utc_datetime(last)
        if stamp is not None and (newest is None or stamp > newest):
            newest = stamp
    return GoldStatus(
        built_at=_utc_datetime(built_at),
        events_ingested_through=_utc_datetime(through),
        events_since=max(0, now["events"] - int(event_rows)),
        reference_rows_since=max(0, now["reference"] - int(reference_rows)),
        bronze_ingested_through=newest,
    )


def _money_cell(text: str) -> str:
    """Money text from the answers with thousands separators, exactly (no float)."""
    return f"{Decimal(text):,.2f}"


def _percent(rate: float) -> str:
    return f"{rate * 100:.2f}%"


def _hours(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f}"


def _tables(answers: Mapping[str, Any]) -> list[Table | Text]:
    conversion = {row["date"]: row for row in answers["conversion_rate"]["by_day"]}
    revenue = {row["date"]: row for row in answers["revenue"]["by_day"]}
    days = sorted({row["date"] for row in answers["orders_per_day"]} | revenue.keys())
    orders = {row["date"]: row["orders"] for row in answers["orders_per_day"]}

    daily = Table(
        title=f"Orders, conversion and revenue per day (UTC; money in {REPORTING_CURRENCY})",
        title_justify="left",
    )
    for header in ("date", "orders", "converted", "conversion", "gross", "refunds", "net"):
        daily.add_column(header, justify="left" if header == "date" else "right")
    for day in days:
        conv = conversion.get(day)
        rev = revenue.get(day, {"gross": "0.00", "refunds": "0.00", "net": "0.00"})
        daily.add_row(
            day,
            f"{orders.get(day, 0):,}",
            f"{conv['converted']:,}" if conv else "-",
            _percent(conv["rate"]) if conv else "-",
            _money_cell(rev["gross"]),
            _money_cell(rev["refunds"]),
            _money_cell(rev["net"]),
        )
    total_orders = answers["cancel_refund"]["orders"]
    money = answers["revenue"]
    daily.add_section()
    daily.add_row(
        "total",
        f"{total_orders:,}",
        f"{sum(row['converted'] for row in conversion.values()):,}",
        _percent(answers["conversion_rate"]["overall"]),
        _money_cell(money["gross"]),
        _money_cell(money["refunds"]),
        _money_cell(money["net"]),
        style="bold",
    )

    products = Table(title=f"Top products by revenue ({REPORTING_CURRENCY})", title_justify="left")
    for header, justify in (
        ("#", "right"),
        ("product", "left"),
        ("name", "left"),
        ("category", "left"),
        ("units", "right"),
        ("revenue", "right"),
    ):
        products.add_column(header, justify=justify)  # type: ignore[arg-type]
    for rank, row in enumerate(answers["top_products"], start=1):
        products.add_row(
            str(rank),
            Text(row["product_id"]),  # data, never markup: "[/red]" is a product name here
            Text(row["product_name"] or "?"),
            Text(row["category"] or "?"),
            f"{row['units']:,}",
            _money_cell(row["revenue"]),
        )

    rates = answers["cancel_refund"]
    cancel = Table(title="Canceled or refunded (share of orders created)", title_justify="left")
    for header in ("orders", "canceled", "refunded", "canceled or refunded"):
        cancel.add_column(header, justify="right")
    cancel.add_row(
        f"{rates['orders']:,}",
        _percent(rates["canceled_rate"]),
        _percent(rates["refunded_rate"]),
        _percent(rates["canceled_or_refunded_rate"]),
    )

    lead = Table(title="Fulfillment lead times (hours)", title_justify="left")
    for header in ("segment", "orders", "mean", "p50", "p90"):
        lead.add_column(header, justify="left" if header == "segment" else "right")
    for segment, row in answers["lead_times_hours"].items():
        lead.add_row(
            segment.replace("_", " "),
            f"{row['count']:,}",
            _hours(row["mean"]),
            _hours(row["p50"]),
            _hours(row["p90"]),
        )
    return [daily, products, cancel, lead]


def format_answers(
    answers: Mapping[str, Any],
    console: Console | None = None,
    *,
    status: GoldStatus | None = None,
) -> str:
    """The answers as readable tables; printed to ``console`` if given, and returned as text.

    With ``status`` (from :func:`gold_status`), a first line says when Gold was built.
    """
    parts: list[Table | Text] = [] if status is None else [Text(status.line() + "\n")]
    group = Group(*parts, *_tables(answers))
    if console is not None:
        console.print(group)
    buffer = Console(file=io.StringIO(), width=100, color_system=None, record=True)
    buffer.print(group)
    return buffer.export_text()
