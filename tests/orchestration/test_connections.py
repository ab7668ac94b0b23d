"""Airflow Connections as the pipeline's settings (``orchestration.connections``).

The conversions are checked on plain objects shaped like Airflow's ``Connection``; the lookup
(``AIRFLOW_CONN_*`` in Airflow's JSON form, a missing id, a malformed one) and Cosmos's
Snowflake profile mapping run through real Airflow and Cosmos in one child process (Airflow is
never imported into the pytest process, see conftest.py).
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from retail_pipeline.errors import PipelineError
from retail_pipeline.kafka_config import property_name
from retail_pipeline.orchestration import connections as conns
from retail_pipeline.settings import environment, settings
from tests.orchestration.conftest import REPO

SECRET = "s3cr#t/p@ss word"
TOKEN = "t0k3n-0f-the-api"


@dataclass
class Conn:
    conn_type: str
    conn_id: str = "retail_test"
    host: str | None = None
    schema: str | None = None
    login: str | None = None
    password: str | None = None
    port: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def extra_dejson(self) -> dict[str, Any]:
        return self.extra


def settings_of(resolved: conns.Resolved | None) -> Any:
    assert resolved is not None
    conns.check(resolved)
    with environment(**resolved.variables):
        return settings()


def test_postgres_connection_is_a_quoted_dsn() -> None:
    conn = Conn("postgres", host="db.internal", port=5433, login="retail", password=SECRET)
    conn.schema, conn.extra = "retail db", {"sslmode": "require", "connect_timeout": 5}
    dsn = settings_of(conns.postgres_variables(conn)).postgres_dsn.get_secret_value()
    assert dsn == (
        "postgresql://retail:s3cr%23t%2Fp%40ss%20word@db.internal:5433/retail%20db"
        "?sslmode=require&connect_timeout=5"
    )
    import psycopg.conninfo

    parsed = psycopg.conninfo.conninfo_to_dict(dsn)
    assert (parsed["password"], parsed["dbname"], parsed["sslmode"]) == (
        SECRET,
        "retail db",
        "require",
    )
    with pytest.raises(PipelineError, match=r"^Airflow connection retail_test: .* needs host$"):
        conns.postgres_variables(Conn("postgres", password=SECRET))


def test_api_connection_gives_url_and_token() -> None:
    got = settings_of(
        conns.api_variables(Conn("http", host="api.local", port=8765, password="t0k"))
    )
    assert (got.api_url, got.api_token.get_secret_value()) == ("http://api.local:8765", "t0k")
    full = Conn("http", host="https://api.example.com/v1", extra={"token": "x1"})
    got = settings_of(conns.api_variables(full))
    assert (got.api_url, got.api_token.get_secret_value()) == ("https://api.example.com/v1", "x1")
    bad = conns.api_variables(Conn("http", host="ftp://api", password=SECRET))
    with pytest.raises(PipelineError) as caught:
        conns.check(bad)
    assert str(caught.value).startswith("Airflow connection retail_test: RETAIL_API_URL=")
    assert SECRET not in str(caught.value)


def test_kafka_connection_gives_bootstrap_and_checked_properties() -> None:
    extra = {
        "bootstrap.servers": "broker-1:9096,broker-2:9096",
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "socket.keepalive.enable": True,
        "ssl.ca.location": "/etc/ssl/ca.pem",
    }
    resolved = conns.kafka_variables(Conn("kafka", login="svc", password=SECRET, extra=extra))
    assert settings_of(resolved).kafka_bootstrap == "broker-1:9096,broker-2:9096"
    from retail_pipeline.kafka_config import operator_properties

    with environment(**resolved.variables):
        props = operator_properties()
    assert props == {
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "socket.keepalive.enable": "true",
        "ssl.ca.location": "/etc/ssl/ca.pem",
        "sasl.username": "svc",
        "sasl.password": SECRET,
    }
    assert SECRET not in repr(props)
    # property names with '_' survive the variable spelling
    assert property_name(conns.property_variable("ssl_engine.id")) == "ssl_engine.id"
    for owned, why in (("group.id", "consumer group"), ("enable.idempotence", "idempotent")):
        with pytest.raises(PipelineError, match=f"extra: {owned} cannot be set here: .*{why}"):
            conns.kafka_variables(Conn("kafka", host="b", extra={owned: "x"}))
    with pytest.raises(PipelineError, match="needs extra"):
        conns.kafka_variables(Conn("kafka", extra={"sasl.password": SECRET}))
    with pytest.raises(PipelineError) as caught:
        conns.kafka_variables(Conn("kafka", host="b", extra={"sasl.password": SECRET + "\n"}))
    assert "control characters" in str(caught.value) and SECRET not in str(caught.value)
    with pytest.raises(PipelineError, match="not a librdkafka property"):
        conns.kafka_variables(Conn("kafka", host="b", extra={"Bad Key": "1"}))


def test_snowflake_connection_password_or_key() -> None:
    extra = {
        "account": "myorg-acct",
        "warehouse": "LOADING",
        "database": "RETAIL",
        "role": "LOADER",
    }
    conn = Conn("snowflake", login="LOADER_USER", password=SECRET, schema="BRONZE", extra=extra)
    got = settings_of(conns.snowflake_variables(conn)).snowflake
    args = got.connect_args()
    assert (args["account"], args["user"], args["password"], args["role"]) == (
        "myorg-acct",
        "LOADER_USER",
        SECRET,
        "LOADER",
    )
    assert (got.warehouse, got.database, got.schema_name, got.host) == (
        "LOADING",
        "RETAIL",
        "BRONZE",
        None,
    )
    keyed = Conn(
        "snowflake", login="U", password="phrase", extra={**extra, "private_key_file": "/k.p8"}
    )
    args = settings_of(conns.snowflake_variables(keyed)).snowflake.connect_args()
    assert (args["private_key_file"], args["private_key_file_pwd"]) == ("/k.p8", "phrase")
    assert "password" not in args
    emulator = {**extra, "host": "127.0.0.1", "port": 18765, "protocol": "http"}
    got = settings_of(
        conns.snowflake_variables(Conn("snowflake", login="U", password="p", extra=emulator))
    )
    assert (got.snowflake.host, got.snowflake.port, got.snowflake.protocol) == (
        "127.0.0.1",
        18765,
        "http",
    )
    with pytest.raises(PipelineError, match=r"needs a password or extra\.private_key_file"):
        conns.snowflake_variables(Conn("snowflake", login="U", extra=extra))
    with pytest.raises(PipelineError, match="needs login"):
        conns.snowflake_variables(Conn("snowflake", password=SECRET, extra={}))
    with pytest.raises(PipelineError, match="neither a PEM key"):
        conns.snowflake_variables(
            Conn("snowflake", login="U", extra={**extra, "private_key_content": SECRET})
        )
    with pytest.raises(PipelineError) as caught:
        conns.check(
            conns.snowflake_variables(Conn("snowflake", login="U\n", password=SECRET, extra=extra))
        )
    assert str(caught.value).startswith("Airflow connection retail_test: SNOWFLAKE_USER=")
    assert SECRET not in str(caught.value)
    assert SECRET not in repr(conns.snowflake_variables(conn))


CHILD = r"""
import json, logging, os, sys
from retail_pipeline.orchestration.connections import connections
from retail_pipeline.errors import PipelineError
from retail_pipeline.kafka_config import operator_properties
from retail_pipeline.settings import settings

import airflow.sdk  # configures logging first; our handler is added after it

out = {}
ours = logging.getLogger("retail_pipeline.orchestration.connections")
ours.addHandler(logging.StreamHandler(sys.stderr))
ours.setLevel(logging.INFO)
with connections("api", "postgres", "kafka") as origin:
    config = settings()
    out["origin"] = origin
    out["api"] = [config.api_url, config.api_token.get_secret_value()]
    out["postgres"] = config.postgres_dsn.get_secret_value()
    out["kafka"] = config.kafka_bootstrap
    out["kafka_config"] = dict(operator_properties())
out["after"] = [settings().api_url, settings().kafka_bootstrap, dict(operator_properties())]
os.environ["AIRFLOW_CONN_RETAIL_KAFKA"] = '{"conn_type": "kafka", "extra": {"group.id": "x"'
try:
    with connections("kafka"):
        out["malformed"] = None
except PipelineError as exc:
    out["malformed"] = str(exc)
owned = {"bootstrap.servers": "b:1", "group.id": "x"}
os.environ["AIRFLOW_CONN_RETAIL_KAFKA"] = json.dumps({"conn_type": "kafka", "extra": owned})
try:
    with connections("kafka"):
        out["owned"] = None
except PipelineError as exc:
    out["owned"] = str(exc)

from retail_pipeline.orchestration.dbt import profile_config, project_dir
config = profile_config("snowflake", project_dir())
mapping = config.profile_mapping
out["mapping"] = [type(mapping).__name__, mapping.profile, mapping.env_vars]
print("RESULT " + json.dumps(out))
"""


def test_connections_through_airflow(airflow_env: dict[str, str]) -> None:
    """``AIRFLOW_CONN_*`` in Airflow's JSON form become the settings for the block (and only
    for it); an undefined id falls back to the environment (said in the log); a variable that
    is not a connection, or a connection with an owned Kafka key, is one line; Cosmos maps the
    Snowflake connection with the secret in an environment variable, not in the profile."""
    api = {"conn_type": "http", "host": "api.local", "port": 8765, "password": TOKEN}
    snowflake = {
        "conn_type": "snowflake",
        "login": "TRANSFORMER_USER",
        "password": SECRET,
        "schema": "SILVER",
        "extra": {
            "account": "myorg-acct",
            "warehouse": "TRANSFORMING",
            "database": "RETAIL",
            "host": "127.0.0.1",
            "port": 18765,
            "protocol": "http",
        },
    }
    env = {
        **airflow_env,
        "AIRFLOW_CONN_RETAIL_API": json.dumps(api),
        "AIRFLOW_CONN_RETAIL_KAFKA": json.dumps(
            {
                "conn_type": "kafka",
                "extra": {"bootstrap.servers": "kafka-1:9093", "client.id": "dag"},
            }
        ),
        "AIRFLOW_CONN_RETAIL_SNOWFLAKE": json.dumps(snowflake),
        "RETAIL_POSTGRES_DSN": "postgresql://env@127.0.0.1:5433/retail",
        "RETAIL_API_URL": "http://env-api:1",
        "RETAIL_KAFKA_BOOTSTRAP": "env-kafka:9092",
        "RETAIL_KAFKA_CONFIG_CLIENT_RACK": "env-rack",
    }
    env.pop("AIRFLOW_CONN_RETAIL_POSTGRES", None)
    done = subprocess.run(
        [sys.executable, "-c", CHILD],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0 and lines, done.stderr[-4000:]
    out = json.loads(lines[0].removeprefix("RESULT "))
    assert out["origin"] == {
        "api": "connection retail_api",
        "postgres": "environment",
        "kafka": "connection retail_kafka",
    }
    assert out["api"] == ["http://api.local:8765", TOKEN]
    assert out["postgres"] == "postgresql://env@127.0.0.1:5433/retail"
    assert out["kafka"] == "kafka-1:9093"
    # the connection's properties replace the environment's, not add to them
    assert out["kafka_config"] == {"client.id": "dag"}
    assert out["after"] == ["http://env-api:1", "env-kafka:9092", {"client.rack": "env-rack"}]
    assert out["malformed"] == (
        "Airflow connection retail_kafka: AIRFLOW_CONN_RETAIL_KAFKA is neither a connection URI"
        " nor its JSON form"
    )
    assert out["owned"] == (
        "Airflow connection retail_kafka: extra: group.id cannot be set here: the consumer group"
        " is the pipeline's (ConsumerSettings.group_id)"
    )
    log = done.stderr
    assert "Airflow connection retail_postgres is not defined: postgres from the environment" in log
    assert log.count("retail_postgres is not defined") == 1
    assert SECRET not in log and TOKEN not in log
    name, profile, env_vars = out["mapping"]
    assert name == "SnowflakeUserPasswordProfileMapping"
    assert SECRET not in json.dumps(profile) and profile["password"].startswith("{{ env_var(")
    assert SECRET in env_vars.values()
    assert {k: profile[k] for k in ("account", "user", "database", "warehouse", "schema")} == {
        "account": "myorg-acct",
        "user": "TRANSFORMER_USER",
        "database": "RETAIL",
        "warehouse": "TRANSFORMING",
        "schema": "SILVER",
    }
    # the emulator's endpoint, as dbt/profiles.yml gives it from SNOWFLAKE_HOST/PORT/PROTOCOL
    assert (profile["host"], profile["port"], profile["protocol"]) == ("127.0.0.1", 18765, "http")
    assert (profile["role"], profile["threads"], profile["connect_retries"]) == (
        "TRANSFORMER",
        4,
        1,
    )


DEBUG_CHILD = r"""
import json, sys
from pathlib import Path
from dbt.cli.main import dbtRunner
from retail_pipeline.orchestration.dbt import profile_config, project_dir
from retail_pipeline.settings import environment

config = profile_config("snowflake", project_dir())
with config.ensure_profile(desired_profile_path=Path(sys.argv[1])) as (path, env_vars):
    with environment(**env_vars):
        args = ["debug", "--connection", "--profiles-dir", str(path.parent)]
        args += ["--project-dir", str(project_dir()), "--target", "snowflake"]
        outcome = dbtRunner().invoke(args)
mapping = type(config.profile_mapping).__name__
print("RESULT " + json.dumps([mapping, bool(outcome.success), path.read_text()]))
"""


def test_cosmos_profile_of_the_connection_reaches_snowflake(
    airflow_env: dict[str, str],
    snowduck_emulator: tuple[dict[str, Any], Any],
    tmp_path: Path,
) -> None:
    """dbt connects to Snowflake (the local emulator) through the profile Cosmos maps from
    ``retail_snowflake`` alone: no ``SNOWFLAKE_*`` variable in the process, and the profile
    file Cosmos writes holds no password."""
    args, _ = snowduck_emulator
    env = {k: v for k, v in airflow_env.items() if not k.startswith("SNOWFLAKE_")}
    env["AIRFLOW_CONN_RETAIL_SNOWFLAKE"] = json.dumps(
        {
            "conn_type": "snowflake",
            "login": args["user"],
            "password": SECRET,
            "extra": {
                "account": args["account"],
                "database": "RETAIL",
                "host": args["host"],
                "port": args["port"],
                "protocol": args["protocol"],
            },
        }
    )
    env["SNOWFLAKE_CONNECT_RETRIES"] = "0"  # not a credential: fail at once, not after a retry
    done = subprocess.run(
        [sys.executable, "-c", DEBUG_CHILD, str(tmp_path / "profiles.yml")],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0 and lines, (done.stdout + done.stderr)[-4000:]
    mapping, connected, written = json.loads(lines[0].removeprefix("RESULT "))
    assert mapping == "SnowflakeUserPasswordProfileMapping"
    assert connected, done.stdout[-4000:]
    assert args["host"] in written and SECRET not in written
