"""What every Kafka client of the pipeline shares: a quiet librdkafka log, a bounded wait for
the broker, and how message keys are kept as text.

librdkafka logs each failed connection attempt (several a second) at error level and retries
for ever; the pipeline reports every failure itself, in one line. So librdkafka's own log goes
to the Python logger ``retail_pipeline.kafka.librdkafka`` one level down (its errors and warnings
at INFO, the rest at DEBUG), and a command that needs the broker first waits at most
``$RETAIL_KAFKA_CONNECT_TIMEOUT`` seconds (10) for it, then fails with the reason. A broker that
refuses the client for good (SASL authentication failed, the TLS handshake failed, or it closes
every connection before answering, as a TLS listener does to a plaintext client) ends the wait
at once: librdkafka would retry those for ever too, and waiting does not mend them.

Every client's configuration is built by a pure ``..._config`` function through
:func:`retail_pipeline.kafka_config.client_config`, which adds the operator's librdkafka
properties (``RETAIL_KAFKA_CONFIG_FILE``, ``RETAIL_KAFKA_CONFIG_<NAME>``: SASL, TLS...); a
property librdkafka refuses is one line (:func:`new_client`), and a secret never reaches the log.
"""

from __future__ import annotations

import logging
import re
import time
from typing import Any

from retail_pipeline.errors import PipelineError
from retail_pipeline.events.contract import TOPICS
from retail_pipeline.kafka_config import ENV_PREFIX, FILE_VARIABLE, client_config, scrub
from retail_pipeline.settings import settings

LIBRDKAFKA_LOGGER = "retail_pipeline.kafka.librdkafka"
DLQ_TOPIC = "dead_letter"
"""The dead-letter topic (after the topic prefix): the consumer's poison messages and the
messages the producer could not deliver."""
PIPELINE_TOPICS = (*TOPICS, DLQ_TOPIC)

_BROKER_PREFIX = re.compile(r"^\S+/\S+: ")  # "127.0.0.1:9092/bootstrap: "
_STATE_SUFFIX = re.compile(r" \(after \d+ms in state \w+\)$")
_CLOSED_BEFORE_ANSWER = "in state APIVERSION_QUERY)"
_HANDSHAKE_FAILED = "SSL handshake failed"
"""The end of librdkafka's line for a connection the broker closed before its first answer."""
CLOSED_EARLY_ATTEMPTS = 3
"""Connections closed before any answer, at least a second apart overall, that end the wait."""
_WAIT_SLICE = 0.5
"""How long one metadata request waits before the client's errors are looked at again."""


class BrokerUnreachable(PipelineError):
    """No broker answered within the connect timeout."""


class BrokerRefused(BrokerUnreachable):
    """A broker answered but refused this client: authentication or TLS failed."""


def connect_timeout() -> float:
    """Seconds to wait for the broker: ``RETAIL_KAFKA_CONNECT_TIMEOUT``, else 10."""
    return settings().kafka_connect_timeout


class ClientLog:
    """librdkafka's log for one client, one level down, remembering the last error it reported.

    Pass it as a client's ``logger`` (and its :meth:`error` as ``error_cb``).
    """

    def __init__(self) -> None:
        self.logger = logging.getLogger(LIBRDKAFKA_LOGGER)
        self.last_error: str | None = None
        self.refusal: str | None = None
        """The first error that retrying cannot mend (authentication, TLS)."""
        self.closed_early: list[float] = []
        """When the broker closed a connection before answering (monotonic seconds)."""
        self.handshakes_failed: list[float] = []
        """When a TLS handshake failed as a transport error (a TLS client at a plaintext
        listener: librdkafka does not report it as an SSL error), and the last such error."""
        self.handshake_error: str | None = None

    def log(self, level: int, msg: str, *args: object) -> None:
        """Called by confluent-kafka for each librdkafka log line."""
        text = scrub(msg % args if args else msg)
        if text.endswith(_CLOSED_BEFORE_ANSWER) and len(self.closed_early) < 100:
            self.closed_early.append(time.monotonic())
        self.logger.log(logging.INFO if level >= logging.WARNING else logging.DEBUG, "%s", text)

    def error(self, err: Any) -> None:
        """``error_cb``: a client-level error (connection refused, all brokers down, ...)."""
        text = scrub(str(err.str()))
        if not text.endswith("brokers are down"):  # keep the more telling reason before it
            self.last_error = text
        if self.refusal is None and err.code() in _refusal_codes():
            self.refusal = text
        if _HANDSHAKE_FAILED in text and len(self.handshakes_failed) < 100:
            self.handshakes_failed.append(time.monotonic())
            self.handshake_error = text
        self.logger.info("%s", text)

    def reason(self) -> str | None:
        """The last error, without the broker name and librdkafka's state suffix."""
        if self.last_error is None:
            return _closed_early_reason() if self.closed_early else None
        return _clean(self.last_error)

    def refused(self) -> str | None:
        """Why the broker refuses this client for good, or None while waiting may still help:
        an authentication or TLS error, or :data:`CLOSED_EARLY_ATTEMPTS` connections closed
        before any answer over a second or more (a broker restarting refuses connections
        instead)."""
        if self.refusal is not None:
            return f"{_clean(self.refusal)} (check {FILE_VARIABLE} and the {ENV_PREFIX}* variables)"
        early = self.closed_early
        if len(early) >= CLOSED_EARLY_ATTEMPTS and early[-1] - early[0] >= 1.0:
            return _closed_early_reason()
        failed = self.handshakes_failed
        if len(failed) >= CLOSED_EARLY_ATTEMPTS and failed[-1] - failed[0] >= 1.0:
            return (
                f"{_clean(self.handshake_error or _HANDSHAKE_FAILED)} (security.protocol in"
                f" {FILE_VARIABLE} or {ENV_PREFIX}SECURITY_PROTOCOL)"
            )
        return None


def _clean(text: str) -> str:
    """A librdkafka error without the broker name and the state suffix."""
    return _STATE_SUFFIX.sub("", _BROKER_PREFIX.sub("", text))


def _closed_early_reason() -> str:
    return (
        "it closes every connection before answering: does its listener want TLS or SASL"
        f" (security.protocol in {FILE_VARIABLE} or {ENV_PREFIX}SECURITY_PROTOCOL)?"
    )


def _refusal_codes() -> frozenset[int]:
    from confluent_kafka import KafkaError

    return frozenset({KafkaError._AUTHENTICATION, KafkaError._SSL})


def kafka_reason(exc: BaseException) -> str:
    """The text of a KafkaException (its ``str`` is sometimes empty), else of any exception."""
    from confluent_kafka import KafkaError

    first = exc.args[0] if exc.args else None
    text = first.str() if isinstance(first, KafkaError) else str(exc)
    return scrub(str(text)) or type(exc).__name__


def admin_config(bootstrap: str, log: ClientLog) -> dict[str, Any]:
    """An admin client's configuration (metadata, topic ids, the broker wait)."""
    return client_config({"bootstrap.servers": bootstrap, "logger": log, "error_cb": log.error})


def new_client(kind: Any, config: dict[str, Any], **kwargs: Any) -> Any:
    """``kind(config, **kwargs)`` (a Consumer, Producer or AdminClient); a configuration
    librdkafka refuses (an unknown property, a bad value) is one line naming where the
    operator's properties come from."""
    from confluent_kafka import KafkaException

    try:
        return kind(config, **kwargs)
    except (KafkaException, ValueError, TypeError) as exc:
        raise PipelineError(
            f"Kafka client for {config.get('bootstrap.servers')} not created: {kafka_reason(exc)}"
            f" (check {FILE_VARIABLE} and the {ENV_PREFIX}* variables)"
        ) from None


def wait_for_broker(bootstrap: str, timeout: float | None = None) -> Any:
    """The cluster's metadata once a broker of ``bootstrap`` answers.

    Raises :class:`BrokerUnreachable` (``Kafka broker at HOST:PORT unreachable after N s:
    <reason>``) when none answers within ``timeout`` seconds (default :func:`connect_timeout`),
    and :class:`BrokerRefused` (``Kafka broker at HOST:PORT refused this client: <reason>``) as
    soon as a broker refuses it for good (:meth:`ClientLog.refused`).
    """
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    timeout = connect_timeout() if timeout is None else timeout
    log = ClientLog()
    admin = new_client(AdminClient, admin_config(bootstrap, log))
    deadline = time.monotonic() + timeout
    while True:
        asked = time.monotonic()
        try:
            return admin.list_topics(timeout=max(0.05, min(_WAIT_SLICE, deadline - asked)))
        except KafkaException as exc:
            admin.poll(0)  # serves the error callbacks queued meanwhile
            if time.monotonic() - asked < 0.05:  # failed at once: do not spin
                time.sleep(0.05)
            refused = log.refused()
            if refused is not None:
                raise BrokerRefused(
                    f"Kafka broker at {bootstrap} refused this client: {refused}"
                ) from None
            if time.monotonic() >= deadline:
                reason = log.reason() or kafka_reason(exc)
                raise BrokerUnreachable(
                    f"Kafka broker at {bootstrap} unreachable after {timeout:g} s: {reason}"
                ) from None


def require_topics(metadata: Any, bootstrap: str, topics: list[str]) -> None:
    """Fail in one line, naming them, when some of ``topics`` do not exist on the cluster."""
    missing = [t for t in topics if t not in metadata.topics]
    if missing:
        raise PipelineError(
            f"Kafka topic{'s' if len(missing) > 1 else ''} {', '.join(missing)} missing on"
            f" {bootstrap}: create {'them' if len(missing) > 1 else 'it'} first"
            " (`retail-pipeline kafka up` does so on the local broker)"
        )
