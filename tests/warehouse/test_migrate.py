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
from pathlib import Path

import duckdb
import pytest

from retail_pipeline.simulation.truth import compare_with_truth
from retail_pipeline.transform import read_answers
from retail_pipeline.warehouse.base import EVENT_TABLES, SCHEMA_VERSION
from retail_pipeline.warehouse.bronze import bronze_tables
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
    # A dead letter version 1 accepted: a file line, a JSON object with the envelope.
    accepted = """
        from f.bronze.dead_letter where _source_kind = 'file'
        and json_valid(raw_payload) and json_type(raw_payload::json) = 'OBJECT'
        and (raw_payload::json->>'event_id') is not null
        and try_cast(raw_payload::json->>'event_timestamp' as timestamptz) is not null
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
    keep = f"select * from f.bronze.dead_letter except select * {accepted}"
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


def bronze_rows(path: Path) -> dict[str, list[str]]:
    """Every Bronze table's rows, sorted, each as text (columns in the current DDL's order)."""
    con = duckdb.connect(str(path), read_only=True)
    con.execute("set timezone = 'UTC'")
    try:
        out = {}
        for table in [*bronze_tables(), "dead_letter", "_positions", "_loads"]:
            rows = con.execute(f"select * from bronze.{table}").fetchall()
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
    interrupted = 0
    for _ in range(2):
        process = _migrate_process(killed)
        # the step's transaction runs in about the first half after start-up, then the commit
        # and the checkpoint when the file closes (a kill there is a crash after the commit)
        time.sleep(startup + rng.uniform(0.1, 0.6) * (took - startup))
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        interrupted += process.returncode == -signal.SIGKILL and stored_version(killed) == 1
    assert interrupted, f"no kill landed mid-migration (an uninterrupted run took {took:.1f} s)"
    if stored_version(killed) == 1:
        ok(cli("migrate", warehouse=killed, cwd=tmp_path))
    assert bronze_rows(killed) == expected
