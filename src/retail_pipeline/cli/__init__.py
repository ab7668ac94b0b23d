"""The ``retail-pipeline`` command line: parses arguments and delegates to the package.

One module per command group, registered here in the order ``--help`` lists them:

- :mod:`~retail_pipeline.cli.pipeline`: ``generate``, ``ingest``, ``produce``, ``status``,
  ``counts``, ``migrate``, ``redrive``, ``schemas``, ``transform``, ``run`` (continuous),
  ``answers`` and the end-to-end ``demo``;
- :mod:`~retail_pipeline.cli.sources`: ``load-batch`` (snapshots, the HTTP API, PostgreSQL);
- :mod:`~retail_pipeline.cli.audit`: ``explain``;
- :mod:`~retail_pipeline.cli.operations`: ``health``;
- :mod:`~retail_pipeline.cli.dashboard`: ``dashboard``;
- :mod:`~retail_pipeline.cli.services`: the local stand-ins, ``api-server``, ``kafka``,
  ``postgres`` and ``airflow``;

and what they share: :mod:`~retail_pipeline.cli.options` (options and their checks) and
:mod:`~retail_pipeline.cli.output` (printing and progress bars). A command imports what it
delegates to when it runs, so ``--help`` loads no warehouse, dbt or Kafka client.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.markup import escape

from retail_pipeline import interrupts
from retail_pipeline.cli import audit, dashboard, operations, pipeline, services, sources
from retail_pipeline.cli.output import console, out
from retail_pipeline.errors import PipelineError, one_line, printable

__all__ = ["app", "main"]

ABORTED = 130  # the shell's code for a command stopped by Ctrl-C (128 + SIGINT)

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


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
        from retail_pipeline.settings import check_settings

        check_settings()  # a bad RETAIL_*/SNOWFLAKE_* value: one line, whatever the command


for command in (
    pipeline.generate,
    sources.load_batch,
    pipeline.ingest,
    pipeline.produce,
    pipeline.status,
    pipeline.counts,
    pipeline.migrate,
    pipeline.redrive,
    pipeline.schemas,
    pipeline.transform,
    pipeline.run,
    pipeline.answers,
    audit.explain,
    operations.health,
    dashboard.dashboard,
    services.api_server,
    pipeline.demo,
):
    app.command()(command)
app.add_typer(services.kafka_app, name="kafka")
app.add_typer(services.postgres_app, name="postgres")
app.add_typer(services.airflow_app, name="airflow")


def main() -> None:
    """Entry point: user errors become one line on stderr and exit code 1."""
    for stream in (sys.stdout, sys.stderr):
        # A path that is not UTF-8 (a surrogate-escaped name) is printed escaped, never a crash.
        reconfigure = getattr(stream, "reconfigure", None)
        if callable(reconfigure):
            reconfigure(errors="backslashreplace")
    interrupts.install()
    try:
        code = app(standalone_mode=False)
        # typer turns a KeyboardInterrupt into this exit code; and a Ctrl-C whose exception
        # Python swallowed (in a weakref callback, say) still aborts the command
        if code == ABORTED or interrupts.pending():
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
        if interrupts.pending():
            # A Ctrl-C came and a library turned its KeyboardInterrupt into an error of its own
            # (DuckDB's "Query interrupted" during any query): the command was aborted.
            console.print("[red]aborted[/red]")
            sys.exit(ABORTED)
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
