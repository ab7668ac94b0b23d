"""Pytest fixtures for tests that need a Snowflake endpoint: emulators over DuckDB.

``fakesnow_server`` (session) runs fakesnow in server mode, a separate process speaking the
Snowflake wire protocol, and yields ``snowflake.connector.connect`` keyword arguments; it is what
the Snowflake loader's tests use (PUT, COPY INTO from Parquet, transactions). ``snowflake_args``
gives a test those arguments with a database of its own. :func:`snowduck_server` runs snowduck,
the emulator dbt-snowflake builds on, in a thread, with its NULL-timestamp bug patched.

When an emulator cannot start, the tests are skipped with the reason, except under ``CI=true``,
where they fail: CI must never skip the Snowflake tests silently.

Load it as a plugin (``pytest_plugins`` in the root conftest), or import the fixtures by name.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest

from tests.ingestion.kafka_fixtures import free_port, in_ci

START_TIMEOUT = 60.0
NETWORK_TIMEOUT = 5
"""Seconds the connector retries a failed request. fakesnow answers a statement it cannot run
(a NOT NULL violation, say) with HTTP 500, which the connector retries until this runs out."""


def emulator_unavailable(reason: str) -> NoReturn:
    """Skip the test because the Snowflake emulator cannot run here, or fail it under CI."""
    message = f"Snowflake emulator unavailable: {reason}"
    if in_ci():
        pytest.fail(f"{message} (CI=true: Snowflake tests must not be skipped)", pytrace=False)
    pytest.skip(message)


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # its parent package is missing
        return False


def _answers(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def connect_args(port: int) -> dict[str, Any]:
    """``snowflake.connector.connect`` arguments for an emulator on 127.0.0.1:``port``."""
    return {
        "account": "emulator",
        "user": "tester",
        "password": "emulator",
        "host": "127.0.0.1",
        "port": port,
        "protocol": "http",
        "login_timeout": 10,
        "network_timeout": NETWORK_TIMEOUT,
    }


@contextlib.contextmanager
def fakesnow_process(log: Path, port: int | None = None) -> Iterator[dict[str, Any]]:
    """A fakesnow server process on 127.0.0.1 (in-memory databases), stopped on exit.

    Yields its connect arguments. Raises RuntimeError, with the end of its log, when it does not
    start. The kernel stops it if the calling thread dies first (util-linux ``setpriv``).
    """
    port = port or free_port()
    if _answers(port):
        raise RuntimeError(f"port {port} is taken by another server")
    setpriv = shutil.which("setpriv")
    command = [
        *([setpriv, "--pdeathsig", "TERM"] if setpriv else []),
        sys.executable,
        "-m",
        "fakesnow",
        "--server",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    with log.open("ab") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not _answers(port):
            if process.poll() is not None or time.monotonic() > deadline:
                tail = log.read_text(errors="replace").strip().splitlines()[-5:]
                raise RuntimeError(
                    f"fakesnow did not start on port {port} (exit code {process.poll()}):"
                    f" {' | '.join(tail)}"
                )
            time.sleep(0.1)
        yield connect_args(port)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)  # fakesnow's server stops on SIGINT
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture(scope="session")
def fakesnow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Connect arguments of a fakesnow server shared by the session (databases in memory)."""
    missing = [name for name in ("fakesnow", "snowflake.connector") if not _installed(name)]
    if missing:
        emulator_unavailable(f"{missing[0]} is not installed: pip install -e '.[dev]'")
    log = tmp_path_factory.mktemp("fakesnow") / "fakesnow.log"
    with contextlib.ExitStack() as stack:
        try:
            args = stack.enter_context(fakesnow_process(log))
        except RuntimeError as exc:
            emulator_unavailable(str(exc))
        yield args


@pytest.fixture
def snowflake_args(fakesnow_server: dict[str, Any]) -> dict[str, Any]:
    """The session's fakesnow arguments plus ``database``, a database of this test's own."""
    return {**fakesnow_server, "database": f"T_{uuid.uuid4().hex[:12].upper()}"}


def _patch_snowduck_null_timestamps() -> None:
    """snowduck 0.3.0 builds its wire timestamps without a validity mask, so every NULL
    TIMESTAMP_NTZ/LTZ/TZ reaches the client as 1970-01-01; keep the NULLs."""
    import pyarrow as pa
    from snowduck.server import arrow

    original = arrow.timestamp_to_sf_struct
    if getattr(original, "keeps_nulls", False):
        return

    def timestamp_to_sf_struct(ts: Any) -> Any:
        if isinstance(ts, pa.ChunkedArray):
            ts = ts.combine_chunks()
        out = original(ts.fill_null(0) if ts.null_count else ts)
        if not ts.null_count:
            return out
        fields = [out.type.field(i) for i in range(out.type.num_fields)]
        children = [out.field(i) for i in range(out.type.num_fields)]
        return pa.StructArray.from_arrays(children, fields=fields, mask=ts.is_null())

    timestamp_to_sf_struct.keeps_nulls = True  # type: ignore[attr-defined]
    arrow.timestamp_to_sf_struct = timestamp_to_sf_struct


@contextlib.contextmanager
def snowduck_server(db_path: str = ":memory:") -> Iterator[tuple[dict[str, Any], Any]]:
    """snowduck's Snowflake-wire server in a thread of this process, NULL timestamps fixed.

    Yields (connect arguments, snowduck's DuckDB connection). The connection is a back door for
    seeding Bronze fast from Arrow (``duck.register('rows', table)``, then ``insert into
    RETAIL.BRONZE.ORDER_EVENTS select ... from rows``, ``to_json(items)`` for the ARRAY column);
    the connector and dbt see the rows at once. Every session shares that one DuckDB connection,
    so run one writer at a time (dbt with ``threads: 1``). snowduck reads its database path once
    per process, when first imported: later calls get the first call's database.
    """
    os.environ.setdefault("SNOWDUCK_DB_PATH", db_path)
    import uvicorn
    from snowduck.server import shared
    from snowduck.server.server import app

    _patch_snowduck_null_timestamps()
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="snowduck", daemon=True)
    thread.start()
    deadline = time.monotonic() + START_TIMEOUT
    while thread.is_alive() and not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        if not server.started:
            raise RuntimeError(f"snowduck did not start on port {port}")
        yield connect_args(port), shared.shared_connector._duck_conn
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="session")
def snowduck_emulator() -> Iterator[tuple[dict[str, Any], Any]]:
    """A snowduck server shared by the session: (connect arguments, its DuckDB connection)."""
    if not _installed("snowduck"):
        emulator_unavailable("snowduck is not installed: pip install -e '.[dev]'")
    with contextlib.ExitStack() as stack:
        try:
            server = stack.enter_context(snowduck_server())
        except RuntimeError as exc:
            emulator_unavailable(str(exc))
        yield server
