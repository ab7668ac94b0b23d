"""/metrics of a running dashboard (its own process), scraped with urllib: Bronze's row counts
equal Bronze's, Gold's build time is gold.build_info's, and the rows Gold misses are the
difference between the two."""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path

import duckdb
import pytest
from prometheus_client.parser import text_string_to_metric_families

from retail_pipeline.warehouse.base import BRONZE_TABLES
from tests.dashboard.conftest import Shop, serve

TABLES = [table for table in BRONZE_TABLES if table != "dead_letter"]


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(url, timeout=30) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain; version=")
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_dashboard_metrics_equal_bronze_and_build_info(shop: Shop, tmp_path: Path) -> None:
    with serve(shop.warehouse, stderr=tmp_path / "stderr") as server:
        found = scrape(server.url + "metrics")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(server.url + "metrics?x=1", timeout=30)
        assert refused.value.code == 400
    con = duckdb.connect(str(shop.warehouse), read_only=True)
    try:
        rows = {
            table: con.execute(f"select count(*) from bronze.{table}").fetchone()[0]  # type: ignore[index]
            for table in TABLES
        }
        built_at, event_rows, reference_rows = con.execute(
            "select epoch(built_at), bronze_event_rows, bronze_reference_rows"
            " from gold.build_info order by built_at desc limit 1"
        ).fetchone()  # type: ignore[misc]
    finally:
        con.close()
    assert {
        dict(labels)["table"]: value
        for (name, labels), value in found.items()
        if name == "retail_bronze_rows"
    } == rows
    assert found[("retail_gold_built_timestamp_seconds", ())] == pytest.approx(built_at, abs=1e-3)
    assert found[("retail_gold_freshness_seconds", ())] >= 0
    behind = sum(rows.values()) - event_rows - reference_rows
    assert found[("retail_gold_bronze_rows_behind", ())] == behind
