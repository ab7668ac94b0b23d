"""What the dashboard shows: a snapshot of the Gold star schema and the queries on it.

A :class:`Snapshot` copies the few Gold columns the dashboard needs (facts and dimensions)
through the warehouse seam into an in-memory DuckDB, in one short read-only session, and then
answers every request from that copy: the live warehouse is never held open between refreshes,
so the loaders and ``transform`` keep writing. The same code reads DuckDB and Snowflake.

Every figure is a metric of dbt's semantic layer (``dbt/models/gold/semantic/``), computed on
the facts with the SQL ``transform.semantic`` renders from it, so with no filter the numbers
equal ``retail-pipeline answers`` (the tests check it, and check every filter against queries
on the star schema), and a filter narrows the orders counted (see docs/dashboard.md for what
each filter means). The order statuses and their order come from ``gold.dim_order_statuses``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from datetime import UTC, date, datetime
from typing import Any

import duckdb
import pyarrow as pa

from retail_pipeline.errors import PipelineError, printable
from retail_pipeline.monitoring.health import check_health
from retail_pipeline.settings import layer_schema
from retail_pipeline.transform.answers import (
    LEAD_TIME_SEGMENTS,
    TOP_PRODUCTS,
    GoldStatus,
    money_text,
    revenue_answer,
    status_of,
)
from retail_pipeline.transform.ledger import restated_keys
from retail_pipeline.transform.semantic import SemanticLayer, semantic_layer
from retail_pipeline.warehouse import Warehouse, open_warehouse

DAILY_ORDERS = ("orders", "orders_converted")
"""The metrics of each day's row of orders and conversion."""
ORDER_TOTALS = (
    "orders",
    "conversion_rate",
    "canceled_rate",
    "refunded_rate",
    "canceled_or_refunded_rate",
)
"""The metrics over all the selected orders."""
REVENUE = ("gross_revenue", "refunds")
"""The money movements of each day (net revenue is the derived metric on them)."""
PRODUCTS = ("units_sold", "product_revenue")
LEAD_TIME_STATISTICS = {
    "count": "orders",
    "mean": "mean_hours",
    "p50": "p50_hours",
    "p90": "p90_hours",
}
"""The answers' lead-time statistics and the suffix of the metric of each (per segment)."""
HISTOGRAM_BINS = 30
MAX_FILTER_CHARS = 200
"""The longest filter value accepted (names and codes are far shorter)."""

_TEXT = pa.string()
_FLAG = pa.bool_()
_HOURS = pa.float64()
SNAPSHOT_COLUMNS: dict[str, tuple[tuple[str, pa.DataType], ...]] = {
    "fct_orders": (
        ("order_id", _TEXT),
        ("customer_id", _TEXT),
        ("order_date", pa.date32()),
        ("order_status", _TEXT),
        ("payment_method", _TEXT),
        ("carrier", _TEXT),
        ("is_converted", _FLAG),
        ("is_canceled", _FLAG),
        ("is_refunded", _FLAG),
        ("is_canceled_or_refunded", _FLAG),
        ("hours_created_to_shipped", _HOURS),
        ("hours_shipped_to_delivered", _HOURS),
        ("hours_created_to_delivered", _HOURS),
    ),
    "fct_order_items": (
        ("order_id", _TEXT),
        ("product_id", _TEXT),
        ("quantity", pa.int64()),
        ("line_amount", pa.decimal128(38, 4)),
        ("is_revenue_eligible", _FLAG),
    ),
    "fct_payments": (
        ("order_id", _TEXT),
        ("movement_type", _TEXT),
        ("movement_date", pa.date32()),
        ("amount", pa.decimal128(18, 2)),
        ("is_reporting_currency", _FLAG),
    ),
    "dim_customers": (("customer_id", _TEXT), ("country_code", _TEXT)),
    "dim_products": (("product_id", _TEXT), ("product_name", _TEXT), ("category", _TEXT)),
    "dim_order_statuses": (("order_status", _TEXT), ("status_order", pa.int32())),
}
"""The Gold columns the dashboard reads, by table (tests check them against dbt's YAML)."""


@dataclass(frozen=True)
class Filters:
    """The dashboard's filters; None means "all"."""

    date_from: date | None = None
    date_to: date | None = None
    category: str | None = None
    country: str | None = None
    payment_method: str | None = None
    carrier: str | None = None

    @classmethod
    def parse(cls, params: Mapping[str, str]) -> Filters:
        """Filters from query parameters (empty values mean "all").

        An unknown name, a bad date, an overlong value or one holding a control character is
        an error naming the parameter (the server answers it with a 400)."""
        known = {spec.name for spec in fields(cls)}
        unknown = sorted(name for name in params if name not in known)
        if unknown:
            raise PipelineError(
                f"unknown filter {printable(unknown[0][:MAX_FILTER_CHARS])!r}"
                f" (filters: {', '.join(sorted(known))})"
            )
        values: dict[str, Any] = {}
        for spec in fields(cls):
            raw = params.get(spec.name, "").strip()
            if not raw:
                continue
            if len(raw) > MAX_FILTER_CHARS:
                raise PipelineError(f"{spec.name} is longer than {MAX_FILTER_CHARS} characters")
            if any(ord(char) < 32 or 127 <= ord(char) < 160 for char in raw):
                raise PipelineError(f"{spec.name} holds a control character")
            if spec.name.startswith("date_"):
                try:
                    values[spec.name] = date.fromisoformat(raw)
                except ValueError:
                    raise PipelineError(f"{spec.name}={raw!r} is not a YYYY-MM-DD date") from None
            else:
                values[spec.name] = raw
        return cls(**values)


@dataclass
class Snapshot:
    """The Gold tables the dashboard reads, copied into an in-memory DuckDB."""

    con: duckdb.DuckDBPyConnection
    status: GoldStatus
    currency: str
    taken_at: datetime
    source: str
    metrics: SemanticLayer
    notes: list[str] = field(default_factory=list)
    restated: dict[str, list[str]] = field(default_factory=dict)
    """The published figures a later build changed, by grain (``order_date``, ``revenue_date``,
    ``product``, ``segment``): their keys, from the restatement ledger (the page marks them)."""
    health: dict[str, Any] = field(default_factory=dict)
    """``retail-pipeline health``'s summary when the snapshot was taken (status, one line,
    the first check that is not ok); Kafka is not asked (docs/operations.md#health)."""

    @classmethod
    def take(cls, warehouse: Warehouse) -> Snapshot:
        """Copy Gold from an open (read-only) warehouse."""
        metrics = semantic_layer()
        gold = layer_schema("gold")  # this environment's Gold (docs/transform.md#environments)
        present = warehouse.tables(gold)
        missing = [name for name in (*SNAPSHOT_COLUMNS, "build_info") if name not in present]
        if missing:
            raise PipelineError(
                f"{warehouse.describe()} has no Gold star schema yet (missing {gold}.{missing[0]});"
                " run `retail-pipeline transform` first"
            )
        status = status_of(warehouse)
        rows = warehouse.query(f"select reporting_currency from {gold}.build_info limit 1")
        currency = str(rows[0][0]) if rows else "USD"
        con = duckdb.connect(":memory:")
        con.execute("set timezone = 'UTC'")
        for table, columns in SNAPSHOT_COLUMNS.items():
            names = [name for name, _ in columns]
            data = warehouse.query(f"select {', '.join(names)} from {gold}.{table}")
            schema = pa.schema(list(columns))
            arrow = pa.Table.from_arrays(
                [
                    pa.array([row[i] for row in data], type=kind)
                    for i, (_, kind) in enumerate(columns)
                ],
                schema=schema,
            )
            con.register("_snapshot", arrow)
            con.execute(f"create table {table} as select * from _snapshot")
            con.unregister("_snapshot")
        _lock_down(con)
        restated: dict[str, list[str]] = {}
        for grain, key in sorted(restated_keys(warehouse)):
            restated.setdefault(grain, []).append(key)
        report = check_health(warehouse)
        problem = report.first_problem
        health = {
            "status": report.status,
            "line": report.line(),
            "first_problem": None if problem is None else problem.name,
        }
        return cls(
            con,
            status,
            currency,
            datetime.now(UTC),
            warehouse.describe(),
            metrics,
            restated=restated,
            health=health,
        )

    @contextmanager
    def cursor(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A cursor of its own for one request (DuckDB connections are not shared by threads)."""
        cur = self.con.cursor()
        try:
            yield cur
        finally:
            cur.close()

    def options(self) -> dict[str, Any]:
        """The values each filter offers, and the range of dates."""
        with self.cursor() as cur:

            def values(sql: str) -> list[str]:
                return [str(value) for (value,) in cur.execute(sql).fetchall()]

            bounds = cur.execute(
                "select min(day), max(day) from (select order_date as day from fct_orders"
                " union all select movement_date from fct_payments)"
            ).fetchone()
            first, last = bounds if bounds else (None, None)
            return {
                "date_min": first.isoformat() if first else None,
                "date_max": last.isoformat() if last else None,
                "category": values(
                    "select distinct category from dim_products where category is not null"
                    " order by 1"
                ),
                "country": values(
                    "select distinct country_code from dim_customers"
                    " where country_code is not null order by 1"
                ),
                "payment_method": values(
                    "select distinct payment_method from fct_orders"
                    " where payment_method is not null order by 1"
                ),
                "carrier": values(
                    "select distinct carrier from fct_orders where carrier is not null order by 1"
                ),
            }

    def figures(self, filters: Filters) -> dict[str, Any]:
        """Everything the page draws, for the orders the filters select.

        Order figures (orders, conversion, cancel/refund, status, lead times, product revenue)
        count the selected orders by order date; revenue counts their captures and refunds by
        the date of the money movement (cash basis), as docs/metrics.md defines.
        """
        metrics = self.metrics
        with self.cursor() as cur:
            _scope(cur, filters, metrics)
            return {
                **_orders(cur, metrics),
                "revenue": _revenue(cur, metrics),
                "top_products": _top_products(cur, filters, metrics),
                "status_funnel": _status(cur, metrics),
                "lead_times_hours": _lead_times(cur, metrics),
                "lead_time_histogram": _histogram(cur),
            }

    def meta(self) -> dict[str, Any]:
        """Where the numbers come from and how fresh they are."""
        status = self.status
        return {
            "source": self.source,
            "currency": self.currency,
            "snapshot_taken_at": _iso(self.taken_at),
            "gold_built_at": _iso(status.built_at),
            "events_ingested_through": _iso(status.events_ingested_through),
            "bronze_ingested_through": _iso(status.bronze_ingested_through),
            "events_since_build": status.events_since,
            "reference_rows_since_build": status.reference_rows_since,
            "stale_warning": status.warning(),
            "notes": list(self.notes),
            "restated": {grain: list(keys) for grain, keys in self.restated.items()},
            "health": dict(self.health),
        }

    def close(self) -> None:
        """Drop the in-memory copy."""
        self.con.close()


LOCKDOWN = (
    "set enable_external_access = false",
    "set autoload_known_extensions = false",
    "set autoinstall_known_extensions = false",
    "set allow_community_extensions = false",
    "set lock_configuration = true",
)
"""Once Gold is copied in: no file, network, ATTACH or extension, and no setting can change."""


def _lock_down(con: duckdb.DuckDBPyConnection) -> None:
    """Make the in-memory copy a closed box: even a query that reached it as text could read
    and write nothing but its own tables (statements are constants; docs/dashboard.md)."""
    for statement in LOCKDOWN:
        con.execute(statement)


def take_snapshot(
    warehouse: str | os.PathLike[str] | None = None, *, target: str | None = None
) -> Snapshot:
    """Open the warehouse read-only just long enough to copy Gold (never waits for a lock)."""
    with open_warehouse(
        warehouse, target=target, read_only=True, missing_hint="load and transform first"
    ) as wh:
        return Snapshot.take(wh)


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _scope(cur: duckdb.DuckDBPyConnection, filters: Filters, metrics: SemanticLayer) -> None:
    """Temp tables ``scoped_orders`` (the orders the attribute filters select, any date),
    ``dated_orders`` (those of them dated in the range) and ``dated_payments`` (their money
    movements dated in the range); each fact is dated by its semantic model's time dimension.

    Every filter value is a bound parameter: the SQL text is made of constants and of what
    dbt's semantic layer states (the tables are per cursor, so concurrent requests never see
    each other's)."""
    params: list[object] = []
    where: list[str] = []
    if filters.country is not None:
        where.append("customers.country_code = ?")
        params.append(filters.country)
    if filters.payment_method is not None:
        where.append("orders.payment_method = ?")
        params.append(filters.payment_method)
    if filters.carrier is not None:
        where.append("orders.carrier = ?")
        params.append(filters.carrier)
    if filters.category is not None:
        where.append(
            "exists (select 1 from fct_order_items as items"
            " join dim_products as products on items.product_id = products.product_id"
            " where items.order_id = orders.order_id and products.category = ?)"
        )
        params.append(filters.category)
    cur.execute(
        "create or replace temp table scoped_orders as select orders.* from fct_orders as orders"
        " left join dim_customers as customers on orders.customer_id = customers.customer_id"
        " where " + (" and ".join(where) or "true"),
        params,
    )
    dates = [filters.date_from, filters.date_to]
    order_day, payment_day = metrics["orders"].day, metrics[REVENUE[0]].day
    cur.execute(
        "create or replace temp table dated_orders as select * from scoped_orders"
        f" where ($1::date is null or {order_day} >= $1::date)"
        f" and ($2::date is null or {order_day} <= $2::date)",
        dates,
    )
    cur.execute(
        "create or replace temp table dated_payments as select * from fct_payments"
        " where order_id in (select order_id from scoped_orders)"
        f" and ($1::date is null or {payment_day} >= $1::date)"
        f" and ($2::date is null or {payment_day} <= $2::date)",
        dates,
    )


def _rate(part: int, whole: int) -> float:
    return part / whole if whole else 0.0


def _totals(
    cur: duckdb.DuckDBPyConnection, metrics: SemanticLayer, names: Sequence[str], table: str
) -> dict[str, Any]:
    """The simple metrics behind ``names``, over every row of ``table``."""
    simple = [metric.name for metric in metrics.simple(names)]
    row = cur.execute(
        f"select {', '.join(metrics.sql(name) for name in simple)} from {table}"
    ).fetchone()
    return dict(zip(simple, row or (), strict=True))


def _orders(cur: duckdb.DuckDBPyConnection, metrics: SemanticLayer) -> dict[str, Any]:
    day = metrics[DAILY_ORDERS[0]].day
    by_day = [
        (when, dict(zip(DAILY_ORDERS, values, strict=True)))
        for when, *values in cur.execute(
            f"select {day}, {', '.join(metrics.sql(name) for name in DAILY_ORDERS)}"
            f" from dated_orders group by {day} order by {day}"
        ).fetchall()
    ]
    totals = _totals(cur, metrics, ORDER_TOTALS, "dated_orders")
    orders, conversion, canceled, refunded, either = (
        metrics.value(name, totals) for name in ORDER_TOTALS
    )
    return {
        "orders_per_day": [
            {"date": when.isoformat(), "orders": int(values["orders"])} for when, values in by_day
        ],
        "conversion_rate": {
            "overall": conversion,
            "by_day": [
                {
                    "date": when.isoformat(),
                    "created": int(values["orders"]),
                    "converted": int(values["orders_converted"]),
                    "rate": metrics.value("conversion_rate", values),
                }
                for when, values in by_day
            ],
        },
        "cancel_refund": {
            "orders": int(orders),
            "canceled_rate": canceled,
            "refunded_rate": refunded,
            "canceled_or_refunded_rate": either,
        },
    }


def _revenue(cur: duckdb.DuckDBPyConnection, metrics: SemanticLayer) -> dict[str, Any]:
    # Amounts have cents at most: the exact sums are already cents (no rounding needed).
    day = metrics[REVENUE[0]].day
    rows = cur.execute(
        f"select {day}, {', '.join(metrics.sql(name) for name in REVENUE)}"
        f" from dated_payments where {metrics.scope(REVENUE)} group by {day} order by {day}"
    ).fetchall()
    by_day = []
    for when, *values in rows:
        sums = dict(zip(REVENUE, values, strict=True))
        by_day.append((when, *values, metrics.value("net_revenue", sums)))
    return revenue_answer(by_day)


def _top_products(
    cur: duckdb.DuckDBPyConnection, filters: Filters, metrics: SemanticLayer
) -> list[dict[str, Any]]:
    units, revenue = (metrics.sql(name, "items") for name in PRODUCTS)
    rows = cur.execute(
        "with revenue as ("
        f" select items.product_id, {units} as units, {revenue} as exact"
        " from fct_order_items as items"
        " join dated_orders on items.order_id = dated_orders.order_id"
        " left join dim_products as products on items.product_id = products.product_id"
        f" where ({metrics.scope(PRODUCTS, 'items')})"
        " and ($1::varchar is null or products.category = $1)"
        " group by items.product_id)"
        " select revenue.product_id, products.product_name, products.category, revenue.units,"
        " cast(round(revenue.exact, 2) as decimal(38, 2))"
        " from revenue left join dim_products as products"
        " on revenue.product_id = products.product_id"
        " order by revenue.exact desc, revenue.product_id limit $2",
        [filters.category, TOP_PRODUCTS],
    ).fetchall()
    return [
        {
            "product_id": product_id,
            "product_name": name,
            "category": category_name,
            "units": int(units),
            "revenue": money_text(revenue),
        }
        for product_id, name, category_name, units, revenue in rows
    ]


def _status(cur: duckdb.DuckDBPyConnection, metrics: SemanticLayer) -> list[dict[str, Any]]:
    """Orders per status, every status of ``dim_order_statuses`` in its order."""
    counts = dict(
        cur.execute(
            f"select order_status, {metrics.sql('orders')} from dated_orders group by 1"
        ).fetchall()
    )
    statuses = cur.execute("select order_status from dim_order_statuses order by status_order")
    total = sum(counts.values())
    return [
        {
            "status": status,
            "orders": int(counts.get(status, 0)),
            "share": _rate(counts.get(status, 0), total),
        }
        for (status,) in statuses.fetchall()
    ]


def _segments_sql() -> str:
    return " union all ".join(
        f"select {index} as segment_order, '{segment}' as segment, hours_{segment} as hours"
        " from dated_orders"
        for index, segment in enumerate(LEAD_TIME_SEGMENTS, start=1)
    )


def _lead_times(cur: duckdb.DuckDBPyConnection, metrics: SemanticLayer) -> dict[str, Any]:
    names = [
        f"{segment}_{suffix}"
        for segment in LEAD_TIME_SEGMENTS
        for suffix in LEAD_TIME_STATISTICS.values()
    ]
    values = _totals(cur, metrics, names, "dated_orders")

    def stats(segment: str) -> dict[str, Any]:
        found = {key: values[f"{segment}_{suffix}"] for key, suffix in LEAD_TIME_STATISTICS.items()}
        if not found["count"]:
            return {"count": 0, "mean": None, "p50": None, "p90": None}
        return {key: int(value) if key == "count" else float(value) for key, value in found.items()}

    return {segment: stats(segment) for segment in LEAD_TIME_SEGMENTS}


def _histogram(cur: duckdb.DuckDBPyConnection) -> dict[str, Any]:
    """Orders per lead-time bin and segment; one bin width (whole hours) for all segments."""
    top = cur.execute(
        f"with segments as ({_segments_sql()})"
        " select quantile_disc(hours, 0.99) from segments where hours is not null"
    ).fetchone()
    high = float(top[0]) if top is not None and top[0] is not None else 0.0
    width = max(1, -(-int(high) // HISTOGRAM_BINS))
    rows = cur.execute(
        f"with segments as ({_segments_sql()})"
        " select segment_order, segment, least(floor(hours / ?), ?) as bin, count(*)"
        " from segments where hours is not null group by all order by 1, 3",
        [width, HISTOGRAM_BINS],
    ).fetchall()
    return {
        "bin_hours": width,
        "bins": [
            {
                "segment": segment,
                "from_hours": int(bin_index) * width,
                "to_hours": (int(bin_index) + 1) * width,
                "is_overflow": int(bin_index) >= HISTOGRAM_BINS,
                "orders": int(orders),
            }
            for _, segment, bin_index, orders in rows
        ],
    }


def snapshot_columns(tables: Sequence[str] = tuple(SNAPSHOT_COLUMNS)) -> dict[str, list[str]]:
    """The column names the snapshot reads, by Gold table."""
    return {table: [name for name, _ in SNAPSHOT_COLUMNS[table]] for table in tables}
