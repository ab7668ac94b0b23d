"""``retail-pipeline run``: Kafka into Bronze and Silver/Gold rebuilt, continuously, in one process.

Two threads share one warehouse. The loader is the exactly-once Kafka consumer of ``ingest
--kafka`` (:class:`~retail_pipeline.ingestion.kafka.consumer.KafkaBronzeConsumer`), unchanged;
every batch it commits with rows marks Bronze as ahead of Gold. The builder waits until the
oldest row not yet built has waited ``build_delay`` seconds (``RETAIL_RUN_BUILD_DELAY_SECONDS``)
and runs one incremental ``dbt build`` (:func:`~retail_pipeline.transform.run_transform`); builds
run one after another in that one thread, so they never overlap, and a batch committed while a
build runs is built by the next one.

On DuckDB, one process may hold the file: the loader's connection, dbt-duckdb's and the readers'
(the dashboard served with ``--dashboard``, Gold's status) are connections to one database
instance (``warehouse/duckdb.py``, ``_join``), and DuckDB's MVCC lets the loader keep appending
to Bronze while dbt reads it and writes Silver and Gold (appends never conflict with the
models' writes). A batch stamped before a build's snapshot but committed after it is read by the
next build: staging re-reads ``lookback_minutes`` of ``_ingested_at`` (dbt/macros/incremental.sql).
``RETAIL_DUCKDB_MEMORY`` bounds the instance, hence loader and builder together. On Snowflake the
two threads simply write concurrently, as separate sessions.

A stop (SIGTERM, or a first Ctrl-C) lets the loader commit the batches in hand and a running build
finish; no new build starts. A second Ctrl-C aborts at once: dbt's models are each one transaction,
so a build cut short leaves each model as it was before or after it, never half written, and the
next build catches up.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

import duckdb
from prometheus_client import Counter, Gauge
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from retail_pipeline import metrics
from retail_pipeline.errors import PipelineError, WarehouseOutOfMemory, one_line
from retail_pipeline.warehouse import Warehouse, open_warehouse

if TYPE_CHECKING:
    from retail_pipeline.ingestion.kafka.consumer import ConsumerSettings, ConsumeSummary
    from retail_pipeline.warehouse.base import EventBatch, Position, WriteResult

__all__ = ["Pending", "RunSummary", "run_continuous"]

_T = TypeVar("_T")

LOOKBACK_MINUTES = 1
"""Staging's lookback (dbt var ``lookback_minutes``) for the builds of ``run`` on DuckDB.

The project's 60 minutes cover loaders in other processes whose batches commit out of stamp
order; a build re-reads that window of Bronze, which at 20,000 events/s is 72 million rows a
build. Here the process holds the file, so its one loader is the only writer and commits batch
after batch: each batch's stamp (its transaction's start) is later than the previous commit,
so commit order is stamp order and a batch a build did not see is stamped after everything it
did. A minute is left for safety. On Snowflake other loaders may write beside ``run``: the
project's lookback stays."""

RETRY_WAIT_SECONDS = 120.0
"""The longest the loader waits for a build to end before trying again a batch that build's
memory made fail (refused again while the build still runs: it waits again). Meanwhile the
consumer does not poll Kafka; past ``max.poll.interval.ms`` (300 s) the broker gives its
partitions to the group again, and the offsets stored with Bronze keep every message once."""

MAX_RETRY_SECONDS = 300.0
"""The longest a failed build waits before the next attempt (the wait doubles per failure)."""

BUILDS = Counter(
    "retail_run_builds",
    "Silver/Gold builds retail-pipeline run started, by result (success, failure)",
    ["result"],
    registry=metrics.REGISTRY,
)
LAST_BUILD_SECONDS = Gauge(
    "retail_run_last_build_seconds",
    "Seconds the last build of retail-pipeline run took",
    registry=metrics.REGISTRY,
)
LAST_BUILD_SUCCESS = Gauge(
    "retail_run_last_build_success",
    "1 if the last build of retail-pipeline run succeeded, else 0",
    registry=metrics.REGISTRY,
)


class Pending:
    """Bronze committed and not yet built: when the oldest such batch was committed.

    The loader calls :meth:`committed` after each batch with rows; the builder :meth:`take`s the
    mark when a build starts (what commits from then on is the next build's), and ends it with
    :meth:`built`, or gives it back with :meth:`restore` when that build failed. Until then the
    taken mark still counts in :meth:`lag_seconds`: its rows are not in Gold yet.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._since: float | None = None
        self._wall: float | None = None
        self._building: float | None = None
        self._held = 0

    def committed(self) -> None:
        """A batch with rows was committed to Bronze just now."""
        with self._changed:
            if self._since is None:
                self._since, self._wall = time.monotonic(), time.time()
                self._changed.notify_all()

    def oldest(self) -> float | None:
        """Monotonic time of the oldest unbuilt commit (None: Gold is up to date)."""
        with self._lock:
            return self._since

    def lag_seconds(self) -> float:
        """How long the oldest unbuilt commit has waited (0 when none waits)."""
        with self._lock:
            marks = [mark for mark in (self._wall, self._building) if mark is not None]
            return max(0.0, time.time() - min(marks)) if marks else 0.0

    def take(self) -> tuple[float, float] | None:
        """Clear the mark and return it (monotonic, wall), or None when nothing waits or builds
        are held (:meth:`hold`)."""
        with self._lock:
            if self._since is None or self._wall is None or self._held:
                return None
            taken = (self._since, self._wall)
            self._since = self._wall = None
            self._building = taken[1]
            return taken

    def built(self) -> None:
        """The build of the taken mark succeeded: its rows are in Gold."""
        with self._changed:
            self._building = None
            self._changed.notify_all()

    def building(self) -> bool:
        """Whether a build is running (taken, neither built nor restored yet)."""
        with self._lock:
            return self._building is not None

    @contextmanager
    def hold(self, timeout: float) -> Iterator[None]:
        """No build starts inside the block, which begins once the running build (if any) has
        ended or after ``timeout`` seconds, whichever comes first."""
        with self._changed:
            self._held += 1
            self._changed.wait_for(lambda: self._building is None, timeout)
        try:
            yield
        finally:
            with self._changed:
                self._held -= 1
                self._changed.notify_all()

    def restore(self, taken: tuple[float, float]) -> None:
        """Put back a mark whose build failed (older than any commit since)."""
        with self._changed:
            self._building = None
            if self._since is None or taken[0] < self._since:
                self._since, self._wall = taken
            self._changed.notify_all()

    def wait(self, timeout: float) -> None:
        """Until something is pending, or ``timeout`` seconds."""
        with self._changed:
            if self._since is None:
                self._changed.wait(timeout)


class _Lag(Collector):
    """``retail_run_bronze_to_gold_lag_seconds``: how long committed Bronze has waited for Gold."""

    def __init__(self) -> None:
        self.pending: Pending | None = None

    def collect(self) -> Iterable[Metric]:
        if self.pending is not None:
            yield GaugeMetricFamily(
                "retail_run_bronze_to_gold_lag_seconds",
                "Seconds the oldest Bronze batch not yet in Gold has waited (0: Gold has all"
                " of Bronze that retail-pipeline run committed)",
                value=self.pending.lag_seconds(),
            )


_LAG = _Lag()
metrics.REGISTRY.register(_LAG)


class _Notifying:
    """The loader's warehouse: every committed batch with rows or dead letters marks Bronze as
    ahead of Gold (Silver counts dead letters too). All else is the warehouse itself.

    On DuckDB the loader and the builds share one instance and its memory limit, so a batch can
    be refused for memory because a build holds most of it: such a batch (rolled back whole:
    rows and offsets are one transaction) is written again once the build has ended, with no new
    build starting until it is in; so is the read of the stored offsets at a partition
    assignment. A batch refused for memory while no build runs needs more than the limit by
    itself: that error stops ``run``, naming the setting to raise.
    """

    def __init__(self, warehouse: Warehouse, pending: Pending, echo: Callable[[str], None]):
        self._warehouse = warehouse
        self._pending = pending
        self._echo = echo
        self.retried = 0

    def write_events(self, batch: EventBatch) -> WriteResult:
        result = self._patient(
            f"a batch of {batch.read} messages was rolled back",
            lambda: self._warehouse.write_events(batch),
        )
        if result.loaded or result.dead_lettered:
            self._pending.committed()
        return result

    def all_positions(self) -> list[Position]:
        """The stored offsets (read when partitions are assigned), as patient as a write."""
        return self._patient("reading the stored offsets failed", self._warehouse.all_positions)

    def _patient(self, what: str, call: Callable[[], _T]) -> _T:
        """``call()``; refused for memory while a build ran: again once the build has ended."""
        while True:
            during_build = self._pending.building()
            try:
                return call()
            except (WarehouseOutOfMemory, duckdb.OutOfMemoryException):
                if not (during_build or self._pending.building()):
                    raise
            self.retried += 1
            self._echo(
                f"loader: {what}: a build held the warehouse's memory (RETAIL_DUCKDB_MEMORY);"
                " again when it ends"
            )
            with self._pending.hold(RETRY_WAIT_SECONDS):
                if not self._pending.building():
                    return call()
            # the build outlasted the wait: try again, and wait again if it still runs

    def __getattr__(self, name: str) -> Any:
        return getattr(self._warehouse, name)


@dataclass
class RunSummary:
    """What one ``run`` did."""

    consume: ConsumeSummary | None = None
    builds: int = 0
    failed_builds: int = 0
    build_seconds: float = 0.0
    stopped_by: str = ""
    errors: list[str] = field(default_factory=list)

    def line(self) -> str:
        """The one-line summary the CLI prints last."""
        consumed = self.consume.line() if self.consume is not None else "consumed nothing"
        failed = f" ({self.failed_builds} failed)" if self.failed_builds else ""
        return (
            f"{consumed}; {self.builds} builds{failed} in {self.build_seconds:.1f}s"
            f" ({self.stopped_by or 'stopped'})"
        )


class _Builder:
    """The build loop (one thread): never two builds at once, none after the stop."""

    def __init__(
        self,
        warehouse: Path | None,
        target: str | None,
        pending: Pending,
        delay: float,
        stop: threading.Event,
        summary: RunSummary,
        echo: Callable[[str], None],
        on_built: Callable[[], None],
    ) -> None:
        self.warehouse = warehouse
        self.target = target
        self.pending = pending
        self.delay = delay
        self.stop = stop
        self.summary = summary
        self.echo = echo
        self.on_built = on_built
        self.failures_in_row = 0
        self.error: BaseException | None = None
        self.dbt_vars: dict[str, Any] = {}

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                oldest = self.pending.oldest()
                if oldest is None:
                    self.pending.wait(0.5)
                    continue
                wait = self.delay * (2**self.failures_in_row if self.failures_in_row else 1)
                due = oldest + min(wait, max(self.delay, MAX_RETRY_SECONDS))
                if time.monotonic() < due:
                    self.stop.wait(min(due - time.monotonic(), 0.5))
                    continue
                taken = self.pending.take()
                if taken is not None:
                    self._build(taken)
                else:  # builds are held while the loader writes a batch again
                    self.stop.wait(0.1)
        except BaseException as exc:  # surfaced by the main thread
            self.error = exc
            self.stop.set()

    def _build(self, taken: tuple[float, float]) -> None:
        from retail_pipeline.transform import run_transform

        number = self.summary.builds + 1
        started = time.perf_counter()
        waited = time.time() - taken[1]
        try:
            result = run_transform(
                self.warehouse, target=self.target, extra_vars=self.dbt_vars or None
            )
        except PipelineError as exc:
            ok, line = False, f"dbt build could not run: {one_line(str(exc))}"
        except Exception as exc:  # any error of a build is retried: it never ends run
            ok, line = False, f"dbt build failed: {type(exc).__name__}: {one_line(str(exc))}"
        else:
            ok, line = result.success, result.line()
            for failure in result.failures[:5]:
                self.echo(f"build {number}: failed: {failure.unique_id}: {failure.message}")
        seconds = time.perf_counter() - started
        self.summary.builds = number
        self.summary.build_seconds += seconds
        BUILDS.labels("success" if ok else "failure").inc()
        LAST_BUILD_SECONDS.set(seconds)
        LAST_BUILD_SUCCESS.set(1 if ok else 0)
        self.echo(f"build {number} (oldest batch waited {waited:.1f}s): {line}")
        if ok:
            self.pending.built()
            self.failures_in_row = 0
            metrics.record_success("transform")
            try:  # Gold's metrics and the dashboard's start read the warehouse, which may fail
                self.on_built()
            except Exception as exc:  # (out of memory under the loader, say): never ends run
                self.echo(
                    f"build {number}: after the build: {type(exc).__name__}: {one_line(str(exc))}"
                )
        else:
            self.summary.failed_builds += 1
            self.failures_in_row += 1
            self.pending.restore((time.monotonic(), taken[1]))


def _gold_metrics(warehouse: Path | None, target: str | None) -> None:
    """Gold's freshness series after a build (one small query; unreadable: left as they were)."""
    from retail_pipeline.transform import gold_status

    try:
        status = gold_status(warehouse, target=target)
    except PipelineError:
        return
    behind = status.events_since + status.reference_rows_since
    metrics.set_gold(status.built_at, behind if status.freshness_known else None)


def run_continuous(
    warehouse: Path | None,
    target: str | None,
    consumer: ConsumerSettings,
    *,
    build_delay: float,
    stop: threading.Event,
    echo: Callable[[str], None] = print,
    on_started: Callable[[], None] | None = None,
    on_built: Callable[[], None] | None = None,
) -> RunSummary:
    """Consume Kafka into Bronze and rebuild Silver/Gold until ``stop`` is set (or a thread
    fails: its error is raised once both threads have ended).

    The first build runs ``build_delay`` seconds after the start, so Gold takes in whatever
    Bronze held already. ``on_started`` is called once the consumer and the threads run (the
    CLI installs its signal handlers there), ``on_built`` in the builder's thread after each
    successful build (the CLI starts the dashboard there once Gold exists).
    """
    from retail_pipeline.ingestion.kafka.consumer import KafkaBronzeConsumer

    summary = RunSummary()
    pending = Pending()
    pending.committed()  # build once at the start: Bronze may hold rows Gold has not seen
    _LAG.pending = pending

    def built() -> None:
        _gold_metrics(warehouse, target)
        if on_built is not None:
            on_built()

    wh = open_warehouse(warehouse, target=target)  # DuckDB: the file lock, held to the end
    threads: list[threading.Thread] = []
    try:
        loader = KafkaBronzeConsumer(cast(Warehouse, _Notifying(wh, pending, echo)), consumer)
        builder = _Builder(warehouse, target, pending, build_delay, stop, summary, echo, built)
        if wh.target == "duckdb":
            builder.dbt_vars["lookback_minutes"] = LOOKBACK_MINUTES
        loader_error: list[BaseException] = []

        def consume() -> None:
            try:
                summary.consume = loader.run(stop=stop)
            except BaseException as exc:
                loader_error.append(exc)
                stop.set()

        threads += [
            threading.Thread(target=consume, name="run-loader", daemon=True),
            threading.Thread(target=builder.run, name="run-builder", daemon=True),
        ]
        for thread in threads:
            thread.start()
        if on_started is not None:
            on_started()
        while any(thread.is_alive() for thread in threads):
            for thread in threads:
                thread.join(0.2)
        if loader_error:
            raise loader_error[0]
        if builder.error is not None:
            raise builder.error
    finally:
        _LAG.pending = None
        if not any(thread.is_alive() for thread in threads):
            wh.close()  # else an abort (a second Ctrl-C): the process ends, and the file with it
    summary.stopped_by = summary.consume.stopped_by if summary.consume else "stopped"
    return summary
