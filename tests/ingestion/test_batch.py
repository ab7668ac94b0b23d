"""Reference snapshots into Bronze: lineage, idempotence, dead letters and all-or-nothing errors."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from retail_pipeline.errors import InputError, PipelineError
from retail_pipeline.ingestion.batch import load_reference, load_snapshot, read_snapshot
from retail_pipeline.simulation import generate
from retail_pipeline.warehouse.duckdb import DuckDBWarehouse

KEYS = {"customers": "customer_id", "products": "product_id"}


def customer(i: int, **changes: Any) -> dict[str, Any]:
    record = {
        "customer_id": f"cus_{i:07d}",
        "name": f"Zoë Ångström {i}",
        "email": f"zoe.{i}@example.com",
        "country": "SE",
        "created_at": "2024-01-06T06:56:51.332Z",
    }
    return {**record, **changes}


def product(i: int, **changes: Any) -> dict[str, Any]:
    record = {
        "product_id": f"prd_{i:04d}",
        "product_name": f"Willow T-Shirt {i}",
        "category": "Clothing",
        "price": 74.99,
        "active": True,
    }
    return {**record, **changes}


RECORDS: dict[str, Callable[..., dict[str, Any]]] = {"customers": customer, "products": product}


def write_array(path: Path, records: list[Any]) -> Path:
    """A JSON array with one record per line, like the simulator writes."""
    body = ",\n".join(json.dumps(r, ensure_ascii=False) for r in records)
    path.write_text(f"[\n{body}\n]\n", encoding="utf-8")
    return path


def write_ndjson(path: Path, lines: list[bytes]) -> Path:
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def all_counts(wh: DuckDBWarehouse) -> dict[str, int]:
    """Row counts of every Bronze table, plus the load log."""
    loads = wh.con.execute("select count(*) from bronze._loads").fetchone()
    return {**wh.counts(), "_loads": loads[0] if loads else -1}


def loads(wh: DuckDBWarehouse, kind: str) -> list[tuple[Any, ...]]:
    return wh.con.execute(
        "select load_id, source, content_hash, rows_read, rows_loaded, rows_dead_lettered"
        " from bronze._loads where kind = ? order by started_at, load_id",
        [kind],
    ).fetchall()


def dead_letters(wh: DuckDBWarehouse) -> list[tuple[Any, ...]]:
    return wh.con.execute(
        "select _source_kind, _source_file, _offset, _source_line, raw_payload, reason, _load_id,"
        " _topic, _partition, _key, _kafka_ts from bronze.dead_letter order by _offset"
    ).fetchall()


@pytest.mark.parametrize("entity", ["customers", "products"])
@pytest.mark.parametrize("layout", ["array", "ndjson"])
def test_snapshot_loads_with_its_lineage(
    warehouse: DuckDBWarehouse, tmp_path: Path, entity: str, layout: str
) -> None:
    records = [RECORDS[entity](i) for i in range(1, 4)]
    path = tmp_path / f"{entity}.{layout}"
    if layout == "array":
        write_array(path, records)
        expected_payloads = [json.dumps(r, ensure_ascii=False) for r in records]
    else:
        # Odd spacing, key order and number formats: NDJSON payloads are kept byte for byte.
        lines = [
            json.dumps(dict(reversed(r.items())), ensure_ascii=False, indent=None).encode()
            for r in records
        ]
        lines[1] = lines[1].replace(b": ", b" :  ")
        write_ndjson(path, lines)
        expected_payloads = [line.decode() for line in lines]

    before = datetime.now(UTC)
    summary = load_reference(warehouse, entity, path)
    after = datetime.now(UTC)

    assert (summary.read, summary.loaded, summary.dead_lettered, summary.skipped) == (
        3,
        3,
        0,
        False,
    )
    assert summary.entity == entity
    [(load_id, source, content_hash, read, loaded, dead)] = loads(warehouse, entity)
    assert (source, content_hash, read, loaded, dead) == (
        str(path.resolve()),
        sha256(path),
        3,
        3,
        0,
    )
    key = KEYS[entity]
    rows = warehouse.con.execute(
        f"select {key}, payload::varchar, _source_file, _record_number, _content_hash, _load_id,"
        f" _ingested_at from bronze.{entity} order by _record_number"
    ).fetchall()
    assert [r[0] for r in rows] == [r[key] for r in records]
    assert [r[3] for r in rows] == [1, 2, 3]
    for row, record, payload in zip(rows, records, expected_payloads, strict=True):
        assert json.loads(row[1]) == record
        if layout == "ndjson":
            assert row[1].encode() == payload.encode()
        assert row[2] == str(path.resolve())
        assert Path(row[2]).is_absolute()
        assert row[4] == sha256(path)
        assert row[5] == load_id
        assert row[6].tzinfo is not None
        assert before.replace(microsecond=0) <= row[6] <= after
    assert all_counts(warehouse)["dead_letter"] == 0
    other = "products" if entity == "customers" else "customers"
    assert all_counts(warehouse)[other] == 0


def test_relative_path_is_stored_absolute(
    warehouse: DuckDBWarehouse, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_array(tmp_path / "customers.json", [customer(1)])
    monkeypatch.chdir(tmp_path)
    load_reference(warehouse, "customers", "customers.json")
    stored = warehouse.con.execute("select distinct _source_file from bronze.customers").fetchall()
    assert stored == [(str(tmp_path.resolve() / "customers.json"),)]


def test_same_content_is_a_no_op_even_under_another_name(
    warehouse: DuckDBWarehouse, tmp_path: Path
) -> None:
    first = write_array(tmp_path / "customers.json", [customer(i) for i in range(5)])
    load_reference(warehouse, "customers", first)
    counts = all_counts(warehouse)

    again = load_reference(warehouse, "customers", first)
    renamed = tmp_path / "elsewhere" / "customers-copy.json"
    renamed.parent.mkdir()
    shutil.copyfile(first, renamed)
    copy = load_reference(warehouse, "customers", renamed)

    for summary in (again, copy):
        assert summary.skipped
        assert (summary.loaded, summary.dead_lettered) == (0, 0)
        assert "already loaded" in summary.line()
    assert all_counts(warehouse) == counts
    assert len(loads(warehouse, "customers")) == 1


def test_same_bytes_as_the_other_entity_are_not_skipped(
    warehouse: DuckDBWarehouse, tmp_path: Path
) -> None:
    """The content check is per entity: a file skipped for one is still new for the other."""
    path = write_ndjson(tmp_path / "mixed.ndjson", [b"{}"])
    assert not load_reference(warehouse, "customers", path).skipped
    assert not load_reference(warehouse, "products", path).skipped
    assert all_counts(warehouse)["dead_letter"] == 2


def test_changed_file_appends_a_new_snapshot(warehouse: DuckDBWarehouse, tmp_path: Path) -> None:
    path = write_ndjson(
        tmp_path / "products.ndjson", [json.dumps(product(i)).encode() for i in range(1, 4)]
    )
    first = load_reference(warehouse, "products", path)
    write_ndjson(
        path,
        [json.dumps(product(i, price=9.99 if i == 2 else 74.99)).encode() for i in range(1, 5)],
    )
    second = load_reference(warehouse, "products", path)

    assert not first.skipped and not second.skipped
    assert (second.read, second.loaded) == (4, 4)
    assert all_counts(warehouse)["products"] == 3 + 4
    log = loads(warehouse, "products")
    assert len(log) == 2
    (id1, _, hash1, *_), (id2, _, hash2, *_) = log
    assert id1 != id2
    assert hash1 != hash2
    assert hash2 == sha256(path)
    per_load = dict(
        warehouse.con.execute(
            "select _load_id, count(*) from bronze.products group by _load_id"
        ).fetchall()
    )
    assert per_load == {id1: 3, id2: 4}
    price = warehouse.con.execute(
        "select payload->>'price' from bronze.products where product_id = 'prd_0002'"
        " and _load_id = ?",
        [id2],
    ).fetchone()
    assert price == ("9.99",)

    # Going back to the first content (a revert) is applied: it becomes the latest word again.
    write_ndjson(path, [json.dumps(product(i)).encode() for i in range(1, 4)])
    reverted = load_reference(warehouse, "products", path)
    assert not reverted.skipped
    assert (reverted.read, reverted.loaded) == (3, 3)
    log = loads(warehouse, "products")
    assert [row[2] for row in log] == [hash1, hash2, hash1]
    # Sending the latest snapshot again is the no-op.
    assert load_reference(warehouse, "products", path).skipped
    assert len(loads(warehouse, "products")) == 3


def test_bad_ndjson_lines_go_to_dead_letter_and_the_rest_loads(
    warehouse: DuckDBWarehouse, tmp_path: Path
) -> None:
    good = json.dumps(product(1)).encode()
    missing = json.dumps({k: v for k, v in product(2).items() if k != "category"}).encode()
    lines = [
        good,  # line 1
        missing,  # line 2
        json.dumps(product(3, price="cheap")).encode(),  # line 3: wrong type
        json.dumps(product(4, price=-1)).encode(),  # line 4: negative price
        json.dumps(product(5, active="yes")).encode(),  # line 5: non-bool active
        json.dumps(product(6, active=1)).encode(),  # line 6: 1 is not a bool either
        b"",  # line 7: blank, not a record
        b'{"product_id": "prd_0007", "price": ',  # line 8: invalid JSON
        b'{"product_id": "prd_\xff\xfe", "product_name": "x"}',  # line 9: invalid UTF-8
        b"[1, 2]",  # line 10: JSON, but not an object
        json.dumps(product(11)).encode(),  # line 11
    ]
    path = write_ndjson(tmp_path / "products.ndjson", lines)

    summary = load_reference(warehouse, "products", path)

    assert (summary.read, summary.loaded, summary.dead_lettered) == (10, 2, 8)
    assert summary.read == summary.loaded + summary.dead_lettered
    loaded = warehouse.con.execute(
        "select product_id, _record_number, payload::varchar from bronze.products"
        " order by _record_number"
    ).fetchall()
    assert loaded == [
        ("prd_0001", 1, good.decode()),
        ("prd_0011", 11, lines[10].decode()),
    ]
    [(load_id, *rest)] = loads(warehouse, "products")
    assert rest[2:] == [10, 2, 8]
    dead = dead_letters(warehouse)
    assert [(d[2], d[3]) for d in dead] == [(n, n) for n in (2, 3, 4, 5, 6, 8, 9, 10)]
    source = str(path.resolve())
    for kind, file, _, _, raw, reason, dl_load, topic, partition, key, kafka_ts in dead:
        assert (kind, file, dl_load) == ("batch", source, load_id)
        assert (topic, partition, key, kafka_ts) == (None, None, None, None)
        assert reason and "\n" not in reason
        assert raw
    reasons = {d[2]: d[5] for d in dead}
    assert reasons[2].startswith("category")
    assert reasons[3].startswith("price")
    assert reasons[4].startswith("price")
    assert reasons[5].startswith("active")
    assert reasons[6].startswith("active")
    assert "json" in reasons[8].lower()
    assert "json" in reasons[9].lower() or "utf" in reasons[9].lower()
    raws = {d[2]: d[4] for d in dead}
    assert raws[2] == missing.decode()
    assert raws[8] == lines[7].decode()
    assert "\\xff\\xfe" in raws[9], "non-UTF-8 bytes are kept, backslash-escaped"


def test_bad_array_records_go_to_dead_letter_with_record_numbers(
    warehouse: DuckDBWarehouse, tmp_path: Path
) -> None:
    records: list[Any] = [
        customer(1),
        customer(2, country="gb"),  # record 2: bad country
        {k: v for k, v in customer(3).items() if k != "email"},  # record 3: missing field
        customer(4, name=5),  # record 4: wrong type
        customer(5, created_at="2024-01-06 06:56:51"),  # record 5: not an ISO-8601 UTC time
        42,  # record 6: not an object
        customer(7, customer_id=""),  # record 7: empty key
        customer(8),
    ]
    path = write_array(tmp_path / "customers.json", records)

    summary = load_reference(warehouse, "customers", path)

    assert (summary.read, summary.loaded, summary.dead_lettered) == (8, 2, 6)
    assert warehouse.con.execute(
        "select customer_id, _record_number from bronze.customers order by 2"
    ).fetchall() == [("cus_0000001", 1), ("cus_0000008", 8)]
    dead = dead_letters(warehouse)
    assert [(d[0], d[1], d[2], d[3]) for d in dead] == [
        ("batch", str(path.resolve()), n, None) for n in (2, 3, 4, 5, 6, 7)
    ]
    reasons = {d[2]: d[5] for d in dead}
    assert reasons[2].startswith("country")
    assert reasons[3].startswith("email")
    assert reasons[4].startswith("name")
    assert reasons[5].startswith("created_at")
    assert reasons[7].startswith("customer_id")
    assert all("\n" not in r for r in reasons.values())
    assert json.loads({d[2]: d[4] for d in dead}[2]) == records[1]


def test_all_records_bad_still_records_the_load(warehouse: DuckDBWarehouse, tmp_path: Path) -> None:
    path = write_ndjson(tmp_path / "customers.ndjson", [b"{}", b'{"customer_id": 1}'])
    summary = load_reference(warehouse, "customers", path)
    assert (summary.read, summary.loaded, summary.dead_lettered) == (2, 0, 2)
    assert all_counts(warehouse)["customers"] == 0
    assert len(loads(warehouse, "customers")) == 1
    assert load_reference(warehouse, "customers", path).skipped
    assert all_counts(warehouse)["dead_letter"] == 2


def _not_json(tmp: Path) -> Path:
    path = tmp / "customers.csv"
    path.write_text("customer_id,name\ncus_1,Liam\n")
    return path


def _empty(tmp: Path) -> Path:
    path = tmp / "customers.json"
    path.write_bytes(b"")
    return path


def _blank(tmp: Path) -> Path:
    path = tmp / "customers.json"
    path.write_text("\n   \n\t\n")
    return path


def _object(tmp: Path) -> Path:
    path = tmp / "customers.json"
    path.write_text(json.dumps({"customers": [customer(1), customer(2)]}, indent=2))
    return path


def _scalar(tmp: Path) -> Path:
    path = tmp / "customers.json"
    path.write_text('"customers"\n')
    return path


def _syntax_error(tmp: Path) -> Path:
    # Non-ASCII text before the error: the line must be counted right all the same.
    path = tmp / "customers.json"
    records = [customer(i, name="Ångström " * 20) for i in range(1, 6)]
    good = ",\n".join(json.dumps(r, ensure_ascii=False) for r in records)
    path.write_text(f'[\n{good},\n{{"customer_id": "cus_9",}}\n]\n', encoding="utf-8")
    return path


def _bad_utf8_array(tmp: Path) -> Path:
    path = tmp / "customers.json"
    good = ",\n".join(json.dumps(customer(i)) for i in range(1, 3)).encode()
    path.write_bytes(b"[\n" + good + b',\n{"customer_id": "cus_\xff"}\n]\n')
    return path


def _truncated_array(tmp: Path) -> Path:
    path = tmp / "customers.json"
    path.write_text("[\n" + json.dumps(customer(1)) + ",\n")
    return path


def _missing(tmp: Path) -> Path:
    return tmp / "no-such-customers.json"


def _directory(tmp: Path) -> Path:
    path = tmp / "customers.json"
    path.mkdir()
    return path


UNUSABLE = [
    (_not_json, ":1: not a JSON array or NDJSON"),
    (_empty, "empty"),
    (_blank, "empty"),
    (_object, "JSON object"),
    (_scalar, ":1: not a JSON array or NDJSON"),
    (_syntax_error, ":7: not valid JSON"),
    (_bad_utf8_array, ":4: not valid UTF-8"),
    (_truncated_array, "not valid JSON"),
    (_missing, "no such file"),
    (_directory, "is a directory"),
]


@pytest.mark.parametrize(
    ("make", "expected"),
    [pytest.param(make, expected, id=make.__name__.strip("_")) for make, expected in UNUSABLE],
)
def test_unusable_file_raises_and_writes_nothing(
    warehouse: DuckDBWarehouse, tmp_path: Path, make: Callable[[Path], Path], expected: str
) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    path = make(inputs)
    before = all_counts(warehouse)

    with pytest.raises(InputError) as info:
        load_reference(warehouse, "customers", path)

    message = str(info.value)
    assert message.startswith(str(path))
    assert expected in message
    assert "\n" not in message
    assert all_counts(warehouse) == before
    assert set(before.values()) == {0}


def test_error_in_a_later_file_leaves_earlier_loads_alone(
    warehouse: DuckDBWarehouse, tmp_path: Path
) -> None:
    good = write_array(tmp_path / "customers.json", [customer(1)])
    load_reference(warehouse, "customers", good)
    before = all_counts(warehouse)
    with pytest.raises(InputError):
        load_reference(warehouse, "products", _not_json(tmp_path))
    assert all_counts(warehouse) == before


def test_unknown_entity_is_rejected(warehouse: DuckDBWarehouse, tmp_path: Path) -> None:
    path = write_array(tmp_path / "orders.json", [customer(1)])
    with pytest.raises(InputError, match="orders"):
        load_reference(warehouse, "orders", path)
    assert set(all_counts(warehouse).values()) == {0}


def test_simulator_daily_snapshots_load_once_per_distinct_content(
    warehouse: DuckDBWarehouse, tmp_path: Path
) -> None:
    sim = generate(tmp_path / "sim", days=4, orders_per_day=40, seed=5, faults=None)
    days = sorted(p for p in sim.snapshots_dir.iterdir() if p.is_dir())
    assert [d.name for d in days] == ["2026-01-01", "2026-01-02", "2026-01-03", "2026-01-04"]

    for entity in ("customers", "products"):
        files = [day / f"{entity}.json" for day in days]
        # Each snapshot twice in a row, then the final top-level snapshot (the last day's
        # content): a re-send of the latest snapshot is a no-op.
        for path in [*(f for day in files for f in (day, day)), sim.out_dir / f"{entity}.json"]:
            summary = load_reference(warehouse, entity, path)
            assert summary.dead_lettered == 0
            assert summary.read == summary.loaded or summary.skipped

        distinct: dict[str, Path] = {}
        for path in files:
            distinct.setdefault(sha256(path), path)
        log = loads(warehouse, entity)
        assert len(log) == len(distinct)
        assert [row[2] for row in log] == list(distinct)
        assert [row[1] for row in log] == [str(p.resolve()) for p in distinct.values()]
        for load_id, _source, content_hash, read, loaded, dead in log:
            records = json.loads(distinct[content_hash].read_bytes())
            assert (read, loaded, dead) == (len(records), len(records), 0)
            keys = warehouse.con.execute(
                f"select {KEYS[entity]} from bronze.{entity} where _load_id = ?"
                " order by _record_number",
                [load_id],
            ).fetchall()
            assert [k for (k,) in keys] == [r[KEYS[entity]] for r in records]

    counts = all_counts(warehouse)
    assert counts["dead_letter"] == 0
    assert counts["customers"] > sim.customers
    assert counts["products"] >= sim.products


def test_a_byte_order_mark_is_not_part_of_a_snapshot(tmp_path: Path) -> None:
    products = tmp_path / "products.json"
    record = (
        b'{"product_id":"P1","product_name":"Mug","category":"home","price":12.5,"active":true}'
    )
    for body in (b"[" + record + b"]", record + b"\n"):
        products.write_bytes(b"\xef\xbb\xbf" + body)
        with DuckDBWarehouse(tmp_path / f"wh{len(body)}.duckdb") as wh:
            summary = load_reference(wh, "products", products)
        assert (summary.loaded, summary.dead_lettered) == (1, 0)


# Snapshots written in batches: each batch one transaction with the position after it.


class Crashing:
    """The warehouse with its ``write_reference`` failing after ``good`` batches (a crash: the
    failing batch is not written)."""

    def __init__(self, warehouse: DuckDBWarehouse, good: int) -> None:
        self.warehouse, self.good, self.writes = warehouse, good, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.warehouse, name)

    def write_reference(self, batch: Any) -> None:
        if self.writes >= self.good:
            raise RuntimeError("killed")
        self.writes += 1
        self.warehouse.write_reference(batch)


def snapshot_rows(wh: DuckDBWarehouse) -> list[tuple[Any, ...]]:
    """(record number, load id) of every customer row and dead letter, in record order."""
    return wh.con.execute(
        "select _record_number, _load_id from bronze.customers"
        " union all select _offset, _load_id from bronze.dead_letter order by 1"
    ).fetchall()


def position(wh: DuckDBWarehouse, path: Path) -> tuple[int, dict[str, Any]]:
    [(offset, fingerprint)] = wh.con.execute(
        "select next_offset, fingerprint from bronze._positions where source = ?",
        [f"snapshot:customers:{sha256(path)}"],
    ).fetchall()
    return offset, json.loads(fingerprint)


def twenty_three(tmp_path: Path) -> Path:
    """23 customers, records 4 and 17 dead-lettered (a bad country)."""
    records = [customer(i, country="se" if i in (4, 17) else "SE") for i in range(1, 24)]
    return write_array(tmp_path / "customers.json", records)


def test_a_snapshot_over_several_batches_loads_every_record_once(
    warehouse: DuckDBWarehouse, tmp_path: Path
) -> None:
    path = twenty_three(tmp_path)
    counting = Crashing(warehouse, good=100)
    summary = load_snapshot(counting, read_snapshot("customers", path), batch_records=5)

    assert counting.writes == 5  # 5 + 5 + 5 + 5 + 3 records
    assert (summary.read, summary.loaded, summary.dead_lettered) == (23, 21, 2)
    [(load_id, _, content_hash, read, loaded, dead)] = loads(warehouse, "customers")
    assert (content_hash, read, loaded, dead) == (sha256(path), 23, 21, 2)
    assert snapshot_rows(warehouse) == [(n, load_id) for n in range(1, 24)]
    assert position(warehouse, path) == (23, {"load_id": load_id, "base": 0, "records": 23})
    assert load_reference(warehouse, "customers", path).skipped

    # By bytes: records of equal size, a batch ends once it holds more than two records' bytes.
    other = write_array(tmp_path / "c2.json", [customer(i, name="B") for i in range(1, 8)])
    size = len(json.dumps(customer(1, name="B"), ensure_ascii=False))
    counting = Crashing(warehouse, good=100)
    load_snapshot(counting, read_snapshot("customers", other), batch_bytes=2 * size + 1)
    assert counting.writes == 3  # 3 + 3 + 1


def test_an_interrupted_snapshot_resumes_after_the_last_record_written(
    warehouse: DuckDBWarehouse, tmp_path: Path
) -> None:
    path = twenty_three(tmp_path)
    snapshot = read_snapshot("customers", path)
    with pytest.raises(RuntimeError, match="killed"):
        load_snapshot(Crashing(warehouse, good=2), snapshot, batch_records=5)
    [(load_id, *_, read, loaded, dead)] = loads(warehouse, "customers")
    assert (read, loaded, dead) == (10, 9, 1)
    assert snapshot_rows(warehouse) == [(n, load_id) for n in range(1, 11)]
    assert position(warehouse, path)[0] == 10

    # The same content under another name continues the load: not skipped as "already loaded"
    # (its load log already names this content), not loaded from the start again.
    copy = tmp_path / "landing" / "customers.json"
    copy.parent.mkdir()
    shutil.copyfile(path, copy)
    with pytest.raises(RuntimeError, match="killed"):
        load_snapshot(
            Crashing(warehouse, good=1), read_snapshot("customers", copy), batch_records=5
        )
    summary = load_snapshot(warehouse, snapshot, batch_records=5)

    assert (summary.read, summary.loaded, summary.dead_lettered, summary.resumed) == (8, 7, 1, 15)
    assert "resumed after record 15" in summary.line()
    assert snapshot_rows(warehouse) == [(n, load_id) for n in range(1, 24)]
    [(same_id, source, _, read, loaded, dead)] = loads(warehouse, "customers")
    assert (same_id, source, read, loaded, dead) == (load_id, str(path.resolve()), 23, 21, 2)
    assert position(warehouse, path) == (23, {"load_id": load_id, "base": 0, "records": 23})
    assert load_reference(warehouse, "customers", path).skipped
    assert load_reference(warehouse, "customers", copy).skipped


def test_an_interrupted_snapshot_resumes_after_a_newer_one(
    warehouse: DuckDBWarehouse, tmp_path: Path
) -> None:
    """A newer snapshot loaded meanwhile does not make the interrupted one "not the latest": the
    file was sent, and its rerun completes it."""
    path = twenty_three(tmp_path)
    with pytest.raises(RuntimeError):
        load_snapshot(
            Crashing(warehouse, good=1), read_snapshot("customers", path), batch_records=5
        )
    newer = write_array(tmp_path / "newer.json", [customer(1, name="New")])
    assert not load_reference(warehouse, "customers", newer).skipped
    summary = load_snapshot(warehouse, read_snapshot("customers", path), batch_records=5)
    assert (summary.read, summary.resumed) == (18, 5)
    first_id = loads(warehouse, "customers")[0][0]
    assert [r for r in snapshot_rows(warehouse) if r[1] == first_id] == [
        (n, first_id) for n in range(1, 24)
    ]


def test_a_reverted_snapshot_is_a_new_load_of_the_same_position(
    warehouse: DuckDBWarehouse, tmp_path: Path
) -> None:
    """The position of a content counts every record written under it, over all its loads:
    a revert continues from there, so the count only grows and still fences."""
    path = twenty_three(tmp_path)
    load_snapshot(warehouse, read_snapshot("customers", path), batch_records=10)
    other = write_array(tmp_path / "other.json", [customer(1, name="Other")])
    load_reference(warehouse, "customers", other)
    revert = tmp_path / "revert" / "customers.json"  # the first content again, in a new file
    revert.parent.mkdir()
    shutil.copyfile(path, revert)
    with pytest.raises(RuntimeError):  # interrupted after 10 records
        load_snapshot(
            Crashing(warehouse, good=1), read_snapshot("customers", revert), batch_records=10
        )
    first, _, second = (row[0] for row in loads(warehouse, "customers"))
    assert position(warehouse, path) == (33, {"load_id": second, "base": 23, "records": 23})
    summary = load_snapshot(warehouse, read_snapshot("customers", revert), batch_records=10)
    assert (summary.read, summary.resumed) == (13, 10)
    assert position(warehouse, path) == (46, {"load_id": second, "base": 23, "records": 23})
    rows = warehouse.con.execute(
        "select _load_id, count(*), count(distinct _record_number) from bronze.customers"
        " where name <> 'Other' group by 1 order by 1"
    ).fetchall()
    assert sorted(rows) == sorted([(first, 21, 21), (second, 21, 21)])


def test_a_second_writer_of_the_same_snapshot_is_fenced(
    warehouse: DuckDBWarehouse, tmp_path: Path
) -> None:
    """Two loads of one content at once: the one that commits second finds the position moved
    and writes nothing (one line), instead of loading the records twice."""
    path = twenty_three(tmp_path)

    class Racing(Crashing):
        def write_reference(self, batch: Any) -> None:
            if not self.writes:  # the other load runs to the end between our read and write
                load_snapshot(self.warehouse, read_snapshot("customers", path))
            super().write_reference(batch)

    with pytest.raises(PipelineError, match="another load of this snapshot ran at the same time"):
        load_snapshot(
            Racing(warehouse, good=100), read_snapshot("customers", path), batch_records=5
        )
    [(load_id, *_)] = loads(warehouse, "customers")
    assert snapshot_rows(warehouse) == [(n, load_id) for n in range(1, 24)]
