"""Every Kafka client the pipeline builds gets the operator's librdkafka properties
(``RETAIL_KAFKA_CONFIG_FILE``, ``RETAIL_KAFKA_CONFIG_<NAME>``) under its own keys; the first
tests read the configurations the builders produce, the last ones use a real broker."""

from __future__ import annotations

import ast
import logging
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer

from retail_pipeline import kafka_config
from retail_pipeline.errors import PipelineError
from retail_pipeline.ingestion.kafka.client import (
    LIBRDKAFKA_LOGGER,
    ClientLog,
    admin_config,
    new_client,
)
from retail_pipeline.ingestion.kafka.consumer import (
    ConsumerSettings,
    KafkaBronzeConsumer,
    consumer_config,
    dead_letter_producer_config,
)
from retail_pipeline.ingestion.kafka.producer import produce_files, producer_config
from retail_pipeline.ingestion.kafka.status import status_consumer_config
from retail_pipeline.local import kafka_broker as broker
from retail_pipeline.warehouse import open_warehouse
from tests.cli.run import cli, one_error_line

ROOT = Path(__file__).resolve().parents[3]
INGESTION = ROOT / "src" / "retail_pipeline" / "ingestion"
SECRET = "tops3cret-value"
EXTRA = {"client.id": "retail-test", "socket.keepalive.enable": "true"}

BUILDERS: dict[str, Callable[[], dict[str, Any]]] = {
    "admin": lambda: admin_config("b:9092", ClientLog()),
    "consumer": lambda: consumer_config(ConsumerSettings(), "b:9092"),
    "dead-letter producer": lambda: dead_letter_producer_config("b:9092"),
    "producer": lambda: producer_config("b:9092"),
    "status consumer": lambda: status_consumer_config("b:9092"),
}


@pytest.fixture(autouse=True)
def operator_properties(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A properties file with a secret and a harmless tunable, and a variable over it."""
    for name in [n for n in os.environ if n.startswith("RETAIL_KAFKA_CONFIG_")]:
        monkeypatch.delenv(name)
    path = tmp_path / "client.properties"
    path.write_text(f"client.id=from-file\nsasl.password={SECRET}\n")
    path.chmod(0o600)
    monkeypatch.setenv("RETAIL_KAFKA_CONFIG_FILE", str(path))
    monkeypatch.setenv("RETAIL_KAFKA_CONFIG_CLIENT_ID", "retail-test")
    kafka_config.read_properties_file.cache_clear()
    yield
    kafka_config.read_properties_file.cache_clear()


@pytest.mark.parametrize("builder", sorted(BUILDERS))
def test_every_builder_adds_the_operators_properties(builder: str) -> None:
    config = BUILDERS[builder]()
    assert config["client.id"] == "retail-test" and config["sasl.password"] == SECRET
    assert config["bootstrap.servers"] == "b:9092"
    assert SECRET not in repr(config) and SECRET not in str(config)


def test_the_builders_keep_their_own_keys() -> None:
    consumer = consumer_config(ConsumerSettings(group_id="g", instance_id="i"), "b:9092")
    assert (consumer["group.id"], consumer["group.instance.id"]) == ("g", "i")
    assert consumer["enable.auto.commit"] is False and consumer["enable.partition.eof"] is True
    producer = producer_config("b:9092")
    assert (producer["enable.idempotence"], producer["acks"]) == (True, "all")
    assert dead_letter_producer_config("b:9092")["enable.idempotence"] is True
    assert status_consumer_config("b:9092")["group.id"] == "retail-status"


def test_the_operator_tunes_a_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RETAIL_KAFKA_CONFIG_LINGER_MS", "100")
    monkeypatch.setenv("RETAIL_KAFKA_CONFIG_FETCH_MAX_BYTES", "1048576")
    assert producer_config("b:9092")["linger.ms"] == "100"
    assert consumer_config(ConsumerSettings(), "b:9092")["fetch.max.bytes"] == "1048576"


def test_an_owned_key_reaches_no_builder(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RETAIL_KAFKA_CONFIG_ENABLE_IDEMPOTENCE", "false")
    for build in BUILDERS.values():
        with pytest.raises(PipelineError, match=r"enable\.idempotence cannot be set here"):
            build()


def test_librdkafka_refusing_a_property_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """No broker is needed: librdkafka checks its configuration when the client is made."""
    monkeypatch.setenv("RETAIL_KAFKA_CONFIG_NO_SUCH_PROPERTY", "1")
    with pytest.raises(PipelineError) as caught:
        new_client(Producer, producer_config("127.0.0.1:1"), logger=ClientLog())
    assert str(caught.value) == (
        "Kafka client for 127.0.0.1:1 not created: No such configuration property:"
        ' "no.such.property" (check RETAIL_KAFKA_CONFIG_FILE and the RETAIL_KAFKA_CONFIG_*'
        " variables)"
    )


def test_the_configurations_are_ones_librdkafka_takes() -> None:
    """The merged dicts, secrets and all, make real clients (nothing connects yet)."""
    consumer = new_client(Consumer, consumer_config(ConsumerSettings(), "127.0.0.1:1"))
    consumer.close()
    new_client(Producer, producer_config("127.0.0.1:1"), logger=ClientLog()).flush(0)


def test_librdkafka_quoting_a_secret_is_masked_in_the_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """librdkafka's configuration warnings quote values (``set to `...` but``)."""
    producer_config("b:9092")  # the configuration is read: its secrets are known
    with caplog.at_level(logging.DEBUG, logger=LIBRDKAFKA_LOGGER):
        ClientLog().log(logging.WARNING, "%s [%s] %s", "CONFWARN", "x", f"set to `{SECRET}`")
    assert [r.getMessage() for r in caplog.records] == ["CONFWARN [x] set to `***`"]


def test_every_client_in_ingestion_is_made_by_new_client() -> None:
    """A client made directly would miss the refusal's one line (its configuration still comes
    from a ``..._config`` builder, which the tests above read)."""
    direct = []
    for path in sorted(INGESTION.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id in {"Consumer", "Producer", "AdminClient"}
            ):
                direct.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert direct == []


# --- a real broker ---------------------------------------------------------------------------


def test_clients_with_extra_properties_produce_and_ingest(
    kafka_broker: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RETAIL_KAFKA_CONFIG_FILE")
    monkeypatch.setenv("RETAIL_KAFKA_CONFIG_CLIENT_ID", EXTRA["client.id"])
    monkeypatch.setenv("RETAIL_KAFKA_CONFIG_SOCKET_KEEPALIVE_ENABLE", "true")
    prefix = f"t{uuid.uuid4().hex[:8]}."
    topics = ["orders", "payments", "shipments", "dead_letter"]
    broker.ensure_topics(kafka_broker, [prefix + t for t in topics], partitions=1)
    events = tmp_path / "orders.ndjson"
    events.write_text('{"not": "an event"}\n')
    summary = produce_files([events], bootstrap=kafka_broker, topic_prefix=prefix)
    assert summary.delivered == 1
    settings = ConsumerSettings(
        bootstrap=kafka_broker, topic_prefix=prefix, group_id=f"{prefix}g", validation_workers=0
    )
    with open_warehouse(tmp_path / "wh.duckdb", target="duckdb") as warehouse:
        consumed = KafkaBronzeConsumer(warehouse, settings).run(until_caught_up=True)
    assert consumed.read == 1 and consumed.dead_lettered == 1


def test_a_property_librdkafka_refuses_is_one_line_from_status(
    kafka_broker: str, tmp_path: Path
) -> None:
    open_warehouse(tmp_path / "wh.duckdb", target="duckdb").close()
    result = cli(
        "status",
        warehouse=tmp_path / "wh.duckdb",
        cwd=tmp_path,
        RETAIL_KAFKA_BOOTSTRAP=kafka_broker,
        RETAIL_KAFKA_CONFIG_NO_SUCH_PROPERTY="1",
    )
    one_error_line(result, 'No such configuration property: "no.such.property"')
