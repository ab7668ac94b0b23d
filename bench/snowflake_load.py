"""Benchmark: one Bronze batch of order events written to Snowflake (emulated) and to DuckDB.

Prints figures, asserts nothing. Simulates a shop (cached under ``--cache``) until it has about
``--events`` order events, validates them once into one :class:`EventBatch`, then times
``write_events`` of that same batch, ``--repeat`` times each, on a fresh target every time:

1. ``SnowflakeWarehouse`` against a fakesnow server process on this machine (Parquet, PUT to
   the session's stage, and one transaction with COPY INTO, positions and the load record);
2. the same against the package's local Snowflake (snowduck in a thread, as ``demo --target
   snowflake`` runs it);
3. ``DuckDBWarehouse`` on a new file (Arrow insert, positions, load record, one transaction).

Both emulators run every statement on DuckDB after transpiling it with sqlglot, so its figure is a
floor for the client side (Parquet and PUT) plus an emulator, not a forecast for a real account,
where a COPY costs a warehouse round trip of a second or more whatever the batch size.

    python bench/snowflake_load.py --events 100000
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from retail_pipeline.warehouse.base import EventBatch, Position  # noqa: E402


def order_events(cache: Path, events: int, seed: int) -> Path:
    """The orders NDJSON of a simulation (made once, cached) with about ``events`` lines."""
    from retail_pipeline.simulation import FaultRates, generate

    days = 8
    orders_per_day = max(1, round(events / days / 1.24))  # ~1.24 order events per order
    target = cache / f"sim-orders-{events}-{seed}"
    if not (target / "truth.json").exists():
        started = time.perf_counter()
        generate(target, days=days, orders_per_day=orders_per_day, seed=seed, faults=FaultRates())
        print(f"simulated {target} in {time.perf_counter() - started:.1f} s")
    return target / "events" / "orders.ndjson"


def batch_of(path: Path) -> EventBatch:
    """The whole file as one validated batch, as ``ingest --from-files`` would write it."""
    from retail_pipeline.ingestion.files import stage_block

    data = path.read_bytes()
    staged = stage_block(data, 0, 1, str(path))
    source = f"file:{path}"
    return EventBatch(
        load_id=f"bench-{uuid.uuid4().hex[:8]}",
        source_kind="file",
        events=staged.events,
        dead_letters=staged.dead_letters,
        positions=[Position(source, 0, len(data), data.count(b"\n") + 1, None)],
        expected={(source, 0): None},
        load_source=str(path),
    )


def time_snowflake(
    args: dict[str, object], batch: EventBatch, create: Callable[[str], None] | None = None
) -> float:
    """One write_events to a fresh database of the emulator (made by ``create`` where the
    emulator does not make it on first use), opened as the commands open it."""
    from retail_pipeline.warehouse import open_warehouse

    names = ("account", "user", "password", "host", "port", "protocol")
    os.environ.update({f"SNOWFLAKE_{name.upper()}": str(args[name]) for name in names})
    database = f"BENCH_{uuid.uuid4().hex[:8].upper()}"
    os.environ["SNOWFLAKE_DATABASE"] = database
    os.environ["SNOWFLAKE_LOGIN_TIMEOUT"] = str(args.get("network_timeout", 30))
    if create is not None:
        create(database)
    with open_warehouse(target="snowflake") as wh:
        started = time.perf_counter()
        wh.write_events(batch)
        seconds = time.perf_counter() - started
        assert wh.counts()["order_events"] == batch.events["orders"].num_rows
    return seconds


def time_duckdb(batch: EventBatch) -> float:
    from retail_pipeline.warehouse import open_warehouse

    with (
        tempfile.TemporaryDirectory() as tmp,
        open_warehouse(Path(tmp) / "wh.duckdb", target="duckdb") as wh,
    ):
        started = time.perf_counter()
        wh.write_events(batch)
        return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--cache", type=Path, default=ROOT / "data" / "bench")
    args = parser.parse_args()

    from tests.local.snowflake_fixtures import fakesnow_process

    from retail_pipeline.local.snowflake_emulator import snowduck_server

    batch = batch_of(order_events(args.cache, args.events, args.seed))
    rows = batch.events["orders"].num_rows
    print(f"batch: {rows:,} order events, {batch.dead_letters.num_rows:,} dead letters")
    with tempfile.TemporaryDirectory() as tmp, fakesnow_process(Path(tmp) / "fakesnow.log") as sf:
        fakesnow = [time_snowflake(sf, batch) for _ in range(args.repeat)]
    with tempfile.TemporaryDirectory() as tmp, snowduck_server(Path(tmp)) as local:
        snowduck = [
            time_snowflake(local.connect_args, batch, local.create_database)
            for _ in range(args.repeat)
        ]
    duck = [time_duckdb(batch) for _ in range(args.repeat)]
    figures = (
        ("Snowflake (fakesnow server)", fakesnow),
        ("Snowflake (local, snowduck)", snowduck),
        ("DuckDB file", duck),
    )
    for name, seconds in figures:
        best, median = min(seconds), statistics.median(seconds)
        print(
            f"{name:28} write_events: median {median:6.2f} s = {rows / median:9,.0f} rows/s"
            f" (best {rows / best:,.0f} rows/s; {args.repeat} runs)"
        )


if __name__ == "__main__":
    main()
