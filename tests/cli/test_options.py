"""The options several commands share (``cli/options.py``): every way the ``--warehouse`` can be
unusable, and the flags checked as their settings are, each one ``error:`` line that leaves
every file as it was."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

import duckdb
import pytest

from retail_pipeline.simulation import GenerationSummary
from tests.cli.run import bronze_state, cli, not_utf8, ok, one_error_line


def test_warehouse_is_a_directory(tmp_path: Path, sim: GenerationSummary) -> None:
    folder = tmp_path / "warehouse.duckdb"
    folder.mkdir()
    result = cli("ingest", sim.topics["orders"].path, warehouse=folder, cwd=tmp_path)
    one_error_line(result, str(folder), "directory")
    assert list(folder.iterdir()) == []


def test_warehouse_parent_is_a_file(tmp_path: Path, sim: GenerationSummary) -> None:
    """Works as root too: no permission bits involved, the directory just cannot exist."""
    parent = tmp_path / "not-a-folder"
    parent.write_text("just a file\n")
    warehouse = parent / "warehouse.duckdb"
    for args in (
        ("ingest", sim.topics["orders"].path),
        ("load-batch", "--customers", sim.customers_path),
    ):
        one_error_line(cli(*args, warehouse=warehouse, cwd=tmp_path), str(parent))
    assert parent.read_text() == "just a file\n"


@pytest.mark.skipif(
    os.name != "posix" or os.geteuid() == 0,
    reason="running as root: permission bits do not stop root from writing (os.access is True);"
    " test_warehouse_parent_is_a_file covers an unwritable warehouse location instead",
)
def test_read_only_warehouse(tmp_path: Path, loaded: Path, sim: GenerationSummary) -> None:
    before = bronze_state(loaded)
    folder = loaded.parent
    loaded.chmod(0o444)
    folder.chmod(0o555)
    try:
        result = cli("ingest", sim.topics["payments"].path, warehouse=loaded, cwd=tmp_path)
        line = one_error_line(result, str(loaded))
        assert "permission denied" in line or "read-only" in line
    finally:
        folder.chmod(0o755)
        loaded.chmod(0o644)
    assert bronze_state(loaded) == before


def test_warehouse_locked_by_another_process(
    tmp_path: Path, loaded: Path, sim: GenerationSummary
) -> None:
    before = bronze_state(loaded)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, duckdb\n"
            "con = duckdb.connect(sys.argv[1])\n"
            "print('ready', flush=True)\n"
            "sys.stdin.read()\n"
            "con.close()\n",
            str(loaded),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "ready"
        result = cli("ingest", sim.topics["payments"].path, warehouse=loaded, cwd=tmp_path)
        line = one_error_line(result, str(loaded), "locked")
        assert f"PID {holder.pid}" in line
        one_error_line(cli("counts", warehouse=loaded, cwd=tmp_path), str(loaded), "locked")
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=30)
    assert holder.returncode == 0
    assert bronze_state(loaded) == before


def test_warehouse_from_a_newer_schema_version(tmp_path: Path, sim: GenerationSummary) -> None:
    warehouse = tmp_path / "wh.duckdb"
    ok(cli("load-batch", "--customers", sim.customers_path, warehouse=warehouse, cwd=tmp_path))
    with duckdb.connect(str(warehouse)) as con:
        con.execute("update bronze._meta set value = '99' where key = 'schema_version'")
    before = bronze_state(warehouse)

    for args in (("ingest", sim.topics["orders"].path), ("counts",)):
        result = cli(*args, warehouse=warehouse, cwd=tmp_path)
        one_error_line(result, str(warehouse), "schema version 99")
    assert bronze_state(warehouse) == before
    with duckdb.connect(str(warehouse), read_only=True) as con:
        version = con.execute(
            "select value from bronze._meta where key = 'schema_version'"
        ).fetchone()
    assert version == ("99",), "an old retail-pipeline must not downgrade the schema"


def _sqlite_database(path: Path) -> None:
    with closing(sqlite3.connect(path)) as con:
        con.execute("create table customers (customer_id text)")
        con.commit()


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda p: p.write_text("customer_id,name\ncus_1,Liam\n" * 50), id="text"),
        pytest.param(lambda p: p.write_bytes(b""), id="empty"),
        pytest.param(_sqlite_database, id="sqlite"),
    ],
)
@pytest.mark.parametrize("name", ["warehouse.duckdb", "customers.json"])
@pytest.mark.slow  # 36 CLI processes (six commands on six files): ~30 s in all
def test_warehouse_is_not_a_duckdb_file(
    tmp_path: Path, sim: GenerationSummary, make: Callable[[Path], object], name: str
) -> None:
    """Every command that opens the warehouse refuses another file, whatever its extension
    (DuckDB picks a reader by extension and would misreport a ``.json``)."""
    warehouse = tmp_path / name
    make(warehouse)
    content = warehouse.read_bytes()
    for args in (
        ("ingest", sim.topics["orders"].path),
        ("load-batch", "--products", sim.products_path),
        ("counts",),
        ("status", "--bootstrap", "127.0.0.1:1"),
        ("transform",),
        ("answers",),
    ):
        result = cli(*args, warehouse=warehouse, cwd=tmp_path)
        one_error_line(result, str(warehouse), "not a DuckDB")
    assert warehouse.read_bytes() == content
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]


def test_counts_on_a_missing_warehouse(tmp_path: Path) -> None:
    warehouse = tmp_path / "nowhere.duckdb"
    one_error_line(cli("counts", warehouse=warehouse, cwd=tmp_path), str(warehouse))
    assert not warehouse.exists()


def test_a_directory_as_warehouse_and_a_file_as_output_folder(tmp_path: Path) -> None:
    folder = tmp_path / "folder"
    folder.mkdir()
    for command in ("transform", "answers"):
        one_error_line(cli(command, warehouse=folder, cwd=tmp_path), "is a directory")
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    for out in (blocker, blocker / "sub"):
        result = cli("generate", "--out", out, "--days", "1", warehouse=folder, cwd=tmp_path)
        one_error_line(result, "is a file, expected a folder")


@pytest.mark.parametrize("how", ["--warehouse", "RETAIL_WAREHOUSE"])
def test_a_warehouse_path_that_is_not_utf8_is_one_line(
    how: str, tmp_path: Path, sim: GenerationSummary
) -> None:
    folder = not_utf8(tmp_path, b"wh\xff")
    folder.mkdir()
    # Relative to the commands' working directory: the message shows the whole path, however
    # long the test's tmp_path (under pytest-xdist it is longer, and long paths are shortened).
    warehouse = folder.relative_to(tmp_path) / "warehouse.duckdb"
    commands: list[tuple[str | Path, ...]] = [
        ("ingest", sim.topics["orders"].path),
        ("load-batch", "--customers", sim.customers_path),
        ("counts",),
        ("status",),
        ("answers",),
        ("transform",),
    ]
    for command in commands:
        if how == "--warehouse":
            result = cli(*command, "--warehouse", warehouse, warehouse=tmp_path / "x", cwd=tmp_path)
        else:
            result = cli(*command, warehouse=warehouse, cwd=tmp_path)
        assert result.returncode == 1, command
        line = one_error_line(result, "wh\\udcff", "not valid UTF-8")
        assert line.startswith("error: --warehouse" if how == "--warehouse" else "error: RETAIL_")
    assert list(folder.iterdir()) == [] and not (tmp_path / "x").exists()


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (
            ("ingest", "--kafka", "--bootstrap", "broker"),
            "--bootstrap 'broker': expected host:port",
        ),
        (("ingest", "--kafka", "--topic-prefix", "a b"), "--topic-prefix 'a b': a Kafka topic"),
        (("load-batch", "--api", "http://u:s3cr3t@h/"), "--api 'http://u:***@h/': put no"),
        (("counts", "--warehouse", "w\x1b[2J.duckdb"), "--warehouse 'w\\x1b[2J.duckdb': control"),
    ],
)
def test_flags_are_checked_as_their_settings_are(
    args: tuple[str, ...], needle: str, tmp_path: Path
) -> None:
    result = cli(*args, warehouse=tmp_path / "wh.duckdb", cwd=tmp_path)
    assert result.returncode == 1
    one_error_line(result, needle)
    assert "s3cr3t" not in result.stderr and sorted(tmp_path.iterdir()) == []


UNBOUNDED = {("generate", "--seed"), ("demo", "--seed")}
"""Numeric options any value of which is fine: a seed only picks the simulation."""


def _numeric_options() -> list[tuple[str, str, type]]:
    import typing

    import typer

    from retail_pipeline.cli import app

    found = []

    def walk(command: object, path: str) -> None:
        for name, sub in getattr(command, "commands", {}).items():
            walk(sub, f"{path} {name}".strip())
        if not hasattr(command, "commands"):
            for param in getattr(command, "params", []):
                annotation = param.type_descriptor.annotation
                kinds = [k for k in typing.get_args(annotation) if k is not type(None)]
                kind = (kinds or [annotation])[0]
                if kind in (int, float) and (path, param.opts[0]) not in UNBOUNDED:
                    found.append((path, param.opts[0], kind))

    walk(typer.main.get_command(app), "")
    return found


def test_every_number_option_is_found() -> None:
    options = {(command, flag) for command, flag, _ in _numeric_options()}
    assert {("explain", "--limit"), ("run", "--build-delay"), ("kafka up", "--port")} <= options
    assert len(options) >= 20


@pytest.mark.parametrize(
    ("command", "flag", "kind"),
    _numeric_options(),
    ids=lambda value: value if isinstance(value, str) else "",
)
def test_every_number_option_is_bounded(command: str, flag: str, kind: type) -> None:
    """A huge number (which once overflowed a C integer in DuckDB or the simulator) and, for
    a float, infinity and NaN are one line naming the flag, before the command starts."""
    from typer.testing import CliRunner

    from retail_pipeline.cli import app
    from retail_pipeline.errors import PipelineError

    values = ["99999999999999999999"] + (["inf", "nan"] if kind is float else [])
    for value in values:
        result = CliRunner().invoke(app, [*command.split(), flag, value])
        if value == "nan" and result.exit_code == 2:  # typer's own range check refused it
            assert f"Invalid value for '{flag}'" in result.output, result.output
            continue
        assert isinstance(result.exception, PipelineError), (value, result.output)
        assert str(result.exception).startswith(f"{flag} "), str(result.exception)
        assert "at most" in str(result.exception)
