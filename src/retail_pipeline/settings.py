"""Every setting the pipeline reads from the environment, in one place, parsed and checked.

``RETAIL_*`` variables configure the pipeline, ``SNOWFLAKE_*`` the Snowflake account; nothing
else in the package reads the environment for them. A command-line flag, where there is one,
wins over its variable; a variable set to the empty string counts as unset. :func:`settings`
reads the environment afresh on every call (it is cheap), so a changed variable is seen at once.

Every value is checked here, before anything uses it: a size has a unit and sane bounds, a
number is finite and bounded, a path is printable (and UTF-8 where a tool needs it), a Kafka
topic prefix and a Snowflake object name hold only their legal characters, a URL is plain
http(s). A bad value is one line naming the variable and why (a secret's value never shows);
the values that pass are normalised (``RETAIL_DUCKDB_MEMORY=1gb`` is ``1GB``), so no code past
this module ever sees text it did not expect.

Secrets (a Snowflake password or private key passphrase, the API token, the Postgres DSN) come
from the environment only, never from a file in the repository; ``.env.example`` lists the
variables.
"""

from __future__ import annotations

import ipaddress
import os
import re
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from retail_pipeline.errors import PipelineError, display_dsn, printable

Target = Literal["duckdb", "snowflake"]
TARGETS: tuple[Target, ...] = ("duckdb", "snowflake")
DEFAULT_WAREHOUSE = Path("data/warehouse.duckdb")

MEMORY_UNITS = {
    "KB": 1000,
    "MB": 1000**2,
    "GB": 1000**3,
    "TB": 1000**4,
    "KIB": 1 << 10,
    "MIB": 1 << 20,
    "GIB": 1 << 30,
    "TIB": 1 << 40,
}
MEMORY_MIN = 64 * 1000**2
"""The smallest ``RETAIL_DUCKDB_MEMORY`` (64MB): below it DuckDB cannot append a batch."""
MEMORY_MAX = 1 << 40
"""The largest ``RETAIL_DUCKDB_MEMORY`` (1TiB)."""
TOPIC_PREFIX_MAX = 200
"""A Kafka topic name is at most 249 characters; the longest pipeline topic fits after this."""
TEXT_MAX = 4096
"""The longest URL, DSN, token or path a setting may hold."""

_MEMORY = re.compile(r"([0-9]{1,15}(?:\.[0-9]{1,6})?) ?([KMGT]i?B)", re.IGNORECASE)
_HOST_LABEL = re.compile(r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)")
_TOPIC_CHARS = re.compile(r"[A-Za-z0-9._-]*")
_SNOWFLAKE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_$]{0,254}")
_SNOWFLAKE_ACCOUNT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,254}")
_BOOTSTRAP_SCHEME = re.compile(r"(?:plaintext|ssl|sasl_plaintext|sasl_ssl)://", re.IGNORECASE)
_SCHEMA_PREFIX = re.compile(r"[a-z][a-z0-9_]{0,30}")

Environment = Literal["prod", "dev", "ci"]
DbtDagTasks = Literal["auto", "build", "models"]
Layer = Literal["silver", "gold", "test_failures"]
LAYERS: tuple[Layer, ...] = ("silver", "gold", "test_failures")
"""The schemas dbt builds; each environment has its own (Bronze is shared: docs/transform.md)."""


def parse_memory(text: str) -> str:
    """A DuckDB memory limit in its canonical spelling (``768MB``, ``1.5GiB``), checked: a
    number with a unit (KB, MB, GB, TB: powers of 1000; KiB, MiB, GiB, TiB: of 1024), from
    64MB to 1TiB."""
    match = _MEMORY.fullmatch(text.strip(" "))
    if match is None or not text.isascii():
        raise ValueError(
            "expected a size with a unit, e.g. 768MB or 2GiB (KB, MB, GB, TB or KiB, MiB, GiB, TiB)"
        )
    unit = match[2].upper().replace("I", "i")
    number = Decimal(match[1]).normalize()
    size = int(number * MEMORY_UNITS[unit.upper()])
    if not MEMORY_MIN <= size <= MEMORY_MAX:
        raise ValueError("expected a size from 64MB to 1TiB")
    return f"{number:f}{unit}"


def memory_bytes(text: str) -> int:
    """The bytes a (valid) DuckDB memory limit stands for."""
    match = _MEMORY.fullmatch(parse_memory(text))
    assert match is not None  # parse_memory's own spelling
    return int(Decimal(match[1]) * MEMORY_UNITS[match[2].upper()])


def _printable(text: str, what: str = "value") -> str:
    if len(text) > TEXT_MAX:
        raise ValueError(f"longer than {TEXT_MAX} characters")
    if printable(text) != text or any(char in text for char in "\x00\t\n\r"):
        raise ValueError(f"control characters are not allowed in a {what}")
    return text


def _path(path: Path) -> Path:
    _printable(str(path), "path")
    return path


def _utf8_path(path: Path) -> Path:
    _path(path)
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(
            "the path is not valid UTF-8, which DuckDB, dbt and Java cannot open: rename it"
        ) from None
    return path


def utf8_path(path: Path, what: str) -> Path:
    """``path`` (a command-line option's, say), checked as a ``RETAIL_WAREHOUSE`` is: a path
    that is not UTF-8 or holds control characters is one line naming ``what``, shown
    printably."""
    try:
        return _utf8_path(path)
    except ValueError as exc:
        raise PipelineError(f"{what} {str(path)!r}: {exc}") from None


def check_host(host: str) -> str:
    """A host name (RFC 1123 labels; ``_`` allowed, as container names use it), an IPv4
    address or a bracketed IPv6 address; the brackets are kept."""
    if host.startswith("[") and host.endswith("]"):
        ipaddress.IPv6Address(host[1:-1])  # a ValueError names what is wrong
        return host
    if len(host) > 253 or not all(_HOST_LABEL.fullmatch(label) for label in host.split(".")):
        raise ValueError(f"{host!r} is not a host name or address")
    return host


def parse_bootstrap(text: str) -> str:
    """Kafka bootstrap servers, ``host:port[,host:port...]`` (an optional ``plaintext://``,
    ``ssl://``, ``sasl_plaintext://`` or ``sasl_ssl://`` before each), spaces removed."""
    _printable(text)
    servers = [part.strip() for part in text.split(",")]
    if not 1 <= len(servers) <= 100:
        raise ValueError("expected 1 to 100 servers")
    for server in servers:
        address = _BOOTSTRAP_SCHEME.sub("", server, count=1)
        host, colon, port = address.rpartition(":")
        if not colon or not host:
            raise ValueError(f"expected host:port, got {server!r}")
        if not (port.isascii() and port.isdigit() and 1 <= int(port) <= 65535):
            raise ValueError(f"{server!r}: the port must be a number from 1 to 65535")
        check_host(host)
    return ",".join(servers)


def check_topic_prefix(prefix: str) -> str:
    """A Kafka topic prefix: letters, digits, ``.``, ``_`` and ``-`` only (Kafka's topic name
    characters), at most 200 of them."""
    if not _TOPIC_CHARS.fullmatch(prefix):
        raise ValueError("a Kafka topic name holds only letters, digits, '.', '_' and '-'")
    if len(prefix) > TOPIC_PREFIX_MAX:
        raise ValueError(f"at most {TOPIC_PREFIX_MAX} characters (a topic name is at most 249)")
    return prefix


def check_schema_prefix(prefix: str) -> str:
    """A schema prefix (``RETAIL_SCHEMA_PREFIX``): it becomes part of a schema name in SQL, so
    only a plain lowercase identifier, ``[a-z][a-z0-9_]{0,30}``, is accepted."""
    if not _SCHEMA_PREFIX.fullmatch(prefix):
        raise ValueError(
            "expected a lowercase identifier: a letter, then at most 30 letters, digits or _"
            " (it becomes part of a schema name)"
        )
    return prefix


def _http_url(url: str, *, credentials: str, detail: bool = True) -> urllib.parse.SplitResult:
    """``url`` checked the one way every URL setting is: printable, no spaces, ``http(s)://``
    with a host, no ``user:password@`` (``credentials`` says why), a port of 1-65535.
    ``detail=False`` keeps the parser's words (which may quote the URL) out of the message."""
    _printable(url)
    if any(char.isspace() for char in url):
        raise ValueError("a URL holds no spaces")
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"not a URL ({exc})" if detail else "not a URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("expected an http:// or https:// URL with a host")
    if parts.username is not None or parts.password is not None:
        raise ValueError(credentials)
    if port == 0:
        raise ValueError("the port must be from 1 to 65535")
    return parts


def check_api_url(url: str) -> str:
    """The reference API's base URL: ``http(s)://host[:port][/path]``, without credentials, a
    query or a fragment."""
    parts = _http_url(
        url, credentials="put no credentials in the URL (the token is RETAIL_API_TOKEN)"
    )
    if parts.query or parts.fragment or url.endswith(("?", "#")):
        raise ValueError("give the API's base URL, without a query or fragment")
    return url


def _webhook(secret: SecretStr) -> SecretStr:
    """An alert webhook: ``http(s)://host[:port]/path[?query]`` without user:password@ or a
    fragment. Its path or query usually holds the secret (Slack's, Teams'), so it is a
    SecretStr and never shows in a message."""
    url = secret.get_secret_value()
    parts = _http_url(url, credentials="put no user:password@ in the URL", detail=False)
    if parts.fragment or url.endswith("#"):
        raise ValueError("a webhook URL has no #fragment")
    return secret


def _lineage_url(url: str) -> str:
    """``OPENLINEAGE_URL``: an http(s) base URL, checked as the API's is; no credentials."""
    if "@" in urllib.parse.urlsplit(url).netloc:
        raise ValueError("put no credentials in the URL: events would carry them")
    return check_api_url(url)


def _token(secret: SecretStr) -> SecretStr:
    value = secret.get_secret_value()
    if len(value) > TEXT_MAX or not re.fullmatch(r"[\x21-\x7e]+", value):
        raise ValueError(
            f"a bearer token is 1 to {TEXT_MAX} visible ASCII characters (no spaces, no control"
            " characters)"
        )
    return secret


def _dsn(secret: SecretStr) -> SecretStr:
    value = secret.get_secret_value()
    _printable(value, "DSN")
    scheme = re.match(r"([A-Za-z][A-Za-z0-9+.-]*)://", value)
    if scheme and scheme[1].lower() not in ("postgres", "postgresql"):
        raise ValueError("expected a postgresql:// URL or libpq's key=value form")
    if not scheme and "=" not in value:
        raise ValueError("expected a postgresql:// URL or libpq's key=value form")
    return secret


def _secret(secret: SecretStr) -> SecretStr:
    _printable(secret.get_secret_value())
    return secret


def _program(text: str) -> str:
    _printable(text, "program path")
    if text.startswith("-"):
        raise ValueError("a program path cannot start with '-'")
    return text


def _snowflake_name(text: str) -> str:
    if not _SNOWFLAKE_NAME.fullmatch(text):
        raise ValueError(
            "expected a plain Snowflake identifier: a letter or _, then letters, digits, _ or $"
            " (at most 255)"
        )
    return text


def _snowflake_account(text: str) -> str:
    if text and not _SNOWFLAKE_ACCOUNT.fullmatch(text):
        raise ValueError(
            "expected a Snowflake account identifier (orgname-account or a locator:"
            " letters, digits, '.', '_' and '-')"
        )
    return text


def _flag(value: Any) -> Any:
    """``true``/``false``, ``1``/``0``, ``yes``/``no`` only: the spellings dbt reads too."""
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in ("true", "1", "yes"):
            return True
        if lowered in ("false", "0", "no"):
            return False
        raise ValueError("expected true or false (1/0, yes/no)")
    return value


def _checked(check: Callable[[Any], Any]) -> Any:
    return AfterValidator(check)


SettingPath = Annotated[Path, _checked(_path)]
Utf8Path = Annotated[Path, _checked(_utf8_path)]
Seconds = Annotated[float, Field(allow_inf_nan=False)]
SnowflakeName = Annotated[str, _checked(_snowflake_name)]
Flag = Annotated[bool, BeforeValidator(_flag)]


class SnowflakeSettings(BaseSettings):
    """The Snowflake account and objects (``SNOWFLAKE_*``), as Terraform provisions them."""

    model_config = SettingsConfigDict(
        env_prefix="SNOWFLAKE_", extra="ignore", env_ignore_empty=True
    )

    account: Annotated[str, _checked(_snowflake_account)] = ""
    user: Annotated[str, Field(max_length=255), _checked(_printable)] = ""
    password: Annotated[SecretStr, _checked(_secret)] | None = None
    private_key_path: SettingPath | None = None
    """Key-pair authentication (preferred): a PKCS#8 private key file outside the repository."""
    private_key_passphrase: Annotated[SecretStr, _checked(_secret)] | None = None
    role: SnowflakeName = "TRANSFORMER"
    warehouse: SnowflakeName = "TRANSFORMING"
    database: SnowflakeName = "RETAIL"
    schema_name: SnowflakeName = Field("SILVER", validation_alias="SNOWFLAKE_SCHEMA")
    """Where dbt puts models without a schema of their own."""
    threads: int = Field(4, ge=1, le=64)
    host: Annotated[str, _checked(check_host)] | None = None
    """Only for emulators and private links; a real account derives it from ``account``."""
    port: int | None = Field(None, ge=1, le=65535)
    protocol: Literal["https", "http"] = "https"
    login_timeout: Seconds = Field(30.0, gt=0, le=3600)
    connect_retries: int = Field(1, ge=0, le=10)
    """dbt's connection attempts after a failed one (read by ``dbt/profiles.yml``)."""
    connect_timeout: int = Field(10, ge=1, le=3600)
    """dbt's seconds to wait for a connection (read by ``dbt/profiles.yml``)."""

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
    warehouse: Utf8Path = DEFAULT_WAREHOUSE
    """The DuckDB warehouse file (relative paths from the current directory)."""
    duckdb_memory: Annotated[str, _checked(parse_memory)] = "256MB"
    """DuckDB's memory limit for the loaders' connections (canonical spelling, 64MB to 1TiB):
    appends gain nothing from more (docs/bronze.md#limits), and it adds to every loader's peak."""
    validation_workers: int | None = Field(None, ge=0, le=256)
    """Validation processes for big file loads (default: one per core)."""
    max_record_bytes: int = Field(4 << 20, ge=1024, le=1 << 30)
    """The largest event line or snapshot record read whole (bytes); a longer one is
    dead-lettered with its size and position (docs/bronze.md#limits)."""
    kafka_bootstrap: Annotated[str, _checked(parse_bootstrap)] = "127.0.0.1:9092"
    topic_prefix: Annotated[str, _checked(check_topic_prefix)] = ""
    kafka_connect_timeout: Seconds = Field(10.0, gt=0, le=3600)
    """Seconds to wait for a broker that does not answer before giving up."""
    kafka_config_file: Utf8Path | None = None
    """A properties file of librdkafka properties every Kafka client gets (SASL, TLS...);
    ``RETAIL_KAFKA_CONFIG_<NAME>`` variables win over it (:mod:`retail_pipeline.kafka_config`)."""
    kafka_home: Utf8Path | None = None
    """The local broker's home (default: ``.kafka`` in the checkout)."""
    kafka_pom: Utf8Path | None = None
    """The pom naming the local broker's jars (default: the checkout's ``kafka/pom.xml``)."""
    dbt_project_dir: Utf8Path | None = None
    """The dbt project (default: ``dbt/`` of the checkout)."""
    dbt_target_dir: Utf8Path | None = None
    """Where ``transform`` has dbt write its artifacts (manifest, run results, partial parse);
    default ``target/`` in the dbt project. Two processes building at once need their own."""
    environment: Environment = "prod"
    """Which schemas dbt builds and every reader reads (:func:`layer_schema`): ``prod`` the
    production ``silver``/``gold``/``test_failures``, ``dev`` and ``ci`` their own
    ``<prefix>_silver``/... (docs/transform.md#environments)."""
    schema_prefix: Annotated[str, _checked(check_schema_prefix)] | None = None
    """The prefix of a ``dev`` or ``ci`` environment's schemas (``dev`` default: the OS user);
    refused in ``prod``."""
    dbt_enforce_contracts: Flag = True
    """Whether dbt enforces the Gold models' column contracts (read by ``dbt_project.yml``)."""
    landing_dir: SettingPath = Path("data/landing")
    """Where the batch DAG finds files to load: ``snapshots/<date>/{customers,products}.json``
    and ``events/*.ndjson``, the simulator's layout (docs/airflow.md)."""
    metrics_dir: SettingPath | None = None
    """Where the batch commands (ingest from files, load-batch, transform) write their metrics
    in Prometheus's textfile-collector format, ``retail_pipeline_<job>.prom`` (unset: nowhere;
    docs/operations.md#metrics)."""
    metrics_port: int | None = Field(None, ge=0, le=65535)
    """The port ``ingest --kafka`` serves ``/metrics`` on (unset: no server; 0: any free port)."""
    metrics_host: Annotated[str, _checked(check_host)] = "127.0.0.1"
    """The address that ``/metrics`` server binds (loopback unless a scraper elsewhere needs it)."""
    lineage_dir: SettingPath = Path("data/lineage")
    """Where every load appends its OpenLineage events, ``openlineage.ndjson`` (one JSON event
    a line; docs/operations.md#lineage)."""
    openlineage_url: Annotated[str, _checked(_lineage_url)] | None = Field(
        None, validation_alias="OPENLINEAGE_URL"
    )
    """An OpenLineage HTTP endpoint (e.g. Marquez, ``http://127.0.0.1:5000``) the events are
    posted to instead of the file; without credentials, a query or a fragment."""
    api_url: Annotated[str, _checked(check_api_url)] | None = None
    """The reference-data HTTP API ``load-batch --api`` reads (docs/batch-sources.md), e.g.
    ``http://127.0.0.1:8765``."""
    api_token: Annotated[SecretStr, _checked(_token)] | None = None
    """Bearer token sent to the API (and required by ``retail-pipeline api-server`` when set)."""
    postgres_dsn: Annotated[SecretStr, _checked(_dsn)] | None = None
    """The PostgreSQL database ``load-batch --postgres`` reads, e.g.
    ``postgresql://retail@127.0.0.1:5433/retail?passfile=...`` as ``postgres up`` prints it; a
    password belongs in a libpq passfile or in this variable, never in a committed file."""
    source_timeout: Seconds = Field(60.0, gt=0, le=86_400)
    """The deadline of one call to an API or Postgres source, retries included: an API page
    (connect, answer and whole body) or a Postgres statement (``statement_timeout``,
    ``lock_timeout``); past it the load stops with one line (docs/batch-sources.md#limits)."""
    batch_lag: Seconds = Field(5.0, ge=0, le=86400)
    """Seconds an incremental read stays behind the source's clock, so that a change committed
    late (a long transaction, a skewed clock) still falls in a later window."""
    alert_webhook: Annotated[SecretStr, _checked(_webhook)] | None = None
    """Where the DAGs' failure and deadline alerts are posted (JSON, Slack-compatible: a
    ``text`` field); unset, an alert is only a log line (docs/operations.md#alerts)."""
    alert_timeout: Seconds = Field(10.0, gt=0, le=300)
    """Seconds one alert post may take (connect, send, answer); past it the alert is a log line."""
    dbt_dag_tasks: DbtDagTasks = "auto"
    """The dbt DAG's task layout: ``build``, one task running the whole build in-process (one
    DuckDB file serialises the models anyway); ``models``, a Cosmos task per model (a warehouse
    that builds them in parallel); ``auto``, ``build`` on DuckDB and ``models`` on Snowflake.
    Read when the DAGs are parsed (docs/airflow.md)."""
    task_retry_delay: Seconds = Field(30.0, ge=1, le=86_400)
    """Seconds an Airflow task of the three DAGs waits before its first retry (then twice as
    long, Airflow's exponential back-off); read when the DAGs are parsed (docs/airflow.md)."""
    run_build_delay_seconds: Seconds = Field(5.0, ge=0, le=3600)
    """How long new Bronze rows wait in ``retail-pipeline run`` before it rebuilds Silver and
    Gold (counted from the oldest row not yet built; docs/continuous.md)."""
    gold_deadline_minutes: int = Field(60, ge=1, le=7 * 24 * 60)
    """How long new Bronze rows may wait for a Gold build before the dbt DAG's deadline check
    alerts (docs/operations.md#alerts)."""
    chromium: Annotated[str, _checked(_program)] | None = None
    """The browser the dashboard's screenshots and tests drive (default: the first Chromium
    on ``PATH``)."""
    health_kafka_lag_warn: int = Field(10_000, ge=0, le=10**12)
    """``health``: messages a Kafka partition may hold beyond Bronze before it warns."""
    health_kafka_lag_error: int = Field(100_000, ge=0, le=10**12)
    """``health``: ... before it is an error (docs/operations.md#health)."""
    health_gold_lag_warn: Seconds = Field(3600.0, ge=0, le=90 * 86400)
    """``health``: seconds Gold may miss Bronze rows (since the oldest of them arrived)
    before it warns."""
    health_gold_lag_error: Seconds = Field(6 * 3600.0, ge=0, le=90 * 86400)
    """``health``: ... before it is an error."""
    health_dead_letter_warn: float = Field(0.1, ge=0, le=1)
    """``health``: the share of a loader run's messages dead-lettered before it warns."""
    health_dead_letter_error: float = Field(0.5, ge=0, le=1)
    """``health``: ... before it is an error."""
    health_event_lag_warn: Seconds | None = Field(None, ge=0, le=3650 * 86400)
    """``health``: seconds the newest event time of a Bronze event table may trail the clock
    before it warns (unset: reported, never judged; replays and simulations are old)."""
    health_event_lag_error: Seconds | None = Field(None, ge=0, le=3650 * 86400)
    """``health``: ... before it is an error (unset: never)."""
    snowflake: SnowflakeSettings = Field(default_factory=SnowflakeSettings)


SECRETS = frozenset(
    {
        "RETAIL_API_TOKEN",
        "RETAIL_ALERT_WEBHOOK",
        "SNOWFLAKE_PASSWORD",
        "SNOWFLAKE_PRIVATE_KEY_PASSPHRASE",
    }
)
"""Variables whose value never shows in a message, not even in part."""
LOCATORS = frozenset({"RETAIL_POSTGRES_DSN", "RETAIL_API_URL", "OPENLINEAGE_URL"})
"""Variables shown as :func:`~retail_pipeline.errors.display_dsn` renders them (no password)."""


def settings() -> Settings:
    """The settings the environment gives now; a bad value is one line naming its variable."""
    try:
        return Settings()
    except ValidationError as exc:
        raise PipelineError(_one_line(exc)) from None


def user_prefix(user: str) -> str | None:
    """A ``dev`` environment's default schema prefix from an OS user name: lowercased, every
    other character than ``a-z``, ``0-9`` and ``_`` made ``_``, ``u_`` in front when it does
    not start with a letter, cut to 31 characters; None when nothing is left of it."""
    name = re.sub(r"[^a-z0-9_]", "_", user.lower()).strip("_")
    if not name:
        return None
    if not name[0].isalpha():
        name = "u_" + name
    return name[:31].rstrip("_") or None


def schema_prefix(config: Settings | None = None) -> str:
    """This environment's schema prefix: ``""`` in ``prod`` (which refuses one), else
    ``RETAIL_SCHEMA_PREFIX`` (``dev`` falls back to the OS user, ``ci`` requires it). A
    problem is one line naming the variables."""
    config = config or settings()
    prefix = config.schema_prefix
    if config.environment == "prod":
        if prefix:
            raise PipelineError(
                f"RETAIL_SCHEMA_PREFIX={prefix!r}: production (RETAIL_ENVIRONMENT=prod) builds"
                " and reads silver and gold themselves; set RETAIL_ENVIRONMENT=dev or ci, or"
                " unset RETAIL_SCHEMA_PREFIX"
            )
        return ""
    if prefix:
        return prefix
    if config.environment == "dev":
        import getpass

        try:
            user = user_prefix(getpass.getuser())
        except (KeyError, OSError):  # no name for this uid (a container's)
            user = None
        if user:
            return user
    raise PipelineError(
        f"RETAIL_ENVIRONMENT={config.environment} builds into schemas of its own: set"
        " RETAIL_SCHEMA_PREFIX (a lowercase identifier, e.g. the user or pr_<number>)"
    )


def layer_schema(layer: Layer, prefix: str | None = None) -> str:
    """The schema of a dbt layer (``silver``, ``gold``, ``test_failures``) in this environment:
    the layer's own name in ``prod``, ``<prefix>_<layer>`` in ``dev``/``ci``. The one naming
    every reader of Silver and Gold uses, as ``dbt/macros/generate_schema_name.sql`` does;
    ``prefix`` (already checked) instead of the settings' for a caller that resolved it."""
    if layer not in LAYERS:
        raise ValueError(f"not a dbt layer: {layer!r}")
    prefix = schema_prefix() if prefix is None else prefix
    return f"{check_schema_prefix(prefix)}_{layer}" if prefix else layer


KAFKA_CONFIG_PREFIX = "RETAIL_KAFKA_CONFIG_"


def kafka_config_variables() -> dict[str, str]:
    """The ``RETAIL_KAFKA_CONFIG_<NAME>`` variables (librdkafka properties; not
    ``RETAIL_KAFKA_CONFIG_FILE``) that are set and not empty, by name. Their values may be
    secrets: :mod:`retail_pipeline.kafka_config` checks them without ever showing one."""
    return {
        name: value
        for name, value in os.environ.items()
        if name.startswith(KAFKA_CONFIG_PREFIX) and name != "RETAIL_KAFKA_CONFIG_FILE" and value
    }


def check_settings() -> None:
    """Refuse a bad setting, any of them, in one line naming the variable (the CLI calls it
    before every command)."""
    settings()


def _one_line(exc: ValidationError) -> str:
    prefix = "SNOWFLAKE_" if exc.title == SnowflakeSettings.__name__ else "RETAIL_"
    error = exc.errors()[0]
    field = str(error["loc"][0]) if error["loc"] else "?"
    name = field if field.startswith(prefix) or field.isupper() else prefix + field.upper()
    message = str(error["msg"]).removeprefix("Value error, ")
    return f"{name}={shown(name, error.get('input'))}: {message}"


def shown(name: str, value: object) -> str:
    """How the value of variable ``name`` may appear in a message: a secret never, a DSN or
    URL without its password, anything else quoted (``repr``, escapes visible), cut short."""
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if name in SECRETS:
        return "<hidden>"
    if name in LOCATORS and isinstance(value, str):
        value = display_dsn(value)
    text = repr(value)
    return text if len(text) <= 80 else text[:76] + "...'"


def current_environment() -> dict[str, str]:
    """A copy of the environment as it is now, for telling whether what a child read from it
    (dbt's parse of the project) is still current; never a source of settings (read those
    through :func:`settings`, which checks them)."""
    return dict(os.environ)


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
