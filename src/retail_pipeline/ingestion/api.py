"""Customers and products from a paginated JSON HTTP API (docs/batch-sources.md has the shape).

``GET {url}/{entity}?updated_since=&updated_before=&limit=&cursor=`` answers
``{"data": [record, ...], "next_cursor": ...}`` with records in ascending
``(updated_at, key)`` order. A bearer token (``RETAIL_API_TOKEN``) goes in the
``Authorization`` header. A 5xx, a 429, a timeout, a dropped connection or a malformed page is
retried with exponential backoff (honouring ``Retry-After``); any other answer, or the last
failed attempt, is one error line naming the request. Only the standard library is used.
"""

from __future__ import annotations

import email.utils
import http.client
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import msgspec

from retail_pipeline.errors import InputError, PipelineError
from retail_pipeline.events.contract import REFERENCE_KEYS
from retail_pipeline.events.validator import repeated_key
from retail_pipeline.ingestion.incremental import Change, Retry, Window, micros, stamp

PAGE_SIZE = 500


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


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Redirects are answered, not followed: the token must not travel to another address."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


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
        retry: Retry = Retry(),
    ):
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InputError(f"--api {url!r}: expected an http:// or https:// URL")
        if parts.query or parts.fragment:
            raise InputError(f"--api {url!r}: give the API's base URL, without a query or fragment")
        if parts.username or parts.password:
            raise InputError(
                f"--api: put no credentials in the URL; set RETAIL_API_TOKEN instead"
                f" ({parts.scheme}://{parts.hostname}...)"
            )
        self.base = urllib.parse.urlunsplit(
            (parts.scheme, parts.netloc, parts.path.rstrip("/"), "", "")
        )
        self.token = token
        self.page_size = page_size
        self.timeout = timeout
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
            page = self._page(entity, query, page_number)
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

    @staticmethod
    def _change(entity: str, raw: msgspec.Raw) -> Change:
        text = bytes(raw)
        try:
            found = _STAMPS[entity].decode(text)
            repeated = repeated_key(text)
        except msgspec.DecodeError:
            return Change(None, None, text, "not a JSON object")
        except (RecursionError, ValueError):
            return Change(None, None, text, "nested too deeply, or not UTF-8")
        if repeated is not None:  # which of the two values orders it? neither, for the loader
            return Change(None, None, text, f"repeated key {repeated!r}: readers disagree")
        key_name = REFERENCE_KEYS[entity]
        key, given = getattr(found, key_name), getattr(found, "updated_at")  # noqa: B009
        updated_at = parse_updated_at(given)
        problem = None
        if updated_at is None:
            problem = f"updated_at: expected an ISO-8601 UTC timestamp, got {given!r}"
        if not isinstance(key, str) or not key:
            key, problem = None, f"{key_name}: expected a non-empty string, got {key!r}"
        return Change(key, updated_at, text, problem)

    def _page(self, entity: str, query: dict[str, str], number: int) -> _Page:
        url = f"{self.describe(entity)}?{urllib.parse.urlencode(query)}"
        last = ""
        for attempt in range(1, self.retry.attempts + 1):
            try:
                return _PAGE.decode(self._get(url))
            except (msgspec.DecodeError, RecursionError) as exc:
                last = f"page {number} is malformed ({str(exc) or 'nested too deeply'})"
                wait = None
            except _Retry as exc:
                last, wait = str(exc), exc.wait
            if attempt < self.retry.attempts:
                self.retry.pause(attempt, wait)
        raise PipelineError(f"{url}: gave up after {self.retry.attempts} attempts: {last}")

    def _get(self, url: str) -> bytes:
        request = urllib.request.Request(url, headers={"Accept": "application/json"})
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            with _OPENER.open(request, timeout=self.timeout) as response:
                return bytes(response.read())
        except urllib.error.HTTPError as exc:
            status = f"{exc.code} {exc.reason}"
            if 300 <= exc.code < 400:
                where = exc.headers.get("Location", "?")
                raise PipelineError(
                    f"{url}: {status}, redirected to {where}; give that address in --api (the"
                    " token is never sent on to another address)"
                ) from None
            if exc.code >= 500 or exc.code in (408, 429):
                raise _Retry(status, _retry_after(exc.headers.get("Retry-After"))) from None
            hint = {
                401: " (set RETAIL_API_TOKEN to the API's token)",
                403: " (the token may not read this)",
            }.get(exc.code, "")
            raise PipelineError(f"{url}: {status}{hint}") from None
        except http.client.HTTPException as exc:  # a body cut short, a bad status line
            raise _Retry(f"broken answer ({type(exc).__name__})") from None
        except TimeoutError:
            raise _Retry(f"no answer within {self.timeout:g} s") from None
        except (urllib.error.URLError, ConnectionError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise _Retry(f"cannot connect ({reason})") from None
