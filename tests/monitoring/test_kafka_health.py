"""``health --json --kafka`` against a real local broker: the lag per partition is exactly the
messages produced after everything was ingested, judged per partition by the
``RETAIL_HEALTH_KAFKA_LAG_*`` limits; an unreachable configured broker is a ``kafka.broker``
error check."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

from confluent_kafka import Producer

from retail_pipeline.ingestion.batch import load_reference
from retail_pipeline.ingestion.kafka.consumer import ConsumerSettings, KafkaBronzeConsumer
from retail_pipeline.ingestion.kafka.producer import Delivered, produce_files
from retail_pipeline.local import kafka_broker as broker
from retail_pipeline.simulation import FaultRates, generate
from retail_pipeline.warehouse.duckdb import DuckDBWarehouse
from tests.cli.run import cli
from tests.local.kafka_fixtures import free_port
from tests.transform.conftest import transform

TOPICS = ("orders", "payments", "shipments", "dead_letter")
LATER = {0: 4, 1: 2, 2: 0}
"""Messages produced to each partition of the orders topic after everything was ingested."""


def _health(warehouse: Path, cwd: Path, *args: str, **env: str) -> tuple[int, dict[str, Any]]:
    run = cli("health", "--json", "--kafka", *args, warehouse=warehouse, cwd=cwd, **env)
    assert run.stderr == "", run.stderr
    return run.returncode, json.loads(run.stdout)


def _kafka(report: dict[str, Any]) -> dict[str, tuple[str, Any]]:
    return {
        c["name"]: (c["status"], c["value"])
        for c in report["checks"]
        if c["name"].startswith("kafka.")
    }


def test_lag_is_what_was_produced_after_the_ingest(kafka_broker: str, tmp_path: Path) -> None:
    prefix = f"h{uuid.uuid4().hex[:8]}."
    broker.ensure_topics(kafka_broker, [prefix + t for t in TOPICS], partitions=3)
    sim = tmp_path / "sim"
    generate(sim, days=1, orders_per_day=20, seed=8, faults=FaultRates())
    delivered: list[Delivered] = []
    produce_files(
        sorted((sim / "events").glob("*.ndjson")),
        bootstrap=kafka_broker,
        topic_prefix=prefix,
        on_delivered=delivered.append,
    )
    assert len(delivered) > 50
    warehouse = tmp_path / "wh.duckdb"
    with DuckDBWarehouse(warehouse) as wh:
        snapshot = sorted((sim / "snapshots").iterdir())[0]
        load_reference(wh, "customers", snapshot / "customers.json")
        load_reference(wh, "products", snapshot / "products.json")
    config = ConsumerSettings(bootstrap=kafka_broker, topic_prefix=prefix, group_id=f"g-{prefix}")
    KafkaBronzeConsumer(DuckDBWarehouse(warehouse, exclusive=False), config).run(
        until_caught_up=True, max_seconds=300
    )
    transform(warehouse)
    options = ("--bootstrap", kafka_broker, "--topic-prefix", prefix)

    code, report = _health(warehouse, tmp_path, *options)
    assert code == 0, [c for c in report["checks"] if c["status"] != "ok"]
    caught_up = _kafka(report)
    assert caught_up and {value for _, value in caught_up.values()} == {0}
    assert {status for status, _ in caught_up.values()} == {"ok"}

    producer = Producer({"bootstrap.servers": kafka_broker})
    for partition, count in LATER.items():
        for n in range(count):
            producer.produce(prefix + "orders", value=b'{"later": %d}' % n, partition=partition)
    assert producer.flush(30) == 0

    code, report = _health(warehouse, tmp_path, *options)
    lags = _kafka(report)
    assert set(lags) == set(caught_up)
    assert sum(value for _, value in lags.values()) == sum(LATER.values())
    assert {n: lags[f"kafka.{prefix}orders.{p}.lag"] for p, n in LATER.items()} == {
        n: ("ok", n) for n in LATER.values()
    }
    assert code == 0  # under the default limits (10,000 / 100,000)

    # judged per partition, strictly past each limit: 4 > 3 is an error, 2 > 1 a warning
    limits = {"RETAIL_HEALTH_KAFKA_LAG_WARN": "1", "RETAIL_HEALTH_KAFKA_LAG_ERROR": "3"}
    code, report = _health(warehouse, tmp_path, *options, **limits)
    lags = _kafka(report)
    assert [lags[f"kafka.{prefix}orders.{p}.lag"] for p in LATER] == [
        ("error", 4),
        ("warning", 2),
        ("ok", 0),
    ]
    assert {status for name, (status, _) in lags.items() if "orders" not in name} == {"ok"}
    assert (code, report["status"]) == (2, "error")
    code, report = _health(warehouse, tmp_path, *options, RETAIL_HEALTH_KAFKA_LAG_WARN="1")
    assert (code, report["status"]) == (1, "warning")
    assert [c["name"] for c in report["checks"] if c["status"] != "ok"] == [
        f"kafka.{prefix}orders.0.lag",
        f"kafka.{prefix}orders.1.lag",
    ]

    # a configured broker nobody answers at: one kafka.broker error, each stored partition unknown
    nobody = f"127.0.0.1:{free_port()}"
    code, report = _health(
        warehouse,
        tmp_path,
        "--topic-prefix",
        prefix,
        RETAIL_KAFKA_BOOTSTRAP=nobody,
        RETAIL_KAFKA_CONNECT_TIMEOUT="2",
    )
    assert code == 2
    unreachable = [c for c in report["checks"] if c["name"] == "kafka.broker"]
    assert [c["status"] for c in unreachable] == ["error"]
    assert nobody in unreachable[0]["message"]
    lags = _kafka(report)
    del lags["kafka.broker"]
    assert lags and set(lags) <= set(caught_up)  # the partitions with a stored position
    assert f"kafka.{prefix}orders.0.lag" in lags
    assert set(lags.values()) == {("error", None)}
