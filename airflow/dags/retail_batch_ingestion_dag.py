"""
### Batch sources -> Bronze: reference snapshots, the API and Postgres, and event files

Loads the customer and product snapshots that arrived in the landing folder
(`RETAIL_LANDING_DIR`, default `data/landing`, or the run's `source_dir`) under
`snapshots/<YYYY-MM-DD>/`, oldest first; then the customers and products that changed since the
last run in the HTTP API and Postgres of the Airflow connections `retail_api` and
`retail_postgres` (else `RETAIL_API_URL`, `RETAIL_POSTGRES_DSN`), when set; then the NDJSON
event files under `events/`. Every loader is idempotent (a snapshot loaded before is skipped by
its content hash; the API and Postgres resume from the window, and event files from the byte
offset, stored in the warehouse with the rows), so reruns and retries load nothing twice. A
task that found nothing new is skipped and announces no Bronze asset (the next still runs:
`none_failed`). See docs/airflow.md and docs/batch-sources.md.
"""

from datetime import datetime, timedelta

from airflow.sdk import Param, dag, task
from airflow.sdk.exceptions import AirflowSkipException

from retail_pipeline.orchestration import TAGS
from retail_pipeline.orchestration.assets import EVENT_ASSETS, REFERENCE_ASSETS
from retail_pipeline.orchestration.connections import CONNECTION_IDS, connections
from retail_pipeline.orchestration.notifier import ALERTING_ARGS
from retail_pipeline.orchestration.tasks import (
    ingest_event_files,
    load_reference_snapshots,
    load_source_changes,
)

CONNECTIONS = CONNECTION_IDS  # or this DAG's own ids, e.g. {**CONNECTION_IDS, "api": "crm_api"}


def _loaded_something(summary: dict) -> dict:
    if not summary["read"]:
        raise AirflowSkipException("nothing new in the landing folder")
    return summary


@dag(
    schedule="@hourly",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args=ALERTING_ARGS,
    tags=[*TAGS, "ingestion", "batch"],
    doc_md=__doc__,
    params={"source_dir": Param("", type="string", description="landing folder (default: env)")},
)
def retail_batch_ingestion_dag():
    @task(outlets=REFERENCE_ASSETS, execution_timeout=timedelta(minutes=30))
    def load_snapshots(params=None) -> dict:
        with connections(ids=CONNECTIONS):
            return _loaded_something(load_reference_snapshots(params["source_dir"] or None))

    @task(
        outlets=REFERENCE_ASSETS,
        execution_timeout=timedelta(minutes=30),
        trigger_rule="none_failed",
    )
    def load_api_and_postgres() -> dict:
        with connections("api", "postgres", ids=CONNECTIONS):
            return _loaded_something(load_source_changes())

    @task(outlets=EVENT_ASSETS, execution_timeout=timedelta(minutes=30), trigger_rule="none_failed")
    def load_event_files(params=None) -> dict:
        with connections(ids=CONNECTIONS):
            return _loaded_something(ingest_event_files(params["source_dir"] or None))

    load_snapshots() >> load_api_and_postgres() >> load_event_files()


retail_batch_ingestion_dag()
