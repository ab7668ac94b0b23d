"""A full disk while loading: one line that says so, nothing half written, and a rerun after
space is freed loads the rest exactly once.

The warehouse lives on a small tmpfs mounted for the test (root only), filled up to leave
less room than the events need.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from retail_pipeline.simulation import FaultRates, GenerationSummary, generate
from tests.accounting import message_lines, stored_messages, unaccounted_rows
from tests.cli.run import cli, ok, one_error_line

FREE_BYTES = 2 << 20


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mountpoint = tmp_path / "disk"
    mountpoint.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs to fill up needs root")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64m", f"full-disk-{uuid.uuid4().hex[:6]}", mountpoint],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", mountpoint], check=False)


def fill(disk: Path, leave: int) -> Path:
    """Fill ``disk`` with one file until only ``leave`` bytes are free; returns the filler."""
    filler = disk / "filler"
    stats = os.statvfs(disk)
    with filler.open("wb") as handle:
        handle.truncate(0)
        handle.write(b"\0" * max(0, stats.f_bavail * stats.f_frsize - leave))
    return filler


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> GenerationSummary:
    """About 9 MiB of events: several transactions of 1 MiB, more than the disk has left."""
    return generate(
        tmp_path_factory.mktemp("full-disk-sim"),
        days=4,
        orders_per_day=1200,
        seed=5,
        faults=FaultRates(),
    )


def test_full_disk_during_ingest_says_so_and_a_rerun_finishes_exactly_once(
    small_disk: Path, sim: GenerationSummary, tmp_path: Path
) -> None:
    events = [sim.topics[t].path for t in ("orders", "payments", "shipments")]
    assert sum(p.stat().st_size for p in events) > 4 * FREE_BYTES, "more events than room"
    warehouse = small_disk / "wh.duckdb"
    filler = fill(small_disk, FREE_BYTES)

    result = cli("ingest", "--batch-mb", "1", *events, warehouse=warehouse, cwd=tmp_path)
    line = one_error_line(result, str(warehouse), "No space left on device")
    assert "no transaction is active" not in line

    # What was committed before the disk filled up is whole: readable and accounted for.
    assert unaccounted_rows(warehouse) == []

    filler.unlink()
    ok(cli("ingest", "--batch-mb", "1", *events, warehouse=warehouse, cwd=tmp_path))
    lines = message_lines(events)
    assert unaccounted_rows(warehouse) == []
    assert stored_messages(warehouse) == lines
    with duckdb.connect(str(warehouse), read_only=True) as con:
        offsets = con.execute(
            "select count(*), count(distinct (_source_file, _offset)) from ("
            " select _source_file, _offset from bronze.order_events"
            " union all select _source_file, _offset from bronze.payment_events"
            " union all select _source_file, _offset from bronze.shipment_events"
            " union all select _source_file, _offset from bronze.dead_letter)"
        ).fetchone()
    assert offsets == (lines, lines), "a line was loaded twice"


def test_full_disk_during_transform_is_one_line_and_a_rerun_builds(
    small_disk: Path, tmp_path: Path
) -> None:
    sim = generate(tmp_path / "sim", days=2, orders_per_day=60, seed=9, faults=FaultRates())
    warehouse = small_disk / "wh.duckdb"
    events = [sim.topics[t].path for t in ("orders", "payments", "shipments")]
    ok(cli("ingest", *events, warehouse=warehouse, cwd=tmp_path))
    ok(
        cli(
            "load-batch",
            "--customers",
            sim.customers_path,
            "--products",
            sim.products_path,
            warehouse=warehouse,
            cwd=tmp_path,
        )
    )
    filler = fill(small_disk, 256 << 10)

    result = cli("transform", warehouse=warehouse, cwd=tmp_path)
    one_error_line(result, str(warehouse), "No space left on device", "run transform again")

    filler.unlink()
    lines = ok(cli("transform", warehouse=warehouse, cwd=tmp_path))
    assert lines[-1].startswith("dbt build ok")
