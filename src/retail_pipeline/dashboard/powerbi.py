"""The Power BI project (PBIP) on the Snowflake Gold tables, generated from the dbt models.

``python -m retail_pipeline.dashboard.powerbi [OUT]`` (``make powerbi``) writes ``powerbi/``:

- ``RetailPipeline.SemanticModel``: a TMDL semantic model. Its tables and columns are the Gold
  star schema's, read from ``dbt/models/gold/**/*.yml`` (names and data types), so the model
  cannot drift from Gold: the tests regenerate it and compare. Each table is a DirectQuery
  partition on ``<database>.GOLD.<TABLE>`` in Snowflake (parameters in ``expressions.tmdl``).
  The DAX measures state docs/metrics.md's definitions; relationships follow the star schema.
- ``RetailPipeline.Report``: a PBIR report with one page per business question.

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
)
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
    Relationship("fct_order_items", "order_id", "fct_orders", "order_id"),
    Relationship("fct_order_items", "product_id", "dim_products", "product_id"),
    # Revenue is dated by the money movement (cash basis), so payments meet dim_date directly;
    # the path through the order would make two routes to dim_date, so it is inactive (use it
    # with USERELATIONSHIP to slice revenue by customer, payment method or carrier).
    Relationship("fct_payments", "movement_date", "dim_date", "date_day"),
    Relationship("fct_payments", "order_id", "fct_orders", "order_id", active=False),
)


def _count(condition: str) -> str:
    return f"CALCULATE(COUNTROWS(fct_orders), fct_orders[{condition}] = TRUE())"


def _lead(segment: str, label: str) -> list[Measure]:
    column = f"fct_orders[hours_{segment}]"
    reached = f"FILTER(fct_orders, NOT ISBLANK({column}))"
    why = f"{label} in hours; only orders that reached the later milestone count"
    return [
        Measure("fct_orders", f"{label} Orders", f"COUNT({column})", "#,0", why),
        Measure("fct_orders", f"{label} Mean Hours", f"AVERAGE({column})", "#,0.0", why),
        Measure(
            "fct_orders",
            f"{label} P50 Hours",
            f"PERCENTILEX.INC({reached}, {column}, 0.5)",
            "#,0.0",
            why + " (median, continuous interpolation like percentile_cont)",
        ),
        Measure(
            "fct_orders",
            f"{label} P90 Hours",
            f"PERCENTILEX.INC({reached}, {column}, 0.9)",
            "#,0.0",
            why + " (continuous interpolation like percentile_cont)",
        ),
    ]


MONEY = r"\$#,0.00"


def _cash(movement: str) -> str:
    """Payments of one movement type in the reporting currency, summed, rounded once."""
    return (
        "ROUND(CALCULATE(SUM(fct_payments[amount]),"
        f' fct_payments[movement_type] = "{movement}",'
        " fct_payments[is_reporting_currency] = TRUE()), 2)"
    )


PERCENT = "0.00%"
MEASURES = (
    Measure(
        "fct_orders", "Orders", "COUNTROWS(fct_orders)", "#,0", "Orders created (by order date)."
    ),
    Measure(
        "fct_orders",
        "Orders Converted",
        _count("is_converted"),
        "#,0",
        "Orders with at least one payment_captured.",
    ),
    Measure(
        "fct_orders",
        "Conversion Rate",
        "DIVIDE([Orders Converted], [Orders], 0)",
        PERCENT,
        "Orders converted / orders created; over several days it is the ratio of the sums,"
        " not a mean of daily rates.",
    ),
    Measure(
        "fct_orders",
        "Orders Canceled",
        _count("is_canceled"),
        "#,0",
        "Orders with an order_canceled.",
    ),
    Measure(
        "fct_orders",
        "Orders Refunded",
        _count("is_refunded"),
        "#,0",
        "Orders with a payment_refunded.",
    ),
    Measure(
        "fct_orders",
        "Orders Canceled or Refunded",
        _count("is_canceled_or_refunded"),
        "#,0",
        "Orders with either.",
    ),
    Measure(
        "fct_orders",
        "Canceled Rate",
        "DIVIDE([Orders Canceled], [Orders], 0)",
        PERCENT,
        "Orders canceled / orders created.",
    ),
    Measure(
        "fct_orders",
        "Refunded Rate",
        "DIVIDE([Orders Refunded], [Orders], 0)",
        PERCENT,
        "Orders refunded / orders created.",
    ),
    Measure(
        "fct_orders",
        "Canceled or Refunded Rate",
        "DIVIDE([Orders Canceled or Refunded], [Orders], 0)",
        PERCENT,
        "Orders canceled or refunded / orders created.",
    ),
    *_lead("created_to_shipped", "Created to Shipped"),
    *_lead("shipped_to_delivered", "Shipped to Delivered"),
    *_lead("created_to_delivered", "Created to Delivered"),
    Measure(
        "fct_payments",
        "Gross Revenue",
        _cash("capture"),
        MONEY,
        "Cash basis: sum of payment_captured amounts in USD by the capture's date, exact,"
        " rounded to cents once.",
    ),
    Measure(
        "fct_payments",
        "Refunds",
        _cash("refund"),
        MONEY,
        "Sum of payment_refunded amounts in USD by the refund's date.",
    ),
    Measure(
        "fct_payments",
        "Net Revenue",
        "[Gross Revenue] - [Refunds]",
        MONEY,
        "Gross revenue - refunds (USD).",
    ),
    Measure(
        "fct_order_items",
        "Product Revenue",
        "ROUND(CALCULATE(SUM(fct_order_items[line_amount]),"
        " fct_order_items[is_revenue_eligible] = TRUE()), 2)",
        MONEY,
        "Sum of quantity x unit_price over the latest basket of orders captured and neither"
        " canceled nor refunded, in USD; exact, rounded to cents once.",
    ),
    Measure(
        "fct_order_items",
        "Units Sold",
        "CALCULATE(SUM(fct_order_items[quantity]), fct_order_items[is_revenue_eligible] = TRUE())",
        "#,0",
        "Units in the baskets that count as product revenue.",
    ),
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


def _table_tmdl(table: Table) -> str:
    lines = [*_description(table.description, ""), f"table {table.name}"]
    lines += [f"\tlineageTag: {_tag(table.name)}", ""]
    for measure in (m for m in MEASURES if m.table == table.name):
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
        lines.append("\t\tsummarizeBy: none")
        lines.append(f"\t\tsourceColumn: {column.name.upper()}")
        lines.append("")
    lines.append(f"\tpartition {table.name} = m")
    lines.append("\t\tmode: directQuery")
    lines.append("\t\tsource =")
    m_query = [
        "let",
        "    Source = Snowflake.Databases(SnowflakeAccount, SnowflakeWarehouse),",
        '    Database = Source{[Name = SnowflakeDatabase, Kind = "Database"]}[Data],',
        '    Gold = Database{[Name = "GOLD", Kind = "Schema"]}[Data],',
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


def semantic_model(tables: dict[str, Table]) -> dict[str, str]:
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
        files[f"definition/tables/{name}.tmdl"] = _table_tmdl(tables[name])
    return files


# -- the report ------------------------------------------------------------------------------


def _field(table: str, name: str) -> dict[str, Any]:
    kind = "Measure" if any(m.name == name and m.table == table for m in MEASURES) else "Column"
    return {
        "field": {kind: {"Expression": {"SourceRef": {"Entity": table}}, "Property": name}},
        "queryRef": f"{table}.{name}",
        "nativeQueryRef": name,
    }


def _measure(name: str) -> tuple[str, str]:
    return next(m.table for m in MEASURES if m.name == name), name


def _visual(
    name: str,
    kind: str,
    roles: dict[str, list[tuple[str, str]]],
    box: tuple[int, int, int, int],
    title: str,
    sort: tuple[str, str] | None = None,
) -> dict[str, Any]:
    x, y, width, height = box
    visual: dict[str, Any] = {
        "visualType": kind,
        "query": {
            "queryState": {
                role: {"projections": [_field(table, column) for table, column in fields]}
                for role, fields in roles.items()
            }
        },
        "visualContainerObjects": {
            "title": [
                {
                    "properties": {
                        "show": {"expr": {"Literal": {"Value": "true"}}},
                        "text": {"expr": {"Literal": {"Value": f"'{title}'"}}},
                    }
                }
            ]
        },
        "drillFilterOtherVisuals": True,
    }
    if sort is not None:
        table, column = sort
        kind_key = "Measure" if any(m.name == column for m in MEASURES) else "Column"
        visual["query"]["sortDefinition"] = {
            "sort": [
                {
                    "field": {
                        kind_key: {
                            "Expression": {"SourceRef": {"Entity": table}},
                            "Property": column,
                        }
                    },
                    "direction": "Descending",
                }
            ],
            "isDefaultSort": False,
        }
    return {
        "$schema": f"{SCHEMA_URL}/item/report/definition/visualContainer/2.0.0/schema.json",
        "name": name,
        "position": {"x": x, "y": y, "z": 0, "width": width, "height": height, "tabOrder": 0},
        "visual": visual,
    }


def _cards(prefix: str, measures: list[str], y: int = 16) -> list[dict[str, Any]]:
    width = (PAGE_WIDTH - 32 - 16 * (len(measures) - 1)) // len(measures)
    return [
        _visual(
            f"{prefix}_card{index}",
            "card",
            {"Values": [_measure(name)]},
            (16 + index * (width + 16), y, width, 120),
            name,
        )
        for index, name in enumerate(measures)
    ]


DAY = ("dim_date", "date_day")
BODY = (16, 152, PAGE_WIDTH - 32, PAGE_HEIGHT - 168)
PAGES: tuple[tuple[str, str, list[dict[str, Any]]], ...] = (
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
                    "Category": [("dim_products", "product_name")],
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
                        ("dim_products", "product_id"),
                        ("dim_products", "product_name"),
                        ("dim_products", "category"),
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
                {"Category": [("fct_orders", "order_status")], "Y": [_measure("Orders")]},
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
)


def report() -> dict[str, str]:
    """The PBIR files of the report, by path under ``<NAME>.Report/``."""

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
            files[f"definition/pages/{name}/visuals/{visual['name']}/visual.json"] = dump(visual)
    return files


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
    files.update(
        {f"{NAME}.SemanticModel/{p}": t for p, t in semantic_model(gold_tables(dbt_dir)).items()}
    )
    files.update({f"{NAME}.Report/{p}": t for p, t in report().items()})
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
