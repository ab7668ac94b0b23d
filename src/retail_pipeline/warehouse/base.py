"""The small interface every warehouse implements, and the shapes that cross it.

Loaders never talk SQL to the warehouse directly: they hand over an :class:`EventBatch` (valid
events, dead letters and the source positions they cover) and the warehouse writes all of it in
one transaction. That single rule is what makes loading exactly-once: a crash either commits a
batch with its positions or leaves neither.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import pyarrow as pa

EVENT_TABLES: dict[str, str] = {
    "orders": "order_events",
    "payments": "payment_events",
    "shipments": "shipment_events",
}
REFERENCE_TABLES: dict[str, str] = {"customers": "customer_id", "products": "product_id"}
SCHEMA_VERSION = 1


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
    """One transaction's worth of raw messages, as staged by a source.

    ``rows`` has the staging columns of ``retail_pipeline.ingestion.validate`` (``raw``,
    ``_raw_lossy``, ``_arrival_topic`` and the source metadata). The warehouse validates them
    with the contract SQL, writes valid events to their topic's table and the rest to the
    dead-letter table, and stores ``positions``, all in one transaction.
    """

    load_id: str
    source_kind: str
    rows: pa.Table
    positions: list[Position] = field(default_factory=list)
    expected: dict[tuple[str, int], int | None] = field(default_factory=dict)
    """Stored ``next_offset`` each (source, partition) must still have, None for "no row yet".

    Checked inside the transaction: a mismatch means another writer (a zombie consumer after a
    rebalance, a second loader) got there first, and the batch is rejected with
    :class:`PositionConflict` instead of being written twice.
    """
    return_dead_letters: bool = False


@dataclass(frozen=True)
class WriteResult:
    """What one batch write did; ``dead_letters`` when the batch asked for them."""

    loaded: int
    dead_lettered: int
    dead_letters: pa.Table | None = None


class PositionConflict(RuntimeError):
    """The stored position moved since the batch was read: someone else wrote these messages."""


@dataclass(frozen=True)
class LoadRecord:
    """One run of a loader, as recorded in ``bronze._loads``."""

    load_id: str
    kind: str
    source: str
    content_hash: str | None
    rows_read: int
    rows_loaded: int
    rows_dead_lettered: int


class Warehouse(Protocol):
    """What loaders need from a warehouse (DuckDB today, Snowflake next)."""

    def write_events(self, batch: EventBatch) -> WriteResult:
        """Validate and write one batch with its positions atomically."""
        ...

    def positions(self, source: str) -> dict[int, Position]:
        """Stored positions of ``source`` by partition."""
        ...

    def all_positions(self) -> list[Position]:
        """Every stored position, ordered by source and partition."""
        ...

    def has_reference_load(self, entity: str, content_hash: str) -> bool:
        """True when a snapshot with this content was already loaded for ``entity``."""
        ...

    def write_reference(
        self, entity: str, rows: pa.Table, dead_letters: pa.Table, load: LoadRecord
    ) -> None:
        """Append one reference snapshot, its dead letters and its load record atomically."""
        ...

    def record_load(self, load: LoadRecord) -> None:
        """Record a finished loader run."""
        ...

    def counts(self) -> dict[str, int]:
        """Row counts of every Bronze table."""
        ...

    def close(self) -> None:
        """Release the connection."""
        ...
