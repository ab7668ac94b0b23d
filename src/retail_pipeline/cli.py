"""The ``retail-pipeline`` command line: parses arguments and delegates to the package."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TransferSpeedColumn,
)

from retail_pipeline.errors import PipelineError

app = typer.Typer(
    help="Retail analytics pipeline: simulate, load and ingest events into a DuckDB warehouse.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)
out = Console(soft_wrap=True, markup=False)

WarehouseOpt = Annotated[
    Path | None,
    typer.Option(
        "--warehouse",
        "-w",
        help="DuckDB warehouse file [env: RETAIL_WAREHOUSE; default: data/warehouse.duckdb]",
        show_default=False,
    ),
]


@contextmanager
def _bytes_progress(total: int, label: str) -> Iterator[Callable[[int], None]]:
    with Progress(
        TextColumn(label),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    ) as progress:
        task = progress.add_task(label, total=total)
        yield lambda n: progress.advance(task, n)


@contextmanager
def _count_progress(total: int, label: str) -> Iterator[Callable[[int], None]]:
    with Progress(
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    ) as progress:
        task = progress.add_task(label, total=total)
        yield lambda n: progress.advance(task, n)


@app.command()
def generate(
    out_dir: Annotated[Path, typer.Option("--out", help="Output folder")] = Path("data/sim"),
    days: Annotated[int, typer.Option(min=1, help="Days to simulate")] = 7,
    orders_per_day: Annotated[int, typer.Option(min=1, help="Mean orders per day")] = 500,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same output)")] = 42,
    faults: Annotated[
        bool, typer.Option("--faults/--no-faults", help="Add duplicates, late and bad messages")
    ] = True,
) -> None:
    """Simulate customers, products and order/payment/shipment events, with truth.json."""
    from retail_pipeline.events.simulator import FaultRates
    from retail_pipeline.events.simulator import generate as simulate

    with _count_progress(days, "simulating days") as advance:
        summary = simulate(
            out_dir,
            days=days,
            orders_per_day=orders_per_day,
            seed=seed,
            faults=FaultRates() if faults else None,
            progress=lambda _done: advance(1),
        )
    out.print(
        f"simulated {summary.days} days: {summary.orders:,} orders, {summary.lines:,} event lines"
        f" ({summary.duplicates:,} duplicates, {summary.malformed:,} malformed),"
        f" {summary.customers:,} customers, {summary.products:,} products in {summary.out_dir}"
    )


@app.command("load-batch")
def load_batch(
    customers: Annotated[
        Path | None, typer.Option(help="Customers snapshot (JSON array or NDJSON)")
    ] = None,
    products: Annotated[
        Path | None, typer.Option(help="Products snapshot (JSON array or NDJSON)")
    ] = None,
    warehouse: WarehouseOpt = None,
) -> None:
    """Append customer and product snapshots to Bronze (same content twice is a no-op)."""
    from retail_pipeline.ingestion.batch import load_snapshot, read_snapshot
    from retail_pipeline.warehouse.duckdb import DuckDBWarehouse

    if customers is None and products is None:
        raise PipelineError("nothing to load: give --customers FILE and/or --products FILE")
    snapshots = [
        read_snapshot(entity, path)
        for entity, path in (("customers", customers), ("products", products))
        if path is not None
    ]
    with DuckDBWarehouse(warehouse) as wh:
        for snapshot in snapshots:
            out.print(load_snapshot(wh, snapshot).line())


@app.command()
def ingest(
    from_files: Annotated[
        list[Path] | None,
        typer.Option("--from-files", help="NDJSON event files (any mix of topics)"),
    ] = None,
    files: Annotated[list[Path] | None, typer.Argument(help="More NDJSON files")] = None,
    batch_mb: Annotated[int, typer.Option(min=1, help="Bytes per transaction, in MiB")] = 8,
    warehouse: WarehouseOpt = None,
) -> None:
    """Load events into Bronze exactly once, resuming where the last run stopped."""
    from retail_pipeline.ingestion.files import check_file, ingest_files
    from retail_pipeline.warehouse.duckdb import DuckDBWarehouse

    paths = [check_file(p) for p in [*(from_files or []), *(files or [])]]
    if not paths:
        raise PipelineError("nothing to ingest: give --from-files FILE...")
    total = sum(p.stat().st_size for p in paths)
    with DuckDBWarehouse(warehouse) as wh, _bytes_progress(total, "ingesting") as advance:
        summary = ingest_files(wh, paths, batch_bytes=batch_mb << 20, progress=advance)
    out.print(summary.line())


@app.command()
def counts(warehouse: WarehouseOpt = None) -> None:
    """Row counts of the Bronze tables."""
    from retail_pipeline.warehouse.duckdb import DuckDBWarehouse

    with DuckDBWarehouse(warehouse, read_only=True) as wh:
        for table, n in wh.counts().items():
            out.print(f"bronze.{table:<16} {n:>12,}")


@app.command()
def schemas(
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for the JSON Schema files")] = Path(
        "schemas"
    ),
) -> None:
    """Write the event contract as JSON Schema files (one per event type, plus reference data)."""
    from retail_pipeline.events.schemas import write_schemas

    written = write_schemas(out_dir)
    out.print(f"wrote {len(written)} JSON Schema files to {out_dir}")


@app.command()
def demo(
    workdir: Annotated[Path, typer.Option(help="Where the simulation and warehouse go")] = Path(
        "data/demo"
    ),
    days: Annotated[int, typer.Option(min=1)] = 14,
    orders_per_day: Annotated[int, typer.Option(min=1)] = 300,
    seed: Annotated[int, typer.Option()] = 7,
) -> None:
    """End to end on embedded defaults: simulate, load reference data, ingest events."""
    from retail_pipeline.demo import run_demo

    report = run_demo(workdir, days=days, orders_per_day=orders_per_day, seed=seed, echo=out.print)
    out.print(json.dumps(report, indent=2))


def main() -> None:
    """Entry point: user errors become one line on stderr and exit code 1."""
    try:
        code = app(standalone_mode=False)
        if isinstance(code, int) and code:
            sys.exit(code)
    except PipelineError as exc:
        console.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(1)
    except (typer.Abort, KeyboardInterrupt):
        console.print("[red]aborted[/red]")
        sys.exit(130)
    except Exception as exc:
        # Usage errors (typer's click) know how to show themselves and their exit code.
        show, code = getattr(exc, "show", None), getattr(exc, "exit_code", None)
        if callable(show) and isinstance(code, int):
            show()
            sys.exit(code)
        raise


if __name__ == "__main__":
    main()
