"""Customers and products from a real PostgreSQL 15 into Bronze: incremental windows, ties,
restarts and crashes mid-extract, late commits, dead letters and exact money."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from retail_pipeline.errors import InputError, PipelineError
from retail_pipeline.ingestion.incremental import Change, Retry, Window, load_changes
from retail_pipeline.ingestion.postgres import PostgresSource
from retail_pipeline.local.postgres import LocalPostgres, upsert
from retail_pipeline.warehouse.duckdb import DuckDBWarehouse
from tests.accounting import unaccounted_rows

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def customer(i: int, **changes: Any) -> dict[str, Any]:
    key = f"C{i:05d}"
    return {
        "customer_id": key,
        "name": f"Customer {key}",
        "email": f"{key.lower()}@example.com",
        "country": "DE",
        "created_at": "2025-06-01T08:00:00Z",
    } | changes


def product(key: str, price: str, **changes: Any) -> dict[str, Any]:
    return {
        "product_id": key,
        "product_name": f"Product {key}",
        "category": "food",
        "price": price,
        "active": True,
    } | changes


def load(wh: DuckDBWarehouse, src: PostgresSource, entity: str = "customers", **kw: Any) -> Any:
    return load_changes(wh, src, entity, lag_seconds=0, **kw)


def keys(wh: DuckDBWarehouse) -> list[str]:
    return [row[0] for row in wh.query("select customer_id from bronze.customers order by all")]


def test_loads_all_then_nothing_then_only_the_changes(
    postgres_db: str, warehouse: DuckDBWarehouse
) -> None:
    upsert(postgres_db, "customers", [customer(i) for i in range(500)])
    source = PostgresSource(postgres_db, chunk=120)
    first = load(warehouse, source, batch_size=200)
    assert (first.read, first.loaded, first.dead_lettered) == (500, 500, 0)
    assert keys(warehouse) == [f"C{i:05d}" for i in range(500)]
    assert load(warehouse, source).read == 0
    upsert(postgres_db, "customers", [customer(3, name="New"), customer(400, country="FR")])
    upsert(postgres_db, "customers", [customer(500)])
    third = load(warehouse, source)
    assert (third.read, third.loaded) == (3, 3)
    assert warehouse.counts()["customers"] == 503
    assert warehouse.query(
        "select customer_id, name, country from bronze.customers"
        " where _ingested_at = (select max(_ingested_at) from bronze.customers) order by all"
    ) == [
        ("C00003", "New", "DE"),
        ("C00400", "Customer C00400", "FR"),
        ("C00500", "Customer C00500", "DE"),
    ]
    [position] = warehouse.positions(f"postgres:{source.describe('customers')}").values()
    assert position.next_offset == 503
    assert unaccounted_rows(warehouse) == []
    source.close()


def test_ties_across_chunk_and_batch_boundaries(
    postgres_db: str, warehouse: DuckDBWarehouse
) -> None:
    upsert(postgres_db, "customers", [customer(i) for i in range(0, 300, 2)], updated_at=T0)
    upsert(
        postgres_db,
        "customers",
        [customer(i) for i in range(1, 300, 2)],
        updated_at=T0 + timedelta(microseconds=1),
    )
    summary = load(warehouse, PostgresSource(postgres_db, chunk=40), batch_size=70)
    assert summary.read == 300
    assert keys(warehouse) == [f"C{i:05d}" for i in range(300)]
    [(loads, batches)] = warehouse.query(
        "select count(distinct _load_id), count(distinct _ingested_at) from bronze.customers"
    )
    assert (loads, batches) == (1, 5)


def test_money_is_exact_and_bad_rows_are_dead_lettered_with_their_key(
    postgres_db: str, warehouse: DuckDBWarehouse
) -> None:
    upsert(
        postgres_db,
        "products",
        [
            product("P1", "19.99"),
            product("P2", "0.10"),
            product("P3", "100"),
            product("P4", "-1.00"),
            product("P5", "5.00", product_name=None),
        ],
    )
    summary = load(warehouse, PostgresSource(postgres_db), "products")
    assert (summary.read, summary.loaded, summary.dead_lettered) == (5, 3, 2)
    rows = warehouse.query("select product_id, price, payload from bronze.products order by 1")
    assert [(key, str(price)) for key, price, _ in rows] == [
        ("P1", "19.99"),
        ("P2", "0.10"),
        ("P3", "100.00"),
    ]
    assert '"price":19.99,' in rows[0][2] and '"updated_at":"' in rows[0][2]
    dead = warehouse.query(
        "select _source_kind, _source_file, _key, reason from bronze.dead_letter order by _key"
    )
    source = PostgresSource(postgres_db).describe("products")
    assert [(kind, file, key) for kind, file, key, _ in dead] == [
        ("postgres", source, "P4"),
        ("postgres", source, "P5"),
    ]
    assert dead[0][3].startswith("price") and dead[1][3].startswith("product_name")
    assert "@" not in source and source.endswith("/products")


def test_a_restart_during_an_extract_loses_and_repeats_nothing(
    private_postgres: LocalPostgres, warehouse: DuckDBWarehouse
) -> None:
    dsn = private_postgres.dsn
    upsert(dsn, "customers", [customer(i) for i in range(1_000)], updated_at=T0)

    class Restarting(PostgresSource):
        pages = 0

        def read(self, entity: str, window: Window) -> Iterator[list[Change]]:
            for page in super().read(entity, window):
                yield page
                self.pages += 1
                if self.pages == 2:
                    private_postgres.restart()  # the open connection dies

    source = Restarting(dsn, chunk=150, retry=Retry(backoff=0.05))
    summary = load(warehouse, source, batch_size=400)
    assert summary.read == 1_000
    assert keys(warehouse) == [f"C{i:05d}" for i in range(1_000)]


def test_a_crash_mid_extract_resumes_after_the_last_batch_written(
    private_postgres: LocalPostgres, warehouse: DuckDBWarehouse
) -> None:
    dsn = private_postgres.dsn
    upsert(dsn, "customers", [customer(i) for i in range(900)])

    class Crashing(PostgresSource):
        def read(self, entity: str, window: Window) -> Iterator[list[Change]]:
            for number, page in enumerate(super().read(entity, window), start=1):
                if number == 4:
                    private_postgres.kill()  # gone for good, mid-window
                yield page

    with pytest.raises(PipelineError, match=r"gave up after 2 attempts"):
        crashing = Crashing(dsn, chunk=100, retry=Retry(attempts=2, backoff=0.01))
        load(warehouse, crashing, batch_size=250)
    assert warehouse.counts()["customers"] == 250, "one batch was committed before the crash"
    private_postgres.start()
    upsert(dsn, "customers", [customer(5, name="Changed")])  # a written record changes
    resumed = load(warehouse, PostgresSource(dsn), batch_size=250)
    assert resumed.read == 650, "the rest of the window"
    assert load(warehouse, PostgresSource(dsn)).read == 1, "then the change"
    assert sorted(set(keys(warehouse))) == [f"C{i:05d}" for i in range(900)]
    assert warehouse.counts()["customers"] == 901
    assert unaccounted_rows(warehouse) == []


def test_the_loader_waits_for_a_server_that_comes_back(
    private_postgres: LocalPostgres, warehouse: DuckDBWarehouse
) -> None:
    dsn = private_postgres.dsn
    upsert(dsn, "customers", [customer(i) for i in range(50)])
    private_postgres.stop()
    threading.Timer(1.0, private_postgres.start).start()
    summary = load(warehouse, PostgresSource(dsn, retry=Retry(attempts=8, backoff=0.2)))
    assert summary.read == 50


def test_a_transaction_that_commits_after_a_window_is_not_lost(
    postgres_db: str, warehouse: DuckDBWarehouse
) -> None:
    upsert(postgres_db, "customers", [customer(1)])
    with psycopg.connect(postgres_db) as slow:
        # Stamped with its transaction's start (now()), committed only after the next read.
        slow.execute(
            "insert into customers (customer_id, name, email, country, created_at)"
            " values ('C00002', 'Slow', 's@example.com', 'DE', '2025-06-01T08:00:00Z')"
        )
        time.sleep(0.05)
        upsert(postgres_db, "customers", [customer(3)])  # committed, stamped after C00002
        first = load(warehouse, PostgresSource(postgres_db))
        assert keys(warehouse) == ["C00001"], "the window stops before the open transaction"
        slow.commit()
    second = load(warehouse, PostgresSource(postgres_db))
    assert (first.read, second.read) == (1, 2)
    assert keys(warehouse) == ["C00001", "C00002", "C00003"]


def test_a_table_without_the_columns_is_one_line(
    postgres_db: str, warehouse: DuckDBWarehouse
) -> None:
    with psycopg.connect(postgres_db, autocommit=True) as con:
        con.execute("alter table customers drop column email")
        con.execute("drop table products")
    with pytest.raises(InputError, match=r"customers: column \"email\" does not exist"):
        load(warehouse, PostgresSource(postgres_db))
    with pytest.raises(InputError, match=r"products: no table products"):
        load(warehouse, PostgresSource(postgres_db), "products")
    with pytest.raises(InputError, match="not a PostgreSQL connection string"):
        PostgresSource("nonsense")
    assert warehouse.counts()["customers"] == 0


def test_cli_loads_from_postgres(
    postgres_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from retail_pipeline.cli import app

    upsert(postgres_db, "customers", [customer(i) for i in range(4)])
    upsert(postgres_db, "products", [product("P1", "2.50")])
    monkeypatch.setenv("RETAIL_BATCH_LAG", "0")
    wh = str(tmp_path / "wh.duckdb")
    result = CliRunner().invoke(app, ["load-batch", "--postgres", postgres_db, "--warehouse", wh])
    assert result.exit_code == 0, result.output
    assert "customers: read 4 / loaded 4" in result.output
    assert "products: read 1 / loaded 1" in result.output
    monkeypatch.setenv("RETAIL_POSTGRES_DSN", postgres_db)
    result = CliRunner().invoke(app, ["load-batch", "--warehouse", wh])
    assert result.exit_code == 0, result.output
    assert "customers: no new changes" in result.output


def test_a_transaction_that_reads_first_and_writes_late_is_not_lost(
    postgres_db: str, warehouse: DuckDBWarehouse
) -> None:
    """No xid yet when the window is read: its start still holds the window back."""
    with psycopg.connect(postgres_db) as slow:
        slow.execute("select count(*) from customers")  # the job reads first...
        time.sleep(0.2)
        assert load(warehouse, PostgresSource(postgres_db)).read == 0
        slow.execute(  # ...and writes later, stamped with its start (now())
            "insert into customers (customer_id, name, email, country, created_at)"
            " values ('C00001', 'Late', 'l@example.com', 'DE', '2025-06-01T08:00:00Z')"
        )
        slow.commit()
    assert load(warehouse, PostgresSource(postgres_db)).read == 1
    assert keys(warehouse) == ["C00001"]


def test_a_naive_updated_at_is_utc_whatever_the_database_time_zone(
    postgres_db: str, warehouse: DuckDBWarehouse
) -> None:
    database = psycopg.conninfo.conninfo_to_dict(postgres_db)["dbname"]
    with psycopg.connect(postgres_db, autocommit=True) as con:
        con.execute(f"alter database {database} set timezone = 'Europe/Berlin'")
        con.execute("drop table customers")
        con.execute(
            "create table customers (customer_id text primary key, name text, email text,"
            " country text, created_at timestamp, updated_at timestamp not null)"
        )

    def add(key: str) -> None:
        with psycopg.connect(postgres_db, autocommit=True) as con:
            con.execute(
                "insert into customers values (%s, 'N', 'n@example.com', 'DE',"
                " '2025-06-01 08:00:00', now() at time zone 'UTC')",
                [key],
            )

    add("C00001")
    assert load(warehouse, PostgresSource(postgres_db)).read == 1
    time.sleep(0.05)
    add("C00002")  # a change after the first window, stamped in UTC
    assert load(warehouse, PostgresSource(postgres_db)).read == 1
    assert keys(warehouse) == ["C00001", "C00002"]
    [(created,)] = warehouse.query(
        "select strftime(created_at, '%Y-%m-%d %H:%M') from bronze.customers limit 1"
    )
    assert created == "2025-06-01 08:00"


def test_values_python_cannot_hold_dead_letter_their_row_only(
    postgres_db: str, warehouse: DuckDBWarehouse
) -> None:
    upsert(postgres_db, "customers", [customer(i) for i in range(1, 5)])
    with psycopg.connect(postgres_db, autocommit=True) as con:
        con.execute("update customers set created_at = 'infinity' where customer_id = 'C00002'")
        con.execute(
            "update customers set created_at = '0044-03-15 00:00:00+00 BC'"
            " where customer_id = 'C00003'"
        )
    summary = load(warehouse, PostgresSource(postgres_db, chunk=2))
    assert (summary.read, summary.loaded, summary.dead_lettered) == (4, 2, 2)
    dead = warehouse.query("select _key, reason from bronze.dead_letter order by _key")
    assert [key for key, _ in dead] == ["C00002", "C00003"]
    assert all(reason.startswith("created_at") for _, reason in dead)


def test_rows_without_a_key_are_dead_lettered_once_across_chunks(
    postgres_db: str, warehouse: DuckDBWarehouse
) -> None:
    with psycopg.connect(postgres_db, autocommit=True) as con:
        con.execute("drop table customers")
        con.execute(
            "create table customers (customer_id text, name text, email text, country text,"
            " created_at timestamptz, updated_at timestamptz not null)"
        )
        con.execute(
            "insert into customers select case when i % 3 = 0 then null when i % 3 = 1 then ''"
            " else 'C' || i end, 'N', 'n@example.com', 'DE', '2025-06-01T08:00:00Z',"
            " '2026-03-01T12:00:00Z' from generate_series(1, 30) as i"
        )
    summary = load(warehouse, PostgresSource(postgres_db, chunk=4))
    assert (summary.read, summary.loaded, summary.dead_lettered) == (30, 10, 20)
    assert load(warehouse, PostgresSource(postgres_db)).read == 0


def test_no_password_reaches_an_error_line(warehouse: DuckDBWarehouse) -> None:
    with pytest.raises(InputError) as bad_uri:
        PostgresSource("postgresql://app:Sup3rS3cret@[::1:5432/retail")
    with pytest.raises(PipelineError) as refused:
        source = PostgresSource(
            "host=127.0.0.1 port=9 user=app password=Sup3rS3cret dbname=x",
            retry=Retry(attempts=1),
        )
        load(warehouse, source)
    for failure in (bad_uri, refused):
        assert "Sup3rS3cret" not in str(failure.value) and "\n" not in str(failure.value)
