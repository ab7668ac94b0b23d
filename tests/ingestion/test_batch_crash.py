"""Crash tests: SIGKILL `load-batch --api`, and `load-batch --customers` on a big snapshot file,
at random moments; the position stored with the rows (the API's window, the count of a
snapshot's records written) means nothing is lost or written twice, and the accounts still add
up."""

from __future__ import annotations

import inspect
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import orjson
import pytest

from retail_pipeline.ingestion.batch import BATCH_RECORDS
from retail_pipeline.ingestion.incremental import BATCH_SIZE
from retail_pipeline.local.reference_api import ReferenceApi
from tests.accounting import unaccounted_rows
from tests.ingestion.kills import adapt_window

pytestmark = pytest.mark.timing  # signals at chosen moments: `make test` runs it alone

RECORDS = 40_000
KILLS = 12
CLI = [sys.executable, "-m", "retail_pipeline.cli"]


def taken(warehouse: Path, kind: str = "api") -> int:
    """Records the stored position says were taken (0 before the first commit)."""
    if not warehouse.exists():
        return 0
    with duckdb.connect(str(warehouse), read_only=True) as con:
        exists = con.execute(
            "select count(*) from information_schema.tables where table_name = '_positions'"
        ).fetchone()
        if not exists or not exists[0]:
            return 0
        row = con.execute(
            "select coalesce(sum(next_offset), 0) from bronze._positions where source like ?",
            [f"{kind}:%"],
        ).fetchone()
    return int(row[0]) if row else 0


@pytest.mark.slow  # SIGKILLs a loader mid-run, again and again
def test_sigkill_mid_window_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    api = ReferenceApi(token="t").start()
    try:
        for i in range(RECORDS):
            api.upsert(
                "customers",
                {
                    "customer_id": f"C{i:06d}",
                    "name": "N",
                    "email": "n@example.com",
                    "country": "US" if i % 500 else "usa",  # some dead letters
                    "created_at": "2025-01-01T00:00:00Z",
                },
            )
        warehouse = tmp_path / "wh.duckdb"
        env = {
            **os.environ,
            "RETAIL_WAREHOUSE": str(warehouse),
            "RETAIL_API_TOKEN": "t",
            "RETAIL_BATCH_LAG": "0",
        }
        cmd = [*CLI, "load-batch", "--api", api.url, "--entity", "customers"]
        cmd += ["--batch-size", "1500"]
        rng = random.Random(13)
        started = time.monotonic()
        subprocess.run([*CLI, "--help"], env=env, capture_output=True, check=False)
        startup = time.monotonic() - started
        window, progress, kills_mid_window = 0.5, [0], 0
        for _ in range(100):
            proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            time.sleep(rng.uniform(startup, startup + window))
            if proc.poll() is not None:
                _, err = proc.communicate()
                assert proc.returncode == 0, err.decode()
                break
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            done = taken(warehouse)
            assert done >= progress[-1], "a committed position went backwards"
            kills_mid_window += 0 < done < RECORDS
            window = adapt_window(window, done - progress[-1], RECORDS // (2 * KILLS))
            progress.append(done)
            if kills_mid_window >= KILLS:
                finish = subprocess.run(cmd, env=env, capture_output=True, check=False)
                assert finish.returncode == 0, finish.stderr.decode()
                break
        assert kills_mid_window >= 3, f"too few kills landed mid-window: {progress}"
        assert taken(warehouse) == RECORDS, progress

        with duckdb.connect(str(warehouse), read_only=True) as con:
            [(rows, keys)] = con.execute(
                "select count(*), count(distinct customer_id) from bronze.customers"
            ).fetchall()
            [(dead, dead_keys)] = con.execute(
                "select count(*), count(distinct _key) from bronze.dead_letter"
            ).fetchall()
            assert (rows, keys) == (RECORDS - RECORDS // 500, RECORDS - RECORDS // 500)
            assert (dead, dead_keys) == (RECORDS // 500, RECORDS // 500)
            assert unaccounted_rows(con) == []
        again = subprocess.run(cmd, env=env, capture_output=True, check=True)
        assert b"no new changes" in again.stdout
    finally:
        api.stop()


def test_the_cli_default_batch_size_is_the_loader_default() -> None:
    from retail_pipeline.cli.sources import load_batch

    default = inspect.signature(load_batch).parameters["batch_size"].default
    assert default == BATCH_SIZE == BATCH_RECORDS


SNAPSHOT_RECORDS = 30_000


@pytest.mark.slow  # SIGKILLs a loader mid-snapshot, again and again
def test_sigkill_mid_snapshot_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    path = tmp_path / "customers.json"
    with path.open("wb") as out:
        out.write(b"[\n")
        for i in range(SNAPSHOT_RECORDS):
            record = {
                "customer_id": f"C{i:06d}",
                "name": "N",
                "email": "n@example.com",
                "country": "US" if i % 500 else "usa",  # records 1, 501, ... are dead letters
                "created_at": "2025-01-01T00:00:00Z",
            }
            out.write((b",\n" if i else b"") + orjson.dumps(record))
        out.write(b"\n]\n")
    warehouse = tmp_path / "wh.duckdb"
    env = {**os.environ, "RETAIL_WAREHOUSE": str(warehouse)}
    cmd = [*CLI, "load-batch", "--customers", str(path), "--batch-size", "500"]
    rng = random.Random(29)
    started = time.monotonic()
    subprocess.run([*CLI, "--help"], env=env, capture_output=True, check=False)
    startup = time.monotonic() - started
    window, progress, kills_mid_snapshot = 0.5, [0], 0
    for _ in range(100):
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        time.sleep(rng.uniform(startup, startup + window))
        if proc.poll() is not None:
            _, err = proc.communicate()
            assert proc.returncode == 0, err.decode()
            break
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        done = taken(warehouse, "snapshot")
        assert done >= progress[-1], "a committed position went backwards"
        kills_mid_snapshot += 0 < done < SNAPSHOT_RECORDS
        if done == 0:
            # Killed before its first commit (the file is hashed first; startup varies with the
            # machine's load): aim later, not wider, or one run jumps from none to all.
            startup += window / 2
        else:
            window = adapt_window(window, done - progress[-1], SNAPSHOT_RECORDS // (2 * KILLS))
        progress.append(done)
        if kills_mid_snapshot >= KILLS:
            finish = subprocess.run(cmd, env=env, capture_output=True, check=False)
            assert finish.returncode == 0, finish.stderr.decode()
            break
    assert kills_mid_snapshot >= 3, f"too few kills landed mid-snapshot: {progress}"
    assert taken(warehouse, "snapshot") == SNAPSHOT_RECORDS, progress

    bad = SNAPSHOT_RECORDS // 500
    with duckdb.connect(str(warehouse), read_only=True) as con:
        [(rows, keys, numbers, load_ids)] = con.execute(
            "select count(*), count(distinct customer_id), count(distinct _record_number),"
            " count(distinct _load_id) from bronze.customers"
        ).fetchall()
        assert (rows, keys, numbers, load_ids) == (SNAPSHOT_RECORDS - bad,) * 3 + (1,)
        dead = con.execute("select _offset from bronze.dead_letter order by 1").fetchall()
        assert dead == [(n,) for n in range(1, SNAPSHOT_RECORDS + 1, 500)]
        [(read, loaded, dead_lettered)] = con.execute(
            "select rows_read, rows_loaded, rows_dead_lettered from bronze._loads"
        ).fetchall()
        assert (read, loaded, dead_lettered) == (SNAPSHOT_RECORDS, SNAPSHOT_RECORDS - bad, bad)
        assert unaccounted_rows(con) == []
    again = subprocess.run(cmd, env=env, capture_output=True, check=True)
    assert b"already loaded" in again.stdout
