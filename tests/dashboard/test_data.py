"""The dashboard's data and server without a browser: its figures, filters, errors and locks."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from retail_pipeline.dashboard import Filters, create_dashboard, take_snapshot
from retail_pipeline.dashboard.data import SNAPSHOT_COLUMNS
from retail_pipeline.errors import PipelineError
from retail_pipeline.transform import project_dir, read_answers
from retail_pipeline.warehouse import open_warehouse
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
    with pytest.raises(PipelineError, match="date_from='2026-13-01' is not a YYYY-MM-DD date"):
        Filters.parse({"date_from": "2026-13-01"})


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
