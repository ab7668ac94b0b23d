"""The dashboard's local web server: a static page plus a JSON endpoint, on 127.0.0.1 by default.

``GET /`` is the page (HTML, CSS, JS and the vendored Vega-Lite, all served from the package:
nothing comes from a CDN); ``GET /api/data?date_from=&date_to=&category=&country=&
payment_method=&carrier=`` returns the figures for those filters, the filter options and how
fresh the snapshot is. The page polls it, so the numbers follow the warehouse while the
loaders and ``transform`` run.
"""

from __future__ import annotations

import json
import mimetypes
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from retail_pipeline.dashboard.data import Filters, Snapshot, take_snapshot
from retail_pipeline.errors import PipelineError
from retail_pipeline.settings import settings
from retail_pipeline.transform.answers import status_of
from retail_pipeline.warehouse import open_warehouse, resolve_target

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8050
DEFAULT_REFRESH_SECONDS = 5.0
STATIC = resources.files("retail_pipeline.dashboard").joinpath("static")


class LiveGold:
    """The current :class:`Snapshot`, refreshed at most every ``refresh_seconds``.

    A refresh opens the warehouse read-only for a moment: it reads ``gold.build_info`` and the
    Bronze row counts (freshness) and copies Gold again only when a new build has landed. A
    DuckDB file that has not changed since is not opened at all; one that a writer holds is
    not waited for: the previous snapshot stays, with a note saying so.
    """

    def __init__(
        self,
        warehouse: str | os.PathLike[str] | None,
        target: str | None,
        refresh_seconds: float = DEFAULT_REFRESH_SECONDS,
    ) -> None:
        self.warehouse = warehouse
        self.target = resolve_target(target)
        self.refresh_seconds = refresh_seconds
        self._lock = threading.Lock()
        self._snapshot = take_snapshot(warehouse, target=self.target)
        self._signature = self._file_signature()
        self._checked = time.monotonic()

    @property
    def snapshot(self) -> Snapshot:
        """The latest snapshot (after a refresh, if one is due)."""
        if time.monotonic() - self._checked >= self.refresh_seconds and self._lock.acquire(
            blocking=False
        ):
            try:
                self.refresh()
            finally:
                self._lock.release()
        return self._snapshot

    def _file_signature(self) -> tuple[int, ...] | None:
        """Size and mtime of a DuckDB file and its WAL (None for Snowflake)."""
        if self.target != "duckdb":
            return None
        path = Path(self.warehouse) if self.warehouse else settings().warehouse
        signature: list[int] = []
        for candidate in (path, path.with_name(path.name + ".wal")):
            try:
                stat = candidate.stat()
            except OSError:
                signature += [-1, -1]
            else:
                signature += [stat.st_size, stat.st_mtime_ns]
        return tuple(signature)

    def refresh(self) -> None:
        """Read freshness, and Gold again if it was rebuilt; keep the old snapshot on failure."""
        self._checked = time.monotonic()
        signature = self._file_signature()
        if signature is not None and signature == self._signature:
            return
        current = self._snapshot
        try:
            with open_warehouse(self.warehouse, target=self.target, read_only=True) as wh:
                status = status_of(wh)
                if status.built_at != current.status.built_at:
                    fresh = Snapshot.take(wh)
                else:
                    current.status, current.taken_at, current.notes = status, _now(), []
                    fresh = current
        except PipelineError as exc:
            current.notes = [f"{exc}; showing the snapshot taken at {_clock(current.taken_at)}"]
            return
        self._signature = signature
        if fresh is not current:
            self._snapshot = fresh  # requests still reading the old copy keep their cursors


def _now() -> datetime:
    return datetime.now(UTC)


def _clock(value: datetime) -> str:
    return value.strftime("%H:%M:%S UTC")


def payload(snapshot: Snapshot, filters: Filters) -> dict[str, Any]:
    """The JSON the page draws: figures, filter options, applied filters and freshness."""
    return {
        "meta": snapshot.meta(),
        "options": snapshot.options(),
        "filters": {
            key: (value.isoformat() if hasattr(value, "isoformat") else value)
            for key, value in vars(filters).items()
        },
        "figures": snapshot.figures(filters),
    }


def _handler(gold: LiveGold) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "retail-pipeline-dashboard"

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            if url.path == "/api/data":
                params = {key: values[-1] for key, values in parse_qs(url.query).items()}
                try:
                    filters = Filters.parse(params)
                except PipelineError as exc:
                    self._send_json({"error": str(exc)}, HTTPStatus.BAD_REQUEST)
                    return
                self._send_json(payload(gold.snapshot, filters))
                return
            name = "index.html" if url.path in ("/", "/index.html") else url.path.lstrip("/")
            self._send_static(name)

        def _send_static(self, name: str) -> None:
            parts = name.split("/")
            resource = STATIC
            for part in parts:
                if part in ("", ".", "..") or part.startswith("."):
                    resource = STATIC.joinpath("-missing-")
                    break
                resource = resource.joinpath(part)
            if not resource.is_file():
                self.send_error(HTTPStatus.NOT_FOUND)
                return
            body = resource.read_bytes()
            kind = mimetypes.guess_type(name)[0] or "application/octet-stream"
            if kind.startswith("text/") or kind.endswith("javascript"):
                kind += "; charset=utf-8"
            self._send(body, kind)

        def _send_json(self, data: object, status: HTTPStatus = HTTPStatus.OK) -> None:
            self._send(json.dumps(data).encode(), "application/json", status)

        def _send(self, body: bytes, kind: str, status: HTTPStatus = HTTPStatus.OK) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: the terminal shows the URL, not every request."""

    return Handler


@dataclass
class Dashboard:
    """A running dashboard server."""

    server: ThreadingHTTPServer
    gold: LiveGold

    @property
    def url(self) -> str:
        """Where the page is."""
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}/"

    def serve_forever(self) -> None:
        """Serve until interrupted (Ctrl-C) or :meth:`stop`."""
        try:
            self.server.serve_forever(poll_interval=0.2)
        finally:
            self.server.server_close()
            self.gold.snapshot.close()

    def stop(self) -> None:
        """Stop serving (from another thread)."""
        self.server.shutdown()


def create_dashboard(
    warehouse: str | os.PathLike[str] | None = None,
    *,
    target: str | None = None,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    refresh_seconds: float = DEFAULT_REFRESH_SECONDS,
) -> Dashboard:
    """Take the first snapshot of Gold and bind the server on ``host``:``port`` (port 0: any).

    ``host`` is 127.0.0.1 unless the page must be reached from elsewhere (``0.0.0.0`` in a
    container, docs/docker.md).
    """
    gold = LiveGold(warehouse, target, refresh_seconds)
    try:
        server = ThreadingHTTPServer((host, port), _handler(gold))
    except (OSError, OverflowError) as exc:
        gold.snapshot.close()
        reason = exc.strerror if isinstance(exc, OSError) else "ports go from 0 to 65535"
        raise PipelineError(f"cannot serve the dashboard on {host}:{port}: {reason}") from None
    server.daemon_threads = True
    return Dashboard(server, gold)


def serve_dashboard(
    warehouse: str | os.PathLike[str] | None = None,
    *,
    target: str | None = None,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    refresh_seconds: float = DEFAULT_REFRESH_SECONDS,
    announce: Callable[[str], None] = print,
) -> None:
    """Serve the dashboard until Ctrl-C; ``announce`` gets its URL once it listens."""
    dashboard = create_dashboard(
        warehouse, target=target, host=host, port=port, refresh_seconds=refresh_seconds
    )
    announce(dashboard.url)
    dashboard.serve_forever()
