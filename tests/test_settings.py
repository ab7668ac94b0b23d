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
from tests.cli.run import cli, one_error_line

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
        "src/retail_pipeline/local/snowflake_emulator.py",
        # JAVA_HOME, not a setting of ours
        "src/retail_pipeline/local/kafka_broker.py",
        # Airflow's AIRFLOW_HOME and PATH for the local Airflow, and Cosmos's telemetry default
        "src/retail_pipeline/local/airflow.py",
        "src/retail_pipeline/orchestration/dbt.py",
        # Airflow's own AIRFLOW_CONN_<ID> (an unparsable one is refused, not taken as
        # undefined) and the RETAIL_KAFKA_CONFIG_* a task's Kafka connection replaces
        "src/retail_pipeline/orchestration/connections.py",
        # the local PostgreSQL's tools run without libpq's PG* variables of the caller
        "src/retail_pipeline/local/postgres.py",
    }
    readers = [
        call for path in SOURCES for call in _calls(path) if call.split(":")[0] not in allowed
    ]
    assert readers == []
    for path in SOURCES:
        text = path.read_text()
        if str(path.relative_to(ROOT)) != "src/retail_pipeline/settings.py":
            assert not re.search(r"\benvvar=", text), path
    emulator = (ROOT / "src/retail_pipeline/local/snowflake_emulator.py").read_text()
    assert len(_calls(ROOT / "src/retail_pipeline/local/snowflake_emulator.py")) == 1
    assert 'os.environ.setdefault("SNOWDUCK_DB_PATH", db_path)' in emulator


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


# -- every setting is checked: one line naming the variable, exit 1, nothing written ----------

BAD_SETTINGS = [
    ("RETAIL_DUCKDB_MEMORY", "banana"),
    ("RETAIL_DUCKDB_MEMORY", "0"),
    ("RETAIL_DUCKDB_MEMORY", "1KB"),
    ("RETAIL_DUCKDB_MEMORY", "1GB'; copy (select 42) to 'pwn.csv'; --"),
    ("RETAIL_DUCKDB_MEMORY", "99999999999999999999GB"),
    ("RETAIL_DUCKDB_MEMORY", "2TB"),
    ("RETAIL_DUCKDB_MEMORY", "NaN"),
    ("RETAIL_DUCKDB_MEMORY", "-1GB"),
    ("RETAIL_DUCKDB_MEMORY", "1GB\n"),
    ("RETAIL_DUCKDB_MEMORY", "\uff11GB"),  # a fullwidth digit one
    ("RETAIL_DUCKDB_MEMORY", "1GB\u202e"),
    ("RETAIL_BATCH_LAG", "NaN"),
    ("RETAIL_BATCH_LAG", "inf"),
    ("RETAIL_BATCH_LAG", "-1"),
    ("RETAIL_BATCH_LAG", "1e309"),
    ("RETAIL_KAFKA_CONNECT_TIMEOUT", "1e9"),
    ("RETAIL_RUN_BUILD_DELAY_SECONDS", "NaN"),
    ("RETAIL_RUN_BUILD_DELAY_SECONDS", "-1"),
    ("RETAIL_RUN_BUILD_DELAY_SECONDS", "3601"),
    ("RETAIL_VALIDATION_WORKERS", "99999999999999999999"),
    ("RETAIL_MAX_RECORD_BYTES", "0"),
    ("RETAIL_KAFKA_BOOTSTRAP", "broker"),
    ("RETAIL_KAFKA_BOOTSTRAP", "broker:0"),
    ("RETAIL_KAFKA_BOOTSTRAP", "broker:99999"),
    ("RETAIL_KAFKA_BOOTSTRAP", "bad host:9092"),
    ("RETAIL_KAFKA_BOOTSTRAP", "\u202ebroker:9092"),
    ("RETAIL_TOPIC_PREFIX", "prod/"),
    ("RETAIL_TOPIC_PREFIX", "caf\u00e9."),
    ("RETAIL_TOPIC_PREFIX", "p" * 201),
    ("RETAIL_API_URL", "ftp://127.0.0.1/"),
    ("RETAIL_API_URL", "http://127.0.0.1:8765/?limit=1"),
    ("RETAIL_API_URL", "127.0.0.1:8765"),
    ("RETAIL_WAREHOUSE", "wh\x1b[2J.duckdb"),
    ("RETAIL_LANDING_DIR", "landing\n"),
    ("RETAIL_DBT_PROJECT_DIR", "dbt\x07"),
    ("RETAIL_CHROMIUM", "--remote-debugging-port=1"),
    ("RETAIL_DBT_ENFORCE_CONTRACTS", "maybe"),
    ("RETAIL_DBT_DAG_TASKS", "cosmos"),
    ("RETAIL_TARGET", "duckdb; drop"),
    ("SNOWFLAKE_ROLE", "LOADER; drop role x"),
    ("SNOWFLAKE_WAREHOUSE", "WH-1"),
    ("SNOWFLAKE_DATABASE", 'RETAIL"'),
    ("SNOWFLAKE_SCHEMA", "9SILVER"),
    ("SNOWFLAKE_ACCOUNT", "acme eu"),
    ("SNOWFLAKE_HOST", "host/path"),
    ("SNOWFLAKE_LOGIN_TIMEOUT", "NaN"),
    ("SNOWFLAKE_THREADS", "1000000000"),
    ("SNOWFLAKE_CONNECT_RETRIES", "-1"),
]


@pytest.fixture(scope="module")
def events_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("events") / "events.ndjson"
    path.write_text('{"not": "an event"}\n')
    return path


@pytest.mark.parametrize(("name", "value"), BAD_SETTINGS)
def test_every_bad_setting_is_one_line_and_writes_nothing(
    name: str, value: str, tmp_path: Path, events_file: Path
) -> None:
    """``ingest`` would create the warehouse and open DuckDB writable: a bad value stops it
    first, in one line naming the variable, and no file appears (no injected COPY ran)."""
    result = cli(
        "ingest", events_file, warehouse=tmp_path / "wh.duckdb", cwd=tmp_path, **{name: value}
    )
    assert result.returncode == 1
    line = one_error_line(result, f"error: {name}=")
    assert "\x1b" not in line and "\u202e" not in line
    assert sorted(tmp_path.iterdir()) == []


SECRET_SETTINGS = [
    ("RETAIL_API_TOKEN", "tops3cret with space"),
    ("RETAIL_API_TOKEN", "tops3cret\r\nX-Injected: 1"),
    ("SNOWFLAKE_PASSWORD", "tops3cret\x1b]0;title\x07"),
    ("SNOWFLAKE_PRIVATE_KEY_PASSPHRASE", "tops3cret\n"),
    ("RETAIL_POSTGRES_DSN", "mysql://retail:tops3cret@127.0.0.1/retail"),
    ("RETAIL_POSTGRES_DSN", "host=127.0.0.1 password=tops3cret\nuser=x"),
    ("RETAIL_API_URL", "http://retail:tops3cret@127.0.0.1:8765/"),
]


@pytest.mark.parametrize(("name", "value"), SECRET_SETTINGS)
def test_a_bad_secret_is_named_never_shown(name: str, value: str, tmp_path: Path) -> None:
    result = cli("counts", warehouse=tmp_path / "wh.duckdb", cwd=tmp_path, **{name: value})
    one_error_line(result, f"error: {name}=")
    assert "tops3cret" not in result.stdout + result.stderr


def test_a_bad_setting_stops_every_command(tmp_path: Path, events_file: Path) -> None:
    """Checked before any command runs, so none can misread it later (or start a server)."""
    commands: list[tuple[str | Path, ...]] = [
        ("generate", "--days", "1", "--out", "sim"),
        ("schemas", "--out", "schemas"),
        ("counts",),
        ("status",),
        ("answers",),
        ("transform",),
        ("ingest", events_file),
        ("load-batch", "--customers", events_file),
        ("produce", events_file),
        ("dashboard", "--port", "0"),
        ("api-server", "--port", "0"),
        ("kafka", "status"),
        ("postgres", "status"),
        ("demo", "--workdir", "demo"),
    ]
    for command in commands:
        result = cli(
            *command, warehouse=tmp_path / "wh.duckdb", cwd=tmp_path, RETAIL_DUCKDB_MEMORY="0"
        )
        assert result.returncode == 1, command
        one_error_line(result, "error: RETAIL_DUCKDB_MEMORY='0': expected a size")
    assert sorted(tmp_path.iterdir()) == []
    helped = cli(
        "counts", "--help", warehouse=tmp_path / "wh.duckdb", cwd=tmp_path, RETAIL_DUCKDB_MEMORY="0"
    )
    assert helped.returncode == 0 and "Usage:" in helped.stdout, "help is still readable"


@pytest.mark.parametrize(
    ("value", "canonical", "size"),
    [
        ("768MB", "768MB", 768_000_000),
        ("1gb", "1GB", 10**9),
        ("1.50GiB", "1.5GiB", 3 << 29),
        ("0064MB", "64MB", 64_000_000),
        ("2 TiB", None, None),
        ("1TiB", "1TiB", 1 << 40),
    ],
)
def test_memory_is_parsed_to_a_canonical_size(
    value: str, canonical: str | None, size: int | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from retail_pipeline.settings import memory_bytes

    monkeypatch.setenv("RETAIL_DUCKDB_MEMORY", value)
    if canonical is None:
        with pytest.raises(PipelineError, match=r"^RETAIL_DUCKDB_MEMORY='2 TiB': .*64MB to 1TiB"):
            settings()
        return
    assert settings().duckdb_memory == canonical
    assert memory_bytes(canonical) == size


def test_the_memory_limit_reaches_duckdb(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("RETAIL_DUCKDB_MEMORY", "96MiB")
    with open_warehouse(tmp_path / "wh.duckdb") as wh:
        [(limit,)] = wh.query("select current_setting('memory_limit')")
    assert limit == "96.0 MiB"


def test_values_are_normalised(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RETAIL_KAFKA_BOOTSTRAP", " a:1, [::1]:9092 ,SSL://b_c.example:9093")
    monkeypatch.setenv("RETAIL_TOPIC_PREFIX", "prod-eu.1_")
    monkeypatch.setenv("RETAIL_DBT_ENFORCE_CONTRACTS", "No")
    got = settings()
    assert got.kafka_bootstrap == "a:1,[::1]:9092,SSL://b_c.example:9093"
    assert got.topic_prefix == "prod-eu.1_"
    assert got.dbt_enforce_contracts is False


def test_airflow_tasks_fail_in_one_line_without_the_secret(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A task reads the settings itself: its error (what the task log shows) is one line."""
    from retail_pipeline.orchestration import tasks

    monkeypatch.setenv("RETAIL_WAREHOUSE", str(tmp_path / "wh.duckdb"))
    monkeypatch.setenv("RETAIL_POSTGRES_DSN", "host=127.0.0.1 password=tops3cret\nuser=x")
    with pytest.raises(PipelineError) as raised:
        tasks.load_source_changes()
    message = str(raised.value)
    assert message.startswith("RETAIL_POSTGRES_DSN='host=127.0.0.1 user=x': control characters")
    assert "\n" not in message and "tops3cret" not in message
    monkeypatch.delenv("RETAIL_POSTGRES_DSN")
    monkeypatch.setenv("RETAIL_LANDING_DIR", str(tmp_path / "missing\u202e"))
    with pytest.raises(PipelineError, match="RETAIL_LANDING_DIR"):
        tasks.ingest_event_files()
