"""The published JSON Schema files are generated from the contract and kept in sync."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import jsonschema
import pytest
from referencing import Registry, Resource

from retail_pipeline.events.contract import EVENT_TYPES, ISO_4217
from retail_pipeline.events.schemas import write_schemas
from tests.events.reference import reference_reason
from tests.messages import BASES, ORDER

COMMITTED = Path(__file__).resolve().parents[2] / "schemas"


def test_committed_schemas_match_the_contract(tmp_path: Path) -> None:
    written = {p.name: p.read_text() for p in write_schemas(tmp_path)}
    committed = {p.name: p.read_text() for p in COMMITTED.glob("*.schema.json")}
    assert committed == written, "run `make schemas` and commit the result"


def test_one_schema_per_event_type_plus_any_event_and_reference_data(tmp_path: Path) -> None:
    names = {p.name.removesuffix(".schema.json") for p in write_schemas(tmp_path)}
    assert names == {*EVENT_TYPES, "event", "customer", "product"}
    created = json.loads((tmp_path / "order_created.schema.json").read_text())
    assert "items" in created["required"]
    assert created["properties"]["currency"]["enum"] == sorted(ISO_4217)
    assert created["properties"]["event_type"]["const"] == "order_created"
    updated = json.loads((tmp_path / "order_updated.schema.json").read_text())
    assert "items" not in updated["required"]


def _validator(tmp_path: Path) -> jsonschema.Draft202012Validator:
    write_schemas(tmp_path)
    resources = [
        (p.name, Resource.from_contents(json.loads(p.read_text())))
        for p in tmp_path.glob("*.schema.json")
    ]
    registry: Registry = Registry().with_resources(resources)
    schema = json.loads((tmp_path / "event.schema.json").read_text())
    return jsonschema.Draft202012Validator(schema, registry=registry)


@pytest.mark.parametrize("event", BASES, ids=lambda e: str(e["event_type"]))
def test_valid_events_validate_against_the_published_schema(
    tmp_path: Path, event: dict[str, object]
) -> None:
    assert reference_reason(json.dumps(event).encode()) is None
    _validator(tmp_path).validate(event)


@pytest.mark.parametrize(
    "change",
    [
        {"currency": "usd"},
        {"order_total": -1},
        {"order_total": 1e16},
        {"event_timestamp": "2026-01-15T10:00:00+00:00"},
        {"event_version": 2},
        {"items": None},
        {"order_id": ""},
    ],
)
def test_schema_rejects_what_the_contract_rejects(
    tmp_path: Path, change: dict[str, object]
) -> None:
    event = {**ORDER, **change}
    assert reference_reason(json.dumps(event).encode()) is not None
    assert not _validator(tmp_path).is_valid(event)


V2_ORDER = {**ORDER, "event_version": 2, "channel": "mobile_app", "discount": 1.5}


def _net_of_discount(event: dict[str, object]) -> dict[str, object]:
    items = event["items"]
    assert isinstance(items, list)
    gross = sum(Decimal(str(i["quantity"])) * Decimal(str(i["unit_price"])) for i in items)
    return {**event, "order_total": float(gross - Decimal(str(event["discount"])))}


@pytest.mark.parametrize(
    "event",
    [
        _net_of_discount(V2_ORDER),
        {**ORDER, "channel": {"any": ["thing"]}, "discount": "not money at version 1"},
    ],
    ids=["version 2", "version 1 with keys of version 2"],
)
def test_both_versions_of_order_created_validate(tmp_path: Path, event: dict[str, object]) -> None:
    assert reference_reason(json.dumps(event).encode()) is None
    _validator(tmp_path).validate(event)


@pytest.mark.parametrize(
    "change",
    [{"channel": None}, {"discount": None}, {"channel": "tv"}, {"discount": -1}],
    ids=["no channel", "no discount", "unknown channel", "negative discount"],
)
def test_schema_rejects_a_broken_version_2(tmp_path: Path, change: dict[str, object]) -> None:
    event = {k: v for k, v in {**_net_of_discount(V2_ORDER), **change}.items() if v is not None}
    assert reference_reason(json.dumps(event).encode()) is not None
    assert not _validator(tmp_path).is_valid(event)


def test_version_2_of_another_event_type_is_refused(tmp_path: Path) -> None:
    payment = next(e for e in BASES if e["event_type"] == "payment_captured")
    event = {**payment, "event_version": 2}
    assert reference_reason(json.dumps(event).encode()) is not None
    assert not _validator(tmp_path).is_valid(event)
