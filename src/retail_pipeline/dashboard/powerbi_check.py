"""A structural check of the Power BI project, for CI (no Microsoft tool installs here).

It checks what the project relies on, not everything Power BI could accept:

- TMDL: tab indentation (one level at a time; multi-line expressions deeper than their
  property), the object and property keywords each object may hold, and the values of the
  enumerated properties;
- references: every table file is referenced by ``model.tmdl`` and the other way round; every
  table, column and data type is Gold's (dbt's YAML) and every Gold column is in the model;
  relationships, DAX ``table[column]`` and ``[measure]`` references and the report's fields all
  resolve;
- measures: each is a metric of dbt's semantic layer (by label) with exactly the DAX the spec
  renders to, and every metric has one;
- PBIR: each JSON file against a schema written here from the required properties, constants
  and enumerations of Microsoft's published schemas (microsoft/json-schemas,
  ``fabric/item/report/...``: the versions named in each file's ``$schema``); the tests validate
  every JSON file against Microsoft's full schemas too (vendored in
  ``tests/dashboard/powerbi_schemas``);
- Fabric Git integration: each item folder has a ``.platform`` file with its item type and a
  GUID logical id.

``python -m retail_pipeline.dashboard.powerbi_check [DIR]`` prints the problems (exit code 1).
"""

from __future__ import annotations

import json
import re
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema

from retail_pipeline.dashboard.powerbi import (
    ITEM_TYPES,
    NAME,
    SCHEMA_URL,
    TMDL_TYPES,
    Measure,
    Table,
    gold_tables,
    measures,
)

OBJECTS: dict[str, set[str]] = {
    "": {"table", "model", "database", "relationship", "expression", "ref", "cultureInfo"},
    "table": {"measure", "column", "partition", "hierarchy"},
    "model": {"dataAccessOptions"},
}
PROPERTIES: dict[str, set[str]] = {
    "table": {"lineageTag", "isHidden", "dataCategory", "description"},
    "column": {
        "dataType",
        "formatString",
        "lineageTag",
        "summarizeBy",
        "sourceColumn",
        "isHidden",
        "dataCategory",
        "sortByColumn",
        "description",
    },
    "measure": {"formatString", "lineageTag", "displayFolder", "isHidden", "description"},
    "partition": {"mode", "source"},
    "relationship": {
        "fromColumn",
        "toColumn",
        "isActive",
        "crossFilteringBehavior",
        "fromCardinality",
        "toCardinality",
    },
    "model": {"culture", "defaultPowerBIDataSourceVersion", "sourceQueryCulture"},
    "dataAccessOptions": {"legacyRedirects", "returnErrorValuesAsNull"},
    "expression": {"lineageTag", "queryGroup", "description"},
    "database": {"compatibilityLevel"},
    "cultureInfo": set(),
}
VALUES: dict[str, set[str]] = {
    "dataType": set(TMDL_TYPES.values()) | {"decimal"},
    "summarizeBy": {"none", "sum", "count", "min", "max", "average", "distinctCount"},
    "mode": {"import", "directQuery", "dual"},
    "isActive": {"true", "false"},
    "crossFilteringBehavior": {"oneDirection", "bothDirections", "automatic"},
}
_NAME = r"(?:'(?:[^']|'')+'|[A-Za-z_][A-Za-z0-9_.-]*)"
_DECLARATION = re.compile(rf"^(?P<keyword>[a-zA-Z]+)(?: (?P<name>{_NAME}))?(?P<rest>.*)$")
_TABLE_COLUMN = re.compile(r"(?:'((?:[^']|'')+)'|\b([A-Za-z_][A-Za-z0-9_]*))\[([^\]]+)\]")
_MEASURE = re.compile(r"(?<![\w'\]])\[([^\]]+)\]")


def _unquote(name: str) -> str:
    return name[1:-1].replace("''", "'") if name.startswith("'") else name


@dataclass
class TmdlObject:
    """One declared TMDL object with its properties (what the checks below need)."""

    keyword: str
    name: str
    line: int
    expression: str = ""
    properties: dict[str, str] = field(default_factory=dict)
    children: list[TmdlObject] = field(default_factory=list)


def parse_tmdl(text: str, where: str, problems: list[str]) -> list[TmdlObject]:
    """The objects of one TMDL file; indentation and keyword problems go to ``problems``."""
    roots: list[TmdlObject] = []
    stack: list[tuple[int, TmdlObject]] = []
    expression_owner: tuple[int, TmdlObject, str] | None = None
    previous_depth = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        stripped = raw.lstrip("\t")
        depth = len(raw) - len(stripped)
        if expression_owner is not None:
            owner_depth, owner, key = expression_owner
            if depth > owner_depth:
                owner.properties[key] = (owner.properties.get(key, "") + "\n" + stripped).strip()
                if key == "=":
                    owner.expression = owner.properties[key]
                continue
            expression_owner = None
        if stripped[0] == " ":
            problems.append(f"{where}:{number}: indented with spaces (TMDL indents with tabs)")
            continue
        if depth > previous_depth + 1:
            problems.append(f"{where}:{number}: indented {depth - previous_depth} levels at once")
            continue
        previous_depth = depth
        if stripped.startswith("///"):
            continue
        while stack and stack[-1][0] >= depth:
            stack.pop()
        parent = stack[-1][1] if stack else None
        scope = parent.keyword if parent else ""
        key, sep, value = stripped.partition(":")
        if parent is not None and sep and " " not in key and key in PROPERTIES.get(scope, set()):
            value = value.strip()
            if key in VALUES and value not in VALUES[key]:
                problems.append(
                    f"{where}:{number}: {key}: {value!r} is not one of {sorted(VALUES[key])}"
                )
            parent.properties[key] = value
            continue
        if parent is not None and stripped.rstrip() in PROPERTIES.get(scope, set()):
            parent.properties[stripped.rstrip()] = "true"
            continue
        if (
            parent is not None
            and stripped.endswith(" =")
            and stripped[:-2] in PROPERTIES.get(scope, set())
        ):
            expression_owner = (depth, parent, stripped[:-2])
            continue
        match = _DECLARATION.match(stripped)
        if match is None or match["keyword"] not in OBJECTS.get(scope, set()):
            what = f"in {scope} {parent.name}" if parent else "at the top level"
            problems.append(f"{where}:{number}: unexpected {stripped.split()[0]!r} {what}")
            continue
        obj = TmdlObject(match["keyword"], _unquote(match["name"] or ""), number)
        rest = match["rest"].strip()
        if rest.startswith("="):
            obj.expression = rest[1:].strip()
            if not obj.expression:
                expression_owner = (depth, obj, "=")
        (parent.children if parent else roots).append(obj)
        stack.append((depth, obj))
    return roots


def _walk(objects: list[TmdlObject]) -> Iterator[TmdlObject]:
    for obj in objects:
        yield obj
        yield from _walk(obj.children)


@dataclass
class Model:
    """What the report and the DAX may refer to."""

    columns: dict[str, dict[str, str]] = field(default_factory=dict)
    measures: dict[str, str] = field(default_factory=dict)


def check_semantic_model(folder: Path, gold: dict[str, Table], problems: list[str]) -> Model:
    """Check the TMDL files under ``folder`` (``<NAME>.SemanticModel``) against Gold."""
    definition = folder / "definition"
    parsed: dict[str, list[TmdlObject]] = {}
    for path in sorted(definition.rglob("*.tmdl")):
        relative = path.relative_to(folder).as_posix()
        parsed[relative] = parse_tmdl(path.read_text(), relative, problems)
    model = Model()
    referenced = {
        _unquote(line.split(" ", 2)[2])
        for line in (definition / "model.tmdl").read_text().splitlines()
        if line.startswith("ref table ")
    }
    table_files = {p.stem for p in (definition / "tables").glob("*.tmdl")}
    for name in sorted(referenced ^ table_files):
        problems.append(f"model.tmdl and tables/ disagree on table {name!r}")
    tables = [
        obj for key, objs in parsed.items() if key.startswith("definition/tables/") for obj in objs
    ]
    for table in tables:
        if table.keyword != "table":
            continue
        source = gold.get(table.name)
        if source is None:
            problems.append(f"table {table.name}: not a Gold model in dbt/models/gold")
            continue
        gold_columns = {column.name: column for column in source.columns}
        model.columns[table.name] = {}
        for child in table.children:
            if child.keyword == "column":
                gold_column = gold_columns.get(child.name)
                if gold_column is None:
                    problems.append(f"{table.name}[{child.name}]: no such column in Gold")
                    continue
                expected = (
                    "decimal"
                    if gold_column.data_type.startswith("decimal")
                    else TMDL_TYPES.get(gold_column.data_type)
                )
                if child.properties.get("dataType") != expected:
                    problems.append(
                        f"{table.name}[{child.name}]: dataType {child.properties.get('dataType')}"
                        f" but Gold's {gold_column.data_type} is {expected}"
                    )
                if child.properties.get("sourceColumn", "").upper() != child.name.upper():
                    problems.append(f"{table.name}[{child.name}]: sourceColumn is not the column")
                model.columns[table.name][child.name] = child.properties.get("dataType", "")
            elif child.keyword == "measure":
                if child.name in model.measures:
                    problems.append(f"measure [{child.name}] is defined twice")
                model.measures[child.name] = child.expression
            elif child.keyword == "partition":
                wanted_source = f'Name = "{table.name.upper()}", Kind = "Table"'
                if wanted_source not in child.properties.get("source", ""):
                    problems.append(f"table {table.name}: its partition reads another table")
        for name in sorted(gold_columns.keys() - model.columns[table.name].keys()):
            problems.append(f"{table.name}[{name}]: Gold column missing from the model")
    for obj in _walk(parsed.get("definition/relationships.tmdl", [])):
        if obj.keyword != "relationship":
            continue
        for end in ("fromColumn", "toColumn"):
            owner, _, column = obj.properties.get(end, "").partition(".")
            if column not in model.columns.get(_unquote(owner), {}):
                problems.append(f"relationship {obj.name}: {end} {owner}.{column} does not resolve")
    for name, expression in model.measures.items():
        for quoted, plain, column in _TABLE_COLUMN.findall(expression):
            owner = quoted.replace("''", "'") or plain
            if column not in model.columns.get(owner, {}):
                problems.append(f"measure [{name}]: {owner}[{column}] does not resolve")
        for measure in _MEASURE.findall(expression):
            if measure not in model.measures:
                problems.append(f"measure [{name}]: [{measure}] is not a measure")
    return model


def _schema(kind: str, version: str, body: dict[str, Any]) -> dict[str, Any]:
    url = f"{SCHEMA_URL}/item/report/{kind}/{version}/schema.json"
    return {
        "type": "object",
        "required": ["$schema", *body.get("required", [])],
        "properties": {"$schema": {"const": url}, **body.get("properties", {})},
        **{k: v for k, v in body.items() if k not in ("required", "properties")},
    }


_POSITION = {
    "type": "object",
    "required": ["x", "y", "width", "height"],
    "properties": {k: {"type": "number"} for k in ("x", "y", "z", "width", "height", "tabOrder")},
    "additionalProperties": False,
}
_PROJECTIONS = {
    "type": "object",
    "required": ["projections"],
    "properties": {
        "projections": {
            "type": "array",
            "minItems": 1,
            "items": {"type": "object", "required": ["field", "queryRef"]},
        }
    },
}
PBIR_SCHEMAS: dict[str, dict[str, Any]] = {
    "definition.pbir": _schema(
        "definitionProperties",
        "2.0.0",
        {
            "required": ["version", "datasetReference"],
            "properties": {
                "version": {"type": "string"},
                "datasetReference": {
                    "type": "object",
                    "required": ["byPath"],
                    "properties": {
                        "byPath": {
                            "type": "object",
                            "required": ["path"],
                            "properties": {"path": {"type": "string"}},
                            "additionalProperties": False,
                        }
                    },
                    "additionalProperties": False,
                },
            },
            "additionalProperties": False,
        },
    ),
    "version.json": _schema(
        "definition/versionMetadata",
        "1.0.0",
        {
            "required": ["version"],
            "properties": {
                "version": {"type": "string", "pattern": r"^[1-9][0-9]*\.(0|[1-9][0-9]*)\.0$"}
            },
            "additionalProperties": False,
        },
    ),
    "report.json": _schema(
        "definition/report",
        "3.0.0",
        {"required": ["themeCollection"], "properties": {"themeCollection": {"type": "object"}}},
    ),
    "pages.json": _schema(
        "definition/pagesMetadata",
        "1.0.0",
        {
            "properties": {
                "pageOrder": {"type": "array", "items": {"type": "string"}},
                "activePageName": {"type": "string"},
            },
            "additionalProperties": False,
        },
    ),
    "page.json": _schema(
        "definition/page",
        "2.0.0",
        {
            "required": ["name", "displayName", "displayOption", "height", "width"],
            "properties": {
                "name": {"type": "string", "maxLength": 50},
                "displayName": {"type": "string"},
                "displayOption": {
                    "enum": ["FitToPage", "FitToWidth", "ActualSize", "ActualSizeTopLeft"]
                },
                "height": {"type": "number"},
                "width": {"type": "number"},
            },
        },
    ),
    "visual.json": _schema(
        "definition/visualContainer",
        "2.0.0",
        {
            "required": ["name", "position", "visual"],
            "properties": {
                "name": {"type": "string", "maxLength": 50},
                "position": _POSITION,
                "visual": {
                    "type": "object",
                    "required": ["visualType", "query"],
                    "properties": {
                        "visualType": {
                            "enum": ["card", "lineChart", "clusteredBarChart", "tableEx", "slicer"]
                        },
                        "query": {
                            "type": "object",
                            "required": ["queryState"],
                            "properties": {
                                "queryState": {
                                    "type": "object",
                                    "minProperties": 1,
                                    "additionalProperties": _PROJECTIONS,
                                }
                            },
                        },
                    },
                },
            },
        },
    ),
}


def _fields(node: object) -> Iterator[tuple[str, str, str]]:
    """Every (Column|Measure, entity, property) a report file names."""
    if isinstance(node, dict):
        for kind in ("Column", "Measure"):
            ref = node.get(kind)
            if isinstance(ref, dict) and "Property" in ref:
                entity = ref.get("Expression", {}).get("SourceRef", {}).get("Entity", "")
                yield kind, entity, ref["Property"]
        for value in node.values():
            yield from _fields(value)
    elif isinstance(node, list):
        for item in node:
            yield from _fields(item)


def check_report(folder: Path, model: Model, problems: list[str]) -> None:
    """Check the PBIR files under ``folder`` (``<NAME>.Report``)."""
    pages: dict[str, dict[str, Any]] = {}
    for path in sorted(folder.rglob("*")):
        schema = PBIR_SCHEMAS.get(path.name)
        if schema is None or not path.is_file():
            continue
        relative = path.relative_to(folder).as_posix()
        data = json.loads(path.read_text())
        for error in jsonschema.Draft7Validator(schema).iter_errors(data):
            location = "/".join(str(p) for p in error.absolute_path) or "(root)"
            problems.append(f"{relative}: {location}: {error.message}")
        if path.name == "page.json":
            pages[path.parent.name] = data
            if data.get("name") != path.parent.name:
                problems.append(f"{relative}: name differs from its folder")
        if path.name == "visual.json":
            if data.get("name") != path.parent.name:
                problems.append(f"{relative}: name differs from its folder")
            page = json.loads((path.parents[2] / "page.json").read_text())
            box = data.get("position", {})
            if box.get("x", 0) + box.get("width", 0) > page.get("width", 0) or box.get(
                "y", 0
            ) + box.get("height", 0) > page.get("height", 0):
                problems.append(f"{relative}: the visual does not fit on its page")
        for kind, entity, prop in _fields(data):
            if kind == "Measure" and model.measures.get(prop) is None:
                problems.append(f"{relative}: measure {entity}[{prop}] is not in the model")
            if kind == "Column" and prop not in model.columns.get(entity, {}):
                problems.append(f"{relative}: column {entity}[{prop}] is not in the model")
    order_file = folder / "definition" / "pages" / "pages.json"
    order = json.loads(order_file.read_text()).get("pageOrder", []) if order_file.exists() else []
    if sorted(order) != sorted(pages):
        problems.append(f"pages.json pageOrder {order} does not list the pages {sorted(pages)}")
    pbir = folder / "definition.pbir"
    if pbir.exists():
        target = json.loads(pbir.read_text()).get("datasetReference", {}).get("byPath", {})
        if not (folder / target.get("path", "-")).resolve().is_dir():
            problems.append("definition.pbir: datasetReference.byPath.path is not a folder")


def check_platform(folder: Path, item_type: str, problems: list[str]) -> None:
    """The item's ``.platform`` file: without it, or with another type, Fabric Git integration
    does not recognise the folder as this item."""
    where = f"{folder.name}/.platform"
    if not (folder / ".platform").is_file():
        problems.append(f"{where} is missing (Fabric Git integration needs it)")
        return
    data = json.loads((folder / ".platform").read_text())
    found = data.get("metadata", {}).get("type")
    if found != item_type:
        problems.append(f"{where}: metadata.type is {found!r}, not {item_type!r}")
    try:
        uuid.UUID(str(data.get("config", {}).get("logicalId")))
    except ValueError:
        problems.append(f"{where}: config.logicalId is not a GUID")


def check_project(root: Path, dbt_dir: Path) -> list[str]:
    """Every structural problem of the PBIP project under ``root``, as lines."""
    problems: list[str] = []
    for required in (f"{NAME}.pbip", f"{NAME}.SemanticModel", f"{NAME}.Report"):
        if not (root / required).exists():
            problems.append(f"{root}/{required} is missing")
    if problems:
        return problems
    model = check_semantic_model(root / f"{NAME}.SemanticModel", gold_tables(dbt_dir), problems)
    check_measures(model, measures(dbt_dir), problems)
    check_report(root / f"{NAME}.Report", model, problems)
    for item_type in ITEM_TYPES:
        check_platform(root / f"{NAME}.{item_type}", item_type, problems)
    return problems


def check_measures(model: Model, metrics: tuple[Measure, ...], problems: list[str]) -> None:
    """Every measure is a metric of dbt's semantic layer, with the DAX the spec renders to."""
    expected = {measure.name: measure.expression for measure in metrics}
    for name, expression in model.measures.items():
        if name not in expected:
            problems.append(f"measure [{name}]: no metric of dbt's semantic layer has that label")
        elif " ".join(expression.split()) != expected[name]:
            problems.append(
                f"measure [{name}] = {expression} restates its metric; the semantic layer"
                f" gives {expected[name]}"
            )
    for name in sorted(expected.keys() - model.measures.keys()):
        problems.append(f"metric {name!r} of dbt's semantic layer has no measure")


def main(argv: list[str] | None = None) -> None:
    """``python -m retail_pipeline.dashboard.powerbi_check [DIR]`` (default ``powerbi/``)."""
    from retail_pipeline.transform import project_dir

    args = sys.argv[1:] if argv is None else argv
    root = Path(args[0]) if args else Path("powerbi")
    problems = check_project(root, project_dir())
    for line in problems:
        print(line)
    if problems:
        raise SystemExit(1)
    print(f"{root}: the Power BI project is consistent with Gold")


if __name__ == "__main__":
    main()
