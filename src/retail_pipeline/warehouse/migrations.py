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

Crash safety (Snowflake): each DDL statement commits on its own, so a step cannot be one
transaction there. It builds the new tables aside, ``<table>__MIGRATING`` (``create or
replace``: a rerun starts them over), fills them batch by batch (Parquet staged and COPYed, as
the loaders do) with the refused rows in ``dead_letter__MIGRATING``, and records that in
``_meta`` (key ``migrating:<from>-><to>``, with the step's report). Then each table is swapped
with its new one (``alter table ... swap with``; one table at a time, each swap atomic; a table
already of the new shape is not swapped again), and one transaction (DML only) appends the dead
letters, moves the ``_loads`` counts, writes the step's record and the new ``schema_version``
and removes the ``migrating`` key. The old tables, now under the ``__MIGRATING`` names, are
dropped last. A rerun after a kill anywhere resumes: before the record, it builds again; after
it, it completes the swaps; after the commit, it drops what is left.

The record of each step is a ``bronze._meta`` row, key ``migration:<from>-><to>``, value a JSON
object (step name, started and finished times, rows re-derived, rows dead-lettered).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from retail_pipeline.errors import PipelineError, WarehouseError
from retail_pipeline.events.contract import REFERENCE_FIELDS
from retail_pipeline.events.validator import validate_events, validate_records
from retail_pipeline.warehouse import resolve_target
from retail_pipeline.warehouse.base import EVENT_TABLES, SCHEMA_VERSION, bronze_table
from retail_pipeline.warehouse.bronze import bronze_tables

if TYPE_CHECKING:
    import duckdb

    from retail_pipeline.warehouse.duckdb import DuckDBWarehouse
    from retail_pipeline.warehouse.snowflake import SnowflakeWarehouse

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
    added_columns: list[tuple[str, str, str]] = field(default_factory=list)
    """(table, column, type) a step adds in place, rows untouched."""

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
    run: Callable[[duckdb.DuckDBPyConnection, bool, frozenset[str]], StepReport]
    """DuckDB: the step, in the caller's transaction; the flag is a dry run, the set the tables
    an earlier step of the same dry run rebuilt (already of the current shape)."""
    build: Callable[[SnowflakeWarehouse, Sink], StepReport] | None
    """Snowflake: re-derive every row into the sink (the tables aside, or nowhere)."""
    in_place: Callable[[SnowflakeWarehouse, bool, frozenset[str]], StepReport] | None = None
    """Snowflake, a step that needs no rebuild (``build`` None): it changes the tables in place
    and commits itself; the flag is a dry run."""


def with_metadata(topic: str, typed: pa.Table, metadata: pa.Table) -> pa.Table:
    """A topic's validated rows (``validate_events``: typed columns, payload, ``_row``) as its
    Bronze table's rows: ``_topic``, then each row's stored metadata (``metadata``'s row
    ``_row``), as a fresh load writes them (its load id and time aside)."""
    table = typed.drop_columns(["_row"]).append_column(
        "_topic", pa.repeat(pa.scalar(topic, pa.string()), typed.num_rows)
    )
    meta = metadata.take(typed.column("_row"))
    for name in meta.column_names:
        table = table.append_column(name, meta.column(name))
    return table


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
        sink(EVENT_TABLES[topic], with_metadata(topic, typed, metadata))
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


def _typed_columns(
    con: duckdb.DuckDBPyConnection, dry_run: bool, rebuilt: frozenset[str] = frozenset()
) -> StepReport:
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


_ARROW = {
    "varchar": pa.string(),
    "integer": pa.int32(),
    "bigint": pa.int64(),
    "timestamptz": pa.timestamp("us", tz="UTC"),
}


def _snowflake_batches(
    warehouse: SnowflakeWarehouse, table: str, columns: str
) -> Iterator[pa.Table]:
    """The rows of ``table`` (a constant of this module) on Snowflake, :data:`BATCH_ROWS` at a
    time, as Arrow with the payload as text and the metadata typed as the current DDL's.

    The payload is read as stored (a ``VARCHAR``, the bytes) or, from a ``VARIANT``, as its
    JSON text. The emulators return a NULL timestamp as 1970-01-01, so nullable timestamps come
    with an ``is null`` flag."""
    from retail_pipeline.warehouse.snowflake import all_tables

    names = [name.strip() for name in columns.split(",")]
    ddl = all_tables()[bronze_table(table)]
    types = {name: sql_type for name, sql_type, _ in ddl}
    nullable = [  # the v1 DDL's nullable timestamps are the current one's
        name
        for name, sql_type, required in ddl
        if sql_type == "timestamptz" and not required and name in names
    ]
    flags = "".join(f", {n} is null" for n in nullable)
    [(kind,)] = warehouse.query(
        f"select data_type from {warehouse.database}.information_schema.columns"
        " where upper(table_schema) = 'BRONZE' and upper(table_name) = upper(?)"
        " and upper(column_name) = 'PAYLOAD'",
        [table],
    )
    # A VARIANT payload never held the bytes: its JSON text is Snowflake's, normalised.
    payload = "payload" if str(kind).upper() in ("TEXT", "VARCHAR") else "to_json(payload)"
    sql = f"select {payload}, {columns}{flags} from {warehouse.bronze}.{table}"
    for rows in warehouse.batches(sql, BATCH_ROWS):
        values = list(zip(*rows, strict=True))
        for i, name in enumerate(nullable):
            at = 1 + names.index(name)
            flag = values[1 + len(names) + i]
            values[at] = tuple(
                None if null else v for v, null in zip(values[at], flag, strict=True)
            )
        arrays = {"payload": pa.array(values[0], pa.string())}
        for i, name in enumerate(names):
            arrays[name] = pa.array(values[1 + i], _ARROW[types[name]])
        yield pa.table(arrays)


def _typed_columns_snowflake(warehouse: SnowflakeWarehouse, sink: Sink) -> StepReport:
    """1 -> 2 on Snowflake: as :func:`_typed_columns`, each stored row re-derived into ``sink``
    (the ``_loads`` counts move with the dead letters, when the step commits)."""
    report = StepReport(1, "typed_columns")
    present = warehouse.tables("bronze")
    moved: dict[str, int] = {}
    for table, is_event in [(t, True) for t in EVENT_TABLES.values()] + [
        (e, False) for e in REFERENCE_FIELDS
    ]:
        if table not in present:
            continue
        change = TableChange(table)
        report.tables.append(change)
        columns = _EVENT_METADATA if is_event else _REFERENCE_METADATA
        for rows in _snowflake_batches(warehouse, table, columns):
            change.rows += rows.num_rows
            if is_event:
                _event_batch(rows, sink, change, moved)
            else:
                _reference_batch(table, rows, sink, change, moved)
    return report


def _missing_columns(
    live: Callable[[str], list[str]], rebuilt: frozenset[str]
) -> list[tuple[str, str, str]]:
    """(table, column, DuckDB type) of the current DDL that the live tables lack, each checked to
    be nullable: a step may add such a column in place (old rows hold null, as a fresh load of
    their payloads would). ``live`` gives a table's column names (none: no such table, which
    the DDL creates whole); ``rebuilt`` tables are skipped."""
    from retail_pipeline.warehouse.snowflake import all_tables

    missing = []
    for table, columns in all_tables().items():
        if table in rebuilt:
            continue
        have = {name.lower() for name in live(table)}
        if not have:
            continue
        for name, sql_type, required in columns:
            if name.lower() in have:
                continue
            if required:
                raise WarehouseError(
                    f"bronze.{table} lacks the required column {name}: a column added in place"
                    " must be nullable (a step that derives it from the payloads is needed)"
                )
            missing.append((table, name, sql_type))
    return missing


def _duckdb_columns(con: duckdb.DuckDBPyConnection) -> Callable[[str], list[str]]:
    def live(table: str) -> list[str]:
        rows = con.execute(
            "select column_name from information_schema.columns"
            " where table_schema = 'bronze' and table_name = ? order by ordinal_position",
            [table],
        ).fetchall()
        return [str(name) for (name,) in rows]

    return live


def _added_columns(
    con: duckdb.DuckDBPyConnection, dry_run: bool, rebuilt: frozenset[str] = frozenset()
) -> StepReport:
    """2 -> 3: the new nullable columns, added in place: ``dead_letter``'s ``redriven_at`` and
    ``redriven_by`` (null: not redriven), and any nullable column the current contract's DDL has
    that a version-2 table lacks (the typed columns of a newer event version, say), found from
    the difference, never by name.

    No payload is re-derived: a version-2 Bronze holds only messages its contract accepted, and
    a fresh load of those payloads leaves a column their event version does not have null too.
    In the step's one transaction, as every DuckDB step."""
    from retail_pipeline.warehouse.duckdb import schema_statements

    report = StepReport(2, "added_columns")
    report.added_columns = _missing_columns(_duckdb_columns(con), rebuilt)
    if not dry_run:
        for table, name, sql_type in report.added_columns:
            con.execute(f"alter table bronze.{bronze_table(table)} add column {name} {sql_type}")
        for statement in schema_statements():
            con.execute(statement)  # a table version 2 lacked (none today)
    return report


def _added_columns_snowflake(
    warehouse: SnowflakeWarehouse, dry_run: bool, rebuilt: frozenset[str] = frozenset()
) -> StepReport:
    """2 -> 3 on Snowflake: as :func:`_added_columns`, one ``alter table ... add column`` per
    column the live table lacks (each DDL commits on its own; a rerun checks the live columns
    again, so it adds only what a killed run did not), then one DML transaction writes the
    step's record and the version."""
    from retail_pipeline.warehouse.snowflake import create_statements, snowflake_type

    started = datetime.now(UTC).isoformat()
    report = StepReport(2, "added_columns")
    report.added_columns = _missing_columns(warehouse.columns, rebuilt)
    if dry_run:
        return report
    for table, name, sql_type in report.added_columns:
        warehouse.execute(
            f"alter table {warehouse.bronze}.{bronze_table(table)}"
            f" add column {name} {snowflake_type(sql_type)}"
        )
    for statement in create_statements(warehouse.database):
        warehouse.execute(statement)  # a table version 2 lacked (none today)
    step = STEPS[1]
    record = {
        "step": report.name,
        "started_at": started,
        "finished_at": datetime.now(UTC).isoformat(),
        "rows_rederived": 0,
        "rows_dead_lettered": 0,
        "columns_added": [f"{table}.{name}" for table, name, _ in report.added_columns],
    }
    bronze = warehouse.bronze
    with warehouse.transaction() as cur:
        keys = [_record_key(step), "schema_version"]
        cur.execute(f"delete from {bronze}._meta where key in (?, ?)", keys)
        cur.execute(
            f"insert into {bronze}._meta (key, value) values (?, ?), (?, ?)",
            [keys[0], json.dumps(record), "schema_version", str(step.from_version + 1)],
        )
    return report


STEPS: tuple[Step, ...] = (
    Step(1, "typed_columns", _typed_columns, _typed_columns_snowflake),
    Step(2, "added_columns", _added_columns, None, _added_columns_snowflake),
)
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
    rebuilt: frozenset[str] = frozenset()
    for step in STEPS[version - 1 :]:
        if dry_run:
            summary.steps.append(step.run(con, True, rebuilt))
            rebuilt |= {change.table for change in summary.steps[-1].tables}
            continue
        started = datetime.now(UTC)
        with warehouse.transaction() as tx:
            report = step.run(tx, False, frozenset())
            record = {
                "step": step.name,
                "started_at": started.isoformat(),
                "finished_at": datetime.now(UTC).isoformat(),
                "rows_rederived": report.rederived,
                "rows_dead_lettered": report.dead_lettered,
            }
            if report.added_columns:
                record["columns_added"] = [f"{t}.{c}" for t, c, _ in report.added_columns]
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


ASIDE = "__MIGRATING"
"""Suffix of a table built aside by a Snowflake step (the old table's name after the swap)."""
_REBUILT = (*bronze_tables(), "dead_letter")
"""The tables a Snowflake step builds aside: the contract's, and the new dead letters."""


def _state_key(step: Step) -> str:
    return f"migrating:{step.from_version}->{step.from_version + 1}"


def _record_key(step: Step) -> str:
    return f"migration:{step.from_version}->{step.from_version + 1}"


def _build(warehouse: SnowflakeWarehouse, step: Step) -> StepReport:
    """Phase 1: every new table built aside and filled, then the ``migrating`` record (with
    the report, so a resumed step records what this run did)."""
    for table in _REBUILT:
        warehouse.create_like(table, table + ASIDE)
    started = datetime.now(UTC).isoformat()
    assert step.build is not None
    report = step.build(
        warehouse, lambda table, rows: warehouse.copy_rows(table, rows, table + ASIDE)
    )
    state = {
        "started_at": started,
        "tables": [[t.table, t.rows, t.rederived, t.dead_lettered] for t in report.tables],
    }
    key = _state_key(step)
    warehouse.execute(f"delete from {warehouse.bronze}._meta where key = ?", [key])
    warehouse.execute(
        f"insert into {warehouse.bronze}._meta (key, value) values (?, ?)",
        [key, json.dumps(state)],
    )
    return report


def _swap(warehouse: SnowflakeWarehouse, table: str) -> None:
    """Phase 2, one table: swap it with its new one, unless it already has the new shape.

    ``swap with`` is one atomic statement on Snowflake (grants go with the tables). fakesnow
    cannot parse it; there the same exchange is three renames in one transaction, which the
    emulator's DuckDB keeps atomic."""
    from retail_pipeline.warehouse.snowflake import all_tables

    current = [name.upper() for name, _, _ in all_tables()[table]]
    if warehouse.columns(table) == current:
        return  # swapped before a crash
    bronze, aside = warehouse.bronze, table + ASIDE
    if not warehouse.columns(table):  # no old table: the new one takes the name
        warehouse.execute(f"alter table {bronze}.{aside} rename to {bronze}.{table}")
        return
    try:
        warehouse.execute(f"alter table {bronze}.{table} swap with {bronze}.{aside}")
    except WarehouseError as exc:
        if "syntax error" not in str(exc).lower():
            raise
        swapping = f"{bronze}.{table}__SWAPPING"
        with warehouse.transaction() as cur:
            cur.execute(f"alter table {bronze}.{table} rename to {swapping}")
            cur.execute(f"alter table {bronze}.{aside} rename to {bronze}.{table}")
            cur.execute(f"alter table {swapping} rename to {bronze}.{aside}")


def _commit(warehouse: SnowflakeWarehouse, step: Step, state: dict[str, Any]) -> None:
    """Phase 3: one transaction (DML only): the dead letters appended, the ``_loads`` counts
    moved, the step's record and the new version written, the ``migrating`` key removed."""
    from retail_pipeline.warehouse.snowflake import bookkeeping_tables

    bronze, aside = warehouse.bronze, "dead_letter" + ASIDE
    moved = warehouse.query(
        f"select _load_id, count(*) from {bronze}.{aside} group by _load_id order by _load_id"
    )
    # The aside table has the current DDL; dead_letter may be older (a later step adds its
    # new columns): the columns both have.
    live = set(warehouse.columns("dead_letter"))
    columns = ", ".join(
        name for name, _, _ in bookkeeping_tables()["dead_letter"] if name.upper() in live
    )
    tables = state["tables"]
    record = {
        "step": step.name,
        "started_at": state["started_at"],
        "finished_at": datetime.now(UTC).isoformat(),
        "rows_rederived": sum(t[2] for t in tables),
        "rows_dead_lettered": sum(t[3] for t in tables),
    }
    with warehouse.transaction() as cur:
        cur.execute(
            f"insert into {bronze}.dead_letter ({columns}) select {columns} from {bronze}.{aside}"
        )
        for load_id, n in moved:
            cur.execute(
                f"update {bronze}._loads set rows_loaded = rows_loaded - ?,"
                " rows_dead_lettered = rows_dead_lettered + ? where load_id = ?",
                [int(n), int(n), load_id],
            )
        keys = [_record_key(step), _state_key(step), "schema_version"]
        cur.execute(f"delete from {bronze}._meta where key in (?, ?, ?)", keys)
        cur.execute(
            f"insert into {bronze}._meta (key, value) values (?, ?), (?, ?)",
            [keys[0], json.dumps(record), "schema_version", str(step.from_version + 1)],
        )


def _drop_aside(warehouse: SnowflakeWarehouse) -> None:
    """Phase 4: the old tables and the dead letters' aside table dropped (a rerun drops what
    a crash left, :func:`_drop_leftovers`)."""
    _drop_leftovers(warehouse)


def _drop_leftovers(warehouse: SnowflakeWarehouse) -> None:
    """Every ``__MIGRATING`` table dropped: the old tables of a committed step, or a build no
    ``migrating`` record names (started over anyway)."""
    for table in _REBUILT:
        warehouse.execute(f"drop table if exists {warehouse.bronze}.{table}{ASIDE}")


def _snowflake_step(warehouse: SnowflakeWarehouse, step: Step) -> StepReport:
    """One step on Snowflake: build aside (unless a crashed run recorded it built), swap, commit,
    drop; see the module's docstring."""
    from retail_pipeline.warehouse.snowflake import create_statements

    key = _state_key(step)
    rows = warehouse.query(f"select value from {warehouse.bronze}._meta where key = ?", [key])
    if rows:
        state = json.loads(rows[0][0])
        report = StepReport(step.from_version, step.name)
        report.tables = [TableChange(*t) for t in state["tables"]]
    else:
        assert step.build is not None
        report = _build(warehouse, step)
        [(value,)] = warehouse.query(
            f"select value from {warehouse.bronze}._meta where key = ?", [key]
        )
        state = json.loads(value)
    for table in bronze_tables():
        _swap(warehouse, table)
    for statement in create_statements(warehouse.database):
        warehouse.execute(statement)  # a table the old version lacked (none today)
    _commit(warehouse, step, state)
    _drop_aside(warehouse)
    return report


def migrate_snowflake(warehouse: SnowflakeWarehouse, *, dry_run: bool = False) -> MigrationSummary:
    """:func:`migrate` for a Snowflake warehouse opened with ``migrating=True``: each step
    built aside, swapped in and committed (module docstring); a dry run re-derives every row
    and writes nothing. A current Bronze has only what a killed run left dropped."""
    version = warehouse.stored_version
    summary = MigrationSummary(version, SCHEMA_VERSION, dry_run)
    if version is None:
        return summary
    if not dry_run and not warehouse.query(
        f"select key from {warehouse.bronze}._meta where key like 'migrating:%'"
    ):
        _drop_leftovers(warehouse)  # what a run killed after its step's commit left
    if version >= SCHEMA_VERSION:
        return summary
    rebuilt: frozenset[str] = frozenset()
    for step in STEPS[version - 1 :]:
        if step.in_place is not None:
            summary.steps.append(step.in_place(warehouse, dry_run, rebuilt))
        elif dry_run:
            assert step.build is not None
            summary.steps.append(step.build(warehouse, lambda table, rows: None))
        else:
            summary.steps.append(_snowflake_step(warehouse, step))
        if dry_run:
            rebuilt |= {change.table for change in summary.steps[-1].tables}
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
    read-only) and migrate it: :func:`migrate` (DuckDB), :func:`migrate_snowflake`."""
    from retail_pipeline.warehouse.duckdb import DuckDBWarehouse, check_existing, warehouse_path

    if resolve_target(target) == "snowflake":
        if path is not None:
            raise PipelineError("--warehouse names a DuckDB file; the snowflake target has none")
        from retail_pipeline.settings import settings
        from retail_pipeline.warehouse.snowflake import SnowflakeWarehouse

        config = settings().snowflake
        with SnowflakeWarehouse(
            config.connect_args(), database=config.database, read_only=dry_run, migrating=True
        ) as warehouse:
            return migrate_snowflake(warehouse, dry_run=dry_run)
    file = warehouse_path(path)
    check_existing(file, "nothing to migrate")  # never create an empty warehouse to migrate
    with DuckDBWarehouse(file, read_only=dry_run, migrating=True) as warehouse:
        return migrate(warehouse, dry_run=dry_run)
