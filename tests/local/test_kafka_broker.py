"""The local Kafka broker: it starts, serves the pipeline's topics, and keeps data over restarts."""

from __future__ import annotations

import importlib
import socket
import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka.admin import AdminClient

from retail_pipeline.local import kafka_broker as broker

# The fixtures live beside this file: load them as a plugin under the name this directory
# imports as (a package when tests/ has __init__.py files, else a plain sys.path entry).
_FIXTURES = f"{__package__}.kafka_fixtures" if __package__ else "kafka_fixtures"
pytest.register_assert_rewrite(_FIXTURES)
pytest_plugins = [_FIXTURES]
kafka_fixtures = importlib.import_module(_FIXTURES)
PARTITIONS: int = kafka_fixtures.PARTITIONS


def produce(bootstrap_servers: str, topic: str, messages: dict[str, str]) -> None:
    """Send ``messages`` (key -> value) with acks=all and wait until every one is acknowledged."""
    failures: list[str] = []

    def on_delivery(error: object, _message: object) -> None:
        if error is not None:
            failures.append(str(error))

    producer = Producer({"bootstrap.servers": bootstrap_servers, "acks": "all"})
    for key, value in messages.items():
        producer.produce(topic, key=key, value=value, on_delivery=on_delivery)
    assert producer.flush(30) == 0, "messages still in flight after 30s"
    assert failures == []


def consume_all(
    bootstrap_servers: str, topic: str, expected: int, timeout: float = 60.0
) -> dict[str, str]:
    """Read ``topic`` from the beginning with a new consumer group until ``expected`` messages."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap_servers,
            "group.id": f"test-{uuid.uuid4()}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    received: dict[str, str] = {}
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + timeout
        while len(received) < expected and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None:
                continue
            if message.error() is not None:
                raise KafkaException(message.error())
            received[message.key().decode()] = message.value().decode()
    finally:
        consumer.close()
    return received


def partition_counts(bootstrap_servers: str) -> dict[str, int]:
    metadata = AdminClient({"bootstrap.servers": bootstrap_servers}).list_topics(timeout=30)
    return {name: len(topic.partitions) for name, topic in metadata.topics.items()}


@pytest.mark.kafka
def test_pipeline_topics_exist_with_the_configured_partitions(kafka_broker: str) -> None:
    counts = partition_counts(kafka_broker)
    assert {name: counts.get(name) for name in broker.DEFAULT_TOPICS} == {
        name: PARTITIONS for name in broker.DEFAULT_TOPICS
    }


@pytest.mark.kafka
def test_messages_produced_are_consumed_back(kafka_broker: str) -> None:
    topic = f"test_round_trip_{uuid.uuid4().hex[:8]}"
    broker.ensure_topics(kafka_broker, [topic], partitions=PARTITIONS)
    messages = {f"order-{i}": f'{{"n": {i}}}' for i in range(25)}

    produce(kafka_broker, topic, messages)

    assert consume_all(kafka_broker, topic, expected=len(messages)) == messages


@pytest.mark.kafka
def test_ensure_topics_is_idempotent(kafka_broker: str) -> None:
    broker.ensure_topics(kafka_broker, broker.DEFAULT_TOPICS, partitions=PARTITIONS)
    broker.ensure_topics(kafka_broker, broker.DEFAULT_TOPICS, partitions=PARTITIONS)

    counts = partition_counts(kafka_broker)
    assert all(counts[name] == PARTITIONS for name in broker.DEFAULT_TOPICS)


@pytest.mark.kafka
@pytest.mark.parametrize("graceful", [True, False], ids=["sigterm", "sigkill"])
def test_restart_on_the_same_data_dir_keeps_messages(
    private_kafka_broker: kafka_fixtures.LocalBroker, graceful: bool
) -> None:
    local = private_kafka_broker
    first = broker.status(local.home)
    assert first is not None and first.answering
    messages = {f"payment-{i}": f"v{i}" for i in range(20)}
    produce(local.bootstrap_servers, "payments", messages)

    assert local.stop(graceful=graceful) is True
    assert broker.status(local.home) is None
    again = local.start()

    assert again.reused is False
    assert again.pid != first.pid
    assert again.data_dir == first.data_dir
    assert consume_all(local.bootstrap_servers, "payments", expected=len(messages)) == messages


@pytest.mark.kafka
def test_start_returns_the_running_broker(private_kafka_broker: kafka_fixtures.LocalBroker) -> None:
    running = broker.status(private_kafka_broker.home)
    assert running is not None

    info = private_kafka_broker.start()

    assert info.reused is True
    assert info.pid == running.pid
    assert info.bootstrap_servers == private_kafka_broker.bootstrap_servers


def test_stop_and_status_without_a_broker(tmp_path: Path) -> None:
    assert broker.status(tmp_path) is None
    assert broker.stop(tmp_path) is False
    assert broker.stop(tmp_path / "missing") is False


def test_stale_pid_file_is_ignored_and_cleared(tmp_path: Path) -> None:
    (tmp_path / "broker.pid").write_text("999999999\n")
    (tmp_path / "broker.json").write_text('{"port": 1}\n')

    assert broker.status(tmp_path) is None
    assert broker.stop(tmp_path) is False
    assert not (tmp_path / "broker.pid").exists()


def test_missing_java_is_a_one_line_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "kafka_2.13-0.0.0.jar").touch()
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(broker.BrokerError, match="java not found") as caught:
        broker.start(tmp_path / "home", libs=tmp_path)
    assert "\n" not in str(caught.value)


def test_missing_pom_is_a_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(broker.BrokerError, match="pom not found"):
        broker.ensure_jars(tmp_path, pom=tmp_path / "nope.xml")


@pytest.mark.parametrize("version", ["11.0.22", "1.8.0_392"])
def test_old_java_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, version: str) -> None:
    java = tmp_path / "jdk" / "bin" / "java"
    java.parent.mkdir(parents=True)
    java.write_text(f"#!/bin/sh\necho 'openjdk version \"{version}\" 2024-01-16' >&2\n")
    java.chmod(0o755)
    (tmp_path / "kafka_2.13-0.0.0.jar").touch()
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "jdk"))
    with pytest.raises(broker.BrokerError, match="needs Java 17 or newer"):
        broker.start(tmp_path / "home", libs=tmp_path)


def test_missing_maven_is_a_one_line_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pom = tmp_path / "pom.xml"
    pom.write_text("<project/>")
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(broker.BrokerError, match="mvn not found"):
        broker.ensure_jars(tmp_path / "home", pom=pom)


def test_port_in_use_is_refused_before_launching(tmp_path: Path) -> None:
    (tmp_path / "kafka_2.13-0.0.0.jar").touch()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(broker.BrokerError, match=f"port {port} .* already in use"):
            broker.start(tmp_path / "home", port=port, libs=tmp_path)
    assert broker.status(tmp_path / "home") is None


@pytest.mark.kafka
def test_kafka_up_creates_the_topics_with_the_topic_prefix(
    private_kafka_broker: kafka_fixtures.LocalBroker,
) -> None:
    """`kafka up` names its topics as produce and ingest --kafka do: with RETAIL_TOPIC_PREFIX set,
    it created `orders` and the rest, and `ingest --kafka` then found no topics."""
    import os
    import subprocess
    import sys

    env = {
        **os.environ,
        "RETAIL_KAFKA_HOME": str(private_kafka_broker.home),
        "RETAIL_TOPIC_PREFIX": "staging.",
    }
    done = subprocess.run(
        [sys.executable, "-m", "retail_pipeline.cli", "kafka", "up"],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "already running" in done.stdout
    assert "topics: staging.orders, staging.payments, staging.shipments, staging.dead_letter" in (
        done.stdout
    )
    admin = AdminClient({"bootstrap.servers": private_kafka_broker.bootstrap_servers})
    topics = set(admin.list_topics(timeout=30).topics)
    assert {f"staging.{t}" for t in broker.DEFAULT_TOPICS} <= topics
