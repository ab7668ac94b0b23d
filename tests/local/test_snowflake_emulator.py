"""The local Snowflake's patches to snowduck, through the Snowflake connector as a client sees
them: PUT uploads every matching file and reports each, COPY INTO matches Parquet columns by
name and reports rows loaded, timestamps keep their NULLs and their fractions."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from retail_pipeline.warehouse.drivers import snowflake_connector as connector


@pytest.fixture
def cur(snowduck_emulator: tuple[dict[str, Any], Any]) -> Iterator[Any]:
    """A connector cursor on a database of the test's own."""
    args, _ = snowduck_emulator
    database = f"E_{uuid.uuid4().hex[:8].upper()}"
    with connector().connect(**args) as con, con.cursor() as cursor:
        cursor.execute(f"create database {database}")
        cursor.execute(f"use database {database}")
        cursor.execute("create schema s")
        cursor.execute(f"use schema {database}.S")
        yield cursor


def test_put_uploads_every_matching_file_and_reports_each(cur: Any, tmp_path: Path) -> None:
    for name in ("a.parquet", "b.parquet"):
        pq.write_table(pa.table({"x": [1]}), tmp_path / name)
    (tmp_path / "c.txt").write_text("not matched")
    cur.execute("create temporary stage st")
    cur.execute(f"put 'file://{tmp_path}/*.parquet' @st/batch/ auto_compress = false")
    rows = cur.fetchall()
    assert [(row[0], row[6]) for row in rows] == [
        ("a.parquet", "UPLOADED"),
        ("b.parquet", "UPLOADED"),
    ]

    with pytest.raises(connector().ProgrammingError, match="File doesn't exist"):
        cur.execute(f"put 'file://{tmp_path}/*.csv' @st/batch/")


def test_copy_matches_columns_by_name_and_purges(cur: Any, tmp_path: Path) -> None:
    cur.execute(
        "create table t (id number(10,0) not null, amount number(18,2), note varchar,"
        " items array, seen timestamp_tz)"
    )
    rows = pa.table(  # another column order than the table's, one column missing
        {
            "seen": pa.array([datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=UTC), None]),
            "items": [[{"sku": "P1", "qty": 2}], []],
            "amount": pa.array([Decimal("12.34"), None], pa.decimal128(18, 2)),
            "id": pa.array([1, 2], pa.int32()),
        }
    )
    pq.write_table(rows, tmp_path / "t.parquet")
    cur.execute("create temporary stage st")
    cur.execute(f"put 'file://{tmp_path}/t.parquet' @st/f/")
    cur.execute(
        "copy into t from @st/f/t.parquet file_format = (type = parquet)"
        " match_by_column_name = case_insensitive purge = true"
    )
    (result,) = cur.fetchall()
    assert (result[1], result[3]) == ("LOADED", 2)
    cur.execute("list @st/f/")
    assert cur.fetchall() == []  # purged

    cur.execute("select id, amount, note, items, seen from t order by id")
    first, second = cur.fetchall()
    assert first[:3] == (1, Decimal("12.34"), None)
    assert json.loads(first[3]) == [{"sku": "P1", "qty": 2}]
    assert first[4] == datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)
    assert (second[:3], json.loads(second[3]), second[4]) == ((2, None, None), [], None)


def test_timestamps_keep_nulls_and_fractions(cur: Any) -> None:
    cur.execute(
        "select null::timestamp_ntz, '2026-03-04 05:06:07.502781'::timestamp_ntz,"
        " '1969-12-31 23:59:59.5'::timestamp_ntz, current_timestamp()"
    )
    missing, fraction, before_epoch, now = cur.fetchone()
    assert missing is None
    assert fraction == datetime(2026, 3, 4, 5, 6, 7, 502781)
    assert before_epoch == datetime(1969, 12, 31, 23, 59, 59, 500000)
    assert abs((now.astimezone(UTC) - datetime.now(UTC)).total_seconds()) < 60
