"""
### Bronze -> Silver -> Gold with dbt

Scheduled on the Bronze assets: a run starts once any Bronze table got new rows from the Kafka
or the batch DAG. Incremental models pick up what was ingested since the last build. The task
layout follows the target (`RETAIL_DBT_DAG_TASKS`, default `auto`):

- **DuckDB** (one file serialises every model): one task, `dbt_build`, runs the whole build
  in-process as `retail-pipeline transform` does. Its log has a line per dbt node (type, name,
  status, seconds); a failing model or test fails the task with one error naming each failing
  node and, for a test, the query of its failing rows. Its outlets are the Assets of the
  Silver and Gold models.
- **Snowflake** (models built in parallel): Cosmos renders one task per dbt model followed by
  that model's tests, so a failing data test fails the task `dbt.<model>_model_build`; its
  downstream models do not run. Cosmos emits an Asset per model it builds.

After the build, `health` fails when `retail-pipeline health` says error, and `gold_deadline`
(which runs even when the build failed) fails when Bronze rows have waited for Gold longer than
`RETAIL_GOLD_DEADLINE_MINUTES`. Every task that fails for good posts an alert to
`RETAIL_ALERT_WEBHOOK` naming the DAG, task, run and first failing dbt test.

Every task holds a slot of the `retail_warehouse` pool (one slot for a DuckDB file: builds and
loads take turns). See docs/airflow.md and docs/operations.md.
"""

from datetime import datetime

from airflow.sdk import dag, task

from retail_pipeline.orchestration import TAGS, dbt
from retail_pipeline.orchestration.assets import ANY_BRONZE_UPDATE
from retail_pipeline.orchestration.checks import check_gold_deadline, check_pipeline_health
from retail_pipeline.orchestration.connections import CONNECTION_IDS, connections
from retail_pipeline.orchestration.notifier import ALERTING_ARGS

CONNECTIONS = CONNECTION_IDS  # or this DAG's own ids, e.g. {**CONNECTION_IDS, "snowflake": ...}
SNOWFLAKE = CONNECTIONS["snowflake"]


@dag(
    schedule=ANY_BRONZE_UPDATE,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args={**ALERTING_ARGS, "retries": 1},
    tags=[*TAGS, "dbt", "transform"],
    doc_md=__doc__,
    params=dbt.dag_params(),
)
def retail_dbt_dag():
    if dbt.dag_layout() == "build":

        @task(outlets=dbt.model_assets(snowflake_conn_id=SNOWFLAKE))
        def dbt_build(params=None, ti=None) -> dict:
            with connections(ids=CONNECTIONS):
                return dbt.build_project(all_tests=bool((params or {}).get("all_tests")), ti=ti)

        build = dbt_build()
    else:
        from cosmos import DbtTaskGroup

        build = DbtTaskGroup(group_id="dbt", **dbt.task_group_args(snowflake_conn_id=SNOWFLAKE))

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
