"""Exactly-once ingestion of NDJSON event files into Bronze.

Each file is read from the byte offset stored in ``bronze._positions`` in blocks of whole
lines. A block is validated (:mod:`retail_pipeline.ingestion.validate`) and written together
with the offset just past it in one warehouse transaction, so a crash at any moment leaves
every line in Bronze or the dead-letter table exactly once.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

import pyarrow as pa
import pyarrow.compute as pc

from retail_pipeline.errors import InputError
from retail_pipeline.ingestion.validate import stage
from retail_pipeline.warehouse.base import EventBatch, LoadRecord, Position, Warehouse

DEFAULT_BATCH_BYTES = 8 << 20
VALIDATION_CHUNK_ROWS = 8192
"""Row groups handed to DuckDB; several groups let it validate on all cores."""
FINGERPRINT_BYTES = 4096


@dataclass
class IngestSummary:
    """What one ingest run did, in messages (non-empty lines)."""

    read: int = 0
    loaded: int = 0
    dead_lettered: int = 0
    skipped: int = 0
    files: int = 0
    per_source: dict[str, tuple[int, int, int]] = field(default_factory=dict)

    def line(self) -> str:
        """The one-line summary the CLI prints."""
        return (
            f"read {self.read:,} / loaded {self.loaded:,} / dead-lettered {self.dead_lettered:,}"
            f" / skipped {self.skipped:,} already loaded ({self.files} files)"
        )


def new_load_id(kind: str) -> str:
    """A sortable, unique id for one loader run."""
    return f"{kind}-{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"


def _fingerprint(handle: BinaryIO, length: int) -> str:
    """``<n>:<sha256>`` of the first n bytes; pread leaves the reading position alone."""
    data = os.pread(handle.fileno(), length, 0)
    return f"{len(data)}:{hashlib.sha256(data).hexdigest()}"


def check_file(path: Path) -> Path:
    """The resolved path of a readable regular file, or an :class:`InputError` naming it."""
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path}: is a directory, expected an NDJSON file")
    try:
        with path.open("rb"):
            pass
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror})") from None
    return path.resolve()


def _blocks(handle: BinaryIO, start: int, batch_bytes: int) -> Iterator[tuple[int, bytes]]:
    """Whole-line blocks from ``start``; the last line may lack its newline."""
    offset = start
    handle.seek(offset)
    pending = b""
    while True:
        data = handle.read(batch_bytes)
        if not data:
            if pending:
                yield offset, pending
            return
        data = pending + data
        cut = data.rfind(b"\n")
        if cut < 0:
            pending = data
            continue
        block, pending = data[: cut + 1], data[cut + 1 :]
        yield offset, block
        offset += len(block)


def _invalid_utf8_lines(block: bytes, lines: list[bytes]) -> list[int]:
    """Indexes of ``lines`` that are not valid UTF-8 (one C-speed decode when all are)."""
    try:
        str(block, "utf-8")
        return []
    except UnicodeDecodeError:
        pass
    bad = []
    for index, line in enumerate(lines):
        try:
            str(line, "utf-8")
        except UnicodeDecodeError:
            bad.append(index)
    return bad


def block_table(block: bytes, block_offset: int, first_line: int, source_file: str) -> pa.Table:
    """Split a block of whole lines into the staging columns the validator expects."""
    parts = block.split(b"\n")
    if parts and parts[-1] == b"":
        parts.pop()
    n = len(parts)
    lines = pa.array(parts, pa.binary())
    value_offsets = pa.Array.from_buffers(pa.int32(), n, [None, lines.buffers()[1]])
    index = pc.subtract(pc.cumulative_sum(pa.repeat(pa.scalar(1, pa.int64()), n)), 1)
    staged = stage(
        lines,
        {
            "_arrival_topic": pa.nulls(n, pa.string()),
            "_partition": pa.nulls(n, pa.int32()),
            "_offset": pc.add(pc.add(value_offsets.cast(pa.int64()), index), block_offset),
            "_key": pa.nulls(n, pa.string()),
            "_kafka_ts": pa.nulls(n, pa.timestamp("us", tz="UTC")),
            "_source_file": pa.repeat(pa.scalar(source_file, pa.string()), n),
            "_source_line": pc.add(index, first_line),
        },
        bad_utf8=_invalid_utf8_lines(block, parts),
    )
    return staged.filter(pc.greater(pc.binary_length(lines), 0))


def _staged_blocks(
    handle: BinaryIO, offset: int, first_line: int, batch_bytes: int
) -> Iterator[tuple[int, bytes, pa.Table, int]]:
    """Blocks with their staged tables and the number of the line after them; the next block
    is prepared in a thread meanwhile.

    Staging is Python work; the warehouse write is DuckDB work that releases the GIL, so
    overlapping the two keeps both cores busy.
    """
    path = str(Path(handle.name).resolve())

    def prepare(item: tuple[int, bytes], line: int) -> tuple[int, bytes, pa.Table]:
        block_offset, block = item
        return block_offset, block, chunked(block_table(block, block_offset, line, path))

    blocks = _blocks(handle, offset, batch_bytes)
    line = first_line
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="stage") as pool:
        first = next(blocks, None)
        pending: Future[tuple[int, bytes, pa.Table]] | None = (
            pool.submit(prepare, first, line) if first else None
        )
        while pending is not None:
            block_offset, block, staged = pending.result()
            line += block.count(b"\n") + (0 if block.endswith(b"\n") else 1)
            upcoming = next(blocks, None)
            pending = pool.submit(prepare, upcoming, line) if upcoming else None
            yield block_offset, block, staged, line


def chunked(table: pa.Table, rows: int = VALIDATION_CHUNK_ROWS) -> pa.Table:
    """The same table split into row groups DuckDB can scan in parallel."""
    return pa.Table.from_batches(table.to_batches(max_chunksize=rows), table.schema)


def ingest_files(
    warehouse: Warehouse,
    paths: Iterable[str | Path],
    *,
    batch_bytes: int = DEFAULT_BATCH_BYTES,
    progress: Callable[[int], None] | None = None,
    load_id: str | None = None,
) -> IngestSummary:
    """Load NDJSON event files into Bronze exactly once, resuming from stored positions.

    ``progress`` is called with the number of bytes consumed after each committed block.
    """
    files = [check_file(Path(p)) for p in paths]
    load_id = load_id or new_load_id("ingest")
    summary = IngestSummary()
    for path in files:
        read, loaded, dead, skipped = _ingest_one(warehouse, path, load_id, batch_bytes, progress)
        summary.read += read
        summary.loaded += loaded
        summary.dead_lettered += dead
        summary.skipped += skipped
        summary.files += 1
        summary.per_source[str(path)] = (read, loaded, dead)
    warehouse.record_load(
        LoadRecord(
            load_id,
            "events",
            ",".join(str(p) for p in files),
            None,
            summary.read,
            summary.loaded,
            summary.dead_lettered,
        )
    )
    return summary


def _ingest_one(
    warehouse: Warehouse,
    path: Path,
    load_id: str,
    batch_bytes: int,
    progress: Callable[[int], None] | None,
) -> tuple[int, int, int, int]:
    source = f"file:{path}"
    stored = warehouse.positions(source).get(0)
    read = loaded = dead = 0
    with path.open("rb") as handle:
        size = path.stat().st_size
        offset, line = 0, 1
        if stored is not None:
            offset, line = stored.next_offset, stored.next_line or 1
            if size < offset:
                raise InputError(
                    f"{path}: file is shorter ({size} bytes) than the {offset} bytes already"
                    " loaded from it; it was truncated or replaced"
                )
            length = int((stored.fingerprint or "0:").split(":", 1)[0])
            if stored.fingerprint and _fingerprint(handle, length) != stored.fingerprint:
                raise InputError(
                    f"{path}: file content changed since it was loaded (first {length} bytes"
                    " differ); load it under a new name"
                )
            if progress:
                progress(offset)
        skipped = line - 1
        fingerprint = stored.fingerprint if stored and stored.fingerprint else None
        for block_offset, block, staged, next_line in _staged_blocks(
            handle, offset, line, batch_bytes
        ):
            if fingerprint is None or int(fingerprint.split(":", 1)[0]) < FINGERPRINT_BYTES:
                fingerprint = _fingerprint(
                    handle, min(FINGERPRINT_BYTES, block_offset + len(block))
                )
            position = Position(source, 0, block_offset + len(block), next_line, fingerprint)
            expected = {(source, 0): block_offset if block_offset or stored else None}
            result = warehouse.write_events(
                EventBatch(load_id, "file", staged, [position], expected)
            )
            read += staged.num_rows
            loaded += result.loaded
            dead += result.dead_lettered
            if progress:
                progress(len(block))
    return read, loaded, dead, skipped
