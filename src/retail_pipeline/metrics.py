"""The pipeline's Prometheus metrics, defined once (docs/operations.md, "Metrics").

Every process records into one registry, :data:`REGISTRY`; long-running processes serve it on
``/metrics`` (:func:`exposition`, :func:`serve`), batch commands write it in the
textfile-collector format when ``RETAIL_METRICS_DIR`` is set (:func:`write_textfile`).

Label values come only from the fixed sets below (jobs, Bronze tables, dead-letter reason
classes) or from the pipeline's own configuration (Kafka topic names, partition numbers): a
value read from a message, a file or a request never becomes a label, so the number of series
stays bounded whatever arrives.
"""

from __future__ import annotations

import contextlib
import re
import sys
import threading
import time
from collections.abc import Iterable, Mapping
from datetime import datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
    write_to_textfile,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from retail_pipeline.errors import PipelineError, one_line
from retail_pipeline.http_server import BoundedHTTPServer
from retail_pipeline.settings import settings

JOBS = ("ingest_files", "ingest_kafka", "load_batch", "transform")
"""The jobs whose runs are counted: ``ingest`` from files or ``--kafka``, ``load-batch``
(snapshots, API, Postgres) and ``transform``."""
TABLES = ("order_events", "payment_events", "shipment_events", "customers", "products")
"""The Bronze tables rows are loaded into (``warehouse.base.BRONZE_TABLES`` less
``dead_letter``; tests/test_metrics.py holds them equal)."""
UNKNOWN = "unknown"
"""The table of a dead letter whose destination is not known (an event file line that did not
parse far enough to say its topic)."""

REASON_CLASSES: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (name, re.compile(pattern))
    for name, pattern in (
        ("too_long", r"(line|record) too long"),
        ("not_utf8", r"not valid UTF-8|not valid Unicode"),
        ("invalid_json", r"^invalid JSON|not a JSON object|^expected a JSON object"),
        ("repeated_key", r"^repeated key"),
        ("unknown_event_type", r"unknown event type|does not belong on topic"),
        ("unsupported_version", r"unsupported version"),
        ("missing_field", r"^[A-Za-z_][A-Za-z0-9_.\[\]]*: missing$|missing required field"),
        ("bad_timestamp", r"ISO-8601|not a real date and time|outside \d{4}-"),
        (
            "bad_number",
            r"JSON number|not a number|not a finite number|must be below|negative"
            r"|decimal places|must be an integer|quantity",
        ),
        ("bad_code", r"ISO 4217|2-letter|Invalid enum value|Invalid value"),
        ("wrong_type", r"Expected "),
        ("source_problem", r"null or empty in the table|outside the window|updated_at"),
    )
)
"""Dead-letter reason classes, tried in order; a reason that matches none is ``other``. The
full reason stays in ``bronze.dead_letter``; the class only groups them for alerting."""
REASONS = (*(name for name, _ in REASON_CLASSES), "other")

# No ``*_created`` series: a batch command's counters start with it anyway.
disable_created_metrics()  # type: ignore[no-untyped-call]
REGISTRY = CollectorRegistry()
"""The one registry every metric of the pipeline is in."""

ROWS_LOADED = Counter(
    "retail_rows_loaded",
    "Rows written to a Bronze table, counted after each committed batch",
    ["table"],
    registry=REGISTRY,
)
DEAD_LETTERS = Counter(
    "retail_dead_letters",
    "Messages dead-lettered, by the Bronze table they were headed for and reason class",
    ["table", "reason"],
    registry=REGISTRY,
)
BATCHES = Counter(
    "retail_batches",
    "Batches committed to Bronze (rows, dead letters and positions in one transaction)",
    ["job"],
    registry=REGISTRY,
)
BATCH_SECONDS = Histogram(
    "retail_batch_seconds",
    "Seconds one batch's warehouse transaction took, from the write call to its commit",
    ["job"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
    registry=REGISTRY,
)
KAFKA_LAG = Gauge(
    "retail_kafka_lag_messages",
    "Messages of a Kafka partition not yet in Bronze: the broker's high watermark minus the"
    " next offset committed to the warehouse",
    ["topic", "partition"],
    registry=REGISTRY,
)


class _Gold(Collector):
    """Gold's freshness, exported only once known: a process that never read Gold (a loader)
    shows no ``retail_gold_*`` series rather than a misleading 0."""

    def __init__(self) -> None:
        self.built_at: float | None = None
        self.rows_behind: int | None = None
        self.now: float | None = None

    def collect(self) -> Iterable[Metric]:
        if self.built_at is not None:
            now = time.time() if self.now is None else self.now
            yield GaugeMetricFamily(
                "retail_gold_freshness_seconds",
                "Seconds since the last successful Gold build (gold.build_info)",
                value=max(0.0, now - self.built_at),
            )
            yield GaugeMetricFamily(
                "retail_gold_built_timestamp_seconds",
                "Unix time of the last successful Gold build (gold.build_info)",
                value=self.built_at,
            )
        if self.rows_behind is not None:
            yield GaugeMetricFamily(
                "retail_gold_bronze_rows_behind",
                "Bronze rows ingested after the last Gold build (not in the answers yet)",
                value=self.rows_behind,
            )


GOLD = _Gold()
REGISTRY.register(GOLD)
BRONZE_ROWS = Gauge(
    "retail_bronze_rows",
    "Rows in a Bronze table now (gold.pipeline_freshness, read live)",
    ["table"],
    registry=REGISTRY,
)
LAST_SUCCESS = Gauge(
    "retail_last_success_timestamp_seconds",
    "Unix time a job last finished without error",
    ["job"],
    registry=REGISTRY,
)
REQUESTS = Counter(
    "retail_http_requests",
    "HTTP requests a server answered, by server and status class (2xx, 4xx, 5xx)",
    ["server", "status"],
    registry=REGISTRY,
)

_SERVERS = ("dashboard", "api", "metrics")
_lock = threading.Lock()
_succeeded: set[str] = set()


def reason_class(reason: str | None) -> str:
    """The class of a dead letter's reason, one of :data:`REASONS`."""
    text = reason or ""
    for name, pattern in REASON_CLASSES:
        if pattern.search(text):
            return name
    return "other"


def table_label(table: str | None) -> str:
    """``table`` if it is one of :data:`TABLES`, else :data:`UNKNOWN`."""
    return table if table in TABLES else UNKNOWN


def job_label(job: str) -> str:
    """``job``, checked to be one of :data:`JOBS` (a programming error otherwise)."""
    if job not in JOBS:
        raise ValueError(f"{job!r} is not a job ({', '.join(JOBS)})")
    return job


def record_batch(
    job: str,
    rows: Mapping[str, int],
    dead_letters: Iterable[tuple[str | None, str | None, int]],
    seconds: float,
) -> None:
    """Count one committed batch: ``rows`` per Bronze table, ``dead_letters`` as
    ``(table or None, reason, count)`` and the transaction's ``seconds``."""
    job = job_label(job)
    for table, count in rows.items():
        if count:
            ROWS_LOADED.labels(table_label(table)).inc(count)
    for destination, reason, count in dead_letters:
        if count:
            DEAD_LETTERS.labels(table_label(destination), reason_class(reason)).inc(count)
    BATCHES.labels(job).inc()
    BATCH_SECONDS.labels(job).observe(max(0.0, seconds))


def record_success(job: str, when: float | None = None) -> None:
    """Stamp the job's last success (now, or ``when`` in Unix seconds)."""
    LAST_SUCCESS.labels(job_label(job)).set(time.time() if when is None else when)
    _succeeded.add(job)


def set_kafka_lag(topic: str, partition: int, lag: int) -> None:
    """The lag of one partition (topic names come from the configuration, never a message)."""
    KAFKA_LAG.labels(topic, str(int(partition))).set(max(0, lag))


def forget_kafka_partition(topic: str, partition: int) -> None:
    """Drop the lag of a partition this process no longer owns (another member reports it)."""
    with contextlib.suppress(KeyError):
        KAFKA_LAG.remove(topic, str(int(partition)))


def set_gold(
    built_at: datetime | None,
    rows_behind: int | None = None,
    bronze_rows: Mapping[str, int] | None = None,
    *,
    now: float | None = None,
) -> None:
    """Gold's freshness from its build info: when it was built, the Bronze rows it misses,
    and the Bronze row counts by table. An unknown build time leaves no freshness series."""
    GOLD.built_at = None if built_at is None else built_at.timestamp()
    GOLD.now = now
    GOLD.rows_behind = rows_behind
    for table, count in (bronze_rows or {}).items():
        if table in TABLES:
            BRONZE_ROWS.labels(table).set(count)


def count_request(server: str, status: int) -> None:
    """Count one answered request of ``server`` (dashboard, api, metrics) by status class."""
    if server in _SERVERS:
        REQUESTS.labels(server, f"{int(status) // 100}xx").inc()


def exposition() -> tuple[bytes, str]:
    """The registry in Prometheus's text format, and its content type."""
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def textfile_path(job: str, directory: Path | None = None) -> Path | None:
    """``$RETAIL_METRICS_DIR/retail_pipeline_<job>.prom``, or None when it is not set."""
    folder = directory if directory is not None else settings().metrics_dir
    return None if folder is None else folder / f"retail_pipeline_{job_label(job)}.prom"


def _previous_success(path: Path, job: str) -> float | None:
    """The last success of ``job`` recorded in an earlier textfile, if any."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    try:
        for family in text_string_to_metric_families(text):
            if family.name == "retail_last_success_timestamp_seconds":
                for sample in family.samples:
                    if sample.labels.get("job") == job:
                        return float(sample.value)
    except ValueError:
        return None
    return None


def write_textfile(job: str, directory: Path | None = None) -> Path | None:
    """Write the registry to ``retail_pipeline_<job>.prom`` in ``RETAIL_METRICS_DIR``
    (atomically: a temporary file renamed over it), when set. A run that did not succeed
    carries the previous file's last success forward, so the series never disappears. A
    file that cannot be written is one warning line: metrics never fail a job."""
    try:
        path = textfile_path(job, directory)
        if path is None:
            return None
        with _lock:
            if job not in _succeeded:
                previous = _previous_success(path, job)
                if previous is not None:
                    LAST_SUCCESS.labels(job).set(previous)
            path.parent.mkdir(parents=True, exist_ok=True)
            write_to_textfile(str(path), REGISTRY)
        return path
    except (OSError, PipelineError) as exc:
        print(f"warning: metrics not written: {one_line(str(exc))}", file=sys.stderr)
        return None


ALLOWED_METHODS = ("GET", "HEAD")
MAX_CONNECTIONS = 8
"""Scrapes served at once; one more is answered 503 at once."""
REQUEST_TIMEOUT_SECONDS = 10.0


class _MetricsHandler(BaseHTTPRequestHandler):
    """``GET /metrics`` only, for the Host names the server was bound for."""

    server_version = "retail-pipeline-metrics"
    protocol_version = "HTTP/1.0"
    timeout = REQUEST_TIMEOUT_SECONDS

    def version_string(self) -> str:
        return self.server_version

    def do_GET(self) -> None:
        allowed: frozenset[str] = getattr(self.server, "allowed", frozenset())
        given = self.headers.get_all("Host") or []
        if len(given) != 1 or given[0].strip().lower() not in allowed:
            self._answer(HTTPStatus.MISDIRECTED_REQUEST, b"unknown Host\n", "text/plain")
        elif self.path.partition("?")[0] != "/metrics":
            self._answer(HTTPStatus.NOT_FOUND, b"only /metrics is served\n", "text/plain")
        else:
            body, kind = exposition()
            self._answer(HTTPStatus.OK, body, kind)

    def do_HEAD(self) -> None:
        self.do_GET()

    def _answer(self, status: HTTPStatus, body: bytes, kind: str) -> None:
        count_request("metrics", status)
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """A malformed request, a method other than GET/HEAD: a plain short answer."""
        status = HTTPStatus(code)
        if status == HTTPStatus.NOT_IMPLEMENTED:
            status = HTTPStatus.METHOD_NOT_ALLOWED
        self._answer(status, f"{status.phrase}\n".encode(), "text/plain")

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: scrapes are not news for the terminal."""


class MetricsServer(BoundedHTTPServer):
    """The ``/metrics`` server of a process without a web server of its own."""

    allowed: frozenset[str] = frozenset()

    @property
    def port(self) -> int:
        """The port it listens on (the one picked, for port 0)."""
        return int(self.server_address[1])

    def stop(self) -> None:
        """Stop serving and release the port."""
        self.shutdown()
        self.server_close()


def hosts_for(host: str, port: int) -> frozenset[str]:
    """The ``Host`` header values answered: loopback names and the bound address, with port."""
    names = {"127.0.0.1", "localhost", "[::1]"}
    if host not in ("", "0.0.0.0", "::"):
        names.add(f"[{host}]" if ":" in host else host)
    return frozenset(f"{name}:{port}" for name in names)


def serve(host: str, port: int) -> MetricsServer:
    """Serve ``/metrics`` on ``host``:``port`` (0: any free port) in a daemon thread; at most
    :data:`MAX_CONNECTIONS` scrapes at once, each with a deadline."""
    try:
        server = MetricsServer((host, port), _MetricsHandler, max_connections=MAX_CONNECTIONS)
    except (OSError, OverflowError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "ports go from 0 to 65535"
        raise PipelineError(f"cannot serve /metrics on {host}:{port}: {reason}") from None
    server.allowed = hosts_for(host, server.port)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True, name="metrics"
    )
    thread.start()
    return server
