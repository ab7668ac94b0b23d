"""Bronze on Snowflake, against a real emulator (fakesnow's server): the same rows, dead letters,
positions and load records as the DuckDB file, exactly once, all or nothing.

fakesnow computes ``SUM`` of a NUMBER through DOUBLE and returns a NULL timestamp as 1970-01-01,
so money is compared value by value as ``Decimal`` and NULL timestamps with ``is null`` in SQL.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from retail_pipeline.errors import WarehouseError
from retail_pipeline.ingestion.batch import load_reference
from retail_pipeline.ingestion.files import ingest_files, stage_block
from retail_pipeline.simulation import FaultRates, generate
from retail_pipeline.warehouse.base import SCHEMA_VERSION, EventBatch, Position, PositionConflict
from retail_pipeline.warehouse.bronze import bronze_tables
from retail_pipeline.warehouse.duckdb import DuckDBWarehouse
from retail_pipeline.warehouse.snowflake import (
    SnowflakeWarehouse,
    all_tables,
    create_statements,
    snowflake_type,
)
from tests.local.kafka_fixtures import free_port

BOOKKEEPING = ["_meta", "dead_letter", "_positions", "_loads"]


@pytest.fixture(scope="module")
def small_sim(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One day of 50 orders with the default faults (a few malformed lines and duplicates)."""
    out = tmp_path_factory.mktemp("sim-snowflake")
    generate(out, days=1, orders_per_day=50, seed=3, faults=FaultRates())
    return out


@pytest.fixture
def snowflake(snowflake_args: dict[str, Any]) -> Iterator[SnowflakeWarehouse]:
    args = dict(snowflake_args)
    with SnowflakeWarehouse(args, database=args.pop("database")) as wh:
        yield wh


def event_files(sim: Path) -> list[Path]:
    return sorted((sim / "events").glob("*.ndjson"))


def file_batch(
    path: Path,
    load_id: str = "run-1",
    *,
    first: int = 0,
    lines: int | None = None,
    expected: int | None = None,
) -> EventBatch:
    """Lines ``first`` to ``first + lines`` of ``path`` (default: to the end) as one batch, as
    the file loader makes it."""
    every = path.read_bytes().splitlines(keepends=True)
    offset = len(b"".join(every[:first]))
    chunk = every[first:] if lines is None else every[first : first + lines]
    data = b"".join(chunk)
    staged = stage_block(data, offset, first + 1, str(path))
    source = f"file:{path}"
    end = offset + len(data)
    return EventBatch(
        load_id,
        "file",
        staged.events,
        staged.dead_letters,
        [Position(source, 0, end, first + len(chunk) + 1, f"{min(end, 4096)}:fingerprint")],
        {(source, 0): expected},
        load_source=str(path),
    )


def snapshot(wh: SnowflakeWarehouse) -> dict[str, Any]:
    """Everything a failed or rejected batch must leave untouched."""
    return {
        "counts": wh.counts(),
        "positions": wh.all_positions(),
        "loads": wh.query(
            "select load_id, rows_read, rows_loaded, rows_dead_lettered from bronze._loads"
            " order by load_id"
        ),
    }


# -- DDL ---------------------------------------------------------------------------------------


def test_the_ddl_is_derived_from_the_contract_and_schema_sql(tmp_path: Path) -> None:
    """Every table DuckDB creates, column for column, in the same order and nullability."""
    with DuckDBWarehouse(tmp_path / "wh.duckdb") as duck:
        rows = duck.query(
            "select table_name, column_name, is_nullable from information_schema.columns"
            " where table_schema = 'bronze' order by table_name, ordinal_position"
        )
    duck_tables: dict[str, list[tuple[str, bool]]] = {}
    for table, column, nullable in rows:
        duck_tables.setdefault(table, []).append((column, nullable == "NO"))
    ours = {
        table: [(name, not_null) for name, _, not_null in columns]
        for table, columns in all_tables().items()
    }
    assert ours == duck_tables
    ddl = "\n".join(create_statements("RETAIL"))
    assert "RETAIL.BRONZE.order_events" in ddl and "bronze." not in ddl
    assert "order_total NUMBER(18,2) not null" in ddl
    assert "items ARRAY," in ddl
    assert "event_timestamp TIMESTAMP_TZ not null" in ddl
    assert "payload VARCHAR not null" in ddl
    assert "primary key (source, partition)" in ddl
    assert len(create_statements("RETAIL")) == 1 + len(BOOKKEEPING) + len(bronze_tables())


def test_snowflake_types() -> None:
    assert snowflake_type("decimal(18, 2)") == "NUMBER(18,2)"
    assert snowflake_type("decimal(20, 4)") == "NUMBER(20,4)"
    assert snowflake_type("timestamptz") == "TIMESTAMP_TZ"
    assert snowflake_type("bigint") == "NUMBER(19,0)"
    assert snowflake_type("struct(product_id varchar)[]") == "ARRAY"
    with pytest.raises(ValueError, match="no Snowflake type"):
        snowflake_type("hugeint")


def test_a_bad_database_name_is_refused_before_connecting() -> None:
    with pytest.raises(WarehouseError, match="not a plain identifier"):
        SnowflakeWarehouse({"account": "a", "user": "u"}, database="retail; drop")


# -- the real ingestion path against DuckDB ------------------------------------------------------


def _without_load_id(position: Position) -> Position:
    """``position`` with a snapshot fingerprint's load id blanked (the rest compared)."""
    if not position.source.startswith("snapshot:"):
        return position
    fingerprint = json.loads(position.fingerprint or "{}")
    return dataclasses.replace(position, fingerprint=json.dumps({**fingerprint, "load_id": ""}))


def test_ingest_files_and_snapshots_load_what_duckdb_loads(
    snowflake: SnowflakeWarehouse, small_sim: Path, tmp_path: Path
) -> None:
    files = event_files(small_sim)
    products = tmp_path / "products.json"
    records = json.loads((small_sim / "products.json").read_text())
    records[3]["price"] = "12.5"  # a string: dead-lettered with its record number
    products.write_text(json.dumps(records))
    summaries = []
    with DuckDBWarehouse(tmp_path / "wh.duckdb") as duck:
        for wh in (snowflake, duck):
            commits: list[int] = []
            # 8 KiB transactions: every file takes several batches
            summary = ingest_files(wh, files, batch_bytes=8 << 10, progress=commits.append)
            assert summary.read == summary.loaded + summary.dead_lettered > 0
            assert len(commits) > len(files)
            summaries.append(summary)
            assert load_reference(wh, "customers", small_sim / "customers.json").loaded
            assert load_reference(wh, "products", products).dead_lettered == 1
        counts = snowflake.counts()
        assert counts == duck.counts()
        assert counts["dead_letter"] >= 2 and counts["order_events"] > 50
        # A snapshot's position names the load that wrote it: one run per warehouse.
        assert [_without_load_id(p) for p in snowflake.all_positions()] == [
            _without_load_id(p) for p in duck.all_positions()
        ]
        for sql in (
            "select _source_kind, _topic, _partition, _offset, _key, _source_file, _source_line,"
            " raw_payload, reason from bronze.dead_letter order by _source_file, _offset",
            "select kind, source, content_hash, rows_read, rows_loaded, rows_dead_lettered"
            " from bronze._loads order by kind",
            "select _load_id, _source_file, _record_number, product_id, price, active, payload"
            " from bronze.products order by _record_number",
            "select customer_id, created_at, payload from bronze.customers order by customer_id",
        ):
            sf_rows, duck_rows = snowflake.query(sql), duck.query(sql)
            if "_load_id" in sql:  # different runs: one per snapshot, the rest equal
                assert len({row[0] for row in sf_rows}) == 1
                sf_rows, duck_rows = [r[1:] for r in sf_rows], [r[1:] for r in duck_rows]
            assert sf_rows == duck_rows, sql
        # One _loads row for the whole event run, grown by each of its batches.
        summary = summaries[0]
        assert snowflake.query(
            "select rows_read, rows_loaded, rows_dead_lettered, finished_at > started_at"
            " from bronze._loads where kind = 'events'"
        ) == [(summary.read, summary.loaded, summary.dead_lettered, True)]
        # Everything loaded is recognised: nothing is read or written twice.
        before = snapshot(snowflake)
        again = ingest_files(snowflake, files)
        assert (again.read, again.skipped) == (0, summary.read)
        assert load_reference(snowflake, "products", products).skipped
        assert snapshot(snowflake) == before


def test_typed_values_are_exact_and_equal_duckdbs(
    snowflake: SnowflakeWarehouse, small_sim: Path, tmp_path: Path
) -> None:
    """Money and unit prices come back as the same Decimals, timestamps as the same instants,
    payloads byte for byte; NULL timestamps stay NULL (checked in SQL: the emulator's wire
    format turns them into 1970-01-01)."""
    files = event_files(small_sim)
    with DuckDBWarehouse(tmp_path / "wh.duckdb") as duck:
        ingest_files(duck, files)
        ingest_files(snowflake, files)
        sql = (
            "select _source_file, _offset, event_id, order_total, currency, event_timestamp,"
            " produced_at, payload, _kafka_ts is null, _partition is null, _key is null"
            " from bronze.order_events order by _source_file, _offset"
        )
        sf_rows, duck_rows = snowflake.query(sql), duck.query(sql)
        assert sf_rows == duck_rows
        assert all(
            isinstance(row[3], Decimal) and row[3].as_tuple().exponent == -2 for row in sf_rows
        )
        assert all(row[8] and row[9] and row[10] for row in sf_rows)
        payments = "select _offset, amount from bronze.payment_events order by _offset"
        assert snowflake.query(payments) == duck.query(payments)
        lines = snowflake.query(
            "select o._offset, f.index, f.value:product_id::varchar,"
            " f.value:quantity::number(19,0), f.value:unit_price::number(20,4)"
            " from bronze.order_events o, lateral flatten(input => o.items) f"
        )
        duck_lines = [
            (offset, index, item["product_id"], item["quantity"], item["unit_price"])
            for offset, items in duck.query("select _offset, items from bronze.order_events")
            for index, item in enumerate(items or [])
        ]
        assert sorted(lines) == sorted(duck_lines)
        assert lines and all(
            isinstance(price, Decimal) and price.as_tuple().exponent == -4 for *_, price in lines
        )
        [(stamps,)] = snowflake.query(
            "select count(distinct _ingested_at) from bronze.order_events"
        )
        assert stamps == 1  # one batch, one stamp


# -- exactly once --------------------------------------------------------------------------------


def test_a_batch_with_a_stale_expected_position_is_rejected_and_writes_nothing(
    snowflake: SnowflakeWarehouse,
    snowflake_args: dict[str, Any],
    small_sim: Path,
) -> None:
    orders = small_sim / "events" / "orders.ndjson"
    first = file_batch(orders, lines=20)
    result = snowflake.write_events(first)
    assert result.loaded + result.dead_lettered == 20
    before = snapshot(snowflake)
    # The same batch again (a loader that did not see the commit): fenced off.
    with pytest.raises(PositionConflict, match=r"stored position is \d+, expected None"):
        snowflake.write_events(file_batch(orders, lines=20))
    assert snapshot(snowflake) == before
    # A second session (a zombie writer) is fenced off just the same.
    args = dict(snowflake_args)
    with SnowflakeWarehouse(args, database=args.pop("database")) as zombie:
        with pytest.raises(PositionConflict):
            zombie.write_events(file_batch(orders, "run-2", expected=0))
        # and the rightful next batch goes through from the stored position
        stored = zombie.positions(f"file:{orders}")[0].next_offset
        assert zombie.write_events(file_batch(orders, "run-2", first=20, expected=stored)).loaded
    assert snowflake.positions(f"file:{orders}")[0].next_offset == orders.stat().st_size
    counts = snowflake.counts()
    lines = len(orders.read_bytes().splitlines())
    assert counts["order_events"] + counts["dead_letter"] == lines  # each line exactly once
    [(distinct,)] = snowflake.query("select count(distinct _offset) from bronze.order_events")
    assert distinct == counts["order_events"]


def test_positions_round_trip(snowflake: SnowflakeWarehouse) -> None:
    empty = pa.table({})
    kafka = [Position("kafka:orders", p, 100 + p, None, None) for p in range(3)]
    files = [Position("file:/data/a b.ndjson", 0, 4096, 17, "4096:abc")]
    batch = EventBatch("run-k", "kafka", {}, empty, kafka + files, {})
    assert snowflake.write_events(batch).loaded == 0
    assert snowflake.positions("kafka:orders") == {p.partition: p for p in kafka}
    assert snowflake.positions("file:/data/a b.ndjson") == {0: files[0]}
    assert snowflake.positions("kafka:nothing") == {}
    assert snowflake.all_positions() == files + kafka  # by source, then partition
    moved = Position("kafka:orders", 1, 250, None, None)
    snowflake.write_events(
        EventBatch("run-k", "kafka", {}, empty, [moved], {("kafka:orders", 1): 101})
    )
    assert snowflake.positions("kafka:orders")[1] == moved
    [(rows,)] = snowflake.query("select count(*) from bronze._positions")
    assert rows == 4  # replaced, not added
    [(read,)] = snowflake.query("select rows_read from bronze._loads where load_id = 'run-k'")
    assert read == 0


def test_every_batch_grows_its_runs_load_record(
    snowflake: SnowflakeWarehouse, small_sim: Path
) -> None:
    payments = small_sim / "events" / "payments.ndjson"
    lines = len(payments.read_bytes().splitlines())
    first = file_batch(payments, "run-9", lines=10)
    snowflake.write_events(first)
    record = (
        "select kind, source, rows_read, rows_loaded, started_at, finished_at from bronze._loads"
    )
    [(kind, source, read, loaded, started, finished)] = snowflake.query(record)
    assert (kind, source, read) == ("events", str(payments), 10)
    assert started == finished
    rest = file_batch(payments, "run-9", first=10, expected=first.positions[0].next_offset)
    snowflake.write_events(rest)
    [(kind, source, read, loaded2, started2, finished2)] = snowflake.query(record)
    assert read == lines
    assert loaded2 == snowflake.counts()["payment_events"] > loaded
    assert started2 == started and finished2 > finished


# -- all or nothing ------------------------------------------------------------------------------


def before_offset(state: dict[str, Any]) -> int:
    [position] = state["positions"]
    return int(position.next_offset)


def failing_batch(small_sim: Path, load_id: str, expected: int | None) -> EventBatch:
    """Valid orders and shipments, then a payment whose amount no NUMBER(18,2) holds."""
    batch = file_batch(small_sim / "events" / "orders.ndjson", load_id, expected=expected)
    shipments = stage_block((small_sim / "events" / "shipments.ndjson").read_bytes(), 0, 1, "s")
    payments = stage_block((small_sim / "events" / "payments.ndjson").read_bytes(), 0, 1, "p")
    rows = payments.events["payments"]
    amounts = rows.column("amount").cast(pa.decimal128(38, 2)).to_pylist()
    amounts[-1] = Decimal("100000000000000000.00")
    index = rows.column_names.index("amount")
    rows = rows.set_column(index, "amount", pa.array(amounts, pa.decimal128(38, 2)))
    batch.events = {**batch.events, "shipments": shipments.events["shipments"], "payments": rows}
    return batch


def test_a_batch_whose_copy_fails_leaves_nothing(
    snowflake: SnowflakeWarehouse, small_sim: Path
) -> None:
    orders = small_sim / "events" / "orders.ndjson"
    snowflake.write_events(file_batch(orders, lines=5))
    before = snapshot(snowflake)
    with pytest.raises(WarehouseError) as caught:
        snowflake.write_events(failing_batch(small_sim, "run-2", expected=before_offset(before)))
    message = str(caught.value)
    assert "\n" not in message and "Traceback" not in message
    assert message.startswith(f"writing to {snowflake.describe()} failed: ")
    assert snapshot(snowflake) == before
    [(staged,)] = snowflake.query("select count(*) from bronze._loads where load_id = 'run-2'")
    assert staged == 0
    # The warehouse is still usable, and the same batch without the bad row goes through.
    good = file_batch(orders, "run-3", expected=before_offset(before))
    assert snowflake.write_events(good).loaded > 0


def test_a_statement_the_emulator_cannot_run_fails_cleanly_and_rolls_back(
    snowflake: SnowflakeWarehouse, small_sim: Path
) -> None:
    """A NOT NULL violation: fakesnow answers HTTP 500 (retried until network_timeout), real
    Snowflake error 100072; either way one line, and the earlier COPYs are rolled back."""
    batch = file_batch(small_sim / "events" / "orders.ndjson", lines=30)
    batch.dead_letters = pa.table(
        {
            "_offset": pa.array([1], pa.int64()),
            "raw_payload": pa.array(["{"], pa.string()),
            "reason": pa.array([None], pa.string()),  # reason is NOT NULL
        }
    )
    with pytest.raises(WarehouseError) as caught:
        snowflake.write_events(batch)
    assert "\n" not in str(caught.value)
    assert snowflake.counts() == dict.fromkeys(snowflake.counts(), 0)
    assert snowflake.all_positions() == []


def test_reference_loads_are_atomic_and_recognised(
    snowflake: SnowflakeWarehouse, small_sim: Path
) -> None:
    customers = small_sim / "customers.json"
    summary = load_reference(snowflake, "customers", customers)
    assert summary.loaded == snowflake.counts()["customers"] > 0
    [(content_hash,)] = snowflake.query("select content_hash from bronze._loads")
    assert snowflake.has_reference_load("customers", content_hash)
    assert not snowflake.has_reference_load("products", content_hash)
    [(kinds, hashes, stamps)] = snowflake.query(
        "select count(distinct _load_id), count(distinct _content_hash),"
        " count(distinct _ingested_at) from bronze.customers"
    )
    assert (kinds, hashes, stamps) == (1, 1, 1)
    [(loaded_at, started)] = snowflake.query(
        "select max(c._ingested_at), max(l.started_at) from bronze.customers c, bronze._loads l"
    )
    assert isinstance(loaded_at, datetime) and loaded_at == started


# -- reads, opening, errors ----------------------------------------------------------------------


def test_reads_tables_and_counts(snowflake: SnowflakeWarehouse) -> None:
    assert snowflake.tables("bronze") == {*all_tables()}
    assert snowflake.tables("BRONZE") == snowflake.tables("bronze")
    assert snowflake.tables("gold") == set()
    assert snowflake.counts() == {
        "order_events": 0,
        "payment_events": 0,
        "shipment_events": 0,
        "customers": 0,
        "products": 0,
        "dead_letter": 0,
    }
    assert snowflake.query("select ? || '%', ? + 1", ["50", 1]) == [("50%", 2)]
    assert snowflake.query("select 'a?b', ?", ["it's"]) == [("a?b", "it's")]
    with pytest.raises(WarehouseError, match=r"^reading Snowflake .* failed: .*NOPE") as caught:
        snowflake.query("select * from bronze.nope")
    assert "\n" not in str(caught.value)
    env = snowflake.dbt_env()
    assert env["SNOWFLAKE_DATABASE"] == snowflake.database
    assert env["SNOWFLAKE_PROTOCOL"] == "http"
    assert snowflake.describe() == f"Snowflake {snowflake.database} at emulator"


def test_read_only_creates_nothing_and_writes_nothing(
    snowflake_args: dict[str, Any],
) -> None:
    args = dict(snowflake_args)
    database = args.pop("database")
    with SnowflakeWarehouse(args, database=database, read_only=True) as wh:
        assert wh.tables("bronze") == set()
        with pytest.raises(WarehouseError, match="read-only"):
            wh.write_events(EventBatch("r", "file", {}, pa.table({})))
    with SnowflakeWarehouse(args, database=database) as wh:
        wh.query(
            "update bronze._meta set value = ? where key = 'schema_version'",
            [str(SCHEMA_VERSION + 1)],
        )
    for read_only in (False, True):
        with pytest.raises(WarehouseError, match=f"schema version {SCHEMA_VERSION + 1}, newer"):
            SnowflakeWarehouse(args, database=database, read_only=read_only)


def test_an_unreachable_account_is_one_line_within_the_timeout() -> None:
    args = {
        "account": "nowhere",
        "user": "u",
        "password": "p",
        "host": "127.0.0.1",
        "port": free_port(),
        "protocol": "http",
        "login_timeout": 3,
        "network_timeout": 3,
    }
    started = time.monotonic()
    with pytest.raises(
        WarehouseError, match=r"^cannot connect to Snowflake account nowhere as u: "
    ):
        SnowflakeWarehouse(args)
    assert time.monotonic() - started < 60


def test_snowduck_serves_reads_with_null_timestamps_kept(
    snowduck_emulator: tuple[dict[str, Any], Any],
) -> None:
    """The dbt emulator (snowduck, patched by the fixture): the schema is created, reads work,
    and a NULL timestamp arrives as None. (It cannot COPY INTO from a stage.)"""
    import snowflake.connector

    args, _ = snowduck_emulator
    with snowflake.connector.connect(**args) as con:
        con.cursor().execute("create database if not exists SDTEST")
    with SnowflakeWarehouse(args, database="SDTEST") as wh:
        assert "order_events" in wh.tables("bronze")
        assert wh.query("select null::timestamp_tz, ?", ["x"]) == [(None, "x")]
        assert wh.counts()["order_events"] == 0
