"""The restatement ledger (``gold.figure_ledger``, dbt/models/gold/ledger/): read it back.

Every build records the figures the answers publish (per order date, revenue date, product and
lead-time segment); a later build that changes one appends a row with the old value, the new
one, the delta and the loads that caused it. :func:`read_restatements` lists those changes
(``answers --restatements``); :func:`figure_history` gives one figure's every value
(``explain``).

Values come back as exact decimal text in the figure's own unit: a count (``"12"``), money in
the reporting currency rounded to cents (``"1250.00"``), or hours (``"36.500000"``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from retail_pipeline.errors import PipelineError
from retail_pipeline.settings import layer_schema
from retail_pipeline.warehouse import Warehouse, open_warehouse

LEDGER = "figure_ledger"

MONEY_FIGURES = frozenset({"gross_revenue", "refunds", "net_revenue", "product_revenue"})
HOUR_FIGURES = frozenset({"lead_time_mean_hours", "lead_time_p50_hours", "lead_time_p90_hours"})
COUNT_FIGURES = frozenset(
    {
        "orders_created",
        "orders_converted",
        "orders_canceled",
        "orders_refunded",
        "orders_canceled_or_refunded",
        "product_units",
        "lead_time_orders",
    }
)
FIGURES = MONEY_FIGURES | HOUR_FIGURES | COUNT_FIGURES

DEFAULT_LIMIT = 500
"""Restatements ``answers --restatements`` lists at most, newest first, unless told more."""


def figure_text(figure: str, value: Decimal | int | float | None) -> str | None:
    """A ledger value as exact text in its figure's unit (None stays None)."""
    if value is None:
        return None
    exact = Decimal(str(value)) if isinstance(value, float) else Decimal(value)
    step = (
        Decimal(1)
        if figure in COUNT_FIGURES
        else Decimal("0.01")
        if figure in MONEY_FIGURES
        else Decimal("0.000001")
    )
    shown = exact.quantize(step)
    return f"{abs(shown) if shown == 0 else shown:f}"


@dataclass(frozen=True)
class LedgerRow:
    """One row of the ledger: a figure's first publication or a change to it."""

    figure: str
    grain: str
    key: str
    value: str | None
    previous: str | None
    delta: str | None
    is_restatement: bool
    cause_loads: tuple[str, ...]
    recorded_at: datetime
    build: str

    def as_json(self) -> dict[str, Any]:
        return {
            "figure": self.figure,
            "grain": self.grain,
            "key": self.key,
            "old": self.previous,
            "new": self.value,
            "delta": self.delta,
            "restatement": self.is_restatement,
            "cause_loads": list(self.cause_loads),
            "recorded_at": self.recorded_at.isoformat(),
            "build": self.build,
        }


_COLUMNS = (
    "figure, grain, figure_key, figure_value, previous_value, delta, is_restatement, cause_loads,"
    " recorded_at, dbt_invocation_id"
)


def _row(values: Sequence[Any]) -> LedgerRow:
    figure, grain, key, value, previous, delta, restated, causes, recorded, build = values
    stamp = recorded if recorded.tzinfo else recorded.replace(tzinfo=UTC)
    return LedgerRow(
        figure=str(figure),
        grain=str(grain),
        key=str(key),
        value=figure_text(figure, value),
        previous=figure_text(figure, previous),
        delta=figure_text(figure, delta),
        is_restatement=bool(restated),
        cause_loads=tuple(part for part in str(causes or "").split(",") if part),
        recorded_at=stamp.astimezone(UTC),
        build=str(build),
    )


def has_ledger(wh: Warehouse) -> bool:
    """Whether Gold holds the ledger (a Gold built before it has none until its next build)."""
    return LEDGER in wh.tables(layer_schema("gold"))


def _require_ledger(wh: Warehouse) -> str:
    if not has_ledger(wh):
        raise PipelineError(
            f"{wh.describe()} has no restatement ledger yet ({layer_schema('gold')}.{LEDGER});"
            " run `retail-pipeline transform` first"
        )
    return f"{layer_schema('gold')}.{LEDGER}"


def parse_since(text: str) -> datetime:
    """``--since``: a date (its midnight, UTC) or an ISO 8601 time (UTC when it names no zone)."""
    try:
        if len(text) == 10:
            return datetime.combine(date.fromisoformat(text), time(), tzinfo=UTC)
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise PipelineError(
            "--since: not a date (2026-01-15) or an ISO 8601 time (2026-01-15T08:00:00Z)"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Restatements:
    """The restatements ``answers --restatements`` lists, newest first, and how many more."""

    rows: list[LedgerRow]
    more: int

    def as_json(self) -> dict[str, Any]:
        return {"restatements": [row.as_json() for row in self.rows], "more": self.more}


def read_restatements(
    warehouse: str | os.PathLike[str] | None = None,
    *,
    target: str | None = None,
    since: datetime | None = None,
    limit: int = DEFAULT_LIMIT,
) -> Restatements:
    """Changes to figures already published, newest build first (then figure and key),
    recorded at or after ``since``; at most ``limit`` of them, and the count of the rest."""
    if limit < 1:
        raise PipelineError("--limit must be at least 1")
    where = "is_restatement" + (" and recorded_at >= ?" if since else "")
    params: list[object] = [since] if since else []
    with open_warehouse(
        warehouse, target=target, read_only=True, missing_hint="load and transform first"
    ) as wh:
        table = _require_ledger(wh)
        total = int(wh.query(f"select count(*) from {table} where {where}", params)[0][0])
        rows = wh.query(
            f"select {_COLUMNS} from {table} where {where}"
            " order by recorded_at desc, figure, figure_key limit ?",
            [*params, limit],
        )
    return Restatements([_row(values) for values in rows], max(0, total - len(rows)))


def figure_history(wh: Warehouse, figure: str, key: str) -> list[LedgerRow]:
    """Every value a figure has had, oldest first (empty when it was never published)."""
    table = _require_ledger(wh)
    rows = wh.query(
        f"select {_COLUMNS} from {table} where figure = ? and figure_key = ? order by recorded_at",
        [figure, key],
    )
    return [_row(values) for values in rows]


def restated_keys(wh: Warehouse) -> set[tuple[str, str]]:
    """(grain, key) of every figure restated at least once (the dashboard marks them)."""
    if not has_ledger(wh):
        return set()
    table = f"{layer_schema('gold')}.{LEDGER}"
    return {
        (str(grain), str(key))
        for grain, key in wh.query(
            f"select distinct grain, figure_key from {table} where is_restatement"
        )
    }


def format_restatements(result: Restatements) -> str:
    """The restatements as a table (names from the data are text, never markup)."""
    table = Table(title="Restated figures (newest first)", title_justify="left")
    for header, justify in (
        ("recorded at (UTC)", "left"),
        ("figure", "left"),
        ("key", "left"),
        ("old", "right"),
        ("new", "right"),
        ("delta", "right"),
        ("caused by loads", "left"),
    ):
        table.add_column(header, justify=justify)  # type: ignore[arg-type]
    for row in result.rows:
        table.add_row(
            row.recorded_at.strftime("%Y-%m-%d %H:%M:%S"),
            row.figure,
            Text(row.key),
            row.previous or "-",
            row.value or "-",
            row.delta or "-",
            Text(", ".join(row.cause_loads) or "-"),
        )
    console = Console(width=160, record=True, force_terminal=False, color_system=None)
    with console.capture() as captured:
        if result.rows:
            console.print(table)
        else:
            console.print("No published figure has been restated.")
        if result.more:
            console.print(f"... and {result.more:,} more (--limit, --since)")
    return captured.get()
