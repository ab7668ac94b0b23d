"""Local stand-ins for production systems (:mod:`retail_pipeline.local`): a Kafka broker,
PostgreSQL as a batch source, the reference HTTP API and a standalone Airflow, each started and
stopped on 127.0.0.1."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Annotated

import typer

from retail_pipeline import interrupts
from retail_pipeline.cli.options import (
    PORT_MAX,
    CustomersFileOpt,
    ProductsFileOpt,
    TopicPrefixOpt,
    at_most,
    resolve_topic_prefix,
)
from retail_pipeline.cli.output import out, say
from retail_pipeline.errors import PipelineError

kafka_app = typer.Typer(help="Run a local single-node Kafka broker (KRaft) from Maven jars.")


SECURITY_MODES = ("plaintext", "sasl_ssl")


def _security_option(value: str) -> str:
    if value not in SECURITY_MODES:
        raise typer.BadParameter(f"{value!r} is not one of {', '.join(SECURITY_MODES)}")
    return value


@kafka_app.command("up")
def kafka_up(
    port: Annotated[
        int,
        typer.Option(
            min=1,
            metavar="PORT",
            help="Broker port on 127.0.0.1",
            callback=at_most("--port", PORT_MAX),
        ),
    ] = 9092,
    partitions: Annotated[
        int,
        typer.Option(
            min=1,
            metavar="N",
            help="Partitions per topic (at most 1000)",
            callback=at_most("--partitions", 1000),
        ),
    ] = 3,
    topic_prefix: TopicPrefixOpt = None,
    security: Annotated[
        str,
        typer.Option(
            "--security",
            metavar="plaintext|sasl_ssl",
            callback=_security_option,
            help="plaintext: no authentication. sasl_ssl: SCRAM-SHA-512 users over TLS (a CA"
            " and certificate of the broker home's own), and a client properties file to"
            " export as RETAIL_KAFKA_CONFIG_FILE. A home keeps the mode it was first started"
            " with",
        ),
    ] = "plaintext",
) -> None:
    """Start the broker (fetching jars on first use) and create the topics (with the topic
    prefix, as produce and ingest --kafka name them)."""
    from retail_pipeline.local import kafka_broker as broker

    prefix = resolve_topic_prefix(topic_prefix)
    topics = [prefix + topic for topic in broker.DEFAULT_TOPICS]
    try:
        info = broker.start(
            broker.default_home(),
            port=port,
            partitions=partitions,
            topics=topics,
            security=security,
        )
    except broker.BrokerError as exc:
        raise PipelineError(str(exc)) from None
    state = "already running" if info.reused else "started"
    say(f"Kafka {state} at {info.bootstrap_servers} (pid {info.pid}, log {info.log_file})")
    say(f"topics: {', '.join(topics)}")
    if info.client_properties is not None:
        say(
            f"SASL_SSL with {broker.SCRAM_MECHANISM} user {broker.CLIENT_USER};"
            f" CA certificate {info.client_properties.with_name('ca.pem')}"
        )
        say(f"client properties (0600, holds the password): {info.client_properties}")
        say(f"export RETAIL_KAFKA_CONFIG_FILE={shlex.quote(str(info.client_properties))}")


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
    say(f"Kafka pid {info.pid} at {info.bootstrap_servers} ({info.security}): {answering}")
    if info.client_properties is not None:
        say(f"client properties: {info.client_properties}")


postgres_app = typer.Typer(
    help="Run a local PostgreSQL (127.0.0.1, passwords required) as the customers/products"
    " batch source."
)

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
    port: Annotated[
        int,
        typer.Option(
            min=1, metavar="PORT", help="Port on 127.0.0.1", callback=at_most("--port", PORT_MAX)
        ),
    ] = 5433,
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
    customers: CustomersFileOpt = None,
    products: ProductsFileOpt = None,
) -> None:
    """Create the source tables in any PostgreSQL and fill them with the demo shop's customers
    and products, or those of --customers and --products (the files 'retail-pipeline generate'
    writes); tables that already have rows are left alone without --force."""
    from retail_pipeline.local import postgres
    from retail_pipeline.settings import settings

    if (customers is None) != (products is None):
        raise PipelineError("give both --customers FILE and --products FILE, or neither")
    configured = settings().postgres_dsn
    target = dsn or (configured.get_secret_value() if configured else None)
    if not target:
        raise PipelineError("no database: give --dsn DSN or set RETAIL_POSTGRES_DSN")
    postgres.apply_schema(target)
    what = "the demo's" if customers is None else "the files'"
    if not force and any(postgres.row_counts(target).values()):
        out.print(f"the tables already have rows: left alone (--force upserts {what} records)")
        return
    if customers is None or products is None:
        written = postgres.seed_simulated(target)
        shop = "the demo's shop"
    else:
        written = postgres.seed(target, customers, products)
        shop = f"from {customers.name} and {products.name}"
    out.print(f"seeded {written[0]:,} customers and {written[1]:,} products ({shop})")


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


@airflow_app.command("up")
def airflow_up(
    port: Annotated[
        int,
        typer.Option(
            min=1,
            metavar="PORT",
            help="API server port on 127.0.0.1",
            callback=at_most("--port", PORT_MAX),
        ),
    ] = 8080,
) -> None:
    """Start Airflow (home: $AIRFLOW_HOME or data/airflow) and print the URL and the login
    (the user, and the file only you can read that holds its password: never the password).

    Its DAGs work on the warehouse of the environment it starts in: the DuckDB file
    (RETAIL_WAREHOUSE), or Snowflake with RETAIL_TARGET=snowflake and the SNOWFLAKE_* settings.
    """
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


def api_server(
    host: Annotated[str, typer.Option(metavar="HOST", help="Address to listen on")] = "127.0.0.1",
    port: Annotated[
        int,
        typer.Option(
            min=0, metavar="N", help="Port (0: any free)", callback=at_most("--port", PORT_MAX)
        ),
    ] = 8765,
    customers: CustomersFileOpt = None,
    products: ProductsFileOpt = None,
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
        interrupts.handled()
        out.print("api-server stopped")
