"""``retail-pipeline run``: Kafka into Bronze and Gold rebuilt continuously, in one process.

One run on the session broker: events produced while it runs reach Gold (the answers equal the
simulation's truth, with no build after the stop), its builds never overlap (``gold.build_log``),
the dashboard it serves follows Gold live, a second ``run`` on the same warehouse is refused in
one line, and Ctrl-C ends it cleanly (exit 130, Bronze accounted for, the last build whole).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
import urllib.request
import uuid
from itertools import pairwise
from pathlib import Path

import duckdb
import pytest

from retail_pipeline.ingestion.batch import load_reference
from retail_pipeline.simulation import FaultRates, GenerationSummary, generate
from retail_pipeline.simulation.truth import compare_with_truth
from retail_pipeline.transform import read_answers
from retail_pipeline.warehouse.duckdb import DuckDBWarehouse
from tests.accounting import message_lines, stored_messages, unaccounted_rows
from tests.cli.run import COMMAND, cli, ok, one_error_line
from tests.local.kafka_fixtures import free_port

DEADLINE = 120.0
"""Seconds the stream may take to reach Gold (a few builds of a small simulation)."""


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=5) as response:
        body: bytes = response.read()
    return body


def _metric(text: str, name: str) -> float:
    """The sum of a metric's samples in Prometheus's text format (0 if absent)."""
    pattern = re.compile(rf"^{re.escape(name)}(?:\{{[^}}]*\}})? (\S+)$", re.MULTILINE)
    return sum(float(value) for value in pattern.findall(text))


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> GenerationSummary:
    return generate(
        tmp_path_factory.mktemp("run-sim"),
        days=2,
        orders_per_day=60,
        seed=5,
        faults=FaultRates(),
    )


@pytest.mark.kafka
def test_run_builds_gold_while_consuming_and_stops_cleanly(
    kafka_broker: str, sim: GenerationSummary, tmp_path: Path
) -> None:
    from retail_pipeline.events.contract import TOPICS
    from retail_pipeline.local.kafka_broker import ensure_topics

    prefix = f"run-{uuid.uuid4().hex[:8]}."
    ensure_topics(kafka_broker, [prefix + t for t in (*TOPICS, "dead_letter")])
    kafka = ("--bootstrap", kafka_broker, "--topic-prefix", prefix)
    warehouse = tmp_path / "wh.duckdb"
    with DuckDBWarehouse(warehouse) as wh:  # reference data, loaded before the run
        load_reference(wh, "customers", sim.customers_path)
        load_reference(wh, "products", sim.products_path)
    events = [sim.topics[t].path for t in ("orders", "payments", "shipments")]
    total = message_lines(events)
    metrics_port, dashboard_port = free_port(), free_port()
    env = {
        **os.environ,
        "RETAIL_WAREHOUSE": str(warehouse),
        "RETAIL_METRICS_PORT": str(metrics_port),
    }
    run = subprocess.Popen(
        [
            *COMMAND,
            "run",
            *kafka,
            "--group",
            prefix,
            "--build-delay",
            "3",
            "--dashboard",
            "--port",
            str(dashboard_port),
        ],
        env=env,
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
        deadline = time.monotonic() + DEADLINE
        assert run.stdout is not None
        started = run.stdout.readline()  # once it holds the warehouse and consumes
        assert started.startswith("running: "), (started, run.communicate())

        # The first build (of the reference data) has run: the stream's batches land between
        # builds, 3 s before the next one, so no batch commits while a build reads Bronze
        # (docs/continuous.md: data_quality_summary's load_mismatch is not yet one snapshot).
        while _metric(_get(metrics_url).decode(), "retail_run_builds_total") < 1:
            assert run.poll() is None, run.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.3)
        sent = ok(cli("produce", *kafka, *events, warehouse=warehouse, cwd=tmp_path))
        assert sent[-1].startswith(f"sent {total:,} / delivered {total:,}")

        # Everything consumed, and no Bronze row waiting for or inside a build.
        while True:
            text = _get(metrics_url).decode()
            stored = _metric(text, "retail_rows_loaded_total") + _metric(
                text, "retail_dead_letters_total"
            )
            lag = _metric(text, "retail_run_bronze_to_gold_lag_seconds")
            built = _metric(text, 'retail_run_builds_total{result="success"}')
            if stored >= total and lag == 0 and built >= 1:
                break
            assert run.poll() is None, run.communicate()
            assert time.monotonic() < deadline, text
            time.sleep(0.3)
        assert _metric(text, "retail_run_last_build_success") == 1
        assert _metric(text, "retail_run_last_build_seconds") > 0

        # The dashboard of the same process shows the Gold that was just built.
        orders = sum(
            day["orders"] for day in json.loads(sim.truth_path.read_text())["orders_per_day"]
        )
        while True:
            data = json.loads(_get(f"http://127.0.0.1:{dashboard_port}/api/data"))
            shown = sum(day["orders"] for day in data["figures"]["orders_per_day"])
            if shown == orders:
                break
            assert time.monotonic() < deadline, data["figures"]["orders_per_day"]
            time.sleep(0.3)

        # Builds and dashboard reads opened the file in this process; it is still its alone.
        second = cli("run", *kafka, "--group", prefix, warehouse=warehouse, cwd=tmp_path)
        one_error_line(second, "locked by another process")
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGINT)
        out, err = run.communicate(timeout=120)

    assert run.returncode == 130, f"exit {run.returncode}; stdout {out!r}; stderr {err!r}"
    assert err.splitlines()[-1] == "aborted", err
    assert "Traceback" not in out + err
    assert "(stopped)" in out.splitlines()[-1], out
    answers = read_answers(warehouse)  # as the run left Gold: no build came after the stop
    assert compare_with_truth(answers, json.loads(sim.truth_path.read_text())) == {}
    assert stored_messages(warehouse) == total
    assert unaccounted_rows(warehouse) == []
    with duckdb.connect(str(warehouse), read_only=True) as con:
        builds = con.execute(
            "select started_at, finished_at, status from gold.build_log order by started_at"
        ).fetchall()
    assert builds and all(status == "success" for _, _, status in builds), builds
    assert all(done <= later for (_, done, _), (later, _, _) in pairwise(builds)), builds
