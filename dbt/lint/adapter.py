"""`adapter` for sqlfluff's jinja templater (dbt/.sqlfluff `library_path`), not used by dbt.

sqlfluff renders the models without dbt, so `adapter.dispatch(...)` in the macros has no
adapter behind it; this stand-in picks the `duckdb__` variant (sqlfluff lints the DuckDB
dialect), then `default__`, the order dbt-duckdb dispatches in.
"""

from __future__ import annotations

from typing import Any

from jinja2 import pass_context
from jinja2.runtime import Context


@pass_context
def dispatch(context: Context, macro_name: str, macro_namespace: str | None = None) -> Any:
    """The macro dbt-duckdb's adapter.dispatch would return for `macro_name`."""
    for prefix in ("duckdb__", "default__"):
        macro = context.get(prefix + macro_name)
        if macro is not None:
            return macro
    raise LookupError(f"no duckdb__{macro_name} or default__{macro_name} macro")
