"""Is the pipeline healthy? Every check of ``retail-pipeline health``, over one open warehouse.

:func:`check_health` reads Bronze (per table: last ingest time against dbt's freshness rule,
event-time watermark, the last loader run's rows and dead letters), Kafka (per partition: the
broker's end offset minus the position stored in the warehouse, when the caller measured it with
:func:`measure_kafka_lag`) and Gold (the last build's result from ``gold.build_log``, which
dbt's on-run-end hook appends to even when a build fails; event-time watermark, Bronze rows
not yet in Gold) and judges each against its thresholds: dbt's ``warn_after``/``error_after``
for Bronze (``_bronze__sources.yml``, the one place they are set) and the ``RETAIL_HEALTH_*``
settings for the rest. docs/operations.md#health says what each check means and what to do.

The report's :attr:`HealthReport.status` is the worst check's (``ok`` < ``warning`` <
``error``) and :attr:`HealthReport.exit_code` the command's exit code (0, 1, 2). Every query is
a constant of this module with bound values; a table or column named by the dbt YAML is checked
to be a Bronze table and a plain identifier before SQL text holds it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from retail_pipeline.errors import PipelineError, one_line
from retail_pipeline.events.contract import TOPICS
from retail_pipeline.monitoring.freshness import Freshness, bronze_freshness
from retail_pipeline.settings import Settings, layer_schema, settings
from retail_pipeline.warehouse import Warehouse, open_warehouse
from retail_pipeline.warehouse.base import BRONZE_TABLES, EVENT_TABLES, REFERENCE_TABLES
from retail_pipeline.warehouse.sql import plain_identifier

__all__ = [
    "Check",
    "HealthReport",
    "check_health",
    "health",
    "kafka_configured",
    "measure_kafka_lag",
]

Status = Literal["ok", "warning", "error"]
STATUSES: tuple[Status, ...] = ("ok", "warning", "error")
EXIT_CODES: dict[Status, int] = {"ok": 0, "warning": 1, "error": 2}
JSONValue = int | float | str | dict[str, Any] | None
KafkaLag = Mapping[tuple[str, int], int | None]
"""Lag by (topic, partition); None where the broker could not be asked."""

EVENT_TABLE_NAMES = tuple(EVENT_TABLES.values())
DATA_TABLES = (*EVENT_TABLE_NAMES, *REFERENCE_TABLES)
LOADS_TABLE = "_loads"
GOLD_MILESTONES = (
    "order_created_at",
    "first_captured_at",
    "first_dispatched_at",
    "first_delivered_at",
    "first_canceled_at",
    "first_refunded_at",
)
"""The event times ``gold.fct_orders`` holds; the newest of them is Gold's watermark."""


@dataclass(frozen=True)
class Check:
    """One thing checked: what it measured, against what, and the verdict."""

    name: str
    """Dotted and stable, e.g. ``bronze.order_events.last_ingest``, ``kafka.orders.0.lag``."""
    status: Status
    value: JSONValue
    """What was measured (seconds, a time, counts); None when it could not be."""
    threshold: dict[str, Any] | None
    """``{"warn": ..., "error": ...}`` in the value's unit (None: not judged by a limit)."""
    message: str
    """One line for a person; it may quote names from the warehouse (print it through
    ``errors.one_line``)."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status,
            "value": self.value,
            "threshold": self.threshold,
            "message": self.message,
        }


@dataclass(frozen=True)
class HealthReport:
    """Every check of one run of :func:`check_health`."""

    checks: tuple[Check, ...]
    checked_at: datetime
    warehouse: str
    """Where it looked, as the warehouse describes itself."""

    @property
    def status(self) -> Status:
        """The worst status of any check (``ok`` when there is none)."""
        return max((c.status for c in self.checks), key=STATUSES.index, default="ok")

    @property
    def exit_code(self) -> int:
        """0 healthy, 1 warning, 2 error."""
        return EXIT_CODES[self.status]

    @property
    def first_problem(self) -> Check | None:
        """The first check with the report's status, unless that is ``ok``."""
        if self.status == "ok":
            return None
        return next(c for c in self.checks if c.status == self.status)

    def line(self) -> str:
        """One line: the overall status and the first check that has it."""
        problem = self.first_problem
        summary = f"health {self.status}: {len(self.checks)} checks"
        for status in STATUSES[1:]:
            count = sum(c.status == status for c in self.checks)
            summary += f", {count} {status}" if count else ""
        if problem is None:
            return one_line(summary)
        return one_line(f"{summary}; {problem.name}: {problem.message}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "exit_code": self.exit_code,
            "checked_at": _iso(self.checked_at),
            "warehouse": self.warehouse,
            "checks": [c.to_dict() for c in self.checks],
        }

    def to_json(self, indent: int | None = 2) -> str:
        """The report as one JSON document naming each check."""
        return json.dumps(self.to_dict(), indent=indent)


def _utc(value: Any) -> datetime | None:
    """A timestamp from the warehouse as an aware UTC datetime (naive is taken to be UTC)."""
    if value is None:
        return None
    if not isinstance(value, datetime):
        raise PipelineError(f"expected a timestamp, got {type(value).__name__}")
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _ago(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.1f}d"


def _judge(value: float | None, warn: float | None, error: float | None) -> Status:
    """``error`` past the error limit, ``warning`` past the warn limit (strictly, as dbt
    judges freshness), else ``ok``; an unset limit never fires."""
    if value is None:
        return "ok"
    if error is not None and value > error:
        return "error"
    if warn is not None and value > warn:
        return "warning"
    return "ok"


def _limits(warn: float | None, error: float | None) -> dict[str, Any]:
    return {"warn": warn, "error": error}


def _guarded(
    name: str, threshold: dict[str, Any] | None, what: str, run: Callable[[], Check]
) -> Check:
    """``run()``, or an error check saying in one line why ``what`` could not be read."""
    try:
        return run()
    except Exception as exc:  # a missing table, a role without the privilege, a bad rule
        return Check(name, "error", None, threshold, f"cannot read {what}: {one_line(str(exc))}")


def _one(warehouse: Warehouse, sql: str, params: Sequence[object] = ()) -> tuple[Any, ...]:
    rows = warehouse.query(sql, params)
    return rows[0] if rows else ()


# --- Bronze -------------------------------------------------------------------------------


def _bronze_name(table: str) -> str:
    if table != LOADS_TABLE and table not in BRONZE_TABLES:
        raise PipelineError(f"{table!r} is not a Bronze table")
    return f"bronze.{plain_identifier(table)}"


def _last_ingest(warehouse: Warehouse, rule: Freshness, now: datetime) -> Check:
    name = f"bronze.{rule.table}.last_ingest"
    threshold = _limits(rule.warn_after, rule.error_after)

    def run() -> Check:
        column = plain_identifier(rule.loaded_at_field)
        rows, last = _one(
            warehouse,
            f"select count(*), max({column}) from {_bronze_name(rule.table)}",
        )
        if not rows:
            if rule.table == "dead_letter":
                return Check(name, "ok", None, threshold, "no dead letters")
            status: Status = "error" if rule.error_after is not None else "warning"
            return Check(name, status, None, threshold, f"bronze.{rule.table} is empty")
        at = _utc(last)
        assert at is not None
        age = (now - at).total_seconds()
        return Check(
            name,
            _judge(age, rule.warn_after, rule.error_after),
            age,
            threshold,
            f"last {rule.loaded_at_field} {_iso(at)} ({_ago(age)} ago)",
        )

    return _guarded(name, threshold, f"bronze.{rule.table}", run)


def _event_watermark(
    name: str, relation: str, column_sql: str, warehouse: Warehouse, now: datetime, config: Settings
) -> Check:
    threshold = _limits(config.health_event_lag_warn, config.health_event_lag_error)

    def run() -> Check:
        count, newest = _one(warehouse, f"select count(*), {column_sql} from {relation}")
        at = _utc(newest) if count else None
        if at is None:
            return Check(name, "ok", None, threshold, f"{relation} holds no event yet")
        lag = (now - at).total_seconds()
        status = _judge(lag, config.health_event_lag_warn, config.health_event_lag_error)
        return Check(name, status, _iso(at), threshold, f"newest event time {_iso(at)}")

    return _guarded(name, threshold, relation, run)


def _last_run(warehouse: Warehouse, table: str, config: Settings) -> Check:
    name = f"bronze.{table}.last_run"
    threshold = _limits(config.health_dead_letter_warn, config.health_dead_letter_error)
    relation = _bronze_name(table)

    def run() -> Check:
        latest = warehouse.query(
            f"select _load_id from {relation} order by _ingested_at desc, _load_id desc limit 1"
        )
        if not latest:
            return Check(name, "ok", None, threshold, f"{relation} has no run yet")
        load_id = str(latest[0][0])
        (rows,) = _one(warehouse, f"select count(*) from {relation} where _load_id = ?", [load_id])
        run_row = _one(
            warehouse,
            "select rows_read, rows_dead_lettered from bronze._loads where load_id = ?",
            [load_id],
        )
        if run_row:
            read, dead = int(run_row[0]), int(run_row[1])
        else:  # a run from before bronze._loads counted events
            (dead,) = _one(
                warehouse, "select count(*) from bronze.dead_letter where _load_id = ?", [load_id]
            )
            read = int(rows) + int(dead)
        share = dead / read if read else 0.0
        status = _judge(share, config.health_dead_letter_warn, config.health_dead_letter_error)
        value = {"load_id": load_id, "rows": int(rows), "dead_letters": dead, "rows_read": read}
        message = (
            f"run {load_id}: {int(rows):,} rows here; the run read {read:,} messages and"
            f" dead-lettered {dead:,} ({share:.1%})"
        )
        return Check(name, status, value, threshold, message)

    return _guarded(name, threshold, relation, run)


def _bronze_checks(warehouse: Warehouse, now: datetime, config: Settings) -> list[Check]:
    checks: list[Check] = []
    try:
        rules = bronze_freshness()
    except Exception as exc:
        rules = {}
        checks.append(
            Check(
                "bronze.freshness_config",
                "error",
                None,
                None,
                f"cannot read dbt's Bronze freshness rules: {one_line(str(exc))}",
            )
        )
    order = [*DATA_TABLES, "dead_letter", LOADS_TABLE]
    for table in order:
        if table in rules:
            checks.append(_last_ingest(warehouse, rules[table], now))
        if table in EVENT_TABLE_NAMES:
            checks.append(
                _event_watermark(
                    f"bronze.{table}.event_watermark",
                    _bronze_name(table),
                    "max(event_timestamp)",
                    warehouse,
                    now,
                    config,
                )
            )
        if table in DATA_TABLES:
            checks.append(_last_run(warehouse, table, config))
    return checks


# --- Kafka --------------------------------------------------------------------------------


def kafka_configured(bootstrap: str | None = None) -> bool:
    """Whether Kafka is part of this deployment: ``bootstrap`` given (``--kafka``) or
    ``RETAIL_KAFKA_BOOTSTRAP`` set."""
    return bool(bootstrap) or "kafka_bootstrap" in settings().model_fields_set


def measure_kafka_lag(
    warehouse: Warehouse, bootstrap: str | None = None, topic_prefix: str | None = None
) -> tuple[dict[tuple[str, int], int | None], str | None]:
    """Lag of every partition of the pipeline's topics (broker end offset minus the position
    the warehouse stores, as ``retail-pipeline status`` shows), and the error line when the
    broker could not be asked (then every known partition's lag is None). Waits at most
    ``RETAIL_KAFKA_CONNECT_TIMEOUT`` for the broker."""
    from retail_pipeline.ingestion.kafka.status import partition_lags

    prefix = settings().topic_prefix if topic_prefix is None else topic_prefix
    topics = tuple(prefix + topic for topic in TOPICS)
    lags, error = partition_lags(warehouse.all_positions(), bootstrap, topics)
    return {(lag.topic, lag.partition): lag.lag for lag in lags if lag.topic in topics}, error


def _kafka_checks(lags: KafkaLag, error: str | None, config: Settings) -> list[Check]:
    warn, limit = config.health_kafka_lag_warn, config.health_kafka_lag_error
    threshold = _limits(warn, limit)
    checks = []
    if error is not None:
        checks.append(Check("kafka.broker", "error", None, None, one_line(error)))
    for (topic, partition), lag in sorted(lags.items()):
        name = f"kafka.{topic}.{partition}.lag"
        if lag is None:
            checks.append(Check(name, "error", None, threshold, "broker end offset unknown"))
            continue
        message = f"{lag:,} messages on the broker not yet in Bronze"
        checks.append(Check(name, _judge(lag, warn, limit), lag, threshold, message))
    return checks


# --- Gold ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Build:
    built_at: datetime
    event_rows: int
    events_through: datetime | None
    reference_rows: int
    reference_through: datetime | None


def _latest_build(warehouse: Warehouse) -> _Build | None:
    gold = layer_schema("gold")  # this environment's Gold (docs/transform.md#environments)
    if "build_info" not in warehouse.tables(gold):
        return None
    rows = warehouse.query(
        "select built_at, bronze_event_rows, events_ingested_through, bronze_reference_rows,"
        f" reference_ingested_through from {gold}.build_info order by built_at desc limit 1"
    )
    if not rows:
        return None
    built, events, events_through, reference, reference_through = rows[0]
    built_at = _utc(built)
    assert built_at is not None
    return _Build(
        built_at, int(events), _utc(events_through), int(reference), _utc(reference_through)
    )


@dataclass(frozen=True)
class _Logged:
    """The newest row of gold.build_log: the last dbt build, run or test and its result."""

    invocation_id: str
    command: str
    selected: str | None
    finished_at: datetime
    status: str
    failed_nodes: int
    first_failure: str | None
    first_failure_type: str | None

    def value(self) -> dict[str, Any]:
        return {
            "at": _iso(self.finished_at),
            "command": self.command,
            "status": self.status,
            "failed_nodes": self.failed_nodes,
            "first_failure": self.first_failure,
        }

    def what(self) -> str:
        selection = f" --select {self.selected}" if self.selected else ""
        return f"dbt {self.command}{selection} ({self.invocation_id})"


def _last_logged(warehouse: Warehouse) -> _Logged | None:
    """The newest row of gold.build_log (dbt/macros/build_log.sql), None before the first."""
    gold = layer_schema("gold")
    if "build_log" not in warehouse.tables(gold):
        return None
    rows = warehouse.query(
        "select invocation_id, command, selected, finished_at, status, failed_nodes,"
        f" first_failure, first_failure_type from {gold}.build_log"
        " order by finished_at desc, started_at desc limit 1"
    )
    if not rows:
        return None
    invocation, command, selected, finished, status, failed, first, kind = rows[0]
    finished_at = _utc(finished)
    assert finished_at is not None
    return _Logged(
        str(invocation),
        str(command),
        None if selected is None else str(selected),
        finished_at,
        str(status),
        int(failed or 0),
        None if first is None else str(first),
        None if kind is None else str(kind),
    )


def _gold_checks(warehouse: Warehouse, now: datetime, config: Settings) -> list[Check]:
    build: list[_Build | None] = []

    def last_build() -> Check:
        logged = _last_logged(warehouse)
        found = _latest_build(warehouse)
        build.append(found)
        if logged is not None and logged.status != "success":
            first = f"{logged.first_failure_type or 'node'} {logged.first_failure}"
            age = (now - logged.finished_at).total_seconds()
            return Check(
                "gold.last_build",
                "error",
                logged.value(),
                None,
                f"the last build, {logged.what()} at {_iso(logged.finished_at)}"
                f" ({_ago(age)} ago), failed: {logged.failed_nodes:,} failing nodes, the"
                f" first {first}: read `retail-pipeline transform`'s failures, fix, rerun",
            )
        if found is None:
            return Check(
                "gold.last_build",
                "error",
                None if logged is None else logged.value(),
                None,
                "Gold has no successful build (no gold.build_info): run `retail-pipeline"
                " transform` and read its failures",
            )
        if logged is None:  # built before gold.build_log existed: build_info's time
            value = {
                "at": _iso(found.built_at),
                "command": None,
                "status": "success",
                "failed_nodes": 0,
                "first_failure": None,
            }
            at, what = found.built_at, "last successful build"
        else:
            value, at, what = logged.value(), logged.finished_at, f"last build, {logged.what()},"
        age = (now - at).total_seconds()
        return Check(
            "gold.last_build",
            "ok",
            value,
            None,
            f"{what} succeeded at {_iso(at)} ({_ago(age)} ago)",
        )

    checks = [_guarded("gold.last_build", None, "gold.build_log", last_build)]
    if not build or build[0] is None:
        return checks
    latest = build[0]
    # Snowflake's greatest() is null when any argument is: each falls back to the first
    newest = ", ".join(f"coalesce(max({c}), max(order_created_at))" for c in GOLD_MILESTONES)
    checks.append(
        _event_watermark(
            "gold.event_watermark",
            f"{layer_schema('gold')}.fct_orders",
            f"greatest({newest})",
            warehouse,
            now,
            config,
        )
    )
    threshold = _limits(config.health_gold_lag_warn, config.health_gold_lag_error)

    def pending() -> Check:
        counts = warehouse.counts()
        events = sum(counts[t] for t in EVENT_TABLE_NAMES) - latest.event_rows
        reference = sum(counts[t] for t in REFERENCE_TABLES) - latest.reference_rows
        rows = max(0, events) + max(0, reference)
        if rows == 0:
            value = {"rows": 0, "seconds": 0.0}
            return Check("gold.pending_rows", "ok", value, threshold, "Gold holds all of Bronze")
        oldest: datetime | None = None
        for tables, through, behind in (
            (EVENT_TABLE_NAMES, latest.events_through, events),
            (tuple(REFERENCE_TABLES), latest.reference_through, reference),
        ):
            if behind <= 0:
                continue
            for table in tables:
                sql = f"select min(_ingested_at) from {_bronze_name(table)}"
                params: list[object] = []
                if through is not None:
                    sql += " where _ingested_at > cast(? as timestamptz)"
                    params.append(through.isoformat())
                (first,) = _one(warehouse, sql, params)
                at = _utc(first)
                if at is not None and (oldest is None or at < oldest):
                    oldest = at
        # rows stamped before the build but committed after it: behind since the build
        since = oldest if oldest is not None else latest.built_at
        seconds = max(0.0, (now - since).total_seconds())
        status = _judge(seconds, config.health_gold_lag_warn, config.health_gold_lag_error)
        message = (
            f"{rows:,} Bronze rows not in Gold yet ({max(0, events):,} events,"
            f" {max(0, reference):,} reference rows), the oldest ingested {_iso(since)}"
            f" ({_ago(seconds)} ago): run `retail-pipeline transform`"
        )
        return Check(
            "gold.pending_rows", status, {"rows": rows, "seconds": seconds}, threshold, message
        )

    checks.append(_guarded("gold.pending_rows", threshold, "Bronze row counts", pending))
    return checks


# --- the report ---------------------------------------------------------------------------


def check_health(
    warehouse: Warehouse,
    *,
    now: datetime | None = None,
    kafka_lag: KafkaLag | None = None,
    kafka_error: str | None = None,
) -> HealthReport:
    """Every health check on an open (read-only is enough) warehouse.

    ``now`` is the clock the ages are taken from (default: the current time, UTC).
    ``kafka_lag`` (from :func:`measure_kafka_lag`) adds a check per partition, and
    ``kafka_error`` an error check naming why the broker could not be asked; without either,
    Kafka is not checked. Nothing raises for what the warehouse holds: a check that cannot read
    what it needs is an ``error`` check saying why.
    """
    checked_at = (now or datetime.now(UTC)).astimezone(UTC)
    config = settings()
    checks = _bronze_checks(warehouse, checked_at, config)
    if kafka_lag is not None or kafka_error is not None:
        checks += _kafka_checks(kafka_lag or {}, kafka_error, config)
    checks += _gold_checks(warehouse, checked_at, config)
    return HealthReport(tuple(checks), checked_at, warehouse.describe())


def health(
    warehouse: str | os.PathLike[str] | None = None,
    *,
    target: str | None = None,
    bootstrap: str | None = None,
    topic_prefix: str | None = None,
    now: datetime | None = None,
) -> HealthReport:
    """Open the warehouse of ``target`` read-only and check it; Kafka too when it is
    configured (``bootstrap``, else ``RETAIL_KAFKA_BOOTSTRAP``). A warehouse that cannot be
    opened is a report with one ``error`` check (``warehouse``), never an exception."""
    try:
        wh = open_warehouse(
            warehouse,
            target=target,
            read_only=True,
            exclusive=False,
            missing_hint="load and transform first",
        )
    except PipelineError as exc:
        checked_at = (now or datetime.now(UTC)).astimezone(UTC)
        check = Check("warehouse", "error", None, None, one_line(str(exc)))
        return HealthReport((check,), checked_at, "warehouse")
    with wh:
        lags: dict[tuple[str, int], int | None] | None = None
        error = None
        if kafka_configured(bootstrap):
            lags, error = measure_kafka_lag(wh, bootstrap, topic_prefix)
        return check_health(wh, now=now, kafka_lag=lags, kafka_error=error)
