"""A rich progress bar for :func:`retail_pipeline.transform.run_transform`."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from retail_pipeline.transform.runner import NodeProgress


@contextmanager
def node_progress(console: Console) -> Iterator[Callable[[NodeProgress], None]]:
    """A progress callback drawing one bar over the dbt nodes (transient, terminals only).

    On a terminal, failing nodes are printed above the bar as they happen (the caller
    reports them all at the end in any case).
    """
    with Progress(
        TextColumn("dbt {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    ) as progress:
        task = progress.add_task("starting", total=None)

        def advance(node: NodeProgress) -> None:
            progress.update(
                task,
                completed=node.index,
                total=node.total or None,
                description=f"{node.resource_type} {node.name}",
            )
            if node.status in {"error", "fail"} and console.is_terminal:
                console.print(
                    f"[red]{node.status.upper()}[/red] {node.resource_type} {node.name}",
                    highlight=False,
                )

        yield advance
