"""`retail-pipeline redrive`: dead letters a changed contract accepts go to Bronze exactly once.

The dead letters come from a real load by an "older release": the simulation's files loaded
while the contract's ``EVENT_VERSIONS`` (read by the validator on every call) knows only
``order_created`` version 1, so its version-2 orders are dead letters ("unsupported version 2"),
beside the simulation's faults. Redrive, with today's contract, must then give the Bronze a
fresh load by today's release gives: every now-valid message in its table once, with its
original position, the rest left with today's reason.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pytest

from retail_pipeline.errors import InputError, WarehouseError
from retail_pipeline.events import contract
from retail_pipeline.warehouse.base import EVENT_TABLES
from retail_pipeline.warehouse.redrive import redrive_warehouse
from retail_pipeline.warehouse.snowflake import SnowflakeWarehouse
from tests.accounting import message_lines, stored_messages, unaccounted_rows
from tests.cli.run import cli, ok, one_error_line
from tests.transform.conftest import HEAVY_FAULTS, load

UNSUPPORTED = "unsupported version 2"
POSITION = "_source_file, _source_line, _offset"


@pytest.fixture(scope="module")
def bronzes(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list[Path]]:
    """(Bronze loaded by the older release, Bronze loaded by today's, the event files)."""
    from retail_pipeline.simulation import generate

    root = tmp_path_factory.mktemp("redrive-sim")
    generate(root, days=2, orders_per_day=40, seed=7, faults=HEAVY_FAULTS)
    events = sorted((root / "events").glob("*.ndjson"))
    folder = tmp_path_factory.mktemp("redrive")
    old, fresh = folder / "old.duckdb", folder / "fresh.duckdb"
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(contract.EVENT_VERSIONS, "order_created", frozenset({1}))
        load(old, events=events)
    load(fresh, events=events)
    return old, fresh, events


def _copy(source: Path, tmp_path: Path, name: str = "w.duckdb") -> Path:
    path = tmp_path / name
    shutil.copy(source, path)
    return path


def _rows(path: Path, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
    with duckdb.connect(str(path), read_only=True) as con:
        con.execute("set timezone = 'UTC'")
        return con.execute(sql, params or []).fetchall()


def events_by_position(path: Path) -> list[tuple[Any, ...]]:
    """Every event row without its load stamp (``_load_id``, ``_ingested_at``), sorted."""
    out: list[tuple[Any, ...]] = []
    for table in EVENT_TABLES.values():
        columns = [
            name
            for (name,) in _rows(
                path,
                "select column_name from information_schema.columns where table_schema ="
                " 'bronze' and table_name = ? and column_name not in ('_load_id', '_ingested_at')"
                " order by ordinal_position",
                [table],
            )
        ]
        out += [
            (table, *map(repr, row))
            for row in _rows(path, f"select {', '.join(columns)} from bronze.{table}")
        ]
    return sorted(out)


def dead_by_position(path: Path) -> list[tuple[Any, ...]]:
    """The dead letters not redriven: (position, reason), sorted."""
    return sorted(
        _rows(path, f"select {POSITION}, reason from bronze.dead_letter where redriven_at is null")
    )


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_redrive_loads_what_the_contract_now_accepts_once_with_its_provenance(
    bronzes: tuple[Path, Path, list[Path]], tmp_path: Path
) -> None:
    old, fresh, events = bronzes
    path = _copy(old, tmp_path)
    unsupported = _rows(
        path, "select count(*) from bronze.dead_letter where contains(reason, ?)", [UNSUPPORTED]
    )[0][0]
    assert unsupported > 10, "the older release dead-lettered the version-2 orders"

    before = digest(path)
    dry = "\n".join(ok(cli("redrive", "--dry-run", warehouse=path, cwd=tmp_path)))
    assert digest(path) == before, "a dry run writes nothing"
    assert dry.startswith("dry run: redrive: checked"), dry

    summary = redrive_warehouse(path)
    assert f"would redrive {summary.redriven:,} " in dry, (dry, summary)
    assert 0 < summary.redriven <= unsupported
    assert summary.new_reason > 0, "a faulty version-2 order has today's reason now"
    assert summary.checked == summary.redriven + summary.still_refused

    # Bronze equals today's fresh load: the events, and the dead letters with today's reasons
    assert events_by_position(path) == events_by_position(fresh)
    assert dead_by_position(path) == dead_by_position(fresh)
    # provenance: the redrive's load id and commit time, its original position
    [(n, loads, stamped)] = _rows(
        path,
        "select count(*), count(distinct _load_id), count(*) filter (where _ingested_at >="
        " (select max(redriven_at) from bronze.dead_letter)) from bronze.order_events"
        " where _load_id = ?",
        [summary.load_id],
    )
    assert (n, loads, stamped) == (summary.redriven, 1, summary.redriven)
    [(marked, by)] = _rows(
        path,
        "select count(*), any_value(redriven_by) from bronze.dead_letter"
        " where redriven_at is not null",
    )
    assert (marked, by) == (summary.redriven, summary.load_id)
    mismatched = _rows(
        path,
        "select count(*) from bronze.dead_letter d where redriven_at is not null and not exists"
        " (select 1 from bronze.order_events e where e._load_id = d.redriven_by and"
        " e._source_file = d._source_file and e._source_line = d._source_line and"
        " e._offset = d._offset and e.payload = d.raw_payload)",
    )
    assert mismatched == [(0,)]
    [(read, loaded, dead)] = _rows(
        path,
        "select rows_read, rows_loaded, rows_dead_lettered from bronze._loads"
        " where load_id = ? and source = 'redrive'",
        [summary.load_id],
    )
    assert (read, loaded, dead) == (summary.redriven, summary.redriven, 0)
    assert unaccounted_rows(path) == []
    assert stored_messages(path) == message_lines(events), "nothing lost, nothing doubled"
    counts = "\n".join(ok(cli("counts", warehouse=path, cwd=tmp_path)))
    assert f"bronze.{'dead_letter':<16} {len(dead_by_position(path)):>12,}" in counts, counts

    again = redrive_warehouse(path)
    assert (again.redriven, again.new_reason) == (0, 0)
    assert again.checked == summary.still_refused
    assert events_by_position(path) == events_by_position(fresh)


def test_filters_select_by_reason_substring_and_ingestion_time(
    bronzes: tuple[Path, Path, list[Path]], tmp_path: Path
) -> None:
    old, _, _ = bronzes
    path = _copy(old, tmp_path)
    reasons = [r for (r,) in _rows(path, "select reason from bronze.dead_letter")]
    future = redrive_warehouse(path, since="2999-01-01T00:00:00Z")
    assert future.checked == 0
    # LIKE wildcards, quotes and control characters are the text they are
    for hostile in ("%", "_", "'; drop table bronze.order_events; --", "\x1b[2J\x07"):
        summary = redrive_warehouse(path, reason=hostile, dry_run=True)
        assert summary.checked == sum(hostile in r for r in reasons), hostile
    line = one_error_line(
        cli("redrive", "--since", "yesterday\x1b[2J", warehouse=path, cwd=tmp_path), "--since"
    )
    assert "\x1b" not in line
    missing = tmp_path / "none.duckdb"
    one_error_line(cli("redrive", warehouse=missing, cwd=tmp_path), "does not exist")
    assert not missing.exists(), "no empty warehouse created to redrive"
    with pytest.raises(InputError, match="ISO-8601"):
        redrive_warehouse(path, since="not a time")
    done = "\n".join(
        ok(
            cli(
                "redrive",
                "--reason",
                UNSUPPORTED,
                "--since",
                "2000-01-01",
                warehouse=path,
                cwd=tmp_path,
            )
        )
    )
    expected = sum(UNSUPPORTED in r for r in reasons)
    assert done.startswith(f"redrive: checked {expected:,} / redriven "), done
    left = _rows(
        path,
        "select count(*) from bronze.dead_letter where redriven_at is null and contains(reason, ?)",
        [UNSUPPORTED],
    )
    assert left == [(0,)], "every version-2 order was checked and got its own reason or loaded"
    [(others,)] = _rows(
        path,
        "select count(*) from bronze.dead_letter where redriven_at is not null"
        " and not contains(reason, ?)",
        [UNSUPPORTED],
    )
    assert others == 0, "--reason: no other dead letter was redriven"


def test_kafka_dead_letters_keep_their_position_and_are_checked_on_their_topic(
    bronzes: tuple[Path, Path, list[Path]], tmp_path: Path
) -> None:
    """Dead letters written as the Kafka consumer writes them (no broker needed): a version-2
    order that arrived on ``orders`` loads with its partition, offset, key and timestamp; the
    same message on ``payments`` stays refused, now for its topic."""
    old, fresh, _ = bronzes
    path = _copy(old, tmp_path)
    [(payload,)] = _rows(fresh, "select payload from bronze.order_events where event_version = 2")[
        :1
    ]
    with duckdb.connect(str(path)) as con:
        for topic, offset in (("orders", 41), ("payments", 42)):
            con.execute(
                "insert into bronze.dead_letter (_source_kind, _topic, _partition, _offset, _key,"
                " _kafka_ts, raw_payload, reason, _ingested_at, _load_id) values ('kafka', ?, 3,"
                " ?, 'k\\x00', timestamptz '2026-01-02 03:04:05+00', ?, ?, now(), 'kafka-run')",
                [topic, offset, payload, f"event_version: {UNSUPPORTED}"],
            )
    summary = redrive_warehouse(path, reason="", since="2000-01-01T00:00:00")
    assert summary.redriven > 0
    loaded = _rows(
        path,
        "select _topic, _partition, _offset, _key, _kafka_ts, _source_file, _load_id"
        " from bronze.order_events where _partition = 3",
    )
    assert [row[:6] for row in loaded] == [
        ("orders", 3, 41, "k\\x00", datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), None)
    ]
    assert loaded[0][6] == summary.load_id
    [(reason, redriven)] = _rows(
        path,
        "select reason, redriven_at from bronze.dead_letter where _source_kind = 'kafka'"
        " and _topic = 'payments'",
    )
    assert redriven is None and "payments" in reason and UNSUPPORTED not in reason, reason


_KILLABLE = """
import sys
from retail_pipeline.warehouse import redrive

write = redrive._DuckDBStore.write

def reporting(self, batch):
    write(self, batch)
    print("committed", flush=True)

redrive._DuckDBStore.write = reporting
redrive.redrive_warehouse(sys.argv[1], batch_rows=2)
"""


def test_a_killed_redrive_reruns_to_exactly_once(
    bronzes: tuple[Path, Path, list[Path]], tmp_path: Path
) -> None:
    old, fresh, events = bronzes
    path = _copy(old, tmp_path)
    process = subprocess.Popen(
        [sys.executable, "-c", _KILLABLE, str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env={**os.environ},
    )
    assert process.stdout is not None
    for _ in range(3):  # three batches committed, then killed mid-run
        assert process.stdout.readline().strip() == "committed", process.stderr
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL
    [(partial,)] = _rows(
        path, "select count(*) from bronze.dead_letter where redriven_at is not null"
    )
    assert partial > 0, "the kill came after some batches were committed"

    rerun = redrive_warehouse(path)
    assert rerun.redriven > 0
    assert events_by_position(path) == events_by_position(fresh), "each message once"
    assert dead_by_position(path) == dead_by_position(fresh)
    assert unaccounted_rows(path) == []
    assert stored_messages(path) == message_lines(events)


def test_redrive_on_snowflake(
    bronzes: tuple[Path, Path, list[Path]],
    snowflake_args: dict[str, Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """fakesnow: the older release's Bronze COPYed in; redrive as on DuckDB, in small batches."""
    from retail_pipeline.local.snowflake_emulator import endpoint_settings
    from retail_pipeline.warehouse import redrive
    from tests.warehouse.test_migrate import _duck_tables, _fill

    old, _, _ = bronzes
    args = dict(snowflake_args)
    database = args.pop("database")
    with SnowflakeWarehouse(args, database=database) as wh:
        _fill(wh, _duck_tables(old))
    duck = _copy(old, tmp_path)
    expected = redrive_warehouse(duck)

    for name, value in endpoint_settings(args, database).items():
        monkeypatch.setenv(name, value)

    def snapshot() -> dict[str, list[str]]:
        with SnowflakeWarehouse(args, database=database, read_only=True) as wh:
            return {
                t: sorted(map(repr, wh.query(f"select * from {wh.bronze}.{t}")))
                for t in ("order_events", "dead_letter", "_loads")
            }

    before = snapshot()
    assert redrive_warehouse(target="snowflake", since="2999-01-01", dry_run=True).checked == 0
    assert redrive_warehouse(target="snowflake", reason="%'_", dry_run=True).checked == 0
    dry = redrive_warehouse(target="snowflake", reason="", dry_run=True)
    assert snapshot() == before, "a dry run writes nothing"
    done = redrive_warehouse(target="snowflake", batch_rows=7)
    for summary in (dry, done):
        assert (summary.checked, summary.redriven, summary.new_reason) == (
            expected.checked,
            expected.redriven,
            expected.new_reason,
        )
    with SnowflakeWarehouse(args, database=database, read_only=True) as wh:
        dead = sorted(
            wh.query(
                f"select {POSITION}, reason from {wh.bronze}.dead_letter where redriven_at is null"
            )
        )
        [(n,)] = wh.query(
            f"select count(*) from {wh.bronze}.order_events where _load_id = ?", [done.load_id]
        )
        [(loads,)] = wh.query(
            f"select rows_loaded from {wh.bronze}._loads where load_id = ?", [done.load_id]
        )
        counts = wh.counts()
    assert dead == dead_by_position(duck)
    assert n == loads == done.redriven
    assert counts["dead_letter"] == len(dead)

    # the guard: a batch whose dead letters another redrive marked first is rolled back
    after = snapshot()
    assert redrive_warehouse(target="snowflake").redriven == 0
    assert snapshot() == after, "a second redrive changes nothing"
    write = redrive._SnowflakeStore.write

    def racing(store: Any, batch: Any) -> None:
        """Another redrive marks the batch's first dead letter between the read and the write."""
        wh = store.warehouse
        wh.execute(
            f"update {wh.bronze}.dead_letter set redriven_at = current_timestamp(),"
            f" redriven_by = 'other' where redriven_at is null and {redrive._IDENTITY} = ?",
            [batch.redriven[0]],
        )
        write(store, batch)

    monkeypatch.setattr(redrive._SnowflakeStore, "write", racing)
    with SnowflakeWarehouse(args, database=database) as wh:
        wh.execute(
            f"update {wh.bronze}.dead_letter set redriven_at = null, redriven_by = null"
            " where redriven_by = ?",
            [done.load_id],
        )
    with pytest.raises(WarehouseError, match="another redrive"):
        redrive_warehouse(target="snowflake")
    with SnowflakeWarehouse(args, database=database, read_only=True) as wh:
        [(n2,)] = wh.query(
            f"select count(*) from {wh.bronze}.order_events"
            " where _load_id <> ? and _load_id like 'redrive-%'",
            [done.load_id],
        )
    assert n2 == 0, "the rolled-back batch loaded nothing"
