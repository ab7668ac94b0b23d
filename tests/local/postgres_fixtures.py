"""Pytest fixtures for tests that need a real PostgreSQL (the reference-data batch source).

``postgres_server`` (session) starts one local cluster for the whole run on a free port and
yields its :class:`LocalPostgres`; ``postgres_db`` gives each test a fresh database of it
(``test_<n>``, owned by the ``retail`` role, schema applied) and yields its DSN, which connects
as that role through the cluster's password file (``?passfile=``: it holds no secret itself, yet
connects as it is); ``private_postgres`` gives a test a cluster of
its own that it may stop, restart or kill. When PostgreSQL cannot start (not installed, say), the
tests are skipped with the reason, except under ``CI=true``, where they fail: CI must never skip
them silently.

Registered as a plugin in tests/conftest.py.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import pytest

from retail_pipeline.errors import PipelineError
from tests.local.kafka_fixtures import free_port
from tests.services import unavailable

if TYPE_CHECKING:
    from retail_pipeline.local.postgres import LocalPostgres

_DATABASES = itertools.count(1)


def postgres_unavailable(reason: str) -> NoReturn:
    """Skip the test because PostgreSQL cannot run here, or fail it under CI."""
    unavailable("PostgreSQL", "PostgreSQL tests", reason)


def start_or_give_up(home: Path) -> LocalPostgres:
    """A started LocalPostgres under ``home`` on a free port, or skip (fail in CI) with why."""
    try:
        from retail_pipeline.local.postgres import LocalPostgres  # needs psycopg
    except PipelineError as exc:
        postgres_unavailable(str(exc))
    server = LocalPostgres(home, port=free_port())
    try:
        server.start()
    except PipelineError as exc:
        with contextlib.suppress(PipelineError, OSError):
            server.destroy()
        postgres_unavailable(str(exc))
    return server


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPostgres]:
    """A cluster shared by the session (its ``retail`` database created and schema applied)."""
    server = start_or_give_up(tmp_path_factory.mktemp("postgres-session"))
    try:
        yield server
    finally:
        server.destroy()


@pytest.fixture
def postgres_db(postgres_server: LocalPostgres) -> Iterator[str]:
    """The DSN of a new, empty database of the session's cluster, with the source schema."""
    if not postgres_server.running():  # a test before this one stopped it
        postgres_server.start()
    name = f"test_{next(_DATABASES)}"
    dsn = postgres_server.create_database(name)
    try:
        yield dsn
    finally:
        with contextlib.suppress(PipelineError):
            postgres_server.drop_database(name)


@pytest.fixture
def private_postgres(tmp_path: Path) -> Iterator[LocalPostgres]:
    """A started cluster for one test only (restart and crash tests), removed afterwards."""
    server = start_or_give_up(tmp_path / "postgres")
    try:
        yield server
    finally:
        server.destroy()
