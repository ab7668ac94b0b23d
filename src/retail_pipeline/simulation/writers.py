"""What the simulator writes to disk: the event files, the reference snapshots and ``truth.json``.

Event lines wait in a calendar queue keyed by arrival minute until no later event can overtake
them, then go to one NDJSON file per topic in arrival order; memory is bounded by the events in
flight, not by the run. Snapshots are JSON arrays with one record per line.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO

import orjson

from retail_pipeline.simulation.encoding import MS_PER_MINUTE


class EventFiles:
    """One NDJSON file per topic, written in arrival order through a calendar queue.

    Lines arriving in the same millisecond keep the order they were queued in. Use as a context
    manager: the files open on entry and close on exit; :meth:`flush` writes what is left.
    """

    def __init__(self, paths: Sequence[Path], start_ms: int) -> None:
        self.paths = tuple(paths)
        self._files: list[BinaryIO] = []
        # minute -> [(arrival_ms, seq, topic, line)]
        self._queue: dict[int, list[tuple[int, int, int, bytes]]] = {}
        self._seq = 0
        self._drained_minute = start_ms // MS_PER_MINUTE

    def __enter__(self) -> EventFiles:
        try:
            for path in self.paths:
                self._files.append(path.open("wb", buffering=1 << 20))
        except BaseException:
            self._close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._close()

    def _close(self) -> None:
        for handle in self._files:
            handle.close()

    def put(self, arrival_ms: int, topic: int, line: bytes) -> None:
        """Queue ``line`` for the file of topic number ``topic``, to arrive at ``arrival_ms``."""
        self._seq += 1
        bucket = self._queue.get(arrival_ms // MS_PER_MINUTE)
        if bucket is None:
            self._queue[arrival_ms // MS_PER_MINUTE] = [(arrival_ms, self._seq, topic, line)]
        else:
            bucket.append((arrival_ms, self._seq, topic, line))

    def write_before(self, now_ms: int) -> None:
        """Write the lines arriving before ``now_ms``'s minute; the caller guarantees that nothing
        queued from now on arrives earlier, so the files come out sorted by arrival."""
        minute = now_ms // MS_PER_MINUTE
        if minute > self._drained_minute:
            self._drain(range(self._drained_minute, minute))
            self._drained_minute = minute

    def flush(self) -> None:
        """Write every queued line."""
        self._drain(sorted(self._queue))

    def _drain(self, minutes: Sequence[int]) -> None:
        queue = self._queue
        writes = [handle.write for handle in self._files]
        for minute in minutes:
            bucket = queue.pop(minute, None)
            if bucket is None:
                continue
            bucket.sort()
            for _, _, topic, line in bucket:
                writes[topic](line)


def _json_array(records: Sequence[bytes]) -> bytes:
    if not records:
        return b"[]\n"
    return b"[\n" + b",\n".join(records) + b"\n]\n"


def write_snapshot(
    directory: Path, customers: Sequence[bytes], products: Sequence[dict[str, Any]]
) -> tuple[Path, Path]:
    """Write ``customers.json`` (records already serialised) and ``products.json``."""
    directory.mkdir(parents=True, exist_ok=True)
    customers_path = directory / "customers.json"
    products_path = directory / "products.json"
    customers_path.write_bytes(_json_array(customers))
    products_path.write_bytes(_json_array([orjson.dumps(p) for p in products]))
    return customers_path, products_path


def write_truth(path: Path, answers: dict[str, Any]) -> Path:
    """Write the answers as indented JSON."""
    path.write_bytes(orjson.dumps(answers, option=orjson.OPT_INDENT_2) + b"\n")
    return path
