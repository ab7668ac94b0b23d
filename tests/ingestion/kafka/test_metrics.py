"""/metrics of a running `ingest --kafka` (a subprocess on a real broker), scraped with a real
HTTP client: rows and dead letters equal what Bronze holds, and the lag of every partition is
the broker's end offset minus Bronze's next offset (0 once caught up)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import IO

import duckdb
import pytest
from prometheus_client.parser import text_string_to_metric_families

from retail_pipeline import metrics
from retail_pipeline.simulation import FaultRates, generate
from retail_pipeline.warehouse.base import EVENT_TABLES
from tests.ingestion.kafka.test_ingest import fresh_prefix, produce

pytestmark = pytest.mark.kafka
CLI = [sys.executable, "-m", "retail_pipeline.cli"]
PARTITIONS = 3


def _lines(stream: IO[str], into: list[str]) -> None:
    for line in stream:
        into.append(line)


def scrape(url: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    found: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return found


def test_metrics_of_a_running_consumer_equal_bronze(kafka_broker: str, tmp_path: Path) -> None:
    sim = tmp_path / "sim"
    generate(sim, days=2, orders_per_day=150, seed=17, faults=FaultRates())
    prefix = fresh_prefix(kafka_broker, partitions=PARTITIONS)
    delivered = produce(sim, kafka_broker, prefix)
    warehouse = tmp_path / "wh.duckdb"
    env = {
        **os.environ,
        "RETAIL_WAREHOUSE": str(warehouse),
        "RETAIL_TOPIC_PREFIX": prefix,
        "RETAIL_METRICS_PORT": "0",
        "RETAIL_LINEAGE_DIR": str(tmp_path / "lineage"),
        "PYTHONUNBUFFERED": "1",
    }
    cmd = [*CLI, "ingest", "--kafka", "--bootstrap", kafka_broker, "--group", f"g-{prefix}"]
    proc = subprocess.Popen(
        [*cmd, "--linger-ms", "50"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    err: list[str] = []
    assert proc.stderr is not None
    reader = threading.Thread(target=_lines, args=(proc.stderr, err), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 120
        url = ""
        while not url and time.monotonic() < deadline and proc.poll() is None:
            url = next(
                (line.split()[-1] for line in err if line.startswith("serving metrics on")), ""
            )
            time.sleep(0.1)
        assert url.startswith("http://127.0.0.1:"), "".join(err)
        found: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
        while time.monotonic() < deadline:
            found = scrape(url)
            total = sum(found.get("retail_rows_loaded_total", {}).values()) + sum(
                found.get("retail_dead_letters_total", {}).values()
            )
            lags = found.get("retail_kafka_lag_messages", {})
            if total == len(delivered) and len(lags) == 3 * PARTITIONS and not any(lags.values()):
                break
            time.sleep(0.3)
        else:
            pytest.fail(f"the metrics never showed all {len(delivered)} messages: {found}")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)
        reader.join(timeout=10)
    assert proc.returncode == 0, "".join(err)

    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        rows = {
            table: con.execute(f"select count(*) from bronze.{table}").fetchone()[0]  # type: ignore[index]
            for table in EVENT_TABLES.values()
        }
        dead = con.execute("select _topic, reason from bronze.dead_letter").fetchall()
        positions = {
            (source.removeprefix("kafka:"), partition): offset
            for source, partition, offset in con.execute(
                "select source, partition, next_offset from bronze._positions"
            ).fetchall()
        }
    finally:
        con.close()
    assert {dict(k)["table"]: v for k, v in found["retail_rows_loaded_total"].items()} == rows
    by_label = Counter(
        {
            (dict(k)["table"], dict(k)["reason"]): int(v)
            for k, v in found["retail_dead_letters_total"].items()
        }
    )
    assert by_label == Counter(
        (EVENT_TABLES.get(topic, "unknown"), metrics.reason_class(reason)) for topic, reason in dead
    )
    assert len(dead) > 0
    # Every partition's end offset is in Bronze: the lag is 0 against each stored position.
    ends: dict[tuple[str, int], int] = {}
    for d in delivered:
        ends[(d.topic, d.partition)] = max(ends.get((d.topic, d.partition), 0), d.offset + 1)
    assert {key: positions.get(key) for key in ends} == ends
    lags = found["retail_kafka_lag_messages"]
    assert {(dict(k)["topic"], int(dict(k)["partition"])) for k in lags} == {
        (prefix + topic, p) for topic in EVENT_TABLES for p in range(PARTITIONS)
    }
