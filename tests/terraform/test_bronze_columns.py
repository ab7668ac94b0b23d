"""The Bronze tables Terraform creates are the ones the pipeline's own Snowflake DDL creates:
``tables.json`` is generated from the contract, and agrees with ``create_statements``."""

from __future__ import annotations

import json
import re
from pathlib import Path

from retail_pipeline.warehouse import terraform_columns
from retail_pipeline.warehouse.base import SCHEMA_VERSION
from retail_pipeline.warehouse.snowflake import SCHEMA, create_statements
from tests.terraform.config import REPO, TERRAFORM

TABLES_JSON = TERRAFORM / "modules" / "bronze_tables" / "tables.json"


def test_tables_json_is_generated_from_the_contract() -> None:
    assert REPO / terraform_columns.TABLES_JSON == TABLES_JSON
    assert TABLES_JSON.read_text() == terraform_columns.render(), (
        f"{TABLES_JSON.relative_to(REPO)} is out of date with the event contract;"
        f" regenerate it: `{terraform_columns.COMMAND}` (make tf-columns) and commit it"
    )


def ddl_tables(database: str = "RETAIL") -> dict[str, list[tuple[str, str, bool]]]:
    """(name, type, not null) of every column of every table in the Snowflake DDL, as written."""
    prefix = re.escape(f"{database}.{SCHEMA}.")
    tables = {}
    for statement in create_statements(database):
        match = re.fullmatch(rf"create table if not exists {prefix}(\w+) \((.*)\)", statement, re.S)
        if not match:
            assert statement.startswith("create schema"), statement
            continue
        columns = []
        for part in re.split(r",(?![^()]*\))", match[2]):
            if part.strip().lower().startswith("primary key"):
                continue  # a table constraint; its columns are declared not null
            column = re.fullmatch(r"\s*(\w+) ([A-Z_]+(?:\(\d+,\d+\))?)(.*)", part, re.S)
            assert column, part
            rest = column[3].lower()
            columns.append(
                (column[1].upper(), column[2], "not null" in rest or "primary key" in rest)
            )
        tables[match[1].upper()] = columns
    return tables


def test_tables_json_matches_the_snowflake_ddl() -> None:
    spec = json.loads(TABLES_JSON.read_text())
    terraform = {
        table: [(c["name"], c["type"], not c["nullable"]) for c in body["columns"]]
        for table, body in spec["tables"].items()
    }
    ddl = ddl_tables()
    assert set(terraform) == set(ddl)
    for table, columns in ddl.items():
        assert terraform[table] == columns, table
    assert spec["schema_version"] == SCHEMA_VERSION
    assert {"_META", "DEAD_LETTER", "_POSITIONS", "_LOADS", "ORDER_EVENTS"} <= set(ddl)


def test_generator_check_mode(tmp_path: Path) -> None:
    path = tmp_path / "tables.json"
    assert terraform_columns.main(["--check", str(path)]) == 1
    assert terraform_columns.main([str(path)]) == 0
    assert terraform_columns.main(["--check", str(path)]) == 0
    assert path.read_text() == TABLES_JSON.read_text()
