"""Fixtures for the dbt tests: small faulted simulations loaded into real DuckDB warehouses.

Building a warehouse with dbt costs seconds, so warehouses are session-scoped and shared; a
test that changes one works on its own copy.
"""

from __future__ import annotations

import random
import shutil
from collections.abc import Callable, Iterable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pytest

from retail_pipeline.ingestion.batch import load_reference
from retail_pipeline.ingestion.files import ingest_files
from retail_pipeline.simulation import FaultRates, generate
from retail_pipeline.transform import TransformSummary, run_transform
from retail_pipeline.warehouse import Warehouse
from retail_pipeline.warehouse.duckdb import DuckDBWarehouse

DAYS = 4
ORDERS_PER_DAY = 150
HEAVY_FAULTS = FaultRates(duplicate=0.05, out_of_order=0.1, late=0.03, malformed=0.05, orphan=0.01)
# Columns and tables that record when something was loaded or built, not what the data says.
LOAD_TIME_COLUMNS = {"version_valid_from"}
LOAD_TIME_TABLES = {"build_info", "build_log", "pipeline_freshness"}
HISTORY_TABLES = {"figure_ledger": ("figure, grain, figure_key, figure_value", "where is_current")}
"""Tables of history (the restatement ledger): what builds in another order recorded differs,
the current rows (the published figures) must not."""


@dataclass(frozen=True)
class Simulation:
    path: Path
    seed: int

    @property
    def events(self) -> list[Path]:
        return sorted((self.path / "events").glob("*.ndjson"))

    @property
    def snapshot_days(self) -> list[Path]:
        return sorted((self.path / "snapshots").iterdir())

    @property
    def truth(self) -> Path:
        return self.path / "truth.json"


def simulate(root: Path, seed: int, faults: FaultRates = HEAVY_FAULTS) -> Simulation:
    generate(root, days=DAYS, orders_per_day=ORDERS_PER_DAY, seed=seed, faults=faults)
    return Simulation(root, seed)


def load(
    warehouse: Path | Warehouse,
    *,
    snapshots: Iterable[Path] = (),
    events: Sequence[Path] = (),
) -> None:
    """Append reference snapshot folders and event files to Bronze (a DuckDB file is released
    again after; an open warehouse stays open)."""
    with (
        DuckDBWarehouse(warehouse) if isinstance(warehouse, Path) else nullcontext(warehouse)
    ) as wh:
        for folder in snapshots:
            for entity in ("customers", "products"):
                load_reference(wh, entity, folder / f"{entity}.json")
        if events:
            ingest_files(wh, events)


def transform(warehouse: Path, **kwargs: object) -> TransformSummary:
    summary = run_transform(warehouse, **kwargs)  # type: ignore[arg-type]
    assert summary.success, "\n".join(f"{f.unique_id}: {f.message}" for f in summary.failures)
    return summary


def split_lines(
    files: Sequence[Path], out: Path, parts: int, *, shuffle_seed: int | None
) -> list[list[Path]]:
    """Each event file cut into ``parts`` files (optionally shuffled first), per part."""
    result: list[list[Path]] = [[] for _ in range(parts)]
    for path in files:
        lines = [line for line in path.read_bytes().splitlines(keepends=True) if line.strip()]
        if shuffle_seed is not None:
            random.Random(f"{shuffle_seed}:{path.name}").shuffle(lines)
        size = -(-len(lines) // parts)
        for index in range(parts):
            folder = out / f"part{index}"
            folder.mkdir(parents=True, exist_ok=True)
            target = folder / path.name
            target.write_bytes(b"".join(lines[index * size : (index + 1) * size]))
            result[index].append(target)
    return result


def table_rows(warehouse: Path, schema: str) -> dict[str, list[tuple[object, ...]]]:
    """Every table of ``schema`` as sorted rows (load-time tables and columns left out)."""
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        tables = [
            name
            for (name,) in con.execute(
                "select table_name from information_schema.tables where table_schema = ?"
                " order by table_name",
                [schema],
            ).fetchall()
            if name not in LOAD_TIME_TABLES
        ]
        out = {}
        for table in tables:
            columns = [
                name
                for (name,) in con.execute(
                    "select column_name from information_schema.columns"
                    " where table_schema = ? and table_name = ? order by ordinal_position",
                    [schema, table],
                ).fetchall()
                if name not in LOAD_TIME_COLUMNS and not name.startswith("_")
            ]
            select = ", ".join(f'"{c}"' for c in columns)
            where = ""
            if table in HISTORY_TABLES:  # how it got there differs; where it is must not
                select, where = HISTORY_TABLES[table]
            rows = con.execute(f'select {select} from {schema}."{table}" {where}').fetchall()
            out[table] = sorted(rows, key=repr)
        return out
    finally:
        con.close()


def assert_same_tables(
    left: dict[str, list[tuple[object, ...]]], right: dict[str, list[tuple[object, ...]]]
) -> None:
    """Same tables with exactly the same rows (floats included: Gold is deterministic)."""
    assert left.keys() == right.keys()
    for table in left:
        assert len(left[table]) == len(right[table]), table
        for a, b in zip(left[table], right[table], strict=True):
            assert a == b, (table, a, b)


@pytest.fixture(scope="session")
def simulations(tmp_path_factory: pytest.TempPathFactory) -> Callable[[int], Simulation]:
    """Faulted simulations by seed, generated once per session."""
    cache: dict[int, Simulation] = {}

    def get(seed: int) -> Simulation:
        if seed not in cache:
            cache[seed] = simulate(tmp_path_factory.mktemp(f"sim-{seed}"), seed)
        return cache[seed]

    return get


@pytest.fixture(scope="session")
def built(
    simulations: Callable[[int], Simulation], tmp_path_factory: pytest.TempPathFactory
) -> Callable[[int], Path]:
    """Warehouses with every snapshot and event of a seed loaded at once and `dbt build` run."""
    cache: dict[int, Path] = {}

    def get(seed: int) -> Path:
        if seed not in cache:
            sim = simulations(seed)
            warehouse = tmp_path_factory.mktemp(f"wh-{seed}") / "wh.duckdb"
            load(warehouse, snapshots=sim.snapshot_days, events=sim.events)
            transform(warehouse)
            cache[seed] = warehouse
        return cache[seed]

    return get


@pytest.fixture
def copy_of(tmp_path: Path) -> Callable[[Path], Path]:
    def copy(warehouse: Path) -> Path:
        target = tmp_path / "copy.duckdb"
        shutil.copy(warehouse, target)
        return target

    return copy


def build_log_rows(warehouse: Path) -> int:
    """Rows of ``gold.build_log``: one per build, run or test invocation."""
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        (rows,) = con.execute("select count(*) from gold.build_log").fetchone() or (0,)
    finally:
        con.close()
    return int(rows)
