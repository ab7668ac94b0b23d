"""Ground truth on hand-built scenarios whose answers were worked out by hand."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import pytest

from retail_pipeline.simulation.truth import (
    ANSWER_NAMES,
    LEAD_TIME_TOLERANCE_HOURS,
    UNIT_PRICE_SCALE,
    OrderLifecycle,
    ProductInfo,
    TruthAccumulator,
    compare_with_truth,
    compute_truth,
    percentile_cont,
    round_half_away,
)

PRODUCTS = {
    "P1": ProductInfo("Widget", "Tools"),
    "P2": ProductInfo("Gadget", "Electronics"),
    "P3": ProductInfo("Novel", "Books"),
    "P4": ProductInfo("Never Sold", "Tools"),
}


def at(day: int, hour: int, minute: int = 0) -> int:
    """Milliseconds since the epoch of 2026-01-<day> <hour>:<minute> UTC."""
    return int(datetime(2026, 1, day, hour, minute, tzinfo=UTC).timestamp() * 1000)


def price(text: str) -> int:
    """A unit price as the lifecycle holds it: an integer of 1/10000."""
    units = Decimal(text) * UNIT_PRICE_SCALE
    assert units == units.to_integral_value()
    return int(units)


def scenario() -> list[OrderLifecycle]:
    # A: captured, shipped and delivered.
    a = OrderLifecycle("A", at(1, 10))
    a.baskets.append((at(1, 10), (("P1", 2, price("10.00")),)))
    a.captures.append((at(1, 10, 5), 2000))
    a.dispatches.append(at(1, 20))
    a.deliveries.append(at(2, 20))

    # B: basket updated before payment (listed out of time order on purpose: the latest by
    # time wins), a failed payment (leaves no trace in the truth), capture, failed delivery
    # and a second dispatch (lead times use the first dispatch).
    b = OrderLifecycle("B", at(1, 12))
    b.baskets.append((at(1, 12, 30), (("P2", 2, price("25.50")), ("P3", 1, price("9.99")))))
    b.baskets.append((at(1, 12), (("P1", 1, price("10.00")), ("P2", 1, price("25.50")))))
    b.captures.append((at(1, 13), 6099))
    b.dispatches.extend([at(1, 18), at(2, 6)])
    b.deliveries.append(at(2, 18))

    # C: payment failed, then canceled before any capture.
    c = OrderLifecycle("C", at(1, 23))
    c.baskets.append((at(1, 23), (("P3", 3, price("9.99")),)))
    c.cancels.append(at(2, 1))

    # D: captured, canceled after capture, refunded.
    d = OrderLifecycle("D", at(2, 9))
    d.baskets.append((at(2, 9), (("P2", 1, price("25.50")),)))
    d.captures.append((at(2, 9, 10), 2550))
    d.cancels.append(at(2, 11))
    d.refunds.append((at(2, 15), 2550))

    # E: delivered, then partly refunded.
    e = OrderLifecycle("E", at(2, 10))
    e.baskets.append((at(2, 10), (("P1", 4, price("10.00")),)))
    e.captures.append((at(2, 10, 2), 4000))
    e.dispatches.append(at(2, 14))
    e.deliveries.append(at(2, 22))
    e.refunds.append((at(2, 23), 1000))

    # F: captured and dispatched, still in transit at the end of the window.
    f = OrderLifecycle("F", at(2, 20))
    f.baskets.append((at(2, 20), (("P3", 1, price("9.99")),)))
    f.captures.append((at(2, 20, 1), 999))
    f.dispatches.append(at(2, 23, 30))

    # G: created, nothing else yet.
    g = OrderLifecycle("G", at(2, 21))
    g.baskets.append((at(2, 21), (("P1", 1, price("10.00")),)))
    return [a, b, c, d, e, f, g]


def test_hand_built_scenario_answers() -> None:
    answers = compute_truth(scenario(), PRODUCTS)

    assert answers["orders_per_day"] == [
        {"date": "2026-01-01", "orders": 3},
        {"date": "2026-01-02", "orders": 4},
    ]
    # Captures: day 1 A 20.00 + B 60.99; day 2 D 25.50 + E 40.00 + F 9.99.
    # Refunds: day 2 D 25.50 + E 10.00.
    assert answers["revenue"] == {
        "gross": 156.48,
        "refunds": 35.5,
        "net": 120.98,
        "by_day": [
            {"date": "2026-01-01", "gross": 80.99, "refunds": 0.0, "net": 80.99},
            {"date": "2026-01-02", "gross": 75.49, "refunds": 35.5, "net": 39.99},
        ],
    }
    assert answers["conversion_rate"] == {
        "overall": 5 / 7,
        "by_day": [
            {"date": "2026-01-01", "created": 3, "converted": 2, "rate": 2 / 3},
            {"date": "2026-01-02", "created": 4, "converted": 3, "rate": 0.75},
        ],
    }
    # Qualifying orders (captured, neither canceled nor refunded): A, B (latest basket), F.
    assert answers["top_products"] == [
        {
            "product_id": "P2",
            "product_name": "Gadget",
            "category": "Electronics",
            "units": 2,
            "revenue": 51.0,
        },
        {
            "product_id": "P1",
            "product_name": "Widget",
            "category": "Tools",
            "units": 2,
            "revenue": 20.0,
        },
        {
            "product_id": "P3",
            "product_name": "Novel",
            "category": "Books",
            "units": 2,
            "revenue": 19.98,
        },
    ]
    # Canceled: C, D. Refunded: D, E. Either: C, D, E.
    assert answers["cancel_refund"] == {
        "orders": 7,
        "canceled_rate": 2 / 7,
        "refunded_rate": 2 / 7,
        "canceled_or_refunded_rate": 3 / 7,
    }
    lead = answers["lead_times_hours"]
    # created->shipped: F 3.5, E 4, B 6, A 10.
    assert lead["created_to_shipped"] == {"count": 4, "mean": 5.875, "p50": 5.0, "p90": 8.8}
    # shipped->delivered: E 8, A 24, B 24 (first dispatch to first delivery).
    assert lead["shipped_to_delivered"]["count"] == 3
    assert lead["shipped_to_delivered"]["mean"] == pytest.approx(56 / 3, abs=1e-12)
    assert lead["shipped_to_delivered"]["p50"] == 24.0
    assert lead["shipped_to_delivered"]["p90"] == 24.0
    # created->delivered: E 12, B 30, A 34.
    assert lead["created_to_delivered"]["count"] == 3
    assert lead["created_to_delivered"]["mean"] == pytest.approx(76 / 3, abs=1e-12)
    assert lead["created_to_delivered"]["p50"] == 30.0
    assert lead["created_to_delivered"]["p90"] == pytest.approx(33.2, abs=1e-12)
    assert set(answers) == {
        "orders_per_day",
        "revenue",
        "conversion_rate",
        "top_products",
        "cancel_refund",
        "lead_times_hours",
    }


def test_accumulator_streams_the_same_answers() -> None:
    accumulator = TruthAccumulator()
    for order in scenario():
        accumulator.add(order)
    assert accumulator.orders == 7
    assert accumulator.answers(PRODUCTS) == compute_truth(scenario(), PRODUCTS)


def test_top_products_keeps_ten_ordered_by_revenue_then_id() -> None:
    products = {f"P{i:02d}": ProductInfo(f"Product {i}", "Misc") for i in range(12)}
    orders = []
    for i in range(12):
        order = OrderLifecycle(f"O{i}", at(1, 9))
        # P00 and P01 tie at 5.00; the rest earn less as i grows.
        cents = 500 if i < 2 else 400 - i
        order.baskets.append((at(1, 9), ((f"P{i:02d}", 1, cents * 100),)))
        order.captures.append((at(1, 9, 1), cents))
        orders.append(order)
    top = compute_truth(reversed(orders), products)["top_products"]
    assert [row["product_id"] for row in top] == [f"P{i:02d}" for i in range(10)]
    assert top[0]["revenue"] == top[1]["revenue"] == 5.0


SUB_CENT_PRODUCTS = {
    "P5": ProductInfo("Screw", "Hardware"),
    "P6": ProductInfo("Sticker", "Stationery"),
    "P7": ProductInfo("Euro Mug", "Kitchen"),
    "P8": ProductInfo("Bead", "Crafts"),
}


def sub_cent_and_other_currency_scenario() -> list[OrderLifecycle]:
    # O1: 1000 x 0.125 = 125.000 exactly (not 1000 x 0.13 = 130.00).
    o1 = OrderLifecycle("O1", at(1, 10))
    o1.baskets.append((at(1, 10), (("P5", 1000, price("0.125")),)))
    o1.captures.append((at(1, 10, 5), 12500))

    # O2: 2.4999 + 0.125 = 2.6249 -> order total 2.62.
    o2 = OrderLifecycle("O2", at(1, 11))
    o2.baskets.append((at(1, 11), (("P6", 1, price("2.4999")), ("P5", 1, price("0.125")))))
    o2.captures.append((at(1, 11, 5), 262))

    # O3: an EUR order, captured: an order and a conversion, but no revenue of any kind.
    o3 = OrderLifecycle("O3", at(1, 12), "EUR")
    o3.baskets.append((at(1, 12), (("P7", 2, price("19.995")),)))
    o3.captures.append((at(1, 12, 5), 3999))

    # O4: an EUR order captured and refunded: refunded, but neither gross nor refunds.
    o4 = OrderLifecycle("O4", at(2, 9), "EUR")
    o4.baskets.append((at(2, 9), (("P7", 1, price("19.995")),)))
    o4.captures.append((at(2, 9, 5), 2000))
    o4.refunds.append((at(2, 15), 2000))

    # O5: 3 x 2.4999 = 7.4997 -> 7.50, captured, then one unit refunded (2.50).
    o5 = OrderLifecycle("O5", at(2, 10))
    o5.baskets.append((at(2, 10), (("P6", 3, price("2.4999")),)))
    o5.captures.append((at(2, 10, 5), 750))
    o5.refunds.append((at(2, 18), 250))

    # O6-O8: one bead at 0.3333 each -> 0.33 paid each; product revenue 0.9999 -> 1.00 (rounding
    # each line first would give 0.99).
    beads = []
    for number, hour in ((6, 11), (7, 12), (8, 13)):
        order = OrderLifecycle(f"O{number}", at(2, hour))
        order.baskets.append((at(2, hour), (("P8", 1, price("0.3333")),)))
        order.captures.append((at(2, hour, 5), 33))
        beads.append(order)

    # O9: a GBP order never paid.
    o9 = OrderLifecycle("O9", at(2, 14), "GBP")
    o9.baskets.append((at(2, 14), (("P7", 1, price("19.995")),)))
    return [o1, o2, o3, o4, o5, *beads, o9]


def test_sub_cent_prices_and_other_currencies() -> None:
    answers = compute_truth(sub_cent_and_other_currency_scenario(), SUB_CENT_PRODUCTS)

    # Every order counts, whatever its currency.
    assert answers["orders_per_day"] == [
        {"date": "2026-01-01", "orders": 3},
        {"date": "2026-01-02", "orders": 6},
    ]
    # USD only. Gross: day 1 O1 125.00 + O2 2.62; day 2 O5 7.50 + 3 x 0.33.
    # Refunds: day 2 O5 2.50 (O4's EUR refund is not subtracted).
    assert answers["revenue"] == {
        "gross": 136.11,
        "refunds": 2.5,
        "net": 133.61,
        "by_day": [
            {"date": "2026-01-01", "gross": 127.62, "refunds": 0.0, "net": 127.62},
            {"date": "2026-01-02", "gross": 8.49, "refunds": 2.5, "net": 5.99},
        ],
    }
    # The EUR orders O3 and O4 converted; the GBP order O9 did not.
    assert answers["conversion_rate"] == {
        "overall": 8 / 9,
        "by_day": [
            {"date": "2026-01-01", "created": 3, "converted": 3, "rate": 1.0},
            {"date": "2026-01-02", "created": 6, "converted": 5, "rate": 5 / 6},
        ],
    }
    # Qualifying USD orders: O1, O2, O6-O8 (O5 is refunded). P5: 1000 x 0.125 + 0.125 = 125.125
    # -> 125.13 (half away from zero, once, at the end); P6: 2.4999 -> 2.50; P8: 0.9999 -> 1.00.
    # P7 is sold only in EUR, so it earns nothing.
    assert answers["top_products"] == [
        {
            "product_id": "P5",
            "product_name": "Screw",
            "category": "Hardware",
            "units": 1001,
            "revenue": 125.13,
        },
        {
            "product_id": "P6",
            "product_name": "Sticker",
            "category": "Stationery",
            "units": 1,
            "revenue": 2.5,
        },
        {
            "product_id": "P8",
            "product_name": "Bead",
            "category": "Crafts",
            "units": 3,
            "revenue": 1.0,
        },
    ]
    # O4 (EUR) is refunded like any order.
    assert answers["cancel_refund"] == {
        "orders": 9,
        "canceled_rate": 0.0,
        "refunded_rate": 2 / 9,
        "canceled_or_refunded_rate": 2 / 9,
    }


def test_a_thousand_at_an_eighth_is_125() -> None:
    order = OrderLifecycle("O", at(1, 9))
    order.baskets.append((at(1, 9), (("P5", 1000, price("0.125")),)))
    order.captures.append((at(1, 9, 1), 12500))
    top = compute_truth([order], SUB_CENT_PRODUCTS)["top_products"]
    assert top[0]["revenue"] == 125.0


def test_top_products_rank_by_exact_revenue() -> None:
    # P6 earns 1.0049 and P5 1.0040: both report 1.00, but P6 earned more.
    orders = []
    for name, product, unit_price in (("A", "P5", "1.004"), ("B", "P6", "1.0049")):
        order = OrderLifecycle(name, at(1, 9))
        order.baskets.append((at(1, 9), ((product, 1, price(unit_price)),)))
        order.captures.append((at(1, 9, 1), 100))
        orders.append(order)
    top = compute_truth(orders, SUB_CENT_PRODUCTS)["top_products"]
    assert [(row["product_id"], row["revenue"]) for row in top] == [("P6", 1.0), ("P5", 1.0)]


@pytest.mark.parametrize("step", [100, 10_000])
def test_round_half_away_matches_decimal_round_half_up(step: int) -> None:
    for value in [*range(-1000, 1001), 12_512_500, -12_512_500, 10**20 + step // 2]:
        expected = (Decimal(value) / step).quantize(Decimal(1), rounding=ROUND_HALF_UP)
        assert round_half_away(value, step) == int(expected), value
    assert round_half_away(1_251_250, 100) == 12_513  # 125.1250 -> 125.13, not 125.12
    assert round_half_away(-50, 100) == -1


def test_empty_input() -> None:
    answers = compute_truth([], PRODUCTS)
    assert answers["orders_per_day"] == []
    assert answers["revenue"] == {"gross": 0.0, "refunds": 0.0, "net": 0.0, "by_day": []}
    assert answers["conversion_rate"] == {"overall": 0.0, "by_day": []}
    assert answers["top_products"] == []
    assert answers["cancel_refund"]["orders"] == 0
    assert answers["lead_times_hours"]["created_to_shipped"] == {
        "count": 0,
        "mean": None,
        "p50": None,
        "p90": None,
    }


def test_percentile_cont_interpolates() -> None:
    assert percentile_cont([1, 2, 3, 4], 0.5) == 2.5
    assert percentile_cont([4, 1, 3, 2], 0.9) == pytest.approx(3.7, abs=1e-12)
    assert percentile_cont([1, 2, 3, 4], 0.0) == 1
    assert percentile_cont([1, 2, 3, 4], 1.0) == 4
    assert percentile_cont([7.5], 0.9) == 7.5
    assert percentile_cont([10, 20], 0.25) == 12.5


def test_percentile_cont_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        percentile_cont([], 0.5)
    with pytest.raises(ValueError):
        percentile_cont([1.0], 1.5)


def _changed(answers: dict[str, Any], change: Any) -> dict[str, Any]:
    changed = copy.deepcopy(answers)
    change(changed)
    return changed


def test_compare_with_truth_finds_nothing_in_equal_answers() -> None:
    truth = compute_truth(scenario(), PRODUCTS)
    assert list(truth) == list(ANSWER_NAMES)
    assert compare_with_truth(copy.deepcopy(truth), truth) == {}
    assert compare_with_truth(compute_truth([], PRODUCTS), compute_truth([], PRODUCTS)) == {}


@pytest.mark.parametrize(
    ("change", "key", "detail"),
    [
        (
            lambda a: a["orders_per_day"][1].update(orders=5),
            "orders_per_day",
            "orders_per_day[1].orders is 5, truth 4",
        ),
        (
            lambda a: a["revenue"]["by_day"][0].update(net=a["revenue"]["by_day"][0]["net"] + 0.01),
            "revenue",
            "revenue.by_day[0].net",
        ),
        (
            lambda a: a["revenue"]["by_day"].pop(),
            "revenue",
            "revenue.by_day has 1 entries, truth 2",
        ),
        (
            lambda a: a["conversion_rate"].update(overall=a["conversion_rate"]["overall"] + 1e-12),
            "conversion_rate",
            "conversion_rate.overall",
        ),
        (
            lambda a: a["top_products"][0].update(product_id="P9"),
            "top_products",
            "top_products[0].product_id is 'P9', truth",
        ),
        (
            lambda a: a["cancel_refund"].update(canceled_rate=0.5),
            "cancel_refund",
            "cancel_refund.canceled_rate is 0.5",
        ),
        (
            lambda a: a["lead_times_hours"]["created_to_shipped"].update(count=99),
            "lead_times_hours",
            "lead_times_hours.created_to_shipped.count is 99",
        ),
        (
            lambda a: a["lead_times_hours"]["created_to_delivered"].update(
                p90=a["lead_times_hours"]["created_to_delivered"]["p90"]
                + 2 * LEAD_TIME_TOLERANCE_HOURS
            ),
            "lead_times_hours",
            "lead_times_hours.created_to_delivered.p90",
        ),
        (
            lambda a: a["lead_times_hours"]["shipped_to_delivered"].update(mean=None),
            "lead_times_hours",
            "lead_times_hours.shipped_to_delivered.mean is None",
        ),
        (lambda a: a.pop("top_products"), "top_products", "top_products is missing"),
    ],
)
def test_compare_with_truth_names_the_first_difference(change: Any, key: str, detail: str) -> None:
    """Counts, money and rates must be equal (a cent or 1e-12 of a rate is a difference)."""
    truth = compute_truth(scenario(), PRODUCTS)
    differences = compare_with_truth(_changed(truth, change), truth)
    assert list(differences) == [key]
    assert differences[key].startswith(detail), differences[key]


def test_compare_with_truth_allows_lead_times_within_the_tolerance() -> None:
    truth = compute_truth(scenario(), PRODUCTS)

    def nudge(answers: dict[str, Any]) -> None:
        for stats in answers["lead_times_hours"].values():
            for key in ("mean", "p50", "p90"):
                if stats[key] is not None:
                    stats[key] += LEAD_TIME_TOLERANCE_HOURS / 2

    assert compare_with_truth(_changed(truth, nudge), truth) == {}


def test_compare_with_truth_reports_each_differing_answer_in_order() -> None:
    truth = compute_truth(scenario(), PRODUCTS)

    def break_three(answers: dict[str, Any]) -> None:
        answers["cancel_refund"]["orders"] += 1
        answers["orders_per_day"][0]["date"] = "2026-01-03"
        answers["extra"] = 1

    differences = compare_with_truth(_changed(truth, break_three), truth)
    assert list(differences) == ["orders_per_day", "cancel_refund", "extra"]
    assert differences["extra"] == "extra is not in the truth"
