"""A warehouse written by Bronze schema 1 is refused with one line naming `migrate`, never
misread (tests/warehouse/test_migrate.py upgrades one)."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from retail_pipeline.errors import WarehouseError
from retail_pipeline.events.contract import REFERENCE_FIELDS, TOPICS, event_fields
from retail_pipeline.warehouse.base import EVENT_TABLES
from retail_pipeline.warehouse.bronze import bronze_tables
from retail_pipeline.warehouse.duckdb import DuckDBWarehouse
from tests.cli.run import cli, one_error_line


def v1_warehouse(path: Path) -> Path:
    """A file as the previous version wrote it: JSON payloads only, schema_version 1."""
    con = duckdb.connect(str(path))
    con.execute("create schema bronze")
    con.execute("create table bronze._meta (key varchar primary key, value varchar not null)")
    con.execute("insert into bronze._meta values ('schema_version', '1')")
    con.execute(
        "create table bronze.order_events (event_id varchar, event_type varchar,"
        " event_timestamp timestamptz, payload json)"
    )
    con.execute(
        "insert into bronze.order_events values"
        " ('e', 'order_created', '2026-01-01 00:00:00+00', '{\"order_total\": 1e309}')"
    )
    con.close()
    return path


def test_the_warehouse_refuses_a_v1_file(tmp_path: Path) -> None:
    path = v1_warehouse(tmp_path / "old.duckdb")
    for read_only in (False, True):
        with pytest.raises(WarehouseError, match="schema version 1") as caught:
            DuckDBWarehouse(path, read_only=read_only)
        assert "retail-pipeline migrate" in str(caught.value)
    con = duckdb.connect(str(path), read_only=True)
    columns = con.execute("select count(*) from duckdb_columns() where table_name = 'order_events'")
    assert columns.fetchone() == (4,), "nothing was added to the old file"
    con.close()


@pytest.mark.parametrize(
    "args",
    [
        ["ingest", "--from-files", "{events}"],
        ["load-batch", "--products", "{products}"],
        ["counts"],
        ["transform"],
        ["answers"],
        ["redrive"],
    ],
)
def test_every_command_refuses_a_v1_file_in_one_line(tmp_path: Path, args: list[str]) -> None:
    path = v1_warehouse(tmp_path / "old.duckdb")
    (tmp_path / "e.ndjson").write_text("{}\n")
    (tmp_path / "p.json").write_text("[]")
    argv = [a.format(events=tmp_path / "e.ndjson", products=tmp_path / "p.json") for a in args]
    one_error_line(cli(*argv, warehouse=path, cwd=tmp_path), "schema version 1", "migrate")


def test_bronze_columns_come_from_the_contract() -> None:
    tables = bronze_tables()
    for topic in TOPICS:
        names = [name for name, _, _ in tables[EVENT_TABLES[topic]]]
        fields = [f.name for f in event_fields(topic)]
        assert names[: len(fields)] == fields
        assert "payload" in names and "_offset" in names
    for entity, fields in REFERENCE_FIELDS.items():
        assert [name for name, _, _ in tables[entity]][: len(fields)] == [f.name for f in fields]


def test_the_ddl_creates_exactly_those_columns(tmp_path: Path) -> None:
    with DuckDBWarehouse(tmp_path / "wh.duckdb") as wh:
        for table, columns in bronze_tables().items():
            described = wh.con.execute(f"describe bronze.{table}").fetchall()
            assert [(row[0], row[2] == "NO") for row in described] == [
                (name, not_null) for name, _, not_null in columns
            ]


def test_the_validator_hands_over_exactly_the_bronze_column_types(tmp_path: Path) -> None:
    """No silent cast on the way in: Arrow types from the validator equal the DDL's types."""
    import orjson

    from retail_pipeline.events.validator import validate_events, validate_records
    from tests.messages import BASES

    validated = validate_events([orjson.dumps(event) for event in BASES])
    assert validated.dead_reasons == []
    records = {
        "customers": b'{"customer_id":"C1","name":"A","email":"a@x","country":"DE",'
        b'"created_at":"2026-01-01T00:00:00Z"}',
        "products": b'{"product_id":"P1","product_name":"M","category":"c","price":1.5,'
        b'"active":true}',
    }
    tables = {EVENT_TABLES[topic]: table for topic, table in validated.events.items()}
    for entity, record in records.items():
        tables[entity] = validate_records(entity, [record]).rows
    assert set(tables) == set(bronze_tables())
    with DuckDBWarehouse(tmp_path / "wh.duckdb") as wh:
        for name, arrow in tables.items():
            wh.con.register("arrow", arrow)
            given = {
                row[0]: row[1] for row in wh.con.execute("describe select * from arrow").fetchall()
            }
            wh.con.unregister("arrow")
            stored = {
                row[0]: row[1] for row in wh.con.execute(f"describe bronze.{name}").fetchall()
            }
            typed = [column for column, _, _ in bronze_tables()[name] if column in given]
            assert typed, name
            for column in typed:
                assert given[column] == stored[column], (name, column)


@pytest.mark.parametrize(
    "args", [["counts"], ["migrate"], ["migrate", "--dry-run"], ["redrive", "--dry-run"]]
)
def test_a_newer_version_is_refused_by_every_command_migrate_included(
    tmp_path: Path, args: list[str]
) -> None:
    path = v1_warehouse(tmp_path / "new.duckdb")
    con = duckdb.connect(str(path))
    con.execute("update bronze._meta set value = '99' where key = 'schema_version'")
    con.close()
    one_error_line(cli(*args, warehouse=path, cwd=tmp_path), "schema version 99", "newer")


def test_migrate_creates_no_warehouse(tmp_path: Path) -> None:
    missing = tmp_path / "missing.duckdb"
    one_error_line(cli("migrate", warehouse=missing, cwd=tmp_path), "nothing to migrate")
    assert not missing.exists()
