"""What every loader reports about itself: metrics after each committed batch, an OpenLineage
run around the whole load (docs/operations.md, "Metrics" and "Lineage").

A loader opens a :class:`LoadObserver` for its run and calls :meth:`LoadObserver.committed`
once after each batch its warehouse committed, with that batch's rows per Bronze table, its
dead letters and how long the transaction took. Leaving the block records the job's success
(or the failure), emits the run's COMPLETE (or FAIL) event and, for a batch command, writes the
metrics textfile when ``RETAIL_METRICS_DIR`` is set. Nothing here can fail a load: the metrics
are in memory and the lineage and textfile writers warn instead of raising.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any

import pyarrow as pa

from retail_pipeline import lineage, metrics
from retail_pipeline.warehouse.base import EVENT_TABLES, Warehouse

DEAD_LETTER_TABLE = "dead_letter"


def bronze_dataset(warehouse: Warehouse, table: str) -> lineage.Dataset:
    """The OpenLineage dataset of a Bronze table of ``warehouse`` (no credential in it)."""
    env = warehouse.dbt_env()
    if warehouse.target == "snowflake":
        return lineage.bronze_dataset(
            "snowflake",
            env.get("SNOWFLAKE_ACCOUNT", ""),
            table,
            env.get("SNOWFLAKE_DATABASE", ""),
        )
    return lineage.bronze_dataset("duckdb", env.get("RETAIL_WAREHOUSE", ""), table)


def dead_letter_counts(
    dead_letters: pa.Table, table: str | None = None
) -> list[tuple[str | None, str | None, int]]:
    """``(destination table, reason, count)`` of a batch's dead letters: ``table`` when the
    loader knows it (a reference entity), else the table of each letter's ``_topic`` (None
    when the message did not say)."""
    if dead_letters.num_rows == 0:
        return []
    reasons = dead_letters.column("reason").to_pylist()
    if table is not None or "_topic" not in dead_letters.column_names:
        return [(table, reason, n) for reason, n in Counter(reasons).items()]
    topics = dead_letters.column("_topic").to_pylist()
    pairs = Counter(zip(topics, reasons, strict=True))
    return [(EVENT_TABLES.get(topic or ""), reason, n) for (topic, reason), n in pairs.items()]


class LoadObserver:
    """One load run as metrics and lineage see it (a ``with`` block around the run)."""

    def __init__(
        self,
        warehouse: Warehouse,
        job: str,
        inputs: Sequence[lineage.Dataset],
        tables: Sequence[str],
        *,
        lineage_job: str | None = None,
        textfile: bool = True,
    ) -> None:
        self.job = metrics.job_label(job)
        self.textfile = textfile
        self.tables = [*tables, DEAD_LETTER_TABLE]
        self.datasets = {table: bronze_dataset(warehouse, table) for table in self.tables}
        self.run = lineage.LoadRun(lineage_job or job, list(inputs), list(self.datasets.values()))
        self.read = self.loaded = self.dead = self.batches = 0
        self.rows: Counter[str] = Counter()
        self.reasons: Counter[str] = Counter()

    def __enter__(self) -> LoadObserver:
        self.run.start()
        return self

    def committed(
        self,
        rows: Mapping[str, int],
        dead_letters: pa.Table,
        *,
        read: int,
        seconds: float,
        table: str | None = None,
    ) -> None:
        """Account for one committed batch: ``rows`` per Bronze table, its ``dead_letters``
        (headed for ``table`` when the loader knows it), ``read`` messages, the transaction's
        ``seconds``."""
        letters = dead_letter_counts(dead_letters, table)
        metrics.record_batch(self.job, rows, letters, seconds)
        self.batches += 1
        self.read += read
        self.loaded += sum(rows.values())
        self.dead += dead_letters.num_rows
        self.rows.update({name: count for name, count in rows.items() if count})
        if dead_letters.num_rows:
            self.rows[DEAD_LETTER_TABLE] += dead_letters.num_rows
        for _, reason, count in letters:
            self.reasons[metrics.reason_class(reason)] += count

    def counts(self) -> dict[str, Any]:
        """The run's counts so far, as the lineage facet holds them."""
        return {
            "read": self.read,
            "loaded": self.loaded,
            "dead_lettered": self.dead,
            "dead_by_reason": dict(sorted(self.reasons.items())),
            "batches": self.batches,
        }

    def _rows(self) -> dict[lineage.Dataset, int]:
        return {self.datasets[name]: self.rows.get(name, 0) for name in self.tables}

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if error is None:
            metrics.record_success(self.job)
            self.run.complete(self.counts(), self._rows())
        else:
            self.run.fail(str(error) or type(error).__name__, self.counts(), self._rows())
        if self.textfile:
            metrics.write_textfile(self.job)


def event_rows(events: Mapping[str, pa.Table]) -> dict[str, int]:
    """Rows per Bronze event table of a batch's events (by topic)."""
    return {EVENT_TABLES[topic]: table.num_rows for topic, table in events.items()}
