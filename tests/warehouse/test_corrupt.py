"""A corrupt warehouse file is named as corrupt by every command, in one line, without waiting;
an empty DuckDB file (no Bronze) is named as such by every reader and initialised by a writer."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from retail_pipeline.warehouse import duckdb as duckdb_warehouse
from retail_pipeline.warehouse.duckdb import DuckDBWarehouse
from tests.cli.run import cli, one_error_line


def corrupt_warehouse(path: Path) -> Path:
    DuckDBWarehouse(path).close()
    with path.open("r+b") as handle:  # a damaged block: its checksum no longer matches
        handle.seek(8192)
        handle.write(b"\xff" * 4096)
    return path


@pytest.mark.parametrize(
    "args",
    [
        ["counts"],
        ["ingest", "--from-files", "{events}"],
        ["load-batch", "--products", "{products}"],
        ["status"],
        ["transform"],
        ["answers"],
    ],
)
def test_every_command_names_a_corrupt_warehouse(tmp_path: Path, args: list[str]) -> None:
    path = corrupt_warehouse(tmp_path / "wh.duckdb")
    (tmp_path / "e.ndjson").write_text("{}\n")
    (tmp_path / "p.json").write_text("[]")
    argv = [a.format(events=tmp_path / "e.ndjson", products=tmp_path / "p.json") for a in args]
    line = one_error_line(cli(*argv, warehouse=path, cwd=tmp_path), "corrupt", str(path))
    assert "locked" not in line


def empty_duckdb_file(path: Path) -> Path:
    """A DuckDB file without a table: what a first command leaves when it is stopped after
    DuckDB made the file and before Bronze committed, or a file made by other means."""
    duckdb.connect(str(path)).close()
    return path


@pytest.mark.parametrize(
    "args",
    [["counts"], ["status"], ["redrive", "--dry-run"], ["answers"], ["transform"]],
)
def test_every_reader_names_a_warehouse_without_bronze(tmp_path: Path, args: list[str]) -> None:
    path = empty_duckdb_file(tmp_path / "wh.duckdb")
    one_error_line(cli(*args, warehouse=path, cwd=tmp_path), str(path), "has no Bronze yet")


def test_a_writer_gives_an_empty_file_its_bronze(tmp_path: Path) -> None:
    path = empty_duckdb_file(tmp_path / "wh.duckdb")
    (tmp_path / "e.ndjson").write_text("{}\n")
    result = cli("ingest", tmp_path / "e.ndjson", warehouse=path, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert cli("counts", warehouse=path, cwd=tmp_path).returncode == 0


def test_creating_a_warehouse_stopped_before_bronze_commits_leaves_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "wh.duckdb"

    def interrupted() -> Iterator[str]:
        yield "create schema if not exists bronze"
        raise KeyboardInterrupt

    monkeypatch.setattr(duckdb_warehouse, "schema_statements", interrupted)
    with pytest.raises(KeyboardInterrupt):
        DuckDBWarehouse(path)
    assert sorted(tmp_path.iterdir()) == []
    # a file that was there before is not this open's to remove
    empty_duckdb_file(path)
    with pytest.raises(KeyboardInterrupt):
        DuckDBWarehouse(path)
    assert path.exists()
