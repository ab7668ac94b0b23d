"""The Power BI project (PBIP) on the Snowflake Gold tables, generated from the dbt models.

``python -m retail_pipeline.dashboard.powerbi [OUT]`` (``make powerbi``) writes ``powerbi/``:

- ``RetailPipeline.SemanticModel``: a TMDL semantic model. Its tables and columns are the Gold
  star schema's, read from ``dbt/models/gold/**/*.yml`` (names and data types), so the model
  cannot drift from Gold: the tests regenerate it and compare. Each table is a DirectQuery
  partition on ``<database>.GOLD.<TABLE>`` in Snowflake (parameters in ``expressions.tmdl``).
  The DAX measures are generated from dbt's semantic layer (``dbt/models/gold/semantic/``,
  rendered by ``transform.semantic``): one per metric, named by its label, so they state the
  metrics the dashboard computes too. Relationships follow the star schema.
- ``RetailPipeline.Report``: a PBIR report with one page per business question.

Each item folder holds the ``.platform`` file Fabric Git integration reads (item type, name and
a stable logical id).

Nothing here talks to Power BI or Snowflake; ``check_project`` is the structural check CI runs.
"""

from __future__ import annotations

import json
import re
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from retail_pipeline.settings import layer_schema
from retail_pipeline.transform.semantic import semantic_layer

NAME = "RetailPipeline"
NAMESPACE = uuid.UUID("5b0f7c36-2a7e-4c1e-9d55-0d2f3e8f6a11")
GOLD_MODELS = (
    "fct_orders",
    "fct_order_items",
    "fct_payments",
    "dim_date",
    "dim_customers",
    "dim_products",
    "dim_payment_methods",
    "dim_carriers",
    "dim_order_statuses",
    "figure_ledger",  # the restatement ledger: no relationship, its own page
)
SORT_BY = {("dim_order_statuses", "order_status"): "status_order"}
"""Columns shown in another column's order (statuses in lifecycle order, not by name)."""
TMDL_TYPES = {
    "varchar": "string",
    "date": "dateTime",
    "timestamp with time zone": "dateTime",
    "integer": "int64",
    "bigint": "int64",
    "double": "double",
    "boolean": "boolean",
}
SCHEMA_URL = "https://developer.microsoft.com/json-schemas/fabric"
PAGE_WIDTH, PAGE_HEIGHT = 1280, 720


@dataclass(frozen=True)
class Measure:
    """One DAX measure, kept on the table it aggregates."""

    table: str
    name: str
    expression: str
    format: str
    description: str


@dataclass(frozen=True)
class Relationship:
    """A many-to-one relationship ``from_table[from_column] -> to_table[to_column]``."""

    from_table: str
    from_column: str
    to_table: str
    to_column: str
    active: bool = True


RELATIONSHIPS = (
    Relationship("fct_orders", "order_date", "dim_date", "date_day"),
    Relationship("fct_orders", "customer_id", "dim_customers", "customer_id"),
    Relationship("fct_orders", "payment_method", "dim_payment_methods", "payment_method"),
    Relationship("fct_orders", "carrier", "dim_carriers", "carrier"),
    Relationship("fct_orders", "order_status", "dim_order_statuses", "order_status"),
    Relationship("fct_order_items", "order_id", "fct_orders", "order_id"),
    Relationship("fct_order_items", "product_id", "dim_products", "product_id"),
    # Revenue is dated by the money movement (cash basis), so payments meet dim_date directly;
    # the path through the order would make two routes to dim_date, so it is inactive (use it
    # with USERELATIONSHIP to slice revenue by customer, payment method or carrier).
    Relationship("fct_payments", "movement_date", "dim_date", "date_day"),
    Relationship("fct_payments", "order_id", "fct_orders", "order_id", active=False),
)


FORMATS = {"count": "#,0", "fraction": "0.00%", "money": r"\$#,0.00", "hours": "#,0.0"}
"""The format string of a measure, by its metric's ``meta.unit``."""


def measures(dbt_dir: Path) -> tuple[Measure, ...]:
    """The DAX measures: one per metric of dbt's semantic layer (``dbt/models/gold/semantic``),
    named by its label, on its fact table, with the DAX the spec renders to."""
    layer = semantic_layer(dbt_dir)
    return tuple(
        Measure(
            metric.table, metric.label, layer.dax(name), FORMATS[metric.unit], metric.description
        )
        for name, metric in layer.metrics.items()
    )


@dataclass
class Column:
    name: str
    data_type: str
    description: str = ""


@dataclass
class Table:
    name: str
    description: str
    columns: list[Column] = field(default_factory=list)


def gold_tables(dbt_dir: Path) -> dict[str, Table]:
    """The Gold models' documented columns (name, data type, description) from dbt's YAML."""
    tables: dict[str, Table] = {}
    for path in sorted((dbt_dir / "models" / "gold").rglob("*.yml")):
        for model in yaml.safe_load(path.read_text()).get("models", []):
            tables[model["name"]] = Table(
                model["name"],
                " ".join(str(model.get("description", "")).split()),
                [
                    Column(
                        column["name"],
                        str(column.get("data_type", "")).lower(),
                        " ".join(str(column.get("description", "")).split()),
                    )
                    for column in model.get("columns", [])
                ],
            )
    return tables


def _tmdl_type(data_type: str) -> str:
    if data_type.startswith("decimal"):
        return "decimal"
    try:
        return TMDL_TYPES[data_type]
    except KeyError:
        raise ValueError(f"no TMDL data type for dbt data_type {data_type!r}") from None


def _tag(*parts: str) -> str:
    return str(uuid.uuid5(NAMESPACE, "/".join(parts)))


def _name(name: str) -> str:
    """A TMDL object name, quoted when it is not a plain identifier."""
    return (
        name
        if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name)
        else "'" + name.replace("'", "''") + "'"
    )


def _description(text: str, indent: str) -> list[str]:
    return [f"{indent}/// {text}"] if text else []


def _table_tmdl(table: Table, measures: list[Measure]) -> str:
    lines = [*_description(table.description, ""), f"table {table.name}"]
    lines += [f"\tlineageTag: {_tag(table.name)}", ""]
    for measure in measures:
        lines += _description(measure.description, "\t")
        lines.append(f"\tmeasure {_name(measure.name)} = {measure.expression}")
        lines.append(f"\t\tformatString: {measure.format}")
        lines.append(f"\t\tlineageTag: {_tag(table.name, 'measure', measure.name)}")
        lines.append("")
    for column in table.columns:
        kind = _tmdl_type(column.data_type)
        lines += _description(column.description, "\t")
        lines.append(f"\tcolumn {_name(column.name)}")
        lines.append(f"\t\tdataType: {kind}")
        if kind == "dateTime":
            lines.append(
                "\t\tformatString: yyyy-mm-dd"
                if column.data_type == "date"
                else "\t\tformatString: yyyy-mm-dd hh:nn:ss"
            )
        elif kind == "decimal":
            lines.append("\t\tformatString: #,0.00##")
        lines.append(f"\t\tlineageTag: {_tag(table.name, column.name)}")
        if (table.name, column.name) in SORT_BY:
            lines.append(f"\t\tsortByColumn: {SORT_BY[table.name, column.name]}")
        lines.append("\t\tsummarizeBy: none")
        lines.append(f"\t\tsourceColumn: {column.name.upper()}")
        lines.append("")
    lines.append(f"\tpartition {table.name} = m")
    lines.append("\t\tmode: directQuery")
    lines.append("\t\tsource =")
    schema = layer_schema("gold").upper()  # GOLD in production (docs/transform.md#environments)
    m_query = [
        "let",
        "    Source = Snowflake.Databases(SnowflakeAccount, SnowflakeWarehouse),",
        '    Database = Source{[Name = SnowflakeDatabase, Kind = "Database"]}[Data],',
        f'    Gold = Database{{[Name = "{schema}", Kind = "Schema"]}}[Data],',
        f'    Rows = Gold{{[Name = "{table.name.upper()}", Kind = "Table"]}}[Data]',
        "in",
        "    Rows",
    ]
    lines += [f"\t\t\t\t{line}" for line in m_query]
    lines.append("")
    return "\n".join(lines)


EXPRESSIONS = (
    (
        "SnowflakeAccount",
        "xy12345.eu-west-1.snowflakecomputing.com",
        "Snowflake server (account URL host).",
    ),
    ("SnowflakeWarehouse", "REPORTING", "The virtual warehouse the reporting role uses."),
    (
        "SnowflakeDatabase",
        "RETAIL",
        "The database that holds the GOLD schema (SNOWFLAKE_DATABASE).",
    ),
)


def semantic_model(tables: dict[str, Table], measures: tuple[Measure, ...]) -> dict[str, str]:
    """The TMDL files of the semantic model, by path under ``<NAME>.SemanticModel/``."""
    missing = [name for name in GOLD_MODELS if name not in tables]
    if missing:
        raise ValueError(f"dbt has no Gold model {missing[0]} (expected in dbt/models/gold)")
    files: dict[str, str] = {
        "definition.pbism": json.dumps(
            {
                "$schema": (
                    f"{SCHEMA_URL}/item/semanticModel/definitionProperties/1.0.0/schema.json"
                ),
                "version": "4.2",
                "settings": {},
            },
            indent=2,
        )
        + "\n",
        "definition/database.tmdl": "database\n\tcompatibilityLevel: 1600\n",
        "definition/model.tmdl": "\n".join(
            [
                "model Model",
                "\tculture: en-US",
                "\tdefaultPowerBIDataSourceVersion: powerBI_V3",
                "\tsourceQueryCulture: en-US",
                "\tdataAccessOptions",
                "\t\tlegacyRedirects",
                "\t\treturnErrorValuesAsNull",
                "",
                *(f"ref table {name}" for name in GOLD_MODELS),
                "",
                "ref cultureInfo en-US",
                "",
            ]
        ),
        "definition/cultures/en-US.tmdl": "cultureInfo en-US\n",
        "definition/expressions.tmdl": "\n".join(
            line
            for name, value, about in EXPRESSIONS
            for line in (
                f"/// {about}",
                f'expression {name} = "{value}" meta [IsParameterQuery = true, Type = "Text",'
                " IsParameterQueryRequired = true]",
                f"\tlineageTag: {_tag('expression', name)}",
                "",
            )
        ),
        "definition/relationships.tmdl": "\n".join(
            line
            for rel in RELATIONSHIPS
            for line in (
                f"relationship {_tag('relationship', rel.from_table, rel.from_column)}",
                *(["\tisActive: false"] if not rel.active else []),
                f"\tfromColumn: {rel.from_table}.{rel.from_column}",
                f"\ttoColumn: {rel.to_table}.{rel.to_column}",
                "",
            )
        ),
    }
    for name in GOLD_MODELS:
        files[f"definition/tables/{name}.tmdl"] = _table_tmdl(
            tables[name], [m for m in measures if m.table == name]
        )
    return files


# -- the report ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ref:
    """A field a visual shows: a column of a table, or a measure (``table`` None: the table
    is the one its metric is computed on)."""

    name: str
    table: str | None = None


@dataclass(frozen=True)
class Visual:
    """One visual of a report page, before the measures' tables are known."""

    name: str
    kind: str
    roles: dict[str, list[Ref]]
    box: tuple[int, int, int, int]
    title: str
    sort: Ref | None = None


def _column(table: str, name: str) -> Ref:
    return Ref(name, table)


def _measure(name: str) -> Ref:
    return Ref(name)


def _visual(
    name: str,
    kind: str,
    roles: dict[str, list[Ref]],
    box: tuple[int, int, int, int],
    title: str,
    sort: Ref | None = None,
) -> Visual:
    return Visual(name, kind, roles, box, title, sort)


def _field(ref: Ref, owners: dict[str, str]) -> tuple[dict[str, Any], str]:
    """A visual's field and its table; a measure's table from ``owners`` (name -> table)."""
    if ref.table is not None:
        kind, table = "Column", ref.table
    elif ref.name in owners:
        kind, table = "Measure", owners[ref.name]
    else:
        raise ValueError(
            f"the report shows measure [{ref.name}], but no metric of dbt's semantic layer"
            " has that label"
        )
    return {kind: {"Expression": {"SourceRef": {"Entity": table}}, "Property": ref.name}}, table


def _projection(ref: Ref, owners: dict[str, str]) -> dict[str, Any]:
    field, table = _field(ref, owners)
    return {"field": field, "queryRef": f"{table}.{ref.name}", "nativeQueryRef": ref.name}


def _render(visual: Visual, owners: dict[str, str]) -> dict[str, Any]:
    x, y, width, height = visual.box
    body: dict[str, Any] = {
        "visualType": visual.kind,
        "query": {
            "queryState": {
                role: {"projections": [_projection(ref, owners) for ref in refs]}
                for role, refs in visual.roles.items()
            }
        },
        "visualContainerObjects": {
            "title": [
                {
                    "properties": {
                        "show": {"expr": {"Literal": {"Value": "true"}}},
                        "text": {"expr": {"Literal": {"Value": f"'{visual.title}'"}}},
                    }
                }
            ]
        },
        "drillFilterOtherVisuals": True,
    }
    if visual.sort is not None:
        body["query"]["sortDefinition"] = {
            "sort": [{"field": _field(visual.sort, owners)[0], "direction": "Descending"}],
            "isDefaultSort": False,
        }
    return {
        "$schema": f"{SCHEMA_URL}/item/report/definition/visualContainer/2.0.0/schema.json",
        "name": visual.name,
        "position": {"x": x, "y": y, "z": 0, "width": width, "height": height, "tabOrder": 0},
        "visual": body,
    }


def _cards(prefix: str, names: list[str], y: int = 16) -> list[Visual]:
    width = (PAGE_WIDTH - 32 - 16 * (len(names) - 1)) // len(names)
    return [
        _visual(
            f"{prefix}_card{index}",
            "card",
            {"Values": [_measure(name)]},
            (16 + index * (width + 16), y, width, 120),
            name,
        )
        for index, name in enumerate(names)
    ]


DAY = _column("dim_date", "date_day")
STATUS = _column("dim_order_statuses", "order_status")  # sorted by status_order
BODY = (16, 152, PAGE_WIDTH - 32, PAGE_HEIGHT - 168)
PAGES: tuple[tuple[str, str, list[Visual]], ...] = (
    (
        "orders_per_day",
        "1 Orders per day",
        [
            *_cards("orders", ["Orders"]),
            _visual(
                "orders_line",
                "lineChart",
                {"Category": [DAY], "Y": [_measure("Orders")]},
                BODY,
                "Orders per day (by order date, UTC)",
            ),
        ],
    ),
    (
        "revenue",
        "2 Revenue (USD)",
        [
            *_cards("revenue", ["Gross Revenue", "Refunds", "Net Revenue"]),
            _visual(
                "revenue_line",
                "lineChart",
                {
                    "Category": [DAY],
                    "Y": [_measure("Gross Revenue"), _measure("Refunds"), _measure("Net Revenue")],
                },
                BODY,
                "Revenue per day, cash basis (USD)",
            ),
        ],
    ),
    (
        "conversion",
        "3 Conversion rate",
        [
            *_cards("conversion", ["Conversion Rate", "Orders Converted", "Orders"]),
            _visual(
                "conversion_line",
                "lineChart",
                {"Category": [DAY], "Y": [_measure("Conversion Rate")]},
                BODY,
                "Conversion rate by order date",
            ),
        ],
    ),
    (
        "top_products",
        "4 Top products",
        [
            *_cards("products", ["Product Revenue", "Units Sold"]),
            _visual(
                "products_bar",
                "clusteredBarChart",
                {
                    "Category": [_column("dim_products", "product_name")],
                    "Y": [_measure("Product Revenue")],
                },
                (16, 152, 760, PAGE_HEIGHT - 168),
                "Product revenue (USD)",
                sort=_measure("Product Revenue"),
            ),
            _visual(
                "products_table",
                "tableEx",
                {
                    "Values": [
                        _column("dim_products", "product_id"),
                        _column("dim_products", "product_name"),
                        _column("dim_products", "category"),
                        _measure("Units Sold"),
                        _measure("Product Revenue"),
                    ]
                },
                (792, 152, PAGE_WIDTH - 808, PAGE_HEIGHT - 168),
                "Top products",
                sort=_measure("Product Revenue"),
            ),
        ],
    ),
    (
        "cancel_refund",
        "5 Canceled or refunded",
        [
            *_cards("cancel", ["Canceled or Refunded Rate", "Canceled Rate", "Refunded Rate"]),
            _visual(
                "status_bar",
                "clusteredBarChart",
                {"Category": [STATUS], "Y": [_measure("Orders")]},
                BODY,
                "Orders by current status",
            ),
        ],
    ),
    (
        "lead_times",
        "6 Fulfillment lead times",
        [
            *_cards(
                "lead",
                [
                    "Created to Shipped P50 Hours",
                    "Shipped to Delivered P50 Hours",
                    "Created to Delivered P50 Hours",
                ],
            ),
            _visual(
                "lead_table",
                "tableEx",
                {
                    "Values": [
                        _measure(f"{segment} {stat}")
                        for segment in (
                            "Created to Shipped",
                            "Shipped to Delivered",
                            "Created to Delivered",
                        )
                        for stat in ("Orders", "Mean Hours", "P50 Hours", "P90 Hours")
                    ]
                },
                BODY,
                "Lead times (hours)",
            ),
        ],
    ),
    (
        "restatements",
        "7 Restatements",
        [
            *_cards("restatements", ["Restatements"]),
            _visual(
                "restatements_bar",
                "clusteredBarChart",
                {"Category": [_column("figure_ledger", "figure")], "Y": [_measure("Restatements")]},
                (16, 152, 400, PAGE_HEIGHT - 168),
                "Restatements by figure",
                sort=_measure("Restatements"),
            ),
            # The measure hides the ledger's first publications: a row where it is blank (no
            # restatement) is not shown.
            _visual(
                "restatements_table",
                "tableEx",
                {
                    "Values": [
                        *(
                            _column("figure_ledger", name)
                            for name in (
                                "recorded_at",
                                "figure",
                                "figure_key",
                                "previous_value",
                                "figure_value",
                                "delta",
                                "cause_loads",
                            )
                        ),
                        _measure("Restatements"),
                    ]
                },
                (432, 152, PAGE_WIDTH - 448, PAGE_HEIGHT - 168),
                "Published figures that changed: old, new, delta and the loads that caused it",
                sort=_column("figure_ledger", "recorded_at"),
            ),
        ],
    ),
)


def report(measures: tuple[Measure, ...]) -> dict[str, str]:
    """The PBIR files of the report, by path under ``<NAME>.Report/``."""
    owners = {measure.name: measure.table for measure in measures}

    def dump(data: object) -> str:
        return json.dumps(data, indent=2) + "\n"

    files = {
        "definition.pbir": dump(
            {
                "$schema": f"{SCHEMA_URL}/item/report/definitionProperties/2.0.0/schema.json",
                "version": "4.0",
                "datasetReference": {"byPath": {"path": f"../{NAME}.SemanticModel"}},
            }
        ),
        "definition/version.json": dump(
            {
                "$schema": f"{SCHEMA_URL}/item/report/definition/versionMetadata/1.0.0/schema.json",
                "version": "2.0.0",
            }
        ),
        "definition/report.json": dump(
            {
                "$schema": f"{SCHEMA_URL}/item/report/definition/report/3.0.0/schema.json",
                "themeCollection": {},
            }
        ),
        "definition/pages/pages.json": dump(
            {
                "$schema": f"{SCHEMA_URL}/item/report/definition/pagesMetadata/1.0.0/schema.json",
                "pageOrder": [name for name, _, _ in PAGES],
                "activePageName": PAGES[0][0],
            }
        ),
    }
    for name, title, visuals in PAGES:
        files[f"definition/pages/{name}/page.json"] = dump(
            {
                "$schema": f"{SCHEMA_URL}/item/report/definition/page/2.0.0/schema.json",
                "name": name,
                "displayName": title,
                "displayOption": "FitToPage",
                "height": PAGE_HEIGHT,
                "width": PAGE_WIDTH,
            }
        )
        for visual in visuals:
            files[f"definition/pages/{name}/visuals/{visual.name}/visual.json"] = dump(
                _render(visual, owners)
            )
    return files


ITEM_TYPES = ("Report", "SemanticModel")
"""Fabric's item types; each item's folder is ``<NAME>.<type>``."""


def platform_file(item_type: str) -> str:
    """The ``.platform`` file Fabric Git integration expects in an item folder.

    Its ``logicalId`` is a UUID5 of the folder's name, so regenerating changes nothing and a
    workspace synced from Git keeps recognising the item.
    """
    return (
        json.dumps(
            {
                "$schema": f"{SCHEMA_URL}/gitIntegration/platformProperties/2.0.0/schema.json",
                "metadata": {"type": item_type, "displayName": NAME},
                "config": {"version": "2.0", "logicalId": _tag("platform", f"{NAME}.{item_type}")},
            },
            indent=2,
        )
        + "\n"
    )


def project_files(dbt_dir: Path) -> dict[str, str]:
    """Every file of the PBIP project, by path under ``powerbi/``."""
    files = {
        f"{NAME}.pbip": json.dumps(
            {
                "$schema": f"{SCHEMA_URL}/pbip/pbipProperties/1.0.0/schema.json",
                "version": "1.0",
                "artifacts": [{"report": {"path": f"{NAME}.Report"}}],
                "settings": {"enableAutoRecovery": True},
            },
            indent=2,
        )
        + "\n",
        ".gitignore": "**/.pbi/localSettings.json\n**/.pbi/cache.abf\n",
    }
    generated = measures(dbt_dir)
    model = semantic_model(gold_tables(dbt_dir), generated)
    files.update({f"{NAME}.SemanticModel/{p}": t for p, t in model.items()})
    files.update({f"{NAME}.Report/{p}": t for p, t in report(generated).items()})
    files.update({f"{NAME}.{kind}/.platform": platform_file(kind) for kind in ITEM_TYPES})
    return files


def write_project(out: Path, dbt_dir: Path) -> list[Path]:
    """Write the project under ``out``, removing files an earlier generation left behind."""
    files = project_files(dbt_dir)
    for stale in sorted(out.rglob("*"), reverse=True) if out.exists() else []:
        relative = stale.relative_to(out).as_posix()
        if stale.is_file() and relative not in files:
            stale.unlink()
        elif stale.is_dir() and not any(stale.iterdir()):
            stale.rmdir()
    written = []
    for relative, text in files.items():
        path = out / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> None:
    """``python -m retail_pipeline.dashboard.powerbi [OUT]`` (default ``powerbi/``)."""
    from retail_pipeline.transform import project_dir

    args = sys.argv[1:] if argv is None else argv
    out = Path(args[0]) if args else Path("powerbi")
    written = write_project(out, project_dir())
    print(f"wrote {len(written)} files of the Power BI project to {out}/")


if __name__ == "__main__":
    main()
