"""Customers and products from PostgreSQL tables ``customers`` and ``products``.

Each table has the contract's fields plus ``updated_at`` (``timestamptz``); the loader reads it
in ``(updated_at, key)`` order, a chunk at a time, each chunk resuming after the last row of the
one before (keyset pagination: no OFFSET, no transaction held across chunks). The key is
compared in byte order (``collate "C"``), the order the loader checks. A dropped connection (a
restart, a failover) is retried with backoff from the last row given, so a restart mid-extract
loses and repeats nothing.

Memory is bounded by the chunk, never by the table: a chunk is at most ``chunk`` rows and about
``chunk_bytes`` bytes. Each chunk is one short read-only transaction: a first query reads only
the keys and each row's size (``octet_length`` of its columns as text, computed by the server),
the second fetches the rows that fit through a server-side cursor, ``fetch`` rows at a time. A
row over ``RETAIL_MAX_RECORD_BYTES`` is never transferred: its key and ``updated_at`` are, and it
is dead-lettered with its size.

Each row becomes the JSON record the contract checks, built from the column values: text as
JSON strings, ``numeric`` as its exact decimal text, timestamps as UTC ``...Z`` (a
``timestamp`` without time zone is read as UTC), booleans as ``true``/``false`` and NULL as
``null``. A value the contract rejects (a NULL email, a price with three decimals) dead-letters
its record with the table and key. A row whose ``updated_at`` has no place in any window
(``infinity``, ``-infinity``, a BC date, a year after 9999) is dead-lettered by the run whose
window closes next, once per content (:meth:`PostgresSource.read_outside`).

Time is bounded: every session runs with ``statement_timeout`` and ``lock_timeout`` (and
``idle_in_transaction_session_timeout``) at the deadline (``RETAIL_SOURCE_TIMEOUT``), with
TCP keepalives, and a call's retries stop at the deadline. Only errors that can clear are
retried (a lost connection, a server starting or shutting down, a serialization failure, too
many connections); a bad password, a missing database or table, a TLS failure or a bad DSN is
one line at once. Sessions set ``DateStyle`` ISO and ``TimeZone`` UTC, whatever the database's
defaults.

The window's end is the server's clock, held back to the start of the oldest transaction still
writing (when ``pg_stat_activity`` shows it: a superuser or ``pg_read_all_stats`` sees every
session): a row such a transaction stamps with its ``now()`` commits later but still lands in a
later window.
"""

from __future__ import annotations

import functools
import math
import re
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TypeVar

import orjson

from retail_pipeline.errors import InputError, PipelineError, one_line
from retail_pipeline.events.contract import REFERENCE_FIELDS, REFERENCE_KEYS
from retail_pipeline.ingestion.incremental import (
    Change,
    Retry,
    Window,
    instant,
    micros,
    oversized,
)
from retail_pipeline.settings import settings

if TYPE_CHECKING:
    import psycopg

CHUNK = 5_000
"""Rows per chunk, at most."""
CHUNK_BYTES = 32 << 20
"""Bytes of row text per chunk, about (a chunk always takes one whole row group)."""
FETCH = 500
"""Rows per round trip of the server-side cursor."""
_FIRST = datetime(1, 1, 1, tzinfo=UTC)
_END = "'10000-01-01 00:00:00+00'::timestamptz"
"""The first instant after the contract's years (Python's datetime cannot hold it)."""
_SIZE_NAME = "_retail_row_bytes"
_T = TypeVar("_T")


def _first(row: tuple[Any, ...] | None) -> Any:
    """The first value of a one-row answer."""
    if row is None:
        raise PipelineError("PostgreSQL answered a one-row query with no row")
    return row[0]


def _primary(exc: Exception) -> str:
    """A driver error's own message, without the statement text the server quotes."""
    diag = getattr(exc, "diag", None)
    primary = getattr(diag, "message_primary", None) if diag is not None else None
    return str(primary or exc)


def _driver() -> Any:
    try:
        import psycopg
    except ImportError:
        raise PipelineError(
            "the Postgres source needs psycopg: pip install 'retail-pipeline[postgres]'"
        ) from None
    return psycopg


def _json_value(value: Any) -> bytes:
    """One column value as JSON text, exactly (money never passes through a float)."""
    if value is None:
        return b"null"
    if isinstance(value, bool):
        return b"true" if value else b"false"
    if isinstance(value, Decimal):
        if not value.is_finite():
            return orjson.dumps(str(value))  # "NaN": the contract names it
        return format(value, "f").encode()
    if isinstance(value, datetime):
        moment = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        return orjson.dumps(moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"))
    if isinstance(value, date):
        return orjson.dumps(value.isoformat())
    if isinstance(value, float) and not math.isfinite(value):
        return orjson.dumps(str(value))  # "nan": the contract names it, not a null
    if isinstance(value, int | float | str):
        return orjson.dumps(value)
    return orjson.dumps(str(value))


_PG_TIMESTAMP = re.compile(
    r"([0-9]{4}-[0-9]{2}-[0-9]{2}) ([0-9]{2}:[0-9]{2}:[0-9]{2})(\.[0-9]{1,6})?(\+00)?"
)


def _contract_timestamp(text: str) -> str:
    """Postgres's text of a timestamp (the session in UTC, DateStyle ISO) in the contract's
    form; any other text (``infinity``, a BC date, a year past 9999) as it is, for the contract
    to refuse."""
    found = _PG_TIMESTAMP.fullmatch(text)
    if not found:
        return text
    day, time_of_day, fraction, _ = found.groups()
    return f"{day}T{time_of_day}{(fraction or '.').ljust(7, '0')}Z"


def _instant(text: str | None) -> int | None:
    """The instant of an ``updated_at`` as Postgres wrote it; None for one the contract's
    timestamps cannot hold (``-infinity``, BC)."""
    if text is None:
        return None
    converted = _contract_timestamp(text)
    if converted is text:
        return None
    return micros(datetime.fromisoformat(converted))


_URI_PASSWORD = re.compile(r"^[a-z][a-z0-9+.-]*://[^\s:/@]*:(\S*)@", re.IGNORECASE)


def _secrets(dsn: str, info: dict[str, Any] | None) -> list[str]:
    """Every form in which the DSN's password may come back in a driver's message: as
    written in a URI, percent-decoded, and as libpq read it; longest first."""
    found: set[str] = set()
    uri = _URI_PASSWORD.match(dsn)
    if uri:
        found |= {uri.group(1), urllib.parse.unquote(uri.group(1))}
    if info and info.get("password"):
        found.add(str(info["password"]))
    return sorted((s for s in found if s), key=len, reverse=True)


_TRANSIENT_STATES = {"57P01", "57P02", "57P03", "55P03", "57014"}
"""Admin/crash shutdown, cannot connect now, lock timeout, statement timeout (those two only
fire at the deadline, which then ends the retries)."""
_TRANSIENT_CLASSES = {"08", "40", "53"}
"""Connection exceptions, serialization failure/deadlock, insufficient resources."""
_PERMANENT_WORDS = (
    "authentication",
    "password",
    "does not exist",
    "ssl",
    "certificate",
    "pg_hba.conf",
    "invalid",
    "resolve host",
    "translate host",
    "role",
    "permission",
)


def transient(exc: Exception) -> bool:
    """Whether a driver error may clear if the statement is tried again."""
    state = getattr(exc, "sqlstate", None)
    if state:
        return state in _TRANSIENT_STATES or state[:2] in _TRANSIENT_CLASSES
    psycopg = _driver()
    if not isinstance(exc, psycopg.OperationalError):
        return False
    text = str(exc).lower()
    if "temporary failure" in text:  # in name resolution
        return True
    return not any(word in text for word in _PERMANENT_WORDS)


@dataclass(frozen=True)
class _Columns:
    """The SQL of one entity's table: its fields, key and sizes."""

    entity: str

    @property
    def fields(self) -> list[Any]:
        return list(REFERENCE_FIELDS[self.entity])

    @property
    def key(self) -> str:
        return REFERENCE_KEYS[self.entity]

    @property
    def order_key(self) -> str:
        return f"coalesce({self.key}::text, '') collate \"C\""

    @property
    def size(self) -> str:
        """The row's size: its fields as text, in bytes (the server computes it)."""
        return " + ".join(f"coalesce(octet_length({s.name}::text), 0)" for s in self.fields)

    def values(self, cap: int) -> str:
        """The fields (NULL when the row is over ``cap`` bytes), then updated_at, key, size."""
        columns = [
            f"case when {_SIZE_NAME} <= {int(cap)} then {s.name}"
            + ("::text" if s.kind in ("text", "country") else "")
            + " end"
            for s in self.fields
        ]
        return ", ".join([*columns, "updated_at::text", self.order_key, _SIZE_NAME])


class PostgresSource:
    """A PostgreSQL database as a :class:`~retail_pipeline.ingestion.incremental.ChangeSource`."""

    kind = "postgres"

    def __init__(
        self,
        dsn: str,
        *,
        chunk: int = CHUNK,
        chunk_bytes: int = CHUNK_BYTES,
        fetch: int = FETCH,
        connect_timeout: int = 10,
        deadline: float | None = None,
        record_bytes: int | None = None,
        retry: Retry = Retry(),
    ):
        """``deadline``: seconds for one statement or chunk, retries included (default
        ``RETAIL_SOURCE_TIMEOUT``); ``record_bytes``: the largest row read (default
        ``RETAIL_MAX_RECORD_BYTES``)."""
        self._psycopg = _driver()
        self._secrets = _secrets(dsn, None)
        try:
            info = self._psycopg.conninfo.conninfo_to_dict(dsn)
        except self._psycopg.ProgrammingError as exc:
            # libpq quotes the text around the fault, which may be the password: quote none
            reason = re.sub(r'"[^"]*"', "", str(exc)).strip().rstrip(":")
            raise InputError(
                f"--postgres: not a PostgreSQL connection string ({self._say(reason)}; in a"
                " postgresql:// URI a password holding %, @, :, / or a space must be"
                " percent-encoded, e.g. % as %25; or leave it to PGPASSWORD)"
            ) from None
        self._secrets = _secrets(dsn, info)
        host = str(info.get("host") or "localhost")
        port = str(info.get("port") or "5432")
        dbname = str(info.get("dbname") or info.get("user") or "postgres")
        if "@" in host or "@" in dbname or not all(p.isdigit() for p in port.split(",")):
            raise InputError(
                "--postgres: the DSN's host, port or database is not readable (in a"
                " postgresql:// URI, percent-encode '@', '/' and ':' in a user or password,"
                " e.g. @ as %40; or leave the password to PGPASSWORD)"
            )
        if host.startswith("/"):
            host = "localhost"
        self.dsn = dsn
        self.name = self._say(f"{host}:{port}/{dbname}")
        if deadline is None or record_bytes is None:
            config = settings()
            deadline = config.source_timeout if deadline is None else deadline
            record_bytes = config.max_record_bytes if record_bytes is None else record_bytes
        self.deadline = deadline
        self.record_bytes = record_bytes
        self.chunk, self.chunk_bytes, self.fetch = chunk, chunk_bytes, fetch
        self.connect_timeout = connect_timeout
        self.retry = retry
        self._con: psycopg.Connection[Any] | None = None
        self._end = 0.0
        """When the call in progress must end (monotonic)."""

    def _say(self, text: str) -> str:
        """Text for a message: the DSN's password masked in any form, on one line."""
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return one_line(text, 500)

    def describe(self, entity: str) -> str:
        return f"postgresql://{self.name}/{entity}"

    def close(self) -> None:
        if self._con is not None:
            self._con.close()
            self._con = None

    def clock(self) -> int:
        sql = (
            "select least(clock_timestamp(), (select min(xact_start) from pg_stat_activity"
            " where datname = current_database() and backend_type = 'client backend'"
            " and xact_start is not null and pid <> pg_backend_pid()))::text"
        )
        text = self._attempts("source", lambda con: _first(con.execute(sql).fetchone()))
        moment = _instant(text)
        if moment is None:
            raise PipelineError(
                f"postgresql://{self.name}: the server's clock reads {self._say(str(text))!r},"
                " not a time this loader can use"
            )
        return moment

    def has_changes_since(self, entity: str, moment: int) -> bool:
        sql = (
            f"select exists (select 1 from {entity} where updated_at >= %(moment)s"
            f" and updated_at < {_END})"
        )
        params = {"moment": instant(moment)}
        return bool(self._attempts(entity, lambda con: _first(con.execute(sql, params).fetchone())))

    def read(self, entity: str, window: Window) -> Iterator[list[Change]]:
        columns = _Columns(entity)
        where = "updated_at >= %(since)s and updated_at < %(until)s"
        params: dict[str, Any] = {
            "since": _FIRST if window.since is None else instant(window.since),
            "until": instant(window.until),
        }
        resume = None
        if window.after is not None:
            resume = (instant(window.after[0]), window.after[1])
        order = ("updated_at", columns.order_key)
        for rows in self._chunks(columns, where, params, order, resume):
            changes: list[Change] = []
            seen: set[tuple[int, str]] = set()
            for row in rows:
                change = self._change(columns, row)
                place = change.place
                if place is not None:
                    if place in seen:
                        problem = f"{columns.key}: {change.key!r} twice with the same updated_at"
                        change = Change(None, change.updated_at, change.raw, problem)
                    else:
                        seen.add(place)
                changes.append(change)
            if changes:
                yield changes

    def read_outside(self, entity: str) -> Iterator[list[Change]]:
        """The rows no window can hold: ``updated_at`` before year 1 or from year 10000 on
        (``-infinity``, BC, ``infinity``), in key order, each with its problem."""
        columns = _Columns(entity)
        where = f"not (updated_at >= %(first)s and updated_at < {_END})"
        order = (columns.order_key, "updated_at")
        for rows in self._chunks(columns, where, {"first": _FIRST}, order, None):
            changes = []
            for row in rows:
                change = self._change(columns, row)
                if change.problem is None or change.problem.startswith("updated_at"):
                    change = Change(
                        change.key,
                        None,
                        change.raw,
                        f"updated_at: {row[-3]} is outside the years 1-9999 the contract"
                        " holds, so no window can place it; set a real time (e.g. now())"
                        " in the source to load the row",
                    )
                changes.append(change)
            yield changes

    def _change(self, columns: _Columns, row: tuple[Any, ...]) -> Change:
        """One fetched row (fields, updated_at text, key text, size) as a change."""
        *values, stamped, key_text, size = row
        updated = _instant(stamped)
        key_value = key_text or None
        kinds = [spec.kind == "timestamp" for spec in columns.fields]
        problem = None
        if updated is None:
            problem = f"updated_at: {stamped} is not a time the contract can hold"
        elif not key_value:
            problem = f"{columns.key}: null or empty in the table"
        if size > self.record_bytes:
            stub = orjson.dumps({columns.key: key_value, "updated_at": stamped})
            return oversized(Change(key_value, updated, stub, problem), self.record_bytes, size)
        names = [spec.name.encode() for spec in columns.fields] + [b"updated_at"]
        values = [
            _contract_timestamp(value) if stamp and isinstance(value, str) else value
            for value, stamp in zip(values, kinds, strict=True)
        ]
        values.append(_contract_timestamp(stamped) if isinstance(stamped, str) else stamped)
        raw = (
            b"{"
            + b",".join(
                b'"%s":%s' % (name, _json_value(value))
                for name, value in zip(names, values, strict=True)
            )
            + b"}"
        )
        return Change(key_value, updated, raw, problem)

    def _chunks(
        self,
        columns: _Columns,
        where: str,
        params: dict[str, Any],
        order: tuple[str, str],
        resume: tuple[Any, Any] | None,
    ) -> Iterator[list[tuple[Any, ...]]]:
        """The rows matching ``where`` in ``order``, after ``resume``, a chunk at a time: each
        chunk read whole in one short transaction, bounded in rows and bytes, never splitting
        rows that share both order values."""
        ordered = f"{order[0]}, {order[1]}"
        while True:
            after = f" and ({ordered}) > (%(r0)s, %(r1)s)" if resume is not None else ""
            given = params | ({"r0": resume[0], "r1": resume[1]} if resume else {})
            sizes = (
                f"select updated_at::text, {columns.order_key}, {columns.size} from"
                f" {columns.entity} where {where}{after} order by {ordered} limit {int(self.chunk)}"
            )
            rows_sql = (
                f"select {columns.values(self.record_bytes)} from (select *, {columns.size} as"
                f" {_SIZE_NAME} from {columns.entity} where {where}{after}"
                f" and ({ordered}) <= (%(l0)s, %(l1)s)) as chunk order by {ordered}"
            )

            by_time = order[0] == "updated_at"
            read = functools.partial(
                self._chunk, sizes=sizes, rows=rows_sql, given=given, by_time=by_time
            )
            rows, more, bound = self._attempts(columns.entity, read)
            if rows:
                yield rows
            if not more:
                return
            resume = bound

    def _chunk(
        self,
        con: psycopg.Connection[Any],
        *,
        sizes: str,
        rows: str,
        given: dict[str, Any],
        by_time: bool,
    ) -> tuple[list[tuple[Any, ...]], bool, tuple[Any, Any] | None]:
        """One chunk in one read-only transaction: the sizes, then the rows that fit through a
        server-side cursor; with whether rows follow and the last row's order values."""
        with con.transaction():
            con.execute("set transaction isolation level repeatable read, read only")
            # this attempt's share of the deadline; a lock wait ends first, so it is named
            left = max(2, round((self._end - time.monotonic()) * 1000))
            con.execute(
                "select set_config('statement_timeout', %(s)s, true),"
                " set_config('lock_timeout', %(l)s, true)",
                {"s": str(left), "l": str(max(1, left - 250))},
            )
            heads = con.execute(sizes, given).fetchall()
            if not heads:
                return [], False, None
            cut, more = self._cut(heads)
            last = heads[cut - 1]
            bound = (last[0], last[1]) if by_time else (last[1], last[0])
            with con.cursor(name="retail_chunk") as cursor:
                cursor.itersize = self.fetch
                cursor.execute(rows, given | {"l0": bound[0], "l1": bound[1]})
                fetched = list(cursor)
        return fetched, more, bound

    def _cut(self, heads: list[tuple[Any, ...]]) -> tuple[int, bool]:
        """How many of ``heads`` (updated_at, key, size) the chunk takes, and whether rows
        follow: within ``chunk_bytes`` (a row over the record limit costs nothing, it is not
        fetched), at least one, and every row that shares the last one's order values."""
        total = cut = 0
        for *_, size in heads:
            cost = size if size <= self.record_bytes else 0
            if cut and total + cost > self.chunk_bytes:
                break
            total += cost
            cut += 1
        while cut < len(heads) and heads[cut][:2] == heads[cut - 1][:2]:
            cut += 1
        return cut, cut < len(heads) or len(heads) == self.chunk

    def _connection(self, end: float) -> psycopg.Connection[Any]:
        if self._con is None or self._con.closed:
            left = max(1.0, end - time.monotonic())
            con = self._psycopg.connect(
                self.dsn,
                autocommit=True,
                connect_timeout=max(2, math.ceil(min(self.connect_timeout, left))),
                keepalives=1,
                keepalives_idle=10,
                keepalives_interval=5,
                keepalives_count=3,
                application_name="retail-pipeline",
            )
            # Bounds and a timestamp without time zone compare in UTC, as the docs say; and
            # timestamps arrive as Postgres's ISO text (whatever the database's DateStyle), so
            # that a value Python cannot hold (infinity, a BC date) dead-letters its row.
            milliseconds = str(max(1, round(self.deadline * 1000)))
            con.execute(
                "select set_config('DateStyle', 'ISO, MDY', false),"
                " set_config('TimeZone', 'UTC', false),"
                " set_config('IntervalStyle', 'postgres', false),"
                " set_config('statement_timeout', %(ms)s, false),"
                " set_config('lock_timeout', %(ms)s, false),"
                " set_config('idle_in_transaction_session_timeout', %(ms)s, false)",
                {"ms": milliseconds},
            )
            text = self._psycopg.types.string.TextLoader
            for name in ("timestamptz", "timestamp", "date"):
                con.adapters.register_loader(name, text)
            self._con = con
        return self._con

    def _attempts(self, entity: str, work: Callable[[psycopg.Connection[Any]], _T]) -> _T:
        """``work`` on the connection; what can clear is retried on a new one, within the
        deadline."""
        psycopg = self._psycopg
        where = f"postgresql://{self.name}" + (f"/{entity}" if entity != "source" else "")
        end = self._end = time.monotonic() + self.deadline
        last = ""
        attempt = 0
        while True:
            attempt += 1
            try:
                return work(self._connection(end))
            except psycopg.errors.UndefinedTable:
                raise InputError(
                    f"{where}: no table {entity} (expected {entity} with"
                    f" {', '.join(s.name for s in REFERENCE_FIELDS[entity])}, updated_at)"
                ) from None
            except psycopg.errors.UndefinedColumn as exc:
                raise InputError(
                    f"{where}: {self._say(str(exc).splitlines()[0])} (table {entity} needs"
                    f" {', '.join(s.name for s in REFERENCE_FIELDS[entity])}, updated_at)"
                ) from None
            except psycopg.Error as exc:
                self.close()
                if not transient(exc):
                    raise PipelineError(f"{where}: {self._say(_primary(exc))}") from None
                last = self._say(_primary(exc)) or "connection lost"
            self.retry.after_failure(
                attempt, last, where=where, end=end, deadline=self.deadline, missing="no answer"
            )
