"""The Prometheus metrics: the textfile `ingest` writes equals what Bronze holds, label values
stay within their fixed sets whatever arrives, and the /metrics server answers only its own
Host names."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

import duckdb
import pytest
from prometheus_client.parser import text_string_to_metric_families

from retail_pipeline import metrics
from retail_pipeline.simulation import generate
from retail_pipeline.warehouse.base import BRONZE_TABLES, EVENT_TABLES
from tests.conftest import HEAVY_FAULTS

CLI = [sys.executable, "-m", "retail_pipeline.cli"]


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus text exposition, by name and sorted labels."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_the_tables_are_bronze_s() -> None:
    assert set(metrics.TABLES) == set(BRONZE_TABLES) - {"dead_letter"}
    assert set(metrics.REASONS) == {name for name, _ in metrics.REASON_CLASSES} | {"other"}


def test_a_label_never_holds_outside_text() -> None:
    hostile = 'x"} 1\nretail_rows_loaded_total{table="evil'
    assert metrics.reason_class(hostile) == "other"
    assert metrics.table_label(hostile) == metrics.UNKNOWN
    assert metrics.reason_class("items[7].quantity: missing") == "missing_field"
    with pytest.raises(ValueError, match="not a job"):
        metrics.record_success("anything")


@pytest.fixture(scope="module")
def ingested(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, float, float]:
    """A heavily faulted simulation ingested by the command with RETAIL_METRICS_DIR set."""
    root = tmp_path_factory.mktemp("metrics")
    generate(root / "sim", days=2, orders_per_day=200, seed=13, faults=HEAVY_FAULTS)
    warehouse = root / "wh.duckdb"
    env = {
        **os.environ,
        "RETAIL_WAREHOUSE": str(warehouse),
        "RETAIL_METRICS_DIR": str(root / "prom"),
        "RETAIL_LINEAGE_DIR": str(root / "lineage"),
    }
    before = time.time()
    done = subprocess.run(
        [*CLI, "ingest", *sorted(str(p) for p in (root / "sim" / "events").glob("*.ndjson"))],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return warehouse, root / "prom" / "retail_pipeline_ingest_files.prom", before, time.time()


def test_the_textfile_of_ingest_equals_bronze(ingested: tuple[Path, Path, float, float]) -> None:
    warehouse, textfile, before, after = ingested
    found = samples(textfile.read_text())
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        rows = {
            table: con.execute(f"select count(*) from bronze.{table}").fetchone()[0]  # type: ignore[index]
            for table in EVENT_TABLES.values()
        }
        reasons = [r for (r,) in con.execute("select reason from bronze.dead_letter").fetchall()]
    finally:
        con.close()
    loaded = {
        dict(labels)["table"]: value
        for (name, labels), value in found.items()
        if name == "retail_rows_loaded_total"
    }
    assert loaded == rows
    dead = {
        dict(labels)["reason"]: value
        for (name, labels), value in found.items()
        if name == "retail_dead_letters_total"
    }
    assert sum(dead.values()) == len(reasons) > 20
    # Event files do not say a dead letter's topic: its table is unknown.
    assert {
        dict(labels)["table"]
        for (name, labels), _ in found.items()
        if name == "retail_dead_letters_total"
    } == {"unknown"}
    assert dead == Counter(metrics.reason_class(r) for r in reasons)
    assert "other" not in dead, "a reason the simulator writes has no class"
    success = found[("retail_last_success_timestamp_seconds", (("job", "ingest_files"),))]
    assert before <= success <= after
    batches = found[("retail_batches_total", (("job", "ingest_files"),))]
    assert found[("retail_batch_seconds_count", (("job", "ingest_files"),))] == batches >= 3
    assert not any(name.startswith("retail_gold") for name, _ in found)


def test_a_failed_run_keeps_the_last_success(tmp_path: Path) -> None:
    """A later run that fails rewrites the file with the earlier success, not without it."""
    env = {**os.environ, "RETAIL_METRICS_DIR": str(tmp_path)}
    script = (
        "from retail_pipeline import metrics\n"
        "import sys\n"
        "if sys.argv[1] == 'ok': metrics.record_success('load_batch', 1234.5)\n"
        "metrics.write_textfile('load_batch')\n"
    )
    for arg in ("ok", "failed"):
        subprocess.run([sys.executable, "-c", script, arg], env=env, check=True, timeout=60)
    found = samples((tmp_path / "retail_pipeline_load_batch.prom").read_text())
    assert found[("retail_last_success_timestamp_seconds", (("job", "load_batch"),))] == 1234.5


def test_the_metrics_server_answers_only_its_host_names() -> None:
    server = metrics.serve("127.0.0.1", 0)
    try:
        url = f"http://127.0.0.1:{server.port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/plain")
            assert "retail_rows_loaded_total" in response.read().decode()
        rebound = urllib.request.Request(url, headers={"Host": f"evil.example:{server.port}"})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(rebound, timeout=10)
        assert refused.value.code == 421
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(f"http://127.0.0.1:{server.port}/", timeout=10)
        assert missing.value.code == 404
    finally:
        server.stop()
