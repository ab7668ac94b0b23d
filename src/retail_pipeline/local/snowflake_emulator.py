"""A local Snowflake for the demo and the tests: snowduck's wire server, in a thread.

snowduck (``pip install 'retail-pipeline[emulator]'``) answers Snowflake's HTTP protocol from one
DuckDB database, well enough for dbt-snowflake to build every model, merge incrementals and
snapshots included. The Snowflake connector, dbt and :class:`SnowflakeWarehouse` talk to it as
to an account: nothing in the pipeline knows it is an emulator.

snowduck 0.3.0 has three gaps on the pipeline's path, patched here (the patches only change
what snowduck does, and only once per process):

- Timestamps: a NULL reaches the client as 1970-01-01 (no validity mask), and a fraction of a
  second that floating point does not hold exactly fails the whole result.
- ``PUT`` copies nothing: it looks for the quoted path sqlglot re-renders, and returns no
  per-file status. Here it copies every file the pattern matches into the stage folder and
  answers with Snowflake's result rows.
- ``COPY INTO <table> FROM @stage/... MATCH_BY_COLUMN_NAME = ...`` loads by position and
  answers with DuckDB's count. Here it inserts each Parquet file's columns by name, in the
  caller's transaction, purges the file when asked, and answers with Snowflake's result rows.

snowduck reads its database path once per process, when first imported, and every session
shares its one DuckDB connection: run one writer at a time (dbt with ``threads: 1``).
"""

from __future__ import annotations

import contextlib
import glob
import importlib.util
import os
import re
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from retail_pipeline.errors import PipelineError
from retail_pipeline.settings import environment
from retail_pipeline.warehouse.drivers import snowflake_connector as connector
from retail_pipeline.warehouse.sql import identifier, literal, plain_identifier

START_TIMEOUT = 60.0
DATABASE = "RETAIL"
"""The database the local Snowflake holds, as a deployment's ``SNOWFLAKE_DATABASE`` would."""

_PUT = re.compile(r"\s*put\s+'?file://(?P<source>[^'\s]+)'?\s+'?@(?P<stage>[^'\s]+)'?", re.I)
_COPY = re.compile(
    r"\s*copy\s+into\s+(?P<table>[\w$.]+)\s+from\s+'?@(?P<path>[^'\s(]+)'?(?P<options>.*)",
    re.I | re.S,
)
_MATCH_BY_NAME = re.compile(r"match_by_column_name\s*=\s*'?case_(in)?sensitive", re.I)
_PURGE = re.compile(r"purge\s*=\s*true", re.I)


@dataclass(frozen=True)
class Emulator:
    """A running local Snowflake."""

    connect_args: dict[str, Any]
    """``snowflake.connector.connect`` arguments for it."""
    duck: Any
    """snowduck's DuckDB connection: a back door for seeding tables fast from Arrow."""

    def create_database(self, name: str) -> None:
        """Create database ``name`` if missing, through the wire as a deployment's Terraform
        would."""
        sf = connector()
        try:
            with sf.connect(**self.connect_args) as con, con.cursor() as cur:
                cur.execute(f"create database if not exists {plain_identifier(name)}")
        except sf.Error as exc:
            message = " ".join(str(exc).split())
            raise PipelineError(f"the local Snowflake refused database {name}: {message}") from None

    def environment(self, database: str = DATABASE) -> dict[str, str]:
        """The ``SNOWFLAKE_*`` settings (and dbt's) that point the pipeline at it."""
        return {
            **endpoint_settings(self.connect_args, database),
            "SNOWFLAKE_ROLE": "TRANSFORMER",
            "SNOWFLAKE_WAREHOUSE": "TRANSFORMING",
            # One DuckDB connection behind every session: one dbt thread, no reconnect loops.
            "SNOWFLAKE_THREADS": "1",
            "SNOWFLAKE_CONNECT_RETRIES": "0",
            # dbt's contract checks read column types the emulator reports its own way.
            "RETAIL_DBT_ENFORCE_CONTRACTS": "false",
        }


def endpoint_settings(args: dict[str, Any], database: str) -> dict[str, str]:
    """The ``SNOWFLAKE_*`` settings naming a local endpoint (snowduck's or a fakesnow server's
    ``connect`` arguments) and ``database`` on it: what a ``--target snowflake`` command needs."""
    return {
        "SNOWFLAKE_ACCOUNT": str(args["account"]),
        "SNOWFLAKE_USER": str(args["user"]),
        "SNOWFLAKE_PASSWORD": str(args["password"]),
        "SNOWFLAKE_HOST": str(args["host"]),
        "SNOWFLAKE_PORT": str(args["port"]),
        "SNOWFLAKE_PROTOCOL": str(args["protocol"]),
        "SNOWFLAKE_DATABASE": database,
    }


def available() -> str | None:
    """Why the emulator cannot run here (None: it can)."""
    for module in ("snowduck", "uvicorn", "snowflake.connector"):
        try:
            found = importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:
            found = False
        if not found:
            return (
                f"the local Snowflake needs {module.split('.')[0]}: pip install"
                " 'retail-pipeline[snowflake,emulator]'"
            )
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@contextlib.contextmanager
def snowduck_server(stage_dir: Path, db_path: str = ":memory:") -> Iterator[Emulator]:
    """snowduck's server on a free port of 127.0.0.1, in a thread of this process, patched.

    ``stage_dir`` holds what ``PUT`` uploads. ``db_path`` only counts on the first call in a
    process (snowduck reads it once); later calls share the first call's database.
    """
    reason = available()
    if reason:
        raise PipelineError(reason)
    os.environ.setdefault("SNOWDUCK_DB_PATH", db_path)
    stage_dir.mkdir(parents=True, exist_ok=True)
    connector()  # the Snowflake connector, imported quietly, before snowduck imports it
    import uvicorn
    from snowduck.server import shared
    from snowduck.server.server import app

    _patch()
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="snowduck", daemon=True)
    with environment(SNOWDUCK_STAGE_DIR=str(stage_dir)):
        thread.start()
        deadline = time.monotonic() + START_TIMEOUT
        while thread.is_alive() and not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        try:
            if not server.started:
                raise PipelineError(f"the local Snowflake (snowduck) did not start on port {port}")
            args = {
                "account": "emulator",
                "user": "retail",
                "password": "emulator",
                "host": "127.0.0.1",
                "port": port,
                "protocol": "http",
                "login_timeout": 10,
                "network_timeout": 30,
            }
            yield Emulator(args, shared.shared_connector._duck_conn)
        finally:
            server.should_exit = True
            thread.join(timeout=10)


@contextlib.contextmanager
def local_snowflake(workdir: Path) -> Iterator[Emulator]:
    """A local Snowflake, in memory, with a ``RETAIL`` database, and the ``SNOWFLAKE_*`` settings
    pointing at it for the length of the block; stopped, and the settings restored, after.

    The database is empty on the first call in a process (see :func:`snowduck_server`)."""
    stage_dir = workdir / "stage"
    shutil.rmtree(stage_dir, ignore_errors=True)
    try:
        with snowduck_server(stage_dir) as emulator:
            emulator.create_database(DATABASE)
            with environment(**emulator.environment()):
                yield emulator
    finally:
        shutil.rmtree(stage_dir, ignore_errors=True)


# -- patches ---------------------------------------------------------------------------------


def _patch() -> None:
    """Apply the three patches of the module docstring, once."""
    from snowduck.connector.cursor import Cursor
    from snowduck.server import arrow

    if getattr(Cursor, "retail_patched", False):
        return
    _patch_timestamps(arrow)
    original = Cursor._execute_locked

    def execute(self: Any, command: str, params: Any = None) -> Any:
        put = _PUT.match(command)
        if put:
            return original(self, _put(put["source"], put["stage"]), None)
        copy = _COPY.match(command)
        if copy and _MATCH_BY_NAME.search(copy["options"]):
            return original(self, _copy(self._duck_cur, copy), None)
        return original(self, command, params)

    Cursor._execute_locked = execute
    Cursor.retail_patched = True


def _patch_timestamps(arrow: Any) -> None:
    """snowduck's wire timestamps lose NULLs (no validity mask), assume microseconds, and fail
    on fractions that floating point does not hold exactly; encode them with integers."""
    import numpy as np
    import pyarrow as pa

    per_second = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}

    def timestamp_to_sf_struct(ts: Any) -> Any:
        if isinstance(ts, pa.ChunkedArray):
            ts = ts.combine_chunks()
        if not isinstance(ts.type, pa.TimestampType):
            raise ValueError(f"expected a timestamp column, got {ts.type}")
        unit = per_second[ts.type.unit]
        ticks = ts.cast(pa.int64()).fill_null(0).to_numpy(zero_copy_only=False)
        seconds = np.floor_divide(ticks, unit)
        nanos = (ticks - seconds * unit) * (1_000_000_000 // unit)
        children = [pa.array(seconds, pa.int64()), pa.array(nanos.astype(np.int32), pa.int32())]
        fields = [pa.field("epoch", pa.int64(), False), pa.field("fraction", pa.int32(), False)]
        if ts.type.tz:  # instants, shown in UTC (offset 0, stored as minutes + 1440)
            children.append(pa.array(np.full(len(ts), 1440, np.int32), pa.int32()))
            fields.append(pa.field("timezone", pa.int32(), False))
        mask = ts.is_null() if ts.null_count else None
        return pa.StructArray.from_arrays(children, fields=fields, mask=mask)

    arrow.timestamp_to_sf_struct = timestamp_to_sf_struct


def _stage_root() -> Path:
    """Where snowduck keeps its stages (``SNOWDUCK_STAGE_DIR``, set by :func:`snowduck_server`)."""
    from snowduck.dialect.transforms import stage_root

    return Path(stage_root())


def _put(source: str, stage: str) -> str:
    """Copy the files ``source`` matches into the stage; Snowflake's PUT result as a query."""
    files = sorted(glob.glob(source))
    if not files:
        raise _error(f"File doesn't exist: {source}")
    target = _stage_root() / stage.strip("/")
    target.mkdir(parents=True, exist_ok=True)
    rows = []
    for file in files:
        name = os.path.basename(file)
        shutil.copyfile(file, target / name)
        size, quoted = int(os.path.getsize(file)), literal(name, "snowflake")
        rows.append(
            f"select {quoted} as source, {quoted} as target, {size} as source_size,"
            f" {size} as target_size, 'NONE' as source_compression,"
            " 'NONE' as target_compression, 'UPLOADED' as status, '' as message"
        )
    return " union all ".join(rows)


def _copy(duck: Any, match: re.Match[str]) -> str:
    """Insert each staged Parquet file's columns by name; Snowflake's COPY result as a query."""
    table = match["table"].upper()
    path = _stage_root() / match["path"]
    files = sorted(glob.glob(str(path / "*"))) if path.is_dir() else [str(path)]
    files = [file for file in files if os.path.isfile(file)]
    if not files:
        return "select 'Copy executed with 0 files processed.' as status"
    try:  # as DuckDB resolves the name (only [\w$.] characters: _COPY), in the session's schema
        columns = [row[:2] for row in duck.execute(f"describe {table}").fetchall()]
    except Exception:  # any failure to resolve it is Snowflake's error
        raise _error(f"Table '{table}' does not exist or not authorized.") from None
    rows = []
    for file in files:
        header = duck.execute("select * from read_parquet(?) limit 0", [file]).description
        present = {str(column[0]).upper(): str(column[0]) for column in header}
        names, values = [], []
        for column, data_type in columns:
            source = present.get(str(column).upper())
            if source is None:
                continue
            quoted = identifier(source)
            names.append(identifier(str(column)))
            values.append(f"to_json({quoted})" if data_type == "JSON" else quoted)
        loaded = duck.execute(
            f"insert into {table} ({', '.join(names)})"
            f" select {', '.join(values)} from read_parquet(?)",
            [file],
        ).fetchone()[0]
        if _PURGE.search(match["options"]):
            os.remove(file)
        rows.append(
            f"select {literal(match['path'], 'snowflake')} as file, 'LOADED' as status,"
            f" {int(loaded)} as rows_parsed, {int(loaded)} as rows_loaded, 1 as error_limit,"
            " 0 as errors_seen, null as first_error, null as first_error_line,"
            " null as first_error_character, null as first_error_column_name"
        )
    return " union all ".join(rows)


def _error(message: str) -> Exception:
    error: Exception = connector().errors.ProgrammingError(
        msg=message, errno=1003, sqlstate="42000"
    )
    return error
