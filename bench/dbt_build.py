"""Benchmark: the dbt build (Silver + Gold) on a large Bronze, then an incremental run.

Prints figures, asserts nothing. Steps, each timed in a fresh process so that its peak RSS
belongs to it alone (dbt and DuckDB both run inside that process):

1. simulate (cached) a faulted shop with about ``--events`` event lines plus 1% more, split into
   a base part and a 1% increment (the increment is the latest arrivals of every topic file);
2. ingest the base into a Bronze-only warehouse (cached);
3. full build: ``dbt build --full-refresh`` (models, data tests, unit tests) on a copy;
4. ingest the increment (not part of the dbt figures);
5. incremental build: ``dbt build`` again, then a rerun with nothing new (a no-op);
6. the same with ``dbt run`` (models only): the cost of the models without dbt's tests.

Staging re-reads ``lookback_minutes`` of Bronze below its high-water mark. The cached base was
ingested minutes before the increment, so with the default 60 minutes the whole base lies in
that window (a production increment an hour later would not); ``--lookback-minutes 0`` shows
the steady state.

    python bench/dbt_build.py --events 1000000
    python bench/dbt_build.py --events 10000000 --cache data/bench-cache
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
    )
    return {
        "import_seconds": imported,
        "dbt_seconds": summary.seconds,
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
    print(
        f"{label:<34} {seconds:7.1f} s   peak RSS {float(result['peak_rss_mib']):7.0f} MiB"
        f"   (+{float(result['import_seconds']):.1f} s importing dbt){share}{ok}"
    )
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000_000, help="event lines in the base")
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
    base, increment = simulate(cache, args.events, args.seed)
    source = bronze(cache, args.events, args.seed, base)
    if args.prepare_only:
        return
    work = cache / "work"
    work.mkdir(parents=True, exist_ok=True)
    extra = (
        {"lookback_minutes": args.lookback_minutes} if args.lookback_minutes is not None else None
    )
    for command in args.commands.split(","):
        warehouse = work / f"{command}.duckdb"
        shutil.copy(source, warehouse)
        print(f"\n--- dbt {command} on {args.events:,} base events ---")
        full = _report(
            f"full ({command} --full-refresh)",
            child({"step": "dbt", "warehouse": str(warehouse), "command": command,
                   "full_refresh": True}),
        )  # fmt: skip
        added = child(
            {
                "step": "ingest",
                "warehouse": str(warehouse),
                "files": [str(p) for p in increment],
                "reference": False,
            }
        )
        print(f"{'ingested the 1% increment':<34} {added['rows']:,} lines")
        spec = {"step": "dbt", "warehouse": str(warehouse), "command": command, "vars": extra}
        _report(f"incremental ({command})", child(spec), full)
        _report(f"rerun, nothing new ({command})", child(spec), full)
        warehouse.unlink()


if __name__ == "__main__":
    main()
