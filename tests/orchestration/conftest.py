"""Fixtures of the Airflow tests: one metadata database per session, DAG runs in subprocesses.

Airflow is imported only in child processes (``run_dags.py``, ``airflow standalone``), never in
the pytest process, whose logging and settings it would otherwise take over for the rest of
the session. When Airflow cannot run here (the ``[airflow]`` extra missing, a database that
does not migrate) the tests are skipped with the reason, except under ``CI=true``, where they
fail: CI must never skip them silently.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import urllib.parse
from pathlib import Path
from typing import Any, NoReturn

import pytest

from tests.services import unavailable

REPO = Path(__file__).resolve().parents[2]
DAGS_FOLDER = REPO / "airflow" / "dags"
SEED_DAG_IDS = {"retail_kafka_ingestion_dag", "retail_batch_ingestion_dag", "retail_dbt_dag"}


def airflow_unavailable(reason: str) -> NoReturn:
    """Skip the test because Airflow cannot run here, or fail it under CI."""
    unavailable("Airflow", "Airflow tests", reason)


@pytest.fixture(scope="session")
def airflow_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The environment of Airflow processes: a migrated SQLite metadata DB of the session's own."""
    for module in ("airflow.sdk", "cosmos"):
        if importlib.util.find_spec(module.split(".")[0]) is None:
            airflow_unavailable(f"{module} is not installed (pip install -e '.[airflow]')")
    home = tmp_path_factory.mktemp("airflow-home")
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__PARALLELISM": "2",
        "AIRFLOW__COSMOS__ENABLE_TELEMETRY": "False",
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
    }
    for name in (
        "RETAIL_WAREHOUSE",
        "RETAIL_TARGET",
        "RETAIL_DBT_PROJECT_DIR",
        "RETAIL_DBT_TARGET_DIR",
        "RETAIL_LANDING_DIR",
    ):
        env.pop(name, None)
    airflow = Path(sys.executable).parent / "airflow"
    try:
        subprocess.run(
            [str(airflow), "db", "migrate"],
            env=env,
            check=True,
            capture_output=True,
            timeout=300,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        detail = getattr(exc, "stderr", b"") or b""
        airflow_unavailable(f"airflow db migrate failed: {exc} {detail.decode()[-2000:]}")
    return env


CREDENTIAL_VARIABLES = (
    "RETAIL_API_URL",
    "RETAIL_API_TOKEN",
    "RETAIL_POSTGRES_DSN",
    "RETAIL_KAFKA_BOOTSTRAP",
    "RETAIL_KAFKA_CONFIG_FILE",
)
"""What the Airflow connections of :func:`connection_env` replace: unset for the DAGs."""


def connection_env(
    *, api_url: str, api_token: str, postgres_dsn: str, kafka_bootstrap: str
) -> tuple[dict[str, str], list[str]]:
    """``AIRFLOW_CONN_RETAIL_API``, ``_POSTGRES`` and ``_KAFKA`` (Airflow's JSON form) for the
    reference API, a test database of the Postgres fixtures (its password read out of the
    passfile its DSN names: the connection names no passfile) and a broker; and the secrets
    they hold (to look for in logs)."""
    api = urllib.parse.urlsplit(api_url)
    dsn = urllib.parse.urlsplit(postgres_dsn)
    passfile = urllib.parse.parse_qs(dsn.query)["passfile"][0]
    password = Path(passfile).read_text().strip().rsplit(":", 1)[1]
    connections = {
        "RETAIL_API": {
            "conn_type": "http",
            "host": api.hostname,
            "port": api.port,
            "schema": api.scheme,
            "password": api_token,
        },
        "RETAIL_POSTGRES": {
            "conn_type": "postgres",
            "host": dsn.hostname,
            "port": dsn.port,
            "login": dsn.username,
            "password": password,
            "schema": dsn.path.lstrip("/"),
        },
        "RETAIL_KAFKA": {
            "conn_type": "kafka",
            "extra": {"bootstrap.servers": kafka_bootstrap, "client.id": "retail-airflow"},
        },
    }
    env = {f"AIRFLOW_CONN_{name}": json.dumps(value) for name, value in connections.items()}
    return env, [api_token, password]


def run_dags(
    env: dict[str, str], runs: list[dict[str, Any]], *, timeout: float = 600
) -> dict[str, Any]:
    """Parse the DAG folder and ``dag.test()`` each of ``runs`` in a fresh interpreter."""
    spec = json.dumps({"dags_folder": str(DAGS_FOLDER), "runs": runs})
    done = subprocess.run(
        [sys.executable, "-m", "tests.orchestration.run_dags", spec],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode or not lines:
        pytest.fail(
            f"run_dags exited {done.returncode}:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}",
            pytrace=False,
        )
    result: dict[str, Any] = json.loads(lines[-1].removeprefix("RESULT "))
    result["log"] = done.stdout + done.stderr
    return result
