"""`retail-pipeline migrate`: a Bronze of schema version 1 upgraded in place equals a fresh load.

The version-1 Bronze is built from version 1's DDL (git: schema.sql before the typed columns)
and the payloads of a faulted simulation, as version 1 would have stored them: every message
version 1 accepted (a JSON object with an event id, type and timestamp) in its event table, so
the rows today's contract refuses are among the stored ones, and migrate must move them to
``dead_letter``.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pytest

from retail_pipeline.errors import WarehouseError
from retail_pipeline.local.snowflake_emulator import endpoint_settings
from retail_pipeline.simulation.truth import compare_with_truth
from retail_pipeline.transform import read_answers
from retail_pipeline.warehouse import migrations
from retail_pipeline.warehouse.base import EVENT_TABLES, SCHEMA_VERSION
from retail_pipeline.warehouse.bronze import bronze_tables
from retail_pipeline.warehouse.migrations import migrate_snowflake
from retail_pipeline.warehouse.redrive import redrive_warehouse
from retail_pipeline.warehouse.snowflake import SnowflakeWarehouse, all_tables
from tests.cli.run import COMMAND, cli, ok, one_error_line
from tests.transform.conftest import HEAVY_FAULTS, load, transform

V1_DDL = """
create schema bronze;
create table bronze._meta (key varchar primary key, value varchar not null);
create table bronze.order_events (
    event_id varchar not null, event_type varchar not null,
    event_timestamp timestamptz not null, payload json not null,
    _topic varchar not null, _partition integer, _offset bigint not null, _key varchar,
    _kafka_ts timestamptz, _source_file varchar, _source_line bigint,
    _ingested_at timestamptz not null, _load_id varchar not null
);
create table bronze.payment_events as select * from bronze.order_events limit 0;
create table bronze.shipment_events as select * from bronze.order_events limit 0;
create table bronze.customers (
    customer_id varchar not null, payload json not null, _source_file varchar not null,
    _record_number bigint not null, _content_hash varchar not null,
    _ingested_at timestamptz not null, _load_id varchar not null
);
create table bronze.products (
    product_id varchar not null, payload json not null, _source_file varchar not null,
    _record_number bigint not null, _content_hash varchar not null,
    _ingested_at timestamptz not null, _load_id varchar not null
);
create table bronze.dead_letter (
    _source_kind varchar not null, _topic varchar, _partition integer, _offset bigint,
    _key varchar, _kafka_ts timestamptz, _source_file varchar, _source_line bigint,
    raw_payload varchar, reason varchar not null, _ingested_at timestamptz not null,
    _load_id varchar not null
);
create table bronze._positions (
    source varchar not null, partition integer not null, next_offset bigint not null,
    next_line bigint, fingerprint varchar, updated_at timestamptz not null,
    load_id varchar not null, primary key (source, partition)
);
create table bronze._loads (
    load_id varchar not null, kind varchar not null, source varchar not null,
    content_hash varchar, started_at timestamptz not null, finished_at timestamptz not null,
    rows_read bigint not null, rows_loaded bigint not null, rows_dead_lettered bigint not null
);
"""
"""Version 1's Bronze DDL (schema.sql at the commit before the typed columns, ac9e1bc^)."""

V2_DDL = """
create schema bronze;
create table bronze._meta (
    key varchar primary key,
    value varchar not null
);
create table bronze.dead_letter (
    _source_kind varchar not null,
    _topic varchar,
    _partition integer,
    _offset bigint,
    _key varchar,
    _kafka_ts timestamptz,
    _source_file varchar,
    _source_line bigint,
    raw_payload varchar,
    reason varchar not null,
    _ingested_at timestamptz not null,
    _load_id varchar not null
);
create table bronze._positions (
    source varchar not null,
    partition integer not null,
    next_offset bigint not null,
    next_line bigint,
    fingerprint varchar,

    updated_at timestamptz not null,
    load_id varchar not null,
    primary key (source, partition)
);
create table bronze._loads (
    load_id varchar not null,
    kind varchar not null,
    source varchar not null,
    content_hash varchar,
    started_at timestamptz not null,
    finished_at timestamptz not null,
    rows_read bigint not null,
    rows_loaded bigint not null,
    rows_dead_lettered bigint not null
);
create table bronze.order_events (
    event_id varchar not null,
    event_type varchar not null,
    event_version integer not null,
    event_timestamp timestamptz not null,
    produced_at timestamptz not null,
    source_system varchar not null,
    order_id varchar not null,
    customer_id varchar not null,
    order_total decimal(18, 2) not null,
    currency varchar not null,
    order_status varchar not null,
    items struct(product_id varchar, quantity bigint, unit_price decimal(20, 4))[],
    payload varchar not null,
    _topic varchar not null,
    _partition integer,
    _offset bigint not null,
    _key varchar,
    _kafka_ts timestamptz,
    _source_file varchar,
    _source_line bigint,
    _ingested_at timestamptz not null,
    _load_id varchar not null
);
create table bronze.payment_events (
    event_id varchar not null,
    event_type varchar not null,
    event_version integer not null,
    event_timestamp timestamptz not null,
    produced_at timestamptz not null,
    source_system varchar not null,
    payment_id varchar not null,
    order_id varchar not null,
    amount decimal(18, 2) not null,
    currency varchar not null,
    payment_method varchar not null,
    payment_status varchar not null,
    payload varchar not null,
    _topic varchar not null,
    _partition integer,
    _offset bigint not null,
    _key varchar,
    _kafka_ts timestamptz,
    _source_file varchar,
    _source_line bigint,
    _ingested_at timestamptz not null,
    _load_id varchar not null
);
create table bronze.shipment_events (
    event_id varchar not null,
    event_type varchar not null,
    event_version integer not null,
    event_timestamp timestamptz not null,
    produced_at timestamptz not null,
    source_system varchar not null,
    shipment_id varchar not null,
    order_id varchar not null,
    carrier varchar not null,
    shipment_status varchar not null,
    payload varchar not null,
    _topic varchar not null,
    _partition integer,
    _offset bigint not null,
    _key varchar,
    _kafka_ts timestamptz,
    _source_file varchar,
    _source_line bigint,
    _ingested_at timestamptz not null,
    _load_id varchar not null
);
create table bronze.customers (
    customer_id varchar not null,
    name varchar not null,
    email varchar not null,
    country varchar not null,
    created_at timestamptz not null,
    payload varchar not null,
    _source_file varchar not null,
    _record_number bigint not null,
    _content_hash varchar not null,
    _ingested_at timestamptz not null,
    _load_id varchar not null
);
create table bronze.products (
    product_id varchar not null,
    product_name varchar not null,
    category varchar not null,
    price decimal(18, 2) not null,
    active boolean not null,
    payload varchar not null,
    _source_file varchar not null,
    _record_number bigint not null,
    _content_hash varchar not null,
    _ingested_at timestamptz not null,
    _load_id varchar not null
);
"""
"""Version 2's Bronze DDL (``schema_statements()`` at 500a19c, before version 3's columns)."""

# Messages version 1 stored although today's contract refuses them: only the envelope was
# checked then. Each is one line of an extra event file, loaded with the simulation's.
V1_ONLY = [
    {"event_id": "v1-a", "event_type": "order_created", "event_timestamp": "2026-01-01T00:00:00Z"},
    {
        "event_id": "v1-b",
        "event_type": "payment_captured",
        "event_timestamp": "2026-01-02T10:00:00Z",
        "amount": "not money",
    },
]
TOPIC_OF = {"order": "orders", "payment": "payments", "shipment": "shipments"}


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(simulation folder, a Bronze freshly loaded from it by today's loaders)."""
    from retail_pipeline.simulation import generate

    root = tmp_path_factory.mktemp("migrate-sim")
    generate(root, days=3, orders_per_day=60, seed=25, faults=HEAVY_FAULTS)
    extra = root / "events" / "zz-v1-only.ndjson"
    extra.write_text("".join(json.dumps(event) + "\n" for event in V1_ONLY))
    warehouse = tmp_path_factory.mktemp("migrate-fresh") / "fresh.duckdb"
    load(
        warehouse,
        snapshots=sorted((root / "snapshots").iterdir()),
        events=sorted((root / "events").glob("*.ndjson")),
    )
    return root, warehouse


def build_v1(fresh: Path, path: Path, *, copies: int = 1) -> int:
    """A version-1 Bronze holding what version 1 stored of ``fresh``'s sources; returns how
    many of its event rows today's contract refuses. ``copies`` > 1 repeats the event rows
    (a larger Bronze for the kill test)."""
    con = duckdb.connect(str(path))
    con.execute("set timezone = 'UTC'")
    for statement in V1_DDL.split(";"):
        if statement.strip():
            con.execute(statement)
    con.execute("insert into bronze._meta values ('schema_version', '1')")
    con.execute(f"attach '{fresh}' as f (read_only)")
    envelope = "event_id, event_type, event_timestamp, payload"
    metadata = (
        "_topic, _partition, _offset, _key, _kafka_ts, _source_file, _source_line,"
        " _ingested_at, _load_id"
    )
    for _ in range(copies):
        for table in EVENT_TABLES.values():
            con.execute(
                f"insert into bronze.{table} select {envelope}, {metadata} from f.bronze.{table}"
            )
    for entity, key in (("customers", "customer_id"), ("products", "product_id")):
        con.execute(
            f"insert into bronze.{entity} select {key}, payload, _source_file, _record_number,"
            f" _content_hash, _ingested_at, _load_id from f.bronze.{entity}"
        )
    # A dead letter version 1 accepted: a file line, a JSON object with the envelope (a
    # timestamp Python reads: not year 0, which DuckDB's cast takes and no client can return).
    accepted = """
        from f.bronze.dead_letter where _source_kind = 'file'
        and json_valid(raw_payload) and json_type(raw_payload::json) = 'OBJECT'
        and (raw_payload::json->>'event_id') is not null
        and try_cast(raw_payload::json->>'event_timestamp' as timestamptz)
            between timestamptz '0001-01-01 00:00:00+00' and timestamptz '9999-12-31 23:59:59+00'
        and split_part(raw_payload::json->>'event_type', '_', 1) in ('order', 'payment', 'shipment')
    """
    for prefix, topic in TOPIC_OF.items():
        table = EVENT_TABLES[topic]
        con.execute(
            f"insert into bronze.{table} select raw_payload::json->>'event_id',"
            " raw_payload::json->>'event_type',"
            " cast(raw_payload::json->>'event_timestamp' as timestamptz), raw_payload,"
            f" '{topic}', _partition, _offset, _key, _kafka_ts, _source_file, _source_line,"
            f" _ingested_at, _load_id {accepted}"
            f" and split_part(raw_payload::json->>'event_type', '_', 1) = '{prefix}'"
        )
    dead = (  # version 1's dead_letter columns
        "_source_kind, _topic, _partition, _offset, _key, _kafka_ts, _source_file, _source_line,"
        " raw_payload, reason, _ingested_at, _load_id"
    )
    keep = f"select {dead} from f.bronze.dead_letter except select {dead} {accepted}"
    con.execute(f"insert into bronze.dead_letter {keep}")
    con.execute("insert into bronze._positions select * from f.bronze._positions")
    con.execute(
        f"""insert into bronze._loads select l.load_id, kind, source, content_hash, started_at,
        finished_at, rows_read, rows_loaded + coalesce(n, 0), rows_dead_lettered - coalesce(n, 0)
        from f.bronze._loads l left join (select _load_id, count(*) n {accepted} group by all) d
        on d._load_id = l.load_id"""
    )
    row = con.execute(f"select count(*) {accepted}").fetchone()
    con.close()
    assert row is not None
    return int(row[0])


def _by_name(table: str, live: list[str]) -> str:
    """The columns of the current DDL of ``table`` that the live table has, in the DDL's order
    (a column added in place comes last in the table, where a fresh load has it elsewhere)."""
    have = {name.lower() for name in live}
    return ", ".join(name for name, _, _ in all_tables()[table] if name.lower() in have)


def bronze_rows(path: Path) -> dict[str, list[str]]:
    """Every Bronze table's rows, sorted, each as text (columns in the current DDL's order)."""
    con = duckdb.connect(str(path), read_only=True)
    con.execute("set timezone = 'UTC'")
    try:
        out = {}
        for table in [*bronze_tables(), "dead_letter", "_positions", "_loads"]:
            live = con.execute(
                "select column_name from information_schema.columns"
                " where table_schema = 'bronze' and table_name = ?",
                [table],
            ).fetchall()
            columns = _by_name(table, [name for (name,) in live])
            rows = con.execute(f"select {columns} from bronze.{table}").fetchall()
            out[table] = sorted(map(repr, rows))
        version = con.execute("select value from bronze._meta where key = 'schema_version'")
        out["_meta"] = [repr(version.fetchone())]
        return out
    finally:
        con.close()


def stored_version(path: Path) -> int:
    con = duckdb.connect(str(path), read_only=True)
    try:
        row = con.execute("select value from bronze._meta where key = 'schema_version'")
        return int(row.fetchone()[0])  # type: ignore[index]
    finally:
        con.close()


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_v1_bronze_is_refused_until_migrated_then_equals_a_fresh_load(
    fresh: tuple[Path, Path], tmp_path: Path
) -> None:
    root, fresh_path = fresh
    old = tmp_path / "old.duckdb"
    refused = build_v1(fresh_path, old)
    assert refused >= len(V1_ONLY), "the v1 Bronze holds rows today's contract refuses"

    one_error_line(cli("counts", warehouse=old, cwd=tmp_path), "schema version 1", "migrate")

    before = digest(old)
    dry = "\n".join(ok(cli("migrate", "--dry-run", warehouse=old, cwd=tmp_path)))
    assert "dry run" in dry and "1 -> 2" in dry, dry
    counts = re.findall(r"([\d,]+) to dead_letter", dry)
    assert sum(int(n.replace(",", "")) for n in counts) == refused, dry
    assert digest(old) == before, "a dry run writes nothing"
    assert stored_version(old) == 1

    done = "\n".join(ok(cli("migrate", warehouse=old, cwd=tmp_path)))
    assert f"now at schema version {SCHEMA_VERSION}" in done, done
    assert "next: `retail-pipeline transform --full-refresh` once" in done, done
    assert bronze_rows(old) == bronze_rows(fresh_path), "migrated Bronze == a fresh load"
    con = duckdb.connect(str(old), read_only=True)
    [(record,)] = con.execute(
        "select value from bronze._meta where key = 'migration:1->2'"
    ).fetchall()
    dead = con.execute(
        "select reason, _source_file, _source_line from bronze.dead_letter"
        " where raw_payload like '%\"v1-_\"%' order by _source_line"
    ).fetchall()
    con.close()
    assert json.loads(record)["rows_dead_lettered"] == refused
    assert json.loads(record)["step"] == "typed_columns"
    assert [(Path(f).name, line) for _, f, line in dead] == [
        ("zz-v1-only.ndjson", 1),
        ("zz-v1-only.ndjson", 2),
    ]
    assert all(reason for reason, _, _ in dead)

    again = "\n".join(ok(cli("migrate", warehouse=old, cwd=tmp_path)))
    assert "nothing to migrate" in again
    assert bronze_rows(old) == bronze_rows(fresh_path)

    transform(old)
    truth = json.loads((root / "truth.json").read_text())
    assert compare_with_truth(read_answers(old), truth) == {}


def _migrate_process(path: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "RETAIL_WAREHOUSE": str(path)}
    return subprocess.Popen(
        [*COMMAND, "migrate"],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def test_a_killed_migration_reruns_to_the_same_result(
    fresh: tuple[Path, Path], tmp_path: Path
) -> None:
    template = tmp_path / "template.duckdb"
    build_v1(fresh[1], template, copies=80)
    reference = tmp_path / "reference.duckdb"
    shutil.copy(template, reference)
    started = time.monotonic()
    process = _migrate_process(reference)
    assert process.wait(timeout=120) == 0, process.stderr.read() if process.stderr else ""
    took = time.monotonic() - started
    expected = bronze_rows(reference)
    started = time.monotonic()
    assert _migrate_process(reference).wait(timeout=60) == 0  # nothing to do: start-up alone
    startup = time.monotonic() - started
    assert took > startup + 0.5, f"the Bronze is too small to kill mid-way ({took:.1f} s)"

    killed = tmp_path / "killed.duckdb"
    shutil.copy(template, killed)
    rng = random.Random()
    interrupted = attempts = 0
    # two kills; more (at most 6) while none landed mid-way: a loaded machine moves the window
    while attempts < 2 or (not interrupted and attempts < 6):
        attempts += 1
        if stored_version(killed) == SCHEMA_VERSION:  # the last run finished: start over
            shutil.copy(template, killed)
        process = _migrate_process(killed)
        # the step's transaction runs in about the first half after start-up, then the commit
        # and the checkpoint when the file closes (a kill there is a crash after the commit)
        time.sleep(startup + rng.uniform(0.1, 0.6) * (took - startup))
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        # killed mid-way: in a step, or between two (1 -> 2 committed, 2 -> 3 not yet)
        interrupted += (
            process.returncode == -signal.SIGKILL and stored_version(killed) < SCHEMA_VERSION
        )
    assert interrupted, f"no kill landed mid-migration (an uninterrupted run took {took:.1f} s)"
    if stored_version(killed) < SCHEMA_VERSION:
        ok(cli("migrate", warehouse=killed, cwd=tmp_path))
    assert bronze_rows(killed) == expected


# -- Snowflake (fakesnow's server) -------------------------------------------------------------


def _duck_tables(path: Path) -> dict[str, pa.Table]:
    """Every table of the Bronze in ``path`` as Arrow (timestamps in UTC)."""
    con = duckdb.connect(str(path), read_only=True)
    con.execute("set timezone = 'UTC'")
    try:
        names = [
            name
            for (name,) in con.execute(
                "select table_name from information_schema.tables where table_schema = 'bronze'"
                " and table_name <> '_meta' order by table_name"
            ).fetchall()
        ]
        return {
            name: con.execute(f"select * from bronze.{name}").to_arrow_table() for name in names
        }
    finally:
        con.close()


def snowflake_v1(args: dict[str, Any], database: str, duck_v1: Path) -> None:
    """A version-1 Bronze on Snowflake: version 1's DDL (each type spelt the Snowflake way, the
    payload the bytes, a VARCHAR, as today's) holding the rows of the version-1 DuckDB file
    ``duck_v1``. (A VARIANT would not keep them: "1e16" comes back as "10000000000000000".)"""
    import snowflake.connector

    from retail_pipeline.warehouse.snowflake import _TYPE_WORDS, snowflake_type

    bronze = f"{database}.BRONZE"
    ddl = _TYPE_WORDS.sub(lambda m: snowflake_type(m[1]), V1_DDL.replace(" json ", " varchar "))
    ddl = re.sub(r"\bbronze\b", bronze, ddl)
    with snowflake.connector.connect(**args, database=database) as con:
        cur = con.cursor()
        for statement in ddl.split(";"):
            if statement.strip():
                cur.execute(statement)
        cur.execute(f"insert into {bronze}._meta values ('schema_version', '1')")
    with SnowflakeWarehouse(args, database=database, migrating=True) as wh:
        _fill(wh, _duck_tables(duck_v1))


def _plain(schema: pa.Schema) -> pa.Schema:
    """``schema`` without DuckDB's JSON extension type (a string to Parquet)."""
    return pa.schema(
        [
            pa.field(f.name, pa.string() if isinstance(f.type, pa.ExtensionType) else f.type)
            for f in schema
        ]
    )


def _fill(wh: SnowflakeWarehouse, tables: dict[str, pa.Table]) -> None:
    """Bronze tables COPYed in from Parquet, as the loaders write them; the bookkeeping tables
    (a few rows) inserted."""
    for table, rows in tables.items():
        if not rows.num_rows:
            continue
        if table in ("_positions", "_loads"):
            marks = ", ".join(
                "cast(? as timestamp_tz)" if pa.types.is_timestamp(f.type) else "?"
                for f in rows.schema
            )
            values = [
                v.isoformat() if hasattr(v, "isoformat") else v
                for row in rows.to_pylist()
                for v in row.values()
            ]
            wh.execute(
                f"insert into {wh.bronze}.{table} ({', '.join(rows.column_names)})"
                f" values {', '.join([f'({marks})'] * rows.num_rows)}",
                values,
            )
        else:
            wh.copy_rows(table, rows.cast(_plain(rows.schema)))


def snowflake_fresh(args: dict[str, Any], database: str, fresh: Path) -> None:
    """The fresh load's Bronze on the Snowflake target: its rows COPYed in as the loaders do."""
    with SnowflakeWarehouse(args, database=database) as wh:
        _fill(wh, _duck_tables(fresh))


def snowflake_rows(args: dict[str, Any], database: str) -> dict[str, list[str]]:
    """:func:`bronze_rows` of a Snowflake Bronze (every table's rows, sorted, as text)."""
    with SnowflakeWarehouse(args, database=database, read_only=True, migrating=True) as wh:
        out = {}
        for table in [*bronze_tables(), "dead_letter", "_positions", "_loads"]:
            columns = _by_name(table, wh.columns(table))
            out[table] = sorted(map(repr, wh.query(f"select {columns} from {wh.bronze}.{table}")))
        out["_meta"] = [
            repr(wh.query(f"select value from {wh.bronze}._meta where key = 'schema_version'"))
        ]
        out["tables"] = sorted(wh.tables("bronze"))
        return out


def snowflake_migrate(args: dict[str, Any], database: str, *, dry_run: bool = False) -> Any:
    with SnowflakeWarehouse(args, database=database, read_only=dry_run, migrating=True) as wh:
        return migrate_snowflake(wh, dry_run=dry_run)


@pytest.fixture(scope="module")
def snowflake_bronzes(
    fresh: tuple[Path, Path],
    fakesnow_server: dict[str, Any],
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[dict[str, list[str]], Path, int]:
    """(the fresh load's Bronze on Snowflake, read back; the version-1 DuckDB file; how many of
    its rows today's contract refuses)."""
    duck_v1 = tmp_path_factory.mktemp("migrate-sf") / "v1.duckdb"
    refused = build_v1(fresh[1], duck_v1)
    database = f"F_{uuid.uuid4().hex[:12].upper()}"
    snowflake_fresh(fakesnow_server, database, fresh[1])
    return snowflake_rows(fakesnow_server, database), duck_v1, refused


def test_a_v1_snowflake_bronze_migrates_to_a_fresh_load(
    snowflake_bronzes: tuple[dict[str, list[str]], Path, int],
    snowflake_args: dict[str, Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    expected, duck_v1, refused = snowflake_bronzes
    args = dict(snowflake_args)
    database = args.pop("database")
    snowflake_v1(args, database, duck_v1)
    with pytest.raises(WarehouseError, match=r"schema version 1.*retail-pipeline migrate"):
        SnowflakeWarehouse(args, database=database)

    before = snowflake_rows(args, database)
    dry = snowflake_migrate(args, database, dry_run=True)
    assert [s.dead_lettered for s in dry.steps] == [refused, 0]
    assert snowflake_rows(args, database) == before, "a dry run writes nothing"

    # the command: settings name the endpoint, as for every --target snowflake command
    env = {**endpoint_settings(args, database), "RETAIL_TARGET": "snowflake"}
    done = "\n".join(ok(cli("migrate", warehouse=tmp_path / "none", cwd=tmp_path, **env)))
    assert f"now at schema version {SCHEMA_VERSION}" in done, done
    assert snowflake_rows(args, database) == expected, "migrated Bronze == a fresh load"
    with SnowflakeWarehouse(args, database=database, read_only=True) as wh:
        [(record,)] = wh.query(f"select value from {wh.bronze}._meta where key = 'migration:1->2'")
    assert json.loads(record)["rows_dead_lettered"] == refused

    again = "\n".join(ok(cli("migrate", warehouse=tmp_path / "none", cwd=tmp_path, **env)))
    assert "nothing to migrate" in again
    assert snowflake_rows(args, database) == expected


class Crash(Exception):
    """Stands for a kill at a point of the migration (nothing catches it: no cleanup runs)."""


@pytest.mark.parametrize(
    "point", ["mid-build", "before the swaps", "between two swaps", "before the drops"]
)
def test_an_interrupted_snowflake_migration_reruns_to_the_same_result(
    point: str,
    snowflake_bronzes: tuple[dict[str, list[str]], Path, int],
    snowflake_args: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    expected, duck_v1, _ = snowflake_bronzes
    args = dict(snowflake_args)
    database = args.pop("database")
    snowflake_v1(args, database, duck_v1)
    swap, drop = migrations._swap, migrations._drop_aside
    swaps: list[str] = []

    def crashing_swap(warehouse: SnowflakeWarehouse, table: str) -> None:
        if point == "before the swaps" or (point == "between two swaps" and len(swaps) == 2):
            raise Crash(point)
        swap(warehouse, table)
        swaps.append(table)

    def crashing_drop(warehouse: SnowflakeWarehouse) -> None:
        raise Crash(point)

    copy_rows = SnowflakeWarehouse.copy_rows
    copies: list[str] = []

    def crashing_copy(warehouse: SnowflakeWarehouse, table: str, rows: pa.Table, into: Any) -> None:
        if point == "mid-build" and len(copies) == 3:
            raise Crash(point)
        copy_rows(warehouse, table, rows, into)
        copies.append(table)

    monkeypatch.setattr(SnowflakeWarehouse, "copy_rows", crashing_copy)
    monkeypatch.setattr(migrations, "_swap", crashing_swap)
    if point == "before the drops":
        monkeypatch.setattr(migrations, "_drop_aside", crashing_drop)
    with pytest.raises(Crash):
        snowflake_migrate(args, database)
    monkeypatch.setattr(SnowflakeWarehouse, "copy_rows", copy_rows)
    monkeypatch.setattr(migrations, "_swap", swap)
    monkeypatch.setattr(migrations, "_drop_aside", drop)
    version = snowflake_migrate(args, database).from_version
    assert version == (2 if point == "before the drops" else 1)
    assert snowflake_rows(args, database) == expected
    with SnowflakeWarehouse(args, database=database, read_only=True) as wh:
        records = wh.query(
            f"select key from {wh.bronze}._meta where key like 'migrat%' order by key"
        )
    assert records == [("migration:1->2",), ("migration:2->3",)], "a record a step, no state left"


def test_migrate_on_a_snowflake_database_with_no_bronze_says_so(
    snowflake_args: dict[str, Any], tmp_path: Path
) -> None:
    """Nothing loaded yet: nothing to migrate, and said so, not "at schema version N"."""
    import snowflake.connector

    args = dict(snowflake_args)
    database = args.pop("database")
    with snowflake.connector.connect(**args) as con:
        con.cursor().execute(f"create database {database}")
    env = {**endpoint_settings(args, database), "RETAIL_TARGET": "snowflake"}
    for extra in ((), ("--dry-run",)):
        done = cli("migrate", *extra, warehouse=tmp_path / "none", cwd=tmp_path, **env)
        out = "\n".join(ok(done))
        assert "no schema version (nothing loaded yet): nothing to migrate" in out, out


# -- version 2 -> 3 ----------------------------------------------------------------------------


def _v2_columns() -> dict[str, list[str]]:
    """Version 2's columns of each table, from :data:`V2_DDL` (created in memory)."""
    con = duckdb.connect()
    try:
        for statement in V2_DDL.split(";"):
            if statement.strip():
                con.execute(statement)
        rows = con.execute(
            "select table_name, column_name from information_schema.columns"
            " where table_schema = 'bronze' order by table_name, ordinal_position"
        ).fetchall()
    finally:
        con.close()
    tables: dict[str, list[str]] = {}
    for table, column in rows:
        tables.setdefault(table, []).append(column)
    return tables


@pytest.fixture(scope="module")
def old_release(fresh: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``fresh``'s sources loaded by a release that did not know ``order_created`` version 2
    (the contract's versions as before it): those messages are dead letters (today's DDL)."""
    from retail_pipeline.events import contract

    path = tmp_path_factory.mktemp("migrate-old-release") / "old.duckdb"
    root = fresh[0]
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(contract.EVENT_VERSIONS, "order_created", frozenset({1}))
        load(
            path,
            snapshots=sorted((root / "snapshots").iterdir()),
            events=sorted((root / "events").glob("*.ndjson")),
        )
    return path


def build_v2(source: Path, path: Path) -> None:
    """A version-2 Bronze holding ``source``'s rows (a load by a release of version 2's
    contract) in version 2's columns; a column version 2 lacks must be null in all of them."""
    con = duckdb.connect(str(path))
    con.execute("set timezone = 'UTC'")
    for statement in V2_DDL.split(";"):
        if statement.strip():
            con.execute(statement)
    con.execute("insert into bronze._meta values ('schema_version', '2')")
    con.execute(f"attach '{source}' as f (read_only)")
    for table, columns in _v2_columns().items():
        if table == "_meta":
            continue
        new = [n for n, _, _ in all_tables()[table] if n not in columns]
        con.execute(f"insert into bronze.{table} select {', '.join(columns)} from f.bronze.{table}")
        for name in new:
            [(n,)] = con.execute(
                f"select count(*) from f.bronze.{table} where {name} is not null"
            ).fetchall()
            assert n == 0, f"{table}.{name}: a version-2 Bronze cannot hold a value there"
    con.close()


def test_a_v2_bronze_is_refused_until_migrated_then_equals_a_fresh_load(
    fresh: tuple[Path, Path], old_release: Path, tmp_path: Path
) -> None:
    """... then Silver and Gold are built, the version-2 orders the old release dead-lettered
    are redriven, and an incremental build answers the simulation's truth."""
    old = tmp_path / "v2.duckdb"
    build_v2(old_release, old)
    one_error_line(cli("counts", warehouse=old, cwd=tmp_path), "schema version 2", "migrate")

    before = digest(old)
    dry = "\n".join(ok(cli("migrate", "--dry-run", warehouse=old, cwd=tmp_path)))
    assert "2 -> 3" in dry and "1 -> 2" not in dry, dry
    assert "+ redriven_at timestamptz" in dry and "+ redriven_by varchar" in dry, dry
    assert digest(old) == before, "a dry run writes nothing"

    done = "\n".join(ok(cli("migrate", warehouse=old, cwd=tmp_path)))
    assert f"now at schema version {SCHEMA_VERSION}" in done, done
    con = duckdb.connect(str(old), read_only=True)
    [(record,)] = con.execute(
        "select value from bronze._meta where key = 'migration:2->3'"
    ).fetchall()
    con.close()
    added = json.loads(record)["columns_added"]
    assert {"dead_letter.redriven_at", "dead_letter.redriven_by"} <= set(added), added
    assert bronze_rows(old) == bronze_rows(old_release), "migrated Bronze == a fresh load"

    transform(old)
    summary = redrive_warehouse(old)
    assert summary.redriven > 0, summary
    transform(old)  # incremental: the redriven events carry the redrive's _ingested_at
    truth = json.loads((fresh[0] / "truth.json").read_text())
    assert compare_with_truth(read_answers(old), truth) == {}
    con = duckdb.connect(str(old), read_only=True)
    [(dead, counted)] = con.execute(
        "select (select count(*) from bronze.dead_letter where redriven_at is null),"
        " (select sum(row_count) from silver.data_quality_summary"
        " where check_name = 'dead_letter')"
    ).fetchall()
    mismatch = con.execute(
        "select count(*) from silver.data_quality_summary"
        " where check_name = 'load_mismatch' and row_count <> 0"
    ).fetchall()
    con.close()
    assert counted == dead, "Silver counts a redriven message as loaded, not dead"
    assert mismatch == [(0,)]


def test_a_v2_snowflake_bronze_migrates_in_place(
    old_release: Path, snowflake_args: dict[str, Any], tmp_path: Path
) -> None:
    """Version 2 on Snowflake: today's tables less the columns version 2 lacks, its rows; the
    step adds them in place (a rerun after a crash between two adds adds only the rest)."""
    args = dict(snowflake_args)
    database = args.pop("database")
    expected_db = f"F_{uuid.uuid4().hex[:12].upper()}"
    snowflake_fresh(args, expected_db, old_release)
    expected = snowflake_rows(args, expected_db)
    duck_v2 = tmp_path / "v2.duckdb"
    build_v2(old_release, duck_v2)
    v2 = _v2_columns()
    with SnowflakeWarehouse(args, database=database) as wh:
        for table, columns in all_tables().items():
            for name, _, _ in columns:
                if table in v2 and name not in v2[table]:
                    wh.execute(f"alter table {wh.bronze}.{table} drop column {name}")
        wh.execute(f"update {wh.bronze}._meta set value = '2' where key = 'schema_version'")
    with SnowflakeWarehouse(args, database=database, migrating=True) as wh:
        _fill(wh, _duck_tables(duck_v2))
        # a crash after the first column was added: the rerun adds the others only
        wh.execute(f"alter table {wh.bronze}.dead_letter add column redriven_at timestamp_tz")
    with pytest.raises(WarehouseError, match=r"schema version 2.*retail-pipeline migrate"):
        SnowflakeWarehouse(args, database=database)
    dry = snowflake_migrate(args, database, dry_run=True)
    added = [(t, c) for t, c, _ in dry.steps[0].added_columns]
    assert ("dead_letter", "redriven_by") in added and ("dead_letter", "redriven_at") not in added
    assert snowflake_migrate(args, database).from_version == 2
    assert snowflake_rows(args, database) == expected, "migrated Bronze == a fresh load"
    assert not snowflake_migrate(args, database).steps
