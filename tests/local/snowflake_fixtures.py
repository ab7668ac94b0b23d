"""Pytest fixtures for tests that need a Snowflake endpoint: emulators over DuckDB.

``fakesnow_server`` (session) runs fakesnow in server mode, a separate process speaking the
Snowflake wire protocol, and yields ``snowflake.connector.connect`` keyword arguments; it is what
the Snowflake loader's tests use (PUT, COPY INTO from Parquet, transactions). ``snowflake_args``
gives a test those arguments with a database of its own. ``snowduck_emulator`` runs the
package's local Snowflake (:mod:`retail_pipeline.local.snowflake_emulator`: snowduck, patched), the
emulator dbt-snowflake builds on and the demo uses.

When an emulator cannot start, the tests are skipped with the reason, except under ``CI=true``,
where they fail: CI must never skip the Snowflake tests silently.

Load it as a plugin (``pytest_plugins`` in the root conftest), or import the fixtures by name.
"""

from __future__ import annotations

import contextlib
import importlib.util
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest

from tests.local.kafka_fixtures import free_port
from tests.services import unavailable

START_TIMEOUT = 60.0
NETWORK_TIMEOUT = 5
"""Seconds the connector retries a failed request. fakesnow answers a statement it cannot run
(a NOT NULL violation, say) with HTTP 500, which the connector retries until this runs out."""


def emulator_unavailable(reason: str) -> NoReturn:
    """Skip the test because Snowflake emulator cannot run here, or fail it under CI."""
    unavailable("Snowflake emulator", "Snowflake tests", reason)


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


@pytest.fixture(scope="session")
def snowduck_emulator(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[dict[str, Any], Any]]:
    """The package's local Snowflake (snowduck, patched), shared by the session: (connect
    arguments, its DuckDB connection, a back door for seeding rows from Arrow). Every session
    shares that one DuckDB connection: one writer at a time (dbt with ``threads: 1``)."""
    from retail_pipeline.errors import PipelineError
    from retail_pipeline.local import snowflake_emulator as emulator

    reason = emulator.available()
    if reason:
        emulator_unavailable(reason)
    with contextlib.ExitStack() as stack:
        try:
            server = stack.enter_context(
                emulator.snowduck_server(tmp_path_factory.mktemp("snowduck-stage"))
            )
        except PipelineError as exc:
            emulator_unavailable(str(exc))
        yield server.connect_args, server.duck
