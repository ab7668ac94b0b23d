"""The real ``retail-pipeline`` command: summaries on success, one ``error:`` line on bad input.

Every case runs the installed console script in a subprocess, against a warehouse file in
``tmp_path``, and checks that a failed command leaves the warehouse exactly as it was.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import duckdb
import pytest

from retail_pipeline.events.contract import EVENT_TYPES
from retail_pipeline.ingestion.batch import load_reference
from retail_pipeline.ingestion.files import ingest_files
from retail_pipeline.simulation import FaultRates, GenerationSummary, generate
from retail_pipeline.warehouse.duckdb import DuckDBWarehouse
from tests.accounting import message_lines

INGEST_LINE = re.compile(
    r"^read (?P<read>[\d,]+) / loaded (?P<loaded>[\d,]+) / dead-lettered (?P<dead>[\d,]+)"
    r" / skipped (?P<skipped>[\d,]+) already loaded\b"
)
BATCH_LINE = re.compile(
    r"^(?P<entity>customers|products): read (?P<read>[\d,]+) / loaded (?P<loaded>[\d,]+)"
    r" / dead-lettered (?P<dead>[\d,]+) from (?P<path>.+)$"
)


def _command() -> list[str]:
    script = shutil.which("retail-pipeline") or shutil.which(
        "retail-pipeline", path=str(Path(sys.executable).parent)
    )
    return [script] if script else [sys.executable, "-m", "retail_pipeline.cli"]


COMMAND = _command()


def cli(
    *args: str | Path, warehouse: Path, cwd: Path, **env: str
) -> subprocess.CompletedProcess[str]:
    """Run the command with ``RETAIL_WAREHOUSE`` pointing at ``warehouse`` (and ``env`` set)."""
    env = {**os.environ, "RETAIL_WAREHOUSE": str(warehouse), **env}
    return subprocess.run(
        [*COMMAND, *map(str, args)],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=60,
        check=False,
    )


def ok(result: subprocess.CompletedProcess[str]) -> list[str]:
    """The stdout lines of a command that must have succeeded."""
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines, "a command prints at least its summary line"
    return lines


def one_error_line(result: subprocess.CompletedProcess[str], *needles: str) -> str:
    """Assert a clean failure: exit != 0, exactly one ``error:`` line naming every needle."""
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stdout + result.stderr, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    [line] = lines
    assert line.startswith("error:"), line
    for needle in needles:
        assert needle in line, f"{needle!r} not in {line!r}"
    return line


def bronze_state(path: Path) -> dict[str, int] | None:
    """Row counts of every table in the ``bronze`` schema (None when there is no file)."""
    if not path.exists():
        return None
    with duckdb.connect(str(path), read_only=True) as con:
        tables = con.execute(
            "select table_name from information_schema.tables where table_schema = 'bronze'"
            " order by 1"
        ).fetchall()
        state = {}
        for (table,) in tables:
            row = con.execute(f'select count(*) from bronze."{table}"').fetchone()
            state[table] = int(row[0]) if row else -1
        return state


def nothing_loaded(path: Path) -> bool:
    """The warehouse was not created, or holds only its empty schema."""
    state = bronze_state(path)
    return state is None or all(n == 0 for t, n in state.items() if t != "_meta")


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> GenerationSummary:
    """A small simulation (with faults) to feed the commands."""
    return generate(
        tmp_path_factory.mktemp("cli-sim"), days=2, orders_per_day=50, seed=3, faults=FaultRates()
    )


@pytest.fixture
def loaded(tmp_path: Path, sim: GenerationSummary) -> Iterator[Path]:
    """A warehouse file holding the simulation's reference data and order events."""
    path = tmp_path / "wh" / "warehouse.duckdb"
    with DuckDBWarehouse(path) as wh:
        load_reference(wh, "customers", sim.customers_path)
        load_reference(wh, "products", sim.products_path)
        ingest_files(wh, [sim.topics["orders"].path])
    state = bronze_state(path)
    assert state and state["customers"] and state["order_events"]
    yield path


# --- happy path ------------------------------------------------------------------------------


def test_generate_load_ingest_counts(tmp_path: Path) -> None:
    warehouse = tmp_path / "data" / "wh.duckdb"

    sizes = ("--days", "2", "--orders-per-day", "50", "--seed", "9")
    lines = ok(cli("generate", "--out", "sim", *sizes, warehouse=warehouse, cwd=tmp_path))
    assert len(lines) == 1
    assert re.match(r"^simulated 2 days: [\d,]+ orders, [\d,]+ event lines\b", lines[-1])
    sim = tmp_path / "sim"
    events = sorted((sim / "events").glob("*.ndjson"))
    assert [e.name for e in events] == ["orders.ndjson", "payments.ndjson", "shipments.ndjson"]
    assert not warehouse.exists(), "generate does not touch the warehouse"

    customers, products = sim / "customers.json", sim / "products.json"
    lines = ok(
        cli(
            "load-batch",
            "--customers",
            customers,
            "--products",
            products,
            warehouse=warehouse,
            cwd=tmp_path,
        )
    )
    assert len(lines) == 2, "one summary line per file, never wrapped"
    expected = {"customers": customers, "products": products}
    for line in lines:
        m = BATCH_LINE.match(line)
        assert m, line
        records = len(json.loads(expected[m["entity"]].read_bytes()))
        assert (int(m["read"]), int(m["loaded"]), int(m["dead"])) == (records, records, 0)
        assert m["path"] == str(expected[m["entity"]])

    lines = ok(cli("load-batch", "--customers", customers, warehouse=warehouse, cwd=tmp_path))
    assert lines == [
        f"customers: {customers} already loaded (the same content as the latest snapshot), skipped"
    ]

    event_lines = message_lines(events)
    lines = ok(
        cli("ingest", "--from-files", events[0], *events[1:], warehouse=warehouse, cwd=tmp_path)
    )
    m = INGEST_LINE.match(lines[-1])
    assert m, lines[-1]
    read, loaded, dead, skipped = (int(m[k].replace(",", "")) for k in m.groupdict())
    assert (read, skipped) == (event_lines, 0)
    assert read == loaded + dead
    assert dead > 0, "the default simulation has malformed lines"

    lines = ok(cli("ingest", *events, warehouse=warehouse, cwd=tmp_path))
    m = INGEST_LINE.match(lines[-1])
    assert m, lines[-1]
    assert int(m["loaded"]) == 0
    assert int(m["skipped"].replace(",", "")) == event_lines > 0

    lines = ok(cli("counts", warehouse=warehouse, cwd=tmp_path))
    printed = {}
    for line in lines:
        table, n = line.split()
        printed[table] = int(n.replace(",", ""))
    state = bronze_state(warehouse)
    assert state is not None
    assert printed == {
        f"bronze.{t}": state[t]
        for t in (
            "order_events",
            "payment_events",
            "shipment_events",
            "customers",
            "products",
            "dead_letter",
        )
    }
    assert printed["bronze.dead_letter"] == dead
    assert printed["bronze.customers"] == len(json.loads(customers.read_bytes()))
    assert state["_loads"] == 2 + 1, "two snapshots and one ingest run (the rerun wrote nothing)"


def test_schemas_writes_one_file_per_event_type_and_reference_entity(tmp_path: Path) -> None:
    out = tmp_path / "schemas"
    lines = ok(cli("schemas", "--out", out, warehouse=tmp_path / "wh.duckdb", cwd=tmp_path))
    assert len(EVENT_TYPES) == 11
    names = {*EVENT_TYPES, "event", "customer", "product"}
    assert {p.name for p in out.iterdir()} == {f"{n}.schema.json" for n in names}
    for path in out.iterdir():
        schema = json.loads(path.read_text())
        assert isinstance(schema, dict)
        assert schema["$schema"].startswith("https://json-schema.org/")
    assert lines[-1] == f"wrote {len(names)} JSON Schema files to {out}"
    assert not (tmp_path / "wh.duckdb").exists()


# --- bad input files -------------------------------------------------------------------------


def test_ingest_missing_file(tmp_path: Path, loaded: Path) -> None:
    before = bronze_state(loaded)
    missing = tmp_path / "no-such-events.ndjson"
    one_error_line(cli("ingest", missing, warehouse=loaded, cwd=tmp_path), str(missing), "no such")
    assert bronze_state(loaded) == before


def test_ingest_directory(tmp_path: Path, loaded: Path, sim: GenerationSummary) -> None:
    before = bronze_state(loaded)
    folder = sim.out_dir / "events"
    result = cli("ingest", "--from-files", folder, warehouse=loaded, cwd=tmp_path)
    one_error_line(result, str(folder), "directory")
    assert bronze_state(loaded) == before


def test_ingest_with_one_missing_file_loads_none_of_them(
    tmp_path: Path, sim: GenerationSummary
) -> None:
    warehouse = tmp_path / "wh.duckdb"
    missing = tmp_path / "shipments-typo.ndjson"
    present = [sim.topics["orders"].path, sim.topics["payments"].path]
    result = cli("ingest", present[0], missing, present[1], warehouse=warehouse, cwd=tmp_path)
    one_error_line(result, str(missing))
    assert nothing_loaded(warehouse)


def test_ingest_path_with_markup_characters(tmp_path: Path, loaded: Path) -> None:
    """Paths are printed as they are, not read as rich markup."""
    odd = tmp_path / "events[/b][red].ndjson"
    one_error_line(cli("ingest", odd, warehouse=loaded, cwd=tmp_path), str(odd))


def test_ingest_with_no_files(tmp_path: Path) -> None:
    warehouse = tmp_path / "wh.duckdb"
    one_error_line(cli("ingest", warehouse=warehouse, cwd=tmp_path), "nothing to ingest")
    assert not warehouse.exists()


def test_load_batch_with_no_files(tmp_path: Path) -> None:
    warehouse = tmp_path / "wh.duckdb"
    one_error_line(cli("load-batch", warehouse=warehouse, cwd=tmp_path), "nothing to load")
    assert not warehouse.exists()


def test_load_batch_non_json_customers(tmp_path: Path, sim: GenerationSummary) -> None:
    warehouse = tmp_path / "wh.duckdb"
    bad = tmp_path / "customers.csv"
    bad.write_text("customer_id,name,email\ncus_1,Liam,liam@example.com\n")
    result = cli(
        "load-batch",
        "--customers",
        bad,
        "--products",
        sim.products_path,
        warehouse=warehouse,
        cwd=tmp_path,
    )
    one_error_line(result, str(bad), "not a JSON")
    assert not warehouse.exists(), "input is checked before the warehouse is opened"


def test_load_batch_missing_products_loads_no_customers_either(
    tmp_path: Path, loaded: Path
) -> None:
    before = bronze_state(loaded)
    customers = tmp_path / "customers.ndjson"
    customers.write_text(
        '{"customer_id":"cus_9","name":"New","email":"n@example.com","country":"SE",'
        '"created_at":"2026-01-01T00:00:00Z"}\n'
    )
    missing = tmp_path / "products-typo.json"
    result = cli(
        "load-batch",
        "--customers",
        customers,
        "--products",
        missing,
        warehouse=loaded,
        cwd=tmp_path,
    )
    one_error_line(result, str(missing), "no such file")
    assert bronze_state(loaded) == before


def test_load_batch_json_syntax_error_names_the_line(tmp_path: Path) -> None:
    warehouse = tmp_path / "wh.duckdb"
    bad = tmp_path / "products.json"
    bad.write_text('[\n{"product_id": "p1"},\n{"product_id": "p2",}\n]\n')
    result = cli("load-batch", "--products", bad, warehouse=warehouse, cwd=tmp_path)
    one_error_line(result, f"{bad}:3:", "not valid JSON")
    assert not warehouse.exists()


# --- unusable warehouses ---------------------------------------------------------------------


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


def test_version(tmp_path: Path) -> None:
    from importlib.metadata import version

    lines = ok(cli("--version", warehouse=tmp_path / "wh.duckdb", cwd=tmp_path))
    assert lines == [f"retail-pipeline {version('retail-pipeline')}"]


def _commands() -> dict[str, Any]:
    """Every leaf command of the CLI by its name, e.g. ``"kafka up"``."""
    import typer.main

    from retail_pipeline.cli import app

    found: dict[str, Any] = {}

    def walk(command: Any, path: str) -> None:
        for name, sub in getattr(command, "commands", {}).items():
            walk(sub, f"{path} {name}".strip())
        if not hasattr(command, "commands"):
            found[path] = command

    walk(typer.main.get_command(app), "")
    return found


@pytest.mark.parametrize("name", sorted(_commands()))
def test_help_shows_every_option_with_its_text_default_and_environment(name: str) -> None:
    from typer.testing import CliRunner

    from retail_pipeline.cli import app

    result = CliRunner().invoke(app, [*name.split(), "--help"], terminal_width=100)
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())  # undo the wrapping
    options = text.partition(" Options: ")[2]
    assert options and "<" not in options, f"a type placeholder such as <bool> in: {options}"
    for param in _commands()[name].params:
        if param.param_type_name == "option":
            assert param.help, f"{name} {param.opts[0]} has no help text"
            assert " ".join(param.help.split()) in text, f"{param.opts[0]}'s help is mangled"
            assert all(opt in text for opt in param.opts)
    if name == "demo":  # the demo keeps a warehouse of its own
        assert "[default: DIR/warehouse.duckdb; RETAIL_WAREHOUSE is not used]" in text
    elif "--warehouse" in text:
        assert "[env var: RETAIL_WAREHOUSE; default: data/warehouse.duckdb]" in text
    if "--bootstrap" in text:
        assert "[env var: RETAIL_KAFKA_BOOTSTRAP; default: 127.0.0.1:9092]" in text
    if "--topic-prefix" in text:
        assert "[env var: RETAIL_TOPIC_PREFIX]" in text


# --- paths that are not UTF-8, secrets in DSNs, hostile text in usage errors -------------------


def _not_utf8(parent: Path, name: bytes) -> Path:
    """``parent / name`` for a name that is not UTF-8 (as Python sees it: surrogate-escaped)."""
    return parent / os.fsdecode(name)


@pytest.mark.parametrize("how", ["--warehouse", "RETAIL_WAREHOUSE"])
def test_a_warehouse_path_that_is_not_utf8_is_one_line(
    how: str, tmp_path: Path, sim: GenerationSummary
) -> None:
    folder = _not_utf8(tmp_path, b"wh\xff")
    folder.mkdir()
    warehouse = folder / "warehouse.duckdb"
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


def test_output_naming_a_path_that_is_not_utf8_is_printable(tmp_path: Path) -> None:
    """A summary quoting such a path prints it escaped (no UnicodeEncodeError), and escape
    sequences in it never reach the terminal."""
    out_dir = _not_utf8(tmp_path, b"sim\xfe\x1b[31m")
    lines = ok(
        cli("generate", "--days", "1", "--out", out_dir, warehouse=tmp_path / "w", cwd=tmp_path)
    )
    assert "sim\\udcfe?[31m" in lines[-1] or "sim\\udcfe" in lines[-1]
    assert "\x1b" not in "".join(lines)
    assert (out_dir / "truth.json").is_file()
    lines = ok(cli("schemas", "--out", out_dir / "schemas", warehouse=tmp_path / "w", cwd=tmp_path))
    assert "\x1b" not in lines[0] and "\\udcfe" in lines[0]


def _closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port  # nothing listens there now: a connection is refused at once


PASSWORD = "Pa%2 @:w rd%"


@pytest.mark.slow  # load-batch retries a refused connection for about 15 s
@pytest.mark.parametrize(
    "dsn",
    [
        "host=127.0.0.1 port={port} user=retail dbname=retail"
        f" password='{PASSWORD}' connect_timeout=2",
        f"postgresql://retail:{PASSWORD.replace(' ', '%20')}@127.0.0.1:{{port}}/retail",
    ],
    ids=["key-value", "uri"],
)
def test_a_dsn_password_never_prints(dsn: str, tmp_path: Path) -> None:
    dsn = dsn.format(port=_closed_port())
    runs = [
        cli("load-batch", "--postgres", dsn, warehouse=tmp_path / "wh.duckdb", cwd=tmp_path),
        cli("postgres", "seed", "--dsn", dsn, warehouse=tmp_path / "wh.duckdb", cwd=tmp_path),
        cli("load-batch", warehouse=tmp_path / "wh.duckdb", cwd=tmp_path, RETAIL_POSTGRES_DSN=dsn),
    ]
    for result in runs:
        line = one_error_line(result)
        assert result.returncode == 1
        text = result.stdout + result.stderr
        for part in ("Pa%2", "w rd", "w%20rd", "rd%"):
            assert part not in text, line


def test_usage_errors_are_printable_one_line_messages(tmp_path: Path) -> None:
    result = cli("generate", "--days", "x\x1b]0;owned\x07", warehouse=tmp_path / "w", cwd=tmp_path)
    assert result.returncode == 2
    assert "\x1b" not in result.stderr and "\x07" not in result.stderr
    [error] = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert "--days" in error
    result = cli("counts", "--bogus\x1b[2J", warehouse=tmp_path / "w", cwd=tmp_path)
    assert result.returncode == 2 and "\x1b" not in result.stderr
    assert "Traceback" not in result.stderr


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
