"""Reference data read incrementally from a source that stamps each change (HTTP API, Postgres).

A run reads one *window* of changes: the records whose ``updated_at`` lies in
``[since, until)``, in ``(updated_at, key)`` order. ``since`` is where the previous window
ended; ``until`` is the source's clock at the start of the run, less ``RETAIL_BATCH_LAG``
seconds. Window bounds are instants, never a record, so a group of records sharing one
``updated_at`` (a bulk update) always falls whole in one window: ties can neither be skipped nor
read twice. A change stamped at or after ``until`` waits for the next window.

The run reads first and writes after: a batch (at most ``batch_size`` records and
:data:`BATCH_BYTES` bytes) is read whole from the source, then written in one warehouse
transaction together with the source's position after it; no warehouse transaction is open
while the source is asked for more. Given a warehouse opened with ``exclusive=False`` (as
``load-batch`` and the Airflow task do), a DuckDB file is open only for that transaction, so a
source that is slow or stuck never holds the warehouse's writer lock. The position is the
count of records taken so far (``next_offset``, which fences a second writer as a Kafka offset
does) and the window with the last ``(updated_at, key)`` written
(``fingerprint``, JSON). A crash between two batches resumes after that record, inside the same
window, so nothing is lost or written twice; the last batch also closes the window.

Every record goes through the contract validator of the snapshot files
(:func:`~retail_pipeline.events.validator.validate_records`); a bad one is dead-lettered with the
source, its key and the reason. Silver's SCD2 history reads these loads like snapshot loads
(each is a partial snapshot: the records that changed).
"""

from __future__ import annotations

import hashlib
import math
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Protocol

import orjson
import pyarrow as pa

from retail_pipeline.errors import InputError, PipelineError
from retail_pipeline.events.contract import REFERENCE_FIELDS
from retail_pipeline.events.validator import validate_records
from retail_pipeline.ingestion.files import new_load_id
from retail_pipeline.ingestion.observe import LoadObserver
from retail_pipeline.ingestion.staging import escaped_text, payload_text
from retail_pipeline.lineage import Dataset, postgres_dataset, url_dataset
from retail_pipeline.warehouse.base import (
    LoadRecord,
    Position,
    PositionConflict,
    ReferenceBatch,
    Warehouse,
)

BATCH_SIZE = 50_000
"""Records per warehouse transaction."""
BATCH_BYTES = 32 << 20
"""Bytes of records per warehouse transaction, at most (a batch ends at whichever comes first)."""
KEPT_BYTES = 1024
"""How much of a record over ``RETAIL_MAX_RECORD_BYTES`` its dead letter keeps."""
MAX_LAG = 7 * 86_400
"""The longest lag: a week behind the source is already a stalled feed."""
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def micros(moment: datetime) -> int:
    """Microseconds since the epoch of an aware datetime (exact, no float)."""
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def instant(value: int) -> datetime:
    """The aware UTC datetime of :func:`micros`."""
    return _EPOCH + timedelta(microseconds=value)


def stamp(value: int) -> str:
    """The contract's timestamp text of an instant: ``2026-01-15T10:00:00.123456Z``."""
    at = instant(value)
    return f"{at.year:04d}-" + at.strftime("%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class Retry:
    """How a source retries a transient failure: ``attempts`` tries in all, waiting ``backoff``
    seconds after the first, doubling up to ``max_backoff``, with jitter (or as long as the
    server asked)."""

    attempts: int = 6
    backoff: float = 0.5
    max_backoff: float = 30.0
    sleep: Callable[[float], None] = time.sleep

    def pause(self, attempt: int, asked: float | None = None, left: float = math.inf) -> bool:
        """Wait before try ``attempt + 1``; False, without waiting, when the wait would not end
        ``left`` seconds from now (the call's deadline)."""
        if asked is None:
            delay = min(self.max_backoff, self.backoff * 2 ** (attempt - 1))
            asked = delay * (0.5 + random.random() / 2)
        wait = min(asked, self.max_backoff)  # a server asking for a day gets max_backoff
        if wait >= left:
            return False
        self.sleep(wait)
        return True

    def after_failure(
        self,
        attempt: int,
        last: str,
        *,
        where: str,
        end: float,
        deadline: float,
        missing: str,
        asked: float | None = None,
    ) -> None:
        """After failed try ``attempt`` (``last`` says why): wait for the next, or raise one
        line when the attempts are spent or the wait would pass ``end`` (monotonic time)."""
        if attempt >= self.attempts:
            raise PipelineError(f"{where}: gave up after {attempt} attempts: {last}")
        if not self.pause(attempt, asked, end - time.monotonic()):
            tries = f"{attempt} attempt{'s' if attempt > 1 else ''}"
            raise PipelineError(
                f"{where}: {missing} within {deadline:g} s (RETAIL_SOURCE_TIMEOUT; {tries}): {last}"
            )


@dataclass(frozen=True)
class Change:
    """One record as an incremental source gave it."""

    key: str | None
    """The record's key (``customer_id`` / ``product_id``); None when it has none."""
    updated_at: int | None
    """When the source last changed it (:func:`micros`); None when unreadable."""
    raw: bytes
    """The record as a JSON object, exactly as read (or as built from a database row)."""
    problem: str | None = None
    """Why the record cannot be loaded, found while reading it (it is dead-lettered)."""

    @property
    def place(self) -> tuple[int, str] | None:
        """Its place in the source's ``(updated_at, key)`` order, when it has one."""
        if self.updated_at is None or self.key is None:
            return None
        return (self.updated_at, self.key)


def oversized(change: Change, limit: int, size: int | None = None) -> Change:
    """``change`` as the dead letter of a record over ``limit`` bytes (``size``, when it was not
    read whole): its place kept, its payload cut to :data:`KEPT_BYTES`."""
    size = len(change.raw) if size is None else size
    return Change(
        change.key,
        change.updated_at,
        change.raw[:KEPT_BYTES],
        f"record of {size:,} bytes, over the {limit:,}-byte limit (RETAIL_MAX_RECORD_BYTES);"
        f" the dead letter keeps its first {min(size, KEPT_BYTES):,} bytes",
    )


@dataclass(frozen=True)
class Window:
    """The changes one run reads: ``since <= updated_at < until``, after ``after``."""

    since: int | None
    until: int
    after: tuple[int, str] | None = None
    """The last ``(updated_at, key)`` already in Bronze, when a run stopped inside the window."""


class ChangeSource(Protocol):
    """A source of reference records that knows when each one changed."""

    kind: str
    """``api`` or ``postgres``: the dead letters' ``_source_kind``."""

    def describe(self, entity: str) -> str:
        """Where ``entity``'s records come from, without credentials: the rows'
        ``_source_file``, and the position's source name after ``<kind>:``."""
        ...

    def clock(self) -> int:
        """The source's time now (:func:`micros`): the end of the next window, less the lag."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...

    def has_changes_since(self, entity: str, moment: int) -> bool:
        """Whether a record of ``entity`` changed at or after ``moment`` (the summary says
        when changes newer than the window wait for the next run)."""
        ...

    def read(self, entity: str, window: Window) -> Iterator[list[Change]]:
        """The window's records in ascending ``(updated_at, key)`` order, a page at a time.

        Transient failures (a 5xx, a timeout, a dropped connection) are retried inside, within
        the source's deadline; what cannot be retried raises a
        :class:`~retail_pipeline.errors.PipelineError` naming the source. A page is read whole
        before it is given (no source call is in flight while the loader writes).
        """
        ...


class OutsideSource(ChangeSource, Protocol):
    """A source that can hold records no window can place (Postgres: ``updated_at`` outside
    the contract's years 1-9999, ``infinity``)."""

    def read_outside(self, entity: str) -> Iterator[list[Change]]:
        """Every such record, a page at a time, each with its problem; the loader dead-letters
        those it has not dead-lettered before (the same payload from the same source)."""
        ...


@dataclass(frozen=True)
class IncrementalSummary:
    """What one incremental run of one entity did."""

    entity: str
    source: str
    read: int
    loaded: int
    dead_lettered: int
    until: int | None
    """The end of the window read (None: nothing to read yet, the source's clock is behind)."""
    waiting: bool = False
    """Changes at or after ``until`` exist: the lag keeps them for the next run."""
    load_id: str = ""
    """The run's load id (its rows and dead letters carry it); empty when it read nothing."""

    def line(self) -> str:
        """The one-line summary the CLI prints."""
        upto = f" (changes before {stamp(self.until)})" if self.until is not None else ""
        if self.waiting:
            upto += "; newer changes wait for the next run (RETAIL_BATCH_LAG, --lag)"
        if not self.read:
            return f"{self.entity}: no new changes at {self.source}{upto}"
        return (
            f"{self.entity}: read {self.read:,} / loaded {self.loaded:,}"
            f" / dead-lettered {self.dead_lettered:,} from {self.source}{upto}"
        )


@dataclass(frozen=True)
class _State:
    """A source's stored position: records taken so far and the window (``fingerprint``)."""

    taken: int
    since: int | None
    until: int | None
    after: tuple[int, str] | None

    @classmethod
    def stored(cls, position: Position | None, source: str) -> _State:
        if position is None:
            return cls(0, None, None, None)
        try:
            window = orjson.loads(position.fingerprint or "{}")
            after = window.get("after")
            return cls(
                position.next_offset,
                window.get("since"),
                window.get("until"),
                (int(after[0]), str(after[1])) if after else None,
            )
        except (orjson.JSONDecodeError, AttributeError, TypeError, ValueError, IndexError):
            raise InputError(
                f"{source}: stored position {position.fingerprint!r} is not a window this"
                " version reads"
            ) from None

    def fingerprint(self) -> str:
        window = {"since": self.since, "until": self.until, "after": self.after}
        return orjson.dumps(window).decode()


def source_dataset(source: ChangeSource, entity: str) -> Dataset:
    """The OpenLineage dataset ``source`` reads ``entity`` from: the API's URL or the
    Postgres table, without credentials."""
    where = source.describe(entity)
    return postgres_dataset(where) if source.kind == "postgres" else url_dataset(where)


def load_changes(
    warehouse: Warehouse,
    source: ChangeSource,
    entity: str,
    *,
    lag_seconds: float,
    batch_size: int = BATCH_SIZE,
) -> IncrementalSummary:
    """Read ``entity``'s next window of changes from ``source`` into Bronze (seen by metrics
    and lineage as job ``load_batch``, OpenLineage job ``load_batch.<entity>``)."""
    if entity not in REFERENCE_FIELDS:
        raise InputError(f"unknown reference entity {entity!r}; expected customers or products")
    with LoadObserver(
        warehouse,
        "load_batch",
        [source_dataset(source, entity)],
        [entity],
        lineage_job=f"load_batch.{entity}",
    ) as observer:
        return _load_changes(warehouse, source, entity, observer, lag_seconds, batch_size)


def _load_changes(
    warehouse: Warehouse,
    source: ChangeSource,
    entity: str,
    observer: LoadObserver,
    lag_seconds: float,
    batch_size: int,
) -> IncrementalSummary:
    if not 0 <= lag_seconds <= MAX_LAG:  # also refuses nan and inf
        raise InputError(
            f"--lag / RETAIL_BATCH_LAG {lag_seconds!r}: expected 0 to {MAX_LAG:,} seconds"
        )
    where = source.describe(entity)
    position_name = f"{source.kind}:{where}"
    stored = warehouse.positions(position_name).get(0)
    state = _State.stored(stored, position_name)
    if state.until is None:  # open the next window
        until = source.clock() - round(lag_seconds * 1_000_000)
        if state.since is not None and until <= state.since:
            waiting = _has_changes_since(source, entity, state.since)
            return IncrementalSummary(entity, where, 0, 0, 0, None, waiting)
        state = replace(state, until=until)
    assert state.until is not None
    window = Window(state.since, state.until, state.after)
    run = _Run(warehouse, source, entity, where, position_name, stored, state)
    run.observer = observer
    batch = _Batch(run, batch_size)
    for page in source.read(entity, window):
        run.check_order(page)
        batch.add(page)
    outside = getattr(source, "read_outside", None)
    if outside is not None:
        for page in outside(entity):
            batch.add(_not_yet_dead_lettered(warehouse, where, page))
    batch.close()
    waiting = not run.read and _has_changes_since(source, entity, window.until)
    return IncrementalSummary(
        entity, where, run.read, run.loaded, run.dead, window.until, waiting, run.load_id
    )


class _Batch:
    """The records read and not yet written: written when ``batch_size`` records or
    :data:`BATCH_BYTES` bytes are in hand, the rest by :meth:`close`."""

    def __init__(self, run: _Run, batch_size: int):
        self.run, self.batch_size = run, batch_size
        self.pending: list[Change] = []
        self.size = 0

    def add(self, page: Sequence[Change]) -> None:
        for change in page:
            self.pending.append(change)
            self.size += len(change.raw)
            if len(self.pending) >= self.batch_size or self.size >= BATCH_BYTES:
                self.run.write(self.pending, close=False)
                self.pending, self.size = [], 0

    def close(self) -> None:
        self.run.write(self.pending, close=True)
        self.pending, self.size = [], 0


def _not_yet_dead_lettered(
    warehouse: Warehouse, where: str, page: Sequence[Change]
) -> list[Change]:
    """The records of ``page`` whose payload ``where`` has not dead-lettered before."""
    if not page:
        return []
    payloads = [payload_text(change.raw) for change in page]
    marks = ", ".join("?" * len(payloads))
    seen = {
        row[0]
        for row in warehouse.query(
            "select raw_payload from bronze.dead_letter where _source_file = ?"
            f" and raw_payload in ({marks})",
            [where, *payloads],
        )
    }
    return [change for change, text in zip(page, payloads, strict=True) if text not in seen]


def _has_changes_since(source: ChangeSource, entity: str, moment: int) -> bool:
    """For the summary only: a source that fails to say is taken to have nothing waiting."""
    try:
        return source.has_changes_since(entity, moment)
    except PipelineError:
        return False


class _Run:
    """One window being written, batch by batch."""

    def __init__(
        self,
        warehouse: Warehouse,
        source: ChangeSource,
        entity: str,
        where: str,
        position_name: str,
        stored: Position | None,
        state: _State,
    ):
        self.warehouse, self.source, self.entity = warehouse, source, entity
        self.where, self.position_name, self.state = where, position_name, state
        self.expected = stored.next_offset if stored is not None else None
        self.last = state.after
        self.load_id = new_load_id(entity)
        self.read = self.loaded = self.dead = 0
        self.observer: LoadObserver | None = None

    def check_order(self, page: Sequence[Change]) -> None:
        """Refuse a page that breaks the window or the order (before anything of it is written):
        resuming after the last record written is only right for an ordered source."""
        since, until = self.state.since, self.state.until
        assert until is not None
        for change in page:
            place = change.place
            if place is None:
                continue
            if (since is not None and place[0] < since) or place[0] >= until:
                raise InputError(
                    f"{self.where}: record {place[1]!r} has updated_at {stamp(place[0])}, outside"
                    f" the window asked for ({stamp(since) if since is not None else 'start'}"
                    f" to {stamp(until)}); nothing of this page was loaded"
                )
            if self.last is not None and place <= self.last:
                raise InputError(
                    f"{self.where}: record {place[1]!r} (updated_at {stamp(place[0])}) is not"
                    f" after {self.last[1]!r} (updated_at {stamp(self.last[0])}): records must"
                    " come in ascending (updated_at, key) order; nothing of this page was loaded"
                )
            self.last = place

    def write(self, changes: list[Change], *, close: bool) -> None:
        """One transaction: the records, their dead letters and the position after them."""
        first = self.state.taken + 1
        numbers = list(range(first, first + len(changes)))
        checked = [i for i, change in enumerate(changes) if change.problem is None]
        verdicts = validate_records(self.entity, [changes[i].raw for i in checked])
        good = verdicts.rows
        record_numbers = pa.array([numbers[i] for i in checked], pa.int64())
        rows = good.drop_columns(["_row"])
        rows = rows.append_column("_source_file", pa.repeat(pa.scalar(self.where), rows.num_rows))
        rows = rows.append_column("_record_number", record_numbers.take(good.column("_row")))
        dead = sorted(
            [(i, str(change.problem)) for i, change in enumerate(changes) if change.problem]
            + [
                (checked[row], reason)
                for row, reason in zip(verdicts.dead_rows, verdicts.dead_reasons, strict=True)
            ]
        )
        dead_letters = self._dead_letters(changes, numbers, dead)
        after = self.state.after
        for change in changes:
            after = change.place or after
        taken = self.state.taken + len(changes)
        if close:
            self.state = _State(taken, self.state.until, None, None)
        else:
            self.state = _State(taken, self.state.since, self.state.until, after)
        if not changes and not close:
            return
        digest = hashlib.sha256(b"\n".join(change.raw for change in changes)).hexdigest()
        load = LoadRecord(
            self.load_id,
            self.entity,
            f"{self.source.kind}:{self.where}",
            None,
            len(changes),
            rows.num_rows,
            dead_letters.num_rows,
        )
        batch = ReferenceBatch(
            self.entity,
            rows,
            dead_letters,
            load,
            digest,
            source_kind=self.source.kind,
            positions=[Position(self.position_name, 0, taken, None, self.state.fingerprint())],
            expected={(self.position_name, 0): self.expected},
            record_load=bool(changes) or self.read > 0,
        )
        started = time.monotonic()
        try:
            self.warehouse.write_reference(batch)
        except PositionConflict as exc:
            raise PipelineError(
                f"{self.where}: {exc}; another load of this source ran at the same time and"
                " nothing of this batch was written (run again to continue after it)"
            ) from None
        if self.observer is not None:
            self.observer.committed(
                {self.entity: rows.num_rows},
                dead_letters,
                read=len(changes),
                seconds=time.monotonic() - started,
                table=self.entity,
            )
        self.expected = taken
        self.read += len(changes)
        self.loaded += rows.num_rows
        self.dead += dead_letters.num_rows

    def _dead_letters(
        self, changes: Sequence[Change], numbers: Sequence[int], dead: Sequence[tuple[int, str]]
    ) -> pa.Table:
        return pa.table(
            {
                "_offset": pa.array([numbers[i] for i, _ in dead], pa.int64()),
                "_key": pa.array(
                    [
                        None if changes[i].key is None else escaped_text(changes[i].key.encode())
                        for i, _ in dead
                    ],
                    pa.string(),
                ),
                "_source_file": pa.array([self.where] * len(dead), pa.string()),
                "raw_payload": pa.array([payload_text(changes[i].raw) for i, _ in dead]),
                "reason": pa.array([reason for _, reason in dead], pa.string()),
            }
        )
