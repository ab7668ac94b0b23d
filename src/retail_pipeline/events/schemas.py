"""Publish the event contract as JSON Schema files other teams can validate against."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel

from retail_pipeline.events.contract import EVENT_MODELS, Customer, Product, event_json_schema


def _schemas() -> dict[str, dict[str, object]]:
    models: dict[str, type[BaseModel]] = {**EVENT_MODELS, "customer": Customer, "product": Product}
    schemas = {name: model.model_json_schema() for name, model in models.items()}
    schemas["event"] = event_json_schema()
    return schemas


def write_schemas(out_dir: Path) -> list[Path]:
    """Write ``<name>.schema.json`` for every event type, any event, customer and product."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, schema in sorted(_schemas().items()):
        schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}
        path = out_dir / f"{name}.schema.json"
        path.write_text(json.dumps(schema, indent=2, sort_keys=True) + "\n")
        written.append(path)
    return written
