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
from collections.abc import Mapping, Sequence
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


def bronze_dataset(target: str, location: str, table: str, database: str = "") -> Dataset:
    """A Bronze table of the DuckDB file ``location`` or the Snowflake account ``location``."""
    if target == "snowflake":
        return Dataset(f"snowflake://{location.lower()}", f"{database}.BRONZE.{table}".upper())
    return Dataset(f"duckdb://{location}", f"bronze.{table}")


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


_emit_lock = threading.Lock()


def emit(event: Any) -> bool:
    """Send one event; False (and one warning line on stderr) when it could not be sent."""
    try:
        with _emit_lock:  # one line at a time into the file, whichever thread emits
            _transport().emit(event)
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
