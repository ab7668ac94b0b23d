"""Run the dbt project in-process (``dbtRunner``) against the warehouse of a target.

The runner opens the warehouse through the seam (``open_warehouse``), which checks it, and
hands dbt the target's name and the environment its profile reads (for DuckDB the absolute
``RETAIL_WAREHOUSE``, so the result never depends on the caller's working directory; for
Snowflake the ``SNOWFLAKE_*`` settings). Progress is reported per dbt node (model, test, unit
test) from dbt's event stream, and the run ends in a :class:`TransformSummary`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from retail_pipeline import interrupts, lineage
from retail_pipeline.errors import PipelineError, WarehouseError, one_line, printable
from retail_pipeline.settings import (
    current_environment,
    environment,
    layer_schema,
    schema_prefix,
    settings,
)
from retail_pipeline.warehouse import Warehouse, open_warehouse

DBT_PROJECT_ENV = "RETAIL_DBT_PROJECT_DIR"
"""Overrides where the dbt project lives (default: the ``dbt/`` folder of this repository)."""


class TransformError(PipelineError):
    """dbt could not run (bad project, unreadable warehouse), as opposed to a failing node."""


@dataclass(frozen=True)
class NodeProgress:
    """One dbt node finished: what it was and how it went."""

    index: int
    """How many nodes have finished, this one included."""
    total: int
    """Nodes selected for the run (0 until dbt has announced it)."""
    name: str
    resource_type: str
    """model, test, unit_test, ..."""
    status: str
    """success, pass, fail, warn, error, skipped, ..."""
    seconds: float


@dataclass(frozen=True)
class NodeFailure:
    """A node that errored or failed, with dbt's message.

    For a failing data test, ``rows_query`` selects its failing rows (every data test keeps
    them as a view, see ``data_tests`` in ``dbt_project.yml``), and ``message`` ends with it.
    """

    unique_id: str
    status: str
    message: str
    rows_query: str | None = None


@dataclass(frozen=True)
class SourceFreshness:
    """One Bronze table as ``dbt source freshness`` judged it (``_bronze__sources.yml``)."""

    table: str
    status: str
    """``pass``, ``warn``, ``error`` (past ``error_after``) or ``runtime error``."""
    max_loaded_at: datetime | None
    age_seconds: float | None
    warn_after: str | None
    """e.g. ``6 hours`` (None: no limit)."""
    error_after: str | None
    message: str = ""

    def line(self) -> str:
        """One line saying how stale the table is and against which limit."""
        if self.status == "runtime error":
            return f"bronze.{self.table}: freshness unknown: {self.message}"
        limit = self.error_after if self.status == "error" else self.warn_after
        which = "error_after" if self.status == "error" else "warn_after"
        loaded = (
            "no rows yet"
            if self.max_loaded_at is None
            else f"newest row loaded {self.max_loaded_at.strftime('%Y-%m-%d %H:%M:%S')} UTC"
        )
        age = "" if self.age_seconds is None else f", {self.age_seconds / 3600:.1f} hours ago"
        return f"bronze.{self.table}: {loaded}{age}, past {which} ({limit})"


@dataclass
class TransformSummary:
    """What one ``run_transform`` did."""

    warehouse: str
    """Where it ran, as the warehouse describes itself."""
    command: str
    full_refresh: bool
    success: bool
    seconds: float
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    """Per resource type (model, test, unit_test), how many nodes ended in each status."""
    failures: list[NodeFailure] = field(default_factory=list)
    freshness: list[SourceFreshness] | None = None
    """What ``dbt source freshness`` said before the build (None: not run)."""
    freshness_error: str | None = None
    """Why ``dbt source freshness`` could not run (the build ran anyway)."""
    cloned: int = 0
    """Models a deferred build cloned from production instead of building (``--defer``)."""
    skipped: bool = False
    """Nothing to do: the project, its settings and Bronze are as the last successful build
    found them (its ``input_signature``), so dbt was not started."""
    tests: str = "all"
    """What the data tests read: ``increment`` (the rows the build wrote) or ``all``."""

    @property
    def stale(self) -> list[SourceFreshness]:
        """The Bronze tables past their ``warn_after`` or ``error_after``."""
        return [f for f in self.freshness or [] if f.status != "pass"]

    def line(self) -> str:
        """The one-line summary the CLI prints."""
        parts = []
        for kind, label in (("model", "models"), ("test", "tests"), ("unit_test", "unit tests")):
            statuses = self.counts.get(kind)
            if statuses:
                detail = ", ".join(f"{n} {status}" for status, n in sorted(statuses.items()))
                parts.append(f"{label}: {detail}")
        mode = " --full-refresh" if self.full_refresh else ""
        if self.skipped:
            return (
                f"dbt {self.command} skipped in {self.seconds:.1f}s: nothing new since the last"
                " build (same project, settings and Bronze)"
            )
        if self.tests == "increment" and self.command in {"build", "test"}:
            parts.append("tests read the increment")
        verdict = "ok" if self.success else f"FAILED ({len(self.failures)} failing)"
        if self.cloned:
            parts.append(f"{self.cloned} unchanged models cloned from production")
        return f"dbt {self.command}{mode} {verdict} in {self.seconds:.1f}s; " + "; ".join(parts)


def project_dir() -> Path:
    """The dbt project: ``RETAIL_DBT_PROJECT_DIR``, else ``dbt/`` of the source checkout."""
    configured = settings().dbt_project_dir
    default = Path(__file__).resolve().parents[3] / "dbt"
    path = configured.resolve() if configured else default
    if not (path / "dbt_project.yml").is_file():
        raise TransformError(
            f"no dbt project at {path} (dbt_project.yml missing); set {DBT_PROJECT_ENV}"
        )
    return path


def target_dir() -> Path:
    """Where dbt writes its artifacts: ``RETAIL_DBT_TARGET_DIR``, else ``target/`` in the
    project (dbt's own default). It holds dbt's partial-parse state, so builds that run at the
    same time from one project need one each (the test suite's workers do)."""
    configured = settings().dbt_target_dir
    return configured.resolve() if configured else project_dir() / "target"


class _Progress:
    """Turns dbt's event stream into :class:`NodeProgress` calls."""

    def __init__(self, report: Callable[[NodeProgress], None] | None) -> None:
        self.report = report
        self.total = 0
        self.done = 0

    def __call__(self, msg: Any) -> None:
        name = msg.info.name
        if name == "LogStartLine":
            self.total = max(self.total, int(msg.data.total))
        elif name == "ConcurrencyLine":
            self.total = max(self.total, int(msg.data.node_count))
        elif name == "NodeFinished":
            self.done += 1
            if self.report is not None:
                info = msg.data.node_info
                result = msg.data.run_result
                self.report(
                    NodeProgress(
                        index=self.done,
                        total=max(self.total, self.done),
                        name=info.node_name,
                        resource_type=info.resource_type,
                        status=result.status or info.node_status,
                        seconds=float(result.execution_time),
                    )
                )


def _release_duckdb() -> None:
    """Close the DuckDB database dbt-duckdb keeps open for the process.

    dbt-duckdb caches one database handle per process between invocations; while it is open the
    file stays locked and cannot be reopened read-only (or by the loaders) in this process.
    """
    try:
        from dbt.adapters.duckdb.connections import DuckDBConnectionManager
    except ImportError:  # pragma: no cover - dbt-duckdb is a dependency
        return
    with DuckDBConnectionManager._LOCK:
        environment = DuckDBConnectionManager._ENV
        DuckDBConnectionManager._ENV = None
        if environment is not None:
            environment.close()


LOCK_WAIT = 60.0
"""Seconds a DuckDB build waits for another process's lock (a loader's batch, a dashboard's
read) before it gives up, as the loaders do."""


@contextmanager
def _interrupts() -> Iterator[Callable[[], bool]]:
    """Remember a Ctrl-C (SIGINT) for the length of the block, whatever dbt makes of the
    KeyboardInterrupt it raises: the block yields whether one came. Outside the main thread
    (an orchestrator's worker) signals are not ours to handle, and nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield lambda: False
        return
    seen: list[int] = []
    previous = signal.getsignal(signal.SIGINT)

    def on_interrupt(signum: int, frame: object) -> None:
        seen.append(signum)
        interrupts.note()
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, on_interrupt)
    try:
        yield lambda: bool(seen) or interrupts.pending()
    finally:
        signal.signal(signal.SIGINT, previous)


def _one_line(exc: BaseException) -> str:
    """dbt's message (which may quote a value or a connection string) as one safe line."""
    return one_line(str(exc))


def _locked(exc: BaseException | None) -> bool:
    """Whether dbt could not open the DuckDB file because another process holds its lock."""
    lowered = _one_line(exc).lower() if exc is not None else ""
    return "lock" in lowered and ("conflicting" in lowered or "could not set lock" in lowered)


def _run_error(exc: BaseException, where: str) -> PipelineError:
    if _locked(exc):
        return WarehouseError(f"{where} is locked by another process")
    return TransformError(f"dbt could not run on {where}: {_one_line(exc)}")


@dataclass(frozen=True)
class _DbtTarget:
    """What dbt needs to build on one warehouse: its target, environment and a name for it."""

    name: str
    env: dict[str, str]
    where: str
    marks: tuple[tuple[str, ...], ...] = ()
    """How far Bronze had got when the build was prepared (``Warehouse.bronze_marks``)."""
    last_signature: str | None = None
    """``input_signature`` of the last successful build (``gold.build_info``), if any."""
    tested_through: datetime | None = None
    """The ``_ingested_at`` up to which the last successful build read Bronze (its Bronze data
    tests saw everything up to it)."""
    built_before: bool = False
    """Whether a build has succeeded here before (``gold.build_info`` exists)."""


TEST_SCOPES = ("increment", "all")
"""What data tests read on an incremental build: the rows it wrote, or everything."""

WHOLE_TABLE_TAG = "whole_table"
"""Singular tests that reconcile whole tables: full builds and ``tests="all"`` only."""


def _last_build(wh: Warehouse) -> tuple[bool, str | None, datetime | None]:
    """Whether a build succeeded here before; if so its input signature, and the
    ``_ingested_at`` up to which it read every Bronze table (the older of its events' and
    reference data's newest stamps)."""
    schema = layer_schema("gold")
    present = wh.tables(schema)
    if "build_info" not in present or "build_log" not in present:
        return False, None, None
    try:
        rows = wh.query(
            "select input_signature, events_ingested_through, reference_ingested_through"
            f" from {schema}.build_info"
        )
        # build_info is written by a build whose models upstream of it passed; a node that
        # failed elsewhere in the same build (or any later invocation) shows in build_log.
        last = wh.query(f"select status from {schema}.build_log order by finished_at desc limit 1")
    except Exception:  # a Gold built before input_signature existed: no signature to match
        return True, None, None
    if not rows:
        return False, None, None
    signature, events, reference = rows[0]
    if not last or last[0][0] != "success":
        signature = None
    stamps = [_utc(v) for v in (events, reference) if isinstance(v, datetime)]
    return True, (str(signature) if signature else None), (min(stamps) if stamps else None)


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def project_digest(project: Path, key: str = "") -> str:
    """A digest of the dbt project's sources (models, macros, tests, config) and ``key``."""
    digest = hashlib.sha256(key.encode() + b"\0")
    files = [project / name for name in PROJECT_FILES if (project / name).is_file()]
    for folder in PROJECT_DIRS:
        if (project / folder).is_dir():
            files += sorted(p for p in (project / folder).rglob("*") if p.is_file())
    for file in files:
        digest.update(file.relative_to(project).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(file.read_bytes()).digest())
    return digest.hexdigest()[:16]


PROJECT_DIRS = ("models", "macros", "tests", "snapshots", "seeds", "analyses")
PROJECT_FILES = ("dbt_project.yml", "profiles.yml", "packages.yml", "selectors.yml")


def _signature(dbt: _DbtTarget, command: str, dbt_vars: dict[str, Any]) -> str:
    """What a build is given and reads, digested: equal digests, equal Silver and Gold."""
    given = {
        "project": project_digest(project_dir()),
        "target": dbt.name,
        "where": dbt.where,
        "command": command,
        "vars": dbt_vars,
        "env": {k: dbt.env.get(k, "") for k in _SIGNED_ENV},
        "enforce_contracts": settings().dbt_enforce_contracts,
        "bronze": dbt.marks,
    }
    text = json.dumps(given, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


_SIGNED_ENV = ("RETAIL_ENVIRONMENT", "RETAIL_SCHEMA_PREFIX")


def whole_build_env(
    warehouse: str | os.PathLike[str] | None = None,
    *,
    target: str | None = None,
    tests: str = "increment",
) -> dict[str, str] | None:
    """What a whole ``dbt build`` run in pieces (an orchestrator's task per model) is given, as
    :func:`run_transform` decides it for its own: None when it would skip (same project,
    settings and Bronze as the last successful build), else the environment its nodes read:
    ``RETAIL_DBT_INPUT_SIGNATURE`` (the digest; only the piece that records the whole build
    may pass it on), ``RETAIL_DBT_TESTS_SCOPE`` (``all`` on a first build) and, in
    ``increment`` scope, ``RETAIL_DBT_BRONZE_TESTED_SINCE``. In ``increment`` scope the pieces
    exclude unit tests and ``tag:whole_table``, as :func:`run_transform` does."""
    if tests not in TEST_SCOPES:
        raise TransformError(f"tests: {tests!r} is not one of {', '.join(TEST_SCOPES)}")
    dbt = _dbt_target(warehouse, target, inputs=True)
    scope = tests if dbt.built_before else "all"
    signature = _signature(dbt, "build", {})
    if scope == "increment" and signature == dbt.last_signature:
        return None
    env = {"RETAIL_DBT_INPUT_SIGNATURE": signature, "RETAIL_DBT_TESTS_SCOPE": scope}
    if scope == "increment" and dbt.tested_through is not None:
        since = dbt.tested_through - timedelta(minutes=int(_project_var("lookback_minutes")))
        env["RETAIL_DBT_BRONZE_TESTED_SINCE"] = since.isoformat()
    return env


def _project_var(name: str) -> Any:
    """A var's default from ``dbt_project.yml``."""
    import yaml

    config = yaml.safe_load((project_dir() / "dbt_project.yml").read_text(encoding="utf-8"))
    return (config.get("vars") or {}).get(name)


def _dbt_target(
    warehouse: str | os.PathLike[str] | None, target: str | None, *, inputs: bool = False
) -> _DbtTarget:
    """Open the warehouse once (read-only: it refuses a Bronze dbt must not read, at once).

    dbt is given the environment and the schema prefix the settings resolve (a ``dev``
    environment's default prefix, the OS user, included), so ``generate_schema_name`` names
    exactly the schemas :func:`~retail_pipeline.settings.layer_schema` gives every reader."""
    config = settings()
    prefix = schema_prefix(config)  # a bad or missing prefix: one line, before any dbt work
    with open_warehouse(warehouse, target=target, read_only=True) as wh:
        env = {
            **wh.dbt_env(),
            "RETAIL_ENVIRONMENT": config.environment,
            "RETAIL_SCHEMA_PREFIX": prefix,
        }
        if not inputs:
            return _DbtTarget(wh.target, env, wh.describe())
        built, signature, through = _last_build(wh)
        return _DbtTarget(
            wh.target,
            env,
            wh.describe(),
            marks=tuple(wh.bronze_marks()),
            last_signature=signature,
            tested_through=through,
            built_before=built,
        )


def run_dbt(
    args: Sequence[str],
    warehouse: str | os.PathLike[str] | None = None,
    *,
    target: str | None = None,
    progress: Callable[[NodeProgress], None] | None = None,
) -> Any:
    """Invoke dbt in-process with ``args`` (e.g. ``["docs", "generate"]``) on a warehouse.

    ``warehouse`` and ``target`` are as for :func:`run_transform`. Returns dbt's result object;
    raises :class:`TransformError` when dbt itself could not run.
    """
    return _invoke(args, _dbt_target(warehouse, target), progress)


REUSES_A_PARSE = frozenset({"build", "run", "test"})
"""dbt commands that run from a manifest parsed before (``dbtRunner(manifest=...)``)."""

EXECUTE_TIME_ENV = frozenset(
    {
        "RETAIL_DBT_INPUT_SIGNATURE",
        "RETAIL_DBT_TESTS_SCOPE",
        "RETAIL_DBT_BRONZE_TESTED_SINCE",
        "RETAIL_DBT_LOAD_STAMP",
    }
)
"""Variables the project reads only while nodes execute, never while it is parsed: builds with
different values can share one parse. Any other ``RETAIL_*``, ``DBT_*`` or ``SNOWFLAKE_*``
variable that changes makes the next build parse again."""


@dataclass(frozen=True)
class _Parse:
    key: str
    manifest: Any


_last_parse: _Parse | None = None
_parse_lock = threading.Lock()


def _parse_key(project: Path, args: Sequence[str], target: str) -> str:
    """What a parse depends on: the project's sources and place, where dbt writes, the target,
    ``--vars``, and every variable the project or its profile could read while parsing (read
    now, inside the build's environment)."""
    given = [
        str(project),
        project_digest(project),
        str(target_dir()),
        target,
        _vars_args(args),
        sorted(
            (name, value)
            for name, value in current_environment().items()
            if name.startswith(("RETAIL_", "DBT_", "SNOWFLAKE_")) and name not in EXECUTE_TIME_ENV
        ),
    ]
    return hashlib.sha256(json.dumps(given).encode()).hexdigest()


def _parsed(project: Path, args: Sequence[str], common: Sequence[str], target: str) -> Any:
    """The manifest of the project as ``args`` would parse it: the last one made in this
    process while nothing it depends on changed, else a fresh ``dbt parse`` (partial, as dbt
    does, and writing ``manifest.json`` as a build would). None when the parse fails: the
    build then parses by itself and reports the error as it always has.

    dbt spends about 1.3 s of a small build's 10 s parsing and writing the manifest again
    (docs/transform.md, "Where a small build's time goes"); ``retail-pipeline run`` builds
    every few seconds in one process, so it parses once. Called inside the build's
    environment."""
    from dbt.cli.main import dbtRunner

    global _last_parse
    key = _parse_key(project, args, target)
    with _parse_lock:
        known = _last_parse
        if known is not None and known.key == key and _same_env_vars(known.manifest):
            return known.manifest
        try:
            outcome = dbtRunner().invoke(["parse", *_vars_args(args), *common])
        finally:
            _release_duckdb()
        if not outcome.success or outcome.result is None:
            _last_parse = None
            return None
        _last_parse = _Parse(key, outcome.result)
        return outcome.result


def _vars_args(args: Sequence[str]) -> list[str]:
    """The ``--vars`` options of ``args``, which the parse is given too."""
    found: list[str] = []
    for i, arg in enumerate(args[:-1]):
        if arg == "--vars":
            found += [arg, args[i + 1]]
    return found


def _same_env_vars(manifest: Any) -> bool:
    """Whether every variable the models and macros read while parsing still has the value
    they read (dbt records them in the manifest, an unset one as its placeholder; it records
    some read while tests execute too, which :data:`EXECUTE_TIME_ENV` leaves out)."""
    from dbt.constants import DEFAULT_ENV_PLACEHOLDER

    recorded = getattr(manifest, "env_vars", {}) or {}
    now = current_environment()
    return all(
        now.get(name, DEFAULT_ENV_PLACEHOLDER) == value
        for name, value in recorded.items()
        if name not in EXECUTE_TIME_ENV
    )


def _invoke(
    args: Sequence[str], dbt: _DbtTarget, progress: Callable[[NodeProgress], None] | None
) -> Any:
    from dbt.cli.main import dbtRunner

    project = project_dir()
    callback = _Progress(progress)
    common = [
        "--target",
        dbt.name,
        "--project-dir",
        str(project),
        "--profiles-dir",
        str(project),
        "--target-path",
        str(target_dir()),
        "--log-level",
        "none",
    ]
    full_args = [*args, *common]
    # --state compares the project with another manifest: dbt parses then, as ever
    reuse = bool(args) and args[0] in REUSES_A_PARSE and "--state" not in args
    deadline = time.monotonic() + LOCK_WAIT
    delay = 0.05
    with _interrupts() as interrupted:
        while True:
            with environment(**dbt.env):
                manifest = _parsed(project, args, common, dbt.name) if reuse else None
                if interrupted():  # a Ctrl-C during the parse: no build starts
                    raise KeyboardInterrupt
                try:
                    outcome = dbtRunner(manifest=manifest, callbacks=[callback]).invoke(full_args)
                finally:
                    _release_duckdb()
            # dbt-duckdb opens the file once, before any node runs, and does not wait for a
            # lock a reader or loader holds for a moment: wait as the loaders do, then build.
            if interrupted() or not (_locked(outcome.exception) and time.monotonic() < deadline):
                break
            time.sleep(delay)
            delay = min(delay * 2, 1.0)
    # dbt catches Ctrl-C: as an error of its own, or (in some phases of parsing) not at all
    if interrupted() or isinstance(outcome.exception, KeyboardInterrupt):
        raise KeyboardInterrupt from outcome.exception
    if outcome.exception is not None:
        raise _run_error(outcome.exception, dbt.where)
    return outcome


_OUT_OF_SYNC = "source and target schemas on this incremental model are out of sync"
_NEW_COLUMN = re.compile(r"column='([A-Za-z0-9_]{1,64})'")


def _failure(result: Any, status: str) -> NodeFailure:
    """A failing node; a failing data test also says where its failing rows are, and an
    incremental model older than its columns (``on_schema_change: fail``: after a Bronze
    ``migrate`` added columns, or a model change) says how to rebuild it, in place of dbt's
    page-long advice."""
    node = result.node
    message = str(result.message or "").strip()
    if _OUT_OF_SYNC in message:
        added = message.split("Source columns not in target:", 1)[-1].split("Target columns", 1)
        columns = ", ".join(_NEW_COLUMN.findall(added[0])) if len(added) == 2 else ""
        message = (
            f"{node.schema}.{node.alias} was built before its columns changed"
            f"{f' (new: {columns})' if columns else ''}, after a Bronze `migrate` or a model"
            " change: run `retail-pipeline transform --full-refresh` once to rebuild the"
            " incremental models from Bronze"
        )
    rows_query = None
    config = getattr(node, "config", None)
    if (
        status == "fail"
        and str(node.resource_type) == "test"
        and getattr(config, "store_failures", False)
    ):
        rows_query = f"select * from {node.schema}.{node.alias}"
        message = f"{message}; failing rows: {rows_query}"
    return NodeFailure(node.unique_id, status, message, rows_query)


def run_transform(
    warehouse: str | os.PathLike[str] | None = None,
    full_refresh: bool = False,
    progress: Callable[[NodeProgress], None] | None = None,
    *,
    target: str | None = None,
    select: Sequence[str] = (),
    command: str = "build",
    extra_vars: dict[str, Any] | None = None,
    source_freshness: bool = False,
    defer_state: str | os.PathLike[str] | None = None,
    tests: str = "increment",
    lineage_parent: lineage.ParentRun | None = None,
) -> TransformSummary:
    """Build Silver and Gold with dbt (models, tests, unit tests) on a warehouse holding Bronze.

    ``target`` is ``duckdb`` or ``snowflake`` (default ``RETAIL_TARGET``); ``warehouse`` is the
    DuckDB file (default ``RETAIL_WAREHOUSE``, else ``data/warehouse.duckdb``). Incremental
    models process only what was ingested since the last run; ``full_refresh`` rebuilds them
    from all of Bronze. ``progress`` is called after every dbt node. ``command`` may be ``run``
    (models only). Failing nodes are reported in the summary (``success`` false), not raised.
    ``source_freshness`` runs ``dbt source freshness`` first: the summary says which Bronze
    tables are stale (``stale``); a stale source never stops the build (docs/operations.md).
    ``defer_state`` (a folder holding a production build's ``manifest.json``; ``dev`` and ``ci``
    environments only) builds only the models that differ from it and their children
    (``state:modified+``), reading unchanged parents from production (``--defer``).

    ``tests`` says what the data tests of an incremental build read: ``increment`` (default)
    the rows the build wrote and the Bronze rows ingested since the last build, without unit
    tests and whole-table reconciliations; ``all`` everything, as a full refresh always does
    (run it on a schedule). An incremental build whose project, settings and Bronze are those
    of the last successful build (its ``input_signature``) does not start dbt: the summary is
    ``skipped``. ``lineage_parent`` is the run the models' OpenLineage runs belong to (an
    Airflow task's; default a run of job ``transform``).
    """
    if tests not in TEST_SCOPES:
        raise TransformError(f"tests: {tests!r} is not one of {', '.join(TEST_SCOPES)}")
    started = time.perf_counter()
    state = None if defer_state is None else _defer_state(Path(defer_state), select)
    dbt = _dbt_target(warehouse, target, inputs=True)
    # The first build here writes every row: it tests everything, unit tests included.
    first = not dbt.built_before
    scope = "all" if full_refresh or first or command not in {"build", "test"} else tests
    dbt_vars = dict(extra_vars or {})
    signature = _signature(dbt, command, dbt_vars)
    freshness: list[SourceFreshness] | None = None
    freshness_error = None
    if source_freshness:
        try:
            freshness = _source_freshness(dbt)
        except TransformError as exc:
            freshness_error = str(exc)
    if (
        command == "build"
        and scope == "increment"
        and not select
        and state is None
        and signature == dbt.last_signature
    ):
        return TransformSummary(
            warehouse=dbt.where,
            command=command,
            full_refresh=False,
            success=True,
            seconds=time.perf_counter() - started,
            freshness=freshness,
            freshness_error=freshness_error,
            skipped=True,
            tests=scope,
        )
    # Handed over as environment variables, read only when nodes execute: a var that changes
    # every build would make dbt parse the whole project again each time.
    # Only a whole build vouches for its inputs: a partial one (--select, --defer) or `run`
    # records no signature, so the next whole build is never skipped on its account.
    whole = command == "build" and not select and state is None
    build_env = {
        "RETAIL_DBT_INPUT_SIGNATURE": signature if whole else "",
        "RETAIL_DBT_TESTS_SCOPE": scope,
    }
    args = [command]
    if full_refresh:
        args.append("--full-refresh")
    for selector in select:
        args += ["--select", selector]
    if state is not None:
        args += ["--select", "state:modified+", "--defer", "--state", str(state)]
    if scope == "increment":
        # Unit tests check the code, not the data, and whole-table reconciliations read the
        # history: both run in full builds and with tests="all" (docs/transform.md).
        args += ["--exclude", "resource_type:unit_test", f"tag:{WHOLE_TABLE_TAG}"]
        if dbt.tested_through is not None:
            lookback = int(dbt_vars.get("lookback_minutes", _project_var("lookback_minutes")))
            since = dbt.tested_through - timedelta(minutes=lookback)
            build_env["RETAIL_DBT_BRONZE_TESTED_SINCE"] = since.isoformat()
    if dbt_vars:
        args += ["--vars", json.dumps(dbt_vars, default=str)]
    dbt = replace(dbt, env={**dbt.env, **build_env})
    began = datetime.now(UTC)
    outcome = _invoke(args, dbt, progress)
    summary = TransformSummary(
        warehouse=dbt.where,
        command=command,
        full_refresh=full_refresh,
        success=bool(outcome.success),
        seconds=time.perf_counter() - started,
        freshness=freshness,
        freshness_error=freshness_error,
        tests=scope,
    )
    results = getattr(outcome.result, "results", None) or []
    for result in results:
        kind = str(result.node.resource_type)
        status = str(result.status)
        by_status = summary.counts.setdefault(kind, {})
        by_status[status] = by_status.get(status, 0) + 1
        if status in {"error", "fail"}:
            summary.failures.append(_failure(result, status))
    if state is not None and summary.success:
        _clone_unchanged(dbt, state, summary, {str(result.node.unique_id) for result in results})
    lineage.record_dbt_build(  # one OpenLineage run per model built (docs/operations.md)
        target_dir() / "manifest.json",
        [lineage.dbt_result(result) for result in results],
        lineage.warehouse_tables(dbt.name, dbt.env),
        job="transform",
        started=began,
        success=summary.success,
        parent=lineage_parent,
    )
    if not summary.success and not summary.failures and not results:
        raise TransformError(f"dbt {command} failed on {dbt.where} before running any node")
    cause = _storage_error(summary.failures)
    if cause:  # one cause behind every failure: say it once instead of listing each node
        raise WarehouseError(
            f"dbt {command} could not write {dbt.where}: {cause} ({len(summary.failures)} nodes"
            " failed); free space and run transform again"
        )
    return summary


def _clone_unchanged(
    dbt: _DbtTarget, state: Path, summary: TransformSummary, built: set[str]
) -> None:
    """After a deferred build, ``dbt clone`` every model it did not build from production
    into the environment's schemas (a zero-copy clone on Snowflake, a view on DuckDB; the
    models just built are kept), so the environment's Gold is whole and every reader reads
    one schema. A failing clone fails the summary like a failing node."""
    outcome = _invoke(["clone", "--state", str(state)], dbt, None)
    for result in getattr(outcome.result, "results", None) or []:
        status = str(result.status)
        if status in {"error", "fail"}:
            summary.failures.append(_failure(result, status))
        elif str(result.node.unique_id) not in built:
            summary.cloned += 1
    summary.success = summary.success and bool(outcome.success)


def _defer_state(folder: Path, select: Sequence[str]) -> Path:
    """The folder of the production manifest a deferred build compares with, checked."""
    environment = settings().environment
    if environment == "prod":
        raise TransformError(
            "--defer builds what changed into a dev or ci environment's own schemas, reading"
            " the rest from production; production (RETAIL_ENVIRONMENT=prod) builds everything"
        )
    if select:
        raise TransformError("--defer selects what it builds (state:modified+); drop --select")
    manifest = folder / "manifest.json"
    if not manifest.is_file():
        raise TransformError(
            f"--state {printable(str(folder))}: no manifest.json there; copy the one a production"
            " build wrote (dbt/target/manifest.json) into it"
        )
    return folder.resolve()


STORAGE_ERRORS = ("No space left on device", "Disk quota exceeded", "Read-only file system")


def _storage_error(failures: Sequence[NodeFailure]) -> str | None:
    """The storage problem (full disk, quota, read-only mount) behind failing nodes, if any."""
    for failure in failures:
        for cause in STORAGE_ERRORS:
            if cause in failure.message:
                return cause
    return None


def _threshold(rule: Any) -> str | None:
    if rule is None or getattr(rule, "count", None) is None:
        return None
    period = str(getattr(rule.period, "value", rule.period))
    return f"{rule.count} {period}{'' if rule.count == 1 else 's'}"


def _source_freshness(dbt: _DbtTarget) -> list[SourceFreshness]:
    """``dbt source freshness`` on the Bronze source: every table's verdict."""
    outcome = _invoke(["source", "freshness", "--select", "source:bronze"], dbt, None)
    found = []
    for result in getattr(outcome.result, "results", None) or []:
        node = result.node
        if str(node.resource_type) != "source":  # dbt runs the project's hooks here too
            continue
        rule = getattr(node, "freshness", None)
        loaded = getattr(result, "max_loaded_at", None)
        age = getattr(result, "age", None)
        if isinstance(loaded, datetime) and loaded.year <= 1:  # dbt's stand-in for no rows
            loaded = age = None
        if isinstance(loaded, datetime):
            loaded = loaded.replace(tzinfo=UTC) if loaded.tzinfo is None else loaded
        found.append(
            SourceFreshness(
                table=str(node.name),
                status=str(getattr(result.status, "value", result.status)),
                max_loaded_at=loaded if isinstance(loaded, datetime) else None,
                age_seconds=float(age) if age is not None else None,
                warn_after=_threshold(getattr(rule, "warn_after", None)),
                error_after=_threshold(getattr(rule, "error_after", None)),
                message=_one_line(Exception(getattr(result, "message", None) or "")),
            )
        )
    return sorted(found, key=lambda f: f.table)
