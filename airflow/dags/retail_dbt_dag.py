"""
### Bronze -> Silver -> Gold with dbt, through Cosmos

Scheduled on the Bronze assets: a run starts once any Bronze table got new rows from the Kafka
or the batch DAG. Cosmos renders one task per dbt model followed by that model's tests, so a
failing data test fails the task `dbt.<model>.test` and names the model; its downstream models
do not run. Incremental models pick up what was ingested since the last build.

Every task holds a slot of the `retail_warehouse` pool (one slot for a DuckDB file: builds and
loads take turns). The profile comes from `retail_pipeline.orchestration.dbt` (target
`RETAIL_TARGET`; `RETAIL_WAREHOUSE` or `SNOWFLAKE_*`). See docs/airflow.md.
"""

from datetime import datetime

from airflow.sdk import dag
from cosmos import DbtTaskGroup

from retail_pipeline.orchestration import DEFAULT_ARGS, TAGS
from retail_pipeline.orchestration.assets import ANY_BRONZE_UPDATE
from retail_pipeline.orchestration.dbt import task_group_args


@dag(
    schedule=ANY_BRONZE_UPDATE,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args={**DEFAULT_ARGS, "retries": 1},
    tags=[*TAGS, "dbt", "transform"],
    doc_md=__doc__,
)
def retail_dbt_dag():
    DbtTaskGroup(group_id="dbt", **task_group_args())


retail_dbt_dag()
