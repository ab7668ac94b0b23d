"""The bodies of the ingestion DAGs' tasks: plain functions over the package's loaders.

Each returns a small JSON-able summary (the task's XCom) and says in its ``read`` count whether
anything new arrived; the DAG skips the task when not, so that its Asset outlets only announce
new Bronze rows. Everything here is exactly-once by the loaders' own rules (positions stored in
the warehouse in the same transaction as the rows), so an overlapping, retried or repeated run
neither loses nor duplicates a row.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable
from dataclasses import asdict
from datetime import date
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from retail_pipeline.errors import PipelineError, one_line
from retail_pipeline.settings import settings

log = logging.getLogger(__name__)
P = ParamSpec("P")
R = TypeVar("R")


def one_line_errors(task: Callable[P, R]) -> Callable[P, R]:
    """A task whose failure the task log shows as the CLI would: a :class:`PipelineError`
    (a bad setting, an unreadable source) is re-raised with its message made one line, any
    secret it quotes masked and control characters neutralised."""

    @functools.wraps(task)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return task(*args, **kwargs)
        except PipelineError as exc:
            try:
                clean = type(exc)(one_line(str(exc)))
            except TypeError:  # an error class with arguments of its own
                clean = PipelineError(one_line(str(exc)))
            raise clean from None

    return run


def _log(what: str, line: str) -> None:
    """One line of the task log; outside text in it (a file name, a source) made safe."""
    log.info("%s: %s", what, one_line(line))


KAFKA_GROUP = "retail-bronze"
"""The consumer group of the Kafka DAG: the CLI's ``ingest --kafka`` default, so both share."""


@one_line_errors
def consume_kafka(
    max_seconds: float,
    *,
    group: str = KAFKA_GROUP,
    stop: threading.Event | None = None,
) -> dict[str, Any]:
    """One bounded micro-batch from Kafka into Bronze: until caught up or ``max_seconds``.

    The same path as ``retail-pipeline ingest --kafka --until-caught-up --max-seconds N``: the
    broker, topic prefix, warehouse and target come from the settings (``RETAIL_*``). The
    consumer resumes from the offsets stored in the warehouse, so a run that overlaps another,
    or is retried after dying half way, loads each message once.
    """
    from retail_pipeline.ingestion.kafka.consumer import ConsumerSettings, KafkaBronzeConsumer
    from retail_pipeline.warehouse import open_warehouse

    config = settings()
    consumer_settings = ConsumerSettings(
        bootstrap=config.kafka_bootstrap, group_id=group, topic_prefix=config.topic_prefix
    )
    with open_warehouse() as wh:
        summary = KafkaBronzeConsumer(wh, consumer_settings).run(
            until_caught_up=True, max_seconds=max_seconds, stop=stop
        )
    _log("kafka", summary.line())
    return {key: value for key, value in asdict(summary).items() if key != "positions"}


@one_line_errors
def landing_dir(source_dir: str | Path | None = None) -> Path:
    """``source_dir`` if given, else ``RETAIL_LANDING_DIR`` (default ``data/landing``)."""
    path = Path(source_dir) if source_dir else settings().landing_dir
    if not path.is_dir():
        raise PipelineError(f"landing folder {path} does not exist (RETAIL_LANDING_DIR)")
    return path.resolve()


@one_line_errors
def snapshot_folders(source: Path) -> list[Path]:
    """``snapshots/<YYYY-MM-DD>/`` under ``source``, oldest first (SCD2 needs their order)."""
    root = source / "snapshots"
    folders = [p for p in root.iterdir() if p.is_dir()] if root.is_dir() else []
    for folder in folders:
        try:
            date.fromisoformat(folder.name)
        except ValueError:
            raise PipelineError(f"{folder}: snapshot folders are named YYYY-MM-DD") from None
    return sorted(folders)


@one_line_errors
def load_reference_snapshots(source_dir: str | Path | None = None) -> dict[str, Any]:
    """Load every customers/products snapshot of the landing folder not loaded yet, by date.

    A snapshot loaded before (same content) is skipped by the loader; ``read`` counts the
    records of the snapshots that were new.
    """
    from retail_pipeline.ingestion.batch import load_reference
    from retail_pipeline.warehouse import open_warehouse

    source = landing_dir(source_dir)
    files = [
        folder / f"{entity}.json"
        for folder in snapshot_folders(source)
        for entity in ("customers", "products")
        if (folder / f"{entity}.json").is_file()
    ]
    totals = {"snapshots": 0, "skipped": 0, "read": 0, "loaded": 0, "dead_lettered": 0}
    with open_warehouse() as wh:
        for file in files:
            summary = load_reference(wh, file.name.removesuffix(".json"), file)
            _log("batch", summary.line())
            totals["snapshots"] += 1
            if summary.skipped:
                totals["skipped"] += 1
                continue
            totals["read"] += summary.read
            totals["loaded"] += summary.loaded
            totals["dead_lettered"] += summary.dead_lettered
    return totals


@one_line_errors
def load_source_changes() -> dict[str, Any]:
    """Load the customers and products that changed since the last run from the HTTP API
    (``RETAIL_API_URL``) and Postgres (``RETAIL_POSTGRES_DSN``) the settings name.

    Each source resumes from the window stored in the warehouse with its rows, so a retried or
    repeated run loads nothing twice; ``read`` is 0 when no source is configured or nothing
    changed.
    """
    from retail_pipeline.ingestion.sources import change_sources, load_sources
    from retail_pipeline.warehouse import open_warehouse

    sources = change_sources(configured=True)
    totals = {"sources": len(sources), "read": 0, "loaded": 0, "dead_lettered": 0}
    if not sources:
        log.info(
            "batch: no API or Postgres source configured (RETAIL_API_URL, RETAIL_POSTGRES_DSN)"
        )
        return totals
    with open_warehouse(exclusive=False) as wh:  # open only to commit a batch already read
        for summary in load_sources(wh, sources):
            _log("batch", summary.line())
            totals["read"] += summary.read
            totals["loaded"] += summary.loaded
            totals["dead_lettered"] += summary.dead_lettered
    return totals


@one_line_errors
def ingest_event_files(source_dir: str | Path | None = None) -> dict[str, Any]:
    """Load the landing folder's ``events/*.ndjson`` into Bronze, from where each stopped.

    Files are read from their stored byte position on, so a file that grew since the last run
    contributes its new lines only.
    """
    from retail_pipeline.ingestion.files import ingest_files
    from retail_pipeline.warehouse import open_warehouse

    files = sorted((landing_dir(source_dir) / "events").glob("*.ndjson"))
    if not files:
        return {"files": 0, "read": 0, "loaded": 0, "dead_lettered": 0, "skipped": 0}
    with open_warehouse() as wh:
        summary = ingest_files(wh, files)
    _log("files", summary.line())
    return {
        "files": summary.files,
        "read": summary.read,
        "loaded": summary.loaded,
        "dead_lettered": summary.dead_lettered,
        "skipped": summary.skipped,
    }
