"""Reference data snapshots (customers, products) into Bronze.

A snapshot file is a JSON array or NDJSON (detected from its first non-blank byte). Each load
appends the whole snapshot with its load id and time; a file whose content is the latest
snapshot loaded for its entity is skipped (sha256 of the bytes), any other content (a changed
file, or a revert to an older snapshot) is a new snapshot. Records that break the contract go
to the dead-letter table with the file and record number.

The file is streamed, never held whole: a JSON array is split into its elements by an
incremental splitter (any depth, no recursion), NDJSON into lines, both with a cap on a
record's size (``RETAIL_MAX_RECORD_BYTES``): a longer record is dead-lettered with its size,
position and first bytes. Records are validated a block at a time and written in batches
(:data:`BATCH_RECORDS` records or :data:`BATCH_BYTES` bytes), each batch one transaction with
the snapshot's position after it: the count of records written under its content hash. A load
that stopped half way resumes after the last record written, under the same load id.
"""

from __future__ import annotations

import codecs
import hashlib
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import BinaryIO, cast

import msgspec
import orjson
import pyarrow as pa

from retail_pipeline.errors import InputError, PipelineError
from retail_pipeline.events.contract import REFERENCE_FIELDS
from retail_pipeline.events.validator import validate_records
from retail_pipeline.ingestion.files import (
    PREFIX_BYTES,
    LongLine,
    max_record_bytes,
    new_load_id,
    path_text,
    read_lines,
    return_freed_buffers,
    too_long_reason,
    truncated_text,
)
from retail_pipeline.ingestion.observe import LoadObserver
from retail_pipeline.ingestion.staging import payload_text
from retail_pipeline.lineage import file_dataset
from retail_pipeline.warehouse.base import (
    LoadRecord,
    Position,
    PositionConflict,
    ReferenceBatch,
    Warehouse,
)

SNAPSHOT_READ_BYTES = 8 << 20
"""Bytes of a snapshot file read at a time."""
VALIDATE_BYTES = 1 << 20
"""Bytes of records validated at a time (their Python objects live only that long)."""
BATCH_RECORDS = 50_000
"""Records of a snapshot written per transaction, at most."""
BATCH_BYTES = 32 << 20
"""Bytes of records written per transaction, at most (a batch ends at whichever comes first)."""

_SKIP = re.compile(rb'(?:[^"\[\]{}]++|"(?:[^"\\]++|\\.)*+")*+', re.S)
"""Inside an array or object element, outside strings: up to the next bracket or open string."""
_IN_STRING = re.compile(rb'(?:[^"\\]++|\\.)*+', re.S)
_SPACE = re.compile(rb"[ \t\r\n]*+")
_SCALAR = re.compile(rb'[^ \t\r\n,\[\]{}"]*+')
_RAW_LIST = msgspec.json.Decoder(list[msgspec.Raw])
_RAW = msgspec.json.Decoder(msgspec.Raw)


@dataclass
class LongRecord:
    """A record over the size cap, never held whole."""

    number: int
    line: int | None
    offset: int
    size: int
    prefix: bytes


Item = tuple[int, int | None, bytes] | LongRecord
"""(record number, line number or None, raw JSON), or a record over the cap."""


class _Hashing:
    """A file read forward once, hashed as it goes (the snapshot's content hash)."""

    def __init__(self, handle: BinaryIO, start: int) -> None:
        handle.seek(start)
        self.handle, self.name, self.position = handle, handle.name, start
        self.sha = hashlib.sha256()

    def seek(self, offset: int) -> int:
        assert offset == self.position, "a snapshot is read forward once"
        return offset

    def read(self, size: int) -> bytes:
        data = self.handle.read(size)
        self.sha.update(data)
        self.position += len(data)
        return data


class _ArraySplitter:
    """The elements of a top-level JSON array, from chunks of bytes, never the whole array.

    Tracks strings, escapes and bracket depth across chunks with a counter (no recursion, so
    any depth); elements longer than ``limit`` are skipped through with a bounded prefix.
    Each run of whole elements in a chunk is split by msgspec in C when it can.
    """

    def __init__(self, path: Path, limit: int, base: int) -> None:
        self.path, self.limit = path, limit
        self.state = "start"  # start, first, value, sep, end
        self.offset = base  # file offset of the current chunk's first byte
        self.line = 1  # line of the current chunk's first byte
        self.number = 0
        self.active = False  # inside an element
        self.kind = ""  # "composite", "string" or "scalar"
        self.depth = 0
        self.in_string = self.escape = False
        self.parts: list[bytes] = []
        self.size = 0
        self.start_offset = self.start_line = 0
        self.utf8 = codecs.getincrementaldecoder("utf-8")()
        self.fast_failed = False

    def _where(self, chunk: bytes, index: int) -> int:
        return self.line + chunk.count(b"\n", 0, index)

    def _fail(self, chunk: bytes, index: int, what: str) -> InputError:
        return InputError(f"{self.path}:{self._where(chunk, index)}: not valid JSON ({what})")

    def feed(self, chunk: bytes, final: bool = False) -> Iterator[Item]:
        try:
            self.utf8.decode(chunk, final)
        except UnicodeDecodeError as bad:
            line = self._where(chunk, max(0, bad.start - len(self.utf8.getstate()[0])))
            raise InputError(f"{self.path}:{line}: not valid UTF-8") from None
        i, n = 0, len(chunk)
        start = 0  # where the current element starts in this chunk
        self.fast_failed = False
        while i < n:
            if self.active:
                i, done = self._scan(chunk, i)
                if not done:
                    break
                yield self._finish(chunk, start, i)
                continue
            i = _SPACE.match(chunk, i).end()  # type: ignore[union-attr]
            if i >= n:
                break
            c = chunk[i : i + 1]
            if self.state == "start":
                if c != b"[":
                    raise self._fail(chunk, i, "expected an array")
                self.state, i = "first", i + 1
            elif self.state == "sep":
                if c == b"]":
                    self.state, i = "end", i + 1
                elif c == b",":
                    self.state, i = "value", i + 1
                else:
                    raise self._fail(chunk, i, f"expected , or ] after record {self.number}")
            elif self.state == "end":
                raise self._fail(chunk, i, "data after the end of the array")
            elif c == b"]":
                if self.state == "value":
                    raise self._fail(chunk, i, "trailing comma")
                self.state, i = "end", i + 1
            elif c in b",}:":
                raise self._fail(chunk, i, f"unexpected {c.decode()}")
            else:
                fast = self._fast(chunk, i) if c == b"{" else None
                if fast is not None:
                    items, i = fast
                    yield from items
                    continue
                start = i
                self.active, self.parts, self.size = True, [], 0
                self.start_offset, self.start_line = self.offset + i, self._where(chunk, i)
                self.number += 1
                if c in b"[{":
                    self.kind, self.depth, i = "composite", 1, i + 1
                elif c == b'"':
                    self.kind, self.depth, self.in_string, i = "string", 0, True, i + 1
                else:
                    self.kind = "scalar"
        if self.active:
            self._keep(chunk[start:])
        self.line += chunk.count(b"\n")
        self.offset += n
        if final:
            if self.active and self.kind == "scalar":
                yield self._finish(b"", 0, 0)
            if self.active or self.state != "end":
                raise InputError(
                    f"{self.path}:{self.line}: not valid JSON (the array is not closed)"
                )

    def _fast(self, chunk: bytes, i: int) -> tuple[list[Item], int] | None:
        """The whole elements from ``i`` up to the last ``}`` followed by , or ], decoded by
        msgspec in one C call; None when that cut is not an element boundary."""
        if self.fast_failed:
            return None
        cut = max(chunk.rfind(b"},", i), chunk.rfind(b"}]", i), chunk.rfind(b"}\n]", i))
        if cut < 0:
            return None
        try:
            raws = _RAW_LIST.decode(b"[" + chunk[i : cut + 1] + b"]")
        except (msgspec.DecodeError, RecursionError):
            self.fast_failed = True  # not again in this chunk: each try reads up to its end
            return None
        if any(len(raw) > self.limit for raw in raws):
            self.fast_failed = True
            return None
        items: list[Item] = []
        for raw in raws:
            self.number += 1
            items.append((self.number, None, bytes(raw)))
        self.state = "sep"
        return items, cut + 1

    def _scan(self, chunk: bytes, i: int) -> tuple[int, bool]:
        """Move through the current element from ``i``: (where it stopped, element complete)."""
        n = len(chunk)
        while i < n:
            if self.kind == "scalar":
                i = _SCALAR.match(chunk, i).end()  # type: ignore[union-attr]
                return i, i < n
            if self.escape:
                self.escape, i = False, i + 1
                continue
            if self.in_string:
                i = _IN_STRING.match(chunk, i).end()  # type: ignore[union-attr]
                if i >= n:
                    return i, False
                if chunk[i : i + 1] == b"\\":  # a backslash at the end of the chunk
                    self.escape, i = True, i + 1
                    continue
                self.in_string, i = False, i + 1
                if self.depth == 0:
                    return i, True
                continue
            i = _SKIP.match(chunk, i).end()  # type: ignore[union-attr]
            if i >= n:
                return i, False
            c = chunk[i : i + 1]
            i += 1
            if c == b'"':
                self.in_string = True
            elif c in b"[{":
                self.depth += 1
            else:
                self.depth -= 1
                if self.depth == 0:
                    return i, True
        return i, False

    def _keep(self, part: bytes) -> None:
        """Add a piece of the current element: kept while within the cap, else only counted."""
        if self.size > self.limit:
            self.size += len(part)
            return
        self.size += len(part)
        if self.size <= self.limit:
            self.parts.append(part)
        else:  # from now on only its first bytes are kept
            self.parts = [(b"".join(self.parts) + part)[:PREFIX_BYTES]]

    def _finish(self, chunk: bytes, start: int, end: int) -> Item:
        self._keep(chunk[start:end])
        self.active, self.state = False, "sep"
        if self.size > self.limit:
            prefix = b"".join(self.parts)[:PREFIX_BYTES]
            return LongRecord(self.number, None, self.start_offset, self.size, prefix)
        raw = b"".join(self.parts)
        self.parts = []
        try:
            _RAW.decode(raw)
        except msgspec.DecodeError as exc:
            where = re.search(r"byte (\d+)", str(exc))
            line = self.start_line + (raw.count(b"\n", 0, int(where.group(1))) if where else 0)
            raise InputError(f"{self.path}:{line}: not valid JSON ({exc})") from None
        except RecursionError:
            pass  # valid as far as can be told: the validator dead-letters it as too deep
        return (self.number, None, raw)


@dataclass(frozen=True)
class BatchSummary:
    """What loading one snapshot file did."""

    entity: str
    path: Path
    read: int
    loaded: int
    dead_lettered: int
    skipped: bool
    resumed: int = 0
    """Records an interrupted load of the same content had already written (not read again)."""
    load_id: str = ""
    """The load's id (its rows and dead letters carry it); empty when skipped."""

    def line(self) -> str:
        """The one-line summary the CLI prints."""
        if self.skipped:
            return (
                f"{self.entity}: {self.path} already loaded (the same content as the latest"
                " snapshot), skipped"
            )
        resumed = (
            f" (resumed after record {self.resumed:,}, written by an interrupted load)"
            if self.resumed
            else ""
        )
        return (
            f"{self.entity}: read {self.read:,} / loaded {self.loaded:,}"
            f" / dead-lettered {self.dead_lettered:,} from {self.path}{resumed}"
        )


BOM = b"\xef\xbb\xbf"


def _open(path: Path, entity: str) -> BinaryIO:
    if not path.exists():
        raise InputError(f"{path}: no such file ({entity} snapshot)")
    if path.is_dir():
        raise InputError(f"{path}: is a directory, expected a {entity} JSON file")
    if not path.is_file():
        raise InputError(f"{path}: not a regular file, expected a {entity} JSON file")
    try:
        return path.open("rb")
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror})") from None


def _layout(handle: BinaryIO, path: Path, limit: int) -> tuple[str, int]:
    """``array`` or ``ndjson`` from the first non-blank byte, and where the content starts
    (after a byte-order mark, which is not part of the data)."""
    start = 3 if handle.read(3) == BOM else 0
    handle.seek(start)
    while chunk := handle.read(SNAPSHOT_READ_BYTES):
        stripped = chunk.lstrip()
        if not stripped:
            continue
        if stripped.startswith(b"["):
            return "array", start
        if not stripped.startswith(b"{"):
            raise InputError(f"{path}:1: not a JSON array or NDJSON file")
        _refuse_single_object(handle, path, start, limit)
        return "ndjson", start
    raise InputError(f"{path}: file is empty")


def _refuse_single_object(handle: BinaryIO, path: Path, start: int, limit: int) -> None:
    """A pretty-printed JSON object: its first line alone is not JSON, the file is (checked for
    files within the record cap; a longer one is read as NDJSON, its lines dead-lettered)."""
    handle.seek(start)
    first = b""
    while not first.strip():
        first = handle.readline(limit + 1)
        if not first:
            return
    try:
        orjson.loads(first)
        return
    except orjson.JSONDecodeError:
        pass
    handle.seek(start)
    data = handle.read(limit + 1)
    if len(data) > limit:
        return
    try:
        whole = orjson.loads(data)
    except orjson.JSONDecodeError:
        return
    if isinstance(whole, dict):
        raise InputError(f"{path}: a single JSON object, expected a JSON array or NDJSON records")


class _Scan:
    """One pass over a snapshot file: its records (or :class:`LongRecord`) and, once read to
    the end, its content hash."""

    def __init__(self, path: Path, entity: str) -> None:
        self.path, self.entity = path, entity
        self.limit = max_record_bytes()
        self.digest: str | None = None
        self.layout = ""

    def __iter__(self) -> Iterator[Item]:
        with _open(self.path, self.entity) as handle:
            self.layout, start = _layout(handle, self.path, self.limit)
            reader = _Hashing(handle, start)
            if self.layout == "array":
                yield from self._array(reader, start)
            else:
                yield from self._ndjson(reader, start)
            self.digest = reader.sha.hexdigest()

    def _array(self, reader: _Hashing, start: int) -> Iterator[Item]:
        splitter = _ArraySplitter(self.path, self.limit, start)
        while chunk := reader.read(SNAPSHOT_READ_BYTES):
            yield from splitter.feed(chunk)
        yield from splitter.feed(b"", final=True)

    def _ndjson(self, reader: _Hashing, start: int) -> Iterator[Item]:
        line = 1
        blocks = read_lines(
            cast(BinaryIO, reader), start, SNAPSHOT_READ_BYTES, self.limit, final=True
        )
        for block in blocks:
            if isinstance(block, LongLine):
                yield LongRecord(line, line, block.offset, block.size, block.prefix)
                line += 1
                continue
            _, data = block
            lines = data.split(b"\n")
            if lines[-1] == b"":
                lines.pop()
            for number, text in enumerate(lines, start=line):
                if text.strip():
                    yield (number, number, text)
            line += len(lines)


@dataclass(frozen=True)
class Snapshot:
    """A snapshot file checked and hashed (one streaming pass), not yet validated or loaded;
    its records are read again, streaming, when it is loaded."""

    entity: str
    path: Path
    content_hash: str
    size: int
    """Records in the file (dead-lettered ones included)."""

    @property
    def records(self) -> Iterator[tuple[int, int | None, bytes]]:
        """(record number, line number or None, raw JSON) of every record, streamed; a record
        over the size cap is an :class:`InputError` here (the loader dead-letters it)."""
        for item in _checked_scan(self):
            if isinstance(item, LongRecord):
                raise InputError(
                    f"{self.path}: record {item.number} is {item.size:,} bytes, over the"
                    f" {max_record_bytes():,}-byte limit (RETAIL_MAX_RECORD_BYTES)"
                )
            yield item


def _checked_scan(snapshot: Snapshot) -> Iterator[Item]:
    """The snapshot's records again, checking at the end that the file did not change."""
    scan = _Scan(snapshot.path, snapshot.entity)
    yield from scan
    if scan.digest != snapshot.content_hash:
        raise InputError(f"{snapshot.path}: file changed while it was being loaded; load it again")


def read_snapshot(entity: str, path: str | Path) -> Snapshot:
    """Check and hash a customers or products file; raises :class:`InputError` before any
    write. Memory is bounded by the record cap, whatever the file's size."""
    if entity not in REFERENCE_FIELDS:
        raise InputError(f"unknown reference entity {entity!r}; expected customers or products")
    file = Path(path)
    scan = _Scan(file, entity)
    count = sum(1 for _ in scan)
    assert scan.digest is not None
    return Snapshot(entity, file, scan.digest, count)


def load_reference(warehouse: Warehouse, entity: str, path: str | Path) -> BatchSummary:
    """Append one customers or products snapshot to Bronze (a no-op if it is already the
    latest)."""
    return load_snapshot(warehouse, read_snapshot(entity, path))


def _dead_table(
    source: str, numbers: list[int], lines: list[int | None], raws: list[str], reasons: list[str]
) -> pa.Table:
    return pa.table(
        {
            "_offset": pa.array(numbers, pa.int64()),
            "_source_file": pa.array([source] * len(numbers), pa.string()),
            "_source_line": pa.array(lines, pa.int64()),
            "raw_payload": pa.array(raws, pa.string()),
            "reason": pa.array(reasons, pa.string()),
        }
    )


def _staged(entity: str, block: list[Item], source: str, limit: int) -> tuple[pa.Table, pa.Table]:
    """One block of records validated: (Bronze rows, dead letters), in record order."""
    records = [item for item in block if isinstance(item, tuple)]
    verdicts = validate_records(entity, [raw for _, _, raw in records])
    good = verdicts.rows
    numbers = pa.array([number for number, _, _ in records], pa.int64())
    rows = good.drop_columns(["_row"])
    rows = rows.append_column("_source_file", pa.repeat(pa.scalar(source), rows.num_rows))
    rows = rows.append_column("_record_number", numbers.take(good.column("_row")))
    bad = [records[i] for i in verdicts.dead_rows]
    letters = [
        (n, line, payload_text(raw), why)
        for (n, line, raw), why in zip(bad, verdicts.dead_reasons, strict=True)
    ]
    for item in block:
        if isinstance(item, LongRecord):
            reason = too_long_reason(item.size, limit, what="record", kept=len(item.prefix))
            letters.append(
                (
                    item.number,
                    item.line,
                    truncated_text(item.prefix),
                    f"{reason}; it starts at byte {item.offset:,}",
                )
            )
    letters.sort(key=lambda letter: letter[0])
    dead = _dead_table(
        source,
        [n for n, _, _, _ in letters],
        [line for _, line, _, _ in letters],
        [raw for _, _, raw, _ in letters],
        [why for _, _, _, why in letters],
    )
    return rows, dead


@dataclass(frozen=True)
class _Written:
    """A snapshot content's stored position (source ``snapshot:<entity>:<sha256>``).

    ``next_offset`` counts the records written under this content over all its loads, so it
    only grows and fences a second writer as a Kafka offset does; the fingerprint (JSON) names
    the load being written, the count it started from and the records the snapshot holds.
    """

    next_offset: int
    load_id: str | None
    base: int
    records: int

    @classmethod
    def stored(cls, position: Position | None, name: str) -> _Written:
        if position is None:
            return cls(0, None, 0, 0)
        try:
            state = orjson.loads(position.fingerprint or "")
            return cls(
                position.next_offset,
                str(state["load_id"]),
                int(state["base"]),
                int(state["records"]),
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            raise InputError(
                f"{name}: stored position {position.fingerprint!r} is not one this version reads"
            ) from None

    @property
    def unfinished(self) -> bool:
        """A load of this content stopped before its last record (a crash, a kill)."""
        return self.load_id is not None and self.next_offset - self.base < self.records

    def fingerprint(self) -> str:
        state = {"load_id": self.load_id, "base": self.base, "records": self.records}
        return orjson.dumps(state).decode()


def _item_bytes(item: Item) -> int:
    return len(item[2]) if isinstance(item, tuple) else len(item.prefix)


class _SnapshotLoad:
    """One load of a snapshot being written, batch by batch, each batch one transaction with
    the position after it."""

    def __init__(
        self,
        warehouse: Warehouse,
        snapshot: Snapshot,
        source: str,
        name: str,
        written: _Written,
        expected: int | None,
    ) -> None:
        self.warehouse, self.snapshot, self.source, self.name = warehouse, snapshot, source, name
        self.written, self.expected = written, expected
        self.limit = max_record_bytes()
        self.read = self.loaded = self.dead = 0
        self.observer: LoadObserver | None = None

    def stage(self, block: list[Item]) -> tuple[pa.Table, pa.Table]:
        """One block of records validated (Arrow from here on: the records' objects go)."""
        return _staged(self.snapshot.entity, block, self.source, self.limit)

    def write(self, parts: list[tuple[pa.Table, pa.Table]], records: int) -> None:
        """One transaction: the batch's ``records`` (validated in ``parts``), their dead
        letters and the position after them."""
        snapshot = self.snapshot
        if not parts:
            parts = [self.stage([])]
        rows = pa.concat_tables([part[0] for part in parts])
        dead = pa.concat_tables([part[1] for part in parts])
        written = replace(self.written, next_offset=self.written.next_offset + records)
        assert written.load_id is not None
        load = LoadRecord(
            written.load_id,
            snapshot.entity,
            self.source,
            snapshot.content_hash,
            records,
            rows.num_rows,
            dead.num_rows,
        )
        batch = ReferenceBatch(
            snapshot.entity,
            rows,
            dead,
            load,
            snapshot.content_hash,
            positions=[Position(self.name, 0, written.next_offset, None, written.fingerprint())],
            expected={(self.name, 0): self.expected},
        )
        started = time.monotonic()
        try:
            self.warehouse.write_reference(batch)
        except PositionConflict as exc:
            raise PipelineError(
                f"{snapshot.path}: {exc}; another load of this snapshot ran at the same time and"
                " nothing of this batch was written (run again to continue after it)"
            ) from None
        if self.observer is not None:
            self.observer.committed(
                {snapshot.entity: rows.num_rows},
                dead,
                read=records,
                seconds=time.monotonic() - started,
                table=snapshot.entity,
            )
        self.written, self.expected = written, written.next_offset
        self.read += records
        self.loaded += rows.num_rows
        self.dead += dead.num_rows


def load_snapshot(
    warehouse: Warehouse,
    snapshot: Snapshot,
    *,
    batch_records: int = BATCH_RECORDS,
    batch_bytes: int = BATCH_BYTES,
) -> BatchSummary:
    """:func:`_load_snapshot`, seen by metrics and lineage (job ``load_batch``; the OpenLineage
    job ``load_batch.<entity>``)."""
    inputs = [file_dataset(path_text(snapshot.path.resolve()))]
    with LoadObserver(
        warehouse,
        "load_batch",
        inputs,
        [snapshot.entity],
        lineage_job=f"load_batch.{snapshot.entity}",
    ) as observer:
        return _load_snapshot(
            warehouse, snapshot, observer, batch_records=batch_records, batch_bytes=batch_bytes
        )


def _load_snapshot(
    warehouse: Warehouse,
    snapshot: Snapshot,
    observer: LoadObserver,
    *,
    batch_records: int,
    batch_bytes: int,
) -> BatchSummary:
    """Append a snapshot read by :func:`read_snapshot`, unless it is a re-send: the content of
    its entity's latest load, or of the latest load from the same file (a landing folder read
    again). An older snapshot's content arriving again (a revert: a new file, or a file changed
    back) is loaded again, so that it becomes the latest word.

    The records are written in batches of ``batch_records`` records or ``batch_bytes`` bytes,
    whichever comes first, each batch one transaction with the snapshot's position after it.
    A load that stopped half way (a crash, a kill) is resumed, under the same load id, after
    the last record it wrote, whichever file holds that content now.
    """
    return_freed_buffers()
    entity, file, content_hash = snapshot.entity, snapshot.path, snapshot.content_hash
    source = path_text(file.resolve())
    name = f"snapshot:{entity}:{content_hash}"
    stored = warehouse.positions(name).get(0)
    written = _Written.stored(stored, name)
    if written.unfinished:
        skip = written.next_offset - written.base
    elif warehouse.has_reference_load(entity, content_hash, source):
        return BatchSummary(entity, file, snapshot.size, 0, 0, True)
    else:
        skip = 0
        written = _Written(
            written.next_offset, new_load_id(entity), written.next_offset, snapshot.size
        )
    load = _SnapshotLoad(
        warehouse, snapshot, source, name, written, stored.next_offset if stored else None
    )
    load.observer = observer
    parts: list[tuple[pa.Table, pa.Table]] = []  # the batch so far, validated
    block: list[Item] = []  # records not validated yet
    records = size = block_size = 0
    for index, item in enumerate(_checked_scan(snapshot)):
        if index < skip:
            continue
        if records >= batch_records or size >= batch_bytes:
            if block:
                parts.append(load.stage(block))
            load.write(parts, records)
            parts, block, records, size, block_size = [], [], 0, 0, 0
        block.append(item)
        records += 1
        size += _item_bytes(item)
        block_size += _item_bytes(item)
        if block_size >= VALIDATE_BYTES:
            parts.append(load.stage(block))
            block, block_size = [], 0
    # The last batch is written once the whole file was read and found unchanged: a file that
    # changed while it was loaded never completes a load of the content it was hashed as.
    if block:
        parts.append(load.stage(block))
    load.write(parts, records)
    return BatchSummary(
        entity, file, load.read, load.loaded, load.dead, False, skip, written.load_id or ""
    )
