"""The published JSON Schema files are generated from the contract and kept in sync."""

from __future__ import annotations

import json
from pathlib import Path

from retail_pipeline.events.contract import EVENT_MODELS
from retail_pipeline.events.schemas import write_schemas

COMMITTED = Path(__file__).resolve().parents[2] / "schemas"


def test_committed_schemas_match_the_models(tmp_path: Path) -> None:
    written = {p.name: p.read_text() for p in write_schemas(tmp_path)}
    committed = {p.name: p.read_text() for p in COMMITTED.glob("*.schema.json")}
    assert committed == written, "run `make schemas` and commit the result"


def test_one_schema_per_event_type_plus_any_event_and_reference_data(tmp_path: Path) -> None:
    names = {p.name.removesuffix(".schema.json") for p in write_schemas(tmp_path)}
    assert names == {*EVENT_MODELS, "event", "customer", "product"}
    event = json.loads((tmp_path / "event.schema.json").read_text())
    assert event["discriminator"]["propertyName"] == "event_type"
    created = json.loads((tmp_path / "order_created.schema.json").read_text())
    assert "items" in created["required"]
    assert created["properties"]["order_total"] == {
        "minimum": 0,
        "title": "Order Total",
        "type": "number",
    }
