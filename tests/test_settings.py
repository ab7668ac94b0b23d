"""One settings module reads the environment, and one seam opens the warehouse."""

from __future__ import annotations

import ast
import os
import re
from pathlib import Path

import pytest

from retail_pipeline.errors import PipelineError
from retail_pipeline.settings import Settings, settings
from retail_pipeline.warehouse import open_warehouse, resolve_target
from tests.test_cli import cli, one_error_line

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted((ROOT / "src" / "retail_pipeline").rglob("*.py"))


def test_every_variable_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    values = {
        "RETAIL_TARGET": "snowflake",
        "RETAIL_WAREHOUSE": "/tmp/x.duckdb",
        "RETAIL_DUCKDB_MEMORY": "1GB",
        "RETAIL_VALIDATION_WORKERS": "3",
        "RETAIL_KAFKA_BOOTSTRAP": "broker:9093",
        "RETAIL_TOPIC_PREFIX": "prod.",
        "RETAIL_KAFKA_CONNECT_TIMEOUT": "2.5",
        "RETAIL_KAFKA_HOME": "/tmp/kafka",
        "RETAIL_KAFKA_POM": "/tmp/pom.xml",
        "RETAIL_DBT_PROJECT_DIR": "/tmp/dbt",
        "SNOWFLAKE_ACCOUNT": "acme-eu1",
        "SNOWFLAKE_USER": "loader",
        "SNOWFLAKE_PRIVATE_KEY_PATH": "/secrets/key.p8",
        "SNOWFLAKE_PRIVATE_KEY_PASSPHRASE": "s3cret",
        "SNOWFLAKE_ROLE": "LOADER",
        "SNOWFLAKE_WAREHOUSE": "LOADING",
        "SNOWFLAKE_DATABASE": "RETAIL_DEV",
        "SNOWFLAKE_SCHEMA": "SILVER_DEV",
        "SNOWFLAKE_THREADS": "8",
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    got = settings()
    assert (got.target, got.warehouse, got.duckdb_memory) == (
        "snowflake",
        Path("/tmp/x.duckdb"),
        "1GB",
    )
    assert (got.validation_workers, got.kafka_bootstrap, got.topic_prefix) == (
        3,
        "broker:9093",
        "prod.",
    )
    assert got.kafka_connect_timeout == 2.5
    assert (got.kafka_home, got.kafka_pom, got.dbt_project_dir) == (
        Path("/tmp/kafka"),
        Path("/tmp/pom.xml"),
        Path("/tmp/dbt"),
    )
    sf = got.snowflake
    assert (
        sf.account,
        sf.user,
        sf.role,
        sf.warehouse,
        sf.database,
        sf.schema_name,
        sf.threads,
    ) == (
        "acme-eu1",
        "loader",
        "LOADER",
        "LOADING",
        "RETAIL_DEV",
        "SILVER_DEV",
        8,
    )
    args = sf.connect_args()
    assert args["private_key_file"] == "/secrets/key.p8"
    assert args["private_key_file_pwd"] == "s3cret"
    assert "password" not in args
    assert "s3cret" not in repr(got), "secrets never show in a repr or a log line"


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.startswith(("RETAIL_", "SNOWFLAKE_"))]:
        monkeypatch.delenv(name)
    got = Settings()
    assert (got.target, got.warehouse, got.kafka_bootstrap, got.topic_prefix) == (
        "duckdb",
        Path("data/warehouse.duckdb"),
        "127.0.0.1:9092",
        "",
    )
    assert got.kafka_connect_timeout == 10.0
    with pytest.raises(PipelineError, match="SNOWFLAKE_ACCOUNT"):
        got.snowflake.connect_args()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("RETAIL_TARGET", "oracle"),
        ("RETAIL_VALIDATION_WORKERS", "-1"),
        ("RETAIL_KAFKA_CONNECT_TIMEOUT", "0"),
        ("RETAIL_KAFKA_CONNECT_TIMEOUT", "soon"),
        ("SNOWFLAKE_PORT", "https"),
        ("SNOWFLAKE_THREADS", "0"),
    ],
)
def test_a_bad_value_is_one_line_naming_the_variable(name: str, value: str, tmp_path: Path) -> None:
    result = cli("counts", warehouse=tmp_path / "wh.duckdb", cwd=tmp_path, **{name: value})
    one_error_line(result, f"{name}={value!r}")


def test_target_from_flag_or_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RETAIL_TARGET", raising=False)
    assert resolve_target() == "duckdb"
    monkeypatch.setenv("RETAIL_TARGET", "snowflake")
    assert resolve_target() == "snowflake"
    assert resolve_target("duckdb") == "duckdb"
    with pytest.raises(PipelineError, match="unknown target 'db2'"):
        resolve_target("db2")


def test_snowflake_target_without_an_account_is_one_line(tmp_path: Path) -> None:
    for command in (("counts",), ("answers",), ("transform",)):
        result = cli(
            *command,
            "--target",
            "snowflake",
            warehouse=tmp_path / "wh.duckdb",
            cwd=tmp_path,
            SNOWFLAKE_ACCOUNT="",
            SNOWFLAKE_USER="",
        )
        one_error_line(result, "SNOWFLAKE_ACCOUNT")


def test_duckdb_path_comes_from_the_settings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("RETAIL_WAREHOUSE", str(tmp_path / "from-env.duckdb"))
    with open_warehouse() as wh:
        assert wh.describe() == f"warehouse {tmp_path / 'from-env.duckdb'}"
        assert wh.target == "duckdb"
        assert wh.dbt_env() == {"RETAIL_WAREHOUSE": str(tmp_path / "from-env.duckdb")}


def _calls(path: Path) -> list[str]:
    """``os.environ`` / ``os.getenv`` reads in a module (writes for a child process are fine)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Attribute) and node.attr in {"environ", "getenv"}:
            found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    return found


def test_only_the_settings_module_reads_the_environment() -> None:
    allowed = {
        "src/retail_pipeline/settings.py",
        # snowduck's own SNOWDUCK_DB_PATH, set before it is imported
        "src/retail_pipeline/warehouse/emulator.py",
        # JAVA_HOME, not a setting of ours
        "src/retail_pipeline/ingestion/kafka/broker.py",
        # Airflow's AIRFLOW_HOME and PATH for the local Airflow, and Cosmos's telemetry default
        "src/retail_pipeline/orchestration/local.py",
        "src/retail_pipeline/orchestration/dbt.py",
        # the local PostgreSQL's tools run without libpq's PG* variables of the caller
        "src/retail_pipeline/sources/postgres.py",
    }
    readers = [
        call for path in SOURCES for call in _calls(path) if call.split(":")[0] not in allowed
    ]
    assert readers == []
    for path in SOURCES:
        text = path.read_text()
        if str(path.relative_to(ROOT)) != "src/retail_pipeline/settings.py":
            assert not re.search(r"\benvvar=", text), path
    emulator = (ROOT / "src/retail_pipeline/warehouse/emulator.py").read_text()
    assert len(_calls(ROOT / "src/retail_pipeline/warehouse/emulator.py")) == 1
    assert 'os.environ.setdefault("SNOWDUCK_DB_PATH", db_path)' in emulator


def _implementation_uses(path: Path) -> list[str]:
    """Imports of a warehouse implementation module, and uses of its class names."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module in IMPLEMENTATIONS:
            found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
        if isinstance(node, ast.Name) and node.id in {"DuckDBWarehouse", "SnowflakeWarehouse"}:
            found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    return found


IMPLEMENTATIONS = {"retail_pipeline.warehouse.duckdb", "retail_pipeline.warehouse.snowflake"}


def test_nothing_outside_the_warehouse_package_names_an_implementation() -> None:
    package = ROOT / "src" / "retail_pipeline" / "warehouse"
    outside = [p for p in SOURCES if not p.is_relative_to(package)]
    offenders = [
        use
        for path in [*outside, *sorted((ROOT / "bench").glob("*.py"))]
        for use in _implementation_uses(path)
    ]
    assert offenders == []


def test_an_empty_variable_counts_as_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    """`source .env` and Docker's env files set a blank line's variable to "": the default."""
    from retail_pipeline.settings import settings

    for name in (
        "SNOWFLAKE_PRIVATE_KEY_PATH",
        "SNOWFLAKE_PORT",
        "RETAIL_KAFKA_CONNECT_TIMEOUT",
        "RETAIL_WAREHOUSE",
        "RETAIL_POSTGRES_DSN",
        "RETAIL_BATCH_LAG",
    ):
        monkeypatch.setenv(name, "")
    config = settings()
    assert config.snowflake.private_key_path is None and config.snowflake.port is None
    assert config.kafka_connect_timeout == 10.0 and config.batch_lag == 5.0
    assert str(config.warehouse) == "data/warehouse.duckdb" and config.postgres_dsn is None
