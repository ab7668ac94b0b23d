"""What the commands print: their output on stdout, errors and progress bars on stderr.

Outside text in either (a file name, a source, a server's message) is made printable and a
secret it may quote masked (:func:`retail_pipeline.errors.one_line`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from rich.console import Console

from retail_pipeline.errors import one_line

if TYPE_CHECKING:
    from rich.progress import Progress, ProgressColumn

    from retail_pipeline.transform import NodeProgress

console = Console(stderr=True)
"""stderr: errors, warnings and progress bars."""
out = Console(soft_wrap=True, markup=False)
"""stdout: what a command reports."""
OUTPUT_LIMIT = 20_000
"""The longest line a command prints (a summary naming many files, say)."""


def say(text: str) -> None:
    """Print a command's output on stdout, line by line, each made printable."""
    for line in text.splitlines() or [""]:
        indent = " " * (len(line) - len(line.lstrip(" ")))
        out.print(indent + one_line(line, limit=OUTPUT_LIMIT), highlight=False)


def to_stderr(text: str) -> None:
    """Print a line on stderr (a warning, a failure, the demo's story beside its JSON)."""
    console.print(one_line(text, limit=OUTPUT_LIMIT), markup=False, highlight=False, soft_wrap=True)


def _bar(text: str, *columns: ProgressColumn) -> Progress:
    """A transient progress bar on stderr, drawn on a terminal only: ``text``, the bar,
    ``columns``, the time elapsed."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn(text),
        BarColumn(),
        *columns,
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    )


@contextmanager
def progress(label: str, total: int, *, in_bytes: bool = False) -> Iterator[Callable[[int], None]]:
    """A progress bar up to ``total`` items (or bytes, with their rate); yields ``advance(n)``.
    A ``total`` of 0 counts what is done without an end."""
    from rich.progress import DownloadColumn, MofNCompleteColumn, TransferSpeedColumn

    columns = (DownloadColumn(), TransferSpeedColumn()) if in_bytes else (MofNCompleteColumn(),)
    with _bar(label, *columns) as bar:
        task = bar.add_task(label, total=total)
        yield lambda n: bar.advance(task, n)


@contextmanager
def node_progress() -> Iterator[Callable[[NodeProgress], None]]:
    """A progress callback for :func:`retail_pipeline.transform.run_transform`: one bar over the
    dbt nodes. On a terminal, failing nodes are printed above the bar as they happen (the
    command reports them all at the end in any case)."""
    from rich.progress import MofNCompleteColumn

    with _bar("dbt {task.description}", MofNCompleteColumn()) as bar:
        task = bar.add_task("starting", total=None)

        def advance(node: NodeProgress) -> None:
            bar.update(
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
