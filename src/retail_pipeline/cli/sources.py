"""``load-batch``: the customers and products reference data, from snapshot files or as the
changes since the last run from the HTTP API and PostgreSQL readers."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from retail_pipeline.cli.options import TargetOpt, WarehouseOpt, at_most, flag_check
from retail_pipeline.cli.output import say, to_stderr
from retail_pipeline.errors import PipelineError
from retail_pipeline.settings import check_api_url


def load_batch(
    customers: Annotated[
        Path | None, typer.Option(metavar="FILE", help="Customers snapshot (JSON array or NDJSON)")
    ] = None,
    products: Annotated[
        Path | None, typer.Option(metavar="FILE", help="Products snapshot (JSON array or NDJSON)")
    ] = None,
    api: Annotated[
        str | None,
        typer.Option(
            metavar="URL",
            help="Read changed customers and products from this HTTP API (bearer token:"
            " RETAIL_API_TOKEN)",
            callback=flag_check("--api", check_api_url),
        ),
    ] = None,
    postgres: Annotated[
        str | None,
        typer.Option(
            metavar="DSN",
            help="Read changed customers and products from these PostgreSQL tables (a password"
            " is best left to PGPASSWORD or ~/.pgpass)",
        ),
    ] = None,
    entity: Annotated[
        list[str] | None,
        typer.Option(
            metavar="NAME", help="Only this entity (customers or products) from the API or Postgres"
        ),
    ] = None,
    lag: Annotated[
        float | None,
        typer.Option(
            min=0,
            metavar="SECONDS",
            help="Stay this far behind the source's clock (at most 86400)"
            "  [env var: RETAIL_BATCH_LAG; default: 5]",
            callback=at_most("--lag", 86_400),
            show_default=False,
        ),
    ] = None,
    batch_size: Annotated[
        int,
        typer.Option(
            min=1,
            metavar="N",
            help="Records per transaction (at most 1,000,000, and at most 32 MiB of them)",
            callback=at_most("--batch-size", 1_000_000),
        ),
    ] = 50_000,  # incremental.BATCH_SIZE and batch.BATCH_RECORDS (a test keeps them equal)
    warehouse: WarehouseOpt = None,
    target: TargetOpt = None,
) -> None:
    """Load customers and products: snapshot files (same content twice is a no-op), or the
    changes since the last run from an HTTP API or Postgres. With no option, the sources that
    RETAIL_API_URL and RETAIL_POSTGRES_DSN name."""
    from retail_pipeline.ingestion.batch import load_snapshot, read_snapshot
    from retail_pipeline.ingestion.sources import change_sources, entities, load_sources
    from retail_pipeline.warehouse import open_warehouse
    from retail_pipeline.warehouse.dead_letters import dead_letter_lines

    entities(entity)  # a bad --entity is refused before anything is loaded
    sources = change_sources(
        api=api,
        postgres=postgres,
        configured=customers is None and products is None and api is None and postgres is None,
    )
    if customers is None and products is None and not sources:
        raise PipelineError(
            "nothing to load: give --customers FILE, --products FILE, --api URL or --postgres"
            " DSN (or set RETAIL_API_URL / RETAIL_POSTGRES_DSN)"
        )
    snapshots = [
        read_snapshot(name, path)
        for name, path in (("customers", customers), ("products", products))
        if path is not None
    ]
    if snapshots:
        with open_warehouse(warehouse, target=target) as wh:
            for snapshot in snapshots:
                loaded = load_snapshot(wh, snapshot, batch_records=batch_size)
                say(loaded.line())
                for line in dead_letter_lines(wh, loaded.load_id) if loaded.dead_lettered else []:
                    to_stderr(line)
    if sources:  # read, then write: the file is open only to commit a batch already read
        with open_warehouse(warehouse, target=target, exclusive=False) as wh:
            changes = load_sources(wh, sources, only=entity, lag_seconds=lag, batch_size=batch_size)
            for summary in changes:
                say(summary.line())
                for line in dead_letter_lines(wh, summary.load_id) if summary.dead_lettered else []:
                    to_stderr(line)
