"""Shared fixtures: small deterministic simulations and fresh warehouses."""

from __future__ import annotations

import re
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from retail_pipeline import interrupts
from retail_pipeline.simulation import FaultRates, generate
from retail_pipeline.warehouse.duckdb import DuckDBWarehouse

HEAVY_FAULTS = FaultRates(duplicate=0.05, out_of_order=0.1, late=0.03, malformed=0.05, orphan=0.01)


@pytest.fixture(scope="session")
def faulted_sim(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four days of a small shop with many faults of every kind."""
    out = tmp_path_factory.mktemp("sim-faulted")
    generate(out, days=4, orders_per_day=300, seed=11, faults=HEAVY_FAULTS)
    return out


@pytest.fixture(scope="session", autouse=True)
def _lineage_of_the_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Loads and builds append OpenLineage events to ``$RETAIL_LINEAGE_DIR``: in tests, a
    folder of the session's own (session fixtures, Airflow's environment), never
    ``data/lineage/`` of the checkout, and never a developer's ``OPENLINEAGE_URL``."""
    folder = tmp_path_factory.getbasetemp() / "lineage" / "session"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RETAIL_LINEAGE_DIR", str(folder))
        patch.delenv("OPENLINEAGE_URL", raising=False)
        yield folder


@pytest.fixture(scope="session", autouse=True)
def _dbt_artifacts_of_the_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """dbt writes its artifacts and partial-parse state (``RETAIL_DBT_TARGET_DIR``) into a
    folder of the session's own: never ``dbt/target`` of the checkout, and never one that
    another pytest-xdist worker's builds write at the same time. A test that points
    ``RETAIL_DBT_PROJECT_DIR`` at a copy of the project points this at the copy's too."""
    folder = tmp_path_factory.getbasetemp() / "dbt-target"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RETAIL_DBT_TARGET_DIR", str(folder))
        yield folder


@pytest.fixture(autouse=True)
def _no_ctrl_c_outlives_its_test() -> Iterator[None]:
    """A test that sends itself SIGINT leaves the pipeline's memory of it (``interrupts``) set
    and may leave a handler installed: every later build in the same process (an xdist worker
    runs many files) would then abort as if Ctrl-C had been pressed. Each test starts clean."""
    handler = signal.getsignal(signal.SIGINT)
    interrupts.handled()
    yield
    interrupts.handled()
    if handler is not None:  # None: a handler not set from Python, nothing to restore
        signal.signal(signal.SIGINT, handler)


@pytest.fixture(autouse=True)
def _lineage_of_the_test(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> Path:
    """Each test's own lineage folder (made only when something emits), so no test reads
    another's events."""
    name = re.sub(r"[^\w.-]+", "_", request.node.nodeid)[-120:]
    folder = tmp_path_factory.getbasetemp() / "lineage" / name
    monkeypatch.setenv("RETAIL_LINEAGE_DIR", str(folder))
    return folder


@pytest.fixture
def warehouse(tmp_path: Path) -> Iterator[DuckDBWarehouse]:
    wh = DuckDBWarehouse(tmp_path / "wh.duckdb")
    yield wh
    wh.close()


pytest_plugins = [
    "tests.markers",  # marks each test with the services it needs: `make test-fast` leaves them out
    "tests.local.kafka_fixtures",
    "tests.local.snowflake_fixtures",
    "tests.local.postgres_fixtures",
]
