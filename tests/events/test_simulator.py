"""The simulator: determinism, contract validity, fault bookkeeping, reference snapshots, and an
independent recomputation of every answer from the emitted files that must equal truth.json."""

from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest

from retail_pipeline.events.contract import (
    TOPICS,
    ContractError,
    Customer,
    Product,
    parse_event,
)
from retail_pipeline.events.simulator import (
    MALFORMED_KINDS,
    FaultRates,
    GenerationSummary,
    generate,
)

HEAVY_FAULTS = FaultRates(duplicate=0.05, out_of_order=0.08, late=0.03, malformed=0.05, orphan=0.02)


def read_lines(out_dir: Path, topic: str) -> list[bytes]:
    return (out_dir / "events" / f"{topic}.ndjson").read_bytes().splitlines()


def is_valid(raw: bytes, topic: str) -> bool:
    try:
        parse_event(raw, topic)
    except ContractError:
        return False
    return True


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
    """The METRICS.md answers from the event files alone, written without the simulator's code."""
    events: dict[str, dict[str, Any]] = {}
    for topic in TOPICS:
        for raw in read_lines(out_dir, topic):
            if is_valid(raw, topic):
                event = json.loads(raw)
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
            gross[_time(capture["event_timestamp"]).date().isoformat()] += Decimal(
                str(capture["amount"])
            )
        refund_events = of("payment_refunded")
        for refund in refund_events:
            refunds[_time(refund["event_timestamp"]).date().isoformat()] += Decimal(
                str(refund["amount"])
            )
        is_canceled = bool(of("order_canceled"))
        is_refunded = bool(refund_events)
        canceled += is_canceled
        refunded += is_refunded
        either += is_canceled or is_refunded
        if captures and not is_canceled and not is_refunded:
            baskets = [
                e
                for e in evs
                if e["event_type"] in ("order_created", "order_updated")
                and e.get("items") is not None
            ]
            latest = max(baskets, key=lambda e: _time(e["event_timestamp"]))
            for item in latest["items"]:
                units[item["product_id"]] += item["quantity"]
                product_revenue[item["product_id"]] += item["quantity"] * Decimal(
                    str(item["unit_price"])
                )
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

    products = {p["product_id"]: p for p in json.loads((out_dir / "products.json").read_text())}
    ranked = sorted(product_revenue, key=lambda pid: (-product_revenue[pid], pid))[:10]
    total_orders = sum(created_per_day.values())
    revenue_days = sorted(set(gross) | set(refunds))
    return {
        "orders_per_day": [
            {"date": d, "orders": created_per_day[d]} for d in sorted(created_per_day)
        ],
        "revenue": {
            "gross": float(sum(gross.values(), Decimal())),
            "refunds": float(sum(refunds.values(), Decimal())),
            "net": float(sum(gross.values(), Decimal()) - sum(refunds.values(), Decimal())),
            "by_day": [
                {
                    "date": d,
                    "gross": float(gross[d]),
                    "refunds": float(refunds[d]),
                    "net": float(gross[d] - refunds[d]),
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
                "revenue": float(product_revenue[pid]),
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
    """Equal structure; money within a cent, rates within 1e-9, hours within 1e-6."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict) and actual.keys() == expected.keys(), path
        for key in expected:
            assert_same_answers(actual[key], expected[key], f"{path}.{key}")
    elif isinstance(expected, list):
        assert isinstance(actual, list) and len(actual) == len(expected), path
        for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
            assert_same_answers(a, e, f"{path}[{i}]")
    elif isinstance(expected, float):
        if "lead_times" in path:
            tolerance = 1e-6
        elif "rate" in path:
            tolerance = 1e-9
        else:
            tolerance = 0.01 + 1e-9
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
            # Compact canonical JSON, exactly what orjson would write.
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


def test_every_malformed_kind_fails_the_contract(tmp_path: Path) -> None:
    only_garbage = FaultRates(duplicate=0.0, out_of_order=0.0, late=0.0, malformed=1.0, orphan=0.0)
    summary = generate(tmp_path, days=1, orders_per_day=150, seed=3, faults=only_garbage)
    kinds: Counter[str] = Counter()
    for topic in TOPICS:
        lines = read_lines(tmp_path, topic)
        valid = [raw for raw in lines if is_valid(raw, topic)]
        garbage = [raw for raw in lines if not is_valid(raw, topic)]
        assert len(valid) == len(garbage) == summary.topics[topic].malformed
        for raw in garbage:
            with pytest.raises(ContractError):
                parse_event(raw)  # also without the topic check
            assert b"\n" not in raw
        kinds.update(summary.topics[topic].malformed_by_kind)
        undecodable = 0
        for raw in garbage:
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError:
                undecodable += 1
        assert undecodable == summary.topics[topic].malformed_by_kind.get("invalid_utf8", 0)
    assert set(kinds) == set(MALFORMED_KINDS)


def test_event_shapes_and_ordering(heavy_run: tuple[Path, GenerationSummary]) -> None:
    out, _ = heavy_run
    orders = [json.loads(raw) for raw in read_lines(out, "orders") if is_valid(raw, "orders")]
    for event in orders:
        assert event["event_version"] == 1
        assert event["currency"] == "USD"
        assert event["event_timestamp"].endswith("Z") and len(event["event_timestamp"]) == 24
        assert event["produced_at"] >= event["event_timestamp"]
        if "items" in event:
            cents = sum(
                item["quantity"] * round(item["unit_price"] * 100) for item in event["items"]
            )
            assert round(event["order_total"] * 100) == cents
            assert 1 <= len(event["items"]) <= 5
    # Out-of-order and late arrivals: some events come after ones that happened minutes later.
    payments = [json.loads(raw) for raw in read_lines(out, "payments") if is_valid(raw, "payments")]
    times = [_time(e["event_timestamp"]) for e in payments]
    running_max = times[0]
    behind = 0
    for current in times[1:]:
        if (running_max - current).total_seconds() > 60:
            behind += 1
        running_max = max(running_max, current)
    assert behind > 0


def test_without_faults_files_are_clean_and_in_arrival_order(tmp_path: Path) -> None:
    summary = generate(tmp_path, days=2, orders_per_day=100, seed=8, faults=FaultRates.none())
    assert summary.duplicates == summary.malformed == summary.orphans == 0
    for topic in TOPICS:
        events = [parse_event(raw, topic) for raw in read_lines(tmp_path, topic)]
        assert len(events) == summary.topics[topic].valid_events
        produced = [event.produced_at for event in events]
        assert produced == sorted(produced)
        assert len({event.event_id for event in events}) == len(events)


def test_lifecycles_cover_the_interesting_paths(tmp_path: Path) -> None:
    generate(tmp_path, days=6, orders_per_day=300, seed=21, faults=FaultRates.none())
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
    }
    assert {path for path, count in paths.items() if count > 0} == expected, paths


def test_reference_snapshots(heavy_run: tuple[Path, GenerationSummary]) -> None:
    out, summary = heavy_run
    days = [date(2026, 1, 1 + i).isoformat() for i in range(4)]
    assert sorted(p.name for p in summary.snapshots_dir.iterdir()) == days
    previous_customers: list[dict[str, Any]] = []
    product_snapshots = []
    for day in days:
        customers = json.loads((summary.snapshots_dir / day / "customers.json").read_text())
        products = json.loads((summary.snapshots_dir / day / "products.json").read_text())
        for record in customers:
            Customer.model_validate_json(json.dumps(record))
            assert record["created_at"][:10] <= day
        for record in products:
            Product.model_validate_json(json.dumps(record))
        assert set(customers[0]) == {"customer_id", "name", "email", "country", "created_at"}
        assert set(products[0]) == {"product_id", "product_name", "category", "price", "active"}
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

    # Orders are priced at the day's snapshot price and reference known customers.
    customer_ids = {c["customer_id"] for c in previous_customers}
    for raw in read_lines(out, "orders"):
        if not is_valid(raw, "orders"):
            continue
        event = json.loads(raw)
        assert event["customer_id"] in customer_ids
        if event["event_type"] == "order_created":
            prices = product_snapshots[days.index(event["event_timestamp"][:10])]
            for item in event["items"]:
                assert item["unit_price"] == prices[item["product_id"]]["price"]
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
