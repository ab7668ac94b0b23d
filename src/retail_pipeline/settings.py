"""Every setting the pipeline reads from the environment, in one place.

``RETAIL_*`` variables configure the pipeline, ``SNOWFLAKE_*`` the Snowflake account; nothing
else in the package reads the environment for them. A command-line flag, where there is one,
wins over its variable; a variable set to the empty string counts as unset. :func:`settings`
reads the environment afresh on every call (it is cheap), so a changed variable is seen at once,
and a bad value is one line naming the variable.

Secrets (a Snowflake password or private key passphrase) come from the environment only, never
from a file in the repository; ``.env.example`` lists the variables.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from retail_pipeline.errors import PipelineError

Target = Literal["duckdb", "snowflake"]
TARGETS: tuple[Target, ...] = ("duckdb", "snowflake")
DEFAULT_WAREHOUSE = Path("data/warehouse.duckdb")


class SnowflakeSettings(BaseSettings):
    """The Snowflake account and objects (``SNOWFLAKE_*``), as Terraform provisions them."""

    model_config = SettingsConfigDict(
        env_prefix="SNOWFLAKE_", extra="ignore", env_ignore_empty=True
    )

    account: str = ""
    user: str = ""
    password: SecretStr | None = None
    private_key_path: Path | None = None
    """Key-pair authentication (preferred): a PKCS#8 private key file outside the repository."""
    private_key_passphrase: SecretStr | None = None
    role: str = "TRANSFORMER"
    warehouse: str = "TRANSFORMING"
    database: str = "RETAIL"
    schema_name: str = Field("SILVER", validation_alias="SNOWFLAKE_SCHEMA")
    """Where dbt puts models without a schema of their own."""
    threads: int = Field(4, ge=1)
    host: str | None = None
    """Only for emulators and private links; a real account derives it from ``account``."""
    port: int | None = Field(None, ge=1, le=65535)
    protocol: Literal["https", "http"] = "https"
    login_timeout: float = Field(30.0, gt=0)

    def connect_args(self) -> dict[str, Any]:
        """Keyword arguments for ``snowflake.connector.connect``."""
        if not self.account or not self.user:
            raise PipelineError(
                "the snowflake target needs SNOWFLAKE_ACCOUNT and SNOWFLAKE_USER (and"
                " SNOWFLAKE_PRIVATE_KEY_PATH or SNOWFLAKE_PASSWORD)"
            )
        args: dict[str, Any] = {
            "account": self.account,
            "user": self.user,
            "role": self.role,
            "warehouse": self.warehouse,
            "database": self.database,
            "login_timeout": self.login_timeout,
            "network_timeout": self.login_timeout,
        }
        if self.private_key_path is not None:
            args["private_key_file"] = str(self.private_key_path)
            if self.private_key_passphrase is not None:
                args["private_key_file_pwd"] = self.private_key_passphrase.get_secret_value()
        elif self.password is not None:
            args["password"] = self.password.get_secret_value()
        else:
            raise PipelineError(
                "the snowflake target needs SNOWFLAKE_PRIVATE_KEY_PATH or SNOWFLAKE_PASSWORD"
            )
        if self.host:
            args |= {"host": self.host, "protocol": self.protocol}
            if self.port:
                args["port"] = self.port
        return args


class Settings(BaseSettings):
    """The pipeline's settings (``RETAIL_*``)."""

    model_config = SettingsConfigDict(env_prefix="RETAIL_", extra="ignore", env_ignore_empty=True)

    target: Target = "duckdb"
    """Which warehouse every command works on."""
    warehouse: Path = DEFAULT_WAREHOUSE
    """The DuckDB warehouse file (relative paths from the current directory)."""
    duckdb_memory: str = "768MB"
    """DuckDB's memory limit for the loaders' connections."""
    validation_workers: int | None = Field(None, ge=0)
    """Validation processes for big file loads (default: one per core)."""
    max_record_bytes: int = Field(4 << 20, ge=1024, le=1 << 30)
    """The largest event line or snapshot record read whole (bytes); a longer one is
    dead-lettered with its size and position (docs/bronze.md#limits)."""
    kafka_bootstrap: str = "127.0.0.1:9092"
    topic_prefix: str = ""
    kafka_connect_timeout: float = Field(10.0, gt=0)
    """Seconds to wait for a broker that does not answer before giving up."""
    kafka_home: Path | None = None
    """The local broker's home (default: ``.kafka`` in the checkout)."""
    kafka_pom: Path | None = None
    """The pom naming the local broker's jars (default: the checkout's ``kafka/pom.xml``)."""
    dbt_project_dir: Path | None = None
    """The dbt project (default: ``dbt/`` of the checkout)."""
    landing_dir: Path = Path("data/landing")
    """Where the batch DAG finds files to load: ``snapshots/<date>/{customers,products}.json``
    and ``events/*.ndjson``, the simulator's layout (docs/airflow.md)."""
    api_url: str | None = None
    """The reference-data HTTP API ``load-batch --api`` reads (docs/batch-sources.md), e.g.
    ``http://127.0.0.1:8765``."""
    api_token: SecretStr | None = None
    """Bearer token sent to the API (and required by ``retail-pipeline api-server`` when set)."""
    postgres_dsn: SecretStr | None = None
    """The PostgreSQL database ``load-batch --postgres`` reads, e.g.
    ``postgresql://postgres@127.0.0.1:5433/retail`` (a password belongs here, not in a file)."""
    source_timeout: float = Field(60.0, gt=0, le=86_400)
    """The deadline of one call to an API or Postgres source, retries included: an API page
    (connect, answer and whole body) or a Postgres statement (``statement_timeout``,
    ``lock_timeout``); past it the load stops with one line (docs/batch-sources.md#limits)."""
    batch_lag: float = Field(5.0, ge=0)
    """Seconds an incremental read stays behind the source's clock, so that a change committed
    late (a long transaction, a skewed clock) still falls in a later window."""
    chromium: str | None = None
    """The browser the dashboard's screenshots and tests drive (default: the first Chromium
    on ``PATH``)."""
    snowflake: SnowflakeSettings = Field(default_factory=SnowflakeSettings)


def settings() -> Settings:
    """The settings the environment gives now; a bad value is one line naming its variable."""
    try:
        return Settings()
    except ValidationError as exc:
        raise PipelineError(_one_line(exc)) from None


def _one_line(exc: ValidationError) -> str:
    prefix = "SNOWFLAKE_" if exc.title == SnowflakeSettings.__name__ else "RETAIL_"
    error = exc.errors()[0]
    field = str(error["loc"][0]) if error["loc"] else "?"
    name = field if field.startswith(prefix) else prefix + field.upper()
    return f"{name}={error.get('input')!r}: {error['msg']}"


@contextmanager
def environment(**values: str) -> Iterator[None]:
    """Set environment variables for the length of the block, then restore them: how a child
    (dbt's profile, a local emulator's settings) is given its configuration."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
