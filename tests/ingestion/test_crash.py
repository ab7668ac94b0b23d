"""Crash test: SIGKILL the ingest process at random moments; nothing is lost or duplicated."""

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

from retail_pipeline.simulation import FaultRates, generate
from tests.accounting import unaccounted_rows
from tests.ingestion.kills import adapt_window

pytestmark = pytest.mark.timing  # signals at chosen moments: `make test` runs it alone

KILLS = 20
MIN_EVENTS = 400_000
CLI = [sys.executable, "-m", "retail_pipeline.cli"]


def line_offsets(path: Path) -> list[int]:
    offsets, offset = [], 0
    for line in path.read_bytes().split(b"\n"):
        if line:
            offsets.append(offset)
        offset += len(line) + 1
    return offsets


def loaded_bytes(warehouse: Path) -> int:
    if not warehouse.exists():
        return 0
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        tables = con.execute(
            "select count(*) from information_schema.tables where table_name = '_positions'"
        ).fetchone()
        if not tables or not tables[0]:
            return 0
        row = con.execute("select coalesce(sum(next_offset), 0) from bronze._positions").fetchone()
        return int(row[0]) if row else 0
    finally:
        con.close()


@pytest.mark.slow
def test_sigkill_at_random_moments_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    sim = tmp_path / "sim"
    generate(sim, days=10, orders_per_day=9000, seed=3, faults=FaultRates())
    files = sorted((sim / "events").glob("*.ndjson"))
    expected = {str(p.resolve()): line_offsets(p) for p in files}
    assert sum(len(v) for v in expected.values()) >= MIN_EVENTS
    total_bytes = sum(p.stat().st_size for p in files)

    warehouse = tmp_path / "wh.duckdb"
    env = {**os.environ, "RETAIL_WAREHOUSE": str(warehouse)}
    cmd = [*CLI, "ingest", "--batch-mb", "1", "--from-files", *map(str, files)]
    rng = random.Random(2026)
    started = time.monotonic()
    subprocess.run([*CLI, "counts"], env=env, capture_output=True, check=False)
    startup = time.monotonic() - started  # kills should mostly land after imports, mid-load
    kills_mid_load, progress = 0, [0]
    window = 0.5  # how long a run may load after start-up; adapted as it goes
    for _ in range(200):
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(rng.uniform(startup, startup + window))  # the random kill moment
        if proc.poll() is not None:
            _, err = proc.communicate()
            assert proc.returncode == 0, err.decode()
            break
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        done = loaded_bytes(warehouse)
        assert done >= progress[-1], "a committed position went backwards"
        window = adapt_window(window, done - progress[-1], total_bytes // (2 * KILLS))
        progress.append(done)
        if done < total_bytes:
            kills_mid_load += 1
        if kills_mid_load >= KILLS:
            break
    assert kills_mid_load >= KILLS, f"only {kills_mid_load} kills landed mid-load"
    assert len(set(progress)) >= 5, "kills must be spread over the load, not all at its start"
    with duckdb.connect(str(warehouse), read_only=True) as con:
        # Every killed run that committed something is recorded with exactly what it wrote.
        assert unaccounted_rows(con) == []
        (runs,) = con.execute("select count(*) from bronze._loads").fetchone() or (0,)
    # every step the committed position took was a run that committed, and is recorded
    assert runs >= len(set(progress) - {0})

    final = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    assert final.returncode == 0, final.stderr
    con = duckdb.connect(str(warehouse), read_only=True)
    rows = con.execute(
        """
        select _source_file, _offset, count(*) from (
            select _source_file, _offset from bronze.order_events
            union all select _source_file, _offset from bronze.payment_events
            union all select _source_file, _offset from bronze.shipment_events
            union all select _source_file, _offset from bronze.dead_letter
        ) group by all
        """
    ).fetchall()
    assert unaccounted_rows(con) == []
    con.close()
    duplicated = [(f, o, n) for f, o, n in rows if n != 1]
    assert duplicated == []
    landed: dict[str, list[int]] = {}
    for source_file, offset, _ in rows:
        landed.setdefault(source_file, []).append(offset)
    assert {f: sorted(o) for f, o in landed.items()} == expected
