"""A corrupt warehouse file is named as corrupt by every command, in one line, without waiting."""

from __future__ import annotations

from pathlib import Path

import pytest

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
