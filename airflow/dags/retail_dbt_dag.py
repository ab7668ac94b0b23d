"""
### Bronze -> Silver -> Gold with dbt

Scheduled on the Bronze assets. Incremental models take what was ingested since the last build;
data tests read what it wrote (param `all_tests`: every row). Per target (`RETAIL_DBT_DAG_TASKS`):

- **DuckDB**: one task, `dbt_build`, as `retail-pipeline transform` runs it, a log line per dbt
  node, one error naming the failing ones; its outlets are the Silver and Gold models' Assets.
- **Snowflake**: `dbt_plan` skips the run when nothing is new, else Cosmos runs a task per model
  and its tests (a failing one fails `dbt.<model>_model_build`); `dbt_record` signs the build.

Then `health` and `gold_deadline` (Bronze waiting for Gold; runs after a failed build too). A
failed task alerts `RETAIL_ALERT_WEBHOOK`. See docs/airflow.md, transform.md, operations.md.
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

        @task.short_circuit(task_id=dbt.PLAN_TASK, ignore_downstream_trigger_rules=False)
        def dbt_plan(params=None) -> dict:
            with connections(ids=CONNECTIONS):
                return dbt.plan_models_build(all_tests=bool((params or {}).get("all_tests")))

        @task
        def dbt_record(plan: dict) -> dict:
            with connections(ids=CONNECTIONS):
                return dbt.record_models_build(plan)

        plan = dbt_plan()
        build = DbtTaskGroup(group_id="dbt", **dbt.task_group_args(snowflake_conn_id=SNOWFLAKE))
        plan >> build >> dbt_record(plan)

    @task(trigger_rule="none_failed")  # runs when nothing was new (the model tasks skipped)
    def health() -> dict:
        with connections(ids=CONNECTIONS):
            return check_pipeline_health()

    @task(trigger_rule="all_done")
    def gold_deadline() -> dict:
        with connections(ids=CONNECTIONS):
            return check_gold_deadline()

    build >> [health(), gold_deadline()]


retail_dbt_dag()
