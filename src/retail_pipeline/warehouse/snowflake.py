"""Bronze on Snowflake: the same tables, transactions and exactly-once rules as the DuckDB file.

The tables are generated from the same definitions as DuckDB's: the contract-derived event and
reference tables of :mod:`retail_pipeline.warehouse.bronze` and the bookkeeping tables of
``schema.sql``, with each type spelt the Snowflake way (:func:`snowflake_type`).

A batch is bulk-loaded, never row by row: each Bronze table's Arrow rows are written to a Parquet
file, the files are PUT to a temporary stage of the session, and one explicit transaction then
runs one ``COPY INTO ... MATCH_BY_COLUMN_NAME`` per table, and only then takes the fence of each
source partition the batch covers, checks the expected positions under it, upserts
``_positions`` and grows the run's ``_loads`` row. A failure anywhere, a stale position
(:class:`~retail_pipeline.warehouse.base.PositionConflict`) included, rolls all of it back.

Concurrent loaders (the members of one consumer group, file and batch loaders beside them) copy
in parallel: Snowflake runs ``INSERT`` and ``COPY`` into one table side by side, and nothing
else is held while they run. The fence is one ``_meta`` row a (source, partition), updated in
the batch's transaction: on Snowflake's standard tables an ``UPDATE`` locks its whole table
until commit (they have no row locks), so the loaders queue on ``_meta`` only for the short
tail (fence, position check and write, ``_loads``, commit), and each decides per source
partition whether its batch is still the next one; on a store with row versions (the DuckDB
behind the emulators) only writers of the same partition meet at all. Every row, position and
load record of a batch carries one ``_ingested_at``, the server's clock when the batch is staged
(DuckDB stamps the start of its transaction; Silver's lookback covers either). Errors reach the
caller as one-line :class:`~retail_pipeline.errors.WarehouseError` s, never as connector
tracebacks.
"""

from __future__ import annotations

import logging
import re
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, suppress
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

from retail_pipeline.errors import WarehouseError
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
from retail_pipeline.warehouse.bronze import Column, bronze_tables
from retail_pipeline.warehouse.bronze import create_statements as bronze_create_statements
from retail_pipeline.warehouse.drivers import snowflake_connector as connector
from retail_pipeline.warehouse.sql import literal, plain_identifier

if TYPE_CHECKING:
    from retail_pipeline.warehouse.redrive import RedriveBatch

SCHEMA = "BRONZE"
STAGE = "RETAIL_PIPELINE_LOAD"
"""The session's temporary stage the batches' Parquet files go through (dropped at logout)."""
CONNECT_DEFAULTS: dict[str, Any] = {
    "login_timeout": 30,
    "network_timeout": 60,
    "session_parameters": {
        # Another loader holding the fences (the tail of its batch) longer than this is an
        # error, not a hang.
        "LOCK_TIMEOUT": 120,
        "CLIENT_OUT_OF_BAND_TELEMETRY_ENABLED": False,
    },
}
"""Defaults under the caller's ``connect_args``: nothing waits for minutes on a dead endpoint."""

_LOCAL_PATH = re.compile(r"[\w./-]+", re.ASCII)
"""What a local path in a ``PUT`` may hold: every client and emulator reads it the same way."""
FENCE_ATTEMPTS = 3
"""Tries of a batch whose fence statement failed (a lock wait past ``LOCK_TIMEOUT`` on
Snowflake; a write-write conflict on an emulator, which fails where Snowflake would wait)."""

log = logging.getLogger(__name__)


_SIMPLE_TYPES = {
    "varchar": "VARCHAR",
    "timestamptz": "TIMESTAMP_TZ",
    "bigint": "NUMBER(19,0)",
    "integer": "NUMBER(10,0)",
    "boolean": "BOOLEAN",
    "json": "VARIANT",
}
_TYPE_WORDS = re.compile(
    r"\b(varchar|timestamptz|bigint|integer|boolean|json|decimal\(\d+,\s*\d+\))(?=[\s,)]|$)"
)
"""A column type in ``schema.sql`` (comments removed), as DuckDB spells it."""


def snowflake_type(sql_type: str) -> str:
    """The Snowflake spelling of a Bronze column type as DuckDB spells it.

    ``decimal(p, s)`` is ``NUMBER(p,s)`` (exact), ``timestamptz`` ``TIMESTAMP_TZ``, and the list of
    ``items`` structs an ``ARRAY`` of objects (its ``unit_price`` stays an exact number).
    """
    if sql_type.startswith("struct(") and sql_type.endswith("[]"):
        return "ARRAY"
    decimal = re.fullmatch(r"decimal\((\d+),\s*(\d+)\)", sql_type)
    if decimal:
        return f"NUMBER({decimal[1]},{decimal[2]})"
    if sql_type not in _SIMPLE_TYPES:
        raise ValueError(f"no Snowflake type for Bronze column type {sql_type!r}")
    return _SIMPLE_TYPES[sql_type]


def _schema_sql() -> list[str]:
    """``schema.sql``'s statements, comments removed (the bookkeeping tables)."""
    text = resources.files("retail_pipeline.warehouse").joinpath("schema.sql").read_text()
    text = re.sub(r"--[^\n]*", "", text).replace("{json}", "json")
    return [" ".join(stmt.split()) for stmt in text.split(";") if stmt.strip()]


def _columns(body: str) -> list[Column]:
    """(name, type, not null) of a ``create table`` body (a primary key is not null); table
    constraints are skipped."""
    columns = []
    for part in re.split(r",(?![^()]*\))", body):
        column = re.match(r"\s*(\w+)\s+(decimal\(\d+,\s*\d+\)|\w+)", part, re.I)
        if column and column[1].lower() != "primary":
            required = "not null" in part.lower() or "primary key" in part.lower()
            columns.append((column[1], column[2], required))
    return columns


def bookkeeping_tables() -> dict[str, list[Column]]:
    """``schema.sql``'s tables (``_meta``, ``dead_letter``, ``_positions``, ``_loads``) and their
    columns, in DuckDB's spelling."""
    tables = {}
    for stmt in _schema_sql():
        match = re.fullmatch(r"create table if not exists bronze\.(\w+) \((.*)\)", stmt, re.I)
        if match:
            tables[match[1]] = _columns(match[2])
    return tables


def create_statements(database: str) -> list[str]:
    """Snowflake DDL for the whole Bronze schema of ``database`` (idempotent)."""
    qualified = f"{database}.{SCHEMA}"
    statements = []
    for stmt in _schema_sql():
        stmt = re.sub(r"\bbronze\b", qualified, stmt, flags=re.I)
        statements.append(_TYPE_WORDS.sub(lambda m: snowflake_type(m[1]), stmt))
    return statements + bronze_create_statements(qualified, snowflake_type)


def all_tables() -> dict[str, list[Column]]:
    """Every Bronze table with its columns (DuckDB spelling), as the DDL creates them."""
    return {**bookkeeping_tables(), **bronze_tables()}


_PLACEHOLDERS = re.compile(r"'(?:[^'\\]|\\.)*'|\$\$.*?\$\$|\"[^\"]*\"|[?%]", re.DOTALL)


def _pyformat(match: re.Match[str]) -> str:
    """``?`` outside quotes becomes ``%s``; every ``%`` is doubled (Python formats it all)."""
    return "%s" if match[0] == "?" else match[0].replace("%", "%%")


class _Cursor:
    """A connector cursor taking ``?`` placeholders, as DuckDB does, on every endpoint.

    The values are bound by the connector on the client (its ``pyformat`` style): snowduck has no
    server-side binding, and real Snowflake and fakesnow take either.
    """

    def __init__(self, cursor: Any):
        self._cursor = cursor

    def execute(self, sql: str, params: Sequence[object] = ()) -> None:
        if params:
            sql = _PLACEHOLDERS.sub(_pyformat, sql)
            self._cursor.execute(sql, tuple(params))
        else:
            self._cursor.execute(sql)

    def fetchall(self) -> list[tuple[Any, ...]]:
        return [tuple(row) for row in self._cursor.fetchall()]

    def fetchone(self) -> tuple[Any, ...]:
        """The next row; every query that calls it returns one."""
        row = self._cursor.fetchone()
        if row is None:
            raise WarehouseError("Snowflake returned no row where one was expected")
        return tuple(row)

    @property
    def rowcount(self) -> int:
        return int(self._cursor.rowcount or 0)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def fence_key(source: str, partition: int) -> str:
    """The ``_meta`` key of the fence of one source partition (``fence:<partition>:<source>``:
    the partition first, so no two (source, partition) pairs share a key)."""
    return f"fence:{partition}:{source}"


class _FenceBusy(Exception):
    """The fence statement failed: the batch is rolled back and tried again (a retry re-checks
    the positions, so a writer that really got there first ends it in PositionConflict)."""


def _staged(rows: pa.Table, constants: Mapping[str, pa.Scalar]) -> pa.Table:
    """``rows`` with the columns every row of the batch shares (load id, time, kind) added."""
    for name, value in constants.items():
        rows = rows.append_column(name, pa.repeat(value, rows.num_rows))
    return rows


REASON_ROWS = 1_000
"""Dead letters whose reason one ``update`` of a redrive rewrites (2 binds each)."""


def _event_tables(
    events: Mapping[str, pa.Table], constants: Mapping[str, pa.Scalar]
) -> dict[str, pa.Table]:
    """Each topic's rows of a batch, staged for its Bronze table (empty topics left out)."""
    return {
        EVENT_TABLES[topic]: _staged(rows, constants)
        for topic, rows in events.items()
        if rows.num_rows
    }


class SnowflakeWarehouse(Closing):
    """Bronze in the ``BRONZE`` schema of a Snowflake database, written like the DuckDB file.

    ``connect_args`` go to ``snowflake.connector.connect`` (account, user, password or private
    key, role, warehouse; host, port and protocol for an emulator) over :data:`CONNECT_DEFAULTS`.
    The schema and its tables are created when missing, unless ``read_only``; the database must
    exist. Queries use ``?`` placeholders, as DuckDB's do. ``migrating`` opens an older Bronze as
    it is, for :mod:`~retail_pipeline.warehouse.migrations` (nothing else may).
    """

    target = "snowflake"

    def __init__(
        self,
        connect_args: Mapping[str, Any],
        *,
        database: str = "RETAIL",
        read_only: bool = False,
        migrating: bool = False,
    ):
        self.database = plain_identifier(database).upper()
        self.account = str(connect_args.get("account", "?"))
        self._read_only = read_only
        self._migrating = migrating
        self.stored_version: int | None = None
        """The Bronze schema version found on opening (None: no Bronze yet)."""
        self._args = {**CONNECT_DEFAULTS, **connect_args}
        self._args["session_parameters"] = {
            **CONNECT_DEFAULTS["session_parameters"],
            **(connect_args.get("session_parameters") or {}),
        }
        self._args |= {"database": self.database, "paramstyle": "pyformat"}
        self._lock = threading.RLock()
        self._fences: set[str] = set()
        """Fence rows known to exist (the pipeline never deletes one)."""
        self._sf = connector()
        try:
            self._con: Any = self._sf.connect(**self._args)
        except (self._sf.Error, OSError, ValueError, TypeError) as exc:
            user = connect_args.get("user", "?")
            raise WarehouseError(
                f"cannot connect to Snowflake account {self.account} as {user}: {_one_line(exc)}"
            ) from None
        try:
            self._open()
        except BaseException:
            self.close()
            raise

    @property
    def bronze(self) -> str:
        """The qualified Bronze schema, ``RETAIL.BRONZE``."""
        return f"{self.database}.{SCHEMA}"

    def describe(self) -> str:
        """Where it is, for messages."""
        return f"Snowflake {self.database} at {self.account}"

    def dbt_env(self) -> dict[str, str]:
        """The ``SNOWFLAKE_*`` variables dbt's ``snowflake`` profile reads, for this warehouse."""
        names = {
            "account": "SNOWFLAKE_ACCOUNT",
            "user": "SNOWFLAKE_USER",
            "password": "SNOWFLAKE_PASSWORD",
            "private_key_file": "SNOWFLAKE_PRIVATE_KEY_PATH",
            "private_key_file_pwd": "SNOWFLAKE_PRIVATE_KEY_PASSPHRASE",
            "role": "SNOWFLAKE_ROLE",
            "warehouse": "SNOWFLAKE_WAREHOUSE",
            "host": "SNOWFLAKE_HOST",
            "port": "SNOWFLAKE_PORT",
            "protocol": "SNOWFLAKE_PROTOCOL",
        }
        env = {var: str(self._args[key]) for key, var in names.items() if self._args.get(key)}
        return env | {"SNOWFLAKE_DATABASE": self.database}

    # -- connection and transactions ---------------------------------------------------------

    def _open(self) -> None:
        with self._cursor("opening") as cur:
            cur.execute(f"use database {self.database}")
            version = self.stored_version = self._schema_version(cur)
            if self._read_only or (self._migrating and version is None):
                return
            if version != SCHEMA_VERSION and not self._migrating:
                for stmt in create_statements(self.database):
                    cur.execute(stmt)
                cur.execute(
                    f"insert into {self.bronze}._meta (key, value) select ?, ? where not exists"
                    f" (select 1 from {self.bronze}._meta where key = ?)",
                    ["schema_version", str(SCHEMA_VERSION), "schema_version"],
                )
            cur.execute(f"use schema {self.bronze}")
            # DDL commits in Snowflake, so the stage is made here, never inside a batch.
            cur.execute(f"create temporary stage if not exists {self.bronze}.{STAGE}")

    def _schema_version(self, cur: _Cursor) -> int | None:
        """The Bronze schema version; refuses one this code must not read (as DuckDB does)."""
        cur.execute(
            f"select count(*) from {self.database}.information_schema.tables"
            " where upper(table_schema) = ? and upper(table_name) = '_META'",
            [SCHEMA],
        )
        if not cur.fetchone()[0]:
            return None
        cur.execute(f"select value from {self.bronze}._meta where key = 'schema_version'")
        rows = cur.fetchall()
        version = int(rows[0][0]) if rows else None
        if version is not None and version > SCHEMA_VERSION:
            raise WarehouseError(
                f"{self.describe()} has Bronze schema version {version}, newer than the"
                f" {SCHEMA_VERSION} this retail-pipeline supports; upgrade retail-pipeline"
            )
        if version is not None and version < SCHEMA_VERSION and not self._migrating:
            raise WarehouseError(
                f"{self.describe()} holds Bronze schema version {version}; this retail-pipeline"
                f" reads version {SCHEMA_VERSION} only: run `retail-pipeline migrate` to upgrade"
                " it in place"
            )
        return version

    @contextmanager
    def _cursor(self, doing: str) -> Iterator[_Cursor]:
        """A cursor; connector errors become one-line WarehouseErrors saying what failed."""
        with self._lock:
            if self._con is None:
                raise WarehouseError(f"{self.describe()} is closed")
            try:
                with self._con.cursor() as cur:
                    yield _Cursor(cur)
            except (self._sf.Error, OSError) as exc:
                raise WarehouseError(
                    f"{doing} {self.describe()} failed: {_one_line(exc)}"
                ) from None

    @contextmanager
    def _transaction(self, doing: str) -> Iterator[_Cursor]:
        """One explicit transaction (``begin``/``commit``; emulators ignore autocommit(False)),
        rolled back when the block raises, PositionConflict and Ctrl-C included."""
        if self._read_only:
            raise WarehouseError(f"{self.describe()} was opened read-only")
        with self._cursor(doing) as cur:
            cur.execute("begin")
            try:
                yield cur
                cur.execute("commit")
            except BaseException:
                with suppress(self._sf.Error, OSError):
                    cur.execute("rollback")
                raise

    def _server_now(self, cur: _Cursor) -> datetime:
        """The server's clock: one ``_ingested_at`` for every row and record of a batch."""
        cur.execute("select current_timestamp()")
        now: datetime = cur.fetchone()[0]
        return now.astimezone(UTC)

    # -- bulk load ---------------------------------------------------------------------------

    def _put(self, cur: _Cursor, tables: Mapping[str, pa.Table]) -> str:
        """Write each table's rows to Parquet and PUT them to the stage; returns the folder."""
        folder = uuid.uuid4().hex
        with tempfile.TemporaryDirectory(prefix="retail-snowflake-") as tmp:
            local = Path(tmp).as_posix()
            if not _LOCAL_PATH.fullmatch(local):  # TMPDIR is the caller's: keep it out of SQL
                raise WarehouseError(
                    f"cannot stage a batch from the temporary folder {local!r}: a PUT needs a"
                    " path of letters, digits, '_', '.', '-' and '/'; set TMPDIR to one"
                )
            for table, rows in tables.items():
                pq.write_table(rows, Path(tmp, f"{bronze_table(table)}.parquet"))
            source = literal(f"file://{local}/*.parquet", "snowflake")
            cur.execute(
                f"put {source} @{self.bronze}.{STAGE}/{folder}/"
                " auto_compress = false overwrite = true"
            )
            results = cur.fetchall()
        uploaded = sum(1 for row in results if str(row[6]).upper() == "UPLOADED")
        if uploaded != len(tables):
            raise WarehouseError(
                f"staging a batch in {self.describe()} failed: {uploaded} of {len(tables)}"
                f" Parquet files uploaded ({results})"
            )
        return folder

    def _copy(
        self, cur: _Cursor, folder: str, table: str, rows: pa.Table, into: str | None = None
    ) -> None:
        """``COPY INTO`` one Bronze table (or the table ``into`` of its shape) from its staged
        Parquet file, columns matched by name (Snowflake converts each Parquet type to the
        column's); the file is purged once loaded.

        The plain form, without a transforming ``SELECT``, is the one every endpoint runs:
        Snowflake, fakesnow and (through :mod:`retail_pipeline.local.snowflake_emulator`) snowduck.
        """
        columns = {name for name, _, _ in all_tables()[bronze_table(table)]}
        unknown = [name for name in rows.column_names if name not in columns]
        if unknown:
            raise WarehouseError(
                f"writing to {self.describe()} failed: {self.bronze}.{table} has no column"
                f" {unknown[0]}"
            )
        target = table if into is None else plain_identifier(into)
        cur.execute(
            f"copy into {self.bronze}.{target} from @{self.bronze}.{STAGE}/{folder}/{table}.parquet"
            " file_format = (type = parquet use_logical_type = true)"
            " match_by_column_name = case_insensitive on_error = abort_statement purge = true"
        )
        results = cur.fetchall()
        loaded = sum(int(row[3]) for row in results if len(row) > 3)
        if loaded != rows.num_rows:
            raise WarehouseError(
                f"writing to {self.describe()} failed: COPY INTO {self.bronze}.{table} loaded"
                f" {loaded} of {rows.num_rows} rows ({results})"
            )

    def _ensure_fences(self, keys: Sequence[str]) -> None:
        """Create the fence rows of ``keys`` that do not exist yet, committed on their own
        (autocommit), before any batch transaction needs them.

        Two loaders creating the same row at once may, on Snowflake (primary keys not enforced),
        make two: harmless, the fence updates both. An emulator that enforces the key fails one
        of them and the connector retries it, when ``not exists`` makes it a no-op.
        """
        missing = [key for key in keys if key not in self._fences]
        if not missing:
            return
        marks = ", ".join("?" * len(missing))
        with self._cursor("writing to") as cur:
            cur.execute(f"select key from {self.bronze}._meta where key in ({marks})", missing)
            present = {str(key) for (key,) in cur.fetchall()}
            absent = [key for key in missing if key not in present]
            if absent:
                rows = " union all ".join(["select ? as key"] * len(absent))
                cur.execute(
                    f"insert into {self.bronze}._meta (key, value) select f.key, '' from ({rows}) f"
                    f" where not exists (select 1 from {self.bronze}._meta m where m.key = f.key)",
                    absent,
                )
        self._fences.update(missing)

    def _fence(self, cur: _Cursor, keys: Sequence[str], load_id: str) -> None:
        """Take the fences of ``keys`` for this transaction: an ``UPDATE`` of their rows (the
        value names the last load that held it), held until commit or rollback.

        Snowflake locks ``_meta`` for it, so another loader's fence waits for this commit and its
        position check then reads what this one committed. The emulators' DuckDB versions rows
        instead: a second writer of the same row fails at once, and is :class:`_FenceBusy`, like
        any failure of this statement. It sets a value (the load id), never ``value = value``, which
        DuckDB does not count as a write: the fence would not fence there.
        """
        try:
            cur.execute(
                f"update {self.bronze}._meta set value = ?"
                f" where key in ({', '.join('?' * len(keys))})",
                [load_id, *keys],
            )
        except self._sf.Error as exc:
            raise _FenceBusy(_one_line(exc)) from None
        if cur.rowcount < len(keys):
            raise WarehouseError(
                f"writing to {self.describe()} failed: {len(keys) - cur.rowcount} of the batch's"
                f" {len(keys)} fence rows are missing from {self.bronze}._meta (deleted while"
                " loading?); the batch was rolled back, run the loader again"
            )

    def _load(
        self,
        tables: Mapping[str, pa.Table],
        fenced: Collection[tuple[str, int]],
        check: Callable[[_Cursor], None],
        record: Callable[[_Cursor], None],
        load_id: str,
    ) -> None:
        """Stage ``tables`` and, in one transaction: ``check(cur)`` (the expected positions; a
        stale batch costs no COPY), copy the tables in, take the fences of the ``fenced`` source
        partitions, ``check(cur)`` again under them and ``record(cur)`` (positions, load record).

        The COPYs run before the fences, so they overlap with other loaders' batches; the fences
        are held only for the tail. A failed fence statement rolls the batch back and tries it
        again (:data:`FENCE_ATTEMPTS`), staged anew (a COPY purged the files it loaded).
        """
        keys = sorted({fence_key(source, partition) for source, partition in fenced})
        self._ensure_fences(keys)
        for attempt in range(1, FENCE_ATTEMPTS + 1):
            try:
                self._load_once(tables, keys, check, record, load_id)
                return
            except _FenceBusy as busy:
                if attempt == FENCE_ATTEMPTS:
                    raise WarehouseError(
                        f"writing to {self.describe()} failed: the fences of the batch's source"
                        f" partitions stayed busy after {attempt} tries ({busy}); the batch was"
                        " rolled back"
                    ) from None
                log.info("fence busy, batch %s rolled back; trying again: %s", load_id, busy)

    def _load_once(
        self,
        tables: Mapping[str, pa.Table],
        keys: Sequence[str],
        check: Callable[[_Cursor], None],
        record: Callable[[_Cursor], None],
        load_id: str,
    ) -> None:
        """One try of :meth:`_load`; logs the COPY and fence intervals (wall clock) at DEBUG."""
        staging = time.time()
        with self._cursor("writing to") as cur:
            folder = self._put(cur, tables) if tables else ""
        try:
            with self._transaction("writing to") as cur:
                check(cur)
                copy_started = time.time()
                for table, rows in tables.items():
                    self._copy(cur, folder, table, rows)
                copy_finished = time.time()
                if keys:
                    self._fence(cur, keys, load_id)
                fenced = time.time()
                check(cur)
                record(cur)
        except BaseException:
            if folder:  # the purge of a failed COPY did not run; best effort, never the cause
                with suppress(WarehouseError), self._cursor("cleaning up") as cur:
                    cur.execute(f"remove @{self.bronze}.{STAGE}/{folder}/")
            raise
        committed = time.time()
        log.debug(
            "batch %s: staged in %.3f s, COPY %.3f s, fence wait %.3f s, fenced to commit %.3f s",
            load_id,
            copy_started - staging,
            copy_finished - copy_started,
            fenced - copy_finished,
            committed - fenced,
            extra={
                "batch_load_id": load_id,
                "batch_rows": sum(rows.num_rows for rows in tables.values()),
                "staging": staging,
                "copy_started": copy_started,
                "copy_finished": copy_finished,
                "fenced": fenced,
                "committed": committed,
            },
        )

    # -- the Warehouse interface -------------------------------------------------------------

    def _stamp(self, load_id: str) -> tuple[datetime, dict[str, pa.Scalar]]:
        """A batch's commit time (the server's clock) and the columns every row of it shares:
        that time as ``_ingested_at`` and ``load_id``."""
        with self._cursor("writing to") as cur:
            now = self._server_now(cur)
        return now, {
            "_ingested_at": pa.scalar(now, pa.timestamp("us", tz="UTC")),
            "_load_id": pa.scalar(load_id, pa.string()),
        }

    def write_events(self, batch: EventBatch) -> WriteResult:
        """Write one batch's events, dead letters, positions and load counts in one transaction.

        The run's ``_loads`` row grows with every batch it commits, so a run that is killed half
        way is recorded with exactly the rows it wrote.
        """
        now, constants = self._stamp(batch.load_id)
        tables = _event_tables(batch.events, constants)
        if batch.dead_letters.num_rows:
            kind = {"_source_kind": pa.scalar(batch.source_kind, pa.string())}
            tables["dead_letter"] = _staged(batch.dead_letters, kind | constants)
        loaded = sum(rows.num_rows for table, rows in tables.items() if table != "dead_letter")

        def record(cur: _Cursor) -> None:
            self._write_positions(cur, batch.positions, batch.load_id, now)
            self._count_load(cur, batch, loaded, now)

        self._load(
            tables,
            _sources(batch.expected, batch.positions),
            lambda cur: self._check_expected(cur, batch.expected),
            record,
            batch.load_id,
        )
        return WriteResult(loaded, batch.dead_letters.num_rows)

    def _check_expected(self, cur: _Cursor, expected: dict[tuple[str, int], int | None]) -> None:
        if not expected:
            return
        sources = sorted({source for source, _ in expected})
        cur.execute(
            f"select source, partition, next_offset from {self.bronze}._positions"
            f" where source in ({', '.join('?' * len(sources))})",
            sources,
        )
        stored = {(source, int(part)): int(offset) for source, part, offset in cur.fetchall()}
        for (source, partition), offset in expected.items():
            found = stored.get((source, partition))
            if found != offset:
                raise PositionConflict(
                    f"{source} partition {partition}: stored position is {found}, expected"
                    f" {offset}; another writer loaded these messages"
                )

    def _write_positions(
        self, cur: _Cursor, positions: list[Position], load_id: str, now: datetime
    ) -> None:
        latest = {(p.source, p.partition): p for p in positions}  # as insert-or-replace would
        if not latest:
            return
        # Insert or replace, as DuckDB does: delete the rows of these partitions, insert anew
        # (one statement each; fakesnow cannot MERGE inside a transaction).
        where = " or ".join(["(source = ? and partition = ?)"] * len(latest))
        cur.execute(
            f"delete from {self.bronze}._positions where {where}",
            [value for key in latest for value in key],
        )
        values = ", ".join(["(?, ?, ?, ?, ?, cast(? as timestamp_tz), ?)"] * len(latest))
        params: list[object] = []
        for p in latest.values():
            params += [p.source, p.partition, p.next_offset, p.next_line, p.fingerprint]
            params += [now.isoformat(), load_id]
        cur.execute(
            f"insert into {self.bronze}._positions"
            " (source, partition, next_offset, next_line, fingerprint, updated_at, load_id)"
            f" values {values}",
            params,
        )

    def _insert_load(self, cur: _Cursor, load: LoadRecord, now: datetime) -> None:
        cur.execute(
            f"insert into {self.bronze}._loads (load_id, kind, source, content_hash, started_at,"
            " finished_at, rows_read, rows_loaded, rows_dead_lettered)"
            " select ?, ?, ?, ?, cast(? as timestamp_tz), cast(? as timestamp_tz), ?, ?, ?",
            [
                load.load_id,
                load.kind,
                load.source,
                load.content_hash,
                now.isoformat(),
                now.isoformat(),
                load.rows_read,
                load.rows_loaded,
                load.rows_dead_lettered,
            ],
        )

    def _count_load(self, cur: _Cursor, batch: EventBatch, loaded: int, now: datetime) -> None:
        """Add one batch to its run's ``_loads`` row (created by the run's first batch)."""
        dead = batch.dead_letters.num_rows
        read = batch.size if batch.read is None else batch.read
        source = batch.load_source or batch.source_kind
        load = LoadRecord(batch.load_id, "events", source, None, read, loaded, dead)
        self._add_load(cur, load, now)

    def _add_load(self, cur: _Cursor, load: LoadRecord, now: datetime) -> None:
        """Add one batch's counts to its run's ``_loads`` row, created by the first."""
        cur.execute(
            f"update {self.bronze}._loads set finished_at = cast(? as timestamp_tz),"
            " rows_read = rows_read + ?, rows_loaded = rows_loaded + ?,"
            " rows_dead_lettered = rows_dead_lettered + ? where load_id = ?",
            [
                now.isoformat(),
                load.rows_read,
                load.rows_loaded,
                load.rows_dead_lettered,
                load.load_id,
            ],
        )
        if not cur.rowcount:
            self._insert_load(cur, load, now)

    def positions(self, source: str) -> dict[int, Position]:
        """Stored positions of ``source`` by partition."""
        rows = self.query(
            f"select partition, next_offset, next_line, fingerprint from {self.bronze}._positions"
            " where source = ?",
            [source],
        )
        return {
            int(part): Position(source, int(part), int(offset), _int(line), fingerprint)
            for part, offset, line, fingerprint in rows
        }

    def all_positions(self) -> list[Position]:
        """Every stored position, ordered by source and partition."""
        rows = self.query(
            f"select source, partition, next_offset, next_line, fingerprint"
            f" from {self.bronze}._positions order by source, partition"
        )
        return [
            Position(source, int(part), int(offset), _int(line), fingerprint)
            for source, part, offset, line, fingerprint in rows
        ]

    def has_reference_load(self, entity: str, content_hash: str, source: str = "") -> bool:
        """True when the latest load of ``entity``, or the latest from ``source``, was a
        snapshot with this content."""
        rows = self.query(
            LATEST_CONTENT.format(loads=f"{self.bronze}._loads"),
            [content_hash, entity, content_hash, entity, source],
        )
        return bool(rows and rows[0][0])

    def write_reference(self, batch: ReferenceBatch) -> None:
        """Append one batch of reference records, its dead letters, positions and load counts
        in one transaction (a run's ``_loads`` row grows with each of its batches)."""
        load = batch.load
        now, constants = self._stamp(load.load_id)
        tables = {}
        if batch.rows.num_rows:
            content_hash = {"_content_hash": pa.scalar(batch.content_hash, pa.string())}
            tables[batch.entity] = _staged(batch.rows, content_hash | constants)
        if batch.dead_letters.num_rows:
            kind = {"_source_kind": pa.scalar(batch.source_kind, pa.string())}
            tables["dead_letter"] = _staged(batch.dead_letters, kind | constants)

        def record(cur: _Cursor) -> None:
            self._write_positions(cur, batch.positions, load.load_id, now)
            if batch.record_load:
                self._add_load(cur, load, now)

        self._load(
            tables,
            _sources(batch.expected, batch.positions),
            lambda cur: self._check_expected(cur, batch.expected),
            record,
            load.load_id,
        )

    def query(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        """Rows of a query with ``?`` placeholders (read Gold, Bronze counts, positions).

        The emulators (fakesnow, snowduck 0.3.0) return a NULL timestamp as 1970-01-01; compare
        such columns with ``is null`` in the query.
        """
        with self._cursor("reading") as cur:
            cur.execute(sql, params)
            return cur.fetchall()

    def tables(self, schema: str) -> set[str]:
        """Lower-cased names of the tables and views in ``schema`` of the database."""
        rows = self.query(
            f"select table_name from {self.database}.information_schema.tables"
            " where upper(table_schema) = upper(?)",
            [schema],
        )
        return {str(name).lower() for (name,) in rows}

    def counts(self) -> dict[str, int]:
        """Row counts of every Bronze table (``dead_letter``: the rows not redriven)."""
        # The table names are the code's constants (BRONZE_TABLES), checked once more anyway.
        sql = " union all ".join(
            f"select {literal(t, 'snowflake')}, count(*) from {self.bronze}.{bronze_table(t)}"
            f"{STILL_DEAD.get(t, '')}"
            for t in BRONZE_TABLES
        )
        return {str(name): int(n) for name, n in self.query(sql)}

    def bronze_marks(self) -> list[tuple[str, ...]]:
        rows = self.query(bronze_marks_sql(self.bronze))
        return sorted(tuple(str(v) for v in row) for row in rows)

    # -- for migrations (warehouse/migrations.py) -------------------------------------------

    def execute(self, sql: str, params: Sequence[object] = ()) -> None:
        """One statement on its own (autocommit: DDL, a migration's bookkeeping)."""
        with self._cursor("migrating") as cur:
            cur.execute(sql, params)

    def transaction(self) -> AbstractContextManager[_Cursor]:
        """One explicit transaction (DML only: DDL would commit it on Snowflake)."""
        return self._transaction("migrating")

    def batches(
        self, sql: str, size: int, params: Sequence[object] = ()
    ) -> Iterator[list[tuple[Any, ...]]]:
        """The rows of a query (``?`` placeholders), ``size`` at a time (the connector streams
        the result, so memory does not grow with the table); other statements may run between
        two batches."""
        with self._lock:
            if self._con is None:
                raise WarehouseError(f"{self.describe()} is closed")
            try:
                with self._con.cursor() as cur:
                    _Cursor(cur).execute(sql, params)
                    while rows := cur.fetchmany(size):
                        yield [tuple(row) for row in rows]
            except (self._sf.Error, OSError) as exc:
                raise WarehouseError(
                    f"migrating {self.describe()} failed: {_one_line(exc)}"
                ) from None

    def redrive_batch(
        self, batch: RedriveBatch, identity: str, check: Callable[[int, int], None]
    ) -> None:
        """One batch of ``retail-pipeline redrive`` (warehouse/redrive.py): its events staged
        and COPYed as the loaders' are, then in the same transaction its dead letters marked
        redriven (``identity``, a constant SQL expression of that module, names each), the
        redrive's ``_loads`` row grown and the changed reasons written. ``check(marked,
        expected)`` raises, rolling all of it back, unless the update marked every dead letter
        of the batch: another redrive got there first."""
        now, constants = self._stamp(batch.load_id)
        tables = _event_tables(batch.events, constants)
        dead = f"{self.bronze}.dead_letter"

        def record(cur: _Cursor) -> None:
            if batch.redriven:
                marks = ", ".join("?" * len(batch.redriven))
                cur.execute(
                    f"update {dead} set redriven_at = cast(? as timestamp_tz), redriven_by = ?"
                    f" where redriven_at is null and {identity} in ({marks})",
                    [now.isoformat(), batch.load_id, *batch.redriven],
                )
                check(cur.rowcount, len(batch.redriven))
                n = len(batch.redriven)
                load = LoadRecord(batch.load_id, "events", "redrive", None, n, n, 0)
                self._add_load(cur, load, now)
            # the changed reasons: one statement per REASON_ROWS, never one per dead letter
            for start in range(0, len(batch.reasons), REASON_ROWS):
                chunk = batch.reasons[start : start + REASON_ROWS]
                rows = ", ".join("(?, ?)" for _ in chunk)
                cur.execute(
                    f"update {dead} set reason = r.column2 from (select column1, column2 from"
                    f" values {rows}) as r where redriven_at is null and {identity} = r.column1",
                    [value for pair in chunk for value in pair],
                )

        self._load(tables, (), lambda cur: None, record, batch.load_id)

    def copy_rows(self, table: str, rows: pa.Table, into: str | None = None) -> None:
        """Stage ``rows`` (columns of Bronze ``table``) as Parquet and ``COPY`` them into
        ``table``, or into ``into`` (a table of its shape), committed on their own."""
        with self._cursor("migrating") as cur:
            folder = self._put(cur, {table: rows})
            self._copy(cur, folder, table, rows, into)

    def create_like(self, table: str, name: str) -> None:
        """``create or replace`` the table ``name`` with Bronze ``table``'s current DDL (empty:
        a rerun starts it over)."""
        head = f"create table if not exists {self.bronze}.{bronze_table(table)} ("
        [ddl] = [s for s in create_statements(self.database) if s.startswith(head)]
        new = f"create or replace table {self.bronze}.{plain_identifier(name)} ("
        self.execute(new + ddl[len(head) :])

    def columns(self, table: str) -> list[str]:
        """Upper-cased column names of ``table`` in the Bronze schema (none: no such table)."""
        rows = self.query(
            f"select column_name from {self.database}.information_schema.columns"
            " where upper(table_schema) = ? and upper(table_name) = upper(?)"
            " order by ordinal_position",
            [SCHEMA, table],
        )
        return [str(name).upper() for (name,) in rows]

    def close(self) -> None:
        """Log out (the session's stage goes with it)."""
        with self._lock:
            if self._con is not None:
                with suppress(Exception):
                    self._con.close()
                self._con = None


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


def _sources(
    expected: Mapping[tuple[str, int], int | None], positions: Sequence[Position]
) -> set[tuple[str, int]]:
    """The source partitions a batch checks or moves: the ones it fences."""
    return {*expected, *((p.source, p.partition) for p in positions)}
