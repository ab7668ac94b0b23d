"""Exactly-once ingestion of NDJSON event files into Bronze.

Each file is read from the byte offset stored in ``bronze._positions`` in blocks of whole
lines. A block is validated (:mod:`retail_pipeline.ingestion.validate`) and written together
with the offset just past it in one warehouse transaction, so a crash at any moment leaves
every line in Bronze or the dead-letter table exactly once.
"""

from __future__ import annotations

import ctypes
import gzip
import hashlib
import os
import time
import uuid
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from retail_pipeline import interrupts
from retail_pipeline.errors import InputError
from retail_pipeline.ingestion.observe import LoadObserver, event_rows
from retail_pipeline.ingestion.staging import METADATA_SCHEMA, escaped_text, stage_events
from retail_pipeline.ingestion.workers import Validators, default_workers
from retail_pipeline.lineage import file_dataset
from retail_pipeline.settings import settings
from retail_pipeline.warehouse.base import EVENT_TABLES, EventBatch, Position, Warehouse

DEFAULT_BATCH_BYTES = 64 << 20
"""Bytes of file per transaction (``--batch-mb``)."""
STAGE_BYTES = 8 << 20
"""Bytes validated at a time; a transaction holds one or more such blocks."""
PROCESS_POOL_BYTES = 32 << 20
"""Inputs at least this big are validated in worker processes."""
FINGERPRINT_BYTES = 4096
"""Bytes hashed at the start of a file, and just before its resume point (docs/bronze.md)."""
PREFIX_BYTES = 64 << 10
"""Bytes of a line over the size cap kept as its dead letter's ``raw_payload``."""
MMAP_THRESHOLD = 1 << 20
"""Allocations at least this big are given back to the system when freed (see
:func:`return_freed_buffers`)."""
_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number


def return_freed_buffers() -> None:
    """Make glibc's malloc hand buffers of :data:`MMAP_THRESHOLD` and more back to the system
    as soon as they are freed.

    The loaders allocate and free buffers of a few MiB many times a second (blocks read, the
    validation workers' results, Arrow columns). glibc raises its mmap threshold to the size of
    each such buffer freed (up to 32 MiB); from then on they come from the heap, and once freed
    stay in the process: measured on 1 GB of NDJSON, about 250 MiB of resident memory nothing
    used. Setting the threshold turns that adjustment off. A no-op where malloc is not glibc's.
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)


def max_record_bytes() -> int:
    """The longest line (or snapshot record) read whole: ``RETAIL_MAX_RECORD_BYTES``."""
    return settings().max_record_bytes


def path_text(path: Path | str) -> str:
    """A path as the text Bronze stores (``_source_file``, positions): any bytes, losslessly.

    A name that is not UTF-8 (``os.fsencode`` gives its bytes back) has each such byte written
    ``\\xNN`` and each backslash ``\\\\`` (:func:`~retail_pipeline.ingestion.staging.escaped_text`),
    so the stored text is valid UTF-8, printable and stable from run to run.
    """
    return escaped_text(os.fsencode(path))


def too_long_reason(size: int, limit: int, *, what: str = "line", kept: int) -> str:
    """The dead-letter reason of a line or record over the size cap."""
    return (
        f"{what} too long: {size:,} bytes, over the {limit:,}-byte limit"
        f" (RETAIL_MAX_RECORD_BYTES); raw_payload holds its first {kept:,} bytes"
    )


def truncated_text(prefix: bytes) -> str:
    """The first bytes of an oversized line as text: cut back to a whole UTF-8 character, or
    backslash-escaped when it is not UTF-8."""
    for cut in range(4):
        try:
            return prefix[: len(prefix) - cut].decode("utf-8")
        except UnicodeDecodeError:
            continue
    return escaped_text(prefix)


@dataclass
class IngestSummary:
    """What one ingest run did, in messages (non-empty lines)."""

    read: int = 0
    loaded: int = 0
    dead_lettered: int = 0
    skipped: int = 0
    files: int = 0
    blank: int = 0
    """Empty or whitespace-only lines (LF or CRLF), skipped."""
    unterminated: int = 0
    """Files whose last line has no newline yet; it is read when the newline arrives."""
    per_source: dict[str, tuple[int, int, int]] = field(default_factory=dict)
    load_id: str = ""
    """The run's load id: its rows and dead letters carry it (``_load_id``)."""
    repeated: int = 0
    """Names that repeated a file already named (itself, a symlink or a hard link to it)."""

    def line(self) -> str:
        """The one-line summary the CLI prints."""
        notes = []
        if self.repeated:
            notes.append(f"{self.repeated} repeated name(s) of a file already listed, loaded once")
        if self.blank:
            notes.append(f"{self.blank:,} blank lines skipped")
        if self.unterminated:
            notes.append(
                f"{self.unterminated} file(s) end in a line without a newline, left until it"
                " arrives"
            )
        return (
            f"read {self.read:,} / loaded {self.loaded:,} / dead-lettered {self.dead_lettered:,}"
            f" / skipped {self.skipped:,} already loaded ({self.files} files)"
            + "".join(f"; {note}" for note in notes)
        )


def new_load_id(kind: str) -> str:
    """A sortable, unique id for one loader run."""
    return f"{kind}-{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"


def _hashed(fd: int, start: int, length: int) -> str:
    """``<n>:<sha256>`` of the n bytes from ``start``; pread leaves the reading position alone."""
    data = os.pread(fd, length, start)
    return f"{len(data)}:{hashlib.sha256(data).hexdigest()}"


def _fingerprint(fd: int, end: int, gz: bool) -> str:
    """What identifies the part of a file already loaded: ``<head>;<end>-<tail>``.

    The head is the hash of the first :data:`FINGERPRINT_BYTES`; the tail, the hash of the
    :data:`FINGERPRINT_BYTES` just before ``end``: for a plain file, ``end`` is the resume
    point; for gzip (whose offsets are of the decompressed text) it is the compressed file's
    size now. Appending keeps both; a rewrite that keeps the first bytes changes the tail.
    """
    if gz:
        end = os.fstat(fd).st_size
    head = _hashed(fd, 0, min(FINGERPRINT_BYTES, end))
    start = max(0, end - FINGERPRINT_BYTES)
    return f"{head};{end}-{_hashed(fd, start, end - start)}"


GZIP_MAGIC = b"\x1f\x8b"
_OTHER_FORMATS = {
    b"\x28\xb5\x2f\xfd": "zstd-compressed",
    b"BZh": "bzip2-compressed",
    b"\xfd7zXZ\x00": "xz-compressed",
    b"PK\x03\x04": "a zip archive",
}


def check_file(path: Path) -> Path:
    """The resolved path of a readable NDJSON (or gzip NDJSON) file, or an :class:`InputError`.

    Pipes, sockets and devices are refused rather than read: a FIFO with no writer would hang,
    and a stream has no byte offsets to resume from.
    """
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path}: is a directory, expected an NDJSON file")
    if not path.is_file():
        raise InputError(
            f"{path}: not a regular file (a pipe, socket or device); write the events to a file"
            " first: exactly-once loading resumes from byte offsets"
        )
    try:
        with path.open("rb") as handle:
            head = handle.read(6)
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror})") from None
    for magic, kind in _OTHER_FORMATS.items():
        if head.startswith(magic):
            raise InputError(
                f"{path}: {kind}; only NDJSON and gzip-compressed NDJSON (.gz) can be read"
            )
    return path.resolve()


def is_gzip(path: Path) -> bool:
    """True for a gzip file (by its magic bytes, whatever its name)."""
    with path.open("rb") as handle:
        return handle.read(2) == GZIP_MAGIC


def _open_events(path: Path) -> BinaryIO:
    """The file's NDJSON bytes: decompressed on the fly for gzip (offsets are of the NDJSON)."""
    if is_gzip(path):
        return gzip.open(path, "rb")  # type: ignore[return-value]
    return path.open("rb")


@dataclass
class LongLine:
    """A line longer than the cap, never held whole: where it is, its size and first bytes."""

    offset: int
    size: int
    """Bytes without its newline."""
    prefix: bytes


def read_lines(
    handle: BinaryIO,
    start: int,
    read_bytes: int,
    max_line: int,
    *,
    final: bool = False,
) -> Iterator[tuple[int, bytes] | LongLine]:
    """Blocks ``(offset, bytes)`` of whole, newline-terminated lines from ``start``, and each
    line longer than ``max_line`` bytes as a :class:`LongLine` in its place.

    Memory is bounded by ``read_bytes`` + ``max_line``, whatever the input: a longer line is
    skipped through (its first :data:`PREFIX_BYTES` kept), never gathered. A last line without
    its newline is not read (``final`` reads it too): a writer may still be appending it, and
    reading it now would load (or dead-letter) half a message. It is read once its newline
    arrives; until then the stored position stays before it.
    """
    name = getattr(handle, "name", "file")
    offset = start  # of data[0]
    data = b""
    long: LongLine | None = None
    try:
        handle.seek(offset)
    except (EOFError, OSError, zlib.error) as exc:
        raise InputError(f"{name}: cannot read: {exc}") from None
    while True:
        try:
            chunk = handle.read(read_bytes)
        except (EOFError, OSError, zlib.error) as exc:  # a truncated or damaged gzip stream
            raise InputError(f"{name}: cannot read: {exc}") from None
        if not chunk:
            if final and long is not None:
                yield long
            elif final and data:
                yield offset, data
            return
        if long is not None:
            newline = chunk.find(b"\n")
            if newline < 0:
                long.size += len(chunk)
                continue
            long.size += newline
            yield long
            offset = long.offset + long.size + 1
            long = None
            data = chunk[newline + 1 :]
        else:
            data = data + chunk if data else chunk
        cut = data.rfind(b"\n")
        if cut >= 0:
            yield offset, data[: cut + 1]
            offset += cut + 1
            data = data[cut + 1 :]
        if len(data) > max_line:  # the line that starts at ``offset`` is already too long
            long = LongLine(offset, len(data), data[:PREFIX_BYTES])
            data = b""


@dataclass
class StagedBlock:
    """A block of whole lines, validated: its Bronze rows and dead letters."""

    offset: int
    size: int
    lines: int
    """Lines in the block, blank ones included (the next block starts after them)."""
    events: dict[str, pa.Table]
    dead_letters: pa.Table
    blank: int = 0

    @property
    def messages(self) -> int:
        """Non-blank lines, as split from the file (validation must account for each one)."""
        return self.lines - self.blank


BOM = b"\xef\xbb\xbf"


def _too_long_letters(
    offsets: list[int],
    lines: list[int],
    sizes: list[int],
    prefixes: list[bytes],
    source_file: str,
    limit: int,
) -> pa.Table:
    """Dead-letter rows (the columns :func:`stage_events` gives) for lines over the cap."""
    n = len(offsets)
    return pa.table(
        {
            "_partition": pa.nulls(n, pa.int32()),
            "_offset": pa.array(offsets, pa.int64()),
            "_key": pa.nulls(n, pa.string()),
            "_kafka_ts": pa.nulls(n, pa.timestamp("us", tz="UTC")),
            "_source_file": pa.array([source_file] * n, pa.string()),
            "_source_line": pa.array(lines, pa.int64()),
            "_topic": pa.nulls(n, pa.string()),
            "raw_payload": pa.array([truncated_text(p) for p in prefixes], pa.string()),
            "reason": pa.array(
                [
                    too_long_reason(size, limit, kept=len(p))
                    for size, p in zip(sizes, prefixes, strict=True)
                ],
                pa.string(),
            ),
        },
        schema=METADATA_SCHEMA.append(pa.field("_topic", pa.string()))
        .append(pa.field("raw_payload", pa.string()))
        .append(pa.field("reason", pa.string())),
    )


def stage_block(
    block: bytes,
    block_offset: int,
    first_line: int,
    source_file: str,
    max_line: int | None = None,
) -> StagedBlock:
    """Split a block of whole lines and validate them.

    Empty and whitespace-only lines (``\r`` of CRLF files included) are skipped and counted. A
    UTF-8 byte-order mark at the very start of the file is not part of the first line. A line
    longer than ``max_line`` (default ``RETAIL_MAX_RECORD_BYTES``) is dead-lettered unread.
    """
    limit = max_record_bytes() if max_line is None else max_line
    parts = block.split(b"\n")
    if parts and parts[-1] == b"":
        parts.pop()
    count = len(parts)
    lengths = np.fromiter(map(len, parts), dtype=np.int64, count=count)
    ends = np.cumsum(lengths + 1)
    starts = ends - lengths - 1
    if block_offset == 0 and parts and parts[0].startswith(BOM):
        parts[0] = parts[0][len(BOM) :]
        starts[0] += len(BOM)
        lengths[0] -= len(BOM)
    kept = np.fromiter((not line.isspace() for line in parts), dtype=bool, count=count)
    kept &= lengths > 0
    long = kept & (lengths > limit)
    kept &= ~long
    filled = np.flatnonzero(kept)
    messages = [parts[i] for i in filled.tolist()] if len(filled) < count else parts
    n = len(messages)
    metadata = pa.table(
        {
            "_partition": pa.nulls(n, pa.int32()),
            "_offset": pa.array(starts[filled] + block_offset, pa.int64()),
            "_key": pa.nulls(n, pa.string()),
            "_kafka_ts": pa.nulls(n, pa.timestamp("us", tz="UTC")),
            "_source_file": pa.repeat(pa.scalar(source_file, pa.string()), n),
            "_source_line": pa.array(filled + first_line, pa.int64()),
        }
    )
    events, dead = stage_events(messages, metadata)
    blank = count - n
    if long.any():
        too_long = np.flatnonzero(long)
        letters = _too_long_letters(
            (starts[too_long] + block_offset).tolist(),
            (too_long + first_line).tolist(),
            lengths[too_long].tolist(),
            [parts[i][:PREFIX_BYTES] for i in too_long.tolist()],
            source_file,
            limit,
        )
        dead = pa.concat_tables([dead, letters]).sort_by("_offset")
        blank -= len(too_long)
    return StagedBlock(block_offset, len(block), count, events, dead, blank)


def stage_long_line(long: LongLine, line: int, source_file: str, limit: int) -> StagedBlock:
    """A line over the cap, read through by :func:`read_lines`: one dead letter."""
    dead = _too_long_letters([long.offset], [line], [long.size], [long.prefix], source_file, limit)
    return StagedBlock(long.offset, long.size + 1, 1, {}, dead)


SPAN_WINDOW = 64 << 10
"""Bytes read before a block's nominal end to find its last newline (:func:`_spans`)."""

_Item = tuple[int, int] | tuple[int, bytes] | LongLine


def _spans(handle: BinaryIO, start: int, block_bytes: int, max_line: int) -> Iterator[_Item]:
    """The blocks of a plain (not compressed) file from ``start``, as :func:`read_lines` gives
    them, but each block of whole lines as ``(offset, length)``: the validation worker reads
    it from the file itself.

    Only :data:`SPAN_WINDOW` bytes from a block's nominal last byte are read here, to find the
    newline that ends it (a block holds at least ``block_bytes``, as a transaction of one
    block did before). The main process then neither reads, copies nor sends the file's
    bytes (about a fifth of its CPU for 1.2M lines, on the writer's critical path). Where that
    window holds no newline (a line longer than it), the rest of the file goes through
    :func:`read_lines`, which streams long lines without holding them. As there, a last line
    without its newline is left until it arrives; the handle ends at the size seen, so
    ``tell()`` reports what was there.
    """
    fd = handle.fileno()
    offset = size = start
    while True:
        size = os.fstat(fd).st_size
        if size <= offset:
            break
        nominal = offset + block_bytes
        if nominal < size:  # the block ends with the line that holds its nominal last byte
            newline = os.pread(fd, SPAN_WINDOW, nominal - 1).find(b"\n")
            end = -1 if newline < 0 else nominal + newline
        else:  # the rest of the file is one block, up to its last newline
            low = max(offset, size - SPAN_WINDOW)
            newline = os.pread(fd, size - low, low).rfind(b"\n")
            end = -1 if newline < 0 else low + newline + 1
            if end < 0 and low == offset:
                break  # only a last line without its newline is left
        if end < 0:
            yield from read_lines(handle, offset, block_bytes, max_line)
            return
        yield offset, end - offset
        offset = end
    handle.seek(size)


def stage_span(
    path: Path, identity: tuple[int, int], offset: int, length: int, source_file: str, limit: int
) -> StagedBlock:
    """Read ``length`` bytes of whole lines at ``offset`` of ``path`` and stage them (in a
    validation worker; lines numbered from 0, see :func:`_renumbered`).

    ``identity`` (device, inode) is the file the loader opened: a file replaced under the
    same name meanwhile is refused, never read in its place.
    """
    try:
        with path.open("rb", buffering=0) as handle:
            fd = handle.fileno()
            stat = os.fstat(fd)
            block = os.pread(fd, length, offset)
    except OSError as exc:
        raise InputError(f"{source_file}: cannot read ({exc.strerror})") from None
    if (stat.st_dev, stat.st_ino) != identity:
        raise InputError(f"{source_file}: file was replaced while it was being loaded")
    if len(block) != length:
        raise InputError(f"{source_file}: file was truncated while it was being loaded")
    return stage_block(block, offset, 0, source_file, limit)


def _renumbered(staged: StagedBlock, first_line: int) -> StagedBlock:
    """``staged`` (lines numbered from 0) with ``_source_line`` counted from ``first_line``.

    Blocks are staged before the lines ahead of them are counted (the workers read and count
    them), so their line numbers are set here, in file order.
    """

    def shifted(table: pa.Table) -> pa.Table:
        index = table.schema.get_field_index("_source_line")
        column = pc.add(table.column(index), pa.scalar(first_line, pa.int64()))
        return table.set_column(index, "_source_line", column)

    staged.events = {topic: shifted(table) for topic, table in staged.events.items()}
    staged.dead_letters = shifted(staged.dead_letters)
    return staged


def _staged_blocks(
    handle: BinaryIO,
    offset: int,
    first_line: int,
    block_bytes: int,
    validators: Validators,
    source_file: str,
    ahead: int = 1,
    path: Path | None = None,
) -> Iterator[StagedBlock]:
    """The file's blocks from ``offset``, validated by ``validators`` up to ``ahead`` blocks
    ahead of the one the caller is writing. With ``path`` (a plain file, opened as
    ``handle``), the workers read the blocks themselves (:func:`_spans`)."""
    limit = max_record_bytes()
    line = first_line
    pending: deque[Future[StagedBlock]] = deque()
    if path is None:
        items: Iterator[_Item] = read_lines(handle, offset, block_bytes, limit)
    else:
        stat = os.fstat(handle.fileno())
        identity = (stat.st_dev, stat.st_ino)
        items = _spans(handle, offset, block_bytes, limit)
    for item in items:
        if isinstance(item, LongLine):
            pending.append(validators.submit(stage_long_line, item, 0, source_file, limit))
        elif isinstance(item[1], int):
            span_offset, length = item
            pending.append(
                validators.submit(
                    stage_span, path, identity, span_offset, length, source_file, limit
                )
            )
        else:
            block_offset, block = item
            pending.append(
                validators.submit(stage_block, block, block_offset, 0, source_file, limit)
            )
        while len(pending) > ahead:
            staged = _renumbered(pending.popleft().result(), line)
            line += staged.lines
            yield staged
    while pending:
        staged = _renumbered(pending.popleft().result(), line)
        line += staged.lines
        yield staged


def unique_files(paths: Iterable[str | Path]) -> tuple[list[Path], int]:
    """The files named (each checked by :func:`check_file`), each file once however it is named
    (again, through a symlink or a hard link: same device and inode), and how many names
    repeated one."""
    files: list[Path] = []
    seen: set[tuple[int, int]] = set()
    repeats = 0
    for name in paths:
        path = check_file(Path(name))
        identity = path.stat()
        key = (identity.st_dev, identity.st_ino)
        if key in seen:
            repeats += 1
            continue
        seen.add(key)
        files.append(path)
    return files, repeats


def ingest_files(
    warehouse: Warehouse,
    paths: Iterable[str | Path],
    *,
    batch_bytes: int = DEFAULT_BATCH_BYTES,
    progress: Callable[[int], None] | None = None,
    load_id: str | None = None,
    workers: int | None = None,
) -> IngestSummary:
    """Load NDJSON event files into Bronze exactly once, resuming from stored positions.

    ``progress`` is called with the number of bytes consumed after each committed block.
    ``workers`` validation processes run beside the writes (default: one per core when the
    input is big enough to pay for starting them, else validation runs in a thread). A file
    named more than once (directly, through a symlink, a glob or a hard link) loads once.
    """
    return_freed_buffers()
    files, repeats = unique_files(paths)
    # Every input is checked before anything is written.
    stored = {path: check_resumable(warehouse, path) for path in files}
    load_id = load_id or new_load_id("ingest")
    sources = ",".join(path_text(p) for p in files)
    summary = IngestSummary(load_id=load_id, repeated=repeats)
    remaining = sum(p.stat().st_size for p in files)  # an upper bound: some may be loaded
    if workers is None:
        workers = default_workers() if remaining >= PROCESS_POOL_BYTES else 0
    inputs = [file_dataset(path_text(path)) for path in files]
    with (
        LoadObserver(warehouse, "ingest_files", inputs, list(EVENT_TABLES.values())) as observer,
        Validators(workers) as validators,
    ):
        for path in files:
            counts = _ingest_one(
                warehouse,
                path,
                stored[path],
                load_id,
                batch_bytes,
                progress,
                validators,
                sources,
                observer,
            )
            _add(summary, path_text(path), *counts)
    return summary


def _add(
    summary: IngestSummary,
    path: str,
    read: int,
    loaded: int,
    dead: int,
    skipped: int,
    blank: int,
    unterminated: int,
) -> None:
    summary.blank += blank
    summary.unterminated += unterminated
    summary.read += read
    summary.loaded += loaded
    summary.dead_lettered += dead
    summary.skipped += skipped
    summary.files += 1
    summary.per_source[path] = (read, loaded, dead)


def _transactions(blocks: Iterator[StagedBlock], batch_bytes: int) -> Iterator[list[StagedBlock]]:
    """Consecutive staged blocks grouped into transactions of about ``batch_bytes``.

    Big transactions are what makes DuckDB fast here: an append of a whole row group (122,880
    rows) is compressed and written to the database file once, instead of going through the
    write-ahead log and being compressed again at the next checkpoint.
    """
    group: list[StagedBlock] = []
    size = 0
    for staged in blocks:
        group.append(staged)
        size += staged.size
        if size >= batch_bytes:
            yield group
            group, size = [], 0
    if group:
        yield group


def _combined(group: list[StagedBlock]) -> tuple[dict[str, pa.Table], pa.Table]:
    """One transaction's events per topic and dead letters, from its staged blocks."""
    if len(group) == 1:
        return group[0].events, group[0].dead_letters
    topics = {topic for staged in group for topic in staged.events}
    events = {
        topic: pa.concat_tables([s.events[topic] for s in group if topic in s.events])
        for topic in sorted(topics)
    }
    return events, pa.concat_tables([staged.dead_letters for staged in group])


def check_resumable(warehouse: Warehouse, path: Path) -> Position | None:
    """The stored position of ``path``, after checking the file is still the one loaded.

    Raises :class:`InputError`, before anything is read, for a file that shrank below its
    stored position or whose already-loaded part changed: its first bytes, or the bytes just
    before the resume point (for gzip: the end of the compressed file as it was). Such a file
    was truncated or rewritten, not appended to; resuming would start inside a line and
    guessing would load it twice.
    """
    stored = warehouse.positions(f"file:{path_text(path)}").get(0)
    if stored is None:
        return None
    gz = is_gzip(path)
    size = path.stat().st_size
    if size < stored.next_offset and not gz:
        raise InputError(
            f"{path}: file is shorter ({size} bytes) than the {stored.next_offset} bytes already"
            " loaded from it; it was truncated or replaced"
        )
    head, _, tail = (stored.fingerprint or "").partition(";")
    with path.open("rb") as handle:
        fd = handle.fileno()
        if head:
            length = int(head.split(":", 1)[0])
            if _hashed(fd, 0, length) != head:
                raise InputError(
                    f"{path}: file content changed since it was loaded (first {length} bytes"
                    " differ); load it under a new name"
                )
        if tail:
            end_text, _, digest = tail.partition("-")
            end = int(end_text)
            length = int(digest.split(":", 1)[0])
            if size < end or _hashed(fd, end - length, length) != digest:
                raise InputError(
                    f"{path}: file was rewritten since it was loaded (bytes {end - length:,} to"
                    f" {end:,}, just before where loading resumes, differ); only appending"
                    " keeps a loaded file loadable: load the new content under a new name"
                )
        elif not gz and stored.next_offset and os.pread(fd, 1, stored.next_offset - 1) != b"\n":
            # A position stored before the tail was fingerprinted: at least a line boundary.
            raise InputError(
                f"{path}: file was rewritten since it was loaded (byte {stored.next_offset:,},"
                " where loading resumes, no longer starts a line); load it under a new name"
            )
    return stored


def _ingest_one(
    warehouse: Warehouse,
    path: Path,
    stored: Position | None,
    load_id: str,
    batch_bytes: int,
    progress: Callable[[int], None] | None,
    validators: Validators,
    sources: str,
    observer: LoadObserver,
) -> tuple[int, int, int, int, int, int]:
    name = path_text(path)
    source = f"file:{name}"
    gz = is_gzip(path)
    read = loaded = dead = 0
    with _open_events(path) as handle:
        offset, line = 0, 1
        if stored is not None:
            offset, line = stored.next_offset, stored.next_line or 1
            if progress:
                progress(offset)
        skipped = line - 1
        line_after = line
        blank, done = 0, offset
        stage_bytes = min(STAGE_BYTES, batch_bytes)
        # Validate the next transaction while this one is written, on every worker.
        ahead = max(1, batch_bytes // stage_bytes, validators.processes)
        blocks = _staged_blocks(
            handle, offset, line, stage_bytes, validators, name, ahead, None if gz else path
        )
        for group in _transactions(blocks, batch_bytes):
            interrupts.check()  # a Ctrl-C Python swallowed stops here, between transactions
            first, last = group[0], group[-1]
            end = last.offset + last.size
            line_after += sum(staged.lines for staged in group)
            fingerprint = _fingerprint(handle.fileno(), end, gz)
            position = Position(source, 0, end, line_after, fingerprint)
            expected = {(source, 0): first.offset if first.offset or stored else None}
            events, dead_letters = _combined(group)
            messages = sum(staged.messages for staged in group)
            batch = EventBatch(
                load_id, "file", events, dead_letters, [position], expected, messages, sources
            )
            started = time.monotonic()
            result = warehouse.write_events(batch)
            observer.committed(
                event_rows(events),
                dead_letters,
                read=messages,
                seconds=time.monotonic() - started,
            )
            read += messages
            blank += sum(staged.blank for staged in group)
            done = end
            loaded += result.loaded
            dead += result.dead_lettered
            if progress:
                progress(end - first.offset)
        unterminated = int(handle.tell() > done)  # the reader stopped at the end of the file
    return read, loaded, dead, skipped, blank, unterminated
