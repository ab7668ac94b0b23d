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
import threading
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


class CpuWatch:
    """CPU seconds of this process and of its descendants (the validation workers are the
    fork server's children, which ``RUSAGE_CHILDREN`` never sees), sampled from /proc every
    0.2 s: the last sample of each process counts. Linux only; elsewhere the workers read 0."""

    def __init__(self) -> None:
        self.seen: dict[int, float] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> CpuWatch:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()

    def _run(self) -> None:
        while not self.stop.wait(0.2):
            self.sample()

    def sample(self) -> None:
        tick = os.sysconf("SC_CLK_TCK")
        parents: dict[int, int] = {}
        cpu: dict[int, float] = {}
        for entry in os.scandir("/proc") if os.path.isdir("/proc") else []:
            if not entry.name.isdigit():
                continue
            try:
                fields = Path(entry.path, "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            pid = int(entry.name)
            parents[pid] = int(fields[1])
            cpu[pid] = (int(fields[11]) + int(fields[12])) / tick
        me = os.getpid()
        for pid, seconds in cpu.items():
            up, hops = parents.get(pid), 0
            while up and up != me and hops < 8:
                up, hops = parents.get(up), hops + 1
            if up == me:
                self.seen[pid] = seconds

    def figures(self) -> dict[str, float]:
        """``cpu_s`` of this process and ``workers_cpu_s`` of its descendants."""
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return {
            "cpu_s": usage.ru_utime + usage.ru_stime,
            "workers_cpu_s": sum(self.seen.values()),
        }


def _ingest(files: list[str], warehouse: str, batch_mb: int) -> dict[str, float]:
    from retail_pipeline.ingestion.files import ingest_files
    from retail_pipeline.warehouse import open_warehouse

    started = time.perf_counter()
    with CpuWatch() as watch, open_warehouse(warehouse, target="duckdb") as wh:
        summary = ingest_files(wh, files, batch_bytes=batch_mb << 20)
    seconds = time.perf_counter() - started
    return {"messages": summary.read, "loaded": summary.loaded, "seconds": seconds} | (
        watch.figures()
    )


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
    print(
        f"ingest CPU: loader {ours['cpu_s']:.1f} s, validation workers"
        f" {ours['workers_cpu_s']:.1f} s (on {os.cpu_count()} cores: the wall time is at least"
        f" {(ours['cpu_s'] + ours['workers_cpu_s']) / (os.cpu_count() or 1):.1f} s)"
    )
    print(f"after: {load()}")
    ratio = (ours["messages"] / ours["seconds"]) / (limit["messages"] / limit["seconds"])
    print(f"ingest / limit: {ratio:.0%}  (targets: >=150k msgs/s, >=60% of limit, RSS <=1.5 GiB)")


if __name__ == "__main__":
    main()
