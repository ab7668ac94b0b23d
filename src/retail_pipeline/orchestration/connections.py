"""Airflow Connections as the pipeline's settings: how a DAG's task gets its credentials.

An Airflow deployment holds credentials in Connections (its metadata database, an
``AIRFLOW_CONN_<ID>`` variable or any secrets backend), not in the workers' environment. Each
task of the DAGs runs its body inside :func:`connections`, which looks up the Connections it
needs by id (:data:`CONNECTION_IDS`, which a DAG may override) and turns each into the
variables the package's settings read (``RETAIL_*``, ``SNOWFLAKE_*``,
``RETAIL_KAFKA_CONFIG_*``) for the length of the body, so every loader, the warehouse and
Kafka's client builders are built from the connection by the same checked code path as from
the CLI's environment. The CLI keeps reading the environment.

- ``retail_snowflake`` (type ``snowflake``, as the Snowflake provider and Cosmos read it):
  login = user, password (the key's passphrase when a key is given), schema, extra
  ``account``, ``warehouse``, ``database``, ``role``, ``private_key_file`` or
  ``private_key_content`` (PEM, or base64 of it), and for an emulator ``host``, ``port``,
  ``protocol``. The dbt DAG hands it to Cosmos as a profile mapping.
- ``retail_postgres`` (type ``postgres``): host, port, login, password, schema = the
  database; extra keys are libpq parameters (``sslmode``, ``sslrootcert``...).
- ``retail_kafka`` (type ``kafka``, as the Kafka provider reads it): extra = librdkafka
  properties with ``bootstrap.servers`` (or host and port); login/password, when set, are
  ``sasl.username``/``sasl.password``. The properties replace ``RETAIL_KAFKA_CONFIG_*``, under
  the same rules (:mod:`retail_pipeline.kafka_config`: owned keys refused, secrets masked).
- ``retail_api`` (type ``http``): host (a full URL, or a host with schema = ``http``/``https``
  and port), password = the bearer token.

A connection id that is not defined anywhere falls back to the environment, as before, and
the task log says so once. A defined connection that is malformed fails the task with one
line naming the connection and the field, never a secret's value.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import tempfile
import urllib.parse
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from retail_pipeline.errors import PipelineError, one_line
from retail_pipeline.settings import KAFKA_CONFIG_PREFIX, environment, settings

log = logging.getLogger(__name__)

CONNECTION_IDS: dict[str, str] = {
    "snowflake": "retail_snowflake",
    "postgres": "retail_postgres",
    "kafka": "retail_kafka",
    "api": "retail_api",
}
"""The default connection id of each kind; a DAG may name others (:func:`connections`)."""

FALLBACK = {
    "snowflake": "SNOWFLAKE_*",
    "postgres": "RETAIL_POSTGRES_DSN",
    "kafka": "RETAIL_KAFKA_BOOTSTRAP, RETAIL_KAFKA_CONFIG_*",
    "api": "RETAIL_API_URL, RETAIL_API_TOKEN",
}
"""What each kind reads from the environment when its connection is not defined."""

SNOWFLAKE_VARIABLES = (
    "ACCOUNT",
    "USER",
    "PASSWORD",
    "PRIVATE_KEY_PATH",
    "PRIVATE_KEY_PASSPHRASE",
    "ROLE",
    "WAREHOUSE",
    "DATABASE",
    "SCHEMA",
    "HOST",
    "PORT",
    "PROTOCOL",
)


class BadConnection(PipelineError):
    """A defined Airflow connection the pipeline cannot use (one line, no secret)."""


class AirflowConnection(Protocol):
    """What is read of an Airflow ``Connection`` (``airflow.sdk.Connection``)."""

    conn_id: str
    conn_type: str
    host: str | None
    schema: str | None
    login: str | None
    password: str | None
    port: int | None

    @property
    def extra_dejson(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class Resolved:
    """The variables a connection gives (secrets among them: never logged), and its id."""

    conn_id: str
    variables: dict[str, str] = field(repr=False)
    key_pem: str | None = field(default=None, repr=False)
    """A Snowflake private key given as content: written to a private file for the task."""
    secrets: tuple[str, ...] = field(default=(), repr=False)
    """Secrets in a form Airflow does not mask by itself (a password quoted into a DSN)."""


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _extra(conn: AirflowConnection) -> dict[str, Any]:
    try:
        extra = conn.extra_dejson
    except (ValueError, TypeError):
        extra = None
    if not isinstance(extra, dict):
        raise BadConnection(f"Airflow connection {conn.conn_id}: extra is not a JSON object")
    return extra


def snowflake_variables(conn: AirflowConnection) -> Resolved:
    """``SNOWFLAKE_*`` of a ``snowflake`` connection (the provider's and Cosmos's fields)."""
    extra = {key.removeprefix("extra__snowflake__"): value for key, value in _extra(conn).items()}
    account = _text(extra.get("account"))
    if not account or not conn.login:
        raise BadConnection(
            f"Airflow connection {conn.conn_id}: a Snowflake connection needs login (the user)"
            " and extra.account"
        )
    key_file = _text(extra.get("private_key_file"))
    key_content = _text(extra.get("private_key_content"))
    if key_file and key_content:
        raise BadConnection(
            f"Airflow connection {conn.conn_id}: give extra.private_key_file or"
            " extra.private_key_content, not both"
        )
    secret = _text(conn.password)
    keyed = bool(key_file or key_content)
    if not keyed and not secret:
        raise BadConnection(
            f"Airflow connection {conn.conn_id}: a Snowflake connection needs a password or"
            " extra.private_key_file / extra.private_key_content"
        )
    variables = {
        "ACCOUNT": account,
        "USER": _text(conn.login),
        "PASSWORD": "" if keyed else secret,
        "PRIVATE_KEY_PATH": key_file,
        "PRIVATE_KEY_PASSPHRASE": secret if keyed else "",
        "ROLE": _text(extra.get("role")),
        "WAREHOUSE": _text(extra.get("warehouse")),
        "DATABASE": _text(extra.get("database")),
        "SCHEMA": _text(conn.schema),
        "HOST": _text(extra.get("host")),
        "PORT": _text(extra.get("port")),
        "PROTOCOL": _text(extra.get("protocol")),
    }
    pem = _pem(conn.conn_id, key_content) if key_content else None
    return Resolved(conn.conn_id, {f"SNOWFLAKE_{k}": v for k, v in variables.items()}, pem)


def _pem(conn_id: str, content: str) -> str:
    """A private key's PEM from its content, PEM or base64 of it (as the provider reads it)."""
    if "-----BEGIN" not in content:
        try:
            content = base64.b64decode(content, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            content = ""
    if "-----BEGIN" not in content:
        raise BadConnection(
            f"Airflow connection {conn_id}: extra.private_key_content is neither a PEM key nor"
            " base64 of one"
        )
    return content


def postgres_variables(conn: AirflowConnection) -> Resolved:
    """``RETAIL_POSTGRES_DSN`` of a ``postgres`` connection: a ``postgresql://`` URL, every part
    quoted; extra keys are libpq parameters."""
    if not conn.host:
        raise BadConnection(f"Airflow connection {conn.conn_id}: a Postgres connection needs host")
    quote = urllib.parse.quote
    user = quote(_text(conn.login), safe="")
    password = quote(_text(conn.password), safe="")
    auth = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    host = conn.host if ":" not in conn.host else f"[{conn.host}]"
    port = f":{conn.port}" if conn.port else ""
    database = quote(_text(conn.schema), safe="")
    query = urllib.parse.urlencode({key: _text(value) for key, value in _extra(conn).items()})
    dsn = f"postgresql://{auth}{quote(host, safe='[]:')}{port}/{database}"
    return Resolved(
        conn.conn_id,
        {"RETAIL_POSTGRES_DSN": dsn + (f"?{query}" if query else "")},
        secrets=(password,) if password else (),
    )


def property_variable(key: str) -> str:
    """The ``RETAIL_KAFKA_CONFIG_<NAME>`` variable of librdkafka property ``key`` (the inverse
    of :func:`retail_pipeline.kafka_config.property_name`)."""
    name = "__".join(part.replace(".", "_") for part in key.split("_"))
    return KAFKA_CONFIG_PREFIX + name.upper()


def kafka_variables(conn: AirflowConnection) -> Resolved:
    """``RETAIL_KAFKA_BOOTSTRAP`` and ``RETAIL_KAFKA_CONFIG_*`` of a ``kafka`` connection: the
    extra's librdkafka properties, checked by :mod:`retail_pipeline.kafka_config`'s rules."""
    from retail_pipeline.kafka_config import env_properties, property_name

    properties = {str(key): value for key, value in _extra(conn).items()}
    bootstrap = _text(properties.pop("bootstrap.servers", ""))
    if not bootstrap and conn.host:
        bootstrap = f"{conn.host}:{conn.port}" if conn.port else conn.host
    if not bootstrap:
        raise BadConnection(
            f"Airflow connection {conn.conn_id}: a Kafka connection needs extra"
            ' {"bootstrap.servers": ...} or host and port'
        )
    for key, value in (("sasl.username", conn.login), ("sasl.password", conn.password)):
        if value:
            if key in properties:
                raise BadConnection(
                    f"Airflow connection {conn.conn_id}: {key} is given twice (login/password"
                    " and extra)"
                )
            properties[key] = value
    variables: dict[str, str] = {}
    for key, value in properties.items():
        if isinstance(value, bool):
            value = "true" if value else "false"
        if not isinstance(value, str | int | float) or property_name(property_variable(key)) != (
            key
        ):
            raise BadConnection(
                f"Airflow connection {conn.conn_id}: extra {one_line(repr(key), 80)} is not a"
                " librdkafka property with a text or number value"
            )
        variables[property_variable(key)] = str(value)
    try:
        env_properties(variables)  # owned keys, empty or control characters: refused, unquoted
    except PipelineError as exc:
        message = str(exc)
        for variable in variables:
            message = message.replace(f"{variable}: ", "extra: ")
        raise BadConnection(f"Airflow connection {conn.conn_id}: {message}") from None
    variables["RETAIL_KAFKA_BOOTSTRAP"] = bootstrap
    return Resolved(conn.conn_id, variables)


def api_variables(conn: AirflowConnection) -> Resolved:
    """``RETAIL_API_URL`` and ``RETAIL_API_TOKEN`` of an ``http`` connection."""
    host = _text(conn.host)
    if not host:
        raise BadConnection(f"Airflow connection {conn.conn_id}: an API connection needs host")
    if "://" in host:
        url = host
    else:
        scheme = _text(conn.schema) or "http"
        url = f"{scheme}://{host}" + (f":{conn.port}" if conn.port else "")
    token = _text(conn.password) or _text(_extra(conn).get("token"))
    return Resolved(conn.conn_id, {"RETAIL_API_URL": url, "RETAIL_API_TOKEN": token})


CONVERTERS = {
    "snowflake": snowflake_variables,
    "postgres": postgres_variables,
    "kafka": kafka_variables,
    "api": api_variables,
}


def _env_name(conn_id: str) -> str:
    return "AIRFLOW_CONN_" + conn_id.upper()


def lookup(conn_id: str) -> AirflowConnection | None:
    """The Airflow connection ``conn_id`` (any secrets backend, ``AIRFLOW_CONN_*`` or the
    metadata database), or None when it is not defined. An ``AIRFLOW_CONN_<ID>`` variable that
    Airflow cannot parse is not "undefined": it is refused (Airflow would only log it at debug
    level and carry on as if it were not there)."""
    from airflow.sdk import Connection
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        conn: AirflowConnection = Connection.get(conn_id)
    except AirflowNotFoundException:
        if os.environ.get(_env_name(conn_id)):
            raise BadConnection(
                f"Airflow connection {conn_id}: {_env_name(conn_id)} is neither a connection"
                " URI nor its JSON form"
            ) from None
        return None
    return conn


def resolve(kind: str, conn_id: str | None = None) -> Resolved | None:
    """The variables of the connection of ``kind`` (``conn_id``, else its default id), checked
    by the package's settings as the environment's would be; None when it is not defined."""
    chosen = conn_id or CONNECTION_IDS[kind]
    conn = lookup(chosen)
    if conn is None:
        return None
    resolved = CONVERTERS[kind](conn)
    check(resolved)
    return resolved


def check(resolved: Resolved) -> None:
    """Refuse variables the settings would refuse, in one line naming the connection."""
    variables = dict(resolved.variables)
    if resolved.key_pem is not None:
        variables["SNOWFLAKE_PRIVATE_KEY_PATH"] = "private_key_content"  # written at use
    with environment(**variables):
        try:
            config = settings()
            if "SNOWFLAKE_ACCOUNT" in variables:
                config.snowflake.connect_args()
        except PipelineError as exc:
            raise BadConnection(f"Airflow connection {resolved.conn_id}: {exc}") from None


@contextmanager
def _key_file(pem: str) -> Iterator[Path]:
    """``pem`` in a file only this user reads, removed after the block."""
    with tempfile.TemporaryDirectory(prefix="retail-key-") as folder:
        path = Path(folder) / "snowflake_key.p8"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(pem)
        yield path


def _cleared(kind: str) -> dict[str, str]:
    """The environment's variables of ``kind`` emptied (an empty variable counts as unset), so
    nothing of the worker's environment mixes into a connection's settings."""
    if kind == "snowflake":
        return {f"SNOWFLAKE_{name}": "" for name in SNOWFLAKE_VARIABLES}
    if kind == "kafka":
        return {name: "" for name in os.environ if name.startswith(KAFKA_CONFIG_PREFIX)}
    if kind == "api":
        return {"RETAIL_API_URL": "", "RETAIL_API_TOKEN": ""}
    return {"RETAIL_POSTGRES_DSN": ""}


def _mask(secrets: tuple[str, ...]) -> None:
    """Have Airflow's log masker hide ``secrets`` too (it masks the connection's own fields)."""
    if secrets:
        from airflow.sdk.log import mask_secret

        for secret in secrets:
            mask_secret(secret)


def warehouse_kinds() -> tuple[str, ...]:
    """The kinds the warehouse itself needs: Snowflake's connection on that target."""
    from retail_pipeline.warehouse import resolve_target

    return ("snowflake",) if resolve_target(None) == "snowflake" else ()


@contextmanager
def connections(*kinds: str, ids: Mapping[str, str] | None = None) -> Iterator[dict[str, str]]:
    """Run the block with the settings of the Airflow connections of ``kinds`` (and, on the
    Snowflake target, Snowflake's): ``ids`` names other connection ids than
    :data:`CONNECTION_IDS`. A kind whose connection is not defined keeps the environment's
    settings (said once in the task log). Yields ``{kind: where its settings came from}``."""
    chosen = dict.fromkeys([*kinds, *warehouse_kinds()])
    unknown = [kind for kind in chosen if kind not in CONVERTERS]
    if unknown:
        raise ValueError(f"unknown connection kind {unknown[0]!r}")
    variables: dict[str, str] = {}
    origin: dict[str, str] = {}
    with ExitStack() as stack:
        for kind in chosen:
            conn_id = (ids or {}).get(kind) or CONNECTION_IDS[kind]
            resolved = resolve(kind, conn_id)
            if resolved is None:
                log.info(
                    "Airflow connection %s is not defined: %s from the environment (%s)",
                    conn_id,
                    kind,
                    FALLBACK[kind],
                )
                origin[kind] = "environment"
                continue
            _mask(resolved.secrets)
            log.info("Airflow connection %s: %s settings from it", conn_id, kind)
            origin[kind] = f"connection {conn_id}"
            variables |= _cleared(kind) | resolved.variables
            if resolved.key_pem is not None:
                path = stack.enter_context(_key_file(resolved.key_pem))
                variables["SNOWFLAKE_PRIVATE_KEY_PATH"] = str(path)
        stack.enter_context(environment(**variables))
        yield origin
