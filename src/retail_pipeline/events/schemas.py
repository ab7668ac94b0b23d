"""Publish the event contract as JSON Schema files other teams can validate against.

Generated from the contract table (:mod:`retail_pipeline.events.contract`), so the files say
what the validator checks. Two rules JSON Schema cannot say are stated in each schema's
``description``: no repeated keys, and ``order_total`` equal to the sum of the items within a
cent. An event type with several versions gets one ``oneOf`` branch per version: the fields a
later version adds are required (and typed) in its branch only, since a version-1 message may
carry keys of the same name holding anything.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from retail_pipeline.events.contract import (
    CHANNELS,
    EVENT_DESCRIPTIONS,
    EVENT_TYPE_TOPIC,
    EVENT_VERSIONS,
    ISO_4217,
    ITEM_FIELDS,
    ITEMS_REQUIRED,
    MAX_QUANTITY,
    MIN_QUANTITY,
    REFERENCE_FIELDS,
    SUPPORTED_EVENT_VERSIONS,
    TIMESTAMP_PATTERN,
    FieldSpec,
    added_fields,
    event_fields,
    version_fields,
)

_RULES = (
    " A strict RFC 8259 JSON object in UTF-8 with no repeated key at any depth; numbers are"
    " read as exact decimals. Timestamps lie in [1970-01-01T00:00:00Z, 2100-01-01T00:00:00Z)."
)
_MONEY = {"type": "number", "minimum": 0, "exclusiveMaximum": 10**16}
# multipleOf is left out on purpose: validators that use binary floats reject 86.99 as not a
# multiple of 0.01. The decimal places are stated in the description and checked exactly by
# the validator.


def _property(spec: FieldSpec, event_type: str | None = None) -> dict[str, Any]:
    kind = spec.kind
    schema: dict[str, Any]
    if kind == "text":
        schema = {"type": "string", "minLength": 1}
        if event_type is not None and spec.name == "event_type":
            schema = {"const": event_type}
    elif kind == "timestamp":
        schema = {"type": "string", "pattern": TIMESTAMP_PATTERN}
    elif kind == "money":
        schema = {**_MONEY, "description": "Money: at most 2 decimal places"}
    elif kind == "unit_price":
        schema = {**_MONEY, "description": "At most 4 decimal places"}
    elif kind == "quantity":
        schema = {"type": "integer", "minimum": MIN_QUANTITY, "maximum": MAX_QUANTITY}
    elif kind == "currency":
        schema = {"type": "string", "enum": sorted(ISO_4217)}
    elif kind == "country":
        schema = {"type": "string", "pattern": "^[A-Z]{2}$"}
    elif kind == "version":
        versions = SUPPORTED_EVENT_VERSIONS if event_type is None else EVENT_VERSIONS[event_type]
        schema = {"type": "integer", "enum": sorted(versions)}
    elif kind == "channel":
        schema = {"type": "string", "enum": list(CHANNELS)}
    elif kind == "bool":
        schema = {"type": "boolean"}
    else:  # items
        schema = {
            "type": "array",
            "items": _object({f.name: _property(f) for f in ITEM_FIELDS}, ITEM_FIELDS),
        }
        if event_type not in ITEMS_REQUIRED:
            schema = {"anyOf": [schema, {"type": "null"}]}
    if spec.description:
        schema["description"] = "; ".join(
            filter(None, [spec.description, schema.get("description")])
        )
    return schema


def _object(properties: dict[str, Any], fields: tuple[FieldSpec, ...]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": [f.name for f in fields if f.required],
        "additionalProperties": True,
    }


def _event_schema(event_type: str) -> dict[str, Any]:
    topic = EVENT_TYPE_TOPIC[event_type]
    later = {f.name for f in added_fields(topic)}
    fields = tuple(f for f in event_fields(topic) if f.name not in later)
    required = tuple(
        f if f.kind != "items" else FieldSpec(f.name, f.kind, event_type in ITEMS_REQUIRED)
        for f in fields
    )
    schema = _object({f.name: _property(f, event_type) for f in fields}, required)
    description = EVENT_DESCRIPTIONS[event_type] + _RULES
    if "items" in schema["properties"]:
        description += " When items is an array, order_total = Σ quantity x unit_price ± 0.01"
        description += (
            " (at version 2: Σ quantity x unit_price - discount ± 0.01, discount ≤ Σ)."
            if version_fields(event_type, 2)
            else "."
        )
    versions = sorted(EVENT_VERSIONS[event_type])
    if len(versions) > 1:
        branches = []
        for version in versions:
            added = version_fields(event_type, version)
            branch = _object(
                {
                    "event_version": {"const": version},
                    **{f.name: _property(f, event_type) for f in added},
                },
                added,
            )
            del branch["type"], branch["additionalProperties"]
            branches.append(branch)
        schema["oneOf"] = branches
    return {"title": event_type, "description": description, **schema}


def _schemas() -> dict[str, dict[str, Any]]:
    schemas = {event_type: _event_schema(event_type) for event_type in EVENT_DESCRIPTIONS}
    schemas["event"] = {
        "title": "event",
        "description": "Any event, by its event_type." + _RULES,
        "oneOf": [{"$ref": f"{name}.schema.json"} for name in EVENT_DESCRIPTIONS],
    }
    for entity, fields in REFERENCE_FIELDS.items():
        name = entity.removesuffix("s")
        schemas[name] = {
            "title": name,
            "description": f"One {name} record of a reference snapshot." + _RULES,
            **_object({f.name: _property(f) for f in fields}, fields),
        }
    return schemas


def write_schemas(out_dir: Path) -> list[Path]:
    """Write ``<name>.schema.json`` for every event type, any event, customer and product."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, schema in sorted(_schemas().items()):
        document = {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": f"{name}.schema.json",
            **schema,
        }
        path = out_dir / f"{name}.schema.json"
        path.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")
        written.append(path)
    return written
