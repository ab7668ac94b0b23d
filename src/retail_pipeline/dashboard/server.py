"""The dashboard's local web server: a static page plus a JSON endpoint, on 127.0.0.1 by default.

``GET /`` is the page (HTML, CSS, JS and the vendored Vega-Lite, all served from the package:
nothing comes from a CDN); ``GET /api/data?date_from=&date_to=&category=&country=&
payment_method=&carrier=`` returns the figures for those filters, the filter options and how
fresh the snapshot is; ``GET /api/explain?question=&date=&product=&status=&segment=`` returns
``explain --json`` of one published figure (the drill-through). The page polls ``/api/data``,
so the numbers follow the warehouse while the loaders and ``transform`` run. ``GET /metrics``
is the Prometheus registry: Gold's freshness, Bronze's row counts as
``gold.pipeline_freshness`` reads them, the requests answered.
"""

from __future__ import annotations

import json
import mimetypes
import os
import re
import socket
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from retail_pipeline import metrics
from retail_pipeline.dashboard.data import MAX_FILTER_CHARS, Filters, Snapshot, take_snapshot
from retail_pipeline.errors import PipelineError, one_line, printable
from retail_pipeline.http_server import BoundedHTTPServer
from retail_pipeline.settings import layer_schema, settings
from retail_pipeline.transform.answers import status_of
from retail_pipeline.warehouse import open_warehouse, resolve_target

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8050
DEFAULT_REFRESH_SECONDS = 5.0
STATIC = resources.files("retail_pipeline.dashboard").joinpath("static")


class LiveGold:
    """The current :class:`Snapshot`, refreshed at most every ``refresh_seconds``.

    A refresh opens the warehouse read-only for a moment: it reads ``gold.build_info`` and
    ``gold.pipeline_freshness`` (Gold only: no Bronze privilege needed) and copies Gold again
    only when a new build has landed. A DuckDB file that has not changed since is not opened
    at all; one that a writer holds is not waited for: the previous snapshot stays, with a
    note saying so.
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
        self._rows_lock = threading.Lock()
        self._rows: dict[str, int] = {}
        self._rows_signature: tuple[int, ...] | None = None
        self._rows_checked = -refresh_seconds

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

    def bronze_rows(self) -> dict[str, int]:
        """Rows per Bronze table as ``gold.pipeline_freshness`` counts them now (Gold alone),
        read at most every ``refresh_seconds`` and only when the DuckDB file changed; the last
        values stay when the warehouse cannot be read (a writer holds it)."""
        with self._rows_lock:
            signature = self._file_signature()
            fresh = signature is not None and signature == self._rows_signature
            if fresh or time.monotonic() - self._rows_checked < self.refresh_seconds:
                return self._rows
            self._rows_checked = time.monotonic()
            try:
                gold = layer_schema("gold")
                with open_warehouse(self.warehouse, target=self.target, read_only=True) as wh:
                    if "pipeline_freshness" not in wh.tables(gold):
                        return self._rows
                    rows = wh.query(
                        f"select bronze_table, bronze_rows from {gold}.pipeline_freshness"
                    )
            except PipelineError:
                return self._rows
            self._rows = {str(table): int(count) for table, count in rows}
            self._rows_signature = signature
            return self._rows

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


CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
    " connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none';"
    " frame-ancestors 'none'"
)
"""Only the page's own files run or load; Vega evaluates its expressions with the CSP-safe
interpreter (``ast: true`` in dashboard.js), so no ``'unsafe-eval'``."""
SECURITY_HEADERS = (
    ("Content-Security-Policy", CONTENT_SECURITY_POLICY),
    ("X-Frame-Options", "DENY"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("Cross-Origin-Resource-Policy", "same-origin"),
    ("Cross-Origin-Opener-Policy", "same-origin"),
)
"""Sent with every response, errors included."""
ALLOWED_METHODS = ("GET", "HEAD")
MAX_REQUEST_LINE = 4096
"""Bytes of ``GET /path?query HTTP/1.1`` accepted (414 beyond)."""
MAX_QUERY = 2048
"""Characters of the query string accepted (414 beyond): six short filters need far less."""
MAX_HEADER_BYTES = 16_384
"""Bytes of request headers accepted (431 beyond)."""
REQUEST_TIMEOUT_SECONDS = 10.0
"""A client that sends or reads nothing for this long is disconnected (a slow client cannot
hold a thread)."""
LINGER_SECONDS = 1.0
LINGER_BYTES = 1 << 20
MAX_CONNECTIONS = 32
"""Requests served at once; one more is answered 503 at once instead of queued."""
_STATIC_PATH = re.compile(r"/(?:[A-Za-z0-9_-][A-Za-z0-9._-]*/)*[A-Za-z0-9_-][A-Za-z0-9._-]*")
_CONTROL = re.compile(r"[\x00-\x20\x7f-\U0010ffff]")
"""What a request target may not hold raw (RFC 3986: printable ASCII, the rest %-encoded)."""


class RequestRefused(Exception):
    """A request answered with a JSON 4xx (never a traceback)."""

    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status


def allowed_hosts(host: str, port: int, extra: Sequence[str] = ()) -> frozenset[str]:
    """The ``Host`` header values the server answers (lowercase): 127.0.0.1, localhost and
    the address it is bound to, with its port, plus ``extra`` (e.g. a name behind a proxy).

    Any other name is refused (421): a page of another site that rebinds its DNS name to
    127.0.0.1 sends its own name, so it cannot read the dashboard (DNS rebinding)."""
    names = {"127.0.0.1", "localhost", "[::1]"}
    if host not in ("", "0.0.0.0", "::"):
        names.add(f"[{host}]" if ":" in host else host)
    hosts = {f"{name}:{port}" for name in names}
    if port == 80:
        hosts |= names
    return frozenset({*hosts, *(name.lower() for name in extra)})


def _handler(gold: LiveGold) -> type[BaseHTTPRequestHandler]:
    explaining = threading.BoundedSemaphore(EXPLAIN_AT_ONCE)

    class Handler(BaseHTTPRequestHandler):
        server_version = "retail-pipeline-dashboard"
        protocol_version = "HTTP/1.0"
        timeout = REQUEST_TIMEOUT_SECONDS

        def version_string(self) -> str:
            return self.server_version

        def handle_one_request(self) -> None:
            """One request: anything unexpected is a JSON 4xx/5xx, never a traceback."""
            self.close_connection = True  # one request per connection (HTTP/1.0)
            try:
                self.raw_requestline = self.rfile.readline(MAX_REQUEST_LINE + 1)
                if not self.raw_requestline:
                    return
                if len(self.raw_requestline) > MAX_REQUEST_LINE:
                    self.requestline = self.request_version = self.command = ""
                    self.send_error(HTTPStatus.REQUEST_URI_TOO_LONG)
                elif self.parse_request():
                    self._respond()
                self.wfile.flush()
                self._linger()
            except OSError:  # timed out, reset or gone: nobody left to answer
                pass

        def _linger(self) -> None:
            """Close gently: say we are done, then discard what the client still sends (a
            refused request may be left unread, and closing on unread bytes would reset the
            connection and lose the answer), for at most a moment and a few KiB."""
            self.connection.shutdown(socket.SHUT_WR)
            self.connection.settimeout(LINGER_SECONDS)
            deadline = time.monotonic() + LINGER_SECONDS
            drained = 0
            while drained < LINGER_BYTES and time.monotonic() < deadline:
                chunk = self.connection.recv(65536)
                if not chunk:
                    break
                drained += len(chunk)

        def _respond(self) -> None:
            try:
                if self.command not in ALLOWED_METHODS:
                    raise RequestRefused(
                        HTTPStatus.METHOD_NOT_ALLOWED,
                        f"only {' and '.join(ALLOWED_METHODS)} are served",
                    )
                if sum(len(k) + len(v) for k, v in self.headers.items()) > MAX_HEADER_BYTES:
                    raise RequestRefused(
                        HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE,
                        f"request headers over {MAX_HEADER_BYTES} bytes",
                    )
                self._check_host()
                self._route()
            except RequestRefused as refused:
                self._send_json({"error": one_line(str(refused))}, refused.status)
            except PipelineError as exc:
                self._send_json({"error": one_line(str(exc))}, HTTPStatus.BAD_REQUEST)
            except OSError:
                raise
            except Exception as exc:  # a bug: one line on stderr and a JSON 500, no traceback
                line = one_line(f"{type(exc).__name__}: {exc}")
                print(f"dashboard: error answering {self.command}: {line}", file=sys.stderr)
                self._send_json(
                    {"error": "internal error (see the dashboard's log)"},
                    HTTPStatus.INTERNAL_SERVER_ERROR,
                )

        def _check_host(self) -> None:
            given = self.headers.get_all("Host") or []
            if len(given) != 1:
                raise RequestRefused(HTTPStatus.BAD_REQUEST, "exactly one Host header is needed")
            allowed: frozenset[str] = getattr(self.server, "allowed", frozenset())
            if given[0].strip().lower() not in allowed:
                raise RequestRefused(
                    HTTPStatus.MISDIRECTED_REQUEST,
                    "this dashboard answers only the host names it is bound to"
                    " (open it as http://127.0.0.1:<port>/ or http://localhost:<port>/)",
                )

        def _route(self) -> None:
            target = self.path
            if not target.startswith("/") or _CONTROL.search(target):
                raise RequestRefused(HTTPStatus.BAD_REQUEST, "not a usable request target")
            path, _, query = target.partition("?")
            if "?" in query or "#" in query:
                raise RequestRefused(HTTPStatus.BAD_REQUEST, "a second '?' in the request target")
            if len(query) > MAX_QUERY:
                raise RequestRefused(
                    HTTPStatus.REQUEST_URI_TOO_LONG, f"query over {MAX_QUERY} characters"
                )
            if path == "/metrics":
                if query:
                    raise RequestRefused(HTTPStatus.BAD_REQUEST, "/metrics takes no query")
                self._send_metrics()
                return
            if path == "/api/data":
                filters = Filters.parse(_parameters(query))
                self._send_json(payload(gold.snapshot, filters), cache="no-store")
                return
            if path == "/api/explain":
                params = _parameters(query, EXPLAIN_PARAMETERS)
                self._send_json(explanation(gold, params, explaining))
                return
            if path.startswith("/api/"):
                raise RequestRefused(HTTPStatus.NOT_FOUND, "no such API endpoint")
            if query:
                raise RequestRefused(HTTPStatus.BAD_REQUEST, "static files take no query")
            self._send_static("/index.html" if path == "/" else path)

        def _send_metrics(self) -> None:
            """The Prometheus registry, with Gold's freshness and Bronze's row counts."""
            status = gold.snapshot.status
            behind = status.events_since + status.reference_rows_since
            metrics.set_gold(
                status.built_at,
                behind if status.freshness_known and status.built_at else None,
                gold.bronze_rows(),
            )
            body, kind = metrics.exposition()
            self._send(body, kind)

        def _send_static(self, path: str) -> None:
            resource = STATIC
            if _STATIC_PATH.fullmatch(path):
                for part in path.lstrip("/").split("/"):
                    resource = resource.joinpath(part)
            if resource is STATIC or not resource.is_file():
                raise RequestRefused(HTTPStatus.NOT_FOUND, "no such file")
            body = resource.read_bytes()
            kind = mimetypes.guess_type(path)[0] or "application/octet-stream"
            if kind.startswith("text/") or kind.endswith("javascript"):
                kind += "; charset=utf-8"
            self._send(body, kind, cache="no-cache")

        def _send_json(
            self, data: object, status: HTTPStatus = HTTPStatus.OK, cache: str = "no-store"
        ) -> None:
            body = json.dumps(data).encode()
            self._send(body, "application/json; charset=utf-8", status, cache)

        def _send(
            self,
            body: bytes,
            kind: str,
            status: HTTPStatus = HTTPStatus.OK,
            cache: str = "no-store",
        ) -> None:
            metrics.count_request("dashboard", status)
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", cache)
            if status == HTTPStatus.METHOD_NOT_ALLOWED:
                self.send_header("Allow", ", ".join(ALLOWED_METHODS))
            if status >= 400:
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def send_error(
            self, code: int, message: str | None = None, explain: str | None = None
        ) -> None:
            """The standard library's own refusals (bad request line, too many headers, an
            unsupported HTTP version), as JSON like every other answer."""
            status = HTTPStatus(code)
            text = one_line(message or status.phrase)
            self._send_json({"error": text}, status)

        def send_response(self, code: int, message: str | None = None) -> None:
            """Always with a status line and headers (never a bare HTTP/0.9 answer)."""
            if self.request_version not in ("HTTP/1.0", "HTTP/1.1"):
                self.request_version = "HTTP/1.0"
            super().send_response(code, message)

        def end_headers(self) -> None:
            for name, value in SECURITY_HEADERS:
                self.send_header(name, value)
            super().end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: the terminal shows the URL, not every request."""

    return Handler


EXPLAIN_PARAMETERS = ("question", "date", "product", "status", "segment")
"""What ``/api/explain`` takes: ``explain``'s question and its options (docs/dashboard.md)."""
EXPLAIN_LIMIT = 200
"""Contributions a drill-through lists (counted, and as many left out); the sums cover all."""
EXPLAIN_AT_ONCE = 2
"""Drill-throughs answered at once: each reads the live warehouse (seconds on a large one), so
a burst of them is answered 503 instead of taking every core and holding the file."""


def explanation(
    gold: LiveGold, params: dict[str, str], slots: threading.Semaphore
) -> dict[str, Any]:
    """``explain --json`` for the published figure a drill-through asks about: read from the
    warehouse for a moment (Silver, Gold and Bronze), like a refresh; at most as many at once
    as ``slots`` allows (a 503 beyond)."""
    from retail_pipeline.transform.explain import ExplainError, explain

    unknown = sorted(set(params) - set(EXPLAIN_PARAMETERS))
    if unknown:
        raise RequestRefused(
            HTTPStatus.BAD_REQUEST,
            f"/api/explain takes {', '.join(EXPLAIN_PARAMETERS)};"
            f" not {printable(unknown[0][:40])!r}",
        )
    if any(len(value) > MAX_FILTER_CHARS for value in params.values()):
        raise RequestRefused(HTTPStatus.BAD_REQUEST, f"a value over {MAX_FILTER_CHARS} characters")
    if not slots.acquire(blocking=False):
        raise RequestRefused(
            HTTPStatus.SERVICE_UNAVAILABLE,
            f"{EXPLAIN_AT_ONCE} drill-throughs are being answered; try again in a moment",
        )
    try:
        result = explain(
            params.get("question", ""),
            gold.warehouse,
            target=gold.target,
            day=params.get("date") or None,
            product=params.get("product") or None,
            status=params.get("status") or None,
            segment=params.get("segment") or None,
            limit=EXPLAIN_LIMIT,
        )
    except ExplainError as exc:
        raise RequestRefused(HTTPStatus.BAD_REQUEST, one_line(str(exc))) from None
    except PipelineError as exc:
        raise RequestRefused(
            HTTPStatus.SERVICE_UNAVAILABLE, f"cannot explain now: {one_line(str(exc))}"
        ) from None
    finally:
        slots.release()
    return result.as_json()


def _parameters(query: str, names: Sequence[str] | None = None) -> dict[str, str]:
    """Query parameters, each at most once, strictly UTF-8 (anything else is an error); at
    most as many as ``names`` (default: the filters)."""
    most = len(names) if names is not None else len(fields(Filters))
    try:
        pairs = parse_qsl(
            query,
            keep_blank_values=True,
            encoding="utf-8",
            errors="strict",
            max_num_fields=most,
        )
    except ValueError:  # too many fields, or %-escapes that are not UTF-8
        raise RequestRefused(
            HTTPStatus.BAD_REQUEST,
            f"the query takes at most {most} parameters, percent-encoded UTF-8",
        ) from None
    params: dict[str, str] = {}
    for name, value in pairs:
        if name in params:
            raise RequestRefused(
                HTTPStatus.BAD_REQUEST, f"filter {printable(name[:40])!r} is given twice"
            )
        params[name] = value
    return params


class _Server(BoundedHTTPServer):
    """At most :data:`MAX_CONNECTIONS` at once, answering only the Host names in ``allowed``."""

    allowed: frozenset[str] = frozenset()


@dataclass
class Dashboard:
    """A running dashboard server."""

    server: ThreadingHTTPServer
    gold: LiveGold

    @property
    def hosts(self) -> frozenset[str]:
        """The ``Host`` values it answers."""
        allowed: frozenset[str] = getattr(self.server, "allowed", frozenset())
        return allowed

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
    extra_hosts: Sequence[str] = (),
) -> Dashboard:
    """Take the first snapshot of Gold and bind the server on ``host``:``port`` (port 0: any).

    ``host`` is 127.0.0.1 unless the page must be reached from elsewhere (``0.0.0.0`` in a
    container, docs/docker.md). The server answers only requests whose ``Host`` is
    127.0.0.1, localhost or ``host``, with the port, or one of ``extra_hosts``
    (``name:port``; docs/dashboard.md, "Security").
    """
    gold = LiveGold(warehouse, target, refresh_seconds)
    try:
        server = _Server((host, port), _handler(gold), max_connections=MAX_CONNECTIONS)
    except (OSError, OverflowError) as exc:
        gold.snapshot.close()
        reason = exc.strerror if isinstance(exc, OSError) else "ports go from 0 to 65535"
        raise PipelineError(f"cannot serve the dashboard on {host}:{port}: {reason}") from None
    server.allowed = allowed_hosts(host, int(server.server_address[1]), extra_hosts)
    return Dashboard(server, gold)


def serve_dashboard(
    warehouse: str | os.PathLike[str] | None = None,
    *,
    target: str | None = None,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    refresh_seconds: float = DEFAULT_REFRESH_SECONDS,
    announce: Callable[[str], None] = print,
    extra_hosts: Sequence[str] = (),
) -> None:
    """Serve the dashboard until Ctrl-C; ``announce`` gets its URL once it listens."""
    dashboard = create_dashboard(
        warehouse,
        target=target,
        host=host,
        port=port,
        refresh_seconds=refresh_seconds,
        extra_hosts=extra_hosts,
    )
    announce(dashboard.url)
    dashboard.serve_forever()
