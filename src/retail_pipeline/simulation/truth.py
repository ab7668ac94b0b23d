"""Ground truth: the six answers (docs/metrics.md) from the simulator's own order lifecycles.

The simulator records what it decided for every order in an :class:`OrderLifecycle` (times in
milliseconds since the Unix epoch, payment amounts in integer cents, unit prices in integer
ten-thousandths) and feeds it to a :class:`TruthAccumulator`. Nothing here reads the emitted event
files or uses pipeline code, so the answers are an independent reference for the warehouse.
Orphan events, malformed lines and duplicate deliveries never reach a lifecycle, so they cannot
affect the truth.

Money follows docs/metrics.md: sums are exact (integers, no binary floats), and each reported figure
is rounded to cents once, at the end, half away from zero. Answers are in the reporting currency:
an order in another currency counts as an order (created, converted, canceled, refunded, lead
times) but its payments add nothing to revenue and its items nothing to product revenue.

:func:`compare_with_truth` says where answers read from a warehouse differ from the truth (the
check the demo's verdict and the tests make).
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

MS_PER_HOUR = 3_600_000
MS_PER_DAY = 86_400_000
TOP_PRODUCTS = 10
REPORTING_CURRENCY = "USD"
"""Money answers are in this currency (docs/metrics.md)."""
UNIT_PRICE_SCALE = 10_000
"""Unit prices are integers in 1/10000 of a currency unit (prices have at most 4 decimals)."""
CENTS_PER_UNIT_PRICE = UNIT_PRICE_SCALE // 100
_EPOCH = date(1970, 1, 1)

LineItem = tuple[str, int, int]
"""One basket line: ``(product_id, quantity, unit_price)``, the price in 1/10000 units."""


@dataclass(frozen=True)
class ProductInfo:
    """The reference attributes the answers report for a product."""

    product_name: str
    category: str


@dataclass(slots=True)
class OrderLifecycle:
    """Everything that happened to one order (only events inside the simulated horizon).

    ``baskets`` holds ``(event_ms, items)`` for the ``order_created`` event and every
    ``order_updated`` that carried items; ``captures`` and ``refunds`` hold
    ``(event_ms, amount_cents)``; the other lists hold event times. ``currency`` is the order's
    currency, which its payments carry too. ``channel`` and ``discount_cents`` are those of an
    ``order_created`` version 2 (None and 0 for version 1).
    """

    order_id: str
    created_ms: int
    currency: str = REPORTING_CURRENCY
    baskets: list[tuple[int, tuple[LineItem, ...]]] = field(default_factory=list)
    captures: list[tuple[int, int]] = field(default_factory=list)
    refunds: list[tuple[int, int]] = field(default_factory=list)
    cancels: list[int] = field(default_factory=list)
    dispatches: list[int] = field(default_factory=list)
    deliveries: list[int] = field(default_factory=list)
    channel: str | None = None
    discount_cents: int = 0


UNKNOWN_CHANNEL = "unknown"
"""The channel of an order created at version 1, which does not say (Silver's value too)."""


def percentile_cont(values: Iterable[float], fraction: float) -> float:
    """Continuous percentile with linear interpolation (SQL ``percentile_cont``).

    ``fraction`` is in [0, 1]; raises ``ValueError`` for an empty input.
    """
    return _percentile_sorted(sorted(values), fraction)


def _percentile_sorted(ordered: Sequence[float], fraction: float) -> float:
    if not ordered:
        raise ValueError("percentile of an empty sequence")
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be in [0, 1], got {fraction}")
    position = fraction * (len(ordered) - 1)
    lower = math.floor(position)
    upper = min(lower + 1, len(ordered) - 1)
    weight = position - lower
    return ordered[lower] + (ordered[upper] - ordered[lower]) * weight


def _iso_day(day: int) -> str:
    return (_EPOCH + timedelta(days=day)).isoformat()


def round_half_away(value: int, step: int) -> int:
    """``value / step`` rounded to an integer, halves away from zero (exact integer arithmetic).

    ``round_half_away(units, CENTS_PER_UNIT_PRICE)`` turns 1/10000 units into cents, like
    ``Decimal.quantize(Decimal("0.01"), ROUND_HALF_UP)``.
    """
    quotient, remainder = divmod(abs(value), step)
    if 2 * remainder >= step:
        quotient += 1
    return quotient if value >= 0 else -quotient


def _money(cents: int) -> float:
    """A whole number of cents as the reported money figure (the float prints exactly)."""
    return cents / 100


def _ratio(numerator: int, denominator: int) -> float:
    return numerator / denominator if denominator else 0.0


def _lead_time_stats(millis: array[int]) -> dict[str, Any]:
    if not millis:
        return {"count": 0, "mean": None, "p50": None, "p90": None}
    ordered = sorted(millis)
    return {
        "count": len(ordered),
        "mean": sum(ordered) / len(ordered) / MS_PER_HOUR,
        "p50": _percentile_sorted(ordered, 0.5) / MS_PER_HOUR,
        "p90": _percentile_sorted(ordered, 0.9) / MS_PER_HOUR,
    }


class TruthAccumulator:
    """Folds order lifecycles one at a time into the aggregates behind the answers.

    Memory is bounded by days, products and one integer per lead-time sample, so the
    simulator can stream millions of orders through it.
    """

    def __init__(self) -> None:
        self.orders = 0
        self._created_by_day: dict[int, int] = {}
        self._converted_by_day: dict[int, int] = {}
        self._gross_by_day: dict[int, int] = {}
        self._refunds_by_day: dict[int, int] = {}
        self._product_units: dict[str, int] = {}
        self._product_revenue: dict[str, int] = {}
        """Exact product revenue in 1/10000 units, rounded only when reported."""
        self.other_currency_orders = 0
        """Orders in a currency other than the reporting one (no revenue, still orders)."""
        self._canceled = 0
        self._refunded = 0
        self._canceled_or_refunded = 0
        self._created_to_shipped: array[int] = array("q")
        self._shipped_to_delivered: array[int] = array("q")
        self._created_to_delivered: array[int] = array("q")
        self._by_channel: dict[tuple[int, str], list[int]] = {}
        """(order day, channel) -> [orders, discount cents of the reporting-currency orders]."""

    def add(self, order: OrderLifecycle) -> None:
        """Fold one order's lifecycle into the aggregates."""
        self.orders += 1
        day = order.created_ms // MS_PER_DAY
        self._created_by_day[day] = self._created_by_day.get(day, 0) + 1
        channel = self._by_channel.setdefault((day, order.channel or UNKNOWN_CHANNEL), [0, 0])
        channel[0] += 1
        if order.currency == REPORTING_CURRENCY:
            channel[1] += order.discount_cents
        if order.captures:
            self._converted_by_day[day] = self._converted_by_day.get(day, 0) + 1
        reporting = order.currency == REPORTING_CURRENCY
        if reporting:
            for event_ms, cents in order.captures:
                capture_day = event_ms // MS_PER_DAY
                self._gross_by_day[capture_day] = self._gross_by_day.get(capture_day, 0) + cents
            for event_ms, cents in order.refunds:
                refund_day = event_ms // MS_PER_DAY
                self._refunds_by_day[refund_day] = self._refunds_by_day.get(refund_day, 0) + cents
        else:
            self.other_currency_orders += 1

        canceled = bool(order.cancels)
        refunded = bool(order.refunds)
        self._canceled += canceled
        self._refunded += refunded
        self._canceled_or_refunded += canceled or refunded

        if reporting and order.captures and not canceled and not refunded and order.baskets:
            latest_ms, items = order.baskets[0]
            for event_ms, basket in order.baskets[1:]:
                if event_ms >= latest_ms:
                    latest_ms, items = event_ms, basket
            for product_id, quantity, unit_price in items:
                self._product_units[product_id] = self._product_units.get(product_id, 0) + quantity
                self._product_revenue[product_id] = (
                    self._product_revenue.get(product_id, 0) + quantity * unit_price
                )

        first_dispatch = min(order.dispatches) if order.dispatches else None
        first_delivery = min(order.deliveries) if order.deliveries else None
        if first_dispatch is not None:
            self._created_to_shipped.append(first_dispatch - order.created_ms)
        if first_delivery is not None:
            self._created_to_delivered.append(first_delivery - order.created_ms)
            if first_dispatch is not None:
                self._shipped_to_delivered.append(first_delivery - first_dispatch)

    def answers(self, products: Mapping[str, ProductInfo]) -> dict[str, Any]:
        """The answers in docs/metrics.md's "Answers as JSON" shape.

        ``products`` maps product_id to its reference name and category. Money is in the
        reporting currency, rounded to cents once from the exact sums; top products rank by
        exact revenue, then product_id. Lead-time statistics of an empty population are
        ``null``; rates over zero orders are 0.0.
        """
        revenue_days = sorted(self._gross_by_day.keys() | self._refunds_by_day.keys())
        by_day = []
        for day in revenue_days:
            gross = self._gross_by_day.get(day, 0)
            refunds = self._refunds_by_day.get(day, 0)
            by_day.append(
                {
                    "date": _iso_day(day),
                    "gross": _money(gross),
                    "refunds": _money(refunds),
                    "net": _money(gross - refunds),
                }
            )
        gross_total = sum(self._gross_by_day.values())
        refunds_total = sum(self._refunds_by_day.values())

        created_days = sorted(self._created_by_day)
        conversion_by_day = []
        for day in created_days:
            created = self._created_by_day[day]
            converted = self._converted_by_day.get(day, 0)
            conversion_by_day.append(
                {
                    "date": _iso_day(day),
                    "created": created,
                    "converted": converted,
                    "rate": _ratio(converted, created),
                }
            )

        ranked = sorted(self._product_revenue.items(), key=lambda item: (-item[1], item[0]))
        top_products = []
        for product_id, revenue in ranked[:TOP_PRODUCTS]:
            info = products.get(product_id)
            top_products.append(
                {
                    "product_id": product_id,
                    "product_name": info.product_name if info else None,
                    "category": info.category if info else None,
                    "units": self._product_units[product_id],
                    "revenue": _money(round_half_away(revenue, CENTS_PER_UNIT_PRICE)),
                }
            )

        return {
            "orders_per_day": [
                {"date": _iso_day(day), "orders": self._created_by_day[day]} for day in created_days
            ],
            "revenue": {
                "gross": _money(gross_total),
                "refunds": _money(refunds_total),
                "net": _money(gross_total - refunds_total),
                "by_day": by_day,
            },
            "conversion_rate": {
                "overall": _ratio(sum(self._converted_by_day.values()), self.orders),
                "by_day": conversion_by_day,
            },
            "top_products": top_products,
            "cancel_refund": {
                "orders": self.orders,
                "canceled_rate": _ratio(self._canceled, self.orders),
                "refunded_rate": _ratio(self._refunded, self.orders),
                "canceled_or_refunded_rate": _ratio(self._canceled_or_refunded, self.orders),
            },
            "lead_times_hours": {
                "created_to_shipped": _lead_time_stats(self._created_to_shipped),
                "shipped_to_delivered": _lead_time_stats(self._shipped_to_delivered),
                "created_to_delivered": _lead_time_stats(self._created_to_delivered),
            },
        }

    def orders_by_channel(self) -> list[dict[str, Any]]:
        """Gold's ``daily_orders_by_channel``: per order date and channel (``unknown`` for
        orders created at version 1), the orders created and the sum of their discounts in the
        reporting currency (an order in another currency counts, its discount adds nothing),
        sorted by date, then channel."""
        return [
            {
                "date": _iso_day(day),
                "channel": channel,
                "orders": orders,
                "discount": _money(discount),
            }
            for (day, channel), (orders, discount) in sorted(self._by_channel.items())
        ]


def compute_truth(
    orders: Iterable[OrderLifecycle], products: Mapping[str, ProductInfo]
) -> dict[str, Any]:
    """The answers for a collection of order lifecycles (see :meth:`TruthAccumulator.answers`)."""
    accumulator = TruthAccumulator()
    for order in orders:
        accumulator.add(order)
    return accumulator.answers(products)


ANSWER_NAMES: dict[str, str] = {
    "orders_per_day": "orders per day",
    "revenue": "revenue",
    "conversion_rate": "conversion rate",
    "top_products": "top products",
    "cancel_refund": "canceled / refunded share",
    "lead_times_hours": "lead times",
}
"""The six answers by their key in docs/metrics.md's JSON shape, with a name for people."""
LEAD_TIME_TOLERANCE_HOURS = 1e-3
"""Lead-time statistics are floating-point hours; they agree to a thousandth of an hour (3.6 s).
Everything else (counts, money in cents, rates of exact counts) must be equal."""
_LEAD_TIME_STATISTICS = ("mean", "p50", "p90")


def compare_with_truth(answers: Mapping[str, Any], truth: Mapping[str, Any]) -> dict[str, str]:
    """Where ``answers`` (e.g. read from Gold) differ from ``truth`` (``truth.json``).

    Returns, per differing answer key (in the order of :data:`ANSWER_NAMES`), the first
    difference found, e.g. ``{"revenue": "revenue.by_day[2].net is 10.5, truth 10.51"}``; an
    empty dict when all six answers agree. Counts, money and rates must be equal; lead-time
    statistics may differ by :data:`LEAD_TIME_TOLERANCE_HOURS`.
    """
    differences: dict[str, str] = {}
    keys = [*ANSWER_NAMES, *(k for k in (*truth, *answers) if k not in ANSWER_NAMES)]
    for key in dict.fromkeys(keys):
        if key not in answers:
            found: str | None = f"{key} is missing"
        elif key not in truth:
            found = f"{key} is not in the truth"
        elif key == "lead_times_hours":
            found = _lead_time_difference(answers[key], truth[key])
        else:
            found = _first_difference(answers[key], truth[key], key)
        if found is not None:
            differences[key] = found
    return differences


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _first_difference(got: Any, want: Any, path: str) -> str | None:
    if isinstance(want, Mapping) and isinstance(got, Mapping):
        for key in dict.fromkeys((*want, *got)):
            if key not in got:
                return f"{path}.{key} is missing"
            if key not in want:
                return f"{path}.{key} is not in the truth"
            found = _first_difference(got[key], want[key], f"{path}.{key}")
            if found is not None:
                return found
        return None
    if isinstance(want, list) and isinstance(got, list):
        for index, (a, b) in enumerate(zip(got, want, strict=False)):
            found = _first_difference(a, b, f"{path}[{index}]")
            if found is not None:
                return found
        if len(got) != len(want):
            return f"{path} has {len(got)} entries, truth {len(want)}"
        return None
    if _same_money(got, want):
        return None
    if got != want or isinstance(got, bool) != isinstance(want, bool):
        return f"{path} is {_shown(got)}, truth {_shown(want)}"
    return None


def _same_money(got: Any, want: Any) -> bool:
    """Answers give money as exact decimal text ("12.30"), truth.json as a number (12.3)."""
    if not isinstance(got, str) or isinstance(want, bool) or not isinstance(want, int | float):
        return False
    try:
        return Decimal(got) == Decimal(repr(want))
    except ArithmeticError:
        return False


def _hours_close(got: Any, want: Any) -> bool:
    if got is None or want is None:
        return got is None and want is None
    numbers = (int, float)
    if not isinstance(got, numbers) or not isinstance(want, numbers):
        return False
    return abs(got - want) <= LEAD_TIME_TOLERANCE_HOURS


def _lead_time_difference(got: Any, want: Any) -> str | None:
    path = "lead_times_hours"
    if not isinstance(got, Mapping) or not isinstance(want, Mapping):
        return _first_difference(got, want, path)
    for segment in dict.fromkeys((*want, *got)):
        if segment not in got or segment not in want:
            return _first_difference(got, want, path)
        mine, true = got[segment], want[segment]
        where = f"{path}.{segment}"
        if not isinstance(mine, Mapping) or not isinstance(true, Mapping):
            return _first_difference(mine, true, where)
        exact = {k: v for k, v in mine.items() if k not in _LEAD_TIME_STATISTICS}
        found = _first_difference(
            exact, {k: v for k, v in true.items() if k not in _LEAD_TIME_STATISTICS}, where
        )
        if found is not None:
            return found
        for statistic in _LEAD_TIME_STATISTICS:
            a, b = mine.get(statistic), true.get(statistic)
            if not _hours_close(a, b):
                return f"{where}.{statistic} is {_shown(a)}, truth {_shown(b)}"
    return None
