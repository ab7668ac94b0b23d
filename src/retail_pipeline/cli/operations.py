"""Operating the pipeline: ``health`` (is it healthy? an exit code a monitor can use)."""

from __future__ import annotations

from typing import Annotated

import typer

from retail_pipeline.cli.options import BootstrapOpt, TargetOpt, TopicPrefixOpt, WarehouseOpt
from retail_pipeline.cli.output import say


def health(
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON document naming every check")
    ] = False,
    kafka: Annotated[
        bool,
        typer.Option(
            "--kafka",
            help="Check the lag of every Kafka partition (also when --bootstrap or"
            " RETAIL_KAFKA_BOOTSTRAP is set); an unreachable broker is an error check",
        ),
    ] = False,
    bootstrap: BootstrapOpt = None,
    topic_prefix: TopicPrefixOpt = None,
    warehouse: WarehouseOpt = None,
    target: TargetOpt = None,
) -> None:
    """Is the pipeline healthy? Per Bronze table: last ingest against dbt's freshness rule,
    event-time watermark, rows and dead letters of the last run; per Kafka partition: lag;
    Gold: the last build's result (gold.build_log), event-time watermark, Bronze rows not yet
    in Gold. Reads the warehouse --target names (the DuckDB file or the Snowflake account).
    One line per check (or --json); exit code 0 healthy, 1 warning, 2 error
    (docs/operations.md#health)."""
    from retail_pipeline.monitoring.health import health as check
    from retail_pipeline.settings import settings

    servers = bootstrap or (settings().kafka_bootstrap if kafka else None)
    report = check(warehouse, target=target, bootstrap=servers, topic_prefix=topic_prefix)
    if as_json:
        print(report.to_json())
    else:
        for item in report.checks:
            say(f"{item.status} {item.name}: {item.message}")
        say(report.line())
    if report.exit_code:
        raise typer.Exit(report.exit_code)
