"""Pytest fixtures for tests that need a real Kafka broker.

``kafka_broker`` (session) starts one broker for the whole run and yields its bootstrap servers;
``private_kafka_broker`` gives a test a broker of its own that it may stop and start again;
``sasl_ssl_kafka_broker`` (session, started on first use) is a broker whose client listener is
SASL_SSL with SCRAM-SHA-512, started as ``retail-pipeline kafka up --security sasl_ssl`` starts
it, and yields where it is and its client properties file.
Both share one jar cache (``retail_pipeline.local.kafka_broker.default_home()/libs``) and keep
their data under pytest's tmp dir. When the broker cannot start, the tests are skipped with the
reason, except under ``CI=true``, where they fail: CI must never skip Kafka tests silently.

Load it as a plugin, e.g. ``pytest_plugins = ["kafka_fixtures"]`` (see test_broker.py).
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

import pytest

from retail_pipeline.local import kafka_broker as broker
from tests.services import unavailable

PARTITIONS = 3


def broker_unavailable(reason: str) -> NoReturn:
    """Skip the test because Kafka broker cannot run here, or fail it under CI."""
    unavailable("Kafka broker", "Kafka tests", reason)


def free_port(*, avoid: int | None = None) -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (other than ``avoid``)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port: int = sock.getsockname()[1]
        if port != avoid:
            return port


def kafka_libs() -> Path:
    """The shared jar cache, fetched with Maven on first use; skips (fails in CI) if it can't."""
    try:
        return broker.ensure_jars(broker.default_home())
    except broker.BrokerError as exc:
        broker_unavailable(str(exc))


@dataclass
class LocalBroker:
    """A broker with its own home and ports, stopped and started again at will (same data)."""

    home: Path
    libs: Path
    port: int = field(default_factory=free_port)
    controller_port: int = 0
    partitions: int = PARTITIONS
    topics: tuple[str, ...] = broker.DEFAULT_TOPICS
    security: str = "plaintext"

    def __post_init__(self) -> None:
        if not self.controller_port:
            self.controller_port = free_port(avoid=self.port)

    @property
    def bootstrap_servers(self) -> str:
        """Where clients connect."""
        return f"127.0.0.1:{self.port}"

    def start(self) -> broker.BrokerInfo:
        """Start (or restart) the broker on the same ports and data dir; raises BrokerError."""
        return broker.start(
            self.home,
            port=self.port,
            controller_port=self.controller_port,
            partitions=self.partitions,
            topics=self.topics,
            libs=self.libs,
            die_with_parent=True,
            security=self.security,
        )

    def stop(self, *, graceful: bool = True) -> bool:
        """Stop it: SIGTERM, or SIGKILL at once when ``graceful`` is False (a crash)."""
        return broker.stop(self.home, graceful=graceful)


def start_or_give_up(home: Path, security: str = "plaintext") -> LocalBroker:
    """A started LocalBroker under ``home``, or skip (fail in CI) with the reason it can't run."""
    local = LocalBroker(home=home, libs=kafka_libs(), security=security)
    try:
        local.start()
    except broker.BrokerError as exc:
        broker_unavailable(str(exc))
    return local


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Bootstrap servers of a broker shared by the session, with the pipeline's topics created."""
    local = start_or_give_up(tmp_path_factory.mktemp("kafka-session"))
    try:
        yield local.bootstrap_servers
    finally:
        local.stop()


@pytest.fixture
def private_kafka_broker(tmp_path: Path) -> Iterator[LocalBroker]:
    """A started broker for one test only (restart and crash tests), stopped afterwards."""
    local = start_or_give_up(tmp_path / "kafka")
    try:
        yield local
    finally:
        local.stop(graceful=False)


@dataclass(frozen=True)
class SecuredBroker:
    """A running SASL_SSL broker: where it listens and what a client needs to log in."""

    bootstrap_servers: str
    home: Path
    port: int
    client_properties: Path
    """The librdkafka properties file ``kafka up --security sasl_ssl`` writes (0600)."""

    def properties(self) -> dict[str, str]:
        """The client properties, for admin clients made directly in a test."""
        found = broker.client_properties(self.home)
        assert found is not None, "the broker runs but has no client properties"
        return found


@pytest.fixture(scope="session")
def sasl_ssl_kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecuredBroker]:
    """One SASL_SSL broker for the session, started by the first test that asks for it:
    ``broker.start(..., security="sasl_ssl")``, what ``kafka up --security sasl_ssl`` calls
    (certificates by openssl, SCRAM users at format time, the pipeline's topics)."""
    local = start_or_give_up(tmp_path_factory.mktemp("kafka-sasl-ssl"), security="sasl_ssl")
    try:
        running = broker.status(local.home)
        assert running is not None and running.client_properties is not None
        yield SecuredBroker(
            local.bootstrap_servers, local.home, local.port, running.client_properties
        )
    finally:
        local.stop()
