"""Reference data snapshots (customers, products) into Bronze.

A snapshot file is a JSON array or NDJSON (detected from its first non-blank byte). Each load
appends the whole snapshot with its load id and time; a file whose content was already loaded
is skipped (sha256 of the bytes), a changed file is a new snapshot. Records that break the
contract go to the dead-letter table with the file and record number.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import msgspec
import orjson
import pyarrow as pa

from retail_pipeline.errors import InputError
from retail_pipeline.events.contract import REFERENCE_FIELDS
from retail_pipeline.events.validator import validate_records
from retail_pipeline.ingestion.files import new_load_id
from retail_pipeline.ingestion.staging import payload_text
from retail_pipeline.warehouse.base import LoadRecord, ReferenceBatch, Warehouse


@dataclass(frozen=True)
class BatchSummary:
    """What loading one snapshot file did."""

    entity: str
    path: Path
    read: int
    loaded: int
    dead_lettered: int
    skipped: bool

    def line(self) -> str:
        """The one-line summary the CLI prints."""
        if self.skipped:
            return f"{self.entity}: {self.path} already loaded (same content), skipped"
        return (
            f"{self.entity}: read {self.read:,} / loaded {self.loaded:,}"
            f" / dead-lettered {self.dead_lettered:,} from {self.path}"
        )


def _read(path: Path, entity: str) -> bytes:
    if not path.exists():
        raise InputError(f"{path}: no such file ({entity} snapshot)")
    if path.is_dir():
        raise InputError(f"{path}: is a directory, expected a {entity} JSON file")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror})") from None


def _records(data: bytes, path: Path) -> list[tuple[int, int | None, bytes]]:
    """(record number, line number or None, raw JSON) for an array or NDJSON file."""
    stripped = data.lstrip()
    if stripped.startswith(b"["):
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as bad:
            line = data.count(b"\n", 0, bad.start) + 1
            raise InputError(f"{path}:{line}: not valid UTF-8") from None
        try:
            # Each element's exact text: numbers stay decimal text, repeated keys stay visible.
            items = msgspec.json.decode(data, type=list[msgspec.Raw])
        except msgspec.DecodeError as exc:
            where = re.search(r"byte (\d+)", str(exc))
            line = data.count(b"\n", 0, int(where.group(1))) + 1 if where else 1
            raise InputError(f"{path}:{line}: not valid JSON ({exc})") from None
        return [(i + 1, None, bytes(item)) for i, item in enumerate(items)]
    if not stripped:
        raise InputError(f"{path}: file is empty")
    if not stripped.startswith(b"{"):
        raise InputError(f"{path}:1: not a JSON array or NDJSON file")
    lines = data.split(b"\n")
    if _is_multiline_object(data, next(line for line in lines if line.strip())):
        raise InputError(f"{path}: a single JSON object, expected a JSON array or NDJSON records")
    return [(n, n, line) for n, line in enumerate(lines, start=1) if line.strip()]


def _is_multiline_object(data: bytes, first_line: bytes) -> bool:
    """True for a pretty-printed JSON object: its first line alone is not JSON, the file is."""
    try:
        orjson.loads(first_line)
        return False
    except orjson.JSONDecodeError:
        pass
    try:
        return isinstance(orjson.loads(data), dict)
    except orjson.JSONDecodeError:
        return False


@dataclass(frozen=True)
class Snapshot:
    """A snapshot file read and split into raw records, not yet validated or loaded."""

    entity: str
    path: Path
    content_hash: str
    records: list[tuple[int, int | None, bytes]]


def read_snapshot(entity: str, path: str | Path) -> Snapshot:
    """Read a customers or products file; raises :class:`InputError` before any write."""
    if entity not in REFERENCE_FIELDS:
        raise InputError(f"unknown reference entity {entity!r}; expected customers or products")
    file = Path(path)
    data = _read(file, entity).removeprefix(b"\xef\xbb\xbf")  # a BOM is not part of the data
    return Snapshot(entity, file, hashlib.sha256(data).hexdigest(), _records(data, file))


def load_reference(warehouse: Warehouse, entity: str, path: str | Path) -> BatchSummary:
    """Append one customers or products snapshot to Bronze (a no-op if already loaded)."""
    return load_snapshot(warehouse, read_snapshot(entity, path))


def load_snapshot(warehouse: Warehouse, snapshot: Snapshot) -> BatchSummary:
    """Append a snapshot read by :func:`read_snapshot` (a no-op if already loaded)."""
    entity, file, content_hash = snapshot.entity, snapshot.path, snapshot.content_hash
    records = snapshot.records
    source = str(file.resolve())
    if warehouse.has_reference_load(entity, content_hash):
        return BatchSummary(entity, file, len(records), 0, 0, True)
    verdicts = validate_records(entity, [raw for _, _, raw in records])
    good = verdicts.rows
    numbers = pa.array([number for number, _, _ in records], pa.int64())
    rows = good.drop_columns(["_row"])
    rows = rows.append_column("_source_file", pa.repeat(pa.scalar(source), rows.num_rows))
    rows = rows.append_column("_record_number", numbers.take(good.column("_row")))
    bad = [records[i] for i in verdicts.dead_rows]
    dead = pa.table(
        {
            "_offset": pa.array([number for number, _, _ in bad], pa.int64()),
            "_source_file": pa.array([source] * len(bad), pa.string()),
            "_source_line": pa.array([line for _, line, _ in bad], pa.int64()),
            "raw_payload": pa.array([payload_text(raw) for _, _, raw in bad], pa.string()),
            "reason": pa.array(verdicts.dead_reasons, pa.string()),
        }
    )
    load = LoadRecord(
        new_load_id(entity),
        entity,
        source,
        content_hash,
        len(records),
        rows.num_rows,
        dead.num_rows,
    )
    warehouse.write_reference(ReferenceBatch(entity, rows, dead, load, content_hash))
    return BatchSummary(entity, file, len(records), rows.num_rows, dead.num_rows, False)
