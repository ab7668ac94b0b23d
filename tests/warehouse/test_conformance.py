"""One suite, every warehouse: what the loaders and the readers rely on, run against DuckDB and
against Snowflake (the fakesnow emulator), both opened through the seam (``open_warehouse``)
exactly as the commands open them.

Covers exactly-once loading and resuming, positions, fencing of a stale writer, the load
records reconciliation reads, reference snapshots, incremental reference loads (API windows)
and the read methods ``answers`` uses.
Implementation details (DDL, Parquet staging, DuckDB's file handling) have suites of their own.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from retail_pipeline.ingestion.api import ApiSource
from retail_pipeline.ingestion.batch import load_reference
from retail_pipeline.ingestion.files import ingest_files
from retail_pipeline.ingestion.incremental import load_changes
from retail_pipeline.local.reference_api import ReferenceApi
from retail_pipeline.simulation import FaultRates, GenerationSummary, generate
from retail_pipeline.warehouse import Warehouse, open_warehouse
from retail_pipeline.warehouse.base import (
    EventBatch,
    LoadRecord,
    Position,
    PositionConflict,
    ReferenceBatch,
)
from retail_pipeline.warehouse.dead_letters import dead_letter_lines
from tests.accounting import message_lines, unaccounted_rows

TARGETS = ["duckdb", "snowflake"]


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> GenerationSummary:
    return generate(
        tmp_path_factory.mktemp("conformance-sim"),
        days=1,
        orders_per_day=40,
        seed=8,
        faults=FaultRates(malformed=0.05),  # some malformed lines (asserted) in 40 orders
    )


@pytest.fixture(params=TARGETS)
def target(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def settings_env(
    target: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """The environment that makes ``open_warehouse()`` open a fresh warehouse of ``target``."""
    monkeypatch.setenv("RETAIL_TARGET", target)
    if target == "duckdb":
        monkeypatch.setenv("RETAIL_WAREHOUSE", str(tmp_path / "wh.duckdb"))
        return
    args: dict[str, Any] = request.getfixturevalue("snowflake_args")
    for name in ("account", "user", "password", "host", "port", "protocol", "database"):
        monkeypatch.setenv(f"SNOWFLAKE_{name.upper()}", str(args[name]))
    monkeypatch.setenv("SNOWFLAKE_LOGIN_TIMEOUT", str(args["network_timeout"]))


@pytest.fixture
def warehouse(settings_env: None) -> Iterator[Warehouse]:
    with open_warehouse() as wh:
        yield wh


def test_ingest_loads_every_line_once_and_resumes(
    warehouse: Warehouse, sim: GenerationSummary
) -> None:
    files = [sim.topics[t].path for t in ("orders", "payments", "shipments")]
    first = ingest_files(warehouse, files, batch_bytes=16 << 10)
    lines = message_lines(files)
    assert (first.read, first.loaded + first.dead_lettered) == (lines, lines)
    assert first.dead_lettered > 0, "the faults include malformed lines"

    again = ingest_files(warehouse, files)
    assert (again.read, again.loaded, again.skipped) == (0, 0, lines)

    counts = warehouse.counts()
    events = counts["order_events"] + counts["payment_events"] + counts["shipment_events"]
    assert (events, counts["dead_letter"]) == (first.loaded, first.dead_lettered)
    assert unaccounted_rows(warehouse) == []
    [(runs, read)] = warehouse.query(
        "select count(*), sum(rows_read) from bronze._loads where kind = 'events'"
    )
    assert (runs, int(read)) == (1, lines), "one run, recorded batch by batch"
    for path in files:
        [position] = warehouse.positions(f"file:{path}").values()
        assert position.next_offset == path.stat().st_size


def test_a_load_names_its_dead_letters(warehouse: Warehouse, tmp_path: Path) -> None:
    """What ``ingest`` prints after its summary: the first dead letters by file and line, in
    the file's order, then how many more and under which load id."""
    bad = [b"{not json", b"[1]", b'"text"', b"null", b"{}", b"7", b"{"]
    path = tmp_path / "bad.ndjson"
    path.write_bytes(b"\n".join(bad) + b"\n")
    summary = ingest_files(warehouse, [path])
    assert summary.dead_lettered == len(bad)
    lines = dead_letter_lines(warehouse, summary.load_id, limit=3)
    assert [line.split(": ", 2)[1] for line in lines[:3]] == [f"{path}:{n}" for n in (1, 2, 3)]
    assert lines[1] == f"dead letter: {path}:2: Expected object, got array"
    assert lines[3] == (
        f"... and 4 more dead letter(s): {warehouse.bronze}.dead_letter"
        f" where _load_id = '{summary.load_id}'"
    )
    assert dead_letter_lines(warehouse, "no-such-load") == []


def test_a_stale_writer_is_fenced_off(warehouse: Warehouse) -> None:
    empty = pa.table({})
    source = "kafka:orders"
    warehouse.write_events(
        EventBatch("run-a", "kafka", {}, empty, [Position(source, 0, 10)], {(source, 0): None})
    )
    before = (warehouse.all_positions(), warehouse.counts())
    # A zombie that still believes the partition is unread.
    with pytest.raises(PositionConflict):
        warehouse.write_events(
            EventBatch("run-z", "kafka", {}, empty, [Position(source, 0, 20)], {(source, 0): None})
        )
    assert (warehouse.all_positions(), warehouse.counts()) == before
    warehouse.write_events(
        EventBatch("run-a", "kafka", {}, empty, [Position(source, 0, 20)], {(source, 0): 10})
    )
    assert warehouse.positions(source) == {0: Position(source, 0, 20)}


def test_positions_round_trip(warehouse: Warehouse) -> None:
    empty = pa.table({})
    kafka = [Position("kafka:payments", p, 7 * p, None, None) for p in range(3)]
    files = [Position("file:/data/x y.ndjson", 0, 4096, 33, "4096:abcd")]
    warehouse.write_events(EventBatch("run-p", "kafka", {}, empty, kafka + files, {}))
    assert warehouse.positions("kafka:payments") == {p.partition: p for p in kafka}
    assert warehouse.all_positions() == files + kafka
    assert warehouse.positions("kafka:nothing") == {}


def test_a_reference_snapshot_loads_once(warehouse: Warehouse, sim: GenerationSummary) -> None:
    first = load_reference(warehouse, "products", sim.products_path)
    again = load_reference(warehouse, "products", sim.products_path)
    assert first.loaded > 0
    assert again.skipped
    assert warehouse.counts()["products"] == first.loaded
    [(kind, rows)] = warehouse.query(
        "select kind, rows_loaded from bronze._loads where kind = ?", ["products"]
    )
    assert (kind, rows) == ("products", first.loaded)


def test_read_methods(warehouse: Warehouse, target: str) -> None:
    assert warehouse.target == target
    assert {"order_events", "dead_letter", "_positions", "_loads"} <= warehouse.tables("bronze")
    assert warehouse.tables("no_such_schema") == set()
    [(answer,)] = warehouse.query("select ? + 1", [41])
    assert answer == 42
    assert warehouse.describe()
    env = warehouse.dbt_env()
    assert env and all(isinstance(v, str) for v in env.values())


def test_incremental_reference_loads_resume_and_are_fenced(warehouse: Warehouse) -> None:
    """The API loader's batches: window positions, a growing load record, a fenced writer."""
    with ReferenceApi() as api:
        stamp = datetime(2026, 3, 1, tzinfo=UTC)
        for i in range(30):
            record = {
                "product_id": f"P{i:03d}",
                "product_name": "Tea",
                "category": "food",
                "price": Decimal("4.10") if i else -1,
                "active": True,
            }
            api.upsert("products", record, updated_at=stamp if i < 20 else None)
        source = ApiSource(api.url, page_size=7)
        first = load_changes(warehouse, source, "products", lag_seconds=0, batch_size=8)
        assert (first.read, first.loaded, first.dead_lettered) == (30, 29, 1)
        assert load_changes(warehouse, source, "products", lag_seconds=0).read == 0
    name = f"api:{api.url}/products"
    [position] = warehouse.positions(name).values()
    assert position.next_offset == 30 and '"until":null' in (position.fingerprint or "")
    [(runs, read, loaded, dead)] = warehouse.query(
        "select count(*), sum(rows_read), sum(rows_loaded), sum(rows_dead_lettered)"
        " from bronze._loads where kind = 'products'"
    )
    assert (runs, int(read), int(loaded), int(dead)) == (1, 30, 29, 1)
    [(kind, key)] = warehouse.query("select _source_kind, _key from bronze.dead_letter")
    assert (kind, key) == ("api", "P000")
    assert unaccounted_rows(warehouse) == []
    before = warehouse.counts()
    stale = ReferenceBatch(
        "products",
        pa.table({}),
        pa.table({}),
        LoadRecord("products-stale", "products", name, None, 0, 0, 0),
        "-",
        positions=[Position(name, 0, 40, None, "{}")],
        expected={(name, 0): 20},
    )
    with pytest.raises(PositionConflict):
        warehouse.write_reference(stale)
    assert warehouse.counts() == before
    assert warehouse.positions(name) == {0: position}
