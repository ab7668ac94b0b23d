"""dbt's semantic layer (dbt/models/gold/semantic/): read as dbt reads it, rendered exactly.

The dashboard's SQL and the Power BI DAX are rendered from these metrics, so the reader must
see what dbt validates, refuse what it cannot render exactly, and only name Gold's columns.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pytest

from retail_pipeline.dashboard.powerbi import gold_tables
from retail_pipeline.transform import project_dir
from retail_pipeline.transform.semantic import SemanticError, read_semantic_layer, semantic_layer


def _parsed_manifest(tmp_path: Path) -> dict[str, Any]:
    """``dbt parse`` of the project (it validates the semantic layer) and its semantic manifest."""
    dbt_dir = project_dir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DBT_", "SNOWFLAKE_"))}
    out = subprocess.run(
        [
            sys.executable, "-m", "dbt.cli.main", "parse",
            "--project-dir", str(dbt_dir), "--profiles-dir", str(dbt_dir),
            "--target-path", str(tmp_path / "target"), "--log-path", str(tmp_path / "logs"),
            "--no-partial-parse",
        ],
        capture_output=True,
        text=True,
        env={**env, "RETAIL_WAREHOUSE": str(tmp_path / "none.duckdb")},
        cwd=dbt_dir,
        timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    manifest: dict[str, Any] = json.loads(
        (tmp_path / "target" / "semantic_manifest.json").read_text()
    )
    return manifest


def test_the_reader_sees_what_dbt_validates(tmp_path: Path) -> None:
    manifest = _parsed_manifest(tmp_path)
    layer = semantic_layer()
    measures = {
        measure["name"]: (model["node_relation"]["alias"], measure)
        for model in manifest["semantic_models"]
        for measure in model["measures"]
    }
    assert [m["name"] for m in manifest["metrics"]] == list(layer.metrics)
    for parsed in manifest["metrics"]:
        metric = layer[parsed["name"]]
        assert metric.label == parsed["label"]
        assert metric.kind == parsed["type"]
        assert metric.unit == parsed["config"]["meta"]["unit"]
        params = parsed["type_params"]
        if metric.kind == "simple":
            table, measure = measures[params["measure"]["name"]]
            assert metric.measure is not None and metric.table == table
            assert (metric.measure.agg, metric.measure.expr) == (measure["agg"], measure["expr"])
            if measure["agg"] == "percentile":
                assert metric.measure.percentile == measure["agg_params"]["percentile"]
            filters = [
                f["where_sql_template"] for f in (parsed["filter"] or {}).get("where_filters", [])
            ]
            assert len(filters) == len(metric.filters)
            for template, condition in zip(filters, metric.filters, strict=True):
                assert f"__{condition.column}') }}}}" in template
                value = "true" if condition.value is True else f"'{condition.value}'"
                assert template.endswith(f"= {value}")
        elif metric.kind == "ratio":
            assert metric.inputs == (params["numerator"]["name"], params["denominator"]["name"])
        else:
            assert params["expr"] == f"{metric.inputs[0]} {metric.operator} {metric.inputs[1]}"


def test_every_metric_reads_gold_columns_dbt_documents() -> None:
    tables = gold_tables(project_dir())
    for metric in semantic_layer().metrics.values():
        columns = {column.name for column in tables[metric.table].columns}
        assert metric.day in columns, metric.name
        if metric.measure is not None and metric.measure.expr != "1":
            assert metric.measure.expr in columns, metric.name
        for condition in metric.filters:
            assert condition.column in columns, metric.name


def test_the_six_answers_are_metrics() -> None:
    layer = semantic_layer()
    for name in (
        "orders", "gross_revenue", "refunds", "net_revenue", "conversion_rate",
        "product_revenue", "units_sold", "canceled_rate", "refunded_rate",
        "canceled_or_refunded_rate", "created_to_shipped_p50_hours",
        "shipped_to_delivered_mean_hours", "created_to_delivered_p90_hours",
    ):  # fmt: skip
        assert name in layer.metrics


def test_metrics_render_to_sql_that_computes_them() -> None:
    """Each rendering on a small table whose answers are known by hand."""
    layer = semantic_layer()
    con = duckdb.connect()
    con.execute(
        "create table fct_payments as select * from (values"
        " ('capture', true, 10.25::decimal(18, 2)), ('capture', true, 4.75),"
        " ('refund', true, 3.00), ('capture', false, 100.00), ('refund', false, 7.00))"
        " as t (movement_type, is_reporting_currency, amount)"
    )
    con.execute(
        "create table fct_orders as select * from (values"
        " (true, false, 1.0::double), (true, true, 3.0), (false, false, null), (false, true, 9.0))"
        " as t (is_converted, is_canceled, hours_created_to_shipped)"
    )

    def run(table: str, *names: str) -> dict[str, Any]:
        sql = ", ".join(layer.sql(name) for name in names)
        row = con.execute(f"select {sql} from {table}").fetchone()
        assert row is not None
        return dict(zip(names, row, strict=True))

    money = run("fct_payments", "gross_revenue", "refunds")
    assert money == {"gross_revenue": Decimal("15.00"), "refunds": Decimal("3.00")}
    assert layer.value("net_revenue", money) == Decimal("12.00")
    orders = run(
        "fct_orders",
        "orders",
        "orders_converted",
        "orders_canceled",
        "created_to_shipped_orders",
        "created_to_shipped_mean_hours",
        "created_to_shipped_p50_hours",
        "created_to_shipped_p90_hours",
    )
    assert orders == {
        "orders": 4,
        "orders_converted": 2,
        "orders_canceled": 2,
        "created_to_shipped_orders": 3,
        "created_to_shipped_mean_hours": 13 / 3,
        "created_to_shipped_p50_hours": 3.0,
        "created_to_shipped_p90_hours": 7.8,  # 3 + 0.8 x (9 - 3)
    }
    assert layer.value("conversion_rate", orders) == 0.5
    assert layer.value("canceled_rate", {"orders": 0, "orders_canceled": 0}) == 0.0
    assert layer.scope(["gross_revenue", "refunds"]) == (
        "(movement_type = 'capture' and is_reporting_currency = true)"
        " or (movement_type = 'refund' and is_reporting_currency = true)"
    )
    empty = con.execute(
        f"select {layer.sql('orders')}, {layer.sql('gross_revenue')} from fct_payments where false"
    ).fetchone()
    assert empty == (0, 0)


def test_metrics_render_to_the_dax_of_their_definition() -> None:
    layer = semantic_layer()
    assert layer.dax("orders") == "COUNTROWS(fct_orders)"
    assert layer.dax("gross_revenue") == (
        'ROUND(CALCULATE(SUM(fct_payments[amount]), fct_payments[movement_type] = "capture",'
        " fct_payments[is_reporting_currency] = TRUE()), 2)"
    )
    assert layer.dax("net_revenue") == "[Gross Revenue] - [Refunds]"
    assert layer.dax("restatements") == (
        "CALCULATE(COUNTROWS(figure_ledger), figure_ledger[is_restatement] = TRUE())"
    )
    assert layer.dax("conversion_rate") == "DIVIDE([Orders Converted], [Orders], 0)"
    assert layer.dax("created_to_shipped_p90_hours") == (
        "PERCENTILEX.INC(FILTER(fct_orders, NOT ISBLANK(fct_orders[hours_created_to_shipped])),"
        " fct_orders[hours_created_to_shipped], 0.9)"
    )


SPEC = """
semantic_models:
  - name: payments
    model: ref('fct_payments')
    defaults: {agg_time_dimension: movement_date}
    entities: [{name: payment, type: primary, expr: payment_event_id}]
    dimensions:
      - {name: movement_date, type: time, type_params: {time_granularity: day}}
      - {name: movement_type, type: categorical}
    measures:
      - {name: payment_amount, agg: sum, expr: amount}
metrics:
  - name: gross
    label: Gross
    type: simple
    type_params: {measure: payment_amount}
    filter: "{{ Dimension('payment__movement_type') }} = 'capture'"
    config: {meta: {unit: money}}
"""

REFUSED = {
    "aggregation": ("agg: sum", "agg: count_distinct", "agg 'count_distinct' is not one of"),
    "expression": ("expr: amount}", 'expr: "amount * 100"}', "expr 'amount * 100' is not a column"),
    "percentile": ("agg: sum, expr: amount}", "agg: percentile, expr: amount, agg_params:"
                   " {percentile: 0.5, use_discrete_percentile: true}}",
                   "only a continuous percentile"),
    "measure": ("{measure: payment_amount}", "{measure: amount}", "no measure 'amount'"),
    "filter shape": ("= 'capture'\"", "in ('capture')\"", "is not \"{{ Dimension"),
    "filter dimension": ("payment__movement_type", "payment__movement_kind",
                         "filter on payment__movement_kind, which is not a dimension"),
    "filter entity": ("payment__movement_type", "order__movement_type",
                      "filter on order__movement_type, which is not a dimension"),
    "unit": ("unit: money", "unit: dollars", "meta.unit 'dollars' is not one of"),
    "metric type": ("type: simple", "type: cumulative", "type 'cumulative' is not simple"),
}  # fmt: skip


def _spec(tmp_path: Path, text: str) -> Path:
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "spec.yml").write_text(text)
    return tmp_path


def test_a_valid_spec_reads(tmp_path: Path) -> None:
    layer = read_semantic_layer(_spec(tmp_path, SPEC))
    assert layer.sql("gross") == (
        "coalesce(sum(case when movement_type = 'capture' then amount end), 0)"
    )
    assert layer["gross"].day == "movement_date"


@pytest.mark.parametrize("what", sorted(REFUSED))
def test_what_cannot_be_rendered_exactly_is_refused(tmp_path: Path, what: str) -> None:
    old, new, message = REFUSED[what]
    assert old in SPEC
    with pytest.raises(SemanticError, match=re.escape(message)):
        read_semantic_layer(_spec(tmp_path, SPEC.replace(old, new, 1)))
