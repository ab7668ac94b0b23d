"""Chaos: consumers SIGKILLed at random moments and a broker restart; 0 lost, 0 duplicated."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from retail_pipeline.ingestion.kafka.producer import Delivered, produce_files
from retail_pipeline.simulation import FaultRates, generate
from tests.accounting import unaccounted_rows
from tests.ingestion.kills import adapt_window
from tests.local.kafka_fixtures import LocalBroker

pytestmark = [pytest.mark.kafka, pytest.mark.slow, pytest.mark.timing]
CLI = [sys.executable, "-m", "retail_pipeline.cli"]
KILLS = 20

KEYS_SQL = """
    select _topic, _partition, _offset from bronze.order_events
    union all select _topic, _partition, _offset from bronze.payment_events
    union all select _topic, _partition, _offset from bronze.shipment_events
    union all select _topic, _partition, _offset from bronze.dead_letter
"""


def produce_simulation(sim: Path, bootstrap: str, **size: int) -> list[Delivered]:
    generate(sim, seed=17, faults=FaultRates(), **size)
    delivered: list[Delivered] = []
    produce_files(
        sorted((sim / "events").glob("*.ndjson")),
        bootstrap=bootstrap,
        on_delivered=delivered.append,
    )
    return delivered


def loaded(warehouse: Path) -> int:
    """Messages committed so far (sum of stored Kafka positions), 0 if not readable now."""
    try:
        con = duckdb.connect(str(warehouse), read_only=True)
    except duckdb.Error:
        return -1  # a consumer holds the file right now
    try:
        row = con.execute(
            "select coalesce(sum(next_offset), 0) from bronze._positions"
            " where source like 'kafka:%'"
        ).fetchone()
        return int(row[0]) if row else 0
    except duckdb.Error:
        return 0
    finally:
        con.close()


def assert_exactly_once(warehouse: Path, delivered: list[Delivered]) -> None:
    con = duckdb.connect(str(warehouse), read_only=True)
    keys = con.execute(KEYS_SQL).fetchall()
    unaccounted = unaccounted_rows(con)  # every run, killed ones too, recorded what it wrote
    con.close()
    assert unaccounted == []
    assert len(keys) == len(set(keys)), f"{len(keys) - len(set(keys))} messages duplicated"
    produced = {(d.topic, d.partition, d.offset) for d in delivered}
    assert set(keys) == produced, f"{len(produced - set(keys))} lost"


def consumer(env: dict[str, str], instance: str, *extra: str) -> subprocess.Popen[bytes]:
    cmd = [
        *CLI,
        "ingest",
        "--kafka",
        "--instance-id",
        instance,
        "--batch-size",
        "5000",
        "--linger-ms",
        "100",
        *extra,
    ]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def test_random_sigkills_and_a_broker_restart_lose_and_duplicate_nothing(
    private_kafka_broker: LocalBroker, tmp_path: Path
) -> None:
    bootstrap = private_kafka_broker.bootstrap_servers
    delivered = produce_simulation(tmp_path / "sim", bootstrap, days=10, orders_per_day=11_000)
    assert len(delivered) >= 500_000
    warehouse = tmp_path / "wh.duckdb"
    env = {**os.environ, "RETAIL_WAREHOUSE": str(warehouse), "RETAIL_KAFKA_BOOTSTRAP": bootstrap}
    # A consumer still starting when the broker goes down waits for it at most this long, then
    # exits by design (one line): a restart on a busy machine can take longer than the default
    # 10 s, and what this test checks is delivery, not that limit.
    env["RETAIL_KAFKA_CONNECT_TIMEOUT"] = "120"

    started = time.monotonic()
    subprocess.run([*CLI, "--help"], env=env, capture_output=True, check=True)
    startup = time.monotonic() - started
    rng = random.Random(99)
    kills_mid_load = broker_restarts = 0
    attempt = 0
    window, before = 3.0, 0  # how long a consumer may run; shrinks when one run loads a lot
    while kills_mid_load < KILLS:
        attempt += 1
        assert attempt < 200, "the consumer made no progress"
        # Small transactions keep a load long enough for 20 kills to land inside it.
        proc = consumer(env, "chaos-1", "--batch-size", "500")
        if attempt == KILLS // 2:  # restart the broker under a running consumer
            time.sleep(startup + 2)
            private_kafka_broker.stop(graceful=False)
            private_kafka_broker.start()
            broker_restarts += 1
        time.sleep(rng.uniform(startup, startup + window))
        if proc.poll() is not None:
            _, err = proc.communicate()
            pytest.fail(f"consumer exited by itself ({proc.returncode}): {err.decode()[-2000:]}")
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        done = loaded(warehouse)
        if 0 <= done < len(delivered):
            kills_mid_load += 1
        window = adapt_window(window, done - before, len(delivered) // (2 * KILLS))
        before = max(before, done)
    assert broker_restarts == 1

    final = subprocess.run(
        [*CLI, "ingest", "--kafka", "--instance-id", "chaos-1", "--until-caught-up"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=900,
    )
    assert final.returncode == 0, final.stderr[-3000:]
    assert_exactly_once(warehouse, delivered)


def test_two_consumers_share_a_group_and_survive_one_being_killed(
    private_kafka_broker: LocalBroker, tmp_path: Path
) -> None:
    bootstrap = private_kafka_broker.bootstrap_servers
    delivered = produce_simulation(tmp_path / "sim", bootstrap, days=8, orders_per_day=8_000)
    warehouse = tmp_path / "wh.duckdb"
    env = {**os.environ, "RETAIL_WAREHOUSE": str(warehouse), "RETAIL_KAFKA_BOOTSTRAP": bootstrap}
    first = consumer(env, "member-a", "--until-caught-up", "--batch-size", "2000", "--shared")
    second = consumer(env, "member-b", "--until-caught-up", "--batch-size", "2000", "--shared")
    deadline = time.monotonic() + 300
    while committed_by(warehouse) < 2:  # kill one only once both members have committed
        assert time.monotonic() < deadline, "the two members never both loaded"
        assert first.poll() is None, first.stderr.read().decode() if first.stderr else ""
        time.sleep(0.1)
    first.send_signal(signal.SIGKILL)
    first.wait()
    _, err = second.communicate(timeout=600)
    assert second.returncode == 0, err.decode()[-3000:]
    assert_exactly_once(warehouse, delivered)
    assert committed_by(warehouse) == 2


def committed_by(warehouse: Path) -> int:
    """How many consumer runs have committed event rows so far (0 while the file is busy)."""
    try:
        con = duckdb.connect(str(warehouse), read_only=True)
    except duckdb.Error:
        return 0
    try:
        row = con.execute(
            "select count(distinct _load_id) from (select _load_id from bronze.order_events"
            " union all select _load_id from bronze.payment_events"
            " union all select _load_id from bronze.shipment_events)"
        ).fetchone()
        return int(row[0]) if row else 0
    except duckdb.Error:
        return 0
    finally:
        con.close()
