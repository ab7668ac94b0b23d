"""Which file is which: a rewritten file is refused before any read (never resumed inside a
line), a file named twice loads once, a reverted snapshot is applied, and file names that are
not UTF-8 load (stored as escaped text) or fail in one line, never a traceback."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import orjson
import pytest

from retail_pipeline.errors import InputError
from retail_pipeline.ingestion.batch import load_reference
from retail_pipeline.ingestion.files import ingest_files
from retail_pipeline.warehouse.duckdb import DuckDBWarehouse
from tests.messages import PAYMENT

CLI = [sys.executable, "-m", "retail_pipeline.cli"]


def event(n: int) -> bytes:
    return orjson.dumps({**PAYMENT, "event_id": f"e-{n}", "payment_id": f"PAY-{n}"}) + b"\n"


def bronze(wh: DuckDBWarehouse) -> list[tuple[str, int, int]]:
    return wh.con.execute(
        "select event_id, _offset, _source_line from bronze.payment_events order by _offset"
    ).fetchall()


def test_appending_resumes_where_loading_stopped(
    warehouse: DuckDBWarehouse, tmp_path: Path
) -> None:
    path = tmp_path / "ev.ndjson"
    path.write_bytes(b"".join(event(n) for n in range(200)))  # well past the 4 KiB head
    assert ingest_files(warehouse, [path]).loaded == 200
    with path.open("ab") as out:
        out.write(event(200))
    again = ingest_files(warehouse, [path])
    assert (again.read, again.loaded, again.skipped) == (1, 1, 200)


def test_a_rewrite_that_keeps_the_first_bytes_is_refused_before_any_read(
    warehouse: DuckDBWarehouse, tmp_path: Path
) -> None:
    path = tmp_path / "ev.ndjson"
    first = b"".join(event(n) for n in range(200))
    path.write_bytes(first)
    ingest_files(warehouse, [path])
    # Same first 4 KiB, then other (longer) lines: the old offset now falls inside a line.
    head = first[:5000]
    rewritten = head[: head.rindex(b"\n") + 1] + b"".join(
        event(n) + b" " * 7 for n in range(500, 700)
    )
    assert rewritten[:4096] == first[:4096]
    assert len(rewritten) > len(first)
    path.write_bytes(rewritten)
    before = bronze(warehouse)
    with pytest.raises(InputError, match="rewritten since it was loaded") as info:
        ingest_files(warehouse, [path])
    assert "\n" not in str(info.value)
    assert bronze(warehouse) == before
    assert warehouse.counts()["dead_letter"] == 0


def test_a_rewrite_under_a_position_stored_before_tail_fingerprints_is_refused(
    warehouse: DuckDBWarehouse, tmp_path: Path
) -> None:
    """Positions written by older versions hold only the head's hash: the byte before the
    resume point must still end a line."""
    path = tmp_path / "ev.ndjson"
    first = b"".join(event(n) for n in range(200))
    path.write_bytes(first)
    ingest_files(warehouse, [path])
    warehouse.con.execute(
        "update bronze._positions set fingerprint = split_part(fingerprint, ';', 1)"
    )
    path.write_bytes(first[:4096] + b"x" * (len(first) - 4096) + b"\n")
    with pytest.raises(InputError, match="no longer starts a line"):
        ingest_files(warehouse, [path])


def test_gzip_appended_with_a_new_member_resumes_and_a_rewrite_is_refused(
    warehouse: DuckDBWarehouse, tmp_path: Path
) -> None:

    path = tmp_path / "ev.ndjson.gz"
    body = b"".join(event(n) for n in range(100))
    path.write_bytes(gzip.compress(body, mtime=0))
    assert ingest_files(warehouse, [path]).loaded == 100
    with path.open("ab") as out:
        out.write(gzip.compress(event(100), mtime=0))
    assert ingest_files(warehouse, [path]).loaded == 1
    path.write_bytes(gzip.compress(body + event(101) + event(102), mtime=0))
    with pytest.raises(InputError, match=r"rewritten|changed"):
        ingest_files(warehouse, [path])


def test_the_same_file_named_many_ways_loads_once(
    warehouse: DuckDBWarehouse, tmp_path: Path
) -> None:
    path = tmp_path / "ev.ndjson"
    path.write_bytes(event(1) + event(2))
    (tmp_path / "link.ndjson").symlink_to(path)
    os.link(path, tmp_path / "hard.ndjson")
    names = [
        path,
        path,
        tmp_path / "link.ndjson",
        tmp_path / "hard.ndjson",
        tmp_path / "." / "ev.ndjson",
    ]
    summary = ingest_files(warehouse, names)
    assert (summary.read, summary.loaded, summary.files, summary.repeated) == (2, 2, 1, 4)
    assert "4 repeated name(s) of a file already listed, loaded once" in summary.line()
    assert [row[0] for row in bronze(warehouse)] == ["e-1", "e-2"]


def test_the_same_file_twice_on_the_command_line_exits_0(tmp_path: Path) -> None:
    path = tmp_path / "ev.ndjson"
    path.write_bytes(event(1))
    (tmp_path / "link.ndjson").symlink_to(path)
    env = {**os.environ, "RETAIL_WAREHOUSE": str(tmp_path / "wh.duckdb")}
    done = subprocess.run(
        [
            *CLI,
            "ingest",
            str(path),
            str(tmp_path / "link.ndjson"),
            *map(str, tmp_path.glob("*.ndjson")),
        ],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "read 1 / loaded 1" in done.stdout
    assert "Traceback" not in done.stderr


def customers(path: Path, names: dict[str, str]) -> Path:
    records = [
        {
            "customer_id": key,
            "name": name,
            "email": f"{key}@example.com",
            "country": "DE",
            "created_at": "2025-01-01T00:00:00Z",
        }
        for key, name in names.items()
    ]
    path.write_text(json.dumps(records))
    return path


def test_a_reverted_snapshot_is_applied_and_a_resend_of_the_latest_is_not(
    warehouse: DuckDBWarehouse, tmp_path: Path
) -> None:
    a = customers(tmp_path / "a.json", {"C-1": "Ann", "C-2": "Bob"})
    b = customers(tmp_path / "b.json", {"C-1": "Ann Smith", "C-2": "Bob"})
    assert not load_reference(warehouse, "customers", a).skipped
    assert not load_reference(warehouse, "customers", b).skipped
    assert load_reference(warehouse, "customers", b).skipped  # a re-send of the latest
    assert load_reference(warehouse, "customers", a).skipped  # a file already loaded as it is
    reverted = customers(tmp_path / "a-again.json", {"C-1": "Ann", "C-2": "Bob"})
    revert = load_reference(warehouse, "customers", reverted)
    assert not revert.skipped
    assert (revert.read, revert.loaded) == (2, 2)
    # The latest word about C-1 in Bronze (what Silver's SCD2 orders by) is "Ann" again.
    latest = warehouse.con.execute(
        "select name from bronze.customers where customer_id = 'C-1'"
        " order by _ingested_at desc, _load_id desc limit 1"
    ).fetchone()
    assert latest == ("Ann",)
    loads = warehouse.con.execute(
        "select source from bronze._loads where kind = 'customers' order by finished_at, load_id"
    ).fetchall()
    assert [Path(s).name for (s,) in loads] == ["a.json", "b.json", "a-again.json"]
    assert load_reference(warehouse, "customers", reverted).skipped


@pytest.mark.parametrize("name", [b"ev\xff.ndjson", b"ev\\x41\xfe.ndjson"])
def test_a_file_name_that_is_not_utf8_loads(tmp_path: Path, name: bytes) -> None:
    folder = os.fsencode(tmp_path)
    raw = os.path.join(folder, name)
    with open(raw, "wb") as out:
        out.write(event(1) + event(2))
    env = {**os.environ, "RETAIL_WAREHOUSE": str(tmp_path / "wh.duckdb"), "LC_ALL": "C.UTF-8"}
    for _ in range(2):  # the second run resumes from the position stored under that name
        done = subprocess.run(
            [*CLI, "ingest", os.fsdecode(raw)], env=env, capture_output=True, check=False
        )
        assert done.returncode == 0, done.stderr
        assert b"Traceback" not in done.stderr
    assert b"read 0 / loaded 0" in done.stdout
    stored = (
        os.fsencode(tmp_path.resolve()).decode()
        + "/"
        + name.replace(b"\\", b"\\\\").decode("utf-8", "backslashreplace")
    )
    with duckdb.connect(str(tmp_path / "wh.duckdb"), read_only=True) as con:
        files = con.execute("select distinct _source_file from bronze.payment_events").fetchall()
        positions = con.execute("select source, next_offset from bronze._positions").fetchall()
    assert files == [(stored,)]
    assert positions == [(f"file:{stored}", 2 * len(event(1)))]


def test_a_snapshot_name_that_is_not_utf8_loads(tmp_path: Path) -> None:
    raw = os.path.join(os.fsencode(tmp_path), b"cust\xff.json")
    with open(raw, "wb") as out:
        out.write(
            b'[{"customer_id": "C-1", "name": "A", "email": "a@example.com",'
            b' "country": "DE", "created_at": "2025-01-01T00:00:00Z"}]'
        )
    env = {**os.environ, "RETAIL_WAREHOUSE": str(tmp_path / "wh.duckdb")}
    done = subprocess.run(
        [*CLI, "load-batch", "--customers", os.fsdecode(raw)],
        env=env,
        capture_output=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert b"read 1 / loaded 1" in done.stdout
    with duckdb.connect(str(tmp_path / "wh.duckdb"), read_only=True) as con:
        [(stored,)] = con.execute("select _source_file from bronze.customers").fetchall()
    assert stored.endswith("/cust\\xff.json")


def test_a_landing_folder_read_again_loads_nothing_but_a_new_file_with_old_content_does(
    warehouse: DuckDBWarehouse, tmp_path: Path
) -> None:
    """The batch DAG reads every dated snapshot folder each run: a file already loaded as it is
    is a re-send, not a revert; a new day whose content equals an older day's is a revert."""
    days = [tmp_path / f"2026-01-0{n}" for n in (1, 2, 3)]
    for day in days:
        day.mkdir()
    one = customers(days[0] / "customers.json", {"C-1": "Ann"})
    two = customers(days[1] / "customers.json", {"C-1": "Ann Smith"})
    assert not load_reference(warehouse, "customers", one).skipped
    assert not load_reference(warehouse, "customers", two).skipped
    assert load_reference(warehouse, "customers", one).skipped  # the folder read again
    assert load_reference(warehouse, "customers", two).skipped
    three = customers(days[2] / "customers.json", {"C-1": "Ann"})  # day 3 reverts day 2
    assert not load_reference(warehouse, "customers", three).skipped
    for path in (one, two, three):
        assert load_reference(warehouse, "customers", path).skipped
    (count,) = warehouse.con.execute("select count(*) from bronze._loads").fetchone() or (0,)
    assert count == 3
