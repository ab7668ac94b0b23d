"""``dashboard``: the six answers in a browser, read from Gold on either target."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from retail_pipeline import interrupts
from retail_pipeline.cli.options import PORT_MAX, TargetOpt, WarehouseOpt, at_most
from retail_pipeline.cli.output import out, say


def dashboard(
    host: Annotated[
        str,
        typer.Option(
            metavar="ADDRESS",
            help="Address to listen on (0.0.0.0: every interface, e.g. in a container)",
        ),
    ] = "127.0.0.1",
    port: Annotated[
        int,
        typer.Option(
            min=0,
            metavar="N",
            help="Port to listen on (0: any free)",
            callback=at_most("--port", PORT_MAX),
        ),
    ] = 8050,
    refresh: Annotated[
        float,
        typer.Option(
            min=1,
            metavar="SECONDS",
            help="How often to look for a new Gold build (at most 3600)",
            callback=at_most("--refresh", 3600),
        ),
    ] = 5.0,
    warehouse: WarehouseOpt = None,
    target: TargetOpt = None,
) -> None:
    """Serve a dashboard of the six answers on 127.0.0.1 or --host (Gold, read-only; Ctrl-C)."""
    from retail_pipeline.dashboard import serve_dashboard

    def announce(url: str) -> None:
        say(f"dashboard: {url}  (Ctrl-C to stop)")
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
        interrupts.handled()
        out.print("dashboard stopped")
