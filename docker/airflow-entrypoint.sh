#!/bin/sh
# The Airflow container (docs/docker.md): what `retail-pipeline airflow up` does on a laptop
# (src/retail_pipeline/local/airflow.py), in the foreground. The AIRFLOW__* settings come
# from docker/compose.yml; AIRFLOW_HOME (SQLite metadata, logs, the login) is the airflow-home
# volume.
set -eu

# The dbt manifest the dbt DAG renders, before the scheduler parses it (dbt parse, a few seconds).
python -c 'from retail_pipeline.orchestration.dbt import ensure_manifest; ensure_manifest()'

airflow db migrate

# The pool every task of the three DAGs runs in (one writer at a time for a DuckDB file).
pool=$(python -c 'from retail_pipeline.orchestration import WAREHOUSE_POOL as p; print(p)')
slots=$(python -c 'from retail_pipeline.orchestration import WAREHOUSE_POOL_SLOTS as s; print(s)')
airflow pools set "$pool" "$slots" "writers of the warehouse: one at a time for a DuckDB file"

# The login: user admin with AIRFLOW_ADMIN_PASSWORD from the env file when it is set; otherwise a
# generated one (kept across restarts), in $AIRFLOW_HOME/simple_auth_manager_passwords.json.generated,
# mode 0600 from its creation, never printed (as `retail-pipeline airflow up` does).
python -c 'import os; from pathlib import Path; from retail_pipeline.local.airflow import ensure_login
ensure_login(Path(os.environ["AIRFLOW_HOME"]), os.environ.get("AIRFLOW_ADMIN_PASSWORD") or None)'

exec airflow standalone
