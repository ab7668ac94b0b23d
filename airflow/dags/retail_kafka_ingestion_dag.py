"""
### Kafka -> Bronze, in bounded micro-batches

Every five minutes one task consumes the `orders`, `payments` and `shipments` topics into Bronze
until it has caught up with the end offsets it saw at start, or for at most `max_seconds`,
whichever comes first (`retail-pipeline ingest --kafka --until-caught-up --max-seconds N`).

Exactly once across overlapping or retried runs: the consumer resumes from the offsets stored in
the warehouse in the same transaction as the rows; `max_active_runs=1` and the one-slot
`retail_warehouse` pool keep a second writer off the DuckDB file. When nothing new arrived the
task is skipped, so the Bronze assets (and the dbt DAG) only hear of new rows.
The broker and its client properties come from the Airflow connection `retail_kafka` (and
the warehouse from `retail_snowflake` on that target), else the environment. See docs/airflow.md.
"""

from datetime import datetime, timedelta

from airflow.sdk import Param, dag, task
from airflow.sdk.exceptions import AirflowSkipException

from retail_pipeline.orchestration import TAGS
from retail_pipeline.orchestration.assets import EVENT_ASSETS
from retail_pipeline.orchestration.connections import CONNECTION_IDS, connections
from retail_pipeline.orchestration.notifier import ALERTING_ARGS
from retail_pipeline.orchestration.tasks import KAFKA_GROUP, consume_kafka

CONNECTIONS = CONNECTION_IDS  # or this DAG's own ids, e.g. {**CONNECTION_IDS, "kafka": "msk"}


@dag(
    schedule=timedelta(minutes=5),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args=ALERTING_ARGS,
    tags=[*TAGS, "ingestion", "kafka"],
    doc_md=__doc__,
    params={
        "max_seconds": Param(240, type="number", minimum=1, description="time budget per run"),
        "group": Param(KAFKA_GROUP, type="string", description="Kafka consumer group"),
    },
)
def retail_kafka_ingestion_dag():
    @task(outlets=EVENT_ASSETS, execution_timeout=timedelta(minutes=10))
    def consume_micro_batch(params=None) -> dict:
        with connections("kafka", ids=CONNECTIONS):
            summary = consume_kafka(params["max_seconds"], group=params["group"])
        if not summary["read"]:
            raise AirflowSkipException("no new messages")
        return summary

    consume_micro_batch()


retail_kafka_ingestion_dag()
