"""The Docker stack's first start (docs/docker.md): a DuckDB warehouse with Silver and Gold built.

The dashboard reads Gold and refuses a warehouse that has none, and Airflow's first runs should
not race a build. So on the first start, before either of them, this creates the empty
warehouse (``RETAIL_WAREHOUSE``, on the ``warehouse`` volume) and runs ``retail-pipeline
transform`` on it: Silver and Gold exist, with no rows, until the loaders bring some. On every
later start it finds Gold and changes nothing (nor does it wait for a task that holds the file).
On the Snowflake target (``RETAIL_TARGET=snowflake``) there is nothing to do: Terraform and
``transform --target snowflake`` build that warehouse.
"""

from __future__ import annotations

import os
import sys

from retail_pipeline.errors import PipelineError
from retail_pipeline.settings import settings
from retail_pipeline.transform.answers import status_of
from retail_pipeline.warehouse import open_warehouse


def main() -> int:
    """Create and build the warehouse unless Gold is there; 0 when nothing is left to do."""
    try:
        config = settings()
        if config.target != "duckdb":
            print(f"warehouse: target {config.target}, nothing to create")
            return 0
        path = config.warehouse
        if not path.exists():
            open_warehouse(path).close()
            print(f"warehouse: created {path}")
        else:
            try:
                with open_warehouse(path, read_only=True) as warehouse:
                    built_at = status_of(warehouse).built_at
            except PipelineError as exc:  # a loader or dbt holds the file: the stack runs
                print(f"warehouse: {path} in use, not checked ({exc})")
                return 0
            if built_at is not None:
                print(f"warehouse: {path}, Gold built at {built_at:%Y-%m-%d %H:%M:%S} UTC")
                return 0
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"warehouse: building Silver and Gold in {path}")
    sys.stdout.flush()
    os.execvp("retail-pipeline", ["retail-pipeline", "transform"])


if __name__ == "__main__":
    sys.exit(main())
