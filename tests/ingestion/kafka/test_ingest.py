"""Kafka → Bronze through a real local broker: exactly once, nothing lost, poison tolerated."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import duckdb
import pytest
from confluent_kafka import Consumer, Producer

from retail_pipeline.ingestion.kafka.consumer import (
    ConsumerSettings,
    KafkaBronzeConsumer,
    TopicResetError,
)
from retail_pipeline.ingestion.kafka.producer import Delivered, produce_files
from retail_pipeline.local import kafka_broker as broker
from retail_pipeline.simulation import FaultRates, generate
from retail_pipeline.warehouse.duckdb import DuckDBWarehouse
from tests.events.reference import reference_reason

pytestmark = pytest.mark.kafka
TOPICS = ("orders", "payments", "shipments", "dead_letter")
CLI = [sys.executable, "-m", "retail_pipeline.cli"]

LANDED_SQL = """
    select _topic, _partition, _offset, payload::varchar from bronze.order_events
    union all select _topic, _partition, _offset, payload::varchar from bronze.payment_events
    union all select _topic, _partition, _offset, payload::varchar from bronze.shipment_events
"""
DEAD_SQL = "select _topic, _partition, _offset, reason from bronze.dead_letter"


def fresh_prefix(bootstrap: str, partitions: int = 3) -> str:
    prefix = f"t{uuid.uuid4().hex[:8]}."
    broker.ensure_topics(bootstrap, [prefix + t for t in TOPICS], partitions=partitions)
    return prefix


def produce(sim: Path, bootstrap: str, prefix: str) -> list[Delivered]:
    delivered: list[Delivered] = []
    files = sorted((sim / "events").glob("*.ndjson"))
    produce_files(files, bootstrap=bootstrap, topic_prefix=prefix, on_delivered=delivered.append)
    return delivered


def landed(path: Path) -> tuple[list[tuple[str, int, int, str]], list[tuple[str, int, int, str]]]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.execute(LANDED_SQL).fetchall(), con.execute(DEAD_SQL).fetchall()
    finally:
        con.close()


def is_valid(value: bytes) -> bool:
    """The independent plain-Python reference's verdict."""
    return reference_reason(value) is None


def consume(path: Path, bootstrap: str, prefix: str, **settings: object) -> None:
    wh = DuckDBWarehouse(path, exclusive=False)
    config = ConsumerSettings(
        bootstrap=bootstrap, topic_prefix=prefix, group_id=f"g-{prefix}", **settings
    )
    KafkaBronzeConsumer(wh, config).run(until_caught_up=True, max_seconds=300)


def assert_exactly_once(path: Path, delivered: list[Delivered], prefix: str) -> None:
    good, dead = landed(path)
    keys = [(t, p, o) for t, p, o, _ in good] + [(t, p, o) for t, p, o, _ in dead]
    assert len(keys) == len(set(keys)), "a message was written twice"
    produced = {(d.topic.removeprefix(prefix), d.partition, d.offset): d.value for d in delivered}
    assert set(keys) == set(produced), "lost or unexpected messages"
    for topic, partition, offset, payload in good:
        assert payload.encode() == produced[(topic, partition, offset)]


def assert_valid_lines_landed(warehouse: Path, sim: Path, malformed: int) -> None:
    """Bronze holds exactly the simulation's valid event lines, payload for payload, and the
    dead-letter table the ``malformed`` ones the producer counted (some)."""
    good, dead = landed(warehouse)
    valid_in_files = sorted(
        line.decode()
        for path in (sim / "events").glob("*.ndjson")
        for line in path.read_bytes().split(b"\n")
        if line and is_valid(line)
    )
    assert sorted(payload for *_, payload in good) == valid_in_files
    assert len(dead) == malformed > 0


def test_simulation_round_trips_message_for_message(kafka_broker: str, tmp_path: Path) -> None:
    sim = tmp_path / "sim"
    summary = generate(sim, days=3, orders_per_day=200, seed=21, faults=FaultRates())
    prefix = fresh_prefix(kafka_broker)
    delivered = produce(sim, kafka_broker, prefix)
    assert len(delivered) == summary.lines
    consume(tmp_path / "wh.duckdb", kafka_broker, prefix)
    assert_exactly_once(tmp_path / "wh.duckdb", delivered, prefix)

    assert_valid_lines_landed(tmp_path / "wh.duckdb", sim, summary.malformed)
    key_topics = {d.topic for d in delivered}
    assert key_topics <= {prefix + t for t in TOPICS}


def test_keys_are_order_ids_so_an_order_stays_in_one_partition(
    kafka_broker: str, tmp_path: Path
) -> None:
    sim = tmp_path / "sim"
    generate(sim, days=2, orders_per_day=100, seed=4)
    prefix = fresh_prefix(kafka_broker)
    produce(sim, kafka_broker, prefix)
    consume(tmp_path / "wh.duckdb", kafka_broker, prefix)
    con = duckdb.connect(str(tmp_path / "wh.duckdb"), read_only=True)
    spread = con.execute(
        "select _key, count(distinct _partition) from bronze.order_events group by 1"
        " having count(distinct _partition) > 1"
    ).fetchall()
    keyed = con.execute(
        "select count(*) from bronze.order_events where _key = (payload->>'$.order_id')"
    ).fetchone()
    total = con.execute("select count(*) from bronze.order_events").fetchone()
    con.close()
    assert spread == []
    assert keyed == total


def test_poison_messages_go_to_dead_letter_table_and_topic(
    kafka_broker: str, tmp_path: Path
) -> None:
    prefix = fresh_prefix(kafka_broker, partitions=1)
    producer = Producer({"bootstrap.servers": kafka_broker})
    poison = [b"{not json", b"\xff\xfe", b'{"event_type": "order_created"}', b""]
    for value in poison:
        producer.produce(prefix + "orders", value=value, key=b"k")
    producer.flush(30)
    consume(tmp_path / "wh.duckdb", kafka_broker, prefix)
    _, dead = landed(tmp_path / "wh.duckdb")
    assert sorted(o for _, _, o, _ in dead) == [0, 1, 2, 3]
    assert all(t == "orders" and p == 0 and reason for t, p, _, reason in dead)

    reader = Consumer(
        {
            "bootstrap.servers": kafka_broker,
            "group.id": f"dlq-{prefix}",
            "auto.offset.reset": "earliest",
        }
    )
    reader.subscribe([prefix + "dead_letter"])
    got = []
    deadline = time.monotonic() + 60
    while len(got) < len(poison) and time.monotonic() < deadline:
        msg = reader.poll(0.5)
        if msg is not None and msg.error() is None:
            got.append(dict(msg.headers() or []))
    reader.close()
    assert sorted(int(h["source_offset"]) for h in got) == [0, 1, 2, 3]
    assert all(h["source_topic"] == (prefix + "orders").encode() and h["reason"] for h in got)


def test_transaction_markers_leave_offset_gaps_and_caught_up_still_ends(
    kafka_broker: str, tmp_path: Path
) -> None:
    import orjson

    from tests.messages import PAYMENT

    prefix = fresh_prefix(kafka_broker, partitions=1)
    producer = Producer({"bootstrap.servers": kafka_broker, "transactional.id": f"tx-{prefix}"})
    producer.init_transactions(30)
    sent = 0
    for round_ in range(3):
        producer.begin_transaction()
        for i in range(5):
            event = {**PAYMENT, "event_id": f"e-{round_}-{i}"}
            producer.produce(prefix + "payments", value=orjson.dumps(event), key=b"O-1")
            sent += 1
        producer.commit_transaction(30)
    producer.begin_transaction()
    producer.produce(prefix + "payments", value=orjson.dumps({**PAYMENT, "event_id": "x"}))
    producer.abort_transaction(30)

    consume(tmp_path / "wh.duckdb", kafka_broker, prefix)
    good, dead = landed(tmp_path / "wh.duckdb")
    offsets = sorted(o for _, _, o, _ in good)
    assert len(offsets) == sent and dead == []
    assert offsets[-1] > sent - 1, "commit markers must have left gaps in the offsets"
    assert "x" not in {orjson.loads(p)["event_id"] for *_, p in good}


def test_recreated_topic_is_refused_not_skipped(kafka_broker: str, tmp_path: Path) -> None:
    from confluent_kafka.admin import AdminClient

    sim = tmp_path / "sim"
    generate(sim, days=1, orders_per_day=50, seed=8)
    prefix = fresh_prefix(kafka_broker)
    produce(sim, kafka_broker, prefix)
    consume(tmp_path / "wh.duckdb", kafka_broker, prefix)

    admin = AdminClient({"bootstrap.servers": kafka_broker})
    for future in admin.delete_topics([prefix + "orders"]).values():
        future.result(30)
    deadline = time.monotonic() + 60
    while True:  # deletion completes asynchronously; recreate once the name is free
        try:
            broker.ensure_topics(kafka_broker, [prefix + "orders"], partitions=3)
            break
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    with pytest.raises(TopicResetError, match="recreated"):
        consume(tmp_path / "wh.duckdb", kafka_broker, prefix)


def test_sigterm_finishes_the_batch_and_exits_cleanly(kafka_broker: str, tmp_path: Path) -> None:
    sim = tmp_path / "sim"
    generate(sim, days=2, orders_per_day=300, seed=9, faults=FaultRates())
    prefix = fresh_prefix(kafka_broker)
    delivered = produce(sim, kafka_broker, prefix)
    warehouse = tmp_path / "wh.duckdb"
    env = {**os.environ, "RETAIL_WAREHOUSE": str(warehouse)}
    cmd = [
        *CLI,
        "ingest",
        "--kafka",
        "--bootstrap",
        kafka_broker,
        "--group",
        f"g-{prefix}",
        "--batch-size",
        "500",
        "--shared",
        "--linger-ms",
        "50",
    ]
    env["RETAIL_TOPIC_PREFIX"] = prefix
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (warehouse.exists() and _any_rows(warehouse)):
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err.decode()
    assert b"stopped" in out
    # each dead letter it names is topic/partition/offset: reason (the first five; the topic
    # as Bronze stores it, without the prefix)
    found = re.search(rb"dead-lettered (\d[\d,]*)", out)
    assert found, out
    dead = int(found.group(1).replace(b",", b""))
    named = [line for line in err.decode().splitlines() if line.startswith("dead letter: ")]
    assert len(named) == min(dead, 5), err.decode()
    for line in named:
        assert re.match(r"dead letter: (orders|payments|shipments)/\d+/\d+: \S", line), line
    consume(warehouse, kafka_broker, prefix)
    assert_exactly_once(warehouse, delivered, prefix)


def _any_rows(warehouse: Path) -> bool:
    try:
        con = duckdb.connect(str(warehouse), read_only=True)
    except duckdb.Error:
        return False
    try:
        row = con.execute("select count(*) from bronze._positions").fetchone()
        return bool(row and row[0])
    except duckdb.Error:
        return False
    finally:
        con.close()


def test_a_batch_is_bounded_by_bytes_not_only_by_count(kafka_broker: str, tmp_path: Path) -> None:
    """Twelve 300 KB messages with a 1 MiB byte budget: at most four to a batch, so at least
    three batches, where a count-only batch (30,000) takes them all at once."""
    prefix = fresh_prefix(kafka_broker, partitions=1)
    producer = Producer({"bootstrap.servers": kafka_broker})
    big = b'{"event_type": "order_created", "pad": "' + b"x" * 300_000 + b'"}'
    for _ in range(12):
        producer.produce(prefix + "orders", value=big, key=b"k")
    producer.flush(30)
    wh = DuckDBWarehouse(tmp_path / "wh.duckdb", exclusive=False)
    config = ConsumerSettings(
        bootstrap=kafka_broker,
        topic_prefix=prefix,
        group_id=f"g-{prefix}",
        batch_bytes=1 << 20,
        linger_ms=5_000,
    )
    summary = KafkaBronzeConsumer(wh, config).run(until_caught_up=True, max_seconds=120)
    assert summary.read == 12 and summary.dead_lettered == 12
    assert summary.batches >= 3
