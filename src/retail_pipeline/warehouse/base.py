"""The small interface every warehouse implements, and the shapes that cross it.

Loaders never talk SQL to the warehouse directly: they hand over an :class:`EventBatch` (events
the contract validator already typed, dead letters and the source positions they cover) and the
warehouse writes all of it in one transaction. The warehouse stores what it is given: it does not
validate, and it imports nothing from ingestion. That single rule is what makes loading
exactly-once: a crash either commits a batch with its positions or leaves neither.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, Self

import pyarrow as pa

from retail_pipeline.errors import WarehouseError

EVENT_TABLES: dict[str, str] = {
    "orders": "order_events",
    "payments": "payment_events",
    "shipments": "shipment_events",
}
REFERENCE_TABLES: dict[str, str] = {"customers": "customer_id", "products": "product_id"}
BRONZE_TABLES: tuple[str, ...] = (*EVENT_TABLES.values(), *REFERENCE_TABLES, "dead_letter")
"""Every Bronze data table. SQL text names a table only from this fixed list of the code's own
constants (see :func:`bronze_table`), never from a value that came from outside."""
SCHEMA_VERSION = 3
"""3: ``dead_letter`` records its redrive (``redriven_at``, ``redriven_by``), and the nullable
columns a newer contract adds; 2: typed Bronze columns beside the raw payload (1 kept the
payload only)."""


STILL_DEAD = {"dead_letter": " where redriven_at is null"}
"""What counts as a Bronze table's rows where not all do: a redriven dead letter is loaded
(``counts``, health and Silver's quality checks count it in its event table, not as dead)."""


def bronze_marks_sql(schema: str) -> str:
    """A query of how far every Bronze table has got: one row per table, its name and four
    marks as text (row count; newest ``_ingested_at``; for ``dead_letter`` the rows redriven
    and the length of all reasons, which redrive changes in place; for ``_loads`` the newest
    finish and the rows read, as a run's record grows in place). Any write to Bronze changes a
    mark. ``schema`` is the code's own Bronze schema name, never outside text."""
    marks = {
        "dead_letter": ("max(_ingested_at)", "count(redriven_at)", "sum(length(reason))"),
        "_loads": ("max(started_at)", "max(finished_at)", "sum(rows_read)"),
    }
    plain = ("max(_ingested_at)", "0", "0")
    selects = []
    for name in (*(bronze_table(t) for t in BRONZE_TABLES), "_loads"):
        columns = ", ".join(f"cast({mark} as varchar)" for mark in marks.get(name, plain))
        counted = f"select '{name}', cast(count(*) as varchar), {columns}"
        selects.append(f"{counted} from {schema}.{name}")
    return " union all ".join(selects)


def bronze_table(name: str) -> str:
    """``name``, checked to be one of :data:`BRONZE_TABLES` before SQL text holds it."""
    if name not in BRONZE_TABLES:
        raise WarehouseError(f"{name!r} is not a Bronze table ({', '.join(BRONZE_TABLES)})")
    return name


@dataclass(frozen=True)
class Position:
    """Where a source resumes: the offset of the next message not yet in Bronze."""

    source: str
    partition: int
    next_offset: int
    next_line: int | None = None
    fingerprint: str | None = None


@dataclass
class EventBatch:
    """One transaction's worth of validated messages from one source.

    ``events`` maps a topic to its Bronze rows: the typed columns validation produced, the raw
    ``payload`` and the source metadata (``_topic``, ``_partition``, ``_offset``, ``_key``,
    ``_kafka_ts``, ``_source_file``, ``_source_line``). ``dead_letters`` has the metadata plus
    ``raw_payload`` and ``reason``. The warehouse adds ``_ingested_at`` and ``_load_id``.
    """

    load_id: str
    source_kind: str
    events: dict[str, pa.Table]
    dead_letters: pa.Table
    positions: list[Position] = field(default_factory=list)
    expected: dict[tuple[str, int], int | None] = field(default_factory=dict)
    """Stored ``next_offset`` each (source, partition) must still have, None for "no row yet".

    Checked inside the transaction: a mismatch means another writer (a zombie consumer after a
    rebalance, a second loader) got there first, and the batch is rejected with
    :class:`PositionConflict` instead of being written twice.
    """
    read: int | None = None
    """Messages the reader took from the source for this batch, counted before validation
    (None: the batch's size). ``bronze._loads`` records it beside what was written."""
    load_source: str = ""
    """What the run reads (files, topics), for its ``bronze._loads`` row."""

    @property
    def size(self) -> int:
        """Messages in the batch: events plus dead letters."""
        return int(sum(t.num_rows for t in self.events.values()) + self.dead_letters.num_rows)


@dataclass(frozen=True)
class WriteResult:
    """What one batch write did."""

    loaded: int
    dead_lettered: int


class PositionConflict(RuntimeError):
    """The stored position moved since the batch was read: someone else wrote these messages."""


@dataclass(frozen=True)
class LoadRecord:
    """One run of a reference loader, as recorded in ``bronze._loads``."""

    load_id: str
    kind: str
    source: str
    content_hash: str | None
    rows_read: int
    rows_loaded: int
    rows_dead_lettered: int


@dataclass
class ReferenceBatch:
    """One transaction's worth of validated reference records (customers or products).

    A snapshot file is one batch; an incremental source (HTTP API, Postgres) writes a run as
    several batches under one load id, each with the source's position after it, so a crash
    between two batches loses and repeats nothing. ``rows`` has the typed record columns,
    ``payload``, ``_source_file`` and ``_record_number``; ``dead_letters`` the dead-letter
    columns. The warehouse adds ``_content_hash``, ``_ingested_at`` and ``_load_id``.
    """

    entity: str
    rows: pa.Table
    dead_letters: pa.Table
    load: LoadRecord
    """This batch's counts: the run's ``bronze._loads`` row is created by its first batch and
    grows with every later one."""
    content_hash: str
    """The rows' ``_content_hash``: sha256 of the snapshot file, or of the batch's payloads."""
    source_kind: str = "batch"
    """The dead letters' ``_source_kind``: ``batch`` (snapshot files), ``api`` or ``postgres``."""
    positions: list[Position] = field(default_factory=list)
    expected: dict[tuple[str, int], int | None] = field(default_factory=dict)
    """As for :attr:`EventBatch.expected`: checked in the transaction, a mismatch is a
    :class:`PositionConflict`."""
    record_load: bool = True
    """False for a run that read nothing: its position moves, ``bronze._loads`` gets no row."""


LATEST_CONTENT = """
select coalesce((
    select content_hash = ? from {loads} where kind = ?
    order by finished_at desc, load_id desc limit 1
), false) or coalesce((
    select content_hash = ? from {loads} where kind = ? and source = ?
    order by finished_at desc, load_id desc limit 1
), false)
"""
"""Whether a snapshot's content is the latest of its entity, or of its file (parameters: hash,
entity, hash, entity, source); ``{loads}`` is the ``_loads`` table's qualified name."""


class Closing:
    """``with`` support for a warehouse implementation: leaving the block closes it."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Warehouse(Protocol):
    """What every command needs from a warehouse, DuckDB or Snowflake.

    Open one with :func:`retail_pipeline.warehouse.open_warehouse`; nothing outside this package
    names an implementation.
    """

    target: str
    """The dbt target that builds Silver and Gold on it (``duckdb`` or ``snowflake``)."""

    @property
    def bronze(self) -> str:
        """The Bronze schema as SQL names it (``bronze``; ``RETAIL.BRONZE`` on Snowflake)."""
        ...

    def describe(self) -> str:
        """Where it is, for messages: ``warehouse data/x.duckdb``, ``Snowflake RETAIL at acct``."""
        ...

    def dbt_env(self) -> dict[str, str]:
        """The environment variables dbt's profile needs to reach this warehouse."""
        ...

    def query(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        """Rows of a read-only query (``?`` placeholders), e.g. of Gold for ``answers``."""
        ...

    def tables(self, schema: str) -> set[str]:
        """Lower-cased names of the tables and views in ``schema``."""
        ...

    def write_events(self, batch: EventBatch) -> WriteResult:
        """Write one batch's events, dead letters, positions and load counts atomically."""
        ...

    def positions(self, source: str) -> dict[int, Position]:
        """Stored positions of ``source`` by partition."""
        ...

    def all_positions(self) -> list[Position]:
        """Every stored position, ordered by source and partition."""
        ...

    def has_reference_load(self, entity: str, content_hash: str, source: str = "") -> bool:
        """True when the latest load of ``entity``, or the latest load from ``source`` (a
        snapshot file's path), was a snapshot with this content: a re-send of the latest
        snapshot, or of a file already loaded as it is, is a no-op; an older snapshot's content
        arriving again (a revert) is loaded again."""
        ...

    def write_reference(self, batch: ReferenceBatch) -> None:
        """Append one batch of reference records, its dead letters, positions and load counts
        atomically."""
        ...

    def counts(self) -> dict[str, int]:
        """Row counts of every Bronze table."""
        ...

    def bronze_marks(self) -> list[tuple[str, ...]]:
        """How far every Bronze table has got (:func:`bronze_marks_sql`), sorted by table."""
        ...

    def close(self) -> None:
        """Release the connection."""
        ...

    def __enter__(self) -> Warehouse: ...

    def __exit__(self, *exc: object) -> None: ...
