"""Bronze schema migrations: an older Bronze upgraded in place, never reloaded.

Bronze keeps every payload byte for byte, so a new schema version never needs the sources
again: each step re-derives what the new version adds from the stored payloads, with the same
validator a fresh load uses (:func:`retail_pipeline.events.validator.validate_events` and
``validate_records``), so a migrated row equals a freshly loaded one. :data:`STEPS` holds one
step per version, ``n -> n + 1``, run in order.

Crash safety (DuckDB): a step is one transaction. The old tables are renamed aside, the new ones
created from the current DDL and filled batch by batch (one ``insert ... select`` from Arrow per
batch, so memory does not grow with the table), the old ones dropped, and the step's record and
the new ``schema_version`` written in ``bronze._meta``, all committed together. A kill at any
moment leaves the previous version intact; a rerun does the step again, exactly once.

The record of each step is a ``bronze._meta`` row, key ``migration:<from>-><to>``, value a JSON
object (step name, started and finished times, rows re-derived, rows dead-lettered).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from retail_pipeline.errors import PipelineError
from retail_pipeline.events.contract import REFERENCE_FIELDS
from retail_pipeline.events.validator import validate_events, validate_records
from retail_pipeline.warehouse import resolve_target
from retail_pipeline.warehouse.base import EVENT_TABLES, SCHEMA_VERSION, bronze_table

if TYPE_CHECKING:
    import duckdb

    from retail_pipeline.warehouse.duckdb import DuckDBWarehouse

BATCH_ROWS = 20_000
"""Rows re-derived per batch: bounds the migration's memory whatever the table's size."""

_EVENT_METADATA = (
    "_topic, _partition, _offset, _key, _kafka_ts, _source_file, _source_line,"
    " _ingested_at, _load_id"
)
_REFERENCE_METADATA = "_source_file, _record_number, _content_hash, _ingested_at, _load_id"


@dataclass
class TableChange:
    """What a step does to one Bronze table's rows."""

    table: str
    rows: int = 0
    rederived: int = 0
    dead_lettered: int = 0


@dataclass
class StepReport:
    """One step: its versions and name, and per table what it did (or would do)."""

    from_version: int
    name: str
    tables: list[TableChange] = field(default_factory=list)

    @property
    def to_version(self) -> int:
        return self.from_version + 1

    @property
    def rederived(self) -> int:
        return sum(t.rederived for t in self.tables)

    @property
    def dead_lettered(self) -> int:
        return sum(t.dead_lettered for t in self.tables)


@dataclass
class MigrationSummary:
    """The whole run: from which version to which, and each step's report."""

    from_version: int | None
    to_version: int
    dry_run: bool
    steps: list[StepReport] = field(default_factory=list)


Sink = Callable[[str, pa.Table], None]
"""Receives re-derived rows for a Bronze table (``dead_letter`` included); a dry run's
sink discards them."""


@dataclass(frozen=True)
class Step:
    """One migration ``from_version -> from_version + 1``."""

    from_version: int
    name: str
    run: Callable[[duckdb.DuckDBPyConnection, bool], StepReport]


def _event_batch(rows: pa.Table, sink: Sink, change: TableChange, moved: dict[str, int]) -> None:
    """Re-derive one batch of stored events as a fresh load would (ingestion.staging's path):
    valid events go to their topic's table with their metadata, the rest to ``dead_letter``."""
    payloads = [p.encode() for p in rows.column("payload").to_pylist()]
    partitions = rows.column("_partition").to_pylist()
    topics = rows.column("_topic").to_pylist()
    # Kafka rows (a partition) were checked against the topic they arrived on; file rows not.
    arrival = [t if p is not None else None for t, p in zip(topics, partitions, strict=True)]
    verdicts = validate_events(payloads, arrival)
    metadata = rows.drop_columns(["payload", "_topic"])
    for topic, typed in verdicts.events.items():
        table = typed.drop_columns(["_row"]).append_column(
            "_topic", pa.repeat(pa.scalar(topic, pa.string()), typed.num_rows)
        )
        meta = metadata.take(typed.column("_row"))
        for name in meta.column_names:
            table = table.append_column(name, meta.column(name))
        sink(EVENT_TABLES[topic], table)
        change.rederived += typed.num_rows
    if verdicts.dead_rows:
        index = pa.array(verdicts.dead_rows, pa.int64())
        dead = metadata.take(index)
        kinds = ["kafka" if partitions[i] is not None else "file" for i in verdicts.dead_rows]
        dead = dead.append_column("_source_kind", pa.array(kinds, pa.string()))
        dead = dead.append_column(
            "_topic", pa.array([arrival[i] for i in verdicts.dead_rows], pa.string())
        )
        dead = dead.append_column("raw_payload", rows.column("payload").take(index))
        dead = dead.append_column("reason", pa.array(verdicts.dead_reasons, pa.string()))
        sink("dead_letter", dead)
        change.dead_lettered += len(verdicts.dead_rows)
        for load_id in dead.column("_load_id").to_pylist():
            moved[load_id] = moved.get(load_id, 0) + 1


def _reference_batch(
    entity: str, rows: pa.Table, sink: Sink, change: TableChange, moved: dict[str, int]
) -> None:
    """Re-derive one batch of stored reference records as the snapshot loader would."""
    payloads = [p.encode() for p in rows.column("payload").to_pylist()]
    verdicts = validate_records(entity, payloads)
    metadata = rows.drop_columns(["payload"])
    good = verdicts.rows
    table = good.drop_columns(["_row"])
    meta = metadata.take(good.column("_row"))
    for name in meta.column_names:
        table = table.append_column(name, meta.column(name))
    if table.num_rows:
        sink(entity, table)
    change.rederived += table.num_rows
    if verdicts.dead_rows:
        index = pa.array(verdicts.dead_rows, pa.int64())
        old = metadata.take(index)
        dead = pa.table(
            {
                "_source_kind": pa.repeat(pa.scalar("batch"), len(index)),
                "_offset": old.column("_record_number"),  # the record's position in its snapshot
                "_source_file": old.column("_source_file"),
                "raw_payload": rows.column("payload").take(index),
                "reason": pa.array(verdicts.dead_reasons, pa.string()),
                "_ingested_at": old.column("_ingested_at"),
                "_load_id": old.column("_load_id"),
            }
        )
        sink("dead_letter", dead)
        change.dead_lettered += len(verdicts.dead_rows)
        for load_id in dead.column("_load_id").to_pylist():
            moved[load_id] = moved.get(load_id, 0) + 1


def _table_exists(con: duckdb.DuckDBPyConnection, table: str) -> bool:
    row = con.execute(
        "select count(*) from information_schema.tables"
        " where table_schema = 'bronze' and table_name = ?",
        [table],
    ).fetchone()
    return bool(row and row[0])


def _batches(con: duckdb.DuckDBPyConnection, table: str, columns: str) -> Any:
    """The rows of ``table`` (a constant of this module) in rowid ranges of :data:`BATCH_ROWS`.

    Each range is fetched whole before anything else runs on the connection, so the caller may
    write between two batches in the same transaction."""
    row = con.execute(f"select count(*), max(rowid) from bronze.{table}").fetchone()
    last = -1 if not row or row[1] is None else int(row[1])
    for start in range(0, last + 1, BATCH_ROWS):
        yield con.execute(
            f"select payload::varchar as payload, {columns} from bronze.{table}"
            " where rowid >= ? and rowid < ? order by rowid",
            [start, start + BATCH_ROWS],
        ).to_arrow_table()


def _append(con: duckdb.DuckDBPyConnection, table: str, rows: pa.Table) -> None:
    """One ``insert ... by name`` of re-derived rows (their own ``_ingested_at``/``_load_id``)."""
    con.register("_migrated", rows)
    try:
        con.execute(f"insert into bronze.{bronze_table(table)} by name select * from _migrated")
    finally:
        con.unregister("_migrated")


def _typed_columns(con: duckdb.DuckDBPyConnection, dry_run: bool) -> StepReport:
    """1 -> 2: the typed columns of every event and reference table, from the payloads.

    Version 1 kept the payload (JSON) beside a few envelope columns; version 2's columns come
    from the contract. Each stored row is validated again: what the contract accepts is
    written to the new table with its original metadata, load id and ingestion time; what it
    refuses goes to ``dead_letter`` with the reason and its position, and its load's
    ``bronze._loads`` counts move from loaded to dead-lettered (as a fresh load would count it).
    """
    from retail_pipeline.warehouse.duckdb import schema_statements

    report = StepReport(1, "typed_columns")
    sources = [(t, True) for t in EVENT_TABLES.values()] + [(e, False) for e in REFERENCE_FIELDS]
    present = [(t, is_event) for t, is_event in sources if _table_exists(con, t)]
    old = {t: (f"{t}__v1" if not dry_run else t) for t, _ in present}
    if not dry_run:
        for table, _ in present:
            con.execute(f"alter table bronze.{table} rename to {old[table]}")
        for statement in schema_statements():
            con.execute(statement)

    def write(table: str, rows: pa.Table) -> None:
        if not dry_run:
            _append(con, table, rows)

    moved: dict[str, int] = {}
    for table, is_event in present:
        change = TableChange(table)
        report.tables.append(change)
        columns = _EVENT_METADATA if is_event else _REFERENCE_METADATA
        for rows in _batches(con, old[table], columns):
            change.rows += rows.num_rows
            if is_event:
                _event_batch(rows, write, change, moved)
            else:
                _reference_batch(table, rows, write, change, moved)
    if not dry_run:
        con.executemany(
            "update bronze._loads set rows_loaded = rows_loaded - ?,"
            " rows_dead_lettered = rows_dead_lettered + ? where load_id = ?",
            [[n, n, load_id] for load_id, n in sorted(moved.items())],
        )
        for table, _ in present:
            con.execute(f"drop table bronze.{old[table]}")
    return report


STEPS: tuple[Step, ...] = (Step(1, "typed_columns", _typed_columns),)
"""One step per schema version, in order: ``STEPS[i]`` upgrades version ``i + 1``."""
assert [s.from_version for s in STEPS] == list(range(1, SCHEMA_VERSION)), "a step per version"


def stored_version(con: duckdb.DuckDBPyConnection) -> int | None:
    """The ``schema_version`` in ``bronze._meta``, None when there is no Bronze yet."""
    if not _table_exists(con, "_meta"):
        return None
    row = con.execute("select value from bronze._meta where key = 'schema_version'").fetchone()
    return int(row[0]) if row else None


def migrate(warehouse: DuckDBWarehouse, *, dry_run: bool = False) -> MigrationSummary:
    """Upgrade ``warehouse``'s Bronze to :data:`SCHEMA_VERSION`, one step per version.

    ``dry_run`` reports what each step would do and writes nothing (open the warehouse
    read-only for it). Each step commits on its own, with its record and the version it
    reached; a warehouse already at the current version is left as it is.
    """
    con = warehouse.con
    version = stored_version(con)
    summary = MigrationSummary(version, SCHEMA_VERSION, dry_run)
    if version is None or version >= SCHEMA_VERSION:
        return summary
    for step in STEPS[version - 1 :]:
        if dry_run:
            summary.steps.append(step.run(con, True))
            continue
        started = datetime.now(UTC)
        with warehouse.transaction() as tx:
            report = step.run(tx, False)
            record = {
                "step": step.name,
                "started_at": started.isoformat(),
                "finished_at": datetime.now(UTC).isoformat(),
                "rows_rederived": report.rederived,
                "rows_dead_lettered": report.dead_lettered,
            }
            tx.execute(
                "insert or replace into bronze._meta values (?, ?), ('schema_version', ?)",
                [
                    f"migration:{report.from_version}->{report.to_version}",
                    json.dumps(record),
                    str(step.from_version + 1),
                ],
            )
        summary.steps.append(report)
    return summary


def migrations(con: duckdb.DuckDBPyConnection) -> list[tuple[str, dict[str, Any]]]:
    """The recorded steps: (``<from>-><to>``, record), in order."""
    if not _table_exists(con, "_meta"):
        return []
    rows = con.execute(
        "select value, key from bronze._meta where key like 'migration:%' order by key"
    ).fetchall()
    return [(key.split(":", 1)[1], json.loads(value)) for value, key in rows]


def migrate_warehouse(
    path: str | os.PathLike[str] | None = None,
    *,
    target: str | None = None,
    dry_run: bool = False,
) -> MigrationSummary:
    """``retail-pipeline migrate``: open the warehouse of ``target`` as it is (a dry run
    read-only) and :func:`migrate` it. DuckDB only so far: Snowflake's DDL commits on its own,
    so its steps need the build-aside-then-swap protocol (docs/bronze.md#migrations)."""
    from retail_pipeline.warehouse.duckdb import DuckDBWarehouse, check_existing, warehouse_path

    if resolve_target(target) != "duckdb":
        raise PipelineError(
            "migrate runs on the duckdb target only so far; a Snowflake Bronze of an older"
            " schema version is not migrated yet (docs/bronze.md#migrations)"
        )
    file = warehouse_path(path)
    check_existing(file, "nothing to migrate")  # never create an empty warehouse to migrate
    with DuckDBWarehouse(file, read_only=dry_run, migrating=True) as warehouse:
        return migrate(warehouse, dry_run=dry_run)
