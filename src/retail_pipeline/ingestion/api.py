"""Customers and products from a paginated JSON HTTP API (docs/batch-sources.md has the shape).

``GET {url}/{entity}?updated_since=&updated_before=&limit=&cursor=`` answers
``{"data": [record, ...], "next_cursor": ...}`` with records in ascending
``(updated_at, key)`` order. A bearer token (``RETAIL_API_TOKEN``) goes in the
``Authorization`` header.

Every page is bounded: the connection and each read wait at most ``timeout`` seconds, and the
whole page (connect, answer, body) together with its retries at most ``deadline`` seconds
(``RETAIL_SOURCE_TIMEOUT``), enforced by closing the socket, so a server trickling bytes cannot
hold a load. The body is read in blocks up to ``page_bytes``: a longer page is asked again with
half the page size, down to one record, and a single record longer than the page limit is
refused in one line. A record longer than ``RETAIL_MAX_RECORD_BYTES`` is dead-lettered with its
size. Only what can clear is retried, with exponential backoff (honouring ``Retry-After``): a
5xx, 408, 429, a timeout, a dropped connection, and a malformed page once. A TLS failure, an
unknown host, a redirect, any other 4xx or a page malformed twice are one error line at once.
Only the standard library is used.
"""

from __future__ import annotations

import contextlib
import email.utils
import http.client
import re
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import msgspec

from retail_pipeline.errors import InputError, PipelineError, one_line, printable
from retail_pipeline.events.contract import REFERENCE_KEYS
from retail_pipeline.events.validator import repeated_key
from retail_pipeline.ingestion.incremental import (
    Change,
    Retry,
    Window,
    micros,
    oversized,
    stamp,
)
from retail_pipeline.settings import settings

PAGE_SIZE = 500
PAGE_BYTES = 32 << 20
"""The longest page read (at least twice the record limit): 32 MiB."""
_BLOCK = 1 << 20
_MALFORMED_ATTEMPTS = 2
"""A malformed page is asked for twice: a cut answer may clear, a malformed page does not."""


class _Page(msgspec.Struct):
    data: list[msgspec.Raw]
    next_cursor: str | None = None


_STAMPS = {
    entity: msgspec.json.Decoder(
        msgspec.defstruct(
            f"_{entity}_stamp",
            [(key, Any, None), ("updated_at", Any, None)],
        )
    )
    for entity, key in REFERENCE_KEYS.items()
}
_PAGE = msgspec.json.Decoder(_Page)


class _Retry(Exception):
    """A failed attempt worth another: why, and how long the server asked us to wait."""

    def __init__(self, reason: str, wait: float | None = None):
        super().__init__(reason)
        self.wait = wait


class _TooBig(Exception):
    """A page over the byte limit (``size``: what was declared or read before stopping)."""

    def __init__(self, size: int, declared: bool):
        super().__init__(size)
        self.size, self.declared = size, declared


_RFC3339 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?(Z|[+-][0-9]{2}:[0-9]{2})",
    re.IGNORECASE,
)
_LAST = micros(datetime(9999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC))


def parse_updated_at(value: Any) -> int | None:
    """The instant of a record's ``updated_at``, else None: an RFC 3339 timestamp with its
    offset (``Z`` or ``+02:00``) and at most microseconds, within years 1-9999 in UTC."""
    if not isinstance(value, str) or not _RFC3339.fullmatch(value):
        return None
    try:
        instant = micros(datetime.fromisoformat(value.upper()))
    except (ValueError, OverflowError):
        return None
    return instant if instant <= _LAST else None


def _retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (seconds or an HTTP date); None if unreadable."""
    text = (value or "").strip()
    if text.isascii() and text.isdigit():
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # "-0000" and zoneless dates: HTTP dates are GMT
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _outside(text: object, limit: int = 200) -> str:
    """Text a server sent (a reason, a header), safe to quote in a message."""
    return one_line(str(text), limit)


def _in_window(changes: list[Change], window: Window) -> tuple[list[Change], bool]:
    """A page's records in the window, and whether the window ended on this page.

    What an API that ignores a bound sends anyway: records before the window (read in an
    earlier one, or by the stopped run this one resumes) are dropped; records from the first one
    at or after the window's end on are later still, so they end the read. A page whose records
    are not in order is passed on whole, for the loader to refuse.
    """
    until = window.until
    cut = next(
        (i for i, c in enumerate(changes) if c.updated_at is not None and c.updated_at >= until),
        len(changes),
    )
    if any(c.updated_at is not None and c.updated_at < until for c in changes[cut:]):
        return changes, False

    def earlier(change: Change) -> bool:
        at, place = change.updated_at, change.place
        if at is None:
            return False
        after = window.after
        if after is not None and (place <= after if place else at < after[0]):
            return True
        return window.since is not None and at < window.since

    return [c for c in changes[:cut] if not earlier(c)], cut < len(changes)


class ApiSource:
    """The HTTP API as a :class:`~retail_pipeline.ingestion.incremental.ChangeSource`."""

    kind = "api"

    def __init__(
        self,
        url: str,
        token: str | None = None,
        *,
        page_size: int = PAGE_SIZE,
        timeout: float = 30.0,
        deadline: float | None = None,
        record_bytes: int | None = None,
        page_bytes: int | None = None,
        retry: Retry = Retry(),
    ):
        """``timeout``: seconds to connect and for each read; ``deadline``: seconds for a
        whole page, retries included (default ``RETAIL_SOURCE_TIMEOUT``); ``record_bytes``: the
        longest record loaded (default ``RETAIL_MAX_RECORD_BYTES``); ``page_bytes``: the
        longest page read (default 32 MiB, at least twice ``record_bytes``)."""
        parts = urllib.parse.urlsplit(url)
        shown = one_line(url, 200)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InputError(f"--api {shown!r}: expected an http:// or https:// URL")
        if parts.query or parts.fragment:
            raise InputError(
                f"--api {shown!r}: give the API's base URL, without a query or fragment"
            )
        if parts.username or parts.password:
            raise InputError(
                f"--api: put no credentials in the URL; set RETAIL_API_TOKEN instead"
                f" ({parts.scheme}://{one_line(parts.hostname, 100)}...)"
            )
        try:
            parts.port  # noqa: B018 (a port that is not a number raises here, not mid-load)
        except ValueError:
            raise InputError(f"--api {shown!r}: the port is not a number from 0 to 65535") from None
        if printable(url) != url or " " in url:
            raise InputError(f"--api {shown!r}: the URL holds spaces or control characters")
        self.base = urllib.parse.urlunsplit(
            (parts.scheme, parts.netloc, parts.path.rstrip("/"), "", "")
        )
        self.token = token
        self.page_size = page_size
        if deadline is None or record_bytes is None:
            config = settings()
            deadline = config.source_timeout if deadline is None else deadline
            record_bytes = config.max_record_bytes if record_bytes is None else record_bytes
        self.timeout = timeout
        self.deadline = deadline
        self.record_bytes = record_bytes
        self.page_bytes = page_bytes or max(PAGE_BYTES, 2 * self.record_bytes)
        self.retry = retry

    def describe(self, entity: str) -> str:
        return f"{self.base}/{entity}"

    def close(self) -> None:
        """Nothing to release: every request has its own connection."""

    def clock(self) -> int:
        """The loader's clock: the API's must agree within ``RETAIL_BATCH_LAG``."""
        return micros(datetime.now(UTC))

    def has_changes_since(self, entity: str, moment: int) -> bool:
        query = {"updated_since": stamp(moment), "limit": "1"}
        return bool(self._page(entity, query, 1).data)

    def read(self, entity: str, window: Window) -> Iterator[list[Change]]:
        after = window.after
        query: dict[str, str] = {
            "updated_before": stamp(window.until),
            "limit": str(self.page_size),
        }
        start = after[0] if after is not None else window.since
        if start is not None:
            query["updated_since"] = stamp(start)
        page_number = 0
        cursors: set[str] = set()
        while True:
            page_number += 1
            page = self._sized_page(entity, query, page_number)
            changes, ended = _in_window([self._change(entity, raw) for raw in page.data], window)
            if changes:
                yield changes
            if ended or not page.next_cursor:
                return
            if not page.data or page.next_cursor in cursors:
                raise InputError(
                    f"{self.describe(entity)}: page {page_number} names a next page"
                    f" ({'empty page' if not page.data else 'a cursor seen before'}); the API"
                    " would loop forever"
                )
            cursors.add(page.next_cursor)
            query["cursor"] = page.next_cursor

    def _sized_page(self, entity: str, query: dict[str, str], number: int) -> _Page:
        """A page under the byte limit: a longer one is asked again with half the page size
        (the smaller size stays for the rest of the read), down to one record."""
        while True:
            try:
                return self._page(entity, query, number)
            except _TooBig as exc:
                limit = int(query["limit"])
                if limit <= 1:
                    url = f"{self.describe(entity)}?{urllib.parse.urlencode(query)}"
                    said = "declares" if exc.declared else "is over"
                    raise InputError(
                        f"{url}: page {number} {said} {exc.size:,} bytes, over the"
                        f" {self.page_bytes:,}-byte page limit even with one record per page"
                        f" (a record over {self.record_bytes:,} bytes, RETAIL_MAX_RECORD_BYTES,"
                        " is not loaded; fix it at the source)"
                    ) from None
                query["limit"] = str(limit // 2)

    def _change(self, entity: str, raw: msgspec.Raw) -> Change:
        text = bytes(raw)
        try:
            found = _STAMPS[entity].decode(text)
            repeated = repeated_key(text)
        except msgspec.DecodeError:
            return self._capped(Change(None, None, text, "not a JSON object"))
        except (RecursionError, ValueError):
            return self._capped(Change(None, None, text, "nested too deeply, or not UTF-8"))
        if repeated is not None:  # which of the two values orders it? neither, for the loader
            reason = f"repeated key {_outside(repeated)!r}: readers disagree"
            return self._capped(Change(None, None, text, reason))
        key_name = REFERENCE_KEYS[entity]
        key, given = getattr(found, key_name), getattr(found, "updated_at")  # noqa: B009
        updated_at = parse_updated_at(given)
        problem = None
        if updated_at is None:
            problem = f"updated_at: expected an ISO-8601 UTC timestamp, got {_outside(repr(given))}"
        if not isinstance(key, str) or not key:
            key, problem = (
                None,
                f"{key_name}: expected a non-empty string, got {_outside(repr(key))}",
            )
        return self._capped(Change(key, updated_at, text, problem))

    def _capped(self, change: Change) -> Change:
        """A record over ``record_bytes`` is dead-lettered (its place kept for the order), with
        its first bytes as the payload."""
        if len(change.raw) <= self.record_bytes:
            return change
        return oversized(change, self.record_bytes)

    def _page(self, entity: str, query: dict[str, str], number: int) -> _Page:
        url = f"{self.describe(entity)}?{urllib.parse.urlencode(query)}"
        end = time.monotonic() + self.deadline
        last = ""
        malformed = 0
        attempt = 0
        while True:
            attempt += 1
            wait: float | None = None
            try:
                return _PAGE.decode(self._get(url, end))
            except (msgspec.DecodeError, RecursionError) as exc:
                malformed += 1
                last = f"page {number} is malformed ({_outside(exc) or 'nested too deeply'})"
                if malformed >= _MALFORMED_ATTEMPTS:
                    raise PipelineError(
                        f"{url}: {last}, {malformed} times; the API sends a page this loader"
                        " cannot read"
                    ) from None
            except _Retry as exc:
                last, wait = str(exc), exc.wait
            self.retry.after_failure(
                attempt,
                last,
                where=url,
                end=end,
                deadline=self.deadline,
                missing="no whole page",
                asked=wait,
            )

    def _get(self, url: str, end: float) -> bytes:
        """One attempt at ``url``'s body, by ``end`` (monotonic); outside text made safe."""
        parts = urllib.parse.urlsplit(url)
        left = end - time.monotonic()
        if left <= 0:
            raise _Retry("no time left")
        timeout = min(self.timeout, left)
        connection: http.client.HTTPConnection
        if parts.scheme == "https":
            connection = http.client.HTTPSConnection(
                parts.hostname or "", parts.port, timeout=timeout
            )
        else:
            connection = http.client.HTTPConnection(
                parts.hostname or "", parts.port, timeout=timeout
            )
        headers = {"Accept": "application/json", "Accept-Encoding": "identity"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        expired = threading.Event()
        sockets: list[socket.socket] = []
        watchdog = threading.Timer(left, _cut, (sockets, expired))
        watchdog.daemon = True
        watchdog.start()
        try:
            connection.connect()
            if connection.sock is not None:  # the response keeps it after the connection
                sockets.append(connection.sock)
            connection.request("GET", f"{parts.path}?{parts.query}", headers=headers)
            response = connection.getresponse()
            self._check_status(url, response)
            body = self._body(response)
            if expired.is_set():  # the cut socket looked like the body's end
                raise OSError("deadline")
            if response.length:
                raise _Retry(f"answer cut short ({response.length:,} bytes missing)")
            return body
        except ssl.SSLCertVerificationError as exc:
            raise PipelineError(
                f"{url}: TLS certificate not trusted ({_outside(exc.verify_message)})"
            ) from None
        except (ssl.SSLEOFError, ssl.SSLZeroReturnError):
            raise _Retry("connection closed during TLS") from None
        except ssl.SSLError as exc:
            raise PipelineError(f"{url}: TLS failed ({_outside(exc.reason or exc)})") from None
        except socket.gaierror as exc:
            if exc.errno == socket.EAI_AGAIN:
                raise _Retry(f"cannot resolve {parts.hostname} now") from None
            raise PipelineError(
                f"{url}: unknown host {one_line(parts.hostname or '', 100)!r}"
                f" ({_outside(exc.strerror)})"
            ) from None
        except (http.client.HTTPException, TimeoutError, OSError) as exc:
            if expired.is_set():
                raise _Retry("the answer was still arriving") from None
            if isinstance(exc, TimeoutError):
                raise _Retry(f"no answer within {timeout:g} s") from None
            if isinstance(exc, http.client.HTTPException):  # a body cut short, a bad status
                raise _Retry(f"broken answer ({type(exc).__name__})") from None
            raise _Retry(f"cannot connect ({_outside(exc.strerror or exc)})") from None
        finally:
            watchdog.cancel()
            connection.close()

    def _check_status(self, url: str, response: http.client.HTTPResponse) -> None:
        code = response.status
        if 200 <= code < 300:
            return
        status = f"{code} {_outside(response.reason, 100)}".rstrip()
        if 300 <= code < 400:
            where = _outside(response.getheader("Location", "?"))
            raise PipelineError(
                f"{url}: {status}, redirected to {where}; give that address in --api (the"
                " token is never sent on to another address)"
            )
        if code >= 500 or code in (408, 429):
            raise _Retry(status, _retry_after(response.getheader("Retry-After")))
        hint = {
            401: " (set RETAIL_API_TOKEN to the API's token)",
            403: " (the token may not read this)",
        }.get(code, "")
        raise PipelineError(f"{url}: {status}{hint}")

    def _body(self, response: http.client.HTTPResponse) -> bytes:
        """The body, read in blocks: over ``page_bytes`` is :class:`_TooBig`."""
        if response.length is not None and response.length > self.page_bytes:
            raise _TooBig(response.length, declared=True)
        blocks: list[bytes] = []
        size = 0
        while block := response.read(min(_BLOCK, self.page_bytes + 1 - size)):
            blocks.append(block)
            size += len(block)
            if size > self.page_bytes:
                raise _TooBig(size, declared=False)
        return b"".join(blocks)


def _cut(sockets: list[socket.socket], expired: threading.Event) -> None:
    """The deadline passed: end the connection, whatever it is waiting for."""
    expired.set()
    for sock in sockets:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
