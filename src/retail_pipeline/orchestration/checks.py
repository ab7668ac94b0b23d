"""The dbt DAG's checks after a build: Gold's deadline and the pipeline's health.

Each is a plain function (no Airflow) that returns a JSON-able summary, the task's XCom, and
raises an :class:`~retail_pipeline.orchestration.alerts.AlertError` when it should alert: the
task then fails and its failure notifier posts the alert (``alert: deadline`` or ``health``).

**Gold's deadline** is about data, not about the DAG run: new Bronze rows must reach Gold within
``RETAIL_GOLD_DEADLINE_MINUTES``. The rows waiting are those Bronze holds beyond the last
successful build (``gold.build_info`` against Bronze now, as ``retail-pipeline answers``
counts them); they have waited since the oldest ``_ingested_at`` after that build (or since the
build, for rows stamped before it but committed after). Dead letters never reach Gold and do
not count.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from retail_pipeline.errors import one_line
from retail_pipeline.orchestration.alerts import DeadlineMissed, Unhealthy
from retail_pipeline.settings import settings
from retail_pipeline.transform.answers import status_of
from retail_pipeline.warehouse import Warehouse, open_warehouse
from retail_pipeline.warehouse.base import EVENT_TABLES

log = logging.getLogger(__name__)

GOLD_SOURCES = (*EVENT_TABLES.values(), "customers", "products")
"""The Bronze tables Gold is built from (as ``gold.pipeline_freshness`` lists them)."""


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _stamp(value: datetime | None) -> str | None:
    return None if value is None else value.strftime("%Y-%m-%d %H:%M:%S UTC")


@dataclass(frozen=True)
class GoldDeadline:
    """Whether Bronze rows have waited for Gold longer than the deadline."""

    limit_minutes: int
    now: datetime
    built_at: datetime | None
    """The last successful build (``gold.build_info``); None if Gold was never built."""
    waiting_since: datetime | None
    """When the oldest Bronze row not in Gold arrived; None when Gold holds all of Bronze."""

    @property
    def waiting_minutes(self) -> float:
        """How long the oldest row not in Gold has waited (0 when none waits)."""
        if self.waiting_since is None:
            return 0.0
        return max(0.0, (self.now - self.waiting_since).total_seconds() / 60)

    @property
    def missed(self) -> bool:
        return self.waiting_minutes > self.limit_minutes

    def line(self) -> str:
        built = f"built at {_stamp(self.built_at)}" if self.built_at else "never built"
        if self.waiting_since is None:
            return f"Gold ({built}) holds every Bronze row"
        verdict = "past" if self.missed else "within"
        return (
            f"Gold ({built}) is missing Bronze rows ingested since {_stamp(self.waiting_since)}:"
            f" {self.waiting_minutes:.0f} minutes waiting, {verdict} the deadline of"
            f" {self.limit_minutes} minutes (RETAIL_GOLD_DEADLINE_MINUTES)"
        )

    def summary(self) -> dict[str, Any]:
        return {
            "limit_minutes": self.limit_minutes,
            "built_at": _stamp(self.built_at),
            "waiting_since": _stamp(self.waiting_since),
            "waiting_minutes": round(self.waiting_minutes, 1),
            "missed": self.missed,
        }


def _oldest_after(wh: Warehouse, after: datetime | None) -> datetime | None:
    present = wh.tables("bronze")
    oldest: datetime | None = None
    for table in GOLD_SOURCES:
        if table not in present:
            continue
        sql = f"select min(_ingested_at) from bronze.{table}"  # names from the package only
        rows = wh.query(sql + " where _ingested_at > ?", [after]) if after else wh.query(sql)
        stamp = _utc(rows[0][0]) if rows else None
        if stamp is not None and (oldest is None or stamp < oldest):
            oldest = stamp
    return oldest


def gold_deadline(
    wh: Warehouse, *, limit_minutes: int, now: datetime | None = None
) -> GoldDeadline:
    """Gold's deadline on an open warehouse (reads ``gold.build_info``, the live view
    ``gold.pipeline_freshness`` and Bronze's ``_ingested_at``)."""
    now = _utc(now) or datetime.now(UTC)
    status = status_of(wh)
    since = _oldest_after(wh, status.built_at)
    if since is None and status.built_at is not None and status.is_stale:
        since = status.built_at  # rows stamped before the build, committed after it
    return GoldDeadline(limit_minutes, now, status.built_at, since)


def _read_warehouse() -> Warehouse:
    """The warehouse, read-only. A dbt task run in this process before (``dag.test()``) may
    have left dbt-duckdb's handle open, which would refuse a read-only one: released first."""
    from retail_pipeline.transform.runner import _release_duckdb

    _release_duckdb()
    return open_warehouse(read_only=True, missing_hint="load something first")


def check_gold_deadline(now: datetime | None = None) -> dict[str, Any]:
    """The deadline task: raises :class:`DeadlineMissed` (the task fails and alerts) when
    Bronze rows have waited for Gold longer than ``RETAIL_GOLD_DEADLINE_MINUTES``."""
    limit = settings().gold_deadline_minutes
    with _read_warehouse() as wh:
        result = gold_deadline(wh, limit_minutes=limit, now=now)
    log.info("gold deadline: %s", one_line(result.line()))
    if result.missed:
        raise DeadlineMissed(result.line())
    return result.summary()


def check_pipeline_health(now: datetime | None = None) -> dict[str, Any]:
    """The health task: ``retail-pipeline health`` on the warehouse (without Kafka: the dbt DAG
    needs no broker); raises :class:`Unhealthy` (the task fails and alerts) naming every
    failing check when its status is ``error``. Returns the report's JSON (the task's XCom)."""
    from retail_pipeline.monitoring.health import check_health

    with _read_warehouse() as wh:
        report = check_health(wh, now=now)
    log.info("%s", report.line())
    if report.status == "error":
        failing = [f"{c.name} ({c.message})" for c in report.checks if c.status == "error"]
        raise Unhealthy(one_line(f"pipeline health is error: {'; '.join(failing)}"))
    return report.to_dict()
