"""What the Airflow DAGs in ``airflow/dags/`` run: the DAG files hold orchestration only.

- :mod:`~retail_pipeline.orchestration.tasks`: the task bodies (a bounded Kafka micro-batch,
  the landing folder's snapshots and event files), plain Python without Airflow.
- :mod:`~retail_pipeline.orchestration.assets`: the Bronze tables as Airflow ``Asset`` objects,
  the ingestion DAGs' outlets and the dbt DAG's schedule.
- :mod:`~retail_pipeline.orchestration.dbt`: the dbt DAG's task layout per target, its
  ``dbt_build`` task (the in-process build) and outlets, and the one place the Cosmos
  configuration (project, profile, manifest) comes from.
- :mod:`~retail_pipeline.orchestration.alerts`: what an alert posts to ``RETAIL_ALERT_WEBHOOK``
  and how (never raising); :mod:`~retail_pipeline.orchestration.notifier`: the Airflow 3
  notifier every task has as ``on_failure_callback``.
- :mod:`~retail_pipeline.orchestration.checks`: the dbt DAG's ``health`` and ``gold_deadline``.
- :mod:`~retail_pipeline.orchestration.connections`: the Airflow Connections (Snowflake,
  Postgres, Kafka, the API) a task's body runs with, as the package's settings.
- :mod:`~retail_pipeline.local.airflow`: ``retail-pipeline airflow up`` / ``down``.

Only ``assets``, ``notifier``, ``dbt`` and ``connections.lookup`` import Airflow (the
``[airflow]`` extra); the rest works without it.
See docs/airflow.md.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from retail_pipeline.settings import settings

WAREHOUSE_POOL = "retail_warehouse"
"""The Airflow pool every task that writes (or builds in) the warehouse runs in. One slot for a
DuckDB file, which admits one writer process at a time; a Snowflake deployment may raise it."""
WAREHOUSE_POOL_SLOTS = 1

TAGS = ["retail"]
"""Tags every DAG of the project carries (each DAG adds its own)."""

DEFAULT_ARGS: dict[str, Any] = {
    "owner": "retail",
    "retries": 2,
    "retry_delay": timedelta(seconds=settings().task_retry_delay),  # RETAIL_TASK_RETRY_DELAY
    "retry_exponential_backoff": True,
    "pool": WAREHOUSE_POOL,
}
"""Task defaults of the three DAGs: every task touches the warehouse, so all share its pool."""
