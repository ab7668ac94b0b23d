"""The pipeline's commands (``cli/pipeline.py``): generate, load, ingest and count on a real
warehouse file; bad event files are one ``error:`` line and leave the warehouse as it was."""

from __future__ import annotations

import json
import re
from pathlib import Path

import duckdb

from retail_pipeline.events.contract import EVENT_TYPES
from retail_pipeline.simulation import GenerationSummary
from tests.accounting import message_lines
from tests.cli.run import bronze_state, cli, nothing_loaded, ok, one_error_line

INGEST_LINE = re.compile(
    r"^read (?P<read>[\d,]+) / loaded (?P<loaded>[\d,]+) / dead-lettered (?P<dead>[\d,]+)"
    r" / skipped (?P<skipped>[\d,]+) already loaded\b"
)
BATCH_LINE = re.compile(
    r"^(?P<entity>customers|products): read (?P<read>[\d,]+) / loaded (?P<loaded>[\d,]+)"
    r" / dead-lettered (?P<dead>[\d,]+) from (?P<path>.+)$"
)


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


def test_ingest_names_each_dead_letter_by_file_and_line(tmp_path: Path) -> None:
    """After the summary, stderr names the first dead letters (file:line: reason, in the order
    of the file, outside text neutralised) and where the rest are."""
    valid = {
        "event_id": "e-ok", "event_type": "order_created", "event_version": 1,
        "event_timestamp": "2026-01-05T00:07:22.922Z",
        "produced_at": "2026-01-05T00:07:23.000Z", "source_system": "web-shop",
        "order_id": "ord_ok", "customer_id": "cus_1", "order_total": 10.0, "currency": "USD",
        "order_status": "created",
        "items": [{"product_id": "prd_1", "quantity": 1, "unit_price": 10.0}],
    }  # fmt: skip

    def event(n: int, **changes: object) -> str:
        return json.dumps({**valid, "event_id": f"e{n}", "order_id": f"ord_{n}", **changes})

    lines = [
        event(1),
        event(2, event_timestamp="2026-02-30T00:00:00Z"),
        "",
        event(4, currency="\x1b[2J\x1b[31mUSD"),
        "[1, 2]",
        event(6, items=[{"product_id": "prd_1", "quantity": 1.5, "unit_price": 10.0}]),
        event(7),
        "{not json",
        event(9, order_total=-1.0),
        event(10, customer_id=None),
    ]
    path = tmp_path / "bad.ndjson"
    path.write_text("\n".join(lines) + "\n")
    warehouse = tmp_path / "wh.duckdb"
    result = cli("ingest", path, warehouse=warehouse, cwd=tmp_path)
    assert ok(result)[-1].startswith("read 9 / loaded 2 / dead-lettered 7 /")
    shown = result.stderr.splitlines()
    assert "\x1b" not in result.stderr
    expected = [
        (2, "event_timestamp: not a real date and time: 2026-02-30T00:00:00Z"),
        (4, r"currency: not an ISO 4217 currency code: '\x1b[2J\x1b[31mUSD'"),
        (5, "Expected object, got array"),
        (6, "items[0].quantity: Expected int, got float"),
        (8, "invalid JSON"),
    ]
    assert len(shown) == len(expected) + 1, result.stderr
    for line, (number, reason) in zip(shown, expected, strict=False):
        assert line.startswith(f"dead letter: {path}:{number}: {reason}"), line
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        (load_id,) = (
            con.execute("select distinct _load_id from bronze.dead_letter").fetchone() or ()
        )
    finally:
        con.close()
    assert shown[-1] == (
        f"... and 2 more dead letter(s): bronze.dead_letter where _load_id = '{load_id}'"
    )


def test_load_batch_names_each_dead_letter_by_record(tmp_path: Path) -> None:
    good = {"product_id": "prd_1", "product_name": "Mug", "category": "Home", "price": 4.5,
            "active": True}  # fmt: skip
    records: list[object] = [
        good, {**good, "product_id": "prd_2", "price": -1}, "x", {**good, "product_id": None},
    ]  # fmt: skip
    path = tmp_path / "products.json"
    path.write_text(json.dumps(records))
    result = cli("load-batch", "--products", path, warehouse=tmp_path / "wh.duckdb", cwd=tmp_path)
    assert ok(result) == [f"products: read 4 / loaded 1 / dead-lettered 3 from {path}"]
    assert result.stderr.splitlines() == [
        f"dead letter: {path}: record 2: price: must not be negative: -1",
        f"dead letter: {path}: record 3: Expected object, got str",
        f"dead letter: {path}: record 4: product_id: Expected str, got null",
    ]
