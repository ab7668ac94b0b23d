"""Benchmark: `ingest --from-files` against DuckDB's own `read_ndjson` on the same files.

Prints figures, asserts nothing. Each measurement runs in a fresh process with a fresh
warehouse so that peak RSS belongs to that measurement alone.

    python bench/ingest_files.py --events 1000000
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def simulate(cache: Path, events: int, seed: int) -> list[Path]:
    """Generate (once, cached) a faulted simulation with at least ``events`` lines."""
    from retail_pipeline.simulation import FaultRates, generate

    days = 30
    orders_per_day = max(1, round(events / days / 5.0))
    target = cache / f"sim-{events}-{seed}"
    marker = target / "summary.json"
    if not marker.exists():
        started = time.perf_counter()
        summary = generate(
            target, days=days, orders_per_day=orders_per_day, seed=seed, faults=FaultRates()
        )
        marker.write_text(json.dumps({"lines": summary.lines}))
        print(f"simulated {summary.lines:,} lines in {time.perf_counter() - started:.1f} s")
    return sorted((target / "events").glob("*.ndjson"))


def _ingest(files: list[str], warehouse: str, batch_mb: int) -> dict[str, float]:
    from retail_pipeline.ingestion.files import ingest_files
    from retail_pipeline.warehouse import open_warehouse

    started = time.perf_counter()
    with open_warehouse(warehouse, target="duckdb") as wh:
        summary = ingest_files(wh, files, batch_bytes=batch_mb << 20)
    seconds = time.perf_counter() - started
    return {"messages": summary.read, "loaded": summary.loaded, "seconds": seconds}


def _read_ndjson(files: list[str], warehouse: str, batch_mb: int) -> dict[str, float]:
    import duckdb

    started = time.perf_counter()
    con = duckdb.connect(warehouse)
    con.execute(
        "create table events as select * from read_ndjson($files, ignore_errors = true,"
        " union_by_name = true, format = 'newline_delimited')",
        {"files": files},
    )
    row = con.execute("select count(*) from events").fetchone()
    con.close()
    seconds = time.perf_counter() - started
    return {"messages": row[0] if row else 0, "loaded": row[0] if row else 0, "seconds": seconds}


def child(kind: str, files: list[str], warehouse: str, batch_mb: int) -> None:
    """Run one measurement in this process and print it as JSON with peak RSS."""
    result = (_ingest if kind == "ingest" else _read_ndjson)(files, warehouse, batch_mb)
    result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))


def load() -> str:
    """The machine's load average: figures from a shared machine mean little without it."""
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min)"


def measure(kind: str, files: list[Path], batch_mb: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [
            sys.executable,
            __file__,
            "--child",
            kind,
            "--warehouse",
            str(Path(tmp) / "wh.duckdb"),
            "--batch-mb",
            str(batch_mb),
            *map(str, files),
        ]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        result: dict[str, float] = json.loads(out.strip().splitlines()[-1])
        return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--batch-mb", type=int, default=64)
    parser.add_argument("--cache", type=Path, default=ROOT / "data" / "bench")
    parser.add_argument("--child", choices=["ingest", "read_ndjson"])
    parser.add_argument("--warehouse")
    parser.add_argument("files", nargs="*")
    args = parser.parse_args()
    if args.child:
        child(args.child, args.files, args.warehouse, args.batch_mb)
        return
    files = simulate(args.cache, args.events, args.seed)
    size_mb = sum(p.stat().st_size for p in files) / 1e6
    print(f"input: {len(files)} files, {size_mb:,.0f} MB, cores: {os.cpu_count()}, {load()}")
    limit = measure("read_ndjson", files, args.batch_mb)
    ours = measure("ingest", files, args.batch_mb)
    for name, r in (("duckdb read_ndjson (limit)", limit), ("ingest --from-files", ours)):
        rate = r["messages"] / r["seconds"]
        print(
            f"{name:<28} {r['messages']:>10,.0f} msgs  {r['seconds']:6.2f} s"
            f"  {rate:>10,.0f} msgs/s  peak RSS {r['peak_rss_mib']:,.0f} MiB"
        )
    print(f"after: {load()}")
    ratio = (ours["messages"] / ours["seconds"]) / (limit["messages"] / limit["seconds"])
    print(f"ingest / limit: {ratio:.0%}  (targets: >=150k msgs/s, >=60% of limit, RSS <=1.5 GiB)")


if __name__ == "__main__":
    main()
