"""Kafka failures: each gets one clear line, and no message is lost (issue 8).

Refused messages (over the producer's or the topic's size limit) go to the dead-letter topic
while the rest of the file is delivered; a broker that does not answer is one error line after
the connect timeout, for every command; librdkafka's own log stays off stderr; keys that are
not UTF-8 keep their bytes.
"""

from __future__ import annotations

import base64
import gzip
import logging
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import duckdb
import orjson
import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic
from hypothesis import given
from hypothesis import strategies as st

from retail_pipeline.errors import PipelineError
from retail_pipeline.ingestion.kafka.client import (
    LIBRDKAFKA_LOGGER,
    ClientLog,
    connect_timeout,
)
from retail_pipeline.ingestion.kafka.consumer import (
    ConsumerSettings,
    KafkaBronzeConsumer,
    _key_texts,
)
from retail_pipeline.ingestion.kafka.producer import DLQ_PREVIEW_BYTES, Delivered, produce_files
from retail_pipeline.ingestion.staging import escaped_bytes, escaped_text, payload_text
from retail_pipeline.warehouse.duckdb import DuckDBWarehouse
from tests.local.kafka_fixtures import LocalBroker, free_port
from tests.messages import ORDER
from tests.rss import run_measured

CLI = [sys.executable, "-m", "retail_pipeline.cli"]
TOPICS = ("orders", "payments", "shipments", "dead_letter")
kafka = pytest.mark.kafka


def make_topics(bootstrap: str, limits: dict[str, int] | None = None) -> str:
    """A fresh topic prefix with the four topics, some with a ``max.message.bytes`` limit."""
    prefix = f"f{uuid.uuid4().hex[:8]}."
    limits = limits or {}
    admin = AdminClient({"bootstrap.servers": bootstrap})
    new = [
        NewTopic(
            prefix + topic,
            num_partitions=1,
            replication_factor=1,
            config={"max.message.bytes": str(limits[topic])} if topic in limits else {},
        )
        for topic in TOPICS
    ]
    for future in admin.create_topics(new, operation_timeout=30, request_timeout=30).values():
        future.result(30)
    return prefix


def order_line(n: int, **extra: object) -> bytes:
    return orjson.dumps({**ORDER, "event_id": f"e-{n}", "order_id": f"O-{n}", **extra})


def write_lines(path: Path, lines: list[bytes]) -> Path:
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def read_topic(bootstrap: str, topic: str, expected: int, timeout: float = 60.0) -> list[object]:
    """Every message of ``topic`` (at least ``expected`` of them), from the beginning."""
    reader = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"read-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
        }
    )
    reader.subscribe([topic])
    got: list[object] = []
    deadline = time.monotonic() + timeout
    while len(got) < expected and time.monotonic() < deadline:
        msg = reader.poll(0.5)
        if msg is not None and msg.error() is None:
            got.append(msg)
    extra = reader.poll(1.0)  # nothing more than expected
    if extra is not None and extra.error() is None:
        got.append(extra)
    reader.close()
    return got


def consume_all(warehouse: Path, bootstrap: str, prefix: str) -> None:
    wh = DuckDBWarehouse(warehouse)
    settings = ConsumerSettings(bootstrap=bootstrap, topic_prefix=prefix, group_id=f"g-{prefix}")
    KafkaBronzeConsumer(wh, settings).run(until_caught_up=True, max_seconds=300)
    wh.close()


def cli(*args: str, timeout: float = 300, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {
        k: v for k, v in os.environ.items() if not k.startswith(("RETAIL_KAFKA", "RETAIL_TOPIC"))
    }
    return subprocess.run(
        [*CLI, *args],
        env={**environment, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


# -- 1. messages Kafka refuses -----------------------------------------------------------


@kafka
def test_a_line_over_the_producer_limit_is_dead_lettered_and_the_rest_delivered(
    kafka_broker: str, tmp_path: Path
) -> None:
    prefix = make_topics(kafka_broker)
    big = order_line(99, source_system="x" * 1_100_000)
    lines = [order_line(1), order_line(2), big, order_line(3), b"{not json", order_line(4)]
    events = write_lines(tmp_path / "orders.ndjson", lines)

    run = cli("produce", "--bootstrap", kafka_broker, "--topic-prefix", prefix, str(events))

    assert run.returncode == 0, run.stderr
    assert run.stderr == ""  # neither a traceback nor librdkafka's log
    summary = run.stdout.strip()
    assert "\n" not in summary
    assert "sent 6 / delivered 5 / dead-lettered 1 /" in summary
    assert f"to topic {prefix}dead_letter: orders.ndjson line 3 ({len(big):,} bytes" in summary
    assert "message.max.bytes" in summary

    [letter] = read_topic(kafka_broker, prefix + "dead_letter", expected=1)
    headers = dict(letter.headers())  # type: ignore[attr-defined]
    assert headers["source_topic"] == (prefix + "orders").encode()
    assert headers["source_file"] == str(events.resolve()).encode()
    assert headers["source_line"] == b"3"
    assert headers["original_size"] == str(len(big)).encode()
    assert headers["truncated"] == b"true"
    assert b"message.max.bytes" in headers["reason"]
    assert letter.value() == big[:DLQ_PREVIEW_BYTES]  # type: ignore[attr-defined]
    assert letter.key() == b"O-99"  # type: ignore[attr-defined]

    consume_all(tmp_path / "wh.duckdb", kafka_broker, prefix)
    con = duckdb.connect(str(tmp_path / "wh.duckdb"), read_only=True)
    loaded = con.execute("select _offset, payload from bronze.order_events").fetchall()
    dead = con.execute("select raw_payload from bronze.dead_letter").fetchall()
    con.close()
    assert sorted(p for _, p in loaded) == sorted(lines[i].decode() for i in (0, 1, 3, 5))
    assert dead == [("{not json",)]


@kafka
def test_a_line_over_the_record_cap_is_never_read_whole_by_produce(
    kafka_broker: str, tmp_path: Path
) -> None:
    """A 150 MB line (over RETAIL_MAX_RECORD_BYTES): produce keeps its memory to the read size
    (the old reader held the line twice: 733 MiB peak, 126 MiB of it imports), dead-letters
    the line's first bytes with its size and position, and delivers the lines around it."""
    prefix = make_topics(kafka_broker)
    huge = 150_000_000
    events = tmp_path / "orders.ndjson"
    with events.open("wb") as out:
        out.write(order_line(1) + b"\n" + b'{"pad": "')
        for _ in range(huge // 1_000_000):
            out.write(b"x" * 1_000_000)
        out.write(b'"}\n' + order_line(2) + b"\n")
    size = events.stat().st_size - len(order_line(1)) - len(order_line(2)) - 3
    run = run_measured(
        ["produce", "--bootstrap", kafka_broker, "--topic-prefix", prefix, str(events)]
    )
    assert run.returncode == 0, run.stderr
    summary = run.stdout.strip()
    assert "sent 3 / delivered 2 / dead-lettered 1 /" in summary
    assert f"orders.ndjson line 2 ({size:,} bytes" in summary
    assert run.peak_mib < 300, f"peak RSS {run.peak_mib:.0f} MiB"

    [letter] = read_topic(kafka_broker, prefix + "dead_letter", expected=1)
    headers = dict(letter.headers())  # type: ignore[attr-defined]
    assert headers["source_line"] == b"2"
    assert headers["original_size"] == str(size).encode()
    assert headers["truncated"] == b"true"
    assert b"RETAIL_MAX_RECORD_BYTES" in headers["reason"]
    assert letter.value() == (b'{"pad": "' + b"x" * DLQ_PREVIEW_BYTES)[:DLQ_PREVIEW_BYTES]  # type: ignore[attr-defined]


@kafka
def test_produce_reads_a_gzip_file_as_its_ndjson(kafka_broker: str, tmp_path: Path) -> None:
    """``check_file`` accepts gzip NDJSON, so produce sends its lines, not compressed bytes."""
    prefix = make_topics(kafka_broker)
    lines = [order_line(1), order_line(2)]
    events = tmp_path / "orders.ndjson.gz"
    events.write_bytes(gzip.compress(b"\n".join(lines) + b"\n"))

    run = cli("produce", "--bootstrap", kafka_broker, "--topic-prefix", prefix, str(events))

    assert run.returncode == 0, run.stderr
    assert "sent 2 / delivered 2 / dead-lettered 0 /" in run.stdout
    got = read_topic(kafka_broker, prefix + "orders", expected=2)
    assert sorted(m.value() for m in got) == sorted(lines)  # type: ignore[attr-defined]


def padded_line(n: int, size: int) -> bytes:
    """An order event with ``size`` incompressible bytes, so lz4 cannot shrink it."""
    return order_line(n, source_system=base64.b64encode(os.urandom(size * 3 // 4)).decode())


@kafka
def test_a_message_the_broker_refuses_is_sent_again_alone_then_dead_lettered(
    kafka_broker: str, tmp_path: Path
) -> None:
    prefix = make_topics(kafka_broker, {"orders": 4000})
    big = padded_line(50, 20_000)
    lines = [order_line(n) for n in range(1, 21)]
    events = write_lines(tmp_path / "orders.ndjson", [*lines[:10], big, *lines[10:]])
    delivered: list[Delivered] = []

    summary = produce_files(
        [events], bootstrap=kafka_broker, topic_prefix=prefix, on_delivered=delivered.append
    )

    # The broker refuses the whole batch the big message is in; the others get through alone.
    assert sorted(d.value for d in delivered) == sorted(lines)
    assert (summary.sent, summary.delivered, summary.dead_lettered) == (21, 20, 1)
    [dead] = summary.dead_letters
    assert (dead.source_line, dead.size, dead.topic) == (11, len(big), prefix + "orders")
    assert "refused by the broker even in a batch of its own" in dead.reason
    assert "Message size too large" in dead.reason
    [letter] = read_topic(kafka_broker, prefix + "dead_letter", expected=1)
    assert letter.value() == big  # type: ignore[attr-defined]  # under the preview size: whole
    assert dict(letter.headers())["truncated"] == b"false"  # type: ignore[attr-defined]


@kafka
def test_a_message_no_topic_takes_fails_the_run_after_the_rest_is_delivered(
    kafka_broker: str, tmp_path: Path
) -> None:
    prefix = make_topics(kafka_broker, {"orders": 4000, "dead_letter": 4000})
    big = padded_line(50, 20_000)
    lines = [order_line(n) for n in range(1, 11)]
    events = write_lines(tmp_path / "orders.ndjson", [*lines[:5], big, *lines[5:]])
    delivered: list[Delivered] = []

    with pytest.raises(PipelineError) as caught:
        produce_files(
            [events], bootstrap=kafka_broker, topic_prefix=prefix, on_delivered=delivered.append
        )

    message = str(caught.value)
    assert message.startswith("1 of 11 messages not delivered: orders.ndjson line 6 ")
    assert f"the dead-letter topic {prefix}dead_letter refused it too" in message
    assert "\n" not in message
    assert sorted(d.value for d in delivered) == sorted(lines)


@kafka
def test_missing_topics_are_named_before_anything_is_sent(
    kafka_broker: str, tmp_path: Path
) -> None:
    events = write_lines(tmp_path / "orders.ndjson", [order_line(1)])
    with pytest.raises(PipelineError, match=r"topics nope\.orders, .*nope\.dead_letter missing"):
        produce_files([events], bootstrap=kafka_broker, topic_prefix="nope.")


# -- 2. and 4. a broker that does not answer ---------------------------------------------


@pytest.mark.parametrize("command", ["produce", "ingest", "status"])
def test_no_broker_is_one_error_line_after_the_connect_timeout(
    command: str, tmp_path: Path
) -> None:
    port = free_port()
    warehouse = tmp_path / "wh.duckdb"
    DuckDBWarehouse(warehouse).close()
    events = write_lines(tmp_path / "orders.ndjson", [order_line(1)])
    args = {
        "produce": ["produce", str(events)],
        "ingest": ["ingest", "--kafka", "--until-caught-up", "-w", str(warehouse)],
        "status": ["status", "-w", str(warehouse)],
    }[command]

    run = cli(*args, "--bootstrap", f"127.0.0.1:{port}", RETAIL_KAFKA_CONNECT_TIMEOUT="2")

    assert run.returncode == 1
    [line] = run.stderr.splitlines()
    unknown = "broker side unknown ('?'): " if command == "status" else ""
    assert line.startswith(
        f"error: {unknown}Kafka broker at 127.0.0.1:{port} unreachable after 2 s: "
    )
    assert "Connection refused" in line
    if command == "status":  # the warehouse side is still shown
        assert "bronze.order_events" in run.stdout
    else:
        assert run.stdout == ""


@kafka
def test_status_with_the_broker_up_shows_lag_and_exits_0(kafka_broker: str, tmp_path: Path) -> None:
    prefix = make_topics(kafka_broker)
    producer = Producer({"bootstrap.servers": kafka_broker})
    producer.produce(prefix + "orders", value=order_line(1))
    producer.flush(30)
    warehouse = tmp_path / "wh.duckdb"
    DuckDBWarehouse(warehouse).close()

    run = cli("status", "--bootstrap", kafka_broker, "--topic-prefix", prefix, "-w", str(warehouse))

    assert run.returncode == 0, run.stderr
    assert run.stderr == ""
    assert f"{prefix}orders" in run.stdout and "?" not in run.stdout


def test_the_connect_timeout_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RETAIL_KAFKA_CONNECT_TIMEOUT", raising=False)
    assert connect_timeout() == 10.0
    monkeypatch.setenv("RETAIL_KAFKA_CONNECT_TIMEOUT", "2.5")
    assert connect_timeout() == 2.5
    for bad in ("soon", "0", "-1", "nan"):
        monkeypatch.setenv("RETAIL_KAFKA_CONNECT_TIMEOUT", bad)
        with pytest.raises(PipelineError, match="RETAIL_KAFKA_CONNECT_TIMEOUT"):
            connect_timeout()


def test_librdkafka_log_goes_one_level_down_to_python_logging(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = ClientLog()
    with caplog.at_level(logging.DEBUG, logger=LIBRDKAFKA_LOGGER):
        log.log(logging.ERROR, "%s [%s] %s", "FAIL", "rdkafka#producer-1", "Connect failed")
        log.log(logging.WARNING, "%s [%s] %s", "GETPID", "rdkafka#producer-1", "Failed to acquire")
        log.log(logging.INFO, "%s", "chatter")
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.INFO, "FAIL [rdkafka#producer-1] Connect failed"),
        (logging.INFO, "GETPID [rdkafka#producer-1] Failed to acquire"),
        (logging.DEBUG, "chatter"),
    ]


@kafka
def test_produce_on_a_fresh_broker_prints_only_its_summary(
    private_kafka_broker: LocalBroker, tmp_path: Path
) -> None:
    # A new broker has no transaction coordinator yet: the idempotent producer's first
    # "Failed to acquire idempotence PID ... retrying" must stay in the log, off stderr.
    events = write_lines(tmp_path / "orders.ndjson", [order_line(n) for n in range(50)])
    run = cli("produce", "--bootstrap", private_kafka_broker.bootstrap_servers, str(events))
    assert run.returncode == 0, run.stderr
    assert run.stderr == ""
    assert run.stdout.startswith("sent 50 / delivered 50 / dead-lettered 0 /")


# -- 3. keys that are not UTF-8 ----------------------------------------------------------


@given(st.one_of(st.binary(max_size=40), st.text(max_size=20).map(str.encode)))
def test_key_and_payload_text_is_lossless(key: bytes) -> None:
    text = escaped_text(key)
    assert escaped_bytes(text) == key
    if b"\\" not in key and _is_utf8(key):
        assert text == key.decode()  # a UTF-8 key (every order_id) is stored as it is
    # A dead letter's payload: UTF-8 as it is, else escaped (its reason says it is not UTF-8).
    payload = payload_text(key)
    assert payload == key.decode() if _is_utf8(key) else escaped_bytes(payload) == key


_KEYS = st.one_of(
    st.none(),
    st.binary(max_size=12),
    st.text(max_size=8).map(str.encode),
    st.sampled_from([b"\\", b"O-1\\x41", b"\xc3\xa9\\"]),  # backslashes: escaped
)


@given(st.lists(_KEYS))
def test_a_batch_of_keys_becomes_the_text_of_each_key(keys: list[bytes | None]) -> None:
    """The consumer turns a batch's keys to ``_key`` text in one Arrow pass when it can."""
    texts = _key_texts(keys).to_pylist()
    assert texts == [None if key is None else escaped_text(key) for key in keys]


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode()
    except UnicodeDecodeError:
        return False
    return True


@kafka
def test_a_key_that_is_not_utf8_keeps_its_bytes_in_bronze_and_the_dead_letter_topic(
    kafka_broker: str, tmp_path: Path
) -> None:
    prefix = make_topics(kafka_broker)
    poison_key, event_key = b"\xff\xfe\\k\x80", b"O-\xc3\xa9\xff"
    poison = b'{"event_id": "\\xff", \xff}'  # the text \xff and the byte 0xff
    producer = Producer({"bootstrap.servers": kafka_broker})
    producer.produce(prefix + "orders", value=poison, key=poison_key)
    producer.produce(prefix + "orders", value=order_line(1), key=event_key)
    producer.flush(30)

    consume_all(tmp_path / "wh.duckdb", kafka_broker, prefix)

    con = duckdb.connect(str(tmp_path / "wh.duckdb"), read_only=True)
    [(dead_key, payload, reason)] = con.execute(
        "select _key, raw_payload, reason from bronze.dead_letter"
    ).fetchall()
    [(event_key_text,)] = con.execute("select _key from bronze.order_events").fetchall()
    con.close()
    assert dead_key == "\\xff\\xfe\\\\k\\x80"
    assert escaped_bytes(dead_key) == poison_key
    assert escaped_bytes(event_key_text) == event_key
    assert "not valid UTF-8" in reason
    assert escaped_bytes(payload) == poison
    [letter] = read_topic(kafka_broker, prefix + "dead_letter", expected=1)
    assert letter.key() == poison_key  # type: ignore[attr-defined]


@kafka
def test_offsets_the_client_cannot_read_yet_are_retried_then_one_error_line(
    kafka_broker: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a broker restart an assignment may ask for the offsets of a partition the client's
    metadata does not hold yet ("Local: Unknown partition"): retried for a while, then one line
    naming topic and partition (it used to end the consumer with librdkafka's traceback)."""
    from confluent_kafka import TopicPartition

    from retail_pipeline.ingestion.kafka import consumer as consumer_module

    monkeypatch.setattr(consumer_module, "WATERMARK_SECONDS", 1.5)
    prefix = make_topics(kafka_broker)
    wh = DuckDBWarehouse(tmp_path / "wh.duckdb")
    settings = ConsumerSettings(bootstrap=kafka_broker, topic_prefix=prefix, group_id=prefix)
    loader = KafkaBronzeConsumer(wh, settings)
    try:
        assert loader._watermarks(TopicPartition(prefix + "orders", 0), "here") == (0, 0)
        started = time.monotonic()
        with pytest.raises(PipelineError) as raised:
            loader._watermarks(TopicPartition(prefix + "orders", 7), "topic orders partition 7")
        assert 1.0 <= time.monotonic() - started < 10, "not retried for WATERMARK_SECONDS"
        message = str(raised.value)
        assert "\n" not in message and "topic orders partition 7" in message
        assert "Unknown partition" in message, message
    finally:
        loader.close()
        wh.close()
