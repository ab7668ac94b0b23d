"""``retail-pipeline explain``: the orders and events behind a published figure.

For each of the six answers, :func:`explain` lists the events that make up one figure (orders
on a day, revenue on a day, conversion on a day, a product's revenue, canceled or refunded
orders, a lead-time segment), each with the rule that counted it or left it out (a payment in
another currency, an orphan, an order canceled or refunded, a duplicate delivery) and where it
came from in Bronze: file and line or topic, partition and offset, the load and when it was
ingested. It sums what was counted, exactly, and says whether that equals the figure Gold
publishes; and it gives the figure's history from the restatement ledger (:mod:`.ledger`).

Everything from outside (a date, a product id) is a bound parameter, never SQL text. At most
``limit`` counted contributions and ``limit`` others are listed; the sums always cover all.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from retail_pipeline.errors import PipelineError
from retail_pipeline.settings import layer_schema
from retail_pipeline.transform.ledger import (
    HOUR_FIGURES,
    LedgerRow,
    figure_history,
    figure_text,
    has_ledger,
)
from retail_pipeline.warehouse import Warehouse, open_warehouse

QUESTIONS = ("orders", "revenue", "conversion", "product", "canceled-refunded", "lead-time")
STATUSES = ("canceled", "refunded", "canceled_or_refunded")
SEGMENTS = ("created_to_shipped", "shipped_to_delivered", "created_to_delivered")
DEFAULT_LIMIT = 200


class ExplainError(PipelineError):
    """A question explain cannot ask: unknown, or a value missing or malformed."""


RULES = {
    "counted": "counted",
    "not_converted": "not counted: no payment_captured",
    "other_currency": "not counted: not the reporting currency (never converted)",
    "orphan": "not counted: orphan (no order_created for its order)",
    "later_order_created": "not counted: the order was created by an earlier order_created",
    "canceled": "not counted: the order was canceled",
    "refunded": "not counted: the order was refunded",
    "not_captured": "not counted: the order has no payment_captured",
    "duplicate": "not counted: a duplicate delivery of an event counted once",
}
"""Why an event counted or not, by the code explain's queries give (docs/metrics.md)."""

CENT = Decimal("0.01")
MICROS_PER_HOUR = 3_600_000_000
_EVENT_TABLES = {
    "orders": "order_events",
    "payments": "payment_events",
    "shipments": "shipment_events",
}


@dataclass(frozen=True)
class Source:
    """Where one delivery of an event sits in Bronze."""

    where: str
    """``file:line`` or ``topic/partition/offset``."""
    load_id: str
    ingested_at: datetime

    def as_json(self) -> dict[str, Any]:
        return {
            "where": self.where,
            "load_id": self.load_id,
            "ingested_at": self.ingested_at.isoformat(),
        }


@dataclass(frozen=True)
class Contribution:
    """One event behind the figure (or left out of it), and what it adds."""

    order_id: str
    event_id: str | None
    event_type: str | None
    event_at: datetime | None
    part: str | None
    """The figure it adds to (``gross``, ``refunds``, ``orders``, ...); None when not counted."""
    amount: Decimal
    """What it adds: 1 for an order, money for a payment or a basket line, hours."""
    rule: str
    detail: str | None = None
    source: Source | None = None
    duplicates: tuple[Source, ...] = ()

    @property
    def counted(self) -> bool:
        return self.rule == "counted"

    def as_json(self) -> dict[str, Any]:
        return {
            "order_id": self.order_id,
            "event_id": self.event_id,
            "event_type": self.event_type,
            "event_at": self.event_at.isoformat() if self.event_at else None,
            "counted_in": self.part,
            "amount": f"{self.amount:f}",
            "rule": self.rule,
            "why": RULES[self.rule] + (f" ({self.detail})" if self.detail else ""),
            "source": self.source.as_json() if self.source else None,
            "duplicates": [
                {**d.as_json(), "rule": "duplicate", "why": RULES["duplicate"]}
                for d in self.duplicates
            ],
        }


@dataclass(frozen=True)
class Figure:
    """One published figure and the sum of what explain counted for it."""

    name: str
    """As the ledger names it (``gross_revenue``, ``orders_created``...)."""
    key: str
    published: str | None
    counted: str | None
    contributions: int

    @property
    def adds_up(self) -> bool:
        """The sum equals the figure: exactly, or for hours (binary floats in Gold) to the
        millionth of an hour the ledger keeps."""
        if self.published is None or self.counted is None or self.name not in HOUR_FIGURES:
            return self.published == self.counted
        return abs(Decimal(self.published) - Decimal(self.counted)) <= Decimal("0.000001")

    def as_json(self) -> dict[str, Any]:
        return {
            "figure": self.name,
            "key": self.key,
            "published": self.published,
            "sum_of_contributions": self.counted,
            "contributions": self.contributions,
            "adds_up": self.adds_up,
        }


@dataclass
class Explanation:
    """What ``explain`` prints: the figures, their contributions, their history."""

    question: str
    title: str
    figures: list[Figure]
    contributions: list[Contribution]
    not_counted: int
    more: int
    history: dict[str, list[LedgerRow]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def adds_up(self) -> bool:
        return all(figure.adds_up for figure in self.figures)

    def as_json(self) -> dict[str, Any]:
        return {
            "question": self.question,
            "title": self.title,
            "adds_up": self.adds_up,
            "figures": [figure.as_json() for figure in self.figures],
            "contributions": [c.as_json() for c in self.contributions],
            "listed": len(self.contributions),
            "more": self.more,
            "not_counted": self.not_counted,
            "history": {
                name: [row.as_json() for row in rows] for name, rows in self.history.items()
            },
            "notes": self.notes,
        }


@dataclass(frozen=True)
class _Query:
    """A question as SQL: ``rows`` selects (order_id, event_id, event_topic, event_type,
    event_at, part, amount, rule, detail) with ``params``; ``figures`` maps each part to the
    ledger's figure name and how the published value is read (SQL, params)."""

    rows: str
    params: Sequence[object]
    parts: Mapping[str, tuple[str, str, Sequence[object]]]
    key: str
    title: str
    history_key: str


def _money(value: Decimal | None) -> Decimal:
    return Decimal(value or 0).quantize(CENT, rounding=ROUND_HALF_UP)


def _as_date(value: str | None, option: str = "--date") -> date:
    if not value:
        raise ExplainError(f"{option} is required for this question (YYYY-MM-DD)")
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ExplainError(f"{option}: not a date (YYYY-MM-DD)") from None


def _query(
    question: str,
    *,
    day: str | None,
    product: str | None,
    status: str | None,
    segment: str | None,
) -> _Query:
    gold, silver = layer_schema("gold"), layer_schema("silver")
    orders = f"{silver}.stg_bronze__order_events"
    payments = f"{silver}.stg_bronze__payment_events"
    shipments = f"{silver}.stg_bronze__shipment_events"
    # the orders of the day first: a window over every order's events would read them all
    day_orders = f"select order_id from {gold}.fct_orders where order_date = ?"
    if question == "orders":
        when = _as_date(day)
        rows = f"""
            select o.order_id, e.event_id, 'orders' as event_topic, e.event_type, e.event_at,
                case when e.event_at = o.order_created_at and e.rank_at = 1 then 'orders' end
                    as part,
                1 as amount,
                case when e.event_at = o.order_created_at and e.rank_at = 1 then 'counted'
                    else 'later_order_created' end as rule,
                cast(null as varchar) as detail
            from {gold}.fct_orders as o
            inner join (
                select event_id, order_id, event_type, event_at,
                    row_number() over (partition by order_id order by event_at, event_id)
                        as rank_at
                from {orders} where event_type = 'order_created'
                    and order_id in ({day_orders})
            ) as e on e.order_id = o.order_id
            where o.order_date = ?"""
        parts: dict[str, tuple[str, str, Sequence[object]]] = {
            "orders": (
                "orders_created",
                f"select orders_created from {gold}.daily_orders where order_date = ?",
                [when],
            )
        }
        return _Query(rows, [when, when], parts, str(when), f"Orders created on {when}", str(when))
    if question == "revenue":
        when = _as_date(day)
        rows = f"""
            select p.order_id, p.payment_event_id as event_id, 'payments' as event_topic,
                case p.movement_type when 'capture' then 'payment_captured'
                    else 'payment_refunded' end as event_type,
                p.moved_at as event_at,
                case when p.is_reporting_currency then
                    case p.movement_type when 'capture' then 'gross' else 'refunds' end
                end as part,
                p.amount,
                case when p.is_reporting_currency then 'counted' else 'other_currency' end
                    as rule,
                case when not p.is_reporting_currency then p.currency end as detail
            from {gold}.fct_payments as p
            where p.movement_date = ?
            union all
            select e.order_id, e.event_id, 'payments', e.event_type, e.event_at,
                cast(null as varchar), e.amount, 'orphan', e.currency
            from {payments} as e
            where e.event_date = ? and e.event_type in ('payment_captured', 'payment_refunded')
                and not exists (
                    select 1 from {gold}.fct_orders as o where o.order_id = e.order_id
                )"""
        revenue = f"from {gold}.daily_revenue where revenue_date = ?"
        parts = {
            "gross": ("gross_revenue", f"select gross_revenue {revenue}", [when]),
            "refunds": ("refunds", f"select refunds {revenue}", [when]),
        }
        return _Query(rows, [when, when], parts, str(when), f"Revenue on {when}", str(when))
    if question == "conversion":
        when = _as_date(day)
        rows = f"""
            select o.order_id,
                coalesce(c.event_id, e.event_id) as event_id,
                case when c.event_id is not null then 'payments' else 'orders' end
                    as event_topic,
                case when c.event_id is not null then 'payment_captured'
                    else 'order_created' end as event_type,
                coalesce(c.event_at, e.event_at) as event_at,
                case when o.is_converted then 'converted' end as part,
                1 as amount,
                case when o.is_converted then 'counted' else 'not_converted' end as rule,
                cast(null as varchar) as detail
            from {gold}.fct_orders as o
            left join (
                select order_id, event_id, event_at from {payments}
                where event_type = 'payment_captured' and order_id in ({day_orders})
                qualify row_number() over (partition by order_id order by event_at, event_id) = 1
            ) as c on c.order_id = o.order_id and o.is_converted
            left join (
                select order_id, event_id, event_at from {orders}
                where event_type = 'order_created' and order_id in ({day_orders})
                qualify row_number() over (partition by order_id order by event_at, event_id) = 1
            ) as e on e.order_id = o.order_id
            where o.order_date = ?"""
        parts = {
            "converted": (
                "orders_converted",
                f"select orders_converted from {gold}.daily_orders where order_date = ?",
                [when],
            )
        }
        return _Query(
            rows, [when] * 3, parts, str(when), f"Conversion of the orders of {when}", str(when)
        )
    if question == "product":
        if not product:
            raise ExplainError("--product is required for this question")
        rows = f"""
            select i.order_id, b.event_id, 'orders' as event_topic, b.event_type, b.event_at,
                case when i.is_revenue_eligible then 'revenue' end as part,
                i.line_amount as amount,
                case
                    when i.is_revenue_eligible then 'counted'
                    when not o.is_reporting_currency then 'other_currency'
                    when o.is_canceled then 'canceled'
                    when o.is_refunded then 'refunded'
                    else 'not_captured'
                end as rule,
                case when i.is_revenue_eligible
                    then cast(i.quantity as varchar) || ' x ' || cast(i.unit_price as varchar)
                    when not o.is_reporting_currency then o.currency end as detail
            from {gold}.fct_order_items as i
            inner join {gold}.fct_orders as o on o.order_id = i.order_id
            left join (
                select order_id, event_id, event_type, event_at from {orders}
                where has_items and event_type in ('order_created', 'order_updated')
                    and order_id in (
                        select order_id from {gold}.fct_order_items where product_id = ?
                    )
                qualify row_number() over (
                    partition by order_id
                    order by event_at desc,
                        case when event_type = 'order_updated' then 1 else 0 end desc,
                        event_id desc
                ) = 1
            ) as b on b.order_id = i.order_id
            where i.product_id = ?"""
        parts = {
            "revenue": (
                "product_revenue",
                f"select revenue from {gold}.top_products where product_id = ?",
                [product],
            ),
            "units": (
                "product_units",
                f"select units_sold from {gold}.top_products where product_id = ?",
                [product],
            ),
        }
        return _Query(
            rows, [product, product], parts, product, f"Revenue of product {product}", product
        )
    if question == "canceled-refunded":
        status = status or "canceled_or_refunded"
        if status not in STATUSES:
            raise ExplainError(f"--status: one of {', '.join(STATUSES)}")
        on_day = _as_date(day) if day else None
        in_day = f" and order_id in ({day_orders})" if on_day else ""
        flag = {"canceled": "o.is_canceled", "refunded": "o.is_refunded"}.get(
            status, "o.is_canceled_or_refunded"
        )
        rows = f"""
            select o.order_id, coalesce(c.event_id, r.event_id) as event_id,
                case when c.event_id is not null then 'orders' else 'payments' end
                    as event_topic,
                coalesce(c.event_type, r.event_type) as event_type,
                coalesce(c.event_at, r.event_at) as event_at,
                '{status}' as part, 1 as amount, 'counted' as rule,
                cast(null as varchar) as detail
            from {gold}.fct_orders as o
            left join (
                select order_id, event_id, event_type, event_at from {orders}
                where event_type = 'order_canceled'{in_day}
                qualify row_number() over (partition by order_id order by event_at, event_id) = 1
            ) as c on c.order_id = o.order_id and {"false" if status == "refunded" else "true"}
            left join (
                select order_id, event_id, event_type, event_at from {payments}
                where event_type = 'payment_refunded'{in_day}
                qualify row_number() over (partition by order_id order by event_at, event_id) = 1
            ) as r on r.order_id = o.order_id
            where {flag}{" and o.order_date = ?" if on_day else ""}"""
        column = f"orders_{status}"
        if on_day:
            published = f"select {column} from {gold}.daily_orders where order_date = ?"
            params: list[object] = [on_day]
        else:
            published, params = f"select {column} from {gold}.order_rates", []
        title = f"Orders {status.replace('_', ' ')}" + (f", created on {on_day}" if on_day else "")
        key = str(on_day) if on_day else "all"
        return _Query(rows, params * 3, {status: (column, published, params)}, key, title, key)
    if question == "lead-time":
        segment = segment or ""
        if segment not in SEGMENTS:
            raise ExplainError(f"--segment: one of {', '.join(SEGMENTS)}")
        later = {
            "created_to_shipped": ("shipments", "shipment_dispatched", "first_dispatched_at"),
            "shipped_to_delivered": ("shipments", "shipment_delivered", "first_delivered_at"),
            "created_to_delivered": ("shipments", "shipment_delivered", "first_delivered_at"),
        }[segment]
        rows = f"""
            select o.order_id, s.event_id, 'shipments' as event_topic, s.event_type, s.event_at,
                'hours' as part, o.hours_{segment} as amount, 'counted' as rule,
                cast(null as varchar) as detail
            from {gold}.fct_orders as o
            left join (
                select order_id, event_id, event_type, event_at from {shipments}
                where event_type = '{later[1]}'
                qualify row_number() over (partition by order_id order by event_at, event_id) = 1
            ) as s on s.order_id = o.order_id
            where o.hours_{segment} is not null"""
        stats = f"from {gold}.fulfillment_lead_times where segment = ?"
        parts = {
            "hours": ("lead_time_orders", f"select orders {stats}", [segment]),
            "mean": ("lead_time_mean_hours", f"select mean_hours {stats}", [segment]),
        }
        return _Query(rows, [], parts, segment, f"Lead time {segment.replace('_', ' ')}", segment)
    raise ExplainError(f"explain: the question is one of {', '.join(QUESTIONS)}")


def _published(wh: Warehouse, sql: str, params: Sequence[object]) -> Any:
    rows = wh.query(sql, params)
    return rows[0][0] if rows else None


def _sources(wh: Warehouse, wanted: Sequence[tuple[str, str]]) -> dict[str, list[Source]]:
    """Every Bronze delivery of the events ``wanted`` ((topic, event_id)), first arrival first
    (by ``_ingested_at``, then offset and line: the one staging kept)."""
    found: dict[str, list[Source]] = {}
    for topic, table in _EVENT_TABLES.items():
        ids = sorted({event_id for t, event_id in wanted if t == topic})
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ", ".join("?" for _ in chunk)
            rows = wh.query(
                "select event_id, _source_file, _source_line, _topic, _partition, _offset,"
                f" _load_id, _ingested_at from {wh.bronze}.{table}"
                f" where event_id in ({marks}) order by event_id, _ingested_at, _offset,"
                " _source_line",
                chunk,
            )
            for event_id, file, line, kafka_topic, partition, offset, load_id, at in rows:
                where = (
                    f"{file}:{line}" if file is not None else f"{kafka_topic}/{partition}/{offset}"
                )
                stamp = at if at.tzinfo else at.replace(tzinfo=UTC)
                found.setdefault(str(event_id), []).append(
                    Source(where, str(load_id), stamp.astimezone(UTC))
                )
    return found


def _sum_text(figure: str, part: str, total: Decimal | None, count: int) -> str | None:
    """What the counted contributions add up to, in the figure's unit and rounding."""
    if part == "mean":
        return None
    if figure in ("gross_revenue", "refunds", "product_revenue"):
        return f"{_money(total):f}"
    if part in ("orders", "converted", "hours", "units") or part in STATUSES:
        return str(count if part != "units" else int(total or 0))
    return f"{Decimal(total or 0):f}"


def explain(
    question: str,
    warehouse: str | os.PathLike[str] | None = None,
    *,
    target: str | None = None,
    day: str | None = None,
    product: str | None = None,
    status: str | None = None,
    segment: str | None = None,
    limit: int = DEFAULT_LIMIT,
) -> Explanation:
    """The contributions behind one figure, their sums against the published figure, and the
    figure's history (see the module's docstring)."""
    if limit < 0:
        raise ExplainError("--limit must not be negative")
    query = _query(question, day=day, product=product, status=status, segment=segment)
    with open_warehouse(
        warehouse, target=target, read_only=True, missing_hint="load and transform first"
    ) as wh:
        missing = {"fct_orders", "daily_orders"} - wh.tables(layer_schema("gold"))
        if missing:
            raise PipelineError(
                f"{wh.describe()} has no Gold answers yet; run `retail-pipeline transform` first"
            )
        totals = {
            str(part): (int(count), total)
            for part, count, total in wh.query(
                f"select part, count(*), sum(amount) from ({query.rows}) as r"
                " where part is not null group by part",
                query.params,
            )
        }
        (not_counted,) = wh.query(
            f"select count(*) from ({query.rows}) as r where part is null", query.params
        )[0]
        # up to ``limit`` of the counted and ``limit`` of the others: both sides are seen
        listed = [
            *wh.query(
                f"select * from ({query.rows}) as r where part is not null"
                " order by event_at, order_id, event_id limit ?",
                [*query.params, limit],
            ),
            *wh.query(
                f"select * from ({query.rows}) as r where part is null"
                " order by event_at, order_id, event_id limit ?",
                [*query.params, limit],
            ),
        ]
        figures: list[Figure] = []
        history: dict[str, list[LedgerRow]] = {}
        for part, (figure, sql, params) in query.parts.items():
            value = _published(wh, sql, params)
            count, total = totals.get(part if part != "mean" else "hours", (0, None))
            if part == "units":
                count, total = totals.get("revenue", (0, None))
                total = _units(wh, query, count)
            published = figure_text(figure, value if value is not None else 0)
            counted = _sum_text(figure, part, total, count)
            if part == "mean":
                counted = figure_text(figure, _mean_hours(wh, query)) if count else None
                published = figure_text(figure, value) if value is not None else None
            figures.append(Figure(figure, query.key, published, counted, count))
            if has_ledger(wh) and query.history_key != "all":
                history[figure] = figure_history(wh, figure, query.history_key)
        if question == "revenue":
            gross, refunds = (
                Decimal(f.counted or 0) for f in figures if f.name in ("gross_revenue", "refunds")
            )
            net = _published(
                wh,
                f"select net_revenue from {layer_schema('gold')}.daily_revenue"
                " where revenue_date = ?",
                query.params[:1],
            )
            figures.append(
                Figure(
                    "net_revenue",
                    query.key,
                    figure_text("net_revenue", net if net is not None else 0),
                    f"{gross - refunds:f}",
                    sum(f.contributions for f in figures),
                )
            )
            if has_ledger(wh):
                history["net_revenue"] = figure_history(wh, "net_revenue", query.history_key)
        sources = _sources(wh, [(str(r[2]), str(r[1])) for r in listed if r[1] is not None])
    contributions = []
    for order_id, event_id, _topic, event_type, event_at, part, amount, rule, detail in listed:
        deliveries = sources.get(str(event_id), []) if event_id is not None else []
        at = event_at if event_at is None or event_at.tzinfo else event_at.replace(tzinfo=UTC)
        contributions.append(
            Contribution(
                order_id=str(order_id),
                event_id=None if event_id is None else str(event_id),
                event_type=None if event_type is None else str(event_type),
                event_at=at.astimezone(UTC) if at else None,
                part=None if part is None else str(part),
                amount=Decimal(str(amount)) if isinstance(amount, float) else Decimal(amount),
                rule=str(rule),
                detail=None if detail is None else str(detail),
                source=deliveries[0] if deliveries else None,
                duplicates=tuple(deliveries[1:]),
            )
        )
    total = sum(count for count, _ in totals.values()) + int(not_counted)
    return Explanation(
        question=question,
        title=query.title,
        figures=figures,
        contributions=contributions,
        not_counted=int(not_counted),
        more=max(0, total - len(contributions)),
        history=history,
    )


def _units(wh: Warehouse, query: _Query, count: int) -> Decimal:
    """Units of a product's counted lines (the product question only)."""
    gold = layer_schema("gold")
    if not count:
        return Decimal(0)
    rows = wh.query(
        f"select sum(quantity) from {gold}.fct_order_items"
        " where product_id = ? and is_revenue_eligible",
        [query.key],
    )
    return Decimal(rows[0][0] or 0)


def _mean_hours(wh: Warehouse, query: _Query) -> Decimal:
    """The mean of the counted hours as Gold averages them: whole microseconds, exactly."""
    rows = wh.query(
        f"select sum(cast(round(amount * {MICROS_PER_HOUR}) as bigint)), count(*)"
        f" from ({query.rows}) as r where part = 'hours'",
        query.params,
    )
    micros, count = rows[0]
    return Decimal(int(micros)) / Decimal(int(count)) / MICROS_PER_HOUR


def _history_line(row: LedgerRow) -> str:
    at = row.recorded_at.strftime("%Y-%m-%d %H:%M:%S UTC")
    if not row.is_restatement:
        return f"  {at}: first published as {row.value if row.value is not None else '-'}"
    causes = ", ".join(row.cause_loads) or "no load of its orders (see docs/metrics.md)"
    return (
        f"  {at}: restated from {row.previous if row.previous is not None else '-'} to"
        f" {row.value if row.value is not None else '-'} ({row.delta}), caused by {causes}"
    )


def format_explanation(result: Explanation) -> str:
    """The explanation as text: the figures and whether they add up, the contributions as a
    table (values from the data are text, never markup), and each figure's history."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = Console(width=200, record=True, force_terminal=False, color_system=None)
    with console.capture() as captured:
        console.print(Text(result.title))
        for figure in result.figures:
            verdict = "adds up" if figure.adds_up else "DOES NOT ADD UP"
            console.print(
                Text(
                    f"  {figure.name}: published {figure.published or '-'}; the"
                    f" {figure.contributions:,} counted contribution(s) give"
                    f" {figure.counted or '-'}: {verdict}"
                )
            )
        table = Table(title=None, show_lines=False)
        for header in (
            "order",
            "event",
            "type",
            "at (UTC)",
            "counts in",
            "amount",
            "rule",
            "Bronze source",
            "load",
            "ingested (UTC)",
        ):
            # provenance is the point: long ids and paths wrap, never end in "..."
            table.add_column(header, overflow="fold")
        for c in result.contributions:
            deliveries = [(c.source, c.rule, c.detail)] + [
                (d, "duplicate", None) for d in c.duplicates
            ]
            for index, (source, rule, detail) in enumerate(deliveries):
                table.add_row(
                    Text(c.order_id if not index else ""),
                    Text(c.event_id or "-"),
                    Text(c.event_type or "-"),
                    c.event_at.strftime("%Y-%m-%d %H:%M:%S") if c.event_at and not index else "",
                    Text(c.part or "-") if not index else "",
                    f"{c.amount:f}" if not index else "",
                    Text(RULES[rule] + (f" ({detail})" if detail else "")),
                    Text(source.where if source else "-"),
                    Text(source.load_id if source else "-"),
                    source.ingested_at.strftime("%Y-%m-%d %H:%M:%S") if source else "-",
                )
        if result.contributions:
            console.print(table)
        shown = f"{len(result.contributions):,} listed"
        if result.more:
            shown += f", {result.more:,} more (--limit)"
        console.print(f"Contributions: {shown}; {result.not_counted:,} not counted.")
        for name, rows in result.history.items():
            if rows:
                console.print(Text(f"History of {name}:"))
                for row in rows:
                    console.print(Text(_history_line(row)))
        for note in result.notes:
            console.print(Text(note))
    return captured.get()
