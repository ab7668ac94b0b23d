"""The pipeline's commands: simulate events, ingest them into Bronze (from files or Kafka),
publish them to Kafka, watch the lag, build Silver and Gold, read the answers; and the demo
that runs them all end to end.

Each command works on the warehouse ``--target`` (or ``RETAIL_TARGET``) names: the DuckDB file
``--warehouse`` (or ``RETAIL_WAREHOUSE``), or the Snowflake account of the ``SNOWFLAKE_*``
settings. Only the demo keeps a warehouse of its own.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from retail_pipeline import interrupts
from retail_pipeline.cli.options import (
    PORT_MAX,
    BootstrapOpt,
    DaysOpt,
    OrdersPerDayOpt,
    SeedOpt,
    TargetOpt,
    TopicPrefixOpt,
    WarehouseOpt,
    at_most,
    resolve_topic_prefix,
)
from retail_pipeline.cli.output import node_progress, out, progress, say, to_stderr
from retail_pipeline.errors import InputError, PipelineError, printable

if TYPE_CHECKING:
    from retail_pipeline.dashboard.server import Dashboard
    from retail_pipeline.ingestion.kafka.consumer import ConsumerSettings
    from retail_pipeline.metrics import MetricsServer


def generate(
    out_dir: Annotated[Path, typer.Option("--out", metavar="DIR", help="Output folder")] = Path(
        "data/sim"
    ),
    days: DaysOpt = 7,
    orders_per_day: OrdersPerDayOpt = 500,
    seed: SeedOpt = 42,
    faults: Annotated[
        bool, typer.Option("--faults/--no-faults", help="Add duplicates, late and bad messages")
    ] = True,
) -> None:
    """Simulate customers, products and order/payment/shipment events, with truth.json."""
    from retail_pipeline.simulation import FaultRates
    from retail_pipeline.simulation import generate as simulate

    blocker = next((p for p in (out_dir, *out_dir.parents) if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        raise InputError(f"--out {out_dir}: {blocker} is a file, expected a folder")

    with progress("simulating days", days) as advance:
        summary = simulate(
            out_dir,
            days=days,
            orders_per_day=orders_per_day,
            seed=seed,
            faults=FaultRates() if faults else None,
            progress=lambda _done: advance(1),
        )
    say(
        f"simulated {summary.days} days: {summary.orders:,} orders, {summary.lines:,} event lines"
        f" ({summary.duplicates:,} duplicates, {summary.malformed:,} malformed),"
        f" {summary.customers:,} customers, {summary.products:,} products in {summary.out_dir}"
    )


def ingest(
    from_files: Annotated[
        list[Path] | None,
        typer.Option(
            "--from-files", metavar="FILE...", help="NDJSON event files (any mix of topics)"
        ),
    ] = None,
    files: Annotated[
        list[Path] | None, typer.Argument(metavar="FILE", help="More NDJSON files")
    ] = None,
    kafka: Annotated[bool, typer.Option("--kafka", help="Consume the Kafka topics")] = False,
    until_caught_up: Annotated[
        bool, typer.Option(help="--kafka: stop at the end offsets seen at start")
    ] = False,
    max_seconds: Annotated[
        float | None,
        typer.Option(
            min=0,
            metavar="SECONDS",
            help="--kafka: stop after this many seconds",
            callback=at_most("--max-seconds", 10**9),
        ),
    ] = None,
    batch_mb: Annotated[
        int,
        typer.Option(
            min=1,
            metavar="MIB",
            help="Files: MiB per transaction (at most 1024)",
            callback=at_most("--batch-mb", 1024),
        ),
    ] = 64,
    batch_size: Annotated[
        int,
        typer.Option(
            min=1,
            metavar="N",
            help="--kafka: messages per transaction (at most 1,000,000)",
            callback=at_most("--batch-size", 1_000_000),
        ),
    ] = (30_000),
    linger_ms: Annotated[
        int,
        typer.Option(
            min=0,
            metavar="MS",
            help="--kafka: max wait before a partial batch is written (at most 60000)",
            callback=at_most("--linger-ms", 60_000),
        ),
    ] = 500,
    group: Annotated[
        str, typer.Option(metavar="NAME", help="--kafka: consumer group")
    ] = "retail-bronze",
    instance_id: Annotated[
        str | None,
        typer.Option(
            metavar="ID",
            help="--kafka: static group member id (fast restarts); unique per consumer",
        ),
    ] = None,
    shared: Annotated[
        bool,
        typer.Option(
            help="--kafka on DuckDB: take the file lock per batch so several consumer"
            " processes can write one file (slower; one consumer per file is the default)."
            " Snowflake takes concurrent writers without it"
        ),
    ] = False,
    bootstrap: BootstrapOpt = None,
    topic_prefix: TopicPrefixOpt = None,
    warehouse: WarehouseOpt = None,
    target: TargetOpt = None,
) -> None:
    """Load events into Bronze exactly once, from files or Kafka, resuming where it stopped."""
    from retail_pipeline.ingestion.files import check_file, ingest_files
    from retail_pipeline.warehouse import open_warehouse
    from retail_pipeline.warehouse.dead_letters import dead_letter_lines

    if kafka:
        if from_files or files:
            raise PipelineError("give either --kafka or files to ingest, not both")
        from retail_pipeline.ingestion.kafka.consumer import ConsumerSettings

        consumer = ConsumerSettings(
            bootstrap=bootstrap,
            group_id=group,
            instance_id=instance_id,
            batch_size=batch_size,
            linger_ms=linger_ms,
            topic_prefix=resolve_topic_prefix(topic_prefix),
        )
        _ingest_kafka(
            warehouse,
            target,
            consumer,
            until_caught_up=until_caught_up,
            max_seconds=max_seconds,
            shared=shared,
        )
        return
    paths = [check_file(p) for p in [*(from_files or []), *(files or [])]]
    if not paths:
        raise PipelineError("nothing to ingest: give --from-files FILE... or --kafka")
    total = sum(p.stat().st_size for p in paths)
    with (
        open_warehouse(warehouse, target=target) as wh,
        progress("ingesting", total, in_bytes=True) as advance,
    ):
        summary = ingest_files(wh, paths, batch_bytes=batch_mb << 20, progress=advance)
        refused = dead_letter_lines(wh, summary.load_id) if summary.dead_lettered else []
    say(summary.line())
    for line in refused:
        to_stderr(line)


def _ingest_kafka(
    warehouse: Path | None,
    target: str | None,
    settings: ConsumerSettings,
    *,
    until_caught_up: bool,
    max_seconds: float | None,
    shared: bool,
) -> None:
    """Consume until caught up, ``max_seconds`` or a signal; one summary line."""

    from retail_pipeline.ingestion.kafka.consumer import KafkaBronzeConsumer
    from retail_pipeline.warehouse import open_warehouse
    from retail_pipeline.warehouse.dead_letters import dead_letter_lines

    graceful = interrupts.GracefulStop()  # SIGTERM, a first Ctrl-C: finish the batches in hand
    wh = open_warehouse(warehouse, target=target, exclusive=not shared)
    server = None
    try:
        consumer = KafkaBronzeConsumer(wh, settings)  # waits for the broker, bounded
        server = _metrics_server()
        graceful.install()
        with progress("consuming", 0) as advance:
            summary = consumer.run(
                until_caught_up=until_caught_up,
                max_seconds=max_seconds,
                stop=graceful.stop,
                progress=advance,
            )
        # stopped by Ctrl-C: the summary, then "aborted"; the dead letters wait in Bronze
        shown = summary.dead_lettered and not graceful.interrupted.is_set()
        refused = dead_letter_lines(wh, consumer.load_id) if shown else []
    finally:
        if server is not None:
            server.stop()
        wh.close()
    say(summary.line())
    for line in refused:
        to_stderr(line)
    if graceful.interrupted.is_set():  # stopped cleanly, but by Ctrl-C: say so, exit 130
        raise KeyboardInterrupt


def run(
    build_delay: Annotated[
        float | None,
        typer.Option(
            min=0,
            metavar="SECONDS",
            help="Rebuild once the oldest new Bronze row has waited this long (at most 3600)"
            "  [default: $RETAIL_RUN_BUILD_DELAY_SECONDS, 5]",
            show_default=False,
            callback=at_most("--build-delay", 3600),
        ),
    ] = None,
    dashboard: Annotated[
        bool, typer.Option("--dashboard", help="Serve the dashboard from this process too")
    ] = False,
    host: Annotated[
        str, typer.Option(metavar="ADDRESS", help="--dashboard: address to listen on")
    ] = "127.0.0.1",
    port: Annotated[
        int,
        typer.Option(
            min=0,
            metavar="N",
            help="--dashboard: port (0: any free)",
            callback=at_most("--port", PORT_MAX),
        ),
    ] = 8050,
    batch_size: Annotated[
        int,
        typer.Option(
            min=1,
            metavar="N",
            help="Messages per Bronze transaction (at most 1,000,000)",
            callback=at_most("--batch-size", 1_000_000),
        ),
    ] = 30_000,
    linger_ms: Annotated[
        int,
        typer.Option(
            min=0,
            metavar="MS",
            help="Max wait before a partial batch is written (at most 60000)",
            callback=at_most("--linger-ms", 60_000),
        ),
    ] = 500,
    group: Annotated[str, typer.Option(metavar="NAME", help="Consumer group")] = "retail-bronze",
    instance_id: Annotated[
        str | None, typer.Option(metavar="ID", help="Static group member id (fast restarts)")
    ] = None,
    bootstrap: BootstrapOpt = None,
    topic_prefix: TopicPrefixOpt = None,
    warehouse: WarehouseOpt = None,
    target: TargetOpt = None,
) -> None:
    """Continuously: consume Kafka into Bronze and rebuild Silver/Gold incrementally whenever
    new rows have waited --build-delay seconds; builds never overlap (docs/continuous.md).
    SIGTERM or Ctrl-C: the batch in hand is committed and a running build finishes; a second
    Ctrl-C aborts. /metrics on $RETAIL_METRICS_PORT when set."""
    import sys
    import threading

    from retail_pipeline.continuous import run_continuous
    from retail_pipeline.ingestion.kafka.consumer import ConsumerSettings
    from retail_pipeline.settings import settings

    consumer = ConsumerSettings(
        bootstrap=bootstrap,
        group_id=group,
        instance_id=instance_id,
        batch_size=batch_size,
        linger_ms=linger_ms,
        topic_prefix=resolve_topic_prefix(topic_prefix),
    )
    delay = settings().run_build_delay_seconds if build_delay is None else build_delay
    graceful = interrupts.GracefulStop()  # commit the batch in hand, let a build finish, stop

    def started() -> None:
        graceful.install()
        say(f"running: Kafka -> Bronze, and a build once new rows have waited {delay:g}s")
        sys.stdout.flush()

    served: list[tuple[Dashboard, threading.Thread]] = []

    def built() -> None:
        """After the first build Gold exists: serve the dashboard from this process, where it
        reads the database instance the loader and dbt write (docs/continuous.md)."""
        if dashboard and not served:
            from retail_pipeline.dashboard.server import create_dashboard

            page = create_dashboard(warehouse, target=target, host=host, port=port)
            page.gold.refresh_seconds = 1.0
            thread = threading.Thread(target=page.serve_forever, name="dashboard", daemon=True)
            thread.start()
            served.append((page, thread))
            say(f"dashboard: {page.url}")

    server = _metrics_server()
    try:
        summary = run_continuous(
            warehouse,
            target,
            consumer,
            build_delay=delay,
            stop=graceful.stop,
            echo=say,
            on_started=started,
            on_built=built,
        )
    finally:
        for page, thread in served:
            page.stop()
            thread.join(10)  # it closes its DuckDB snapshot last: not while Python shuts down
        if server is not None:
            server.stop()
    say(summary.line())
    if graceful.interrupted.is_set():  # stopped cleanly, but by Ctrl-C: say so, exit 130
        raise KeyboardInterrupt


def produce(
    from_files: Annotated[
        list[Path] | None,
        typer.Option("--from-files", metavar="FILE...", help="NDJSON event files to publish"),
    ] = None,
    files: Annotated[
        list[Path] | None, typer.Argument(metavar="FILE", help="More NDJSON files")
    ] = None,
    rate: Annotated[
        float | None,
        typer.Option(
            min=1,
            metavar="PER_SECOND",
            help="Messages per second (at most 10,000,000) [default: as fast as possible]",
            callback=at_most("--rate", 10_000_000),
        ),
    ] = None,
    skip_invalid: Annotated[
        bool, typer.Option(help="Drop lines that break the contract instead of sending them")
    ] = False,
    bootstrap: BootstrapOpt = None,
    topic_prefix: TopicPrefixOpt = None,
) -> None:
    """Publish events to Kafka: topic by event_type, key order_id, idempotent producer.

    A line Kafka refuses (over the size limit, say) goes to the dead-letter topic with the
    reason, and the summary names it; the rest of the files are still sent. Waits at most
    $RETAIL_KAFKA_CONNECT_TIMEOUT seconds (10) for the broker.
    """
    from retail_pipeline.ingestion.files import check_file
    from retail_pipeline.ingestion.kafka.producer import produce_files

    paths = [check_file(p) for p in [*(from_files or []), *(files or [])]]
    if not paths:
        raise PipelineError("nothing to produce: give --from-files FILE...")
    with progress("producing", 0) as advance:
        summary = produce_files(
            paths,
            bootstrap=bootstrap,
            rate=rate,
            skip_invalid=skip_invalid,
            progress=advance,
            topic_prefix=resolve_topic_prefix(topic_prefix),
        )
    say(summary.line())


def status(
    bootstrap: BootstrapOpt = None,
    topic_prefix: TopicPrefixOpt = None,
    warehouse: WarehouseOpt = None,
    target: TargetOpt = None,
) -> None:
    """Per topic/partition: warehouse offset, broker end offset and lag; Bronze counts.

    When the broker cannot be asked (it waits $RETAIL_KAFKA_CONNECT_TIMEOUT seconds, 10), the
    warehouse side is still printed, the broker side shows '?', and one error line says why:
    exit code 1.
    """
    from rich.table import Table

    from retail_pipeline.events.contract import TOPICS
    from retail_pipeline.ingestion.kafka.status import partition_lags
    from retail_pipeline.warehouse import open_warehouse

    wh = open_warehouse(warehouse, target=target, read_only=True, exclusive=False)
    topics = tuple(resolve_topic_prefix(topic_prefix) + t for t in TOPICS)
    lags, error = partition_lags(wh.all_positions(), bootstrap, topics)
    table = Table("topic", "partition", "warehouse offset", "end offset", "lag")
    for lag in lags:
        table.add_row(
            lag.topic,
            str(lag.partition),
            "-" if lag.warehouse_offset is None else f"{lag.warehouse_offset:,}",
            "?" if lag.end_offset is None else f"{lag.end_offset:,}",
            "?" if lag.lag is None else f"{lag.lag:,}",
        )
    out.print(table)
    for name, n in wh.counts().items():
        out.print(f"bronze.{name:<16} {n:>12,}")
    if error:
        raise PipelineError(f"broker side unknown ('?'): {error}")


def counts(warehouse: WarehouseOpt = None, target: TargetOpt = None) -> None:
    """Row counts of the Bronze tables."""
    from retail_pipeline.warehouse import open_warehouse

    with open_warehouse(warehouse, target=target, read_only=True) as wh:
        for table, n in wh.counts().items():
            out.print(f"bronze.{table:<16} {n:>12,}")


def migrate(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Report what would change; write nothing")
    ] = False,
    warehouse: WarehouseOpt = None,
    target: TargetOpt = None,
) -> None:
    """Upgrade a Bronze of an earlier schema version in place (docs/bronze.md#migrations)."""
    from retail_pipeline.warehouse.migrations import migrate_warehouse

    summary = migrate_warehouse(warehouse, target=target, dry_run=dry_run)
    if not summary.steps:
        if summary.from_version is None:  # a Snowflake database nothing has loaded into yet
            say("Bronze records no schema version (nothing loaded yet): nothing to migrate")
        else:
            say(f"Bronze is at schema version {summary.to_version}: nothing to migrate")
        return
    verb = "would" if dry_run else "did"
    for step in summary.steps:
        say(f"step {step.from_version} -> {step.to_version} ({step.name}):")
        for change in step.tables:
            say(
                f"  bronze.{change.table:<16} {change.rows:>10,} rows, {change.rederived:>10,}"
                f" re-derived, {change.dead_lettered:>8,} to dead_letter"
            )
        for table, column, sql_type in step.added_columns:
            say(f"  bronze.{table:<16} + {column} {sql_type} (nullable, added in place)")
    state = "would reach" if dry_run else "now at"
    say(
        f"{'dry run: ' if dry_run else ''}{len(summary.steps)} step(s) {verb} run; Bronze"
        f" {state} schema version {summary.to_version}"
    )
    if summary.steps:
        say(
            "next: `retail-pipeline transform --full-refresh` once (incremental Silver and Gold"
            " take Bronze's new shape), and `retail-pipeline redrive` for dead letters the"
            " current contract may accept"
        )


def redrive(
    reason: Annotated[
        str | None,
        typer.Option(
            "--reason", metavar="TEXT", help="Only dead letters whose reason contains TEXT"
        ),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(
            "--since", metavar="TIME", help="Only dead letters ingested at or after TIME (ISO-8601)"
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Say what would be redriven; write nothing")
    ] = False,
    warehouse: WarehouseOpt = None,
    target: TargetOpt = None,
) -> None:
    """Validate dead letters again with the current contract; load the now valid ones into
    Bronze exactly once (docs/bronze.md#redrive)."""
    from retail_pipeline.warehouse.redrive import parse_since, redrive_warehouse

    at = parse_since(since)  # a bad value: one line, before the warehouse is opened
    summary = redrive_warehouse(warehouse, target=target, reason=reason, since=at, dry_run=dry_run)
    say(summary.line())


def schemas(
    out_dir: Annotated[
        Path, typer.Option("--out", metavar="DIR", help="Folder for the JSON Schema files")
    ] = Path("schemas"),
) -> None:
    """Write the event contract as JSON Schema files (one per event type, plus reference data)."""
    from retail_pipeline.events.schemas import write_schemas

    written = write_schemas(out_dir)
    say(f"wrote {len(written)} JSON Schema files to {out_dir}")


def _metrics_server() -> MetricsServer | None:
    """``/metrics`` on ``RETAIL_METRICS_HOST``:``RETAIL_METRICS_PORT`` while consuming (when the
    port is set); its URL is a line on stderr."""
    from retail_pipeline import metrics
    from retail_pipeline.settings import settings

    config = settings()
    if config.metrics_port is None:
        return None
    server = metrics.serve(config.metrics_host, config.metrics_port)
    host = f"[{config.metrics_host}]" if ":" in config.metrics_host else config.metrics_host
    to_stderr(f"serving metrics on http://{host}:{server.port}/metrics")
    return server


def transform(
    full_refresh: Annotated[
        bool, typer.Option("--full-refresh", help="Rebuild incremental models from all of Bronze")
    ] = False,
    warehouse: WarehouseOpt = None,
    target: TargetOpt = None,
    defer: Annotated[
        bool,
        typer.Option(
            "--defer",
            help="dev/ci only: build just the models that differ from --state's production"
            " manifest and their children, reading the rest from production",
        ),
    ] = False,
    state: Annotated[
        Path | None,
        typer.Option(
            "--state",
            metavar="DIR",
            help="With --defer: the folder holding a production build's manifest.json",
        ),
    ] = None,
    all_tests: Annotated[
        bool,
        typer.Option(
            "--all-tests",
            help="Test every row, with unit tests and whole-table reconciliations, as a full"
            " refresh does (an incremental build tests the rows it wrote); run it on a schedule",
        ),
    ] = False,
) -> None:
    """Build Silver and Gold with dbt (models, tests, unit tests); incremental by default:
    models process what is new, data tests read the rows the build wrote (--all-tests: every
    row), and nothing runs when nothing changed since the last build. dbt builds in the
    warehouse --target names: the DuckDB file or the Snowflake account (the target of that
    name in dbt/profiles.yml), into the schemas of RETAIL_ENVIRONMENT (prod:
    silver and gold; dev, ci: <RETAIL_SCHEMA_PREFIX>_silver and _gold). First `dbt source
    freshness`: each Bronze table past its warn_after/error_after is a warning line, and the
    build goes on."""
    from retail_pipeline.settings import utf8_path
    from retail_pipeline.transform import run_transform

    if defer != (state is not None):
        raise PipelineError("--defer and --state DIR go together (docs/transform.md#environments)")
    if state is not None:
        utf8_path(state, "--state")
    with node_progress() as advance:
        summary = run_transform(
            warehouse,
            full_refresh,
            advance,
            target=target,
            source_freshness=True,
            defer_state=state,
            tests="all" if all_tests else "increment",
        )
    if summary.freshness_error:
        to_stderr(f"warning: dbt source freshness could not run: {summary.freshness_error}")
    for source in summary.stale:  # stale Bronze is reported, never a reason not to build
        to_stderr(f"warning: stale source {source.line()}")
    say(summary.line())
    _record_transform(warehouse, target, success=summary.success)
    if not summary.success:
        for failure in summary.failures:
            to_stderr(f"failed: {failure.unique_id}: {failure.message}")
        raise PipelineError(f"dbt build failed ({len(summary.failures)} failing nodes)")


def _record_transform(warehouse: Path | None, target: str | None, *, success: bool) -> None:
    """The transform job's metrics: its success and Gold's freshness, in the textfile when
    ``RETAIL_METRICS_DIR`` is set. Reading Gold's build info is one small query; a warehouse
    that cannot be read leaves the Gold series out, never fails the command."""
    from retail_pipeline import metrics
    from retail_pipeline.transform import gold_status

    if success:
        metrics.record_success("transform")
    try:
        status = gold_status(warehouse, target=target)
    except PipelineError:
        pass
    else:
        behind = status.events_since + status.reference_rows_since
        metrics.set_gold(status.built_at, behind if status.freshness_known else None)
    metrics.write_textfile("transform")


def answers(
    as_json: Annotated[bool, typer.Option("--json", help="docs/metrics.md's JSON shape")] = False,
    restatements: Annotated[
        bool,
        typer.Option(
            "--restatements",
            help="Instead: the published figures later builds changed (the restatement"
            " ledger), newest first, with old and new value, delta and the loads that caused it",
        ),
    ] = False,
    since: Annotated[
        str | None,
        typer.Option(
            metavar="WHEN",
            help="With --restatements: only those recorded at or after WHEN (a date, or an"
            " ISO 8601 time; UTC unless it says otherwise)",
        ),
    ] = None,
    limit: Annotated[
        int,
        typer.Option(
            metavar="N",
            min=1,
            help="With --restatements: list at most N (N at most 1,000,000)",
            callback=at_most("--limit", 1_000_000),
        ),
    ] = 500,
    warehouse: WarehouseOpt = None,
    target: TargetOpt = None,
) -> None:
    """The six business answers, read from Gold (warns on stderr when Gold is stale)."""
    from retail_pipeline.transform import format_answers, gold_status, read_answers

    if restatements:
        from retail_pipeline.transform.ledger import (
            format_restatements,
            parse_since,
            read_restatements,
        )

        found = read_restatements(
            warehouse,
            target=target,
            since=parse_since(since) if since is not None else None,
            limit=limit,
        )
        if as_json:
            print(json.dumps(found.as_json(), indent=2))
        else:
            print(printable(format_restatements(found)), end="")
        return
    if since is not None:
        raise PipelineError("--since goes with --restatements")
    result = read_answers(warehouse, target=target)
    status = gold_status(warehouse, target=target)
    warning = status.warning()
    if warning:
        to_stderr(warning)
    if as_json:
        print(json.dumps(result, indent=2))
    else:  # the answers quote names from the sources: printable, line by line
        print(printable(format_answers(result, status=status)), end="")


def demo(
    workdir: Annotated[
        Path,
        typer.Option(metavar="DIR", help="Where the simulation (sim/) and the demo's warehouse go"),
    ] = Path("data/demo"),
    days: DaysOpt = 14,
    orders_per_day: OrdersPerDayOpt = 300,
    seed: SeedOpt = 7,
    kafka: Annotated[
        bool,
        typer.Option(
            "--kafka",
            help="Go through the local Kafka broker (started if needed, and then stopped again)",
        ),
    ] = False,
    warehouse: Annotated[
        Path | None,
        typer.Option(
            "--warehouse",
            "-w",
            metavar="FILE",
            help="The demo's DuckDB warehouse file, refused if it holds anything but this"
            " simulation (--target snowflake has none: refused)"
            "  [default: DIR/warehouse.duckdb; RETAIL_WAREHOUSE is not used]",
            show_default=False,
        ),
    ] = None,
    target: Annotated[
        str,
        typer.Option(
            "--target",
            metavar="duckdb|snowflake",
            help="duckdb: the DuckDB file; snowflake: a local Snowflake emulator the demo starts"
            " and stops (needs the snowflake and emulator extras). RETAIL_TARGET and"
            " SNOWFLAKE_* are not used: the demo never touches a real account",
        ),
    ] = "duckdb",
    as_json: Annotated[
        bool,
        typer.Option(
            "--json", help="Print the answers as docs/metrics.md's JSON (the rest goes to stderr)"
        ),
    ] = False,
) -> None:
    """End to end on embedded defaults: simulate, load, transform, print the six answers and
    whether they equal the simulation's truth (exit code 1 if not)."""
    from retail_pipeline.demo import run_demo
    from retail_pipeline.transform import format_answers

    result = run_demo(
        workdir,
        days=days,
        orders_per_day=orders_per_day,
        seed=seed,
        kafka=kafka,
        warehouse=warehouse,
        target=target,
        dbt_progress=node_progress,
        echo=to_stderr if as_json else say,
    )
    if as_json:  # stdout is the JSON alone, for tools; the story goes to stderr
        print(json.dumps(result.answers, indent=2))
        to_stderr(result.where())
        to_stderr(result.verdict())
    else:
        print(printable(format_answers(result.answers)), end="")
        say(result.where())
        say(result.verdict())
    if not result.matches_truth:
        raise PipelineError(f"the demo's answers differ from {result.truth_file}")
