"""Reference data snapshots (customers, products) into Bronze.

A snapshot file is a JSON array or NDJSON (detected from its first non-blank byte). Each load
appends the whole snapshot with its load id and time; a file whose content was already loaded
is skipped (sha256 of the bytes), a changed file is a new snapshot. Records that break the
contract go to the dead-letter table with the file and record number.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import orjson
import pyarrow as pa
from pydantic import BaseModel, ValidationError

from retail_pipeline.errors import InputError
from retail_pipeline.events.contract import Customer, Product
from retail_pipeline.ingestion.files import new_load_id
from retail_pipeline.warehouse.base import REFERENCE_TABLES, LoadRecord, Warehouse

MODELS: dict[str, type[BaseModel]] = {"customers": Customer, "products": Product}


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
            items = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            try:
                data.decode("utf-8")
            except UnicodeDecodeError as bad:
                line = data.count(b"\n", 0, bad.start) + 1
                raise InputError(f"{path}:{line}: not valid UTF-8") from None
            raise InputError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None
        if not isinstance(items, list):
            raise InputError(f"{path}: expected a JSON array of records")
        return [(i + 1, None, orjson.dumps(item)) for i, item in enumerate(items)]
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
    if entity not in MODELS:
        raise InputError(f"unknown reference entity {entity!r}; expected customers or products")
    file = Path(path)
    data = _read(file, entity)
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
    model, key = MODELS[entity], REFERENCE_TABLES[entity]
    good: dict[str, list[object]] = {"key": [], "payload": [], "record_number": []}
    bad: dict[str, list[object]] = {"record_number": [], "line": [], "raw": [], "reason": []}
    for number, line, raw in records:
        try:
            record = model.model_validate_json(raw)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"])
            bad["record_number"].append(number)
            bad["line"].append(line)
            bad["raw"].append(raw.decode("utf-8", "backslashreplace"))
            bad["reason"].append(f"{where}: {err['msg']}" if where else err["msg"])
            continue
        good["key"].append(getattr(record, key))
        good["payload"].append(raw.decode("utf-8"))
        good["record_number"].append(number)
    rows = pa.table(
        {
            "key": pa.array(good["key"], pa.string()),
            "payload": pa.array(good["payload"], pa.string()),
            "source_file": pa.array([source] * len(good["key"]), pa.string()),
            "record_number": pa.array(good["record_number"], pa.int64()),
        }
    )
    dead = pa.table(
        {
            "record_number": pa.array(bad["record_number"], pa.int64()),
            "line": pa.array(bad["line"], pa.int64()),
            "raw": pa.array(bad["raw"], pa.string()),
            "reason": pa.array(bad["reason"], pa.string()),
            "source_file": pa.array([source] * len(bad["raw"]), pa.string()),
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
    warehouse.write_reference(entity, rows, dead, load)
    return BatchSummary(entity, file, len(records), rows.num_rows, dead.num_rows, False)
