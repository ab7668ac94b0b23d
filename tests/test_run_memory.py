"""``retail-pipeline run`` on DuckDB: the loader and the builds share one instance and its memory.

A batch the loader commits while a build holds most of ``RETAIL_DUCKDB_MEMORY`` is refused for
memory and rolled back whole. It must be written again once that build has ended, with no new
build starting in between, and ``run`` must go on; a batch refused while no build runs needs more
than the limit by itself and stops the loader with the setting to raise. A build that fails for
any reason is retried and never ends ``run``.

The builds here are stand-ins (a joined connection lowers the instance's memory limit while the
"build" runs), so DuckDB's own out-of-memory error is real and the timing is deterministic.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest

from retail_pipeline.continuous import Pending, RunSummary, _Builder, _Notifying
from retail_pipeline.errors import WarehouseOutOfMemory
from retail_pipeline.ingestion.files import stage_block
from retail_pipeline.simulation import generate
from retail_pipeline.warehouse.base import EventBatch, Position
from retail_pipeline.warehouse.duckdb import DuckDBWarehouse

STARVED = "set memory_limit = '1MB'"
"""What a build holding the instance's memory leaves the loader (a 200-order batch needs more)."""


@pytest.fixture(scope="module")
def batch(tmp_path_factory: pytest.TempPathFactory) -> EventBatch:
    """The order events of a small simulation as one batch, as the file loader makes it."""
    out = tmp_path_factory.mktemp("run-memory-sim")
    generate(out, days=1, orders_per_day=200, seed=11)
    path = out / "events" / "orders.ndjson"
    data = path.read_bytes()
    lines = data.count(b"\n")
    staged = stage_block(data, 0, 1, str(path))
    source = f"file:{path}"
    return EventBatch(
        "run-memory",
        "file",
        staged.events,
        staged.dead_letters,
        [Position(source, 0, len(data), lines + 1, "whole")],
        {(source, 0): None},
        read=lines,
        load_source=str(path),
    )


@pytest.fixture
def warehouse(tmp_path: Path) -> Iterator[tuple[DuckDBWarehouse, duckdb.DuckDBPyConnection]]:
    """A warehouse held as ``run`` holds it, and a connection joined to its instance."""
    wh = DuckDBWarehouse(tmp_path / "run.duckdb")
    joined = duckdb.connect(str(wh.path))
    yield wh, joined
    joined.close()
    wh.close()


def _bronze_rows(joined: duckdb.DuckDBPyConnection) -> int:
    row = joined.execute("select count(*) from bronze.order_events").fetchone()
    assert row is not None
    return int(row[0])


def _wait_for(condition: Any, what: str, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def _loader(
    warehouse: tuple[DuckDBWarehouse, duckdb.DuckDBPyConnection], *, building: bool
) -> tuple[Pending, list[str], _Notifying]:
    """The loader's warehouse of ``run``, its builds' mark and what it prints, with the
    instance's memory taken (by a build running when ``building``, else by nothing)."""
    wh, joined = warehouse
    pending = Pending()
    said: list[str] = []
    loader = _Notifying(wh, pending, said.append)
    if building:
        pending.committed()
        assert pending.take() is not None
    joined.execute(STARVED)
    return pending, said, loader


def test_a_batch_refused_for_a_builds_memory_is_written_once_the_build_ends(
    warehouse: tuple[DuckDBWarehouse, duckdb.DuckDBPyConnection], batch: EventBatch
) -> None:
    joined = warehouse[1]
    pending, said, loader = _loader(warehouse, building=True)  # a build holds the memory
    results: list[Any] = []
    writer = threading.Thread(target=lambda: results.append(loader.write_events(batch)))
    writer.start()
    _wait_for(lambda: said, "the loader to report the rolled-back batch")
    assert "rolled back" in said[0] and f"{batch.read} messages" in said[0]
    time.sleep(0.3)
    assert writer.is_alive(), "the batch was not held back until the build ended"
    assert _bronze_rows(joined) == 0  # rolled back whole
    joined.execute("set memory_limit = '256MB'")
    pending.built()  # the build ends: the batch goes in before any new build may start
    writer.join(20)
    assert not writer.is_alive()
    loaded = sum(table.num_rows for table in batch.events.values())
    assert results[0].loaded == loaded == _bronze_rows(joined)
    assert loader.retried == 1
    assert pending.take() is not None, "the written batch marks Bronze ahead of Gold"


def test_no_build_starts_while_a_refused_batch_waits_and_a_second_refusal_stops_it(
    warehouse: tuple[DuckDBWarehouse, duckdb.DuckDBPyConnection], batch: EventBatch
) -> None:
    joined = warehouse[1]
    pending, said, loader = _loader(warehouse, building=True)
    errors: list[BaseException] = []

    def write() -> None:
        try:
            loader.write_events(batch)
        except BaseException as exc:
            errors.append(exc)

    writer = threading.Thread(target=write)
    writer.start()
    _wait_for(lambda: pending._held, "the loader to hold builds")
    pending.committed()  # more Bronze waits for Gold, yet no build may start
    assert pending.take() is None
    pending.built()  # the build ends, the memory stays short: the batch needs more by itself
    writer.join(20)
    assert not writer.is_alive()
    assert len(errors) == 1 and isinstance(errors[0], WarehouseOutOfMemory), errors
    assert len(said) == 1 and "rolled back" in said[0]  # the first refusal, under the build
    assert _bronze_rows(joined) == 0
    assert pending.take() is not None, "builds go on once the loader lets go"


def test_a_batch_refused_with_no_build_running_stops_the_loader(
    warehouse: tuple[DuckDBWarehouse, duckdb.DuckDBPyConnection], batch: EventBatch
) -> None:
    joined = warehouse[1]
    pending, said, loader = _loader(warehouse, building=False)
    with pytest.raises(WarehouseOutOfMemory, match="RETAIL_DUCKDB_MEMORY"):
        loader.write_events(batch)
    assert said == [] and loader.retried == 0
    assert _bronze_rows(joined) == 0
    assert pending.oldest() is None


def test_a_build_that_raises_is_retried_and_never_ends_run(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    calls: list[float] = []

    class Built:
        success = True
        failures: tuple[Any, ...] = ()

        def line(self) -> str:
            return "dbt build ok"

    def run_transform(*args: Any, **kwargs: Any) -> Built:
        calls.append(time.monotonic())
        if len(calls) == 1:
            raise duckdb.OutOfMemoryException("Out of Memory Error: could not allocate block")
        return Built()

    built: list[int] = []
    second = threading.Event()

    def on_built() -> None:  # what runs after a build (Gold's metrics, the dashboard) may fail
        built.append(1)
        if len(built) == 1:
            raise duckdb.OutOfMemoryException("Out of Memory Error: failed to pin block")
        second.set()

    monkeypatch.setattr("retail_pipeline.transform.run_transform", run_transform)
    pending, stop, summary = Pending(), threading.Event(), RunSummary()
    said: list[str] = []
    builder = _Builder(
        tmp_path / "w.duckdb", None, pending, 0.05, stop, summary, said.append, on_built
    )
    thread = threading.Thread(target=builder.run)
    pending.committed()
    thread.start()
    _wait_for(lambda: built, "a build to succeed after the failed one")
    pending.committed()
    assert second.wait(20), said
    stop.set()
    thread.join(20)
    assert not thread.is_alive() and builder.error is None
    assert (summary.builds, summary.failed_builds) == (3, 1)
    assert "OutOfMemoryException" in said[0] and "could not allocate block" in said[0]
    assert any("after the build" in line and "failed to pin block" in line for line in said)
    assert pending.oldest() is None and not pending.building()
