"""Benchmark: customers from the reference HTTP API and from PostgreSQL into DuckDB's Bronze.

Prints figures, asserts nothing. Fills both sources with ``--records`` customers (the API in
this process, a local PostgreSQL 15 in a temporary folder), then times, on a fresh warehouse
each time, the first full read (``load_changes``: pages or chunks, contract check, batches of
``--batch-size`` written with their window) and a rerun that finds nothing new.

    python bench/batch_sources.py --records 200000
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from retail_pipeline.ingestion.api import ApiSource
from retail_pipeline.ingestion.incremental import ChangeSource, load_changes
from retail_pipeline.ingestion.postgres import PostgresSource
from retail_pipeline.local.postgres import LocalPostgres, upsert
from retail_pipeline.local.reference_api import ReferenceApi
from retail_pipeline.warehouse import open_warehouse


def customers(n: int) -> list[dict[str, str]]:
    return [
        {
            "customer_id": f"C{i:07d}",
            "name": f"Customer {i}",
            "email": f"c{i}@example.com",
            "country": "DE",
            "created_at": "2025-06-01T08:00:00Z",
        }
        for i in range(n)
    ]


def measure(name: str, source: ChangeSource, folder: Path, records: int, batch: int) -> None:
    with open_warehouse(folder / f"{name}.duckdb", target="duckdb") as wh:
        started = time.perf_counter()
        first = load_changes(wh, source, "customers", lag_seconds=0, batch_size=batch)
        full = time.perf_counter() - started
        started = time.perf_counter()
        again = load_changes(wh, source, "customers", lag_seconds=0, batch_size=batch)
        rerun = time.perf_counter() - started
    assert first.loaded == records and again.read == 0
    print(
        f"{name:9} first read {records:,} records in {full:6.2f} s = {records / full:9,.0f}/s;"
        f"  rerun with nothing new {rerun * 1000:6.1f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--batch-size", type=int, default=50_000)
    parser.add_argument("--postgres-port", type=int, default=55433)
    args = parser.parse_args()
    records = customers(args.records)
    with tempfile.TemporaryDirectory(prefix="bench-batch-") as tmp:
        folder = Path(tmp)
        with ReferenceApi() as api:
            for record in records:
                api.upsert("customers", record)
            measure("api", ApiSource(api.url), folder, args.records, args.batch_size)
        server = LocalPostgres(folder / "postgres", port=args.postgres_port)
        try:
            dsn = server.start()
            upsert(dsn, "customers", records)
            source = PostgresSource(dsn)
            measure("postgres", source, folder, args.records, args.batch_size)
            source.close()
        finally:
            server.destroy()


if __name__ == "__main__":
    main()
