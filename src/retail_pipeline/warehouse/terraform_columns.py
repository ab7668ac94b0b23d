"""The Bronze tables for Terraform: ``terraform/modules/bronze_tables/tables.json``.

Terraform creates the Snowflake Bronze tables in production; their columns come from the same
definitions as :func:`retail_pipeline.warehouse.snowflake.create_statements` (the contract's
event and reference tables plus ``schema.sql``'s bookkeeping tables, each type spelt the
Snowflake way), written to a JSON file the ``bronze_tables`` module reads. A test fails when the
committed file differs from what this writes. Regenerate it with::

    python -m retail_pipeline.warehouse.terraform_columns
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from retail_pipeline.warehouse.base import SCHEMA_VERSION
from retail_pipeline.warehouse.snowflake import all_tables, snowflake_type

TABLES_JSON = Path("terraform/modules/bronze_tables/tables.json")
"""Where the file lives, relative to the repository root."""
COMMAND = "python -m retail_pipeline.warehouse.terraform_columns"


def terraform_tables() -> dict[str, Any]:
    """Every Bronze table with its columns (Snowflake names, types and nullability, in order),
    and the schema version the loader expects to find in ``_META``."""
    tables = {
        table.upper(): {
            "columns": [
                {"name": name.upper(), "type": snowflake_type(sql_type), "nullable": not required}
                for name, sql_type, required in columns
            ],
        }
        for table, columns in all_tables().items()
    }
    return {
        "comment": f"Generated from the event contract by `{COMMAND}`; do not edit.",
        "schema_version": SCHEMA_VERSION,
        "tables": tables,
    }


def render() -> str:
    """The file's text: plain JSON, one column per line so a contract change diffs readably."""
    spec = terraform_tables()
    tables = []
    for name, table in spec["tables"].items():
        columns = ",\n".join(f"        {json.dumps(column)}" for column in table["columns"])
        tables.append(f'    {json.dumps(name)}: {{\n      "columns": [\n{columns}\n      ]\n    }}')
    body = ",\n".join(tables)
    return (
        "{\n"
        f'  "comment": {json.dumps(spec["comment"])},\n'
        f'  "schema_version": {spec["schema_version"]},\n'
        f'  "tables": {{\n{body}\n  }}\n'
        "}\n"
    )


def main(argv: list[str] | None = None) -> int:
    """Write the file (or, with ``--check``, exit 1 when it is out of date)."""
    parser = argparse.ArgumentParser(prog=COMMAND, description=__doc__.splitlines()[0])
    parser.add_argument("path", nargs="?", type=Path, default=TABLES_JSON, help="%(default)s")
    parser.add_argument("--check", action="store_true", help="fail if the file is out of date")
    args = parser.parse_args(argv)
    text = render()
    path: Path = args.path
    if args.check:
        current = path.read_text() if path.is_file() else ""
        if current != text:
            print(f"{path} is out of date with the contract; run `{COMMAND}`", file=sys.stderr)
            return 1
        print(f"{path} matches the contract")
        return 0
    path.write_text(text)
    print(f"wrote {path} ({len(json.loads(text)['tables'])} tables)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
