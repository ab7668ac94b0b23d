"""The simulator: determinism, contract validity, fault bookkeeping, reference snapshots, and an
independent recomputation of every answer from the emitted files that must equal truth.json.

Lines are classified by the plain-Python reference of the contract (``tests/events/reference.py``),
not by the pipeline's validator, so the two can be checked against each other.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter, defaultdict
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest

from retail_pipeline.events import contract
from retail_pipeline.simulation import FaultRates, GenerationSummary, generate
from retail_pipeline.simulation.faults import MALFORMED_KINDS, UNKNOWN_EVENT_TYPES
from tests.events.reference import (
    Invalid,
    check_decimal_amount,
    check_non_empty_string,
    check_timestamp,
    parse_strict,
    reference_reason,
    strict_pairs,
)

HEAVY_FAULTS = FaultRates(duplicate=0.05, out_of_order=0.08, late=0.03, malformed=0.05, orphan=0.02)
TOPICS = ("orders", "payments", "shipments")

CENT = Decimal("0.01")

# Lines are judged by the plain reference in tests/events/reference.py (Python's json and
# Decimal, no pipeline code), the same one the validator's property tests compare against.


def parse_line(raw: bytes, topic: str | None = None) -> dict[str, Any]:
    """The event of one valid NDJSON line, numbers as int or Decimal."""
    reason = reference_reason(raw, topic)
    assert reason is None, reason
    return parse_strict(raw)


def is_valid(raw: bytes, topic: str | None = None) -> bool:
    return reference_reason(raw, topic) is None


def cents(value: Decimal) -> Decimal:
    """Rounded to cents, half away from zero."""
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def read_lines(out_dir: Path, topic: str) -> list[bytes]:
    return (out_dir / "events" / f"{topic}.ndjson").read_bytes().splitlines()


def valid_events(out_dir: Path, topic: str) -> list[dict[str, Any]]:
    return [parse_line(raw, topic) for raw in read_lines(out_dir, topic) if is_valid(raw, topic)]


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(root)): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


@pytest.fixture(scope="module")
def heavy_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, GenerationSummary]:
    out = tmp_path_factory.mktemp("heavy")
    summary = generate(out, days=4, orders_per_day=150, seed=11, faults=HEAVY_FAULTS)
    return out, summary


def test_the_reference_validator_rejects_what_metrics_rejects() -> None:
    good = {
        "event_id": "e1",
        "event_type": "order_created",
        "event_version": 1,
        "event_timestamp": "2026-01-15T10:00:00.123Z",
        "produced_at": "2026-01-15T10:00:01Z",
        "source_system": "web-shop",
        "order_id": "o1",
        "customer_id": "c1",
        "order_total": 125.13,
        "currency": "USD",
        "order_status": "created",
        "items": [
            {"product_id": "p1", "quantity": 1000, "unit_price": 0.125},
            {"product_id": "p2", "quantity": 1, "unit_price": 0.125},
        ],
    }
    line = orjson.dumps(good)
    assert parse_line(line, "orders")["items"][0]["unit_price"] == Decimal("0.125")
    assert is_valid(line.replace(b"125.13", b"1.2513E+2"))
    bad = [
        line.replace(b'"order_total":125.13', b'"order_total":125.13,"order_total":125.13'),
        line.replace(b"125.13", b"125.131"),
        line.replace(b"125.13", b"NaN"),
        line.replace(b"125.13", b"1e309"),
        line.replace(b"125.13", b'"125.13"'),
        line.replace(b"0.125}", b"0.12501}"),
        line.replace(b'"quantity":1,', b'"quantity":1.0,'),
        line.replace(b'"quantity":1,', b'"quantity":true,'),
        line.replace(b'"event_version":1', b'"event_version":1.0'),
        line.replace(b"USD", b"usd"),
        line.replace(b"USD", b"ZZZ"),
        line.replace(b"2026-01-15T10:00:00.123Z", b"2026-01-15T10:00:00.123+00:00"),
        line.replace(b"2026-01-15T10:00:00.123Z", b"2100-01-01T00:00:00Z"),
        line.replace(b"2026-01-15T10:00:00.123Z", b"1969-12-31T23:59:59Z"),
        line.replace(b"2026-01-15T10:00:00.123Z", b"2026-02-30T10:00:00Z"),
        b"\xef\xbb\xbf" + line,
    ]
    for raw in bad:
        assert raw != line
        assert not is_valid(raw), raw


# --- an independent implementation of METRICS.md over the emitted files -----------------------


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    rank = q * (len(ordered) - 1)
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def recompute_answers(out_dir: Path) -> dict[str, Any]:
    """The METRICS.md answers from the event files alone, written without the simulator's code.

    Money is exact Decimal, rounded to cents half away from zero once per reported figure; only
    USD payments add to revenue and only USD orders to product revenue.
    """
    events: dict[str, dict[str, Any]] = {}
    for topic in TOPICS:
        for event in valid_events(out_dir, topic):
            events.setdefault(event["event_id"], event)

    by_order: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for event in events.values():
        by_order[event["order_id"]].append(event)
    orders = {
        order_id: evs
        for order_id, evs in by_order.items()
        if any(e["event_type"] == "order_created" for e in evs)
    }

    created_per_day: Counter[str] = Counter()
    converted_per_day: Counter[str] = Counter()
    gross: dict[str, Decimal] = defaultdict(Decimal)
    refunds: dict[str, Decimal] = defaultdict(Decimal)
    units: Counter[str] = Counter()
    product_revenue: dict[str, Decimal] = defaultdict(Decimal)
    canceled = refunded = either = 0
    leads: dict[str, list[float]] = {
        "created_to_shipped": [],
        "shipped_to_delivered": [],
        "created_to_delivered": [],
    }

    for evs in orders.values():

        def of(kind: str, evs: list[dict[str, Any]] = evs) -> list[dict[str, Any]]:
            return sorted(
                (e for e in evs if e["event_type"] == kind),
                key=lambda e: _time(e["event_timestamp"]),
            )

        created = of("order_created")[0]
        created_at = _time(created["event_timestamp"])
        order_day = created_at.date().isoformat()
        created_per_day[order_day] += 1
        captures = of("payment_captured")
        if captures:
            converted_per_day[order_day] += 1
        for capture in captures:
            if capture["currency"] == "USD":
                day = capture["event_timestamp"][:10]
                gross[day] += Decimal(capture["amount"])
        refund_events = of("payment_refunded")
        for refund in refund_events:
            if refund["currency"] == "USD":
                refunds[refund["event_timestamp"][:10]] += Decimal(refund["amount"])
        is_canceled = bool(of("order_canceled"))
        is_refunded = bool(refund_events)
        canceled += is_canceled
        refunded += is_refunded
        either += is_canceled or is_refunded
        if captures and not is_canceled and not is_refunded and created["currency"] == "USD":
            baskets = [
                e
                for e in evs
                if e["event_type"] in ("order_created", "order_updated")
                and e.get("items") is not None
            ]
            latest = max(baskets, key=lambda e: _time(e["event_timestamp"]))
            for item in latest["items"]:
                units[item["product_id"]] += item["quantity"]
                product_revenue[item["product_id"]] += item["quantity"] * item["unit_price"]
        dispatched = of("shipment_dispatched")
        delivered = of("shipment_delivered")
        hours = 3600.0
        if dispatched:
            first_dispatch = _time(dispatched[0]["event_timestamp"])
            leads["created_to_shipped"].append(
                (first_dispatch - created_at).total_seconds() / hours
            )
        if delivered:
            first_delivery = _time(delivered[0]["event_timestamp"])
            leads["created_to_delivered"].append(
                (first_delivery - created_at).total_seconds() / hours
            )
            if dispatched:
                leads["shipped_to_delivered"].append(
                    (first_delivery - first_dispatch).total_seconds() / hours
                )

    def money(value: Decimal) -> float:
        return float(cents(value))

    products = {p["product_id"]: p for p in json.loads((out_dir / "products.json").read_text())}
    ranked = sorted(product_revenue, key=lambda pid: (-product_revenue[pid], pid))[:10]
    total_orders = sum(created_per_day.values())
    revenue_days = sorted(set(gross) | set(refunds))
    gross_total = sum(gross.values(), Decimal())
    refunds_total = sum(refunds.values(), Decimal())
    return {
        "orders_per_day": [
            {"date": d, "orders": created_per_day[d]} for d in sorted(created_per_day)
        ],
        "revenue": {
            "gross": money(gross_total),
            "refunds": money(refunds_total),
            "net": money(gross_total - refunds_total),
            "by_day": [
                {
                    "date": d,
                    "gross": money(gross[d]),
                    "refunds": money(refunds[d]),
                    "net": money(gross[d] - refunds[d]),
                }
                for d in revenue_days
            ],
        },
        "conversion_rate": {
            "overall": sum(converted_per_day.values()) / total_orders,
            "by_day": [
                {
                    "date": d,
                    "created": created_per_day[d],
                    "converted": converted_per_day[d],
                    "rate": converted_per_day[d] / created_per_day[d],
                }
                for d in sorted(created_per_day)
            ],
        },
        "top_products": [
            {
                "product_id": pid,
                "product_name": products[pid]["product_name"],
                "category": products[pid]["category"],
                "units": units[pid],
                "revenue": money(product_revenue[pid]),
            }
            for pid in ranked
        ],
        "cancel_refund": {
            "orders": total_orders,
            "canceled_rate": canceled / total_orders,
            "refunded_rate": refunded / total_orders,
            "canceled_or_refunded_rate": either / total_orders,
        },
        "lead_times_hours": {
            name: {
                "count": len(values),
                "mean": sum(values) / len(values),
                "p50": _percentile(values, 0.5),
                "p90": _percentile(values, 0.9),
            }
            for name, values in leads.items()
        },
    }


def assert_same_answers(actual: Any, expected: Any, path: str = "") -> None:
    """Equal structure; money exactly equal (both are cents), rates within 1e-9, hours 1e-6."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict) and actual.keys() == expected.keys(), path
        for key in expected:
            assert_same_answers(actual[key], expected[key], f"{path}.{key}")
    elif isinstance(expected, list):
        assert isinstance(actual, list) and len(actual) == len(expected), path
        for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
            assert_same_answers(a, e, f"{path}[{i}]")
    elif isinstance(expected, float) and ("lead_times" in path or "rate" in path):
        tolerance = 1e-6 if "lead_times" in path else 1e-9
        assert isinstance(actual, (int, float)) and math.isclose(
            actual, expected, abs_tol=tolerance
        ), f"{path}: {actual} != {expected}"
    else:
        assert actual == expected, f"{path}: {actual!r} != {expected!r}"


# --- tests -----------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [11, 2026])
def test_truth_matches_an_independent_recomputation(tmp_path: Path, seed: int) -> None:
    generate(tmp_path, days=7, orders_per_day=100, seed=seed, faults=HEAVY_FAULTS)
    truth = json.loads((tmp_path / "truth.json").read_text())
    recomputed = recompute_answers(tmp_path)
    assert recomputed["cancel_refund"]["orders"] > 600
    assert recomputed["lead_times_hours"]["shipped_to_delivered"]["count"] > 100
    assert recomputed["revenue"]["refunds"] > 0
    assert_same_answers(truth, recomputed)


def test_same_seed_same_bytes_and_different_seed_differs(tmp_path: Path) -> None:
    args: dict[str, Any] = {"days": 2, "orders_per_day": 80, "faults": HEAVY_FAULTS}
    generate(tmp_path / "a", seed=5, **args)
    generate(tmp_path / "b", seed=5, **args)
    generate(tmp_path / "c", seed=6, **args)
    first = tree_bytes(tmp_path / "a")
    assert "events/orders.ndjson" in first
    assert first == tree_bytes(tmp_path / "b")
    other = tree_bytes(tmp_path / "c")
    assert first.keys() == other.keys()
    for name in ("events/orders.ndjson", "events/payments.ndjson", "truth.json"):
        assert first[name] != other[name]


def test_lines_validate_and_counts_match_the_summary(
    heavy_run: tuple[Path, GenerationSummary],
) -> None:
    out, summary = heavy_run
    created_orders: set[str] = set()
    valid_by_topic: dict[str, list[bytes]] = {}
    for topic in TOPICS:
        lines = read_lines(out, topic)
        stats = summary.topics[topic]
        assert stats.path == out / "events" / f"{topic}.ndjson"
        assert len(lines) == stats.lines
        valid = [raw for raw in lines if is_valid(raw, topic)]
        malformed = [raw for raw in lines if not is_valid(raw, topic)]
        assert len(malformed) == stats.malformed > 0
        assert sum(stats.malformed_by_kind.values()) == stats.malformed
        for raw in valid:
            # Compact canonical JSON, exactly what orjson would write for the same values.
            assert orjson.dumps(orjson.loads(raw)) == raw
        first_copy: dict[str, bytes] = {}
        duplicates = 0
        for raw in valid:
            event_id = json.loads(raw)["event_id"]
            if event_id in first_copy:
                duplicates += 1
                assert first_copy[event_id] == raw  # a duplicate is byte-identical
            else:
                first_copy[event_id] = raw
        assert duplicates == stats.duplicates > 0
        assert len(first_copy) == stats.valid_events
        valid_by_topic[topic] = list(first_copy.values())
        if topic == "orders":
            created_orders = {
                event["order_id"]
                for event in map(json.loads, first_copy.values())
                if event["event_type"] == "order_created"
            }
            assert len(created_orders) == summary.orders
    for topic in TOPICS:
        orphans = sum(
            json.loads(raw)["order_id"] not in created_orders for raw in valid_by_topic[topic]
        )
        assert orphans == summary.topics[topic].orphans
    assert summary.topics["orders"].orphans == 0
    assert summary.orphans > 0
    assert summary.lines == summary.valid_events + summary.duplicates + summary.malformed


def test_every_malformed_kind_breaks_the_contract(tmp_path: Path) -> None:
    only_garbage = FaultRates(duplicate=0.0, out_of_order=0.0, late=0.0, malformed=1.0, orphan=0.0)
    summary = generate(tmp_path, days=2, orders_per_day=300, seed=3, faults=only_garbage)
    kinds: Counter[str] = Counter()
    all_garbage: list[bytes] = []
    for topic in TOPICS:
        lines = read_lines(tmp_path, topic)
        valid = [raw for raw in lines if is_valid(raw, topic)]
        garbage = [raw for raw in lines if not is_valid(raw, topic)]
        assert len(valid) == len(garbage) == summary.topics[topic].malformed
        for raw in garbage:
            assert not is_valid(raw)  # also without the topic check
            assert b"\n" not in raw
        all_garbage += garbage
        kinds.update(summary.topics[topic].malformed_by_kind)
        undecodable = 0
        for raw in garbage:
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError:
                undecodable += 1
        assert undecodable == summary.topics[topic].malformed_by_kind.get("invalid_utf8", 0)
    assert set(kinds) == set(MALFORMED_KINDS)
    assert set(summary.topics["shipments"].malformed_by_kind).isdisjoint(
        {"non_finite_money", "bad_currency", "bad_quantity"}
    )
    # The hostile values are written raw, not quoted or normalised by a serializer.
    text = b"\n".join(all_garbage)
    for token in (
        b":1e309",
        b":-1e309",
        b":NaN",
        b":Infinity",
        b":1e20",
        b":1e16",
        b'"USD"',
        b'"usd"',
        b'"ZZZ"',
        b'"quantity":0',
        b'"quantity":2.0',
        b'"quantity":1000000001',
        b'"event_version":true',
        b'"event_version":1.0',
        b'"0000-01-01T00:00:00Z"',
        b'"1969-12-31T23:59:59Z"',
        b'"2100-01-01T00:00:00Z"',
        b'+00:00"',
    ):
        assert token in text, token
    repeated = [raw for raw in all_garbage if _has_repeated_key(raw)]
    assert len(repeated) >= summary.topics["orders"].malformed_by_kind["duplicate_key"]
    too_precise = [
        raw for raw in all_garbage if re.search(rb'"(amount|order_total)":\d+\.\d{3}[,}]', raw)
    ]
    assert too_precise and re.search(rb'"unit_price":\d+\.\d{5}[,}]', text)
    assert re.search(rb'"(amount|order_total|unit_price)":"\d+\.\d+"', text)  # as a string
    assert re.search(rb'"(amount|order_total|unit_price)":-\d', text)  # negative


def test_unknown_event_types_are_not_the_contracts_and_valid_ones_are(tmp_path: Path) -> None:
    """The event types the simulator writes on purpose as unknown are in no topic of the contract
    (``retail_pipeline.events.contract``, not the test reference); every type on a valid line is
    the contract's type of that line's topic."""
    assert set(UNKNOWN_EVENT_TYPES) == set(contract.TOPICS)
    for topic, unknown in UNKNOWN_EVENT_TYPES.items():
        assert unknown, topic
        assert set(unknown).isdisjoint(contract.EVENT_TYPES), (topic, unknown)

    only_garbage = FaultRates(duplicate=0.0, out_of_order=0.0, late=0.0, malformed=1.0, orphan=0.0)
    summary = generate(tmp_path, days=2, orders_per_day=300, seed=5, faults=only_garbage)
    for topic in contract.TOPICS:
        valid: set[str] = set()
        unknown_written: set[str] = set()
        for raw in read_lines(tmp_path, topic):
            try:
                event = orjson.loads(raw)
            except orjson.JSONDecodeError:  # invalid JSON or UTF-8, truncated: no type to read
                continue
            event_type = event.get("event_type") if isinstance(event, dict) else None
            if not isinstance(event_type, str):  # the field missing or of the wrong type
                continue
            if is_valid(raw, topic):
                assert contract.EVENT_TYPE_TOPIC.get(event_type) == topic, (topic, raw)
                valid.add(event_type)
            elif event_type not in contract.EVENT_TYPES:
                unknown_written.add(event_type)
        assert valid and valid <= set(contract.TOPIC_EVENT_TYPES[topic]), (topic, valid)
        assert summary.topics[topic].malformed_by_kind["unknown_event_type"] > 0, topic
        assert unknown_written == set(UNKNOWN_EVENT_TYPES[topic]), topic


def _has_repeated_key(raw: bytes) -> bool:
    try:
        parse_strict(raw)
    except Invalid as exc:
        return str(exc).startswith("repeated key")
    return False


def test_event_shapes_money_and_currencies(heavy_run: tuple[Path, GenerationSummary]) -> None:
    out, _ = heavy_run
    orders = valid_events(out, "orders")
    currencies: dict[str, str] = {}
    sub_cent_products: set[str] = set()
    all_products: set[str] = set()
    half_cent_lines = 0
    half_even_would_differ = 0
    for event in orders:
        assert event["event_version"] == (
            2 if event["event_type"] == "order_created" and "channel" in event else 1
        )
        assert event["currency"] in ("USD", "EUR", "GBP")
        assert event["event_timestamp"].endswith("Z") and len(event["event_timestamp"]) == 24
        assert event["produced_at"] >= event["event_timestamp"]
        assert currencies.setdefault(event["order_id"], event["currency"]) == event["currency"]
        if "items" in event:
            exact = sum(item["quantity"] * item["unit_price"] for item in event["items"])
            # order_total is the exact sum (less a version 2 discount) rounded to cents half
            # away from zero.
            assert event["order_total"] == cents(exact - event.get("discount", 0))
            half_even_would_differ += cents(exact) != exact.quantize(CENT)
            assert 1 <= len(event["items"]) <= 5
            for item in event["items"]:
                all_products.add(item["product_id"])
                if item["unit_price"] != item["unit_price"].quantize(CENT):
                    sub_cent_products.add(item["product_id"])
                line = item["quantity"] * item["unit_price"]
                half_cent_lines += (line * 100) % 1 == Decimal("0.5")
    # About 15% of products have 3 or 4 decimals; rounding halves actually occur.
    assert 0.07 < len(sub_cent_products) / len(all_products) < 0.25
    assert half_cent_lines > 0 and half_even_would_differ > 0
    # About 8% of orders are in EUR or GBP, and their payments carry the same currency.
    other = sum(currency != "USD" for currency in currencies.values())
    assert 0.04 < other / len(currencies) < 0.14
    assert {"EUR", "GBP"} <= set(currencies.values())
    payments = valid_events(out, "payments")
    for payment in payments:
        if payment["order_id"] in currencies:
            assert payment["currency"] == currencies[payment["order_id"]]
    # A captured amount is the order_total of the basket it paid for.
    latest_total: dict[str, Decimal] = {}
    for event in sorted(orders, key=lambda e: e["event_timestamp"]):
        if "items" in event:
            latest_total[event["order_id"]] = event["order_total"]
    for payment in payments:
        if payment["event_type"] == "payment_captured" and payment["order_id"] in latest_total:
            assert payment["amount"] == latest_total[payment["order_id"]]
    # Out-of-order and late arrivals: some events come after ones that happened minutes later.
    times = [_time(e["event_timestamp"]) for e in payments]
    running_max = times[0]
    behind = 0
    for current in times[1:]:
        if (running_max - current).total_seconds() > 60:
            behind += 1
        running_max = max(running_max, current)
    assert behind > 0


def test_fields_are_the_contracts_in_its_order(heavy_run: tuple[Path, GenerationSummary]) -> None:
    """Valid events and reference records carry the contract's fields, in the contract's order
    (``retail_pipeline.events.contract``); the only field of our own is a failed payment's
    ``failure_reason``, last."""
    out, summary = heavy_run
    for topic in TOPICS:
        fields = contract.event_fields(topic)
        required = [spec.name for spec in fields if spec.required]
        names = [spec.name for spec in fields]
        checked = 0
        for raw in read_lines(out, topic):
            if not is_valid(raw, topic):
                continue
            checked += 1
            keys = list(orjson.loads(raw))
            if keys[-1] == "failure_reason":
                assert orjson.loads(raw)["event_type"] == "payment_failed", raw
                keys.pop()
            assert keys == [name for name in names if name in keys], raw
            assert set(required) <= set(keys), raw
        written = summary.topics[topic]
        assert checked == written.valid_events + written.duplicates, topic
    for entity, path in (
        ("customers", summary.customers_path),
        ("products", summary.products_path),
    ):
        expected = [spec.name for spec in contract.REFERENCE_FIELDS[entity]]
        records = orjson.loads(path.read_bytes())
        assert records and all(list(record) == expected for record in records), entity


def test_money_is_written_as_exact_decimal_text(heavy_run: tuple[Path, GenerationSummary]) -> None:
    out, _ = heavy_run
    prices: set[bytes] = set()
    for topic in ("orders", "payments"):
        for raw in read_lines(out, topic):
            if not is_valid(raw, topic):
                continue
            # Never a binary float's digits (0.12499999999999999) or an exponent.
            for amount in re.findall(rb'"(?:order_total|amount)":([^,}]+)', raw):
                assert re.fullmatch(rb"\d+\.\d{1,2}", amount), amount
            prices.update(re.findall(rb'"unit_price":([^,}]+)', raw))
    assert all(re.fullmatch(rb"\d+\.\d{1,4}", price) for price in prices)
    assert {b"0.125", b"9.995"} & prices or any(len(p.split(b".")[1]) == 4 for p in prices)
    assert any(len(price.split(b".")[1]) == 3 for price in prices)
    assert any(len(price.split(b".")[1]) == 4 for price in prices)


def test_without_faults_files_are_clean_and_in_arrival_order(tmp_path: Path) -> None:
    for faults, name in ((FaultRates.none(), "none"), (None, "none-by-none")):
        summary = generate(tmp_path / name, days=2, orders_per_day=100, seed=8, faults=faults)
        assert summary.duplicates == summary.malformed == summary.orphans == 0
        for topic in TOPICS:
            events = [parse_line(raw, topic) for raw in read_lines(tmp_path / name, topic)]
            assert len(events) == summary.topics[topic].valid_events
            produced = [event["produced_at"] for event in events]
            assert produced == sorted(produced)
            assert len({event["event_id"] for event in events}) == len(events)
    assert tree_bytes(tmp_path / "none") == tree_bytes(tmp_path / "none-by-none")
    defaults = generate(tmp_path / "default", days=2, orders_per_day=100, seed=8)
    assert defaults.malformed > 0  # leaving faults out means the default rates


def test_lifecycles_cover_the_interesting_paths(tmp_path: Path) -> None:
    generate(tmp_path, days=10, orders_per_day=200, seed=21, faults=FaultRates.none())
    by_order: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for topic in TOPICS:
        for raw in read_lines(tmp_path, topic):
            event = json.loads(raw)
            by_order[event["order_id"]].append(event)
    paths: Counter[str] = Counter()
    for evs in by_order.values():
        types = [e["event_type"] for e in sorted(evs, key=lambda e: e["event_timestamp"])]
        if any(e["event_type"] == "order_updated" and "items" in e for e in evs):
            paths["basket update"] += 1
        if "payment_failed" in types and "payment_captured" in types:
            paths["failed then captured"] += 1
        if "payment_failed" in types and "payment_captured" not in types:
            paths["never paid"] += 1
        if "order_canceled" in types and "payment_captured" not in types:
            paths["canceled before payment"] += 1
        if "order_canceled" in types and "payment_refunded" in types:
            paths["canceled after capture, refunded"] += 1
        if "shipment_delivered" in types and "payment_refunded" in types:
            paths["refund after delivery"] += 1
        if types.count("shipment_dispatched") > 1 and "shipment_failed" in types:
            paths["re-dispatched"] += 1
        if "shipment_dispatched" in types and "shipment_delivered" not in types:
            paths["in transit at the end"] += 1
        if "order_created" in types and len(types) == 1:
            paths["just created"] += 1
        if any(e.get("currency") not in (None, "USD") for e in evs) and (
            "payment_captured" in types
        ):
            paths["paid in another currency"] += 1
    expected = {
        "basket update",
        "failed then captured",
        "never paid",
        "canceled before payment",
        "canceled after capture, refunded",
        "refund after delivery",
        "re-dispatched",
        "in transit at the end",
        "just created",
        "paid in another currency",
    }
    assert {path for path, count in paths.items() if count > 0} == expected, paths


def _check_customer(record: dict[str, Any]) -> None:
    assert set(record) == {"customer_id", "name", "email", "country", "created_at"}
    for name in ("customer_id", "name", "email"):
        check_non_empty_string(record, name)
    assert re.fullmatch(r"[A-Z]{2}", record["country"])
    check_timestamp(record, "created_at")


def _check_product(record: dict[str, Any]) -> None:
    assert set(record) == {"product_id", "product_name", "category", "price", "active"}
    for name in ("product_id", "product_name", "category"):
        check_non_empty_string(record, name)
    check_decimal_amount(record, "price", CENT, 2)  # money: at most 2 decimals
    assert isinstance(record["active"], bool)


def test_reference_snapshots(heavy_run: tuple[Path, GenerationSummary]) -> None:
    out, summary = heavy_run
    days = [date(2026, 1, 1 + i).isoformat() for i in range(4)]
    assert sorted(p.name for p in summary.snapshots_dir.iterdir()) == days
    previous_customers: list[dict[str, Any]] = []
    product_snapshots = []
    for day in days:
        customers = json.loads((summary.snapshots_dir / day / "customers.json").read_text())
        products = json.loads(
            (summary.snapshots_dir / day / "products.json").read_text(),
            parse_float=Decimal,
            object_pairs_hook=strict_pairs,
        )
        for record in customers:
            _check_customer(record)
            assert record["created_at"][:10] <= day
        for record in products:
            _check_product(record)
        assert customers[: len(previous_customers)] == previous_customers
        assert len(customers) > len(previous_customers)
        previous_customers = customers
        product_snapshots.append({p["product_id"]: p for p in products})
    first, last = product_snapshots[0], product_snapshots[-1]
    assert first.keys() == last.keys()
    for product_id, product in first.items():
        assert (product["product_name"], product["category"]) == (
            last[product_id]["product_name"],
            last[product_id]["category"],
        )
    assert any(first[pid]["price"] != last[pid]["price"] for pid in first)
    assert len({p["category"] for p in first.values()}) >= 5
    assert (
        summary.customers_path.read_bytes()
        == (summary.snapshots_dir / days[-1] / "customers.json").read_bytes()
    )
    assert (
        summary.products_path.read_bytes()
        == (summary.snapshots_dir / days[-1] / "products.json").read_bytes()
    )

    # Orders are priced at the day's price (the snapshot holds it rounded to cents) and
    # reference known customers.
    customer_ids = {c["customer_id"] for c in previous_customers}
    for event in valid_events(out, "orders"):
        assert event["customer_id"] in customer_ids
        if event["event_type"] == "order_created":
            prices = product_snapshots[days.index(event["event_timestamp"][:10])]
            for item in event["items"]:
                assert cents(item["unit_price"]) == prices[item["product_id"]]["price"]
                assert prices[item["product_id"]]["active"]


def test_progress_reports_each_day(tmp_path: Path) -> None:
    seen: list[int] = []
    generate(tmp_path, days=3, orders_per_day=10, seed=1, progress=seen.append)
    assert seen == [1, 2, 3]


def test_rejects_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="days"):
        generate(tmp_path, days=0, orders_per_day=10, seed=1)
    with pytest.raises(ValueError, match="orders_per_day"):
        generate(tmp_path, days=1, orders_per_day=-1, seed=1)
    with pytest.raises(ValueError, match="duplicate"):
        FaultRates(duplicate=1.5)
    with pytest.raises(ValueError, match="sum"):
        FaultRates(duplicate=0.6, out_of_order=0.6)


def test_both_versions_of_order_created_and_the_channel_truth(
    heavy_run: tuple[Path, GenerationSummary],
) -> None:
    """About 40% of orders are created at version 2 (a channel, some with a discount the total
    and the payments are net of); ``truth_by_channel.json`` equals a recount from the events."""
    out, summary = heavy_run
    created: dict[str, dict[str, Any]] = {}
    for event in valid_events(out, "orders"):
        if event["event_type"] == "order_created":
            created.setdefault(event["order_id"], event)
    versions = Counter(event["event_version"] for event in created.values())
    assert 0.3 < versions[2] / len(created) < 0.5, versions
    v2 = [event for event in created.values() if event["event_version"] == 2]
    assert {event["channel"] for event in v2} == set(contract.CHANNELS)
    discounted = [event for event in v2 if event["discount"] > 0]
    assert 0.2 < len(discounted) / len(v2) < 0.5
    assert all(set(e) >= {"channel", "discount"} for e in v2)
    assert not any({"channel", "discount"} & set(e) for e in created.values() if e not in v2)
    captured = {
        p["order_id"]: p["amount"]
        for p in valid_events(out, "payments")
        if p["event_type"] == "payment_captured"
    }
    paid = [e for e in discounted if e["order_id"] in captured]
    assert paid and all(captured[e["order_id"]] == e["order_total"] for e in paid)
    recount: dict[tuple[str, str], list[Any]] = {}
    for event in created.values():
        key = (event["event_timestamp"][:10], event.get("channel", "unknown"))
        row = recount.setdefault(key, [0, Decimal(0)])
        row[0] += 1
        row[1] += event.get("discount", 0) if event["currency"] == "USD" else 0
    truth = json.loads(summary.channel_truth_path.read_text())["orders_by_channel"]
    assert [(r["date"], r["channel"], r["orders"], Decimal(str(r["discount"]))) for r in truth] == [
        (day, channel, orders, discount)
        for (day, channel), (orders, discount) in sorted(recount.items())
    ]
    assert sum(r["orders"] for r in truth) == summary.orders
