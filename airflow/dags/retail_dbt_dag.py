"""
### Bronze -> Silver -> Gold with dbt, through Cosmos

Scheduled on the Bronze assets: a run starts once any Bronze table got new rows from the Kafka
or the batch DAG. Cosmos renders one task per dbt model followed by that model's tests, so a
failing data test fails the task `dbt.<model>.test` and names the model; its downstream models
do not run. Incremental models pick up what was ingested since the last build.

After the build, `health` fails when `retail-pipeline health` says error, and `gold_deadline`
(which runs even when the build failed) fails when Bronze rows have waited for Gold longer than
`RETAIL_GOLD_DEADLINE_MINUTES`. Every task that fails for good posts an alert to
`RETAIL_ALERT_WEBHOOK` naming the DAG, task, run and first failing dbt test. Cosmos emits an
Asset per Silver and Gold model it builds.

Every task holds a slot of the `retail_warehouse` pool (one slot for a DuckDB file: builds and
loads take turns). The profile comes from `retail_pipeline.orchestration.dbt` (target
`RETAIL_TARGET`; `RETAIL_WAREHOUSE`, or the Airflow connection `retail_snowflake` as a Cosmos
profile mapping, else `SNOWFLAKE_*`). See docs/airflow.md and
docs/operations.md.
"""

from datetime import datetime

from airflow.sdk import dag, task
from cosmos import DbtTaskGroup

from retail_pipeline.orchestration import TAGS
from retail_pipeline.orchestration.assets import ANY_BRONZE_UPDATE
from retail_pipeline.orchestration.checks import check_gold_deadline, check_pipeline_health
from retail_pipeline.orchestration.connections import CONNECTION_IDS, connections
from retail_pipeline.orchestration.dbt import task_group_args
from retail_pipeline.orchestration.notifier import ALERTING_ARGS

CONNECTIONS = CONNECTION_IDS  # or this DAG's own ids, e.g. {**CONNECTION_IDS, "snowflake": ...}


@dag(
    schedule=ANY_BRONZE_UPDATE,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args={**ALERTING_ARGS, "retries": 1},
    tags=[*TAGS, "dbt", "transform"],
    doc_md=__doc__,
)
def retail_dbt_dag():
    build = DbtTaskGroup(
        group_id="dbt", **task_group_args(snowflake_conn_id=CONNECTIONS["snowflake"])
    )

    @task
    def health() -> dict:
        with connections(ids=CONNECTIONS):
            return check_pipeline_health()

    @task(trigger_rule="all_done")
    def gold_deadline() -> dict:
        with connections(ids=CONNECTIONS):
            return check_gold_deadline()

    build >> [health(), gold_deadline()]


retail_dbt_dag()
