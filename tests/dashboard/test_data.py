"""The dashboard's data and server without a browser: its figures, filters, errors and locks."""

from __future__ import annotations

import json
import re
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import duckdb
import pytest
import yaml

from retail_pipeline.dashboard import Filters, create_dashboard, take_snapshot
from retail_pipeline.dashboard.data import SNAPSHOT_COLUMNS
from retail_pipeline.errors import PipelineError
from retail_pipeline.transform import project_dir, read_answers
from retail_pipeline.transform.answers import status_of
from retail_pipeline.warehouse import Warehouse, open_warehouse
from tests.dashboard.conftest import Shop


def test_the_snapshot_reads_gold_columns_dbt_documents() -> None:
    documented: dict[str, set[str]] = {}
    for path in (project_dir() / "models" / "gold").rglob("*.yml"):
        for model in yaml.safe_load(path.read_text()).get("models", []):
            documented[model["name"]] = {column["name"] for column in model.get("columns", [])}
    for table, columns in SNAPSHOT_COLUMNS.items():
        assert {name for name, _ in columns} <= documented[table], table


def test_filters_from_query_parameters() -> None:
    assert Filters.parse({"country": " ", "carrier": "dhl"}) == Filters(carrier="dhl")
    assert Filters.parse({"category": "Home & Garden ?'$$"}).category == "Home & Garden ?'$$"
    with pytest.raises(PipelineError, match="date_from='2026-13-01' is not a YYYY-MM-DD date"):
        Filters.parse({"date_from": "2026-13-01"})
    with pytest.raises(PipelineError, match="unknown filter 'colour'"):
        Filters.parse({"colour": "red"})
    with pytest.raises(PipelineError, match="country holds a control character"):
        Filters.parse({"country": "U\x00S"})
    with pytest.raises(PipelineError, match="carrier is longer than 200 characters"):
        Filters.parse({"carrier": "x" * 201})


def test_a_filter_value_is_data_never_sql(shop: Shop) -> None:
    """Values that would break out of quoted SQL select nothing; the snapshot stays whole."""
    snapshot = take_snapshot(shop.warehouse)
    try:
        orders = snapshot.figures(Filters())["cancel_refund"]["orders"]
        for value in ("?", "' or 1=1 --", "$$ or true $$", "\\' or 1=1 --"):
            for name in ("category", "country", "payment_method", "carrier"):
                figures = snapshot.figures(Filters(**{name: value}))
                assert figures["cancel_refund"]["orders"] == 0, (name, value)
                assert figures["top_products"] == [], (name, value)
        chained = Filters(country="?", carrier="; drop table fct_orders; --")
        assert snapshot.figures(chained)["cancel_refund"]["orders"] == 0
        assert snapshot.figures(Filters())["cancel_refund"]["orders"] == orders
    finally:
        snapshot.close()


def test_money_leaves_as_exact_decimal_text(shop: Shop) -> None:
    snapshot = take_snapshot(shop.warehouse)
    try:
        figures = snapshot.figures(Filters())
    finally:
        snapshot.close()
    money = [figures["revenue"][key] for key in ("gross", "refunds", "net")]
    money += [row["revenue"] for row in figures["top_products"]]
    money += [row[key] for row in figures["revenue"]["by_day"] for key in ("gross", "refunds")]
    assert money and all(isinstance(value, str) for value in money)
    assert all(re.fullmatch(r"-?\d+\.\d\d", value) for value in money), money


def test_unfiltered_figures_are_the_answers(shop: Shop) -> None:
    snapshot = take_snapshot(shop.warehouse)
    try:
        figures = snapshot.figures(Filters())
    finally:
        snapshot.close()
    answers = read_answers(shop.warehouse)
    for key, value in answers.items():
        assert figures[key] == value, key
    assert (
        sum(row["orders"] for row in figures["status_funnel"]) == answers["cancel_refund"]["orders"]
    )
    histogram = figures["lead_time_histogram"]["bins"]
    for segment, stats in answers["lead_times_hours"].items():
        assert sum(b["orders"] for b in histogram if b["segment"] == segment) == stats["count"]


def test_a_warehouse_without_gold_is_refused_in_one_line(tmp_path: Path) -> None:
    with open_warehouse(tmp_path / "bronze_only.duckdb"):
        pass
    with pytest.raises(
        PipelineError, match=r"no Gold star schema yet .*run `retail-pipeline transform`"
    ):
        take_snapshot(tmp_path / "bronze_only.duckdb")


@pytest.fixture
def served(shop: Shop) -> Iterator[str]:
    dashboard = create_dashboard(shop.warehouse, port=0, refresh_seconds=3600)
    thread = threading.Thread(target=dashboard.serve_forever, daemon=True)
    thread.start()
    try:
        yield dashboard.url
    finally:
        dashboard.stop()
        thread.join(timeout=10)


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_the_server_holds_no_lock_between_refreshes(served: str, shop: Shop) -> None:
    status, body = get(served + "api/data")
    assert status == 200
    data: dict[str, Any] = json.loads(body)
    assert data["meta"]["currency"] == "USD"
    # A loader that needs the file to itself gets it at once while the dashboard is up.
    with open_warehouse(shop.warehouse) as wh:
        assert wh.tables("gold")


def test_the_server_serves_only_its_own_files(served: str) -> None:
    assert get(served)[0] == 200
    assert get(served + "vendor/vega-lite.min.js")[0] == 200
    assert get(served + "../pyproject.toml")[0] == 404
    assert get(served + "%2e%2e/pyproject.toml")[0] == 404
    status, body = get(served + "api/data?date_to=yesterday")
    assert status == 400
    assert json.loads(body) == {"error": "date_to='yesterday' is not a YYYY-MM-DD date"}


def test_freshness_comes_from_gold_alone(served: str, shop: Shop) -> None:
    """The snapshot's freshness reads gold.pipeline_freshness, a view over Bronze, so a
    reader with no Bronze privilege (REPORTER on Snowflake) gets it."""
    con = duckdb.connect(str(shop.warehouse), read_only=True)
    try:
        live = dict(
            con.execute("select bronze_table, bronze_rows from gold.pipeline_freshness").fetchall()
        )
        counted = {
            table: con.execute(f"select count(*) from bronze.{table}").fetchone()[0]  # type: ignore[index]
            for table in live
        }
    finally:
        con.close()
    assert live == counted
    assert set(live) == {
        "order_events",
        "payment_events",
        "shipment_events",
        "customers",
        "products",
    }
    meta = json.loads(get(served + "api/data")[1])["meta"]
    assert meta["bronze_ingested_through"] is not None


class GoldOnly:
    """A warehouse as the reporting role sees it: any query naming Bronze is refused."""

    def __init__(self, inner: Warehouse) -> None:
        self.inner = inner
        self.queries: list[str] = []

    def tables(self, schema: str) -> set[str]:
        assert schema == "gold", schema
        return self.inner.tables(schema)

    def query(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        assert not re.search(r"\bbronze\s*\.", sql, re.IGNORECASE), sql
        self.queries.append(sql)
        return self.inner.query(sql, params)


def test_status_reads_no_bronze(shop: Shop) -> None:
    with open_warehouse(shop.warehouse, read_only=True) as wh:
        reader = GoldOnly(wh)
        status = status_of(reader)  # type: ignore[arg-type]
    assert status.built_at is not None and status.freshness_known
    assert any("gold.pipeline_freshness" in sql for sql in reader.queries)
