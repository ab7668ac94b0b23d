"""The OpenLineage file as a graph, and the checks every end-to-end lineage test makes.

Nodes are datasets ``(namespace, name)``; each COMPLETE run adds an edge from each of its inputs
to each of its outputs. What must be connected is computed independently of the events: from
dbt's ``manifest.json`` (which Bronze sources each Gold model reads, through any number of
models) and from what the test itself loaded (which file, topic, API path or Postgres table
fed which Bronze table).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import jsonschema

SCHEMA = json.loads((Path(__file__).parent / "openlineage" / "OpenLineage-2-0-2.json").read_text())
TERMINAL = {"COMPLETE", "FAIL", "ABORT"}

Node = tuple[str, str]
"""A dataset: (namespace, name)."""


def validate(event: dict[str, Any]) -> None:
    """Raise unless ``event`` is a valid OpenLineage 2-0-2 RunEvent."""
    jsonschema.Draft202012Validator(
        SCHEMA, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    ).validate(event)


def events_of(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def run_states(events: Iterable[dict[str, Any]]) -> dict[str, list[str]]:
    """Each run's event types, in the order written."""
    runs: dict[str, list[str]] = {}
    for event in events:
        runs.setdefault(event["run"]["runId"], []).append(event["eventType"])
    return runs


def graph(events: Iterable[dict[str, Any]]) -> dict[Node, set[Node]]:
    """input -> outputs, over every COMPLETE run."""
    edges: dict[Node, set[Node]] = {}
    for event in events:
        if event["eventType"] != "COMPLETE":
            continue
        for source in event["inputs"]:
            for target in event["outputs"]:
                edges.setdefault((source["namespace"], source["name"]), set()).add(
                    (target["namespace"], target["name"])
                )
    return edges


def reachable(edges: Mapping[Node, set[Node]], start: Node) -> set[Node]:
    seen: set[Node] = set()
    pending = [start]
    while pending:
        node = pending.pop()
        for nxt in edges.get(node, ()):
            if nxt not in seen:
                seen.add(nxt)
                pending.append(nxt)
    return seen


def gold_sources(manifest: Mapping[str, Any]) -> dict[str, set[str]]:
    """Each Gold model (``gold.<alias>``) -> the Bronze tables among its ancestors, from the
    manifest's ``parent_map``."""
    parents = manifest["parent_map"]
    found = {}
    for unique_id, node in manifest["nodes"].items():
        if node["resource_type"] != "model" or node["schema"].lower() != "gold":
            continue
        seen: set[str] = set()
        pending = [unique_id]
        while pending:
            for parent in parents.get(pending.pop(), []):
                if parent not in seen:
                    seen.add(parent)
                    pending.append(parent)
        found[f"gold.{node['alias']}"] = {
            manifest["sources"][s]["identifier"] for s in seen if s.startswith("source.")
        }
    return found


def check_connected(
    events: list[dict[str, Any]],
    manifest: Mapping[str, Any],
    warehouse_namespace: str,
    fed_by: Mapping[str, Iterable[Node]],
) -> list[str]:
    """What is missing: for every Gold model and every Bronze table it reads that the test
    loaded (``fed_by``: Bronze table -> the datasets loaded into it), a path from each of those
    datasets through ``bronze.<table>`` to the model, all in ``warehouse_namespace``."""
    edges = graph(events)
    missing = []
    models = gold_sources(manifest)
    assert models, "the manifest has no Gold model"
    for gold, tables in sorted(models.items()):
        target = (warehouse_namespace, gold)
        for table in sorted(tables):
            bronze = (warehouse_namespace, f"bronze.{table}")
            if table in fed_by and target not in reachable(edges, bronze):
                missing.append(f"bronze.{table} -/-> {gold}")
            for source in fed_by.get(table, ()):
                if bronze not in reachable(edges, source):
                    missing.append(f"{source} -/-> bronze.{table}")
                elif target not in reachable(edges, source):
                    missing.append(f"{source} -/-> {gold}")
    return missing


def fed_by_bronze(
    warehouse: Path, kafka_bootstrap: str | None = None, topic_prefix: str = ""
) -> dict[str, list[Node]]:
    """What fed each Bronze table, as Bronze itself records it: each distinct ``_source_file``
    (a file's path, the API's URL, the Postgres table) and ``_topic`` (on ``kafka_bootstrap``;
    Bronze keeps the topic without the deployment's ``topic_prefix``), named as OpenLineage's
    naming conventions name them."""
    import duckdb

    from retail_pipeline import lineage

    def dataset(where: str) -> Node:
        if where.startswith(("http://", "https://")):
            found = lineage.url_dataset(where)
        elif where.startswith("postgresql://"):
            found = lineage.postgres_dataset(where)
        else:
            found = lineage.file_dataset(where)
        return found.namespace, found.name

    fed: dict[str, list[Node]] = {}
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        for table in ("order_events", "payment_events", "shipment_events"):
            rows = con.execute(
                f"select distinct _source_file, _topic from bronze.{table} order by all"
            ).fetchall()
            for source_file, topic in rows:
                if source_file is not None:
                    fed.setdefault(table, []).append(dataset(source_file))
                elif topic is not None and kafka_bootstrap is not None:
                    found = lineage.kafka_dataset(kafka_bootstrap, topic_prefix + topic)
                    fed.setdefault(table, []).append((found.namespace, found.name))
        for table in ("customers", "products"):
            rows = con.execute(
                f"select distinct _source_file from bronze.{table} order by all"
            ).fetchall()
            fed[table] = [dataset(source_file) for (source_file,) in rows]
    finally:
        con.close()
    return fed
