"""The six answers' metrics as dbt's semantic layer defines them, rendered as SQL and as DAX.

The measures and metrics are stated once, in dbt's own spec (``semantic_models:`` and
``metrics:`` under ``dbt/models/gold/semantic/``; dbt validates them on every parse). This
module reads that YAML and renders each metric for the two readers that aggregate Gold
themselves: :meth:`SemanticLayer.sql` gives the dashboard an aggregate over the rows of the
metric's fact table, :meth:`SemanticLayer.dax` gives Power BI a measure. Ratios and derived
metrics are computed from their inputs (:meth:`SemanticLayer.value`) the way the marts do.

Only what both renderings can state exactly is accepted, and anything else is an error naming
the metric: a measure's ``expr`` is a column of its model (or ``1`` for ``count``), its ``agg``
is ``count``, ``sum``, ``sum_boolean``, ``average`` or a continuous ``percentile``; a metric
filter compares one dimension of the model's own primary entity with a quoted string or
``true``; a derived metric adds or subtracts two metrics.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from retail_pipeline.errors import PipelineError

AGGREGATIONS = ("count", "sum", "sum_boolean", "average", "percentile")
UNITS = ("count", "fraction", "money", "hours")
"""``meta.unit`` of a metric: a count, a rate in [0, 1], money (reporting currency, rounded to
cents once, at the end) or hours."""

_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]*")
_REF = re.compile(r"ref\(\s*['\"]([a-z_][a-z0-9_]*)['\"]\s*\)")
_FILTER = re.compile(
    r"\{\{\s*Dimension\(\s*'([a-z_][a-z0-9_]*)__([a-z_][a-z0-9_]*)'\s*\)\s*\}\}"
    r"\s*=\s*(?:'([^'\\]*)'|(true))"
)
_DERIVED = re.compile(r"\s*([a-z_][a-z0-9_]*)\s*([-+])\s*([a-z_][a-z0-9_]*)\s*")
HOUR_MICROSECONDS = "3600e6"


class SemanticError(PipelineError):
    """The semantic layer's YAML states something this module cannot render exactly."""


@dataclass(frozen=True)
class Filter:
    """``column = value`` on a row of the metric's fact table (value: text or ``True``)."""

    column: str
    value: str | bool


@dataclass(frozen=True)
class Measure:
    """One aggregation of a column of a Gold fact table."""

    name: str
    table: str
    agg: str
    expr: str
    """A column of ``table``, or ``1`` (every row) for ``count``."""
    percentile: float | None = None


@dataclass(frozen=True)
class Metric:
    """One figure: a measure (filtered), a ratio of two metrics or a sum/difference of two."""

    name: str
    label: str
    description: str
    unit: str
    kind: str
    """``simple``, ``ratio`` or ``derived``."""
    table: str
    """The fact table it is computed on (a ratio's or derived metric's: its first input's)."""
    day: str
    """The column of ``table`` that dates a row (the model's ``agg_time_dimension``)."""
    measure: Measure | None = None
    filters: tuple[Filter, ...] = ()
    inputs: tuple[str, ...] = ()
    """A ratio's numerator and denominator; a derived metric's two operands."""
    operator: str = ""
    """A derived metric's ``+`` or ``-``."""


@dataclass(frozen=True)
class SemanticLayer:
    """The metrics of dbt's semantic layer, in the order the YAML lists them."""

    metrics: dict[str, Metric]

    def __getitem__(self, name: str) -> Metric:
        try:
            return self.metrics[name]
        except KeyError:
            raise SemanticError(f"the semantic layer has no metric {name!r}") from None

    def simple(self, names: Iterable[str]) -> list[Metric]:
        """The simple metrics ``names`` rest on, each once, in the order first needed."""
        seen: dict[str, Metric] = {}

        def visit(name: str) -> None:
            metric = self[name]
            if metric.kind == "simple":
                seen.setdefault(name, metric)
            for each in metric.inputs:
                visit(each)

        for name in names:
            visit(name)
        return list(seen.values())

    # -- SQL (DuckDB, on the Gold tables' columns) ------------------------------------------

    def sql(self, name: str, alias: str = "") -> str:
        """A simple metric as one aggregate over the rows of its table (columns prefixed with
        ``alias.`` when given). An empty set of rows counts and sums to 0; other aggregates
        of no value are null."""
        metric = self[name]
        measure = metric.measure
        if measure is None:
            raise SemanticError(f"metric {name} is a {metric.kind}: compute it with value()")
        where = _conjunction(metric.filters, alias)
        column = "1" if measure.expr == "1" else f"{alias}.{measure.expr}".lstrip(".")

        def only(value: str) -> str:
            return value if where is None else f"case when {where} then {value} end"

        if measure.agg == "count":
            return "count(*)" if column == "1" and where is None else f"count({only(column)})"
        if measure.agg == "sum_boolean":
            flag = column if where is None else f"{where} and {column}"
            return f"count(case when {flag} then 1 end)"
        if measure.agg == "sum":
            return f"coalesce(sum({only(column)}), 0)"
        if measure.agg == "average":
            if metric.unit == "hours":
                # The mean of whole microseconds: an exact integer sum, the same whatever order
                # the values are added in (gold.fulfillment_lead_times takes it the same way).
                micros = f"cast(round({only(column)} * {HOUR_MICROSECONDS}) as bigint)"
                return f"avg({micros}) / {HOUR_MICROSECONDS}"
            return f"avg({only(column)})"
        return f"percentile_cont({measure.percentile}) within group (order by {only(column)})"

    def scope(self, names: Iterable[str], alias: str = "") -> str:
        """A condition that keeps the rows at least one of the simple metrics reads."""
        alternatives = []
        for metric in self.simple(names):
            where = _conjunction(metric.filters, alias)
            if where is None:
                return "true"
            alternatives.append(f"({where})")
        return " or ".join(dict.fromkeys(alternatives)) or "false"

    def value(self, name: str, simple: Mapping[str, Any]) -> Any:
        """A metric's value from the values of the simple metrics it rests on: a ratio is
        numerator / denominator as a float (0 when the denominator is 0: no orders, no rate);
        a derived metric adds or subtracts its operands exactly."""
        metric = self[name]
        if metric.kind == "simple":
            return simple[name]
        left, right = (self.value(each, simple) for each in metric.inputs)
        if metric.kind == "ratio":
            return float(left) / float(right) if right else 0.0
        if isinstance(left, Decimal) or isinstance(right, Decimal):
            left, right = Decimal(left), Decimal(right)
        return left - right if metric.operator == "-" else left + right

    # -- DAX ------------------------------------------------------------------------------

    def dax(self, name: str) -> str:
        """The Power BI measure of a metric; a money figure is rounded to cents once, there."""
        metric = self[name]
        if metric.kind == "ratio":
            numerator, denominator = (self[each].label for each in metric.inputs)
            expression = f"DIVIDE([{numerator}], [{denominator}], 0)"
        elif metric.kind == "derived":
            left, right = (self[each].label for each in metric.inputs)
            return f"[{left}] {metric.operator} [{right}]"
        else:
            expression = _dax_simple(metric)
        return f"ROUND({expression}, 2)" if metric.unit == "money" else expression


def _conjunction(filters: tuple[Filter, ...], alias: str) -> str | None:
    if not filters:
        return None
    prefix = f"{alias}." if alias else ""
    return " and ".join(
        f"{prefix}{f.column} = {'true' if f.value is True else _sql_text(str(f.value))}"
        for f in filters
    )


def _sql_text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _dax_simple(metric: Metric) -> str:
    measure = metric.measure
    assert measure is not None
    table = measure.table
    column = f"{table}[{measure.expr}]"
    conditions = [
        f"{table}[{f.column}] = " + ("TRUE()" if f.value is True else _dax_text(str(f.value)))
        for f in metric.filters
    ]
    if measure.agg == "percentile":
        rows = " && ".join([f"NOT ISBLANK({column})", *conditions])
        return f"PERCENTILEX.INC(FILTER({table}, {rows}), {column}, {measure.percentile})"
    if measure.agg == "sum_boolean":
        base, conditions = f"COUNTROWS({table})", [f"{column} = TRUE()", *conditions]
    elif measure.agg == "count":
        base = f"COUNTROWS({table})" if measure.expr == "1" else f"COUNT({column})"
    else:
        base = f"{'SUM' if measure.agg == 'sum' else 'AVERAGE'}({column})"
    return f"CALCULATE({base}, {', '.join(conditions)})" if conditions else base


def _dax_text(value: str) -> str:
    return '"' + value.replace('"', '""') + '"'


# -- reading dbt's YAML ---------------------------------------------------------------------


def _input_name(value: Any, where: str) -> str:
    """A metric input: ``name`` or ``{name: ...}`` (filters, aliases and offsets refused)."""
    if isinstance(value, dict):
        if set(value) != {"name"}:
            raise SemanticError(f"{where}: only a metric's name is supported, got {value}")
        value = value["name"]
    if not isinstance(value, str) or not _IDENTIFIER.fullmatch(value):
        raise SemanticError(f"{where}: {value!r} is not a metric name")
    return value


@dataclass(frozen=True)
class _Model:
    table: str
    day: str
    entity: str
    dimensions: dict[str, str]
    """Dimension name -> column."""
    measures: dict[str, Measure]


def _model(spec: Mapping[str, Any]) -> _Model:
    name = spec["name"]
    found = _REF.fullmatch(str(spec.get("model", "")).strip())
    if not found:
        raise SemanticError(f"semantic model {name}: model must be ref('<gold table>')")
    table = found.group(1)
    primary = [e["name"] for e in spec.get("entities", []) if e.get("type") == "primary"]
    entity = spec.get("primary_entity") or (primary[0] if primary else None)
    if not entity:
        raise SemanticError(f"semantic model {name} has no primary entity")
    dimensions = {d["name"]: str(d.get("expr") or d["name"]) for d in spec.get("dimensions", [])}
    day = (spec.get("defaults") or {}).get("agg_time_dimension")
    if day not in dimensions:
        raise SemanticError(f"semantic model {name}: agg_time_dimension is not a dimension")
    measures = {}
    for raw in spec.get("measures", []):
        where = f"measure {raw['name']} of semantic model {name}"
        agg, expr = raw.get("agg"), str(raw.get("expr") or raw["name"])
        if agg not in AGGREGATIONS:
            raise SemanticError(f"{where}: agg {agg!r} is not one of {', '.join(AGGREGATIONS)}")
        if not (_IDENTIFIER.fullmatch(expr) or (expr == "1" and agg == "count")):
            raise SemanticError(f"{where}: expr {expr!r} is not a column")
        percentile = None
        if agg == "percentile":
            params = raw.get("agg_params") or {}
            if params.get("use_discrete_percentile") or "percentile" not in params:
                raise SemanticError(f"{where}: only a continuous percentile is supported")
            percentile = float(params["percentile"])
        measures[raw["name"]] = Measure(raw["name"], table, agg, expr, percentile)
    return _Model(table, dimensions[day], entity, dimensions, measures)


def _filters(raw: Any, model: _Model, where: str) -> tuple[Filter, ...]:
    if raw is None:
        return ()
    items = raw if isinstance(raw, list) else [raw]
    filters = []
    for item in items:
        found = _FILTER.fullmatch(str(item).strip())
        if not found:
            raise SemanticError(
                f"{where}: filter {item!r} is not \"{{{{ Dimension('<entity>__<dimension>') }}}}"
                ' = \'<text>\'" or "= true"'
            )
        entity, dimension, text, true = found.groups()
        if entity != model.entity or dimension not in model.dimensions:
            raise SemanticError(
                f"{where}: filter on {entity}__{dimension}, which is not a dimension of"
                f" {model.table}'s {model.entity}"
            )
        filters.append(Filter(model.dimensions[dimension], True if true else text))
    return tuple(filters)


def _metric(
    spec: Mapping[str, Any],
    measures: Mapping[str, Measure],
    models: dict[str, _Model],
    known: Mapping[str, Metric],
) -> Metric:
    name = spec["name"]
    where = f"metric {name}"
    kind = spec.get("type")
    unit = ((spec.get("config") or {}).get("meta") or spec.get("meta") or {}).get("unit")
    if unit not in UNITS:
        raise SemanticError(f"{where}: meta.unit {unit!r} is not one of {', '.join(UNITS)}")
    if kind not in ("simple", "ratio", "derived"):
        raise SemanticError(f"{where}: type {kind!r} is not simple, ratio or derived")
    params = spec.get("type_params") or {}
    common = {
        "name": name,
        "label": str(spec.get("label") or name),
        "description": " ".join(str(spec.get("description", "")).split()),
        "unit": unit,
        "kind": str(kind),
    }
    if kind == "simple":
        measure_name = _input_name(params.get("measure"), where)
        if measure_name not in measures:
            raise SemanticError(f"{where}: no measure {measure_name!r}")
        measure = measures[measure_name]
        model = models[measure.table]
        filters = _filters(spec.get("filter"), model, where)
        return Metric(**common, table=model.table, day=model.day, measure=measure, filters=filters)
    if spec.get("filter"):
        raise SemanticError(f"{where}: only a simple metric may have a filter")
    if kind == "ratio":
        inputs: tuple[str, str] = (
            _input_name(params.get("numerator"), where),
            _input_name(params.get("denominator"), where),
        )
        operator = ""
    else:  # derived
        found = _DERIVED.fullmatch(str(params.get("expr", "")))
        declared = {_input_name(each, where) for each in params.get("metrics") or []}
        if not found or {found.group(1), found.group(3)} != declared:
            raise SemanticError(f"{where}: expr must add or subtract its two metrics")
        inputs, operator = (found.group(1), found.group(3)), found.group(2)
    for each in inputs:
        if each not in known:
            raise SemanticError(f"{where}: {each} must be a metric listed before it")
    first = known[inputs[0]]
    return Metric(**common, table=first.table, day=first.day, inputs=inputs, operator=operator)


def read_semantic_layer(dbt_dir: Path) -> SemanticLayer:
    """The semantic models and metrics of every YAML file under ``dbt_dir/models``."""
    specs: dict[str, list[dict[str, Any]]] = {"semantic_models": [], "metrics": []}
    models_dir = dbt_dir / "models"
    for path in sorted([*models_dir.rglob("*.yml"), *models_dir.rglob("*.yaml")]):
        document = yaml.safe_load(path.read_text()) or {}
        for key, found in specs.items():
            found.extend(document.get(key) or [])
    models: dict[str, _Model] = {}
    measures: dict[str, Measure] = {}
    for spec in specs["semantic_models"]:
        model = _model(spec)
        models[model.table] = model
        measures.update(model.measures)
    metrics: dict[str, Metric] = {}
    for spec in specs["metrics"]:
        metrics[spec["name"]] = _metric(spec, measures, models, metrics)
    if not metrics:
        raise SemanticError(f"no metrics in {dbt_dir / 'models'} (dbt's semantic layer)")
    return SemanticLayer(metrics)


@lru_cache(maxsize=4)
def _cached(dbt_dir: Path) -> SemanticLayer:
    return read_semantic_layer(dbt_dir)


def semantic_layer(dbt_dir: Path | None = None) -> SemanticLayer:
    """The semantic layer of ``dbt_dir`` (default: the dbt project the transform runs), read
    once per process."""
    if dbt_dir is None:
        from retail_pipeline.transform.runner import project_dir

        dbt_dir = project_dir()
    return _cached(dbt_dir.resolve())
