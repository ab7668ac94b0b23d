"""Dead letters back into Bronze: ``retail-pipeline redrive``.

After a contract fix or a new event version, messages refused earlier may be valid now. Redrive
validates the dead letters not yet redriven (``redriven_at is null``) again, from their stored
``raw_payload``, with the loaders' own validator
(:func:`retail_pipeline.events.validator.validate_events`, with the Kafka topic a message
arrived on, as a fresh load and :mod:`~retail_pipeline.warehouse.migrations` do), so a redriven
row equals the row a fresh load of the message would write:

- a now-valid message is appended to its topic's table with its original position metadata
  (``_topic``, ``_partition``, ``_offset``, ``_key``, ``_kafka_ts``, ``_source_file``,
  ``_source_line``), ``_load_id`` the redrive's load id and ``_ingested_at`` its commit time
  (so Silver's incremental staging picks it up), and its dead-letter row gets ``redriven_at``
  and ``redriven_by`` in the same transaction; the redrive's ``bronze._loads`` row (kind
  ``events``, source ``redrive``) counts exactly those rows. The load that dead-lettered it
  keeps its counts and its (now redriven) dead-letter row: the message was read once, by it.
- the rest stay; their ``reason`` is updated when the current contract gives another one.

Only event dead letters (files and Kafka) are redriven. Reference dead letters (snapshot files,
the API, Postgres) are left: a reference load is a snapshot of its source at one time, and
Silver builds history from whole loads; a record added later, under its old load, would rewrite
a snapshot history was already built from, and under a new load would look like a snapshot of
one record. Load the source again instead. Rows whose stored payload is not the message (a line
or record over the size cap keeps its first bytes; a payload that is not UTF-8 is stored
escaped, and no contract accepts it) are left as they are too.

Exactly once: each batch is one transaction (DuckDB), or on Snowflake its events are staged as
Parquet and COPYed and the dead letters marked in one transaction, as the loaders do, where the
update must mark every row of the batch still unredriven (``redriven_at is null``) or the batch
rolls back: two redrives running at once never load a row twice. A kill between batches leaves
the committed ones marked; a rerun checks only the rest. Batches are :data:`BATCH_ROWS` dead
letters, so memory does not grow with the table.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

import pyarrow as pa

from retail_pipeline.errors import InputError, PipelineError, WarehouseError, printable
from retail_pipeline.events.validator import validate_events
from retail_pipeline.warehouse import resolve_target
from retail_pipeline.warehouse.base import EVENT_TABLES, LoadRecord
from retail_pipeline.warehouse.migrations import with_metadata

if TYPE_CHECKING:
    from retail_pipeline.warehouse.duckdb import DuckDBWarehouse
    from retail_pipeline.warehouse.snowflake import SnowflakeWarehouse

BATCH_ROWS = 5_000
"""Dead letters checked per batch (one transaction): bounds memory whatever the table's size."""
REDRIVABLE_KINDS = ("file", "kafka")
"""The ``_source_kind`` s redriven: event messages (see the module docstring for the rest)."""
_KEPT = re.compile(r"(line|record) too long: |payload is not valid UTF-8")
"""Reasons whose ``raw_payload`` is not the message itself: left as they are."""
_COLUMNS = (
    "_source_kind, _topic, _partition, _offset, _key, _kafka_ts, _source_file, _source_line,"
    " raw_payload, reason"
)
_METADATA = ["_partition", "_offset", "_key", "_kafka_ts", "_source_file", "_source_line"]
_IDENTITY = (
    "_load_id || '|' || _source_kind || '|' || coalesce(_topic, '') || '|'"
    " || coalesce(cast(_partition as varchar), '') || '|' || coalesce(cast(_offset as varchar), '')"
    " || '|' || coalesce(cast(_source_line as varchar), '') || '|' || coalesce(_source_file, '')"
)
"""One dead letter's identity on Snowflake (no rowid): its load and position, as text."""


@dataclass
class RedriveSummary:
    """What a redrive did (or, dry, would do)."""

    load_id: str
    dry_run: bool
    checked: int = 0
    """Dead letters validated again (event dead letters not redriven, matching the filters)."""
    redriven: int = 0
    still_refused: int = 0
    new_reason: int = 0
    """Of the still refused, those whose reason changed (updated unless dry)."""
    references_left: int = 0
    """Reference dead letters (batch, api, postgres) matching the filters: never redriven."""
    batches: int = 0

    def line(self) -> str:
        """The summary line: counts only, never payload text."""
        load = f" (load {self.load_id})" if self.redriven and not self.dry_run else ""
        verb = "would redrive" if self.dry_run else "redriven"
        text = (
            f"redrive: checked {self.checked:,} / {verb} {self.redriven:,}{load} / still"
            f" refused {self.still_refused:,} ({self.new_reason:,} with a new reason)"
        )
        if self.references_left:
            text += (
                f"; {self.references_left:,} reference dead letters left (a snapshot is not"
                " redriven: load the source again)"
            )
        return ("dry run: " if self.dry_run else "") + text


@dataclass
class RedriveBatch:
    """One batch's outcome, written in one transaction."""

    load_id: str
    events: dict[str, pa.Table]
    """Per topic, the now-valid rows (typed columns, payload, position metadata)."""
    redriven: list[Any]
    """Identities of the dead letters loaded (rowid on DuckDB, :data:`_IDENTITY` on Snowflake)."""
    reasons: list[tuple[Any, str]] = field(default_factory=list)
    """(identity, new reason) of the still refused whose reason changed."""


class _Store(Protocol):
    def candidates(self, reason: str | None, since: datetime | None) -> Iterator[pa.Table]: ...

    def references(self, reason: str | None, since: datetime | None) -> int: ...

    def write(self, batch: RedriveBatch) -> None: ...


def _where(
    reason: str | None, since: datetime | None, kinds: Sequence[str]
) -> tuple[str, list[Any]]:
    """The filter: not redriven, of ``kinds``, the reason containing ``reason`` (bound: a
    substring, no pattern), ingested at or after ``since``."""
    parts = ["redriven_at is null", f"_source_kind in ({', '.join('?' * len(kinds))})"]
    params: list[Any] = list(kinds)
    if reason is not None:
        parts.append("contains(reason, ?)")
        params.append(reason)
    if since is not None:
        parts.append("_ingested_at >= cast(? as timestamptz)")
        params.append(since.isoformat())
    return " and ".join(parts), params


def parse_since(text: str | None) -> datetime | None:
    """``--since``: an ISO-8601 time (no offset: UTC); anything else is one line."""
    if text is None:
        return None
    try:
        at = datetime.fromisoformat(text.strip())
    except ValueError:
        raise InputError(
            f"--since {printable(text)!r} is not an ISO-8601 time (e.g. 2026-12-06T15:00:00Z)"
        ) from None
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def new_load_id() -> str:
    """A sortable, unique id for one redrive (as the loaders' ids)."""
    return f"redrive-{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"


def _validate(rows: pa.Table, load_id: str, summary: RedriveSummary) -> RedriveBatch:
    """Validate one batch of dead letters (their identities in ``_id``) as a fresh load would."""
    ids = rows.column("_id").to_pylist()
    reasons = rows.column("reason").to_pylist()
    kinds = rows.column("_source_kind").to_pylist()
    topics = rows.column("_topic").to_pylist()
    payloads = rows.column("raw_payload").to_pylist()
    checkable = [
        i
        for i, (p, r) in enumerate(zip(payloads, reasons, strict=True))
        if p is not None and not _KEPT.match(r)
    ]
    batch = RedriveBatch(load_id, {}, [])
    summary.checked += rows.num_rows
    summary.still_refused += rows.num_rows - len(checkable)
    if not checkable:
        return batch
    index = pa.array(checkable, pa.int64())
    arrival = [topics[i] if kinds[i] == "kafka" else None for i in checkable]
    verdicts = validate_events([payloads[i].encode() for i in checkable], arrival)
    metadata = rows.select(_METADATA).take(index)
    for topic, typed in verdicts.events.items():
        batch.events[topic] = with_metadata(topic, typed, metadata)
        batch.redriven += [ids[checkable[i]] for i in typed.column("_row").to_pylist()]
    for row, new in zip(verdicts.dead_rows, verdicts.dead_reasons, strict=True):
        at = checkable[row]
        if new != reasons[at]:
            batch.reasons.append((ids[at], new))
    summary.redriven += len(batch.redriven)
    summary.still_refused += len(verdicts.dead_rows)
    summary.new_reason += len(batch.reasons)
    return batch


def redrive(
    store: _Store,
    *,
    reason: str | None = None,
    since: datetime | None = None,
    dry_run: bool = False,
) -> RedriveSummary:
    """Redrive the dead letters of ``store`` matching the filters, batch by batch."""
    summary = RedriveSummary(new_load_id(), dry_run)
    summary.references_left = store.references(reason, since)
    for rows in store.candidates(reason, since):
        batch = _validate(rows, summary.load_id, summary)
        summary.batches += 1
        if not dry_run and (batch.redriven or batch.reasons):
            store.write(batch)
    return summary


# -- DuckDB ------------------------------------------------------------------------------------


class _DuckDBStore:
    """Dead letters of a DuckDB file, identified by rowid (stable under updates), paged by it."""

    def __init__(self, warehouse: DuckDBWarehouse, batch_rows: int):
        self.warehouse = warehouse
        self.batch_rows = batch_rows

    def candidates(self, reason: str | None, since: datetime | None) -> Iterator[pa.Table]:
        where, params = _where(reason, since, REDRIVABLE_KINDS)
        last = -1
        while True:
            rows = self.warehouse.con.execute(
                f"select rowid as _id, {_COLUMNS} from bronze.dead_letter"
                f" where rowid > ? and {where} order by rowid limit ?",
                [last, *params, self.batch_rows],
            ).to_arrow_table()
            if not rows.num_rows:
                return
            last = rows.column("_id")[-1].as_py()
            yield rows

    def references(self, reason: str | None, since: datetime | None) -> int:
        where, params = _where(reason, since, ("batch", "api", "postgres"))
        row = self.warehouse.con.execute(
            f"select count(*) from bronze.dead_letter where {where}", params
        ).fetchone()
        return int(row[0]) if row else 0

    def write(self, batch: RedriveBatch) -> None:
        from retail_pipeline.warehouse.duckdb import DuckDBWarehouse

        params = {"load_id": batch.load_id}
        with self.warehouse.transaction() as con:
            for topic, rows in batch.events.items():
                DuckDBWarehouse._append(con, EVENT_TABLES[topic], rows, params)
            if batch.redriven:
                row = con.execute(
                    "update bronze.dead_letter set redriven_at = now(), redriven_by = ?"
                    " where redriven_at is null and rowid in (select unnest(?::bigint[]))",
                    [batch.load_id, batch.redriven],
                ).fetchone()
                _check_marked(int(row[0]) if row else 0, len(batch.redriven))
                n = len(batch.redriven)
                DuckDBWarehouse._add_load(
                    con, LoadRecord(batch.load_id, "events", "redrive", None, n, n, 0)
                )
            if batch.reasons:  # one update from Arrow, never one per dead letter
                ids, texts = zip(*batch.reasons, strict=True)
                changed = pa.table(
                    {"id": pa.array(ids, pa.int64()), "reason": pa.array(texts, pa.string())}
                )
                con.register("_reasons", changed)
                try:
                    con.execute(
                        "update bronze.dead_letter set reason = r.reason from _reasons as r"
                        " where bronze.dead_letter.rowid = r.id and redriven_at is null"
                    )
                finally:
                    con.unregister("_reasons")


def _check_marked(marked: int, expected: int) -> None:
    """The guard: every dead letter of the batch was still unredriven, else roll back."""
    if marked != expected:
        raise WarehouseError(
            f"redrive: {expected - marked} of the batch's {expected} dead letters were redriven"
            " by another redrive running at the same time; this batch was rolled back, run"
            " redrive again"
        )


# -- Snowflake ---------------------------------------------------------------------------------


class _SnowflakeStore:
    """Dead letters on Snowflake, identified by :data:`_IDENTITY`; the candidates streamed by
    one query, each batch staged and COPYed, then marked, in one transaction."""

    def __init__(self, warehouse: SnowflakeWarehouse, batch_rows: int):
        self.warehouse = warehouse
        self.batch_rows = batch_rows

    def candidates(self, reason: str | None, since: datetime | None) -> Iterator[pa.Table]:
        where, params = _where(reason, since, REDRIVABLE_KINDS)
        where = where.replace("timestamptz", "timestamp_tz")
        wh = self.warehouse
        # The emulators return a NULL timestamp as 1970-01-01: _kafka_ts comes with a flag.
        sql = (
            f"select {_IDENTITY} as _id, {_COLUMNS}, _kafka_ts is null"
            f" from {wh.bronze}.dead_letter where {where}"
        )
        names = ["_id", *(c.strip() for c in _COLUMNS.split(","))]
        types = {
            "_partition": pa.int32(),
            "_offset": pa.int64(),
            "_source_line": pa.int64(),
            "_kafka_ts": pa.timestamp("us", tz="UTC"),
        }
        for rows in wh.batches(sql, self.batch_rows, params):
            values = list(zip(*rows, strict=True))
            at = names.index("_kafka_ts")
            values[at] = tuple(
                None if null else v for v, null in zip(values[at], values[-1], strict=True)
            )
            yield pa.table(
                {
                    name: pa.array(values[i], types.get(name, pa.string()))
                    for i, name in enumerate(names)
                }
            )

    def references(self, reason: str | None, since: datetime | None) -> int:
        where, params = _where(reason, since, ("batch", "api", "postgres"))
        where = where.replace("timestamptz", "timestamp_tz")
        wh = self.warehouse
        [(n,)] = wh.query(f"select count(*) from {wh.bronze}.dead_letter where {where}", params)
        return int(n)

    def write(self, batch: RedriveBatch) -> None:
        self.warehouse.redrive_batch(batch, _IDENTITY, _check_marked)


def open_store(warehouse: Any, batch_rows: int = BATCH_ROWS) -> _Store:
    """The dead letters of an open warehouse of either target (opened exclusively)."""
    if warehouse.target == "snowflake":
        return _SnowflakeStore(warehouse, batch_rows)
    return _DuckDBStore(warehouse, batch_rows)


def redrive_warehouse(
    path: str | os.PathLike[str] | None = None,
    *,
    target: str | None = None,
    reason: str | None = None,
    since: str | datetime | None = None,
    dry_run: bool = False,
    batch_rows: int = BATCH_ROWS,
) -> RedriveSummary:
    """``retail-pipeline redrive``: open the warehouse of ``target`` (a dry run read-only),
    redrive its dead letters matching ``reason`` (a substring of the reason) and ``since`` (an
    ISO-8601 text or a datetime: ingested at or after it), and say what it did."""
    from retail_pipeline.warehouse import open_warehouse

    at = parse_since(since) if isinstance(since, str) else since
    if at is not None and at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    if batch_rows < 1:
        raise PipelineError(f"batch_rows must be at least 1, not {batch_rows}")
    chosen = resolve_target(target)
    if chosen == "duckdb":
        from retail_pipeline.warehouse.duckdb import check_existing, warehouse_path

        check_existing(warehouse_path(path), "nothing to redrive")  # never create one empty
    with open_warehouse(
        path, target=chosen, read_only=dry_run, missing_hint="nothing to redrive"
    ) as wh:
        return redrive(open_store(wh, batch_rows), reason=reason, since=at, dry_run=dry_run)
