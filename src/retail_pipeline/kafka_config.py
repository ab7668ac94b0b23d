"""librdkafka properties the operator adds to every Kafka client: SASL, TLS, mTLS, client ids.

A cluster on MSK, Confluent Cloud, Aiven or Event Hubs needs properties the pipeline cannot
guess (``security.protocol``, ``sasl.mechanism``, ``sasl.username``/``sasl.password``,
``ssl.ca.location``...). They come from two places, read by :mod:`retail_pipeline.settings`:

- ``RETAIL_KAFKA_CONFIG_FILE``: a Java-style properties file, ``key=value`` lines (spaces
  around the ``=`` dropped), ``#`` or ``!`` comments and blank lines; keys are librdkafka
  property names. It is UTF-8, at most :data:`MAX_FILE_BYTES`, and read once per process.
- ``RETAIL_KAFKA_CONFIG_<NAME>`` variables, which win over the file: ``_`` in the name is a
  ``.`` of the property and ``__`` is a ``_`` (``RETAIL_KAFKA_CONFIG_SASL_MECHANISM`` is
  ``sasl.mechanism``, ``RETAIL_KAFKA_CONFIG_SSL__KEY__PASSWORD`` would be ``ssl_key_password``).

Every client builder merges them with :func:`client_config`: over its tunable defaults (so a
team may change ``linger.ms``), under the keys it requires. The keys the pipeline's guarantees
rest on (:data:`OWNED_KEYS`: the bootstrap servers, the group and its offsets, idempotence,
the callbacks) are refused wherever they are given. A secret's value (:func:`is_secret`) never
shows: a :class:`KafkaConfig`'s ``repr`` masks it, no error quotes a value, and librdkafka's own
messages pass through :func:`scrub` before they are logged or shown.
"""

from __future__ import annotations

import os
import re
import stat
import sys
from collections.abc import Iterable, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

from retail_pipeline.errors import PipelineError, printable
from retail_pipeline.settings import KAFKA_CONFIG_PREFIX, kafka_config_variables, settings

ENV_PREFIX = KAFKA_CONFIG_PREFIX
FILE_VARIABLE = ENV_PREFIX + "FILE"
MAX_FILE_BYTES = 1 << 20
"""The largest properties file read (1 MiB); a real one is a few hundred bytes."""
MAX_VALUE_CHARS = 65_536
"""The longest value (an inline PEM certificate chain fits)."""

OWNED_KEYS: dict[str, str] = {
    "bootstrap.servers": "set by RETAIL_KAFKA_BOOTSTRAP",
    "metadata.broker.list": "set by RETAIL_KAFKA_BOOTSTRAP",
    "group.id": "the consumer group is the pipeline's (ConsumerSettings.group_id)",
    "group.instance.id": "static membership is the pipeline's (ConsumerSettings.instance_id)",
    "enable.auto.commit": "offsets of record live in the warehouse",
    "enable.auto.offset.store": "offsets of record live in the warehouse",
    "auto.offset.reset": "the consumer seeks to the warehouse's offsets itself",
    "enable.partition.eof": "the consumer needs end-of-partition events to know it caught up",
    "isolation.level": "the consumer reads what the producer commits",
    "enable.idempotence": "the producers are idempotent: a retry never writes twice",
    "acks": "an idempotent producer needs acks=all",
    "request.required.acks": "an idempotent producer needs acks=all",
    "transactional.id": "the producers are idempotent, not transactional",
    "message.timeout.ms": "the producer waits for every delivery report within it",
    "delivery.timeout.ms": "the producer waits for every delivery report within it",
    "logger": "librdkafka's log goes to the pipeline's logger",
    "on_delivery": "a Python callback of the pipeline",
    "on_commit": "a Python callback of the pipeline",
    "plugin.library.paths": "it loads native code into the process",
}
"""Keys no file or variable may set, and why."""

_KEY = re.compile(r"[a-z0-9._-]+")
_SECRET_PARTS = (
    "password",
    "secret",
    "token",
    "jaas",
    "sasl.oauthbearer.config",
    "ssl.key.pem",
    "ssl_key",
    "ssl.keystore",
)
_MASK = "***"


def is_secret(key: str) -> bool:
    """Whether the value of property ``key`` is a secret (a password, a private key, a token)."""
    return any(part in key for part in _SECRET_PARTS)


class KafkaConfig(dict[str, Any]):
    """A librdkafka configuration whose ``repr`` and ``str`` mask every secret value.

    It is a ``dict`` so that confluent-kafka takes it as it is.
    """

    def __repr__(self) -> str:
        shown = {key: _MASK if is_secret(key) else value for key, value in self.items()}
        return f"KafkaConfig({shown!r})"

    __str__ = __repr__

    def secrets(self) -> list[str]:
        """The secret values it holds (to mask them in text that may quote them)."""
        return [str(value) for key, value in self.items() if is_secret(key) and value]


def _owned(key: str) -> str | None:
    if key in OWNED_KEYS:
        return OWNED_KEYS[key]
    if key.endswith("_cb"):
        return "a Python callback of the pipeline"
    return None


def _check(key: str, value: str, where: str) -> None:
    """Refuse, naming ``where`` (never quoting the value), a key or value librdkafka must not
    get."""
    if not _KEY.fullmatch(key):
        raise PipelineError(
            f"{where}: {printable(repr(key))} is not a librdkafka property name"
            " (lowercase letters, digits, '.', '_' and '-')"
        )
    reason = _owned(key)
    if reason is not None:
        raise PipelineError(f"{where}: {key} cannot be set here: {reason}")
    if not value:
        raise PipelineError(f"{where}: {key} has no value")
    if len(value) > MAX_VALUE_CHARS:
        raise PipelineError(f"{where}: the value of {key} is longer than {MAX_VALUE_CHARS:,}")
    if printable(value) != value or any(char in value for char in "\x00\t\n\r"):
        raise PipelineError(f"{where}: the value of {key} holds control characters")


def parse_properties(text: str, source: str) -> KafkaConfig:
    """The properties of a Java-style properties file's ``text``; ``source`` names it in errors.

    ``key=value`` lines (spaces around the key and value dropped), ``#``/``!`` comments and
    blank lines. A line continuation (a trailing ``\\``), a line without ``=``, a key given
    twice, an owned key or an empty value is refused with ``source:line``.
    """
    properties = KafkaConfig()
    first_line: dict[str, int] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        where = f"{source}:{number}"
        if not line or line.startswith(("#", "!")):
            continue
        key, equals, value = line.partition("=")
        key, value = key.strip(), value.strip()
        if not equals or not key:
            raise PipelineError(f"{where}: expected key=value (or a # comment)")
        if value.endswith("\\"):
            raise PipelineError(
                f"{where}: {key}: line continuations are not supported (for a PEM, point"
                " ssl.key.location or ssl.certificate.location at its file)"
            )
        _check(key, value, where)
        if key in first_line:
            raise PipelineError(f"{where}: {key} is set again (first at line {first_line[key]})")
        first_line[key] = number
        properties[key] = value
    return properties


def property_name(variable: str) -> str:
    """The property a ``RETAIL_KAFKA_CONFIG_<NAME>`` variable sets: ``_`` is ``.``, ``__`` is
    ``_`` (``RETAIL_KAFKA_CONFIG_SASL_MECHANISM`` is ``sasl.mechanism``)."""
    name = variable.removeprefix(ENV_PREFIX).lower()
    return "_".join(part.replace("_", ".") for part in name.split("__"))


def env_properties(variables: Mapping[str, str]) -> KafkaConfig:
    """The properties of the ``RETAIL_KAFKA_CONFIG_<NAME>`` variables in ``variables``."""
    properties = KafkaConfig()
    for variable, value in sorted(variables.items()):
        key = property_name(variable)
        _check(key, value, printable(variable))
        properties[key] = value
    return properties


@lru_cache(maxsize=8)
def read_properties_file(path: Path) -> KafkaConfig:
    """The properties of the file at ``path``, read once per process; at most
    :data:`MAX_FILE_BYTES`. A file that holds a secret and that group or others may read gets a
    warning on stderr (as ssh does), not a refusal: mounted secrets are often 0644."""
    source = f"{FILE_VARIABLE} {printable(str(path))}"
    try:
        with path.open("rb") as handle:
            mode = os.fstat(handle.fileno()).st_mode
            if not stat.S_ISREG(mode):
                raise PipelineError(f"{source}: not a regular file")
            data = handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise PipelineError(f"{source}: cannot be read ({exc.strerror or exc})") from None
    if len(data) > MAX_FILE_BYTES:
        raise PipelineError(f"{source}: larger than {MAX_FILE_BYTES:,} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise PipelineError(f"{source}:{line}: not UTF-8") from None
    properties = parse_properties(text, source)
    if mode & 0o077 and properties.secrets():
        print(
            f"warning: {source} holds a secret and is readable by group or others"
            f" (mode {stat.S_IMODE(mode):04o}): chmod 600 it",
            file=sys.stderr,
        )
    return properties


_known_secrets: set[str] = set()
"""Every secret value the configuration has held in this process, for :func:`scrub`."""


def operator_properties() -> KafkaConfig:
    """The operator's properties: ``RETAIL_KAFKA_CONFIG_FILE``'s, then the
    ``RETAIL_KAFKA_CONFIG_<NAME>`` variables over them. A bad line or variable is one line."""
    path = settings().kafka_config_file
    properties = KafkaConfig(read_properties_file(path) if path is not None else {})
    properties.update(env_properties(kafka_config_variables()))
    _known_secrets.update(properties.secrets())
    return properties


def client_config(
    required: Mapping[str, Any], defaults: Mapping[str, Any] | None = None
) -> KafkaConfig:
    """One client's configuration: its ``defaults``, the operator's properties over them, and
    the keys it ``required`` over all (one of them given by the operator is refused)."""
    properties = operator_properties()
    clash = sorted(set(properties) & set(required))
    if clash:
        raise PipelineError(
            f"Kafka property {clash[0]} cannot be set in {FILE_VARIABLE} or {ENV_PREFIX}*:"
            " the pipeline sets it for this client"
        )
    return KafkaConfig({**(defaults or {}), **properties, **required})


def scrub(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` (a librdkafka message) with every secret value of the configuration masked."""
    for secret in sorted({*secrets, *_known_secrets}, key=len, reverse=True):
        text = text.replace(secret, _MASK)
    return text
