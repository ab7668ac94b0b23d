"""Keys and change detection in Silver, on real dbt builds of hand-written Bronze.

- Event ids are unique per topic, not globally (each service numbers its own events): an order
  event and a payment sharing an event_id are two events, and so are two orphans of different
  topics; a second delivery within one topic is still one event.
- SCD2 change detection hashes an unambiguous encoding of the attributes: a `|` moving from one
  column to the next is a change (concat_ws('|', ...) hashed both the same).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import duckdb
import pytest

from retail_pipeline.ingestion.batch import load_reference
from retail_pipeline.ingestion.files import ingest_files
from retail_pipeline.warehouse.duckdb import DuckDBWarehouse

from .conftest import transform

AT = "2026-02-01T10:00:00Z"
ENVELOPE = {"event_version": 1, "event_timestamp": AT, "produced_at": AT}


def order(event_id: str, order_id: str) -> dict[str, Any]:
    return ENVELOPE | {
        "event_id": event_id,
        "event_type": "order_created",
        "source_system": "web-shop",
        "order_id": order_id,
        "customer_id": "c1",
        "order_total": 10,
        "currency": "USD",
        "order_status": "created",
        "items": [{"product_id": "p1", "quantity": 1, "unit_price": 10}],
    }


def payment(event_id: str, order_id: str) -> dict[str, Any]:
    return ENVELOPE | {
        "event_id": event_id,
        "event_type": "payment_captured",
        "source_system": "payment-service",
        "payment_id": f"pay-{order_id}",
        "order_id": order_id,
        "amount": 10,
        "currency": "USD",
        "payment_method": "card",
        "payment_status": "captured",
    }


def shipment(event_id: str, order_id: str) -> dict[str, Any]:
    return ENVELOPE | {
        "event_id": event_id,
        "event_type": "shipment_dispatched",
        "source_system": "fulfillment-service",
        "shipment_id": f"shp-{order_id}",
        "order_id": order_id,
        "carrier": "DHL",
        "shipment_status": "dispatched",
    }


def ingest(warehouse: Path, path: Path, events: Sequence[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(event) + "\n" for event in events))
    with DuckDBWarehouse(warehouse) as wh:
        summary = ingest_files(wh, [path])
    assert summary.dead_lettered == 0


def rows(warehouse: Path, sql: str) -> list[tuple[Any, ...]]:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return con.execute(sql).fetchall()


def silver_events(warehouse: Path) -> dict[str, int]:
    return dict(
        rows(
            warehouse,
            "select topic, row_count from silver.data_quality_summary"
            " where check_name = 'silver_events'",
        )
    )


def quarantined(warehouse: Path) -> list[tuple[Any, ...]]:
    return rows(
        warehouse,
        "select topic, event_id, order_id from silver.quarantined_events order by topic",
    )


@pytest.mark.slow  # five dbt builds
def test_event_ids_are_unique_per_topic(tmp_path: Path) -> None:
    warehouse = tmp_path / "wh.duckdb"
    # e-1 is order o1's creation and its capture (two services, two numberings); the capture
    # is delivered twice (one event). e-2 is a payment and a shipment of o9, whose order has
    # not arrived: two orphans sharing an id.
    ingest(
        warehouse,
        tmp_path / "first.ndjson",
        [
            order("e-1", "o1"),
            payment("e-1", "o1"),
            payment("e-1", "o1"),
            payment("e-2", "o9"),
            shipment("e-2", "o9"),
        ],
    )
    transform(warehouse)  # every data test passes, the quarantine's key among them
    assert silver_events(warehouse) == {"orders": 1, "payments": 2, "shipments": 1}
    assert quarantined(warehouse) == [("payments", "e-2", "o9"), ("shipments", "e-2", "o9")]
    assert rows(warehouse, "select gross_revenue from gold.daily_revenue") == [(10,)]

    # Later runs: a third orphan with the same id, of the third topic, joins the other two
    # (an incremental run replaces quarantine rows by (topic, event_id), never by event_id).
    ingest(warehouse, tmp_path / "second.ndjson", [order("e-3", "o2"), shipment("e-3", "o8")])
    ingest(warehouse, tmp_path / "third.ndjson", [order("e-4", "o3")])
    transform(warehouse)
    ingest(warehouse, tmp_path / "fourth.ndjson", [payment("e-3", "o8")])
    transform(warehouse)
    assert quarantined(warehouse) == [
        ("payments", "e-2", "o9"),
        ("payments", "e-3", "o8"),
        ("shipments", "e-2", "o9"),
        ("shipments", "e-3", "o8"),
    ]
    # o9's order arrives, numbered e-2 by the order service: both its orphans are released,
    # and its order counts beside the payment and shipment that share its id.
    ingest(warehouse, tmp_path / "fifth.ndjson", [order("e-2", "o9")])
    transform(warehouse)
    assert quarantined(warehouse) == [("payments", "e-3", "o8"), ("shipments", "e-3", "o8")]
    assert silver_events(warehouse) == {"orders": 4, "payments": 3, "shipments": 2}
    duplicates = rows(
        warehouse,
        "select row_count from silver.data_quality_summary"
        " where check_name = 'duplicate_deliveries'",
    )
    assert duplicates == [(1,)]  # the one true duplicate: e-1 delivered twice to payments
    assert rows(warehouse, "select count(*) from gold.fct_orders") == [(4,)]
    assert rows(warehouse, "select sum(gross_revenue) from gold.daily_revenue") == [(20,)]


def digest(*values: str | None) -> str:
    """md5 of the encoding macros/hashing.sql writes: length:text per value, ~ for NULL."""
    encoded = "".join("~" if v is None else f"{len(v)}:{v}" for v in values)
    return hashlib.md5(encoded.encode()).hexdigest()


def snapshot(folder: Path, entity: str, records: list[dict[str, Any]]) -> Path:
    folder.mkdir()
    path = folder / f"{entity}.json"
    path.write_text(json.dumps(records))
    return path


@pytest.mark.slow  # two dbt builds
def test_a_separator_moving_between_columns_is_a_change(tmp_path: Path) -> None:
    warehouse = tmp_path / "wh.duckdb"
    day_one = [
        {"product_id": "p1", "product_name": "a|b", "category": "c", "price": 1, "active": True},
        {"product_id": "p2", "product_name": "x", "category": "y", "price": 2, "active": True},
    ]
    # p1: the same characters, the `|` moved from the name into the category. p2 unchanged.
    day_two = [
        {"product_id": "p1", "product_name": "a", "category": "b|c", "price": 1, "active": True},
        day_one[1],
    ]
    customers_one = [
        {
            "customer_id": "c1",
            "name": "Ann|Lee",
            "email": "ann@example.com",
            "country": "DE",
            "created_at": "2025-01-01T00:00:00Z",
        }
    ]
    customers_two = [customers_one[0] | {"name": "Ann", "email": "Lee|ann@example.com"}]
    with DuckDBWarehouse(warehouse) as wh:
        load_reference(wh, "products", snapshot(tmp_path / "one", "products", day_one))
        load_reference(wh, "customers", snapshot(tmp_path / "c1", "customers", customers_one))
    transform(warehouse)
    with DuckDBWarehouse(warehouse) as wh:
        load_reference(wh, "products", snapshot(tmp_path / "two", "products", day_two))
        load_reference(wh, "customers", snapshot(tmp_path / "c2", "customers", customers_two))
    transform(warehouse)

    history = rows(
        warehouse,
        "select product_id, product_name, category, is_current, attributes_digest"
        " from silver.products_history order by product_id, valid_from",
    )
    assert history == [
        ("p1", "a|b", "c", False, digest("a|b", "c", "1.00", "true")),
        ("p1", "a", "b|c", True, digest("a", "b|c", "1.00", "true")),
        ("p2", "x", "y", True, digest("x", "y", "2.00", "true")),
    ]
    assert rows(
        warehouse,
        "select product_name, category from gold.dim_products where product_id = 'p1'",
    ) == [("a", "b|c")]
    customers = rows(
        warehouse,
        "select customer_name, email, is_current from silver.customers_history order by valid_from",
    )
    assert customers == [
        ("Ann|Lee", "ann@example.com", False),
        ("Ann", "Lee|ann@example.com", True),
    ]
