"""File ingestion: every line ends in Bronze or the dead-letter table exactly once."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import orjson
import pytest

from retail_pipeline.errors import InputError
from retail_pipeline.ingestion.files import ingest_files
from retail_pipeline.warehouse.duckdb import DuckDBWarehouse
from tests.events.reference import reference_reason

EVENT_TABLES = ("order_events", "payment_events", "shipment_events")


def file_lines(path: Path) -> list[tuple[int, int, bytes]]:
    """(byte offset, line number, bytes) of every non-empty line, computed independently."""
    out, offset = [], 0
    for number, line in enumerate(path.read_bytes().split(b"\n"), start=1):
        if line:
            out.append((offset, number, line))
        offset += len(line) + 1
    return out


def landed(wh: DuckDBWarehouse, path: Path) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """(offset, line) of rows from ``path`` in Bronze event tables, and in the dead letters."""
    union = " union all ".join(
        f"select _offset, _source_line from bronze.{t} where _source_file = $f"
        for t in EVENT_TABLES
    )
    good = wh.con.execute(union, {"f": str(path.resolve())}).fetchall()
    bad = wh.con.execute(
        "select _offset, _source_line from bronze.dead_letter where _source_file = $f",
        {"f": str(path.resolve())},
    ).fetchall()
    return sorted(good), sorted(bad)


def is_valid(line: bytes) -> bool:
    """The independent plain-Python reference's verdict."""
    return reference_reason(line) is None


def test_every_line_lands_once_and_reconciles(
    faulted_sim: Path, warehouse: DuckDBWarehouse
) -> None:
    files = sorted((faulted_sim / "events").glob("*.ndjson"))
    summary = ingest_files(warehouse, files, batch_bytes=64 << 10)
    total_good = total_bad = 0
    for path in files:
        lines = file_lines(path)
        good, bad = landed(warehouse, path)
        expected_good = sorted((o, n) for o, n, raw in lines if is_valid(raw))
        expected_bad = sorted((o, n) for o, n, raw in lines if not is_valid(raw))
        assert good == expected_good
        assert bad == expected_bad
        assert len(good) + len(bad) == len(lines)
        assert expected_bad, "the faulted simulation must contain malformed lines"
        total_good += len(good)
        total_bad += len(bad)
    assert (summary.read, summary.loaded, summary.dead_lettered) == (
        total_good + total_bad,
        total_good,
        total_bad,
    )


def test_payload_is_kept_byte_for_byte_and_duplicates_are_identifiable(
    faulted_sim: Path, warehouse: DuckDBWarehouse
) -> None:
    path = faulted_sim / "events" / "payments.ndjson"
    ingest_files(warehouse, [path])
    rows = warehouse.con.execute(
        "select _source_line, event_id, payload::varchar from bronze.payment_events"
    ).fetchall()
    lines = {n: raw for _, n, raw in file_lines(path)}
    for number, event_id, payload in rows:
        assert payload.encode() == lines[number]
        assert orjson.loads(payload)["event_id"] == event_id
    valid_ids = Counter(orjson.loads(raw)["event_id"] for raw in lines.values() if is_valid(raw))
    dupes = warehouse.con.execute(
        "select event_id, count(*) from bronze.payment_events group by 1 having count(*) > 1"
    ).fetchall()
    assert dict(dupes) == {k: v for k, v in valid_ids.items() if v > 1}
    assert dupes, "the faulted simulation must contain duplicate deliveries"


def test_dead_letters_name_file_line_and_reason(
    faulted_sim: Path, warehouse: DuckDBWarehouse
) -> None:
    path = faulted_sim / "events" / "orders.ndjson"
    ingest_files(warehouse, [path])
    lines = {n: raw for _, n, raw in file_lines(path)}
    rows = warehouse.con.execute(
        "select _source_kind, _source_file, _source_line, raw_payload, reason"
        " from bronze.dead_letter"
    ).fetchall()
    assert rows
    for kind, source_file, line, raw, reason in rows:
        assert kind == "file" and source_file == str(path.resolve())
        assert reason and "\n" not in reason
        expected = lines[line]
        assert raw == expected.decode("utf-8", "backslashreplace")


def test_second_run_is_a_no_op(faulted_sim: Path, warehouse: DuckDBWarehouse) -> None:
    files = sorted((faulted_sim / "events").glob("*.ndjson"))
    first = ingest_files(warehouse, files)
    before = warehouse.counts()
    second = ingest_files(warehouse, files)
    assert warehouse.counts() == before
    assert (second.read, second.loaded, second.dead_lettered) == (0, 0, 0)
    assert second.skipped == sum(len(p.read_bytes().split(b"\n")) - 1 for p in files)
    assert first.read > 0


def test_appended_file_resumes_exactly_where_it_stopped(
    faulted_sim: Path, warehouse: DuckDBWarehouse, tmp_path: Path
) -> None:
    source = faulted_sim / "events" / "shipments.ndjson"
    data = source.read_bytes()
    cut = data.index(b"\n", len(data) // 3) + 1
    growing = tmp_path / "shipments.ndjson"
    growing.write_bytes(data[:cut])
    ingest_files(warehouse, [growing], batch_bytes=16 << 10)
    with growing.open("ab") as handle:
        handle.write(data[cut:])
    ingest_files(warehouse, [growing], batch_bytes=16 << 10)
    good, bad = landed(warehouse, growing)
    offsets = [o for o, _ in good + bad]
    assert sorted(offsets) == [o for o, _, _ in file_lines(growing)]


def test_lines_longer_than_the_newline_window_keep_their_offsets_and_numbers(
    warehouse: DuckDBWarehouse, tmp_path: Path
) -> None:
    """Workers read plain files by span; a block whose last 64 KiB hold no newline (a long line
    across it) is read by the streaming reader instead: every line lands once, where it is."""
    from retail_pipeline.ingestion.files import SPAN_WINDOW
    from tests.messages import PAYMENT

    long = orjson.dumps({**PAYMENT, "event_id": "long", "note": "x" * (4 * SPAN_WINDOW)})
    lines = [orjson.dumps({**PAYMENT, "event_id": f"p{i}"}) for i in range(1000)]
    for at in (700, 800, 801, 950):
        lines.insert(at, long)
    lines.insert(300, b"")  # a blank line, skipped but counted
    path = tmp_path / "events.ndjson"
    path.write_bytes(b"\n".join(lines) + b"\n" + lines[0][:10])  # and a line still written
    summary = ingest_files(warehouse, [path], batch_bytes=3 * SPAN_WINDOW, workers=0)
    good, bad = landed(warehouse, path)
    expected = [(o, n) for o, n, raw in file_lines(path) if raw != lines[0][:10]]
    assert sorted(good + bad) == expected
    assert (summary.read, summary.blank, summary.unterminated) == (len(expected), 1, 1)
    stored = warehouse.positions(f"file:{path.resolve()}")[0]
    assert (stored.next_offset, stored.next_line) == (path.stat().st_size - 10, len(lines) + 1)


def test_unterminated_last_line_waits_for_its_newline(
    warehouse: DuckDBWarehouse, tmp_path: Path
) -> None:
    from tests.messages import PAYMENT

    path = tmp_path / "p.ndjson"
    whole = orjson.dumps({**PAYMENT, "event_id": "x"})
    path.write_bytes(orjson.dumps(PAYMENT) + b"\n\n" + whole[:40])  # a writer mid-line
    summary = ingest_files(warehouse, [path])
    assert (summary.read, summary.loaded, summary.dead_lettered) == (1, 1, 0)
    assert summary.unterminated == 1 and "without a newline" in summary.line()
    with path.open("ab") as handle:  # the writer finishes the line
        handle.write(whole[40:] + b"\n")
    summary = ingest_files(warehouse, [path])
    assert (summary.read, summary.loaded, summary.dead_lettered, summary.unterminated) == (
        1,
        1,
        0,
        0,
    )
    good, bad = landed(warehouse, path)
    assert [line for _, line in good] == [1, 3] and bad == []
    payloads = warehouse.con.execute("select payload from bronze.payment_events").fetchall()
    assert sorted(p for (p,) in payloads) == sorted(
        [orjson.dumps(PAYMENT).decode(), whole.decode()]
    )


def test_bom_crlf_and_whitespace_lines(warehouse: DuckDBWarehouse, tmp_path: Path) -> None:
    from tests.messages import PAYMENT, SHIPMENT

    first, second = orjson.dumps(PAYMENT), orjson.dumps(SHIPMENT)
    path = tmp_path / "crlf.ndjson"
    path.write_bytes(b"\xef\xbb\xbf" + first + b"\r\n\r\n \t \r\n" + second + b"\r\n\n")
    summary = ingest_files(warehouse, [path])
    assert (summary.read, summary.loaded, summary.dead_lettered, summary.blank) == (2, 2, 0, 3)
    assert "3 blank lines skipped" in summary.line()
    good, _ = landed(warehouse, path)
    # Byte offsets (the first past the BOM) and line numbers.
    assert good == [(3, 1), (3 + len(first) + 9, 4)]


def test_rewritten_file_is_refused(
    faulted_sim: Path, warehouse: DuckDBWarehouse, tmp_path: Path
) -> None:
    path = tmp_path / "orders.ndjson"
    shutil.copy(faulted_sim / "events" / "orders.ndjson", path)
    ingest_files(warehouse, [path])
    before = warehouse.counts()
    path.write_bytes(b"{}" + path.read_bytes()[2:])
    with pytest.raises(InputError, match="content changed since it was loaded"):
        ingest_files(warehouse, [path])
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(InputError, match="shorter"):
        ingest_files(warehouse, [path])
    assert warehouse.counts() == before


def test_bad_paths_fail_before_anything_is_written(
    faulted_sim: Path, warehouse: DuckDBWarehouse, tmp_path: Path
) -> None:
    good = faulted_sim / "events" / "orders.ndjson"
    with pytest.raises(InputError, match="no such file"):
        ingest_files(warehouse, [good, tmp_path / "missing.ndjson"])
    with pytest.raises(InputError, match="is a directory"):
        ingest_files(warehouse, [good, tmp_path])
    assert sum(warehouse.counts().values()) == 0


def test_a_changed_later_file_stops_the_run_before_anything_is_written(
    warehouse: DuckDBWarehouse, tmp_path: Path
) -> None:
    from tests.messages import PAYMENT, SHIPMENT

    first, second = tmp_path / "a.ndjson", tmp_path / "b.ndjson"
    second.write_bytes(orjson.dumps(SHIPMENT) + b"\n")
    ingest_files(warehouse, [second])
    second.write_bytes(orjson.dumps({**SHIPMENT, "event_id": "other"}) + b"\n")  # rewritten
    first.write_bytes(orjson.dumps(PAYMENT) + b"\n")
    before = warehouse.counts()
    loads = warehouse.con.execute("select count(*) from bronze._loads").fetchone()
    with pytest.raises(InputError, match="content changed"):
        ingest_files(warehouse, [first, second])
    assert warehouse.counts() == before, "a.ndjson must not be loaded by a run that fails"
    assert warehouse.con.execute("select count(*) from bronze._loads").fetchone() == loads
    assert warehouse.positions(f"file:{first.resolve()}") == {}


def test_gzip_ndjson_is_read_and_resumed(warehouse: DuckDBWarehouse, tmp_path: Path) -> None:
    import gzip

    from tests.messages import PAYMENT, SHIPMENT

    lines = [orjson.dumps({**PAYMENT, "event_id": f"p{i}"}) for i in range(50)]
    path = tmp_path / "events.ndjson.gz"
    path.write_bytes(gzip.compress(b"\n".join(lines) + b"\n"))
    summary = ingest_files(warehouse, [path], batch_bytes=1024)
    assert (summary.read, summary.loaded, summary.dead_lettered) == (50, 50, 0)
    stored = warehouse.positions(f"file:{path.resolve()}")[0]
    assert stored.next_offset == sum(len(line) + 1 for line in lines)  # offsets of the NDJSON
    assert ingest_files(warehouse, [path]).read == 0, "a second run reads nothing"
    payloads = warehouse.con.execute("select payload from bronze.payment_events").fetchall()
    assert sorted(p for (p,) in payloads) == sorted(line.decode() for line in lines)
    with path.open("ab") as handle:  # gzip allows appending a member: the file grew
        handle.write(gzip.compress(orjson.dumps(SHIPMENT) + b"\n"))
    assert ingest_files(warehouse, [path]).loaded == 1


@pytest.mark.parametrize(
    ("magic", "kind"),
    [
        (b"\x28\xb5\x2f\xfd", "zstd"),
        (b"BZh91AY", "bzip2"),
        (b"\xfd7zXZ\x00", "xz"),
        (b"PK\x03\x04", "zip"),
    ],
)
def test_other_formats_are_refused_in_one_line(
    warehouse: DuckDBWarehouse, tmp_path: Path, magic: bytes, kind: str
) -> None:
    path = tmp_path / "events.bin"
    path.write_bytes(magic + b"\x00" * 64)
    with pytest.raises(InputError, match=kind):
        ingest_files(warehouse, [path])
    assert set(warehouse.counts().values()) == {0}


def test_a_truncated_gzip_and_a_fifo_are_refused(
    warehouse: DuckDBWarehouse, tmp_path: Path
) -> None:
    import gzip
    import os

    from tests.messages import PAYMENT

    path = tmp_path / "cut.ndjson.gz"
    path.write_bytes(gzip.compress(orjson.dumps(PAYMENT) + b"\n" * 5000)[:-20])
    with pytest.raises(InputError, match="cannot read"):
        ingest_files(warehouse, [path])
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(InputError, match="not a regular file"):
        ingest_files(warehouse, [fifo])  # refused at once: it would otherwise hang
