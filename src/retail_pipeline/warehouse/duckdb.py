"""Bronze on an embedded DuckDB file."""

from __future__ import annotations

import contextlib
import os
import re
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from retail_pipeline.errors import WarehouseError, WarehouseOutOfMemory
from retail_pipeline.settings import settings, utf8_path
from retail_pipeline.warehouse.base import (
    BRONZE_TABLES,
    EVENT_TABLES,
    LATEST_CONTENT,
    SCHEMA_VERSION,
    STILL_DEAD,
    Closing,
    EventBatch,
    LoadRecord,
    Position,
    PositionConflict,
    ReferenceBatch,
    WriteResult,
    bronze_marks_sql,
    bronze_table,
)
from retail_pipeline.warehouse.bronze import create_statements
from retail_pipeline.warehouse.sql import literal


def warehouse_path(path: str | os.PathLike[str] | None = None) -> Path:
    """The warehouse file: ``path``, else the settings' (``RETAIL_WAREHOUSE``); a path DuckDB
    cannot open (not UTF-8, control characters) is refused in one line."""
    return utf8_path(Path(path), "warehouse") if path else settings().warehouse


def schema_statements() -> list[str]:
    """The current Bronze DDL, one statement each (also what a migration step creates)."""
    text = resources.files("retail_pipeline.warehouse").joinpath("schema.sql").read_text()
    text = re.sub(r"--[^\n]*", "", text).replace("{json}", "json")
    return [stmt.strip() for stmt in text.split(";") if stmt.strip()] + create_statements()


_SAME_PROCESS = "same database file with a different configuration"
"""DuckDB's refusal of a read-only open of a file this process holds read-write."""

_OUT_OF_MEMORY = ("failed to pin block", "could not allocate block", "out of memory")


def _out_of_memory(exc: duckdb.Error) -> bool:
    """Whether DuckDB refused the write for its memory limit."""
    text = str(exc).lower()
    return isinstance(exc, duckdb.OutOfMemoryException) or any(m in text for m in _OUT_OF_MEMORY)


def _reason(exc: duckdb.Error) -> str:
    """DuckDB's reason for a failed write, in one line; running out of the loaders' memory
    limit says which setting to raise (DuckDB's own advice is about queries, not appends)."""
    text = str(exc)
    if _out_of_memory(exc):
        return (
            f"DuckDB needed more than RETAIL_DUCKDB_MEMORY={settings().duckdb_memory} to commit"
            " this batch (the batch was rolled back, what was committed before stays); a table"
            " of large records needs more: raise RETAIL_DUCKDB_MEMORY (docs/bronze.md#limits)"
        )
    return text.split("\n\nPossible solutions", 1)[0]


def open_error(path: Path, exc: Exception) -> WarehouseError:
    """One clear line for a failure to open the warehouse file."""
    message = str(exc).splitlines()[0]
    if "corrupt" in message.lower() or "checksum" in message.lower():
        return WarehouseError(
            f"warehouse {path} is corrupt ({message}); restore it from a backup, or move it"
            " aside and rebuild it by loading the sources again"
        )
    if re.search(r"could not set lock|conflicting lock|\blocked\b", message, re.IGNORECASE):
        pid = re.search(r"PID (\d+)", str(exc))
        holder = f" (PID {pid.group(1)})" if pid else ""
        return WarehouseError(f"warehouse {path} is locked by another process{holder}")
    if "permission" in message.lower() or "read-only" in message.lower():
        return WarehouseError(f"cannot write warehouse {path}: permission denied")
    if "not a valid duckdb database" in message.lower() or "database file" in message.lower():
        return WarehouseError(f"{path} is not a DuckDB warehouse file: {message}")
    return WarehouseError(f"cannot open warehouse {path}: {message}")


def check_schema_version(
    con: duckdb.DuckDBPyConnection, path: Path, *, migrating: bool = False
) -> int | None:
    """The Bronze schema version of an open warehouse (None when it has no Bronze yet).

    Raises :class:`WarehouseError` for a version this code must not read: a newer one, or an
    older one (which ``retail-pipeline migrate`` upgrades; ``migrating`` lets it through).
    """
    exists = con.execute(
        "select count(*) from information_schema.tables"
        " where table_schema = 'bronze' and table_name = '_meta'"
    ).fetchone()
    version = None
    if exists and exists[0]:
        row = con.execute("select value from bronze._meta where key = 'schema_version'").fetchone()
        version = int(row[0]) if row else None
    if version is not None and version > SCHEMA_VERSION:
        raise WarehouseError(
            f"warehouse {path} has schema version {version}, newer than the"
            f" {SCHEMA_VERSION} this retail-pipeline supports; upgrade retail-pipeline"
        )
    if version is not None and version < SCHEMA_VERSION and not migrating:
        raise WarehouseError(
            f"warehouse {path} holds Bronze schema version {version}; this retail-pipeline"
            f" reads version {SCHEMA_VERSION} only: run `retail-pipeline migrate` to upgrade it"
            " in place (`--dry-run` shows what would change)"
        )
    return version


_HELD: dict[Path, int] = {}
"""The warehouse files this process holds open read-write, and by how many warehouses."""
_HELD_LOCK = threading.Lock()


def _hold(path: Path, change: int) -> None:
    with _HELD_LOCK:
        count = _HELD.get(path, 0) + change
        if count > 0:
            _HELD[path] = count
        else:
            _HELD.pop(path, None)


def _is_other_file(path: Path) -> bool:
    """True for an existing file without DuckDB's magic bytes (DuckDB would try to attach a
    SQLite file through an extension it downloads, instead of refusing it).

    A file this process holds open is a DuckDB database, and is not read: DuckDB's file lock is
    a POSIX record lock, which the kernel drops when the process closes *any* descriptor of the
    file, so reading the header would let another process open it for writing too.
    """
    with _HELD_LOCK:
        if path.resolve() in _HELD:
            return False
    try:
        with path.open("rb") as handle:
            header = handle.read(12)
    except OSError:
        return False
    return header[8:12] != b"DUCK"


def _discard_empty(path: Path) -> None:
    """Remove a warehouse file (and its WAL) that holds no table: what creating one leaves
    when it is interrupted before its Bronze commits. A file with any table is left alone."""
    try:
        con = duckdb.connect(str(path), read_only=True)
    except (duckdb.Error, OSError):
        return  # another process holds it now, or it is gone: not ours to remove
    try:
        row = con.execute("select count(*) from duckdb_tables()").fetchone()
    finally:
        con.close()
    if row and row[0] == 0:
        for leftover in (path, path.with_name(path.name + ".wal")):
            with contextlib.suppress(OSError):
                leftover.unlink()


def check_existing(path: Path, hint: str = "load something first") -> None:
    """Refuse, in one line, a warehouse path that is not an existing DuckDB file.

    Every reader checks this before DuckDB sees the path: DuckDB would answer a directory, a
    missing file or another format (it picks a reader by the file's extension or header) with
    a misleading message, or create an empty database.
    """
    if path.is_dir():
        raise WarehouseError(f"warehouse {path} is a directory, expected a DuckDB file")
    if not path.is_file():
        raise WarehouseError(f"warehouse {path} does not exist; {hint}")
    if _is_other_file(path):
        raise WarehouseError(f"{path} is not a DuckDB warehouse file")


class DuckDBWarehouse(Closing):
    """The embedded warehouse: one DuckDB file holding the ``bronze`` schema (and dbt's layers)."""

    target = "duckdb"
    bronze = "bronze"
    """The Bronze schema, as SQL names it."""

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        read_only: bool = False,
        exclusive: bool = True,
        lock_timeout: float = 60.0,
        missing_hint: str = "load something first",
        migrating: bool = False,
    ):
        """Open (creating if needed) the warehouse file.

        ``exclusive`` holds DuckDB's file lock for the object's lifetime (fastest; what batch
        loaders do). With ``exclusive=False`` every operation opens the file, waits up to
        ``lock_timeout`` seconds for the lock and closes it again, so several processes (e.g.
        the consumers of one Kafka group) can take turns writing. ``migrating`` opens an older
        Bronze as it is, for :mod:`~retail_pipeline.warehouse.migrations` (nothing else may).
        """
        self.path = warehouse_path(path)
        if self.path.stem in ("bronze", "silver", "gold"):
            raise WarehouseError(
                f"warehouse {self.path}: DuckDB names the database after the file, which would"
                " clash with the schema of the same name; choose another file name"
            )
        self._read_only = read_only
        self._lock_timeout = lock_timeout
        self._missing_hint = missing_hint
        self._con: duckdb.DuckDBPyConnection | None = None
        self._joined = False
        if self.path.is_dir():
            raise WarehouseError(f"warehouse {self.path} is a directory, expected a DuckDB file")
        if not read_only:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except FileExistsError:
                raise WarehouseError(
                    f"cannot create warehouse {self.path}: {self.path.parent} is not a directory"
                ) from None
            except OSError as exc:
                raise WarehouseError(
                    f"cannot create warehouse {self.path}: {self.path.parent}: {exc.strerror}"
                ) from None
            if self.path.exists() and not os.access(self.path, os.W_OK):
                raise WarehouseError(f"cannot write warehouse {self.path}: permission denied")
            if not os.access(self.path.parent, os.W_OK):
                raise WarehouseError(
                    f"cannot write warehouse {self.path}: directory {self.path.parent} is read-only"
                )
        else:
            check_existing(self.path, missing_hint)
        if self.path.is_file() and _is_other_file(self.path):
            raise WarehouseError(f"{self.path} is not a DuckDB warehouse file")
        new = not read_only and not self.path.exists()
        try:
            con = self._connect(wait=not exclusive)
            try:
                self._check_schema(con, read_only or migrating, migrating=migrating)
            except BaseException:
                con.close()
                raise
        except BaseException:
            if new:  # a file this open created, whose Bronze never committed (a Ctrl-C)
                _discard_empty(self.path)
            raise
        if exclusive:
            self._con = con
            if not (read_only or self._joined):
                _hold(self.path.resolve(), +1)
        else:
            con.close()

    @property
    def con(self) -> duckdb.DuckDBPyConnection:
        """The held connection of an exclusive warehouse."""
        if self._con is None:
            raise WarehouseError(f"warehouse {self.path} is not open exclusively")
        return self._con

    def _connect(self, *, wait: bool) -> duckdb.DuckDBPyConnection:
        deadline = time.monotonic() + self._lock_timeout
        delay = 0.01
        while True:
            try:
                con = duckdb.connect(str(self.path), read_only=self._read_only)
                break
            except (duckdb.Error, OSError) as exc:
                if self._read_only and _SAME_PROCESS in str(exc):
                    con = self._join()
                    break
                error = open_error(self.path, exc)
                if not (wait and "locked" in str(error) and time.monotonic() < deadline):
                    raise error from None
                time.sleep(delay)  # another writer holds the file; poll until the deadline
                delay = min(delay * 2, 0.2)
        try:
            self._configure(con)
        except BaseException:
            con.close()  # a Ctrl-C here must not leave the file held by a lost connection
            raise
        return con

    @staticmethod
    def _configure(con: duckdb.DuckDBPyConnection) -> None:
        con.execute("set timezone = 'UTC'")
        # Checkpoint in large steps: each batch commit then appends to the WAL instead of
        # rewriting row groups, which is several times faster for streams of small batches.
        con.execute("set checkpoint_threshold = '256MB'")
        # Loaders only append: a bounded buffer pool keeps a long-running consumer's memory flat.
        # RETAIL_DUCKDB_MEMORY, parsed and spelt canonically by the settings, then quoted.
        con.execute("set memory_limit = " + literal(settings().duckdb_memory))
        # Loaders validate in Python on another core while DuckDB appends: one DuckDB thread
        # per append does the same work with less CPU than two fighting the validator.
        con.execute("set threads = 1")
        con.execute("set enable_progress_bar = false")

    def _join(self) -> duckdb.DuckDBPyConnection:
        """A connection to the database this process already holds read-write.

        DuckDB lets one process open a file once: ``retail-pipeline run`` writes Bronze and
        builds Gold in one database instance, and a reader in the same process (the dashboard
        it serves, dbt's runner checking the warehouse) joins that instance instead of being
        refused. The connection could write; this object, being read-only, never does.
        """
        self._joined = True
        return duckdb.connect(str(self.path))

    @contextmanager
    def _session(self) -> Iterator[duckdb.DuckDBPyConnection]:
        if self._con is not None:
            yield self._con
            return
        con = self._connect(wait=True)
        try:
            yield con
        finally:
            con.close()

    @contextmanager
    def _transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """One transaction: committed when the block ends, rolled back when it raises.

        A failed write reports its own cause: when the commit itself failed (a full disk, say)
        DuckDB has already ended the transaction, and the rollback's "no transaction is
        active" must not hide why.
        """
        with self._session() as con:
            try:
                con.execute("begin")
                try:
                    yield con
                    con.execute("commit")
                except BaseException:
                    with contextlib.suppress(duckdb.Error, RuntimeError):
                        con.execute("rollback")
                    raise
            except duckdb.Error as exc:
                error = WarehouseOutOfMemory if _out_of_memory(exc) else WarehouseError
                raise error(f"writing to {self.path} failed: {_reason(exc)}") from None
            except RuntimeError as exc:
                if "interrupt" in str(exc).lower():  # Ctrl-C inside DuckDB; rolled back
                    raise KeyboardInterrupt from None
                raise

    def _check_schema(
        self, con: duckdb.DuckDBPyConnection, read_only: bool, *, migrating: bool = False
    ) -> None:
        version = check_schema_version(con, self.path, migrating=migrating)
        if version is None and read_only and not migrating:
            # An empty DuckDB file (a first command stopped before its Bronze committed, or
            # one made elsewhere) has nothing to read: the same line as a missing warehouse.
            raise WarehouseError(f"warehouse {self.path} has no Bronze yet; {self._missing_hint}")
        if version == SCHEMA_VERSION or read_only:
            return
        con.execute("begin")
        for stmt in schema_statements():
            con.execute(stmt)
        con.execute(
            "insert or replace into bronze._meta values ('schema_version', ?)",
            [str(SCHEMA_VERSION)],
        )
        con.execute("commit")

    def transaction(self) -> contextlib.AbstractContextManager[duckdb.DuckDBPyConnection]:
        """One transaction on the held connection (a migration step's): committed when the
        block ends, rolled back when it raises."""
        return self._transaction()

    def write_events(self, batch: EventBatch) -> WriteResult:
        """Write one batch's events, dead letters, positions and load counts in one transaction.

        The run's ``bronze._loads`` row grows with every batch it commits, so a run that is
        killed half way is recorded with exactly the rows it wrote.
        """
        params: dict[str, Any] = {"load_id": batch.load_id}
        loaded = 0
        with self._transaction() as con:
            self._check_expected(con, batch.expected)
            for topic, rows in batch.events.items():
                if rows.num_rows:
                    self._append(con, EVENT_TABLES[topic], rows, params)
                    loaded += rows.num_rows
            if batch.dead_letters.num_rows:
                self._append(
                    con,
                    "dead_letter",
                    batch.dead_letters,
                    {**params, "kind": batch.source_kind},
                    "$kind as _source_kind, ",
                )
            self._write_positions(con, batch.positions, batch.load_id)
            self._count_load(con, batch, loaded)
        return WriteResult(loaded, batch.dead_letters.num_rows)

    @staticmethod
    def _append(
        con: duckdb.DuckDBPyConnection,
        table: str,
        rows: pa.Table,
        params: dict[str, Any],
        extra: str = "",
    ) -> None:
        """One ``insert ... by name`` from Arrow into Bronze ``table``, stamped with the load id
        and commit time. ``extra`` is a constant of this module's callers; values are bound."""
        con.register("_rows", rows)
        try:
            con.execute(
                f"insert into bronze.{bronze_table(table)} by name select {extra}*,"
                " now() as _ingested_at,"
                " $load_id as _load_id from _rows",
                params,
            )
        finally:
            con.unregister("_rows")

    @staticmethod
    def _check_expected(
        con: duckdb.DuckDBPyConnection, expected: dict[tuple[str, int], int | None]
    ) -> None:
        """Refuse the batch unless every position it expects is the one stored.

        One query for all of them (a Kafka batch covers up to every partition: one query each
        cost ~7 ms of CPU per batch)."""
        if not expected:
            return
        rows = con.execute(
            "select source, partition, next_offset from bronze._positions"
            " where source in (select unnest($sources))",
            {"sources": sorted({source for source, _ in expected})},
        ).fetchall()
        stored_at = {(source, partition): offset for source, partition, offset in rows}
        for (source, partition), offset in expected.items():
            stored = stored_at.get((source, partition))
            if stored != offset:
                raise PositionConflict(
                    f"{source} partition {partition}: stored position is {stored}, expected"
                    f" {offset}; another writer loaded these messages"
                )

    @staticmethod
    def _write_positions(
        con: duckdb.DuckDBPyConnection, positions: list[Position], load_id: str
    ) -> None:
        """Store the positions in one statement from Arrow (``executemany`` ran one statement
        per position: ~17 ms of CPU for a Kafka batch of nine partitions)."""
        if not positions:
            return
        latest = list({(p.source, p.partition): p for p in positions}.values())  # last wins
        rows = pa.table(
            {
                "source": pa.array([p.source for p in latest], pa.string()),
                "partition": pa.array([p.partition for p in latest], pa.int32()),
                "next_offset": pa.array([p.next_offset for p in latest], pa.int64()),
                "next_line": pa.array([p.next_line for p in latest], pa.int64()),
                "fingerprint": pa.array([p.fingerprint for p in latest], pa.string()),
            }
        )
        con.register("_position_rows", rows)
        try:
            con.execute(
                "insert or replace into bronze._positions select source, partition, next_offset,"
                " next_line, fingerprint, now(), $load_id from _position_rows",
                {"load_id": load_id},
            )
        finally:
            con.unregister("_position_rows")

    def positions(self, source: str) -> dict[int, Position]:
        """Stored positions of ``source`` by partition."""
        with self._session() as con:
            rows = con.execute(
                "select partition, next_offset, next_line, fingerprint from bronze._positions"
                " where source = ?",
                [source],
            ).fetchall()
        return {
            part: Position(source, part, offset, line, fingerprint)
            for part, offset, line, fingerprint in rows
        }

    def all_positions(self) -> list[Position]:
        """Every stored position, ordered by source and partition."""
        with self._session() as con:
            rows = con.execute(
                "select source, partition, next_offset, next_line, fingerprint"
                " from bronze._positions order by all"
            ).fetchall()
        return [Position(*row) for row in rows]

    def has_reference_load(self, entity: str, content_hash: str, source: str = "") -> bool:
        """True when the latest load of ``entity``, or the latest from ``source``, was a
        snapshot with this content."""
        with self._session() as con:
            row = con.execute(
                LATEST_CONTENT.format(loads="bronze._loads"),
                [content_hash, entity, content_hash, entity, source],
            ).fetchone()
        return bool(row and row[0])

    def write_reference(self, batch: ReferenceBatch) -> None:
        """Append one batch of reference records, its dead letters, positions and load counts
        in one transaction (a run's ``bronze._loads`` row grows with each of its batches)."""
        load = batch.load
        params = {"load_id": load.load_id, "hash": batch.content_hash}
        with self._transaction() as con:
            self._check_expected(con, batch.expected)
            if batch.rows.num_rows:
                self._append(con, batch.entity, batch.rows, params, "$hash as _content_hash, ")
            if batch.dead_letters.num_rows:
                self._append(
                    con,
                    "dead_letter",
                    batch.dead_letters,
                    {"load_id": load.load_id, "kind": batch.source_kind},
                    "$kind as _source_kind, ",
                )
            self._write_positions(con, batch.positions, load.load_id)
            if batch.record_load:
                self._add_load(con, load)

    @staticmethod
    def _add_load(con: duckdb.DuckDBPyConnection, load: LoadRecord) -> None:
        """Add one batch's counts to its run's ``bronze._loads`` row, created by the first."""
        row = con.execute(
            "update bronze._loads set finished_at = now(), rows_read = rows_read + ?,"
            " rows_loaded = rows_loaded + ?, rows_dead_lettered = rows_dead_lettered + ?"
            " where load_id = ?",
            [load.rows_read, load.rows_loaded, load.rows_dead_lettered, load.load_id],
        ).fetchone()
        if row and row[0]:
            return
        con.execute(
            "insert into bronze._loads values (?, ?, ?, ?, now(), now(), ?, ?, ?)",
            [
                load.load_id,
                load.kind,
                load.source,
                load.content_hash,
                load.rows_read,
                load.rows_loaded,
                load.rows_dead_lettered,
            ],
        )

    @staticmethod
    def _count_load(con: duckdb.DuckDBPyConnection, batch: EventBatch, loaded: int) -> None:
        """Add one batch to its run's ``bronze._loads`` row (created by the run's first batch)."""
        dead = batch.dead_letters.num_rows
        read = batch.size if batch.read is None else batch.read
        source = batch.load_source or batch.source_kind
        DuckDBWarehouse._add_load(
            con, LoadRecord(batch.load_id, "events", source, None, read, loaded, dead)
        )

    def describe(self) -> str:
        return f"warehouse {self.path}"

    def dbt_env(self) -> dict[str, str]:
        return {"RETAIL_WAREHOUSE": str(self.path.resolve())}

    def query(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        with self._session() as con:
            return con.execute(sql, list(params)).fetchall()

    def tables(self, schema: str) -> set[str]:
        rows = self.query(
            "select table_name from information_schema.tables where table_schema = ?", [schema]
        )
        return {str(name).lower() for (name,) in rows}

    def counts(self) -> dict[str, int]:
        """Row counts of every Bronze table (``dead_letter``: the rows not redriven)."""
        # The table names are the code's constants (BRONZE_TABLES), checked once more anyway.
        sql = " union all ".join(
            f"select {literal(t)}, count(*) from bronze.{bronze_table(t)}{STILL_DEAD.get(t, '')}"
            for t in BRONZE_TABLES
        )
        with self._session() as con:
            return {name: int(n) for name, n in con.execute(sql).fetchall()}

    def bronze_marks(self) -> list[tuple[str, ...]]:
        return sorted(tuple(str(v) for v in row) for row in self.query(bronze_marks_sql("bronze")))

    def close(self) -> None:
        """Checkpoint (on every core: nothing else runs now) and release the file."""
        if self._con is not None:
            if not (self._read_only or self._joined):
                _hold(self.path.resolve(), -1)
            if not self._joined:  # a joined instance's owner is still at work
                with contextlib.suppress(duckdb.Error):
                    self._con.execute(f"set threads = {int(os.cpu_count() or 1)}")
            self._con.close()
            self._con = None
