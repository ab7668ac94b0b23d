"""``check_health`` on the Snowflake target: the package's local Snowflake (snowduck) after real
loads and a real ``dbt build --target snowflake`` (which appends to gold.build_log there too)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from retail_pipeline.monitoring.health import check_health
from retail_pipeline.simulation import FaultRates, generate
from retail_pipeline.transform import run_transform
from retail_pipeline.warehouse import open_warehouse
from tests.transform.conftest import load
from tests.transform.test_snowflake_target import snowflake_env  # noqa: F401 (a fixture)

EVENT_TABLES = ("order_events", "payment_events", "shipment_events")
CHECKS = [
    *(
        f"bronze.{table}.{check}"
        for table in EVENT_TABLES
        for check in ("last_ingest", "event_watermark", "last_run")
    ),
    *(
        f"bronze.{table}.{check}"
        for table in ("customers", "products")
        for check in ("last_ingest", "last_run")
    ),
    "bronze._loads.last_ingest",
    "gold.last_build",
    "gold.event_watermark",
    "gold.pending_rows",
]


def test_health_on_the_snowflake_emulator(snowflake_env: str, tmp_path: Path) -> None:  # noqa: F811
    sim = tmp_path / "sim"
    generate(sim, days=1, orders_per_day=30, seed=21, faults=FaultRates())
    with open_warehouse() as wh:  # RETAIL_TARGET=snowflake: the emulator
        assert wh.target == "snowflake"
        load(
            wh,
            snapshots=sorted((sim / "snapshots").iterdir()),
            events=sorted((sim / "events").glob("*.ndjson")),
        )
    summary = run_transform()
    assert summary.success, [f"{f.unique_id}: {f.message}" for f in summary.failures]

    with open_warehouse(read_only=True) as wh:
        [(finished,)] = wh.query("select max(finished_at) from bronze._loads")
        [(orders, ingested)] = wh.query(
            "select count(*), max(_ingested_at) from bronze.order_events"
        )
        [(logged, command, status)] = wh.query(
            "select count(*), max(command), max(status) from gold.build_log"
        )
        report = check_health(wh, now=finished + timedelta(minutes=30))
    assert (logged, command, status) == (1, "build", "success")
    by_name = {check.name: check for check in report.checks}
    assert list(by_name) == CHECKS
    assert [c for c in report.checks if c.status != "ok"] == []
    assert report.exit_code == 0
    assert by_name["gold.last_build"].value["status"] == "success"  # type: ignore[index]
    assert by_name["gold.pending_rows"].value == {"rows": 0, "seconds": 0.0}
    assert by_name["bronze.order_events.last_run"].value["rows"] == orders  # type: ignore[index]
    age = (finished + timedelta(minutes=30) - ingested).total_seconds()
    assert by_name["bronze.order_events.last_ingest"].value == age
