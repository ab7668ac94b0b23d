"""Benchmark: the dbt build (Silver + Gold) on a large Bronze, then an incremental run.

Prints figures, asserts nothing. Steps, each timed in a fresh process so that its peak RSS
belongs to it alone (dbt and DuckDB both run inside that process):

1. simulate (cached) a faulted shop with about ``--events`` event lines plus 1% more, split into
   a base part and a 1% increment (the increment is the latest arrivals of every topic file);
2. ingest the base into a Bronze-only warehouse (cached);
3. full build: ``dbt build --full-refresh`` (models, data tests, unit tests) on a copy;
4. ingest the increment (not part of the dbt figures);
5. incremental build: ``transform`` again (its data tests read the rows it wrote), then a
   rerun with nothing new (``transform`` sees the same inputs and does not start dbt), then
   the same increment tested whole (``--all-tests``, what a schedule runs);
6. the same with ``dbt run`` (models only): the cost of the models without dbt's tests.

``--events`` takes several sizes (``1000000,10000000,30000000``): the history growth curve,
the +1% build at each size against the smallest, printed last with the issue's targets
(+1% <= 10% of the full build at 10M, nothing new <= 5%, growth <= 1.5x from 1M to 30M).

Every step gets the same dbt vars (a change of vars makes dbt parse the whole project again,
which the incremental figure would otherwise pay). Staging re-reads ``lookback_minutes`` of
Bronze below its high-water mark. The cached base was
ingested minutes before the increment, so with the default 60 minutes the whole base lies in
that window (a production increment an hour later would not); ``--lookback-minutes 0`` shows
the steady state.

    python bench/dbt_build.py --events 1000000 --lookback-minutes 0
    python bench/dbt_build.py --events 1000000,10000000,30000000 --lookback-minutes 0
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
LINES_PER_ORDER = 6.0
DAYS = 30


def simulate(cache: Path, events: int, seed: int) -> tuple[list[Path], list[Path]]:
    """Base and increment event files (cached): the increment is the last 1% of each file."""
    from retail_pipeline.simulation import FaultRates, generate

    target = cache / f"sim-{events}-{seed}"
    base_dir, increment_dir = target / "base", target / "increment"
    marker = target / "split.json"
    if not marker.exists():
        started = time.perf_counter()
        orders_per_day = max(1, round(events * 1.01 / DAYS / LINES_PER_ORDER))
        summary = generate(
            target / "sim",
            days=DAYS,
            orders_per_day=orders_per_day,
            seed=seed,
            faults=FaultRates(),
        )
        print(f"simulated {summary.lines:,} lines in {time.perf_counter() - started:.0f} s")
        base_dir.mkdir(parents=True, exist_ok=True)
        increment_dir.mkdir(parents=True, exist_ok=True)
        counts = {}
        for path in sorted((target / "sim" / "events").glob("*.ndjson")):
            lines = path.read_bytes().splitlines(keepends=True)
            cut = round(len(lines) / 1.01)
            (base_dir / path.name).write_bytes(b"".join(lines[:cut]))
            (increment_dir / path.name).write_bytes(b"".join(lines[cut:]))
            counts[path.name] = [cut, len(lines) - cut]
        shutil.copy(target / "sim" / "customers.json", target / "customers.json")
        shutil.copy(target / "sim" / "products.json", target / "products.json")
        shutil.rmtree(target / "sim")
        marker.write_text(json.dumps(counts))
    return sorted(base_dir.glob("*.ndjson")), sorted(increment_dir.glob("*.ndjson"))


def bronze(cache: Path, events: int, seed: int, base: list[Path]) -> Path:
    """A warehouse holding only Bronze (reference snapshots and the base events), cached."""
    # Not "bronze.duckdb": DuckDB names the catalog after the file, which would clash with the
    # bronze schema.
    target = cache / f"sim-{events}-{seed}" / "base_warehouse.duckdb"
    if not target.exists():
        partial = target.with_name("partial_warehouse.duckdb")
        partial.unlink(missing_ok=True)
        result = child(
            {"step": "ingest", "warehouse": str(partial), "files": [str(p) for p in base]}
        )
        partial.rename(target)
        print(f"ingested the base: {result['rows']:,} lines in {result['seconds']:.0f} s")
    return target


def _step(spec: dict[str, Any]) -> dict[str, Any]:
    started = time.perf_counter()
    step = spec["step"]
    warehouse = str(spec["warehouse"])
    if step == "ingest":
        from retail_pipeline.ingestion.batch import load_reference
        from retail_pipeline.ingestion.files import ingest_files
        from retail_pipeline.warehouse import open_warehouse

        files = [Path(str(p)) for p in spec["files"]]
        with open_warehouse(warehouse, target="duckdb") as wh:
            if spec.get("reference", True):
                for entity in ("customers", "products"):
                    load_reference(wh, entity, files[0].parent.parent / f"{entity}.json")
            ingested = ingest_files(wh, files)
        return {"rows": ingested.read, "seconds": time.perf_counter() - started}

    import_started = time.perf_counter()
    import dbt.cli.main  # noqa: F401  (timed apart: every dbt process pays it once)

    from retail_pipeline.transform import run_transform

    imported = time.perf_counter() - import_started
    summary = run_transform(
        warehouse,
        full_refresh=bool(spec.get("full_refresh")),
        command=str(spec.get("command", "build")),
        extra_vars=spec.get("vars"),
        tests=str(spec.get("tests", "increment")),
    )
    return {
        "import_seconds": imported,
        "dbt_seconds": summary.seconds,
        "skipped": summary.skipped,
        "success": summary.success,
        "line": summary.line(),
        "failures": [f"{f.unique_id}: {f.message[:300]}" for f in summary.failures],
    }


def child(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one step in a fresh process; its figures come back as JSON with its peak RSS."""
    out = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(spec)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    if out.returncode:
        sys.exit(f"step {spec['step']} failed:\n{out.stderr}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def _report(label: str, result: dict[str, Any], full: float | None = None) -> float:
    seconds = float(result["dbt_seconds"])
    share = f"  ({seconds / full:.1%} of the full build)" if full else ""
    ok = "" if result["success"] else "  FAILED: " + "; ".join(result["failures"])
    ok += "  (skipped: nothing new)" if result.get("skipped") else ""
    print(
        f"{label:<40} {seconds:7.1f} s   peak RSS {float(result['peak_rss_mib']):7.0f} MiB"
        f"   (+{float(result['import_seconds']):.1f} s importing dbt){share}{ok}"
    )
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--events",
        default="10000000",
        help="event lines in the base; several sizes comma-separated for the growth curve",
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--cache", type=Path, default=ROOT / "data" / "bench-cache")
    parser.add_argument(
        "--lookback-minutes",
        type=int,
        default=None,
        help="staging lookback for the incremental runs (default: the project's, 60)",
    )
    parser.add_argument(
        "--commands", default="build,run", help="dbt commands to measure, comma-separated"
    )
    parser.add_argument(
        "--prepare-only", action="store_true", help="only simulate and load the cached Bronze"
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        result = _step(json.loads(args.child))
        result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(result))
        return

    cache = args.cache.resolve()
    sizes = [int(size) for size in str(args.events).split(",")]
    extra = (
        {"lookback_minutes": args.lookback_minutes} if args.lookback_minutes is not None else None
    )
    figures = {size: measure(cache, size, args, extra) for size in sizes}
    if args.prepare_only:
        return
    print("\n--- summary (issue 26 targets) ---")
    smallest = min(sizes)
    for size in sizes:
        for command, (full, increment, nothing) in figures[size].items():
            growth = increment / figures[smallest][command][1]
            print(
                f"{size:>11,} events  {command:<5} +1%: {increment:6.1f} s ="
                f" {increment / full:6.1%} of full (target <= 10% at 10M);"
                f" nothing new: {nothing:5.1f} s ="
                f" {nothing / full:6.1%} (<= 5%); +1% vs {smallest:,}: {growth:.2f}x (<= 1.5x)"
            )


def measure(
    cache: Path, events: int, args: argparse.Namespace, extra: dict[str, Any] | None
) -> dict[str, tuple[float, float, float]]:
    """Full, +1% and nothing-new seconds per dbt command on a base of ``events`` lines."""
    base, increment = simulate(cache, events, args.seed)
    source = bronze(cache, events, args.seed, base)
    figures: dict[str, tuple[float, float, float]] = {}
    if args.prepare_only:
        return figures
    work = cache / "work"
    work.mkdir(parents=True, exist_ok=True)
    for command in args.commands.split(","):
        warehouse = work / f"{command}.duckdb"
        shutil.copy(source, warehouse)
        print(f"\n--- dbt {command} on {events:,} base events ---")
        full = _report(
            f"full ({command} --full-refresh)",
            child({"step": "dbt", "warehouse": str(warehouse), "command": command,
                   "full_refresh": True, "vars": extra}),
        )  # fmt: skip
        added = child(
            {
                "step": "ingest",
                "warehouse": str(warehouse),
                "files": [str(p) for p in increment],
                "reference": False,
            }
        )
        print(f"{'ingested the 1% increment':<40} {added['rows']:,} lines")
        spec = {"step": "dbt", "warehouse": str(warehouse), "command": command, "vars": extra}
        increment_seconds = _report(f"incremental ({command})", child(spec), full)
        nothing = _report(f"rerun, nothing new ({command})", child(spec), full)
        if command == "build":
            _report("rerun, every row tested (--all-tests)", child({**spec, "tests": "all"}), full)
        figures[command] = (full, increment_seconds, nothing)
        warehouse.unlink()
    return figures


if __name__ == "__main__":
    main()
