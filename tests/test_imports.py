"""The package map of docs/architecture.md, held: which package may import which.

Every import of ``retail_pipeline`` in ``src/``, the DAG files and ``bench/`` is read from the
syntax tree (top-level and function-local, ``import x`` and ``from x import y``, and
``importlib.import_module("...")`` with a constant name), so a rule cannot be dodged by moving an
import into a function.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "retail_pipeline"

# Rank of each part: a part imports only parts of a lower rank (and itself).
LAYERS: dict[str, int] = {
    "errors": 0,
    "interrupts": 0,
    "settings": 1,
    "http_server": 1,
    "kafka_config": 2,
    # what every layer may record: Prometheus metrics and OpenLineage events
    "metrics": 2,
    "lineage": 2,
    "events": 2,
    "warehouse": 3,
    "ingestion": 4,
    "transform": 4,
    "monitoring": 5,
    "orchestration": 6,
    "continuous": 6,
    "dashboard": 6,
    # stand-ins for the shop and its systems: they may use the pipeline, never the reverse
    "simulation": 7,
    "local": 8,
    # the entry points, which wire the stand-ins to the pipeline
    "demo": 9,
    "cli": 10,
}
PRODUCTION = {part for part, rank in LAYERS.items() if rank <= 6}
STAND_INS = {"local", "simulation"}
IMPLEMENTATIONS = {"retail_pipeline.warehouse.duckdb", "retail_pipeline.warehouse.snowflake"}
IMPLEMENTATION_CLASSES = {"DuckDBWarehouse", "SnowflakeWarehouse"}


def _part(module: str) -> str:
    """``retail_pipeline.ingestion.kafka.consumer`` -> ``ingestion``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _module_of(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    return ".".join(rel.parts).removesuffix(".__init__")


def imports(path: Path, text: str | None = None) -> Iterator[tuple[int, str]]:
    """``(line, module)`` of every module ``path`` (or ``text``, read as standing at ``path``)
    imports, each name of a ``from package import name`` counted as the submodule it may be."""
    package = _module_of(path) if path.is_relative_to(PACKAGE) else ""
    source = path.read_text() if text is None else text
    for node in ast.walk(ast.parse(source, str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:  # relative: resolved against this module's package
                base = package.split(".")
                base = base[: len(base) - node.level + (path.name == "__init__.py")]
                module = ".".join([*base, *([module] if module else [])])
            yield node.lineno, module
            for alias in node.names:
                yield node.lineno, f"{module}.{alias.name}"
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            yield node.lineno, node.args[0].value


def _ours(module: str) -> bool:
    return module == "retail_pipeline" or module.startswith("retail_pipeline.")


SOURCES = sorted(PACKAGE.rglob("*.py"))
DAGS = sorted((ROOT / "airflow" / "dags").glob("*.py"))


def test_every_part_has_a_layer() -> None:
    parts = {_part(_module_of(path)) for path in SOURCES} - {""}
    assert parts == set(LAYERS), "add the new package to LAYERS and to docs/architecture.md"


def test_a_part_imports_only_lower_layers() -> None:
    offenders = []
    for path in SOURCES:
        own = _part(_module_of(path))
        for line, module in imports(path):
            target = _part(module)
            if not _ours(module) or target in ("", own) or target not in LAYERS:
                continue
            if LAYERS[target] >= LAYERS[own]:
                offenders.append(f"{path.relative_to(ROOT)}:{line} ({own}) imports {module}")
    assert offenders == []


def test_production_never_imports_the_stand_ins() -> None:
    """Neither the local services (Kafka broker, PostgreSQL, reference API, Airflow, Snowflake
    emulator) nor the simulated shop is reachable from the pipeline or its DAGs."""
    production = [p for p in SOURCES if _part(_module_of(p)) in PRODUCTION]
    offenders = [
        f"{path.relative_to(ROOT)}:{line} imports {module}"
        for path in [*production, *DAGS]
        for line, module in imports(path)
        if _ours(module) and _part(module) in STAND_INS
    ]
    assert offenders == []


def test_the_warehouse_imports_nothing_from_ingestion() -> None:
    warehouse = [p for p in SOURCES if _part(_module_of(p)) == "warehouse"]
    offenders = [
        f"{path.relative_to(ROOT)}:{line} imports {module}"
        for path in warehouse
        for line, module in imports(path)
        if _part(module) == "ingestion"
    ]
    assert offenders == []


def _implementation_uses(path: Path) -> list[str]:
    found = [
        f"{path.relative_to(ROOT)}:{line} imports {module}"
        for line, module in imports(path)
        if any(module == impl or module.startswith(impl + ".") for impl in IMPLEMENTATIONS)
    ]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Name) and node.id in IMPLEMENTATION_CLASSES:
            found.append(f"{path.relative_to(ROOT)}:{node.lineno} names {node.id}")
    return found


def test_nothing_outside_the_warehouse_package_names_an_implementation() -> None:
    """Everything else opens a warehouse through ``open_warehouse`` and talks to the ``Warehouse``
    interface, whatever the target."""
    outside = [p for p in SOURCES if _part(_module_of(p)) != "warehouse"]
    offenders = [
        use
        for path in [*outside, *DAGS, *sorted((ROOT / "bench").glob("*.py"))]
        for use in _implementation_uses(path)
    ]
    assert offenders == []


@pytest.mark.parametrize(
    ("source", "rule"),
    [
        ("from retail_pipeline.local import kafka_broker\n", "stand-in"),
        ("def f():\n    import retail_pipeline.simulation.truth\n", "stand-in"),
        ("from retail_pipeline.warehouse.duckdb import DuckDBWarehouse\n", "implementation"),
        ("from retail_pipeline.warehouse import snowflake\n", "implementation"),
        ("import importlib\nimportlib.import_module('retail_pipeline.warehouse.duckdb')\n", "impl"),
        ("from ...dashboard import data\n", "layer"),
    ],
)
def test_the_rules_see_every_spelling(source: str, rule: str) -> None:
    """Each way of writing a forbidden import is caught (the rules above can fail)."""
    probe = PACKAGE / "ingestion" / "kafka" / "probe.py"
    modules = {module for _, module in imports(probe, source)}
    if rule == "stand-in":
        assert any(_part(m) in STAND_INS for m in modules)
    elif rule == "layer":
        assert "retail_pipeline.dashboard.data" in modules
    else:
        assert any(any(m.startswith(impl) for impl in IMPLEMENTATIONS) for m in modules)
