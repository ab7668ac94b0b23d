"""OpenLineage events for every load (docs/operations.md, "Lineage").

A load's inputs (the file, topic or source table), its outputs (the Bronze tables) and its
counts become a run's START and COMPLETE (or FAIL) events, written to a file transport by
default (``$RETAIL_LINEAGE_DIR/openlineage.ndjson``, one JSON event a line) and posted to
``OPENLINEAGE_URL`` instead when it is set.

Datasets are named as OpenLineage's naming conventions say: a file is namespace ``file`` and
its absolute path; a Kafka topic ``kafka://<first bootstrap server>`` and the topic; an HTTP
API its ``scheme://host:port`` and path; a Postgres table ``postgres://host:port`` and
``database.schema.table``; a Bronze table ``duckdb://<file>`` and ``bronze.<table>``, or
``snowflake://<account>`` and ``<DATABASE>.BRONZE.<TABLE>``. No name holds a credential: URLs
are cut to scheme, host, port and path.

Lineage never fails a load: an event that cannot be written or posted is one warning line on
stderr, and the load goes on.
"""

from __future__ import annotations

import functools
import sys
import threading
import urllib.parse
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from retail_pipeline.errors import one_line
from retail_pipeline.settings import settings

if TYPE_CHECKING:
    from openlineage.client.transport.transport import Transport

NAMESPACE = "retail-pipeline"
"""The namespace of every job this package runs."""
PRODUCER = "urn:retail-pipeline"
"""The ``producer`` of every event (a URI: the package's name)."""
LOAD_FACET = "retailLoad"
"""The run facet holding a load's counts."""
LOAD_FACET_SCHEMA = "urn:retail-pipeline:openlineage:RetailLoadRunFacet:1"
FILE_NAME = "openlineage.ndjson"
HTTP_TIMEOUT_SECONDS = 5.0
"""The deadline of one post to ``OPENLINEAGE_URL`` (tried twice at most)."""


@dataclass(frozen=True)
class Dataset:
    """One OpenLineage dataset: where (``namespace``) and what (``name``)."""

    namespace: str
    name: str


def file_dataset(path: str) -> Dataset:
    """A local file, by its absolute path (as Bronze's ``_source_file`` holds it)."""
    return Dataset("file", path)


def kafka_dataset(bootstrap: str, topic: str) -> Dataset:
    """A Kafka topic on the cluster the first bootstrap server belongs to."""
    first = bootstrap.split(",")[0].strip()
    server = first.split("://", 1)[-1]
    return Dataset(f"kafka://{server}", topic)


def url_dataset(url: str) -> Dataset:
    """An HTTP resource: ``scheme://host:port`` and its path, never user, query or fragment."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port else ""
    return Dataset(f"{parts.scheme}://{host}{port}", parts.path or "/")


def postgres_dataset(where: str) -> Dataset:
    """A Postgres table from a loader's ``postgresql://host:port/database/table``."""
    parts = urllib.parse.urlsplit(where)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port else ""
    database, _, table = parts.path.strip("/").partition("/")
    return Dataset(f"postgres://{host}{port}", f"{database}.public.{table}")


def table_dataset(
    target: str, location: str, schema: str, table: str, database: str = ""
) -> Dataset:
    """A table of the DuckDB file ``location`` (``duckdb://<file>``, ``<schema>.<table>``) or
    of the Snowflake account ``location`` (``snowflake://<account>``,
    ``<DATABASE>.<SCHEMA>.<TABLE>``): the one naming of Bronze, Silver and Gold."""
    if target == "snowflake":
        return Dataset(f"snowflake://{location.lower()}", f"{database}.{schema}.{table}".upper())
    return Dataset(f"duckdb://{location}", f"{schema}.{table}")


def bronze_dataset(target: str, location: str, table: str, database: str = "") -> Dataset:
    """A Bronze table of the DuckDB file ``location`` or the Snowflake account ``location``."""
    return table_dataset(target, location, "bronze", table, database)


def warehouse_tables(target: str, env: Mapping[str, str]) -> Callable[[str, str], Dataset]:
    """``(schema, table) -> Dataset`` for the warehouse dbt's profile reaches with ``env``
    (a warehouse's ``dbt_env()``: ``RETAIL_WAREHOUSE``, or ``SNOWFLAKE_ACCOUNT`` and
    ``SNOWFLAKE_DATABASE``), named exactly as the loads name Bronze."""
    if target == "snowflake":
        account = env.get("SNOWFLAKE_ACCOUNT", "")
        database = env.get("SNOWFLAKE_DATABASE", "")
        return lambda schema, table: table_dataset("snowflake", account, schema, table, database)
    location = env.get("RETAIL_WAREHOUSE", "")
    return lambda schema, table: table_dataset("duckdb", location, schema, table)


def _transport() -> Transport:
    config = settings()
    if config.openlineage_url:
        from openlineage.client.transport.http import HttpConfig, HttpTransport

        return HttpTransport(
            HttpConfig(
                url=config.openlineage_url,
                timeout=HTTP_TIMEOUT_SECONDS,
                retry={"total": 1, "backoff_factor": 0.5, "allowed_methods": ["POST"]},
            )
        )
    from openlineage.client.transport.file import FileConfig, FileTransport

    folder = config.lineage_dir
    folder.mkdir(parents=True, exist_ok=True)
    return FileTransport(FileConfig(log_file_path=str(folder / FILE_NAME), append=True))


def lineage_file() -> Path:
    """Where the file transport writes (whether or not ``OPENLINEAGE_URL`` replaces it)."""
    return settings().lineage_dir / FILE_NAME


def _transport_or_none() -> Transport | None:
    """The transport for a series of events, or None to let each :func:`emit` try (and warn)."""
    try:
        return _transport()
    except Exception:  # a bad setting: each emit says so in its own warning line
        return None


_emit_lock = threading.Lock()


def emit(event: Any, transport: Transport | None = None) -> bool:
    """Send one event through ``transport`` (default: the one the settings give now); False
    (and one warning line on stderr) when it could not be sent. A caller sending many events
    resolves the transport once: reading the settings takes milliseconds."""
    try:
        with _emit_lock:  # one line at a time into the file, whichever thread emits
            (transport or _transport()).emit(event)
        return True
    except Exception as exc:  # any transport failure: lineage never fails a load
        print(f"warning: lineage event not recorded: {one_line(str(exc))}", file=sys.stderr)
        return False


@functools.cache
def _load_facet() -> type:
    """The run facet of a load's counts (OpenLineage's classes are imported on first use)."""
    import attr
    from openlineage.client.generated.base import RunFacet

    @attr.define
    class RetailLoadRunFacet(RunFacet):
        rowsRead: int
        rowsLoaded: int
        deadLettered: int
        deadLettersByReason: dict[str, int]
        batches: int

        @staticmethod
        def _get_schema() -> str:
            return LOAD_FACET_SCHEMA

    return RetailLoadRunFacet


@dataclass
class LoadRun:
    """One run of a load job: :meth:`start`, then :meth:`complete` or :meth:`fail`.

    ``inputs`` and ``outputs`` are the datasets read and written; the counts go into the run
    facet :data:`LOAD_FACET` and each output's ``outputStatistics``."""

    job: str
    inputs: Sequence[Dataset]
    outputs: Sequence[Dataset]
    run_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    started: bool = False

    def _event(
        self,
        state: str,
        *,
        counts: Mapping[str, Any] | None = None,
        rows: Mapping[Dataset, int] | None = None,
        error: str | None = None,
    ) -> Any:
        from openlineage.client.event_v2 import (
            InputDataset,
            Job,
            OutputDataset,
            Run,
            RunEvent,
            RunState,
        )
        from openlineage.client.facet_v2 import (
            error_message_run,
            job_type_job,
            output_statistics_output_dataset,
        )

        statistics = output_statistics_output_dataset.OutputStatisticsOutputDatasetFacet
        run_facets: dict[str, Any] = {}
        if counts is not None:
            run_facets[LOAD_FACET] = _load_facet()(
                rowsRead=int(counts.get("read", 0)),
                rowsLoaded=int(counts.get("loaded", 0)),
                deadLettered=int(counts.get("dead_lettered", 0)),
                deadLettersByReason=dict(counts.get("dead_by_reason", {})),
                batches=int(counts.get("batches", 0)),
                producer=PRODUCER,
            )
        if error is not None:
            run_facets["errorMessage"] = error_message_run.ErrorMessageRunFacet(
                message=error, programmingLanguage="python", producer=PRODUCER
            )
        outputs = [
            OutputDataset(
                namespace=dataset.namespace,
                name=dataset.name,
                outputFacets=(
                    {"outputStatistics": statistics(rowCount=rows[dataset], producer=PRODUCER)}
                    if rows is not None and dataset in rows
                    else None
                ),
            )
            for dataset in self.outputs
        ]
        job_facets: dict[str, Any] = {
            "jobType": job_type_job.JobTypeJobFacet(
                processingType="STREAMING" if self.job == "ingest_kafka" else "BATCH",
                integration="RETAIL_PIPELINE",
                jobType="LOAD",
                producer=PRODUCER,
            )
        }
        return RunEvent(
            eventType=getattr(RunState, state),
            eventTime=datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            run=Run(runId=self.run_id, facets=run_facets or None),
            job=Job(namespace=NAMESPACE, name=self.job, facets=job_facets),
            inputs=[InputDataset(namespace=d.namespace, name=d.name) for d in self.inputs],
            outputs=outputs,
            producer=PRODUCER,
        )

    def start(self) -> None:
        """Emit START (once)."""
        if not self.started:
            self.started = True
            emit(self._event("START"))

    def complete(self, counts: Mapping[str, Any], rows: Mapping[Dataset, int]) -> None:
        """Emit COMPLETE with the run's ``counts`` and each output's rows written."""
        self.start()
        emit(self._event("COMPLETE", counts=counts, rows=rows))

    def fail(self, message: str, counts: Mapping[str, Any], rows: Mapping[Dataset, int]) -> None:
        """Emit FAIL with what the run committed before it failed and the error's one line."""
        self.start()
        emit(self._event("FAIL", counts=counts, rows=rows, error=one_line(message)))


# -- dbt: one job run per model built, from dbt's own artifacts --------------------------

DBT_FACET = "retailDbt"
"""The run facet of a dbt model's run: its dbt status and the tests of the model."""
DBT_FACET_SCHEMA = "urn:retail-pipeline:openlineage:RetailDbtRunFacet:1"
DBT_RELATIONS = frozenset({"model", "snapshot", "seed"})
"""The dbt nodes that build a relation; each is an OpenLineage job ``dbt.<name>``."""
DBT_STATES = {"success": "COMPLETE", "skipped": "ABORT"}
"""A model's dbt status as a run's final state; any other status (error, ...) is FAIL."""
MANIFEST_READS = 5
"""Tries to read ``manifest.json`` (another build of the same project may be rewriting it)."""


@dataclass(frozen=True)
class DbtResult:
    """One node of a dbt invocation, as ``run_results.json`` holds it."""

    unique_id: str
    status: str
    started_at: str | None
    """ISO 8601 UTC (None: the node never ran, e.g. skipped)."""
    completed_at: str | None
    message: str = ""


@dataclass(frozen=True)
class ParentRun:
    """The run a dbt model's run belongs to: ``transform``'s, or the Airflow task's."""

    job: str
    run_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    namespace: str = NAMESPACE


def _iso(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
        text = moment.astimezone(UTC).isoformat(timespec="microseconds")
        return text.replace("+00:00", "Z")
    return str(value)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def dbt_results(run_results: Mapping[str, Any]) -> list[DbtResult]:
    """The nodes of a ``run_results.json`` (as read with ``json.load``)."""
    found = []
    for result in run_results.get("results", []):
        timing = result.get("timing") or []
        found.append(
            DbtResult(
                unique_id=str(result["unique_id"]),
                status=str(result.get("status")),
                started_at=_iso(timing[0].get("started_at")) if timing else None,
                completed_at=_iso(timing[-1].get("completed_at")) if timing else None,
                message=str(result.get("message") or ""),
            )
        )
    return found


def dbt_result(result: Any) -> DbtResult:
    """One result of an in-process dbt invocation (``dbtRunner``'s ``RunResult``)."""
    timing = list(getattr(result, "timing", None) or [])
    status = getattr(result.status, "value", result.status)
    return DbtResult(
        unique_id=str(result.node.unique_id),
        status=str(status),
        started_at=_iso(timing[0].started_at) if timing else None,
        completed_at=_iso(timing[-1].completed_at) if timing else None,
        message=str(result.message or ""),
    )


def read_manifest(path: Path) -> dict[str, Any]:
    """dbt's ``manifest.json``; read again when caught half-written by another build."""
    import json
    import time

    for attempt in range(MANIFEST_READS):
        try:
            manifest: dict[str, Any] = json.loads(path.read_bytes())
            return manifest
        except json.JSONDecodeError:
            if attempt == MANIFEST_READS - 1:
                raise
            time.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")  # pragma: no cover


def _relation(manifest: Mapping[str, Any], unique_id: str) -> tuple[str, str] | None:
    """``(schema, table)`` of a source or of a node that builds a relation."""
    source = manifest.get("sources", {}).get(unique_id)
    if source is not None:
        return str(source["schema"]), str(source.get("identifier") or source["name"])
    node = manifest.get("nodes", {}).get(unique_id)
    if node is None or node.get("resource_type") not in DBT_RELATIONS:
        return None
    if (node.get("config") or {}).get("materialized") == "ephemeral":
        return None
    return str(node["schema"]), str(node.get("alias") or node["name"])


def dbt_inputs(manifest: Mapping[str, Any], unique_id: str) -> list[tuple[str, str]]:
    """The relations a node reads (``depends_on``): sources and the relations of its refs;
    an ephemeral model stands for what it reads itself."""
    found: list[tuple[str, str]] = []
    seen: set[str] = set()
    pending = list(manifest["nodes"][unique_id].get("depends_on", {}).get("nodes", []))
    while pending:
        parent = pending.pop(0)
        if parent in seen:
            continue
        seen.add(parent)
        relation = _relation(manifest, parent)
        node = manifest.get("nodes", {}).get(parent)
        if relation is not None:
            if relation not in found:
                found.append(relation)
        elif node is not None and (node.get("config") or {}).get("materialized") == "ephemeral":
            pending += node.get("depends_on", {}).get("nodes", [])
    return found


@functools.cache
def _dbt_facet() -> type:
    import attr
    from openlineage.client.generated.base import RunFacet

    @attr.define
    class RetailDbtRunFacet(RunFacet):
        uniqueId: str
        status: str
        testsPassed: int
        failingTests: list[str]

        @staticmethod
        def _get_schema() -> str:
            return DBT_FACET_SCHEMA

    return RetailDbtRunFacet


def _tests_of(
    manifest: Mapping[str, Any], results: Sequence[DbtResult]
) -> dict[str, tuple[int, list[str]]]:
    """Per model: its tests that passed and the names of those that did not (warn, fail). A
    generic test belongs to its ``attached_node``; a singular one to each model it reads."""
    tests: dict[str, tuple[int, list[str]]] = {}
    for result in results:
        node = manifest.get("nodes", {}).get(result.unique_id) or {}
        if node.get("resource_type") != "test":
            continue
        attached = node.get("attached_node")
        models = [attached] if attached else node.get("depends_on", {}).get("nodes", [])
        for model in models:
            passed, failing = tests.get(model, (0, []))
            if result.status == "pass":
                passed += 1
            else:
                failing = [*failing, str(node.get("name"))]
            tests[model] = (passed, failing)
    return tests


def dbt_events(
    manifest: Mapping[str, Any],
    results: Sequence[DbtResult],
    tables: Callable[[str, str], Dataset],
    parent: ParentRun | None = None,
) -> list[Any]:
    """START and COMPLETE (``success``), ABORT (``skipped``) or FAIL (any other status) of
    each model, snapshot and seed in ``results``: inputs are the relations it reads, named by
    ``tables`` as the loads name Bronze, the output its own relation."""
    from openlineage.client.event_v2 import (
        InputDataset,
        Job,
        OutputDataset,
        Run,
        RunEvent,
        RunState,
    )
    from openlineage.client.facet_v2 import error_message_run, job_type_job, parent_run

    tests = _tests_of(manifest, results)
    events = []
    for result in results:
        node = manifest.get("nodes", {}).get(result.unique_id)
        output = _relation(manifest, result.unique_id)
        if node is None or output is None:
            continue
        state = DBT_STATES.get(result.status, "FAIL")
        passed, failing = tests.get(result.unique_id, (0, []))
        run_facets: dict[str, Any] = {
            DBT_FACET: _dbt_facet()(
                uniqueId=result.unique_id,
                status=result.status,
                testsPassed=passed,
                failingTests=failing,
                producer=PRODUCER,
            )
        }
        if parent is not None:
            run_facets["parent"] = parent_run.ParentRunFacet(
                run=parent_run.Run(runId=parent.run_id),
                job=parent_run.Job(namespace=parent.namespace, name=parent.job),
                producer=PRODUCER,
            )
        job = Job(
            namespace=NAMESPACE,
            name=f"dbt.{node['name']}",
            facets={
                "jobType": job_type_job.JobTypeJobFacet(
                    processingType="BATCH", integration="DBT", jobType="MODEL", producer=PRODUCER
                )
            },
        )
        inputs = [
            InputDataset(namespace=d.namespace, name=d.name)
            for d in (tables(*relation) for relation in dbt_inputs(manifest, result.unique_id))
        ]
        produced = tables(*output)
        outputs = [OutputDataset(namespace=produced.namespace, name=produced.name)]
        run_id = str(uuid.uuid4())
        end = result.completed_at or _now()
        final_facets = dict(run_facets)
        if state == "FAIL":
            final_facets["errorMessage"] = error_message_run.ErrorMessageRunFacet(
                message=one_line(result.message) or result.status,
                programmingLanguage="sql",
                producer=PRODUCER,
            )
        for event_state, moment, facets in (
            ("START", result.started_at or end, run_facets),
            (state, end, final_facets),
        ):
            events.append(
                RunEvent(
                    eventType=getattr(RunState, event_state),
                    eventTime=moment,
                    run=Run(runId=run_id, facets=facets),
                    job=job,
                    inputs=inputs,
                    outputs=outputs,
                    producer=PRODUCER,
                )
            )
    return events


def _job_event(parent: ParentRun, state: str, moment: str, error: str | None = None) -> Any:
    from openlineage.client.event_v2 import Job, Run, RunEvent, RunState
    from openlineage.client.facet_v2 import error_message_run, job_type_job

    facets: dict[str, Any] = {}
    if error is not None:
        facets["errorMessage"] = error_message_run.ErrorMessageRunFacet(
            message=error, programmingLanguage="python", producer=PRODUCER
        )
    job_type = job_type_job.JobTypeJobFacet(
        processingType="BATCH", integration="DBT", jobType="JOB", producer=PRODUCER
    )
    return RunEvent(
        eventType=getattr(RunState, state),
        eventTime=moment,
        run=Run(runId=parent.run_id, facets=facets or None),
        job=Job(namespace=parent.namespace, name=parent.job, facets={"jobType": job_type}),
        inputs=[],
        outputs=[],
        producer=PRODUCER,
    )


def record_dbt_build(
    manifest_path: Path,
    results: Sequence[DbtResult],
    tables: Callable[[str, str], Dataset],
    *,
    job: str,
    started: datetime,
    success: bool,
    parent: ParentRun | None = None,
) -> None:
    """Emit a dbt build as OpenLineage: the run of ``job`` (START, then COMPLETE or FAIL)
    holding one run per model it built (:func:`dbt_events`); ``parent`` names that run (an
    Airflow task's), else a new run of ``job``. Nothing when no model ran; a manifest that
    cannot be read is one warning line (lineage never fails a build)."""
    try:
        manifest = read_manifest(manifest_path)
        parent = parent or ParentRun(job)
        children = dbt_events(manifest, results, tables, parent)
    except Exception as exc:  # unreadable artifacts: the build stands, the graph has a gap
        print(f"warning: dbt lineage not recorded: {one_line(str(exc))}", file=sys.stderr)
        return
    if not children:
        return
    transport = _transport_or_none()
    emit(_job_event(parent, "START", _iso(started) or _now()), transport)
    for event in children:
        emit(event, transport)
    failed = None if success else f"dbt {job} failed"
    emit(_job_event(parent, "COMPLETE" if success else "FAIL", _now(), failed), transport)


def record_dbt_artifacts(
    target_dir: Path, tables: Callable[[str, str], Dataset], parent: ParentRun | None = None
) -> int:
    """Emit the runs of the models in ``target_dir``'s ``run_results.json`` (with its
    ``manifest.json``), as an orchestrator's dbt task left them; how many runs. Never raises:
    unreadable artifacts are one warning line."""
    import json

    try:
        manifest = read_manifest(target_dir / "manifest.json")
        results = dbt_results(json.loads((target_dir / "run_results.json").read_bytes()))
        events = dbt_events(manifest, results, tables, parent)
    except Exception as exc:  # lineage never fails a build
        print(f"warning: dbt lineage not recorded: {one_line(str(exc))}", file=sys.stderr)
        return 0
    transport = _transport_or_none()
    for event in events:
        emit(event, transport)
    return len(events) // 2
