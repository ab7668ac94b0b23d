"""A Bronze written by hand, through the real CLI, with exact expected answers.

It pins what the simulator may not reach: a sub-cent unit price summed exactly (1000 x 0.125 is
125.00), rounding once at the end and half away from zero (2 x 0.005 is 0.01, not 0.02; 2.005
is 2.01, not 2.00), and the reporting currency (a EUR order is an order, converts and has lead
times, but adds no revenue and no product revenue; a GBP capture of a USD order converts it but
is not revenue). Then: Bronze grows after the transform and the answers say Gold is stale.
"""

from __future__ import annotations

import inspect
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import duckdb
import pytest

from retail_pipeline.cli import pipeline
from retail_pipeline.transform import gold_status, read_answers

from .conftest import transform

DAY = "2026-01-15"
NEXT_DAY = "2026-01-16"
PRODUCTS = [
    ("p_eighth", "Eighth Widget", "Widgets", "0.13"),
    ("p_half", "Half-cent Screw", "Hardware", "0.01"),
    ("p_half_up", "Two-oh-five Nut", "Hardware", "2.01"),
    ("p_usd", "Dollar Lamp", "Home", "50.00"),
    ("p_refunded", "Returned Chair", "Home", "30.00"),
    ("p_euro", "Euro Kettle", "Home", "10.00"),
]


def _command() -> list[str]:
    script = shutil.which("retail-pipeline", path=str(Path(sys.executable).parent))
    return [script] if script else [sys.executable, "-m", "retail_pipeline.cli"]


def run_cli(*args: str | Path, warehouse: Path) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [*_command(), *map(str, args)],
        env={**os.environ, "RETAIL_WAREHOUSE": str(warehouse)},
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result


class Events:
    """NDJSON lines of contract-valid events, money written as JSON numbers (decimal text)."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.count = 0

    def _event(self, event_type: str, at: str, source: str, **fields: Any) -> str:
        self.count += 1
        event = {
            "event_id": f"hand-{self.count:03d}",
            "event_type": event_type,
            "event_version": 1,
            "event_timestamp": at,
            "produced_at": at,
            "source_system": source,
            **fields,
        }
        # Money is spliced in as raw JSON numbers so that 0.125 is never a binary float.
        line = json.dumps({k: v for k, v in event.items() if not isinstance(v, Raw)})
        raw = ", ".join(f'"{k}": {v}' for k, v in event.items() if isinstance(v, Raw))
        line = line[:-1] + (", " + raw if raw else "") + "}"
        self.lines.append(line)
        return line

    def order(
        self,
        event_type: str,
        order_id: str,
        at: str,
        currency: str,
        items: list[tuple[str, int, str]],
    ) -> str:
        total = sum((quantity * Decimal(price) for _, quantity, price in items), Decimal(0))
        basket = ", ".join(
            f'{{"product_id": "{p}", "quantity": {q}, "unit_price": {u}}}' for p, q, u in items
        )
        return self._event(
            event_type,
            at,
            "web-shop",
            order_id=order_id,
            customer_id="c1",
            currency=currency,
            order_status=event_type.removeprefix("order_"),
            order_total=Raw(str(total.quantize(Decimal("0.01"), ROUND_HALF_UP))),
            **({"items": Raw(f"[{basket}]")} if items else {}),
        )

    def payment(self, event_type: str, order_id: str, at: str, currency: str, amount: str) -> str:
        return self._event(
            event_type,
            at,
            "payment-service",
            payment_id=f"pay-{order_id}",
            order_id=order_id,
            currency=currency,
            payment_method="card",
            payment_status=event_type.removeprefix("payment_"),
            amount=Raw(amount),
        )

    def shipment(self, event_type: str, order_id: str, at: str) -> str:
        return self._event(
            event_type,
            at,
            "fulfillment-service",
            shipment_id=f"shp-{order_id}",
            order_id=order_id,
            carrier="DHL",
            shipment_status=event_type.removeprefix("shipment_"),
        )


class Raw(str):
    """A JSON value written as it is (a number as decimal text)."""


def at(day: str, hour: int) -> str:
    return f"{day}T{hour:02d}:00:00.000Z"


def handbuilt_events() -> Events:
    e = Events()
    # o1: 1000 x 0.125, captured; its capture is delivered twice (counted once).
    e.order("order_created", "o1", at(DAY, 1), "USD", [("p_eighth", 1000, "0.125")])
    capture = e.payment("payment_captured", "o1", at(DAY, 2), "USD", "125.00")
    e.lines.append(capture)
    e.shipment("shipment_dispatched", "o1", at(DAY, 13))
    # o2 and o3: half-cent lines, rounded once: 0.005 + 0.005 = 0.01; 2.005 -> 2.01.
    e.order(
        "order_created",
        "o2",
        at(DAY, 2),
        "USD",
        [("p_half", 1, "0.005"), ("p_half_up", 1, "2.005")],
    )
    e.payment("payment_captured", "o2", at(DAY, 3), "USD", "2.01")
    e.order("order_created", "o3", at(DAY, 3), "USD", [("p_half", 1, "0.005")])
    e.payment("payment_captured", "o3", at(DAY, 4), "USD", "0.01")
    # o4: a EUR order, paid and delivered: an order, converted, with lead times; no revenue.
    e.order("order_created", "o4", at(DAY, 4), "EUR", [("p_euro", 2, "10.00")])
    e.payment("payment_captured", "o4", at(DAY, 5), "EUR", "20.00")
    e.shipment("shipment_dispatched", "o4", at(NEXT_DAY, 4))
    e.shipment("shipment_delivered", "o4", at("2026-01-17", 4))
    # o5: a USD order captured in GBP: converted, product revenue, but the GBP is not revenue.
    e.order("order_created", "o5", at(DAY, 5), "USD", [("p_usd", 1, "50.00")])
    e.payment("payment_captured", "o5", at(DAY, 6), "GBP", "40.00")
    # o6: captured, then refunded the next day.
    e.order("order_created", "o6", at(DAY, 6), "USD", [("p_refunded", 1, "30.00")])
    e.payment("payment_captured", "o6", at(DAY, 7), "USD", "30.00")
    e.payment("payment_refunded", "o6", at(NEXT_DAY, 7), "USD", "30.00")
    # o7: created and canceled, never paid.
    e.order("order_created", "o7", at(DAY, 7), "USD", [("p_usd", 1, "50.00")])
    e.order("order_canceled", "o7", at(DAY, 8), "USD", [])
    return e


def expected_answers() -> dict[str, Any]:
    return {
        "orders_per_day": [{"date": DAY, "orders": 7}],
        "revenue": {
            "gross": "157.02",  # money is exact decimal text (docs/metrics.md)
            "refunds": "30.00",
            "net": "127.02",
            "by_day": [
                {"date": DAY, "gross": "157.02", "refunds": "0.00", "net": "157.02"},
                {"date": NEXT_DAY, "gross": "0.00", "refunds": "30.00", "net": "-30.00"},
            ],
        },
        "conversion_rate": {
            "overall": 6 / 7,
            "by_day": [{"date": DAY, "created": 7, "converted": 6, "rate": 6 / 7}],
        },
        "top_products": [
            {
                "product_id": "p_eighth",
                "product_name": "Eighth Widget",
                "category": "Widgets",
                "units": 1000,
                "revenue": "125.00",
            },
            {
                "product_id": "p_usd",
                "product_name": "Dollar Lamp",
                "category": "Home",
                "units": 1,
                "revenue": "50.00",
            },
            {
                "product_id": "p_half_up",
                "product_name": "Two-oh-five Nut",
                "category": "Hardware",
                "units": 1,
                "revenue": "2.01",
            },
            {
                "product_id": "p_half",
                "product_name": "Half-cent Screw",
                "category": "Hardware",
                "units": 2,
                "revenue": "0.01",
            },
        ],
        "cancel_refund": {
            "orders": 7,
            "canceled_rate": 1 / 7,
            "refunded_rate": 1 / 7,
            "canceled_or_refunded_rate": 2 / 7,
        },
        "lead_times_hours": {
            "created_to_shipped": {"count": 2, "mean": 18.0, "p50": 18.0, "p90": 22.8},
            "shipped_to_delivered": {"count": 1, "mean": 24.0, "p50": 24.0, "p90": 24.0},
            "created_to_delivered": {"count": 1, "mean": 48.0, "p50": 48.0, "p90": 48.0},
        },
    }


@pytest.fixture(scope="module")
def handbuilt(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Products and events loaded with the CLI, then `dbt build`."""
    folder = tmp_path_factory.mktemp("handbuilt")
    products = folder / "products.json"
    products.write_text(
        "[\n"
        + ",\n".join(
            f'{{"product_id": "{p}", "product_name": "{n}", "category": "{c}", "price": {price},'
            ' "active": true}'
            for p, n, c, price in PRODUCTS
        )
        + "\n]\n"
    )
    events = folder / "events.ndjson"
    events.write_text("\n".join(handbuilt_events().lines) + "\n")
    warehouse = folder / "hand.duckdb"
    run_cli("load-batch", "--products", products, warehouse=warehouse)
    loaded = run_cli("ingest", "--from-files", events, warehouse=warehouse)
    assert "dead-lettered 0" in loaded.stdout, loaded.stdout
    transform(warehouse)
    yield warehouse


def test_exact_answers(handbuilt: Path) -> None:
    answers = read_answers(handbuilt)
    lead = answers.pop("lead_times_hours")
    expected = expected_answers()
    expected_lead = expected.pop("lead_times_hours")
    assert answers == expected
    for segment, stats in expected_lead.items():
        assert lead[segment]["count"] == stats["count"]
        for key in ("mean", "p50", "p90"):
            assert lead[segment][key] == pytest.approx(stats[key], abs=1e-9), (segment, key)


def test_answers_json_on_the_command_line(handbuilt: Path) -> None:
    result = run_cli("answers", "--json", warehouse=handbuilt)
    answers = json.loads(result.stdout)  # stdout is pure JSON
    assert answers["top_products"][0]["revenue"] == "125.00"  # money is exact decimal text
    assert answers["revenue"]["gross"] == "157.02"


def test_gold_keeps_exact_amounts(handbuilt: Path) -> None:
    con = duckdb.connect(str(handbuilt), read_only=True)
    try:
        lines = dict(
            con.execute(
                "select product_id, sum(line_amount)::varchar from gold.fct_order_items"
                " where is_revenue_eligible group by product_id"
            ).fetchall()
        )
        products = con.execute(
            "select product_id, revenue::varchar, revenue_exact::varchar from gold.top_products"
            " order by revenue_rank"
        ).fetchall()
    finally:
        con.close()
    assert lines["p_eighth"] == "125.0000"
    assert lines["p_half"] == "0.0100"
    assert products == [
        ("p_eighth", "125.00", "125.0000"),
        ("p_usd", "50.00", "50.0000"),
        ("p_half_up", "2.01", "2.0050"),
        ("p_half", "0.01", "0.0100"),
    ]


def test_other_currencies_are_counted_not_dropped(handbuilt: Path) -> None:
    con = duckdb.connect(str(handbuilt), read_only=True)
    try:
        rows = con.execute(
            "select topic, detail, row_count, amount::varchar from silver.data_quality_summary"
            " where check_name = 'non_reporting_currency' order by topic, detail"
        ).fetchall()
        orders = dict(con.execute("select order_id, order_status from gold.fct_orders").fetchall())
    finally:
        con.close()
    assert rows == [
        ("orders", "EUR: orders created", 1, None),
        ("orders", "EUR: product revenue not counted", 1, "20.00"),
        ("payments", "EUR: payment_captured not counted", 1, "20.00"),
        ("payments", "GBP: payment_captured not counted", 1, "40.00"),
    ]
    assert orders["o4"] == "DELIVERED"
    assert orders["o5"] == "PAID"


def test_stale_gold_is_reported(handbuilt: Path, tmp_path: Path) -> None:
    warehouse = tmp_path / "stale.duckdb"
    shutil.copy(handbuilt, warehouse)
    status = gold_status(warehouse)
    assert not status.is_stale and status.warning() is None
    assert status.built_at is not None and status.line().startswith("Gold built at ")

    more = Events()
    more.count = 100
    more.order("order_created", "o8", at(NEXT_DAY, 9), "USD", [("p_usd", 1, "50.00")])
    more.payment("payment_captured", "o8", at(NEXT_DAY, 10), "USD", "50.00")
    late = tmp_path / "late.ndjson"
    late.write_text("\n".join(more.lines) + "\n")
    run_cli("ingest", "--from-files", late, warehouse=warehouse)

    status = gold_status(warehouse)
    assert status.is_stale and status.events_since == 2
    warning = status.warning()
    assert warning is not None and "\n" not in warning
    assert warning.startswith("warning: Gold was built at ")
    assert "Bronze has 2 events ingested since" in warning
    assert "retail-pipeline transform" in warning

    # The answers themselves are still Gold's (stale) answers; `answers --json` keeps stdout
    # pure JSON, the warning goes to stderr.
    result = run_cli("answers", "--json", warehouse=warehouse)
    assert json.loads(result.stdout)["cancel_refund"]["orders"] == 7
    if "gold_status" in inspect.getsource(pipeline.answers):
        assert warning in result.stderr

    transform(warehouse)
    assert gold_status(warehouse).warning() is None
    assert read_answers(warehouse)["cancel_refund"]["orders"] == 8


def test_duckdb_rounds_decimals_half_away_from_zero() -> None:
    """The `cents()` macro relies on it (METRICS.md: half away from zero, once)."""
    con = duckdb.connect()
    try:
        rows = con.execute(
            "select value::varchar, round(value, 2)::varchar from (values"
            " (0.125::decimal(38, 4)), (-0.125), (2.005), (-2.005), (0.0049), (125.0000))"
            " as t (value)"
        ).fetchall()
    finally:
        con.close()
    assert dict(rows) == {
        "0.1250": "0.13",
        "-0.1250": "-0.13",
        "2.0050": "2.01",
        "-2.0050": "-2.01",
        "0.0049": "0.00",
        "125.0000": "125.00",
    }
