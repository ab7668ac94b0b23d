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

from retail_pipeline.errors import InputError, PipelineError, one_line, printable
from retail_pipeline.settings import check_api_url, check_settings, check_topic_prefix, utf8_path
from retail_pipeline.settings import parse_bootstrap as _parse_bootstrap

app = typer.Typer(
    help=(
        "Retail analytics pipeline: simulate, load and ingest events and reference data into"
        " Bronze, build Silver and Gold with dbt and answer from them, on DuckDB or Snowflake."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
console = Console(stderr=True)
ABORTED = 130  # the shell's code for a command stopped by Ctrl-C (128 + SIGINT)
out = Console(soft_wrap=True, markup=False)
OUTPUT_LIMIT = 20_000
"""The longest line a command prints (a summary naming many files, say)."""


def _say(text: str) -> None:
    """Print a command's output, line by line. Outside text in it (a file name, a source, a
    server's message) is made printable and a secret it may quote masked, as in errors."""
    for line in text.splitlines() or [""]:
        indent = " " * (len(line) - len(line.lstrip(" ")))
        out.print(indent + one_line(line, limit=OUTPUT_LIMIT), highlight=False)


def _flag_check(flag: str, check: Callable[[str], str]) -> Callable[[str | None], str | None]:
    """A typer callback checking an option's value as its setting's is checked: a bad value
    is one line naming the flag."""

    def callback(value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return check(value)
        except ValueError as exc:
            shown = repr(value) if len(repr(value)) <= 80 else repr(value)[:76] + "...'"
            raise PipelineError(f"{flag} {shown}: {exc}") from None

    return callback


def _warehouse_option(value: Path | None) -> Path | None:
    return None if value is None else utf8_path(value, "--warehouse")


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        out.print(f"retail-pipeline {version('retail-pipeline')}")
        raise typer.Exit()


@app.callback()
def _options(
    show_version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version and exit"
        ),
    ] = False,
) -> None:
    """Retail analytics pipeline: simulate, load and ingest events and reference data into
    Bronze, build Silver and Gold with dbt and answer from them, on DuckDB or Snowflake."""
    if not {"--help", "-h"} & set(sys.argv[1:]):
        check_settings()  # a bad RETAIL_*/SNOWFLAKE_* value: one line, whatever the command


WarehouseOpt = Annotated[
    Path | None,
    typer.Option(
        "--warehouse",
        "-w",
        metavar="FILE",
        help="DuckDB warehouse file  [env var: RETAIL_WAREHOUSE; default: data/warehouse.duckdb]",
        show_default=False,
        callback=_warehouse_option,
    ),
]


TargetOpt = Annotated[
    str | None,
    typer.Option(
        "--target",
        metavar="duckdb|snowflake",
        help="The warehouse to work on (snowflake: the SNOWFLAKE_* settings)"
        "  [env var: RETAIL_TARGET; default: duckdb]",
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


DaysOpt = Annotated[int, typer.Option(min=1, metavar="N", help="Days to simulate")]
OrdersPerDayOpt = Annotated[int, typer.Option(min=1, metavar="N", help="Mean orders per day")]
SeedOpt = Annotated[int, typer.Option(metavar="N", help="Random seed (same seed, same simulation)")]


@app.command()
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

    with _count_progress(days, "simulating days") as advance:
        summary = simulate(
            out_dir,
            days=days,
            orders_per_day=orders_per_day,
            seed=seed,
            faults=FaultRates() if faults else None,
            progress=lambda _done: advance(1),
        )
    _say(
        f"simulated {summary.days} days: {summary.orders:,} orders, {summary.lines:,} event lines"
        f" ({summary.duplicates:,} duplicates, {summary.malformed:,} malformed),"
        f" {summary.customers:,} customers, {summary.products:,} products in {summary.out_dir}"
    )


@app.command("load-batch")
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
            callback=_flag_check("--api", check_api_url),
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
            help="Stay this far behind the source's clock  [env var: RETAIL_BATCH_LAG; default: 5]",
            show_default=False,
        ),
    ] = None,
    batch_size: Annotated[
        int,
        typer.Option(min=1, metavar="N", help="Records per transaction (at most 32 MiB of them)"),
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
                _say(load_snapshot(wh, snapshot, batch_records=batch_size).line())
    if sources:  # read, then write: the file is open only to commit a batch already read
        with open_warehouse(warehouse, target=target, exclusive=False) as wh:
            changes = load_sources(wh, sources, only=entity, lag_seconds=lag, batch_size=batch_size)
            for summary in changes:
                _say(summary.line())


BootstrapOpt = Annotated[
    str | None,
    typer.Option(
        "--bootstrap",
        metavar="HOST:PORT,...",
        help="Kafka bootstrap servers  [env var: RETAIL_KAFKA_BOOTSTRAP; default: 127.0.0.1:9092]",
        show_default=False,
        callback=_flag_check("--bootstrap", _parse_bootstrap),
    ),
]


TopicPrefixOpt = Annotated[
    str | None,
    typer.Option(
        "--topic-prefix",
        metavar="PREFIX",
        help="Put before every Kafka topic name, e.g. 'prod.'  [env var: RETAIL_TOPIC_PREFIX]",
        show_default=False,
        callback=_flag_check("--topic-prefix", check_topic_prefix),
    ),
]


def _topic_prefix(value: str | None) -> str:
    """``--topic-prefix`` if given, else ``RETAIL_TOPIC_PREFIX``."""
    from retail_pipeline.settings import settings

    return settings().topic_prefix if value is None else value


@app.command()
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
        typer.Option(min=0, metavar="SECONDS", help="--kafka: stop after this many seconds"),
    ] = None,
    batch_mb: Annotated[
        int, typer.Option(min=1, metavar="MIB", help="Files: MiB per transaction")
    ] = 64,
    batch_size: Annotated[
        int, typer.Option(min=1, metavar="N", help="--kafka: messages per transaction")
    ] = (30_000),
    linger_ms: Annotated[
        int,
        typer.Option(
            min=0, metavar="MS", help="--kafka: max wait before a partial batch is written"
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
            help="--kafka: take DuckDB's file lock per batch so several consumer processes"
            " can write one warehouse (slower; one consumer per file is the default)"
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

    if kafka:
        if from_files or files:
            raise PipelineError("give either --kafka or files to ingest, not both")
        _ingest_kafka(
            warehouse,
            target,
            bootstrap,
            until_caught_up=until_caught_up,
            max_seconds=max_seconds,
            batch_size=batch_size,
            linger_ms=linger_ms,
            group=group,
            instance_id=instance_id,
            topic_prefix=_topic_prefix(topic_prefix),
            shared=shared,
        )
        return
    paths = [check_file(p) for p in [*(from_files or []), *(files or [])]]
    if not paths:
        raise PipelineError("nothing to ingest: give --from-files FILE... or --kafka")
    total = sum(p.stat().st_size for p in paths)
    with (
        open_warehouse(warehouse, target=target) as wh,
        _bytes_progress(total, "ingesting") as advance,
    ):
        summary = ingest_files(wh, paths, batch_bytes=batch_mb << 20, progress=advance)
    _say(summary.line())


def _ingest_kafka(
    warehouse: Path | None,
    target: str | None,
    bootstrap: str | None,
    *,
    until_caught_up: bool,
    max_seconds: float | None,
    batch_size: int,
    linger_ms: int,
    group: str,
    instance_id: str | None,
    topic_prefix: str,
    shared: bool,
) -> None:
    import signal
    import threading

    from retail_pipeline.ingestion.kafka.consumer import ConsumerSettings, KafkaBronzeConsumer
    from retail_pipeline.warehouse import open_warehouse

    stop, interrupted = threading.Event(), threading.Event()

    def finish_then_stop(signum: int, _frame: object) -> None:
        """SIGTERM or a first Ctrl-C: finish the batches in hand, then stop."""
        if signum == signal.SIGINT:
            interrupted.set()
            signal.signal(signal.SIGINT, signal.default_int_handler)  # a second one aborts now
        stop.set()

    settings = ConsumerSettings(
        bootstrap=bootstrap,
        group_id=group,
        instance_id=instance_id,
        batch_size=batch_size,
        linger_ms=linger_ms,
        topic_prefix=topic_prefix,
    )
    wh = open_warehouse(warehouse, target=target, exclusive=not shared)
    try:
        consumer = KafkaBronzeConsumer(wh, settings)  # waits for the broker, bounded
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, finish_then_stop)
        with _count_progress(0, "consuming") as advance:
            summary = consumer.run(
                until_caught_up=until_caught_up,
                max_seconds=max_seconds,
                stop=stop,
                progress=advance,
            )
    finally:
        wh.close()
    _say(summary.line())
    if interrupted.is_set():  # stopped cleanly, but by Ctrl-C: say so, exit 130
        raise KeyboardInterrupt


@app.command()
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
            min=1, metavar="PER_SECOND", help="Messages per second [default: as fast as possible]"
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
    with _count_progress(0, "producing") as advance:
        summary = produce_files(
            paths,
            bootstrap=bootstrap,
            rate=rate,
            skip_invalid=skip_invalid,
            progress=advance,
            topic_prefix=_topic_prefix(topic_prefix),
        )
    _say(summary.line())


kafka_app = typer.Typer(help="Run a local single-node Kafka broker (KRaft) from Maven jars.")
app.add_typer(kafka_app, name="kafka")


@kafka_app.command("up")
def kafka_up(
    port: Annotated[int, typer.Option(metavar="PORT", help="Broker port on 127.0.0.1")] = 9092,
    partitions: Annotated[int, typer.Option(min=1, metavar="N", help="Partitions per topic")] = 3,
    topic_prefix: TopicPrefixOpt = None,
) -> None:
    """Start the broker (fetching jars on first use) and create the topics (with the topic
    prefix, as produce and ingest --kafka name them)."""
    from retail_pipeline.local import kafka_broker as broker

    prefix = _topic_prefix(topic_prefix)
    topics = [prefix + topic for topic in broker.DEFAULT_TOPICS]
    try:
        info = broker.start(broker.default_home(), port=port, partitions=partitions, topics=topics)
    except broker.BrokerError as exc:
        raise PipelineError(str(exc)) from None
    state = "already running" if info.reused else "started"
    _say(f"Kafka {state} at {info.bootstrap_servers} (pid {info.pid}, log {info.log_file})")
    _say(f"topics: {', '.join(topics)}")


@kafka_app.command("down")
def kafka_down() -> None:
    """Stop the broker cleanly (its data stays)."""
    from retail_pipeline.local import kafka_broker as broker

    stopped = broker.stop(broker.default_home())
    out.print("Kafka stopped" if stopped else "Kafka was not running")


@kafka_app.command("status")
def kafka_status() -> None:
    """Whether the broker runs and answers."""
    from retail_pipeline.local import kafka_broker as broker

    info = broker.status(broker.default_home())
    if info is None:
        out.print("Kafka is not running")
        raise typer.Exit(1)
    answering = "answering" if info.answering else "NOT answering"
    _say(f"Kafka pid {info.pid} at {info.bootstrap_servers}: {answering}")


postgres_app = typer.Typer(
    help="Run a local PostgreSQL (127.0.0.1, passwords required) as the customers/products"
    " batch source."
)
app.add_typer(postgres_app, name="postgres")

PostgresHomeOpt = Annotated[
    Path | None,
    typer.Option(
        "--home",
        metavar="DIR",
        help="The cluster's directory  [default: .postgres in the checkout]",
        show_default=False,
    ),
]


@postgres_app.command("up")
def postgres_up(
    port: Annotated[int, typer.Option(min=1, metavar="PORT", help="Port on 127.0.0.1")] = 5433,
    seed: Annotated[
        bool | None,
        typer.Option(
            "--seed/--no-seed",
            help="Load the demo shop's customers and products  [default: only into empty tables]",
            show_default=False,
        ),
    ] = None,
    home: PostgresHomeOpt = None,
) -> None:
    """Start PostgreSQL (initialising it on first use), create the retail database and tables.

    It prints where the generated passwords are (files only you can read), never a password:
    the DSN it prints names the password file (passfile=), so it can be used as it is."""
    import shlex

    from retail_pipeline.local import postgres

    server = postgres.LocalPostgres(home or postgres.default_home(), port=port)
    state = "already running" if server.running() else "started"
    dsn = server.start()
    out.print(f"PostgreSQL {state} at {server.url_for(server.database)} (log {server.log_file})")
    out.print(
        f"passwords (mode 0600): {postgres.ROLE} in {server.passfile},"
        f" the superuser {postgres.SUPERUSER} in {server.password_file(postgres.SUPERUSER)}"
    )
    if seed is None:
        seed = not any(postgres.row_counts(dsn).values())
    if seed:
        customers, products = postgres.seed_simulated(dsn)
        out.print(f"seeded {customers:,} customers and {products:,} products (the demo's shop)")
    out.print(f"export RETAIL_POSTGRES_DSN={shlex.quote(dsn)}")


@postgres_app.command("seed")
def postgres_seed(
    dsn: Annotated[
        str | None,
        typer.Option(
            metavar="DSN",
            help="The database to fill  [env var: RETAIL_POSTGRES_DSN]",
            show_default=False,
        ),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Upsert the records even into tables that have rows")
    ] = False,
) -> None:
    """Create the source tables in any PostgreSQL and fill them with the demo shop's customers
    and products (tables that already have rows are left alone without --force)."""
    from retail_pipeline.local import postgres
    from retail_pipeline.settings import settings

    configured = settings().postgres_dsn
    target = dsn or (configured.get_secret_value() if configured else None)
    if not target:
        raise PipelineError("no database: give --dsn DSN or set RETAIL_POSTGRES_DSN")
    postgres.apply_schema(target)
    if not force and any(postgres.row_counts(target).values()):
        out.print("the tables already have rows: left alone (--force upserts the demo's records)")
        return
    customers, products = postgres.seed_simulated(target)
    out.print(f"seeded {customers:,} customers and {products:,} products (the demo's shop)")


@postgres_app.command("down")
def postgres_down(home: PostgresHomeOpt = None) -> None:
    """Stop PostgreSQL (its data stays)."""
    from retail_pipeline.local import postgres

    server = postgres.LocalPostgres(home or postgres.default_home())
    running = server.running()
    server.stop()
    out.print("PostgreSQL stopped" if running else "PostgreSQL was not running")


@postgres_app.command("status")
def postgres_status(home: PostgresHomeOpt = None) -> None:
    """Whether PostgreSQL runs and accepts connections, and its rows per table."""
    from retail_pipeline.local import postgres

    info = postgres.LocalPostgres(home or postgres.default_home()).status()
    if info is None:
        out.print("PostgreSQL is not running")
        raise typer.Exit(1)
    where = info.dsn.partition("?")[0]  # less the password file's path
    if not info.accepting:
        out.print(f"PostgreSQL pid {info.pid} at {where}: NOT accepting connections")
        raise typer.Exit(1)
    counts = ", ".join(f"{n:,} {entity}" for entity, n in postgres.row_counts(info.dsn).items())
    out.print(f"PostgreSQL pid {info.pid} at {where}: accepting ({counts})")


airflow_app = typer.Typer(help="Run a local Airflow 3 (standalone) with the project's DAGs.")
app.add_typer(airflow_app, name="airflow")


@airflow_app.command("up")
def airflow_up(
    port: Annotated[int, typer.Option(metavar="PORT", help="API server port on 127.0.0.1")] = 8080,
) -> None:
    """Start Airflow (home: $AIRFLOW_HOME or data/airflow) and print the URL and the login
    (the user, and the file only you can read that holds its password: never the password)."""
    from retail_pipeline.local import airflow as local

    info = local.start(port=port)
    state = "already running" if info.reused else "started"
    out.print(f"Airflow {state} at {info.url} (pid {info.pid}, log {info.log_file})")
    out.print(f"login: {info.username}, password in {info.password_file} (mode 0600)")
    out.print("DAGs start paused: unpause them in the UI (docs/airflow.md)")


@airflow_app.command("down")
def airflow_down() -> None:
    """Stop the local Airflow and its processes."""
    from retail_pipeline.local import airflow as local

    out.print("Airflow stopped" if local.stop() else "Airflow was not running")


@app.command()
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
    topics = tuple(_topic_prefix(topic_prefix) + t for t in TOPICS)
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


@app.command()
def counts(warehouse: WarehouseOpt = None, target: TargetOpt = None) -> None:
    """Row counts of the Bronze tables."""
    from retail_pipeline.warehouse import open_warehouse

    with open_warehouse(warehouse, target=target, read_only=True) as wh:
        for table, n in wh.counts().items():
            out.print(f"bronze.{table:<16} {n:>12,}")


@app.command()
def schemas(
    out_dir: Annotated[
        Path, typer.Option("--out", metavar="DIR", help="Folder for the JSON Schema files")
    ] = Path("schemas"),
) -> None:
    """Write the event contract as JSON Schema files (one per event type, plus reference data)."""
    from retail_pipeline.events.schemas import write_schemas

    written = write_schemas(out_dir)
    _say(f"wrote {len(written)} JSON Schema files to {out_dir}")


@app.command()
def transform(
    full_refresh: Annotated[
        bool, typer.Option("--full-refresh", help="Rebuild incremental models from all of Bronze")
    ] = False,
    warehouse: WarehouseOpt = None,
    target: TargetOpt = None,
) -> None:
    """Build Silver and Gold with dbt (models, tests, unit tests); incremental by default."""
    from retail_pipeline.transform import node_progress, run_transform

    with node_progress(console) as progress:
        summary = run_transform(warehouse, full_refresh, progress, target=target)
    _say(summary.line())
    if not summary.success:
        for failure in summary.failures:
            _to_stderr(f"failed: {failure.unique_id}: {failure.message}")
        raise PipelineError(f"dbt build failed ({len(summary.failures)} failing nodes)")


@app.command()
def answers(
    as_json: Annotated[bool, typer.Option("--json", help="docs/metrics.md's JSON shape")] = False,
    warehouse: WarehouseOpt = None,
    target: TargetOpt = None,
) -> None:
    """The six business answers, read from Gold (warns on stderr when Gold is stale)."""
    from retail_pipeline.transform import format_answers, gold_status, read_answers

    result = read_answers(warehouse, target=target)
    status = gold_status(warehouse, target=target)
    warning = status.warning()
    if warning:
        _to_stderr(warning)
    if as_json:
        print(json.dumps(result, indent=2))
    else:  # the answers quote names from the sources: printable, line by line
        print(printable(format_answers(result, status=status)), end="")


@app.command()
def dashboard(
    host: Annotated[
        str,
        typer.Option(
            metavar="ADDRESS",
            help="Address to listen on (0.0.0.0: every interface, e.g. in a container)",
        ),
    ] = "127.0.0.1",
    port: Annotated[
        int, typer.Option(min=0, metavar="N", help="Port to listen on (0: any free)")
    ] = 8050,
    refresh: Annotated[
        float,
        typer.Option(min=1, metavar="SECONDS", help="How often to look for a new Gold build"),
    ] = 5.0,
    warehouse: WarehouseOpt = None,
    target: TargetOpt = None,
) -> None:
    """Serve a dashboard of the six answers on 127.0.0.1 or --host (Gold, read-only; Ctrl-C)."""
    from retail_pipeline.dashboard import serve_dashboard

    def announce(url: str) -> None:
        _say(f"dashboard: {url}  (Ctrl-C to stop)")
        sys.stdout.flush()

    try:
        serve_dashboard(
            warehouse,
            target=target,
            host=host,
            port=port,
            refresh_seconds=refresh,
            announce=announce,
        )
    except KeyboardInterrupt:
        out.print("dashboard stopped")


@app.command("api-server")
def api_server(
    host: Annotated[str, typer.Option(metavar="HOST", help="Address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, metavar="N", help="Port (0: any free)")] = 8765,
    customers: Annotated[
        Path | None,
        typer.Option(
            metavar="FILE",
            help="Customers to serve (JSON array or NDJSON)  [default: the simulator's]",
            show_default=False,
        ),
    ] = None,
    products: Annotated[
        Path | None,
        typer.Option(
            metavar="FILE",
            help="Products to serve (JSON array or NDJSON)  [default: the simulator's]",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Serve the reference customers/products HTTP API (docs/batch-sources.md; Ctrl-C stops it).

    With RETAIL_API_TOKEN set, requests need 'Authorization: Bearer <token>'. Without files it
    serves the customers and products of 'retail-pipeline generate' with its defaults.
    """
    from retail_pipeline.local.reference_api import serve_reference_api

    def announce(url: str, what: str) -> None:
        out.print(f"api: {url}  (Ctrl-C to stop)")
        out.print(f"serving {what}")
        sys.stdout.flush()

    try:
        serve_reference_api(host, port, customers=customers, products=products, announce=announce)
    except KeyboardInterrupt:
        out.print("api-server stopped")


@app.command()
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
            " simulation  [default: DIR/warehouse.duckdb; RETAIL_WAREHOUSE is not used]",
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
    from retail_pipeline.transform import format_answers, node_progress

    result = run_demo(
        workdir,
        days=days,
        orders_per_day=orders_per_day,
        seed=seed,
        kafka=kafka,
        warehouse=warehouse,
        target=target,
        dbt_progress=lambda: node_progress(console),
        echo=_to_stderr if as_json else _say,
    )
    if as_json:  # stdout is the JSON alone, for tools; the story goes to stderr
        print(json.dumps(result.answers, indent=2))
        _to_stderr(result.where())
        _to_stderr(result.verdict())
    else:
        print(printable(format_answers(result.answers)), end="")
        _say(result.where())
        _say(result.verdict())
    if not result.matches_truth:
        raise PipelineError(f"the demo's answers differ from {result.truth_file}")


def _to_stderr(text: str) -> None:
    console.print(one_line(text, limit=OUTPUT_LIMIT), markup=False, highlight=False, soft_wrap=True)


def main() -> None:
    """Entry point: user errors become one line on stderr and exit code 1."""
    for stream in (sys.stdout, sys.stderr):
        # A path that is not UTF-8 (a surrogate-escaped name) is printed escaped, never a crash.
        reconfigure = getattr(stream, "reconfigure", None)
        if callable(reconfigure):
            reconfigure(errors="backslashreplace")
    try:
        code = app(standalone_mode=False)
        if code == ABORTED:  # typer turns a KeyboardInterrupt into this exit code
            raise KeyboardInterrupt
        if isinstance(code, int) and code:
            sys.exit(code)
    except PipelineError as exc:
        console.print(
            f"[red]error:[/red] {escape(one_line(str(exc)))}", highlight=False, soft_wrap=True
        )
        sys.exit(1)
    except (typer.Abort, KeyboardInterrupt):
        console.print("[red]aborted[/red]")
        sys.exit(ABORTED)
    except Exception as exc:
        # Usage errors (typer's own click): click's usage and hint, then the message, which
        # may quote the value given, as one line like every error.
        message, code = getattr(exc, "format_message", None), getattr(exc, "exit_code", None)
        if not (callable(message) and isinstance(code, int)):
            raise
        ctx = getattr(exc, "ctx", None)
        if ctx is not None:
            typer.echo(ctx.get_usage(), err=True)
            if ctx.command.get_help_option(ctx) is not None:
                help_command = f"{ctx.command_path} {ctx.help_option_names[0]}"
                typer.echo(f"Try '{printable(help_command)}' for help.\n", err=True)
        typer.echo(f"Error: {one_line(str(message()))}", err=True)
        sys.exit(code)


if __name__ == "__main__":
    main()
