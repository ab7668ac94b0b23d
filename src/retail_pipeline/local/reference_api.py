"""The reference HTTP API of customers and products (docs/batch-sources.md), to run locally
(``retail-pipeline api-server``) and in tests.

``GET /{customers|products}?updated_since=&updated_before=&limit=&cursor=`` pages through the
records ordered by ``(updated_at, key)`` with a keyset cursor, so a record that changes during a
paginated read moves behind the cursor without making any other record skip or repeat;
``PUT /{entity}/{key}`` upserts a record and stamps its ``updated_at``; ``GET /health`` answers
without a token. With a token, every other request needs ``Authorization: Bearer <token>``;
without one, reads are open (on loopback only: :func:`serve_reference_api` refuses another
address without a token) and writes are refused (403): a write always needs the token.

Safe for a hostile client: the log of requests (:attr:`ReferenceApi.requests`) is bounded and
holds no query string nor body; the request line, headers and body are capped, read within a
deadline, and refused with a JSON 4xx when they break a rule; connections at once are capped
(503 beyond). Nothing a client sends reaches stderr as a traceback.

Records are kept as the JSON text they came in, field by field (names and values verbatim,
in their order, a repeated name as often as it came), never re-encoded: money stays the decimal
text it was given (``0.10``, ``1E+2``), and a record the contract would reject (``"price":
"abc"``, a repeated field) is served as it is, as a real source system would, for the loader to
dead-letter. Only the key field (from the URL) and ``updated_at`` are the server's.

:class:`Faults` injects failures into data pages (error statuses, delays, cut-off bodies) for
the tests of the client.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import http.client
import ipaddress
import re
import socket
import tempfile
import threading
import time
from bisect import bisect_left, bisect_right, insort
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, NamedTuple
from urllib.parse import SplitResult, parse_qs, parse_qsl, unquote, urlsplit

import msgspec
import orjson

from retail_pipeline import metrics
from retail_pipeline.errors import InputError, PipelineError
from retail_pipeline.events.contract import REFERENCE_KEYS
from retail_pipeline.http_server import BoundedHTTPServer

DEFAULT_PORT = 8765
DEFAULT_PAGE_LIMIT = 500
MAX_PAGE_LIMIT = 1000
MAX_BODY_BYTES = 1 << 20
MAX_REQUEST_LINE = 8 << 10
MAX_HEADER_BYTES = 32 << 10
"""The request line, and all header lines together: beyond, 414 and 431."""
REQUEST_DEADLINE = 30.0
"""Seconds a client has to send its whole request (line, headers, body): a slow one is cut off."""
MAX_CONNECTIONS = 64
"""Connections served at once; beyond, a 503 at once."""
REQUEST_LOG = 10_000
"""Requests :attr:`ReferenceApi.requests` keeps (the latest)."""
_LOGGED_PATH = 200  # characters of a path kept in the request log
_LOGGED_NAMES = 8  # query parameter names kept in the request log...
_LOGGED_NAME = 40  # ...and characters of each
SIMULATION: dict[str, int] = {"days": 7, "orders_per_day": 500, "seed": 42}
"""What ``retail-pipeline api-server`` serves without files: the reference data of
``retail-pipeline generate`` with its defaults (data/sim/), so the events of that simulation
find their customers and products."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_TIMESTAMP = re.compile(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d{1,6}))?Z", re.ASCII)
_LIMIT = re.compile(r"[0-9]{1,7}", re.ASCII)
_PARAMETERS = ("updated_since", "updated_before", "limit", "cursor")
_OBJECT_DECODER = msgspec.json.Decoder(dict[str, msgspec.Raw])
_TOKENS = re.compile(rb'"(?:[^"\\]|\\.)*"|[{}\[\],:]')
_ENCODER = msgspec.json.Encoder(decimal_format="number")
_RECORD_DECODER = msgspec.json.Decoder(dict[str, Any], float_hook=Decimal)


def parse_timestamp(text: str) -> int:
    """Microseconds since the epoch of ``2026-01-15T10:00:00.123456Z`` (UTC, ``Z``, 0-6
    fraction digits); :class:`ValueError` for anything else."""
    match = _TIMESTAMP.fullmatch(text)
    if match is None:
        raise ValueError(f"{text!r} is not a UTC time such as 2026-01-15T10:00:00.123456Z")
    year, month, day, hour, minute, second, fraction = match.groups()
    try:
        moment = datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second), tzinfo=UTC
        )
    except ValueError as exc:
        raise ValueError(f"{text!r}: {exc}") from None
    return (moment - _EPOCH) // _MICROSECOND + int((fraction or "").ljust(6, "0"))


def format_timestamp(micros: int) -> str:
    """``2026-01-15T10:00:00.123456Z`` for microseconds since the epoch."""
    return (_EPOCH + micros * _MICROSECOND).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _micros(moment: datetime) -> int:
    if moment.tzinfo is None:
        raise ValueError(f"updated_at must be timezone-aware, got {moment!r}")
    return (moment - _EPOCH) // _MICROSECOND


def encode_cursor(updated_at: int, key: str) -> str:
    """The opaque cursor after the record ``(updated_at, key)``: URL-safe base64 of JSON."""
    text = orjson.dumps([format_timestamp(updated_at), key])
    return base64.urlsafe_b64encode(text).rstrip(b"=").decode("ascii")


def decode_cursor(cursor: str) -> tuple[int, str]:
    """The ``(updated_at, key)`` an :func:`encode_cursor` cursor holds; ValueError otherwise."""
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        updated_at, key = orjson.loads(text)
        if isinstance(updated_at, str) and isinstance(key, str):
            return parse_timestamp(updated_at), key
    except (binascii.Error, orjson.JSONDecodeError, TypeError, ValueError, UnicodeError):
        pass
    raise ValueError(f"{cursor!r} is not a next_cursor this server gave")


class ServedRequest(NamedTuple):
    """One request the server received: its method, its path (the first 200 characters) and
    the names of its first 8 query parameters. No value of the query (a cursor, a token someone
    put there) and no body is kept."""

    method: str
    path: str
    parameters: frozenset[str]


@dataclass
class _Fault:
    kind: Literal["fail", "delay", "malform"]
    remaining: int
    skip: int
    status: int = HTTPStatus.INTERNAL_SERVER_ERROR
    seconds: float = 0.0
    retry_after: float | None = None


class Faults:
    """Failures injected into the next data pages (``GET /customers``, ``GET /products``).

    Each call arms one fault for the next ``n`` data requests, after letting ``skip`` data
    requests through first (so a fault can land mid-way through a paginated read). Faults armed
    together apply one at a time, in the order they were armed. ``/health`` and ``PUT`` are
    never faulted. Thread-safe.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._armed: list[_Fault] = []

    def fail(
        self,
        n: int = 1,
        status: int = HTTPStatus.INTERNAL_SERVER_ERROR,
        *,
        skip: int = 0,
        retry_after: float | None = None,
    ) -> None:
        """The next ``n`` data requests answer ``status`` (400-599) with a JSON error body,
        and a ``Retry-After`` header when ``retry_after`` (seconds) is given."""
        if not 400 <= status <= 599:
            raise ValueError(f"status must be an HTTP error status (400-599), got {status}")
        self._arm(_Fault("fail", n, skip, status=int(status), retry_after=retry_after))

    def delay(self, n: int, seconds: float, *, skip: int = 0) -> None:
        """The next ``n`` data requests wait ``seconds`` before they are answered."""
        if seconds < 0:
            raise ValueError(f"seconds must not be negative, got {seconds}")
        self._arm(_Fault("delay", n, skip, seconds=seconds))

    def malform(self, n: int = 1, *, skip: int = 0) -> None:
        """The next ``n`` data responses are cut in half: status 200, not valid JSON."""
        self._arm(_Fault("malform", n, skip))

    def clear(self) -> None:
        """Disarm every fault."""
        with self._lock:
            self._armed.clear()

    @property
    def pending(self) -> int:
        """How many data requests are still to be faulted."""
        with self._lock:
            return sum(fault.remaining for fault in self._armed)

    def _arm(self, fault: _Fault) -> None:
        if fault.remaining < 1 or fault.skip < 0:
            raise ValueError(f"n must be at least 1 and skip not negative: {fault}")
        with self._lock:
            self._armed.append(fault)

    def take(self) -> _Fault | None:
        """The fault for the data request being served now, if any (counts it as used)."""
        chosen: _Fault | None = None
        with self._lock:
            for fault in self._armed:
                if fault.skip:
                    fault.skip -= 1
                elif chosen is None:
                    chosen = fault
                    fault.remaining -= 1
            self._armed = [fault for fault in self._armed if fault.remaining]
        return chosen


class _BadRequest(Exception):
    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class _Stored:
    updated_at: int
    key: str
    body: bytes
    """The record as served: its fields' JSON text and ``updated_at``."""


@dataclass
class _Table:
    key_field: str
    by_key: dict[str, _Stored] = field(default_factory=dict)
    order: list[tuple[int, str]] = field(default_factory=list)
    """``(updated_at, key)`` of every record, sorted: the order pages follow."""

    def put(self, record: _Stored) -> None:
        old = self.by_key.get(record.key)
        if old is not None:
            del self.order[bisect_left(self.order, (old.updated_at, old.key))]
        self.by_key[record.key] = record
        insort(self.order, (record.updated_at, record.key))


@dataclass(frozen=True)
class _Page:
    since: int | None
    before: int | None
    after: tuple[int, str] | None
    limit: int


class ReferenceApi:
    """The reference API on ``host:port`` (0: any free port), with the records in memory.

    ``token``, when given (and not empty), is required as ``Authorization: Bearer <token>`` on
    every request but ``/health``; without it, ``PUT`` is refused (403). The socket is bound at
    once (:attr:`url` is known); serve in a daemon thread with :meth:`start` (or ``with
    ReferenceApi() as api:``), or in the calling thread with :meth:`serve_forever`.
    :attr:`requests` holds the latest ``request_log`` requests received, and :attr:`faults`
    injects failures.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        token: str | None = None,
        page_limit_max: int = MAX_PAGE_LIMIT,
        request_log: int = REQUEST_LOG,
    ) -> None:
        if page_limit_max < 1:
            raise ValueError(f"page_limit_max must be at least 1, got {page_limit_max}")
        self.token = token or None
        self.page_limit_max = page_limit_max
        self.default_limit = min(DEFAULT_PAGE_LIMIT, page_limit_max)
        self.faults = Faults()
        self._log: deque[ServedRequest] = deque(maxlen=request_log)
        self._lock = threading.Lock()
        self._tables = {entity: _Table(key) for entity, key in REFERENCE_KEYS.items()}
        self._last_stamp = 0
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._serving = False
        try:
            self._server = BoundedHTTPServer(
                (host, port), _handler(self), max_connections=MAX_CONNECTIONS
            )
        except (OSError, OverflowError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "ports go from 0 to 65535"
            raise PipelineError(f"cannot serve the API on {host}:{port}: {reason}") from None

    @property
    def requests(self) -> list[ServedRequest]:
        """The latest requests received (at most ``request_log``), oldest first: a copy."""
        with self._lock:
            return list(self._log)

    @property
    def url(self) -> str:
        """The base URL, e.g. ``http://127.0.0.1:8765`` (no trailing slash)."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> ReferenceApi:
        """Serve in a daemon thread until :meth:`stop`; returns ``self``."""
        if self._thread is None:
            self._serving = True
            self._thread = threading.Thread(
                target=self._server.serve_forever,
                kwargs={"poll_interval": 0.05},
                name=f"reference-api-{self.url}",
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket; requests waiting on a delay fault end at once."""
        self._stopping.set()
        if self._serving:
            self._server.shutdown()
            self._serving = False
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self._server.server_close()

    def serve_forever(self) -> None:
        """Serve in this thread until interrupted (Ctrl-C) or :meth:`stop` from another."""
        self._serving = True
        try:
            self._server.serve_forever(poll_interval=0.2)
        finally:
            self._stopping.set()
            self._server.server_close()

    def __enter__(self) -> ReferenceApi:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # --- data --------------------------------------------------------------------------------

    def upsert(
        self,
        entity: str,
        record: Mapping[str, Any] | bytes,
        *,
        updated_at: datetime | None = None,
    ) -> str:
        """Insert or replace a record (a mapping, or a JSON object's bytes, kept verbatim) by
        its key field; returns the ``updated_at`` it was stamped with: ``updated_at`` when
        given (ties are allowed), else now, later than every stamp before."""
        table = self._table(entity)
        raw = record if isinstance(record, bytes) else _ENCODER.encode(dict(record))
        fields = _members(raw)
        key = _key_of(fields, table.key_field)
        if key is None:
            raise ValueError(f"{entity} record without a string {table.key_field}: {record!r}")
        return format_timestamp(self._put(entity, key, fields, updated_at).updated_at)

    def load_snapshot(self, entity: str, path: Path) -> int:
        """Upsert every record of a snapshot file (a JSON array or NDJSON, as ``retail-pipeline
        generate`` writes), each stamped now; returns how many. A file that cannot be read, or a
        record that is not an object with a string key, is an :class:`InputError` naming the
        file, and then nothing is stored."""
        from retail_pipeline.ingestion.batch import read_snapshot

        table = self._table(entity)
        snapshot = read_snapshot(entity, path)
        parsed: list[tuple[str, list[_Member]]] = []
        for number, line, raw in snapshot.records:
            where = f"{path}:{line}" if line is not None else f"{path}: record {number}"
            try:
                fields = _members(raw)
            except ValueError as exc:
                raise InputError(f"{where}: {exc}") from None
            key = _key_of(fields, table.key_field)
            if key is None:
                raise InputError(f"{where}: no {table.key_field} string, cannot be served")
            parsed.append((key, fields))
        for key, fields in parsed:
            self._put(entity, key, fields, None)
        return len(parsed)

    def records(self, entity: str) -> list[dict[str, Any]]:
        """The current records in ``(updated_at, key)`` order, as served (numbers with a
        fraction or exponent as :class:`~decimal.Decimal`)."""
        table = self._table(entity)
        with self._lock:
            bodies = [table.by_key[key].body for _, key in table.order]
        return [_RECORD_DECODER.decode(body) for body in bodies]

    def _table(self, entity: str) -> _Table:
        table = self._tables.get(entity)
        if table is None:
            raise ValueError(f"unknown entity {entity!r}; expected customers or products")
        return table

    def _put(
        self, entity: str, key: str, fields: list[_Member], updated_at: datetime | None
    ) -> _Stored:
        """Store the record with ``key`` and a new ``updated_at``, every other field verbatim."""
        table = self._tables[entity]
        explicit = None if updated_at is None else _micros(updated_at)
        key_json = orjson.dumps(key)
        members: list[bytes] = []
        for name, name_json, value in fields:
            if name == table.key_field and value != key_json:
                value = key_json
            if name != "updated_at":
                members.append(name_json + b":" + value)
        if not any(name == table.key_field for name, _, _ in fields):
            members.insert(0, orjson.dumps(table.key_field) + b":" + key_json)
        with self._lock:
            if explicit is None:
                stamp = max(time.time_ns() // 1000, self._last_stamp + 1)
            else:
                stamp = explicit
            self._last_stamp = max(self._last_stamp, stamp)
            stamped = b'"updated_at":' + orjson.dumps(format_timestamp(stamp))
            stored = _Stored(stamp, key, b"{" + b",".join([*members, stamped]) + b"}")
            table.put(stored)
        return stored

    def _page(self, entity: str, page: _Page) -> bytes:
        table = self._tables[entity]
        with self._lock:
            order = table.order
            start = 0 if page.since is None else bisect_left(order, (page.since, ""))
            if page.after is not None:
                start = max(start, bisect_right(order, page.after))
            stop = len(order) if page.before is None else bisect_left(order, (page.before, ""))
            end = max(start, min(start + page.limit, stop))
            bodies = [table.by_key[key].body for _, key in order[start:end]]
            cursor = encode_cursor(*order[end - 1]) if start < end < stop else None
        return b'{"data":[' + b",".join(bodies) + b'],"next_cursor":' + orjson.dumps(cursor) + b"}"

    def _parse_page(self, query: str) -> _Page:
        try:
            params = parse_qs(query, keep_blank_values=True, strict_parsing=bool(query))
        except ValueError:
            raise _BadRequest(HTTPStatus.BAD_REQUEST, f"bad query string {query!r}") from None
        for name, values in params.items():
            if name not in _PARAMETERS:
                expected = ", ".join(_PARAMETERS)
                raise _BadRequest(
                    HTTPStatus.BAD_REQUEST, f"unknown parameter {name!r}; expected {expected}"
                )
            if len(values) > 1:
                raise _BadRequest(HTTPStatus.BAD_REQUEST, f"{name} given {len(values)} times")
        value = {name: values[0] for name, values in params.items()}
        try:
            since, before = (
                None if name not in value else parse_timestamp(value[name])
                for name in ("updated_since", "updated_before")
            )
        except ValueError as exc:
            raise _BadRequest(
                HTTPStatus.BAD_REQUEST, f"updated_since/updated_before: {exc}"
            ) from None
        limit = self.default_limit
        if "limit" in value:
            text = value["limit"]
            if not _LIMIT.fullmatch(text) or not 1 <= int(text) <= self.page_limit_max:
                raise _BadRequest(
                    HTTPStatus.BAD_REQUEST,
                    f"limit: {text!r} is not a whole number from 1 to {self.page_limit_max}",
                )
            limit = int(text)
        try:
            after = decode_cursor(value["cursor"]) if "cursor" in value else None
        except ValueError as exc:
            raise _BadRequest(HTTPStatus.BAD_REQUEST, f"cursor: {exc}") from None
        return _Page(since, before, after, limit)

    def _authorized(self, header: str | None, *, write: bool = False) -> bool:
        if self.token is None:
            return not write
        scheme, _, credentials = (header or "").strip().partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            credentials.strip().encode(), self.token.encode()
        )


_Member = tuple[str, bytes, bytes]
"""A field of a record: its name, and the exact JSON text of its name and of its value."""


def _members(raw: bytes) -> list[_Member]:
    """The fields of a JSON object in order, a repeated name as often as it appears, each
    value as its exact text; ValueError if ``raw`` is not a JSON object."""
    try:
        raw.decode("utf-8")
        _OBJECT_DECODER.decode(raw)  # a JSON object, well-formed: the scan below can trust it
    except UnicodeDecodeError:
        raise ValueError("not valid UTF-8") from None
    except msgspec.DecodeError as exc:
        raise ValueError(f"not a JSON object ({exc})") from None
    members: list[_Member] = []
    depth, name, value_start = 0, b"", 0
    for token in _TOKENS.finditer(raw):
        char = raw[token.start()]
        if char == 0x22:  # a string: at depth 1 and before the colon, a field name
            if depth == 1 and not value_start:
                name = token.group()
        elif char in b"{[":
            depth += 1
        elif depth == 1 and char == 0x3A and not value_start:  # the name's colon
            value_start = token.end()
        elif depth == 1 and char in b",}":  # the end of a field
            if value_start:
                value = raw[value_start : token.start()].strip()
                members.append((orjson.loads(name), name, value))
            name, value_start = b"", 0
            depth -= char == 0x7D
        elif char in b"]}":
            depth -= 1
    return members


def _key_of(fields: list[_Member], key_field: str) -> str | None:
    """The record's key (the last ``key_field``, as a JSON decoder reads it), if a string."""
    values = [value for name, _, value in fields if name == key_field]
    key = orjson.loads(values[-1]) if values and values[-1].startswith(b'"') else None
    return key if isinstance(key, str) and key else None


def _handler(api: ReferenceApi) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "retail-pipeline-reference-api"
        timeout = REQUEST_DEADLINE  # per socket operation; the deadline bounds the whole read
        rbufsize = 0  # unbuffered: every read is a recv under the request's deadline
        default_request_version = "HTTP/1.0"  # answer garbage with a status line and headers
        deadline = 0.0

        def handle_one_request(self) -> None:
            """One request, read within :data:`REQUEST_DEADLINE`; any failure a JSON answer
            (when a response can still be sent) and never a traceback."""
            self.deadline = time.monotonic() + REQUEST_DEADLINE
            self.close_connection = True  # HTTP/1.0: one request per connection
            self._sent = False
            try:
                self.raw_requestline = self._read_line(MAX_REQUEST_LINE + 1)
                if not self.raw_requestline:
                    return
                if len(self.raw_requestline) > MAX_REQUEST_LINE:
                    self.requestline = self.request_version = self.command = ""
                    self.send_error(HTTPStatus.REQUEST_URI_TOO_LONG, "request line too long")
                    return
                if not self.parse_request():
                    return  # the error was sent
                method = getattr(self, "do_" + self.command, None)
                if method is None:
                    self.send_error(HTTPStatus.METHOD_NOT_ALLOWED, "method not allowed")
                    return
                method()
                self.wfile.flush()
            except (OSError, TimeoutError):
                self.close_connection = True  # gone, or too slow: nothing more to say
            except Exception:
                if not self._sent:
                    self._error(HTTPStatus.INTERNAL_SERVER_ERROR, "the server failed")

        def parse_request(self) -> bool:
            """The standard parser, but the headers are read within the deadline and
            :data:`MAX_HEADER_BYTES` in all."""
            raw = self.rfile
            self.rfile = _HeadReader(self, MAX_HEADER_BYTES)  # type: ignore[assignment]
            try:
                return super().parse_request()
            finally:
                self.rfile = raw

        def _read_line(self, limit: int) -> bytes:
            """A line of at most ``limit`` bytes, read before the deadline (nothing after its
            end is consumed: the socket is peeked at first)."""
            line = bytearray()
            while len(line) < limit:
                ahead = self._recv(min(limit - len(line), 4096), socket.MSG_PEEK)
                if not ahead:
                    break
                end = ahead.find(b"\n")
                take = len(ahead) if end < 0 else end + 1
                while take:
                    chunk = self._recv(take)
                    if not chunk:
                        return bytes(line)
                    line += chunk
                    take -= len(chunk)
                if end >= 0:
                    break
            return bytes(line)

        def _recv(self, size: int, flags: int = 0) -> bytes:
            remaining = self.deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("the client is too slow")
            self.connection.settimeout(remaining)
            chunk: bytes = self.connection.recv(size, flags)
            return chunk

        def send_error(
            self, code: int, message: str | None = None, explain: str | None = None
        ) -> None:
            """Every error the standard parser finds (bad request line, header too long,
            unsupported version), as JSON."""
            self._error(code, message or HTTPStatus(code).phrase)

        def do_GET(self) -> None:
            url = self._record()
            if url is None:
                return
            if url.path == "/health":
                self._send(HTTPStatus.OK, b'{"status":"ok"}')
                return
            if url.path == "/metrics":  # requests answered, by status class (no auth: counts)
                body, kind = metrics.exposition()
                self._send(HTTPStatus.OK, body, kind=kind)
                return
            entity = url.path[1:]
            if entity not in REFERENCE_KEYS:
                self._not_found(url.path)
                return
            fault = api.faults.take()
            if fault is not None and fault.kind == "fail":
                message = f"injected fault: HTTP {fault.status}"
                headers = {}
                if fault.retry_after is not None:
                    headers["Retry-After"] = f"{fault.retry_after:g}"
                self._error(fault.status, message, headers)
                return
            if fault is not None and fault.kind == "delay" and api._stopping.wait(fault.seconds):
                return  # the server stops: drop the request
            status, body, headers = self._data_page(entity, url.query)
            if fault is not None and fault.kind == "malform":
                status, body = HTTPStatus.OK, body[: len(body) // 2]
            self._send(status, body, headers)

        def _data_page(self, entity: str, query: str) -> tuple[int, bytes, dict[str, str]]:
            if not api._authorized(self.headers.get("Authorization")):
                return _unauthorized()
            try:
                page = api._parse_page(query)
            except _BadRequest as exc:
                return exc.status, _error_body(str(exc)), {}
            return HTTPStatus.OK, api._page(entity, page), {}

        def do_PUT(self) -> None:
            url = self._record()
            if url is None:
                return
            parts = url.path[1:].split("/")
            body = self._read_body()
            if body is None:
                return
            if len(parts) != 2 or parts[0] not in REFERENCE_KEYS or not parts[1]:
                self._not_found(url.path, "PUT /customers/{key} or /products/{key}")
                return
            if api.token is None:
                self._error(
                    HTTPStatus.FORBIDDEN,
                    "writes need a bearer token (start the server with RETAIL_API_TOKEN set"
                    " and send Authorization: Bearer <token>)",
                )
                return
            if not api._authorized(self.headers.get("Authorization"), write=True):
                self._send(*_unauthorized())
                return
            entity = parts[0]
            try:
                key = unquote(parts[1], errors="strict")
                fields = _members(body)
            except UnicodeDecodeError:
                self._error(HTTPStatus.BAD_REQUEST, f"key {parts[1]!r}: not UTF-8 when decoded")
                return
            except ValueError as exc:
                self._error(HTTPStatus.BAD_REQUEST, f"body: {exc}")
                return
            self._send(HTTPStatus.OK, api._put(entity, key, fields, None).body)

        def do_POST(self) -> None:
            self._not_allowed()

        def do_DELETE(self) -> None:
            self._not_allowed()

        def do_PATCH(self) -> None:
            self._not_allowed()

        def do_HEAD(self) -> None:
            self._not_allowed()

        def do_OPTIONS(self) -> None:
            self._not_allowed()

        def _not_allowed(self) -> None:
            url = self._record()
            if url is None:
                return
            allowed = "PUT" if url.path.count("/") == 2 else "GET"
            self._error(
                HTTPStatus.METHOD_NOT_ALLOWED, f"{self.command} is not allowed", {"Allow": allowed}
            )

        def _record(self) -> SplitResult | None:
            """Log the request (method, path, parameter names); None, answered with a 400,
            when its target is not a URL."""
            try:
                url = urlsplit(self.path)
                pairs = parse_qsl(url.query, keep_blank_values=True, max_num_fields=None)
                names = frozenset(name[:_LOGGED_NAME] for name, _ in pairs[:_LOGGED_NAMES])
            except ValueError:
                url, names = None, frozenset()
            path = url.path if url is not None else "?"
            with api._lock:
                api._log.append(ServedRequest(self.command, path[:_LOGGED_PATH], names))
            if url is None:
                self._error(HTTPStatus.BAD_REQUEST, "the request target is not a URL path")
            return url

        def _read_body(self) -> bytes | None:
            """The request body (read before any answer, so the client sees that answer):
            a Content-Length up to :data:`MAX_BODY_BYTES`, no chunked encoding, within the
            deadline."""
            if self.headers.get("Transfer-Encoding") is not None:
                self._error(
                    HTTPStatus.LENGTH_REQUIRED,
                    "no Transfer-Encoding: send the body with a Content-Length",
                )
                return None
            length = self.headers.get_all("Content-Length") or []
            if len(length) != 1 or not re.fullmatch(r"[0-9]{1,12}", length[0].strip()):
                self._error(HTTPStatus.LENGTH_REQUIRED, "one Content-Length header is required")
                return None
            size = int(length[0])
            if size > MAX_BODY_BYTES:
                self._error(
                    HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"body over {MAX_BODY_BYTES} bytes"
                )
                return None
            body = bytearray()
            while len(body) < size:
                chunk = self._recv(min(size - len(body), 1 << 16))
                if not chunk:
                    return None  # the client went away mid-body
                body += chunk
            return bytes(body)

        def _not_found(
            self, path: str, expected: str = "/customers, /products, /health or /metrics"
        ) -> None:
            self._error(HTTPStatus.NOT_FOUND, f"no such resource {path!r}; expected {expected}")

        def _error(
            self, status: int, message: str, headers: Mapping[str, str] | None = None
        ) -> None:
            self._send(status, _error_body(message), headers)

        def _send(
            self,
            status: int,
            body: bytes,
            headers: Mapping[str, str] | None = None,
            *,
            kind: str = "application/json",
        ) -> None:
            self._sent = True
            metrics.count_request("api", status)
            self.connection.settimeout(REQUEST_DEADLINE)  # a reader that stalls is cut off
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-Content-Type-Options", "nosniff")
            self.send_header("Connection", "close")
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: tests and the terminal need no access log."""

    return Handler


class _HeadReader:
    """The socket's bytes as the header parser reads them (``readline``), under the request's
    deadline and a budget of bytes for all header lines together."""

    def __init__(self, handler: Any, budget: int) -> None:
        self._handler = handler
        self._budget = budget

    def readline(self, limit: int = -1) -> bytes:
        if self._budget <= 0:
            raise http.client.LineTooLong(f"headers over {MAX_HEADER_BYTES} bytes")
        size = self._budget if limit < 0 else min(limit, self._budget)
        line: bytes = self._handler._read_line(size)
        self._budget -= len(line)
        if self._budget <= 0 and not line.endswith(b"\n"):
            raise http.client.LineTooLong(f"headers over {MAX_HEADER_BYTES} bytes")
        return line


def _error_body(message: str) -> bytes:
    return orjson.dumps({"error": message})


def _unauthorized() -> tuple[int, bytes, dict[str, str]]:
    message = "missing or wrong bearer token (Authorization: Bearer <token>)"
    return HTTPStatus.UNAUTHORIZED, _error_body(message), {"WWW-Authenticate": "Bearer"}


def serve_reference_api(
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    *,
    customers: Path | None = None,
    products: Path | None = None,
    announce: Callable[[str, str], None] = lambda url, what: print(url, what),
) -> None:
    """Serve the reference API until Ctrl-C (:class:`KeyboardInterrupt` propagates).

    It serves the given snapshot files or, when neither is given, the reference data of
    :data:`SIMULATION`; the token is ``RETAIL_API_TOKEN``. ``announce`` gets the URL and a
    line saying what is served, once it listens.
    """
    from retail_pipeline.settings import settings

    secret = settings().api_token
    token = secret.get_secret_value() if secret else None
    if not token and not _loopback(host):
        raise PipelineError(
            f"api-server on {host} (not a loopback address) requires RETAIL_API_TOKEN to be set"
        )
    api = ReferenceApi(host, port, token=token)
    try:
        if customers is None and products is None:
            n_customers, n_products = _load_simulation(api)
            what = (
                f"{n_customers:,} customers and {n_products:,} products from the simulator,"
                " as 'retail-pipeline generate' writes them by default ({days} days,"
                " {orders_per_day} orders a day, seed {seed})".format(**SIMULATION)
            )
        else:
            served = [
                f"{api.load_snapshot(entity, path):,} {entity} from {path}"
                for entity, path in (("customers", customers), ("products", products))
                if path is not None
            ]
            what = " and ".join(served)
        if api.token is not None:
            what += "; bearer token required (RETAIL_API_TOKEN)"
        else:
            what += "; reads open, writes refused (set RETAIL_API_TOKEN to allow them)"
    except BaseException:
        api.stop()
        raise
    announce(api.url, what)
    api.serve_forever()


def _loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address (or ``localhost``)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _load_simulation(api: ReferenceApi) -> tuple[int, int]:
    from retail_pipeline.simulation import generate

    with tempfile.TemporaryDirectory(prefix="retail-api-") as folder:
        summary = generate(
            Path(folder),
            days=SIMULATION["days"],
            orders_per_day=SIMULATION["orders_per_day"],
            seed=SIMULATION["seed"],
        )
        return (
            api.load_snapshot("customers", summary.customers_path),
            api.load_snapshot("products", summary.products_path),
        )
