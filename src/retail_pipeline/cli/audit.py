"""Auditing a number: ``explain`` (the orders and events behind a published figure)."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from retail_pipeline.cli.options import TargetOpt, WarehouseOpt, at_most
from retail_pipeline.errors import PipelineError, printable


def explain(
    question: Annotated[
        str,
        typer.Argument(
            metavar="QUESTION",
            help="orders | revenue | conversion | product | canceled-refunded | lead-time",
            show_default=False,
        ),
    ],
    day: Annotated[
        str | None,
        typer.Option(
            "--date",
            metavar="YYYY-MM-DD",
            help="The day (orders, revenue, conversion; optional for canceled-refunded)",
        ),
    ] = None,
    product: Annotated[str | None, typer.Option(metavar="ID", help="The product (product)")] = None,
    status: Annotated[
        str | None,
        typer.Option(
            metavar="S",
            help="For canceled-refunded: canceled | refunded | canceled_or_refunded"
            " (default: either)",
        ),
    ] = None,
    segment: Annotated[
        str | None,
        typer.Option(
            metavar="SEG",
            help="The segment of lead-time: created_to_shipped | shipped_to_delivered |"
            " created_to_delivered",
        ),
    ] = None,
    limit: Annotated[
        int,
        typer.Option(
            metavar="N",
            min=0,
            help="List at most N counted contributions and N others (the sums cover all; N at"
            " most 1,000,000)",
            callback=at_most("--limit", 1_000_000),
        ),
    ] = 200,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document")] = False,
    warehouse: WarehouseOpt = None,
    target: TargetOpt = None,
) -> None:
    """The orders and events behind one published figure: each with the rule that counted it
    or left it out and its place in Bronze (file:line or topic/partition/offset, load, ingested
    at); whether they add up to the figure exactly (exit code 1 if not); and the figure's
    history of restatements (docs/metrics.md#how-to-audit-a-number)."""
    from retail_pipeline.transform.explain import explain as explain_figure
    from retail_pipeline.transform.explain import format_explanation

    result = explain_figure(
        question,
        warehouse,
        target=target,
        day=day,
        product=product,
        status=status,
        segment=segment,
        limit=limit,
    )
    if as_json:
        print(json.dumps(result.as_json(), indent=2))
    else:
        print(printable(format_explanation(result)), end="")
    if not result.adds_up:
        raise PipelineError(f"{result.title}: the contributions do not add up to the figure")
