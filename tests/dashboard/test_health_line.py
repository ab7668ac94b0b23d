"""The dashboard's JSON carries the health summary ``retail-pipeline health`` computes."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from retail_pipeline.dashboard import take_snapshot
from retail_pipeline.ingestion.files import ingest_files
from retail_pipeline.simulation import generate
from retail_pipeline.warehouse import open_warehouse
from tests.dashboard.conftest import Shop


def test_meta_has_the_health_line(
    shop: Shop, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    snapshot = take_snapshot(shop.warehouse)
    try:
        health = snapshot.meta()["health"]
    finally:
        snapshot.close()
    assert health == {"status": "ok", "line": health["line"], "first_problem": None}
    assert health["line"].startswith("health ok: ")

    # Bronze grows, Gold is not rebuilt. (Not with the shop's second half: the session's shop
    # may have it in Gold already, test_browser streams it in.)
    behind = tmp_path / "behind.duckdb"
    shutil.copyfile(shop.warehouse, behind)
    more = generate(tmp_path / "more", days=1, orders_per_day=20, seed=991)
    with open_warehouse(behind) as wh:
        loaded = ingest_files(wh, [topic.path for topic in more.topics.values()])
    assert loaded.loaded > 0
    monkeypatch.setenv("RETAIL_HEALTH_GOLD_LAG_WARN", "0")
    snapshot = take_snapshot(behind)
    try:
        health = snapshot.meta()["health"]
    finally:
        snapshot.close()
    assert health["status"] == "warning"
    assert health["first_problem"] == "gold.pending_rows"
    assert "Bronze rows not in Gold yet" in health["line"]
