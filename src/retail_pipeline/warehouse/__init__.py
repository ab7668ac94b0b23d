"""The warehouse seam: :func:`open_warehouse` opens the one the settings name.

Everything outside this package talks to a :class:`~retail_pipeline.warehouse.base.Warehouse`
and never names an implementation: ``duckdb`` (the embedded default, one file) or
``snowflake`` (``SNOWFLAKE_*`` settings). The target comes from ``--target`` where a command
has it, else ``RETAIL_TARGET``.
"""

from __future__ import annotations

import importlib
import os

from retail_pipeline.errors import PipelineError
from retail_pipeline.settings import TARGETS, settings
from retail_pipeline.warehouse.base import Warehouse

__all__ = ["Warehouse", "open_warehouse", "resolve_target"]


def resolve_target(target: str | None = None) -> str:
    """``target`` if given, else ``RETAIL_TARGET`` (default ``duckdb``); checked."""
    chosen = target or settings().target
    if chosen not in TARGETS:
        raise PipelineError(f"unknown target {chosen!r}: expected one of {', '.join(TARGETS)}")
    return chosen


def open_warehouse(
    path: str | os.PathLike[str] | None = None,
    *,
    target: str | None = None,
    read_only: bool = False,
    exclusive: bool = True,
    missing_hint: str = "load something first",
) -> Warehouse:
    """Open the warehouse of ``target``.

    ``path`` is the DuckDB file (default ``RETAIL_WAREHOUSE``); a Snowflake warehouse is named by
    the ``SNOWFLAKE_*`` settings instead. ``read_only`` never creates or changes anything (a
    missing DuckDB file is refused with ``missing_hint``). ``exclusive=False`` lets several
    processes take turns writing one DuckDB file (see ``DuckDBWarehouse``).
    """
    chosen = resolve_target(target)
    if chosen == "snowflake":
        if path is not None:
            raise PipelineError("--warehouse names a DuckDB file; the snowflake target has none")
        config = settings().snowflake
        connect_args = config.connect_args()  # says which settings are missing, first
        # Imported by name: the connector is an optional extra (`pip install '.[snowflake]'`).
        module = importlib.import_module("retail_pipeline.warehouse.snowflake")
        warehouse: Warehouse = module.SnowflakeWarehouse(
            connect_args, database=config.database, read_only=read_only
        )
        return warehouse
    from retail_pipeline.warehouse.duckdb import DuckDBWarehouse

    return DuckDBWarehouse(
        path, read_only=read_only, exclusive=exclusive, missing_hint=missing_hint
    )
