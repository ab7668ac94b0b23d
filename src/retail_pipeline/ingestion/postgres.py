"""Customers and products from PostgreSQL tables ``customers`` and ``products``.

Each table has the contract's fields plus ``updated_at`` (``timestamptz``); the loader reads it
in ``(updated_at, key)`` order, a chunk per query, each query resuming after the last row it
gave (keyset pagination: no OFFSET, no long transaction). The key is compared in byte order
(``collate "C"``), the order the loader checks. A dropped connection (a restart, a failover) is
retried with backoff from the last row given, so a restart mid-extract loses and repeats
nothing.

Each row becomes the JSON record the contract checks, built from the column values: text as
JSON strings, ``numeric`` as its exact decimal text, timestamps as UTC ``...Z`` (a
``timestamp`` without time zone is read as UTC), booleans as ``true``/``false`` and NULL as
``null``. A value the contract rejects (a NULL email, a price with three decimals) dead-letters
its record with the table and key.

The window's end is the server's clock, held back to the start of the oldest transaction still
writing (when ``pg_stat_activity`` shows it: a superuser or ``pg_read_all_stats`` sees every
session): a row such a transaction stamps with its ``now()`` commits later but still lands in a
later window.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import orjson

from retail_pipeline.errors import InputError, PipelineError
from retail_pipeline.events.contract import REFERENCE_FIELDS, REFERENCE_KEYS
from retail_pipeline.ingestion.incremental import Change, Retry, Window, instant, micros

if TYPE_CHECKING:
    import psycopg

CHUNK = 5_000
"""Rows per query."""


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
    """Postgres's text of a timestamp (the session in UTC) in the contract's form; any other
    text (``infinity``, a BC date, a year past 9999) as it is, for the contract to refuse."""
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


_SECRETS = (
    (re.compile(r"(://[^:/@\s]*:)[^@\s]*@"), r"\1***@"),
    (re.compile(r"(password\s*=\s*)('[^']*'|\S+)", re.IGNORECASE), r"\1***"),
)


def _redacted(message: str) -> str:
    """A driver's message on one line, with any password in a DSN it quotes masked."""
    text = " ".join(message.split())
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return text


class PostgresSource:
    """A PostgreSQL database as a :class:`~retail_pipeline.ingestion.incremental.ChangeSource`."""

    kind = "postgres"

    def __init__(
        self,
        dsn: str,
        *,
        chunk: int = CHUNK,
        connect_timeout: int = 10,
        retry: Retry = Retry(),
    ):
        self._psycopg = _driver()
        try:
            info = self._psycopg.conninfo.conninfo_to_dict(dsn)
        except self._psycopg.ProgrammingError as exc:
            raise InputError(
                f"--postgres: not a PostgreSQL connection string ({_redacted(str(exc))})"
            ) from None
        self.dsn = dsn
        host = str(info.get("host") or "localhost")
        if host.startswith("/"):
            host = "localhost"
        port = info.get("port") or "5432"
        self.name = f"{host}:{port}/{info.get('dbname') or info.get('user') or 'postgres'}"
        self.chunk = chunk
        self.connect_timeout = connect_timeout
        self.retry = retry
        self._con: psycopg.Connection[Any] | None = None

    def describe(self, entity: str) -> str:
        return f"postgresql://{self.name}/{entity}"

    def close(self) -> None:
        if self._con is not None:
            self._con.close()
            self._con = None

    def clock(self) -> int:
        rows = self._query(
            "source",
            "select least(clock_timestamp(), (select min(xact_start) from pg_stat_activity"
            " where datname = current_database() and backend_type = 'client backend'"
            " and xact_start is not null and pid <> pg_backend_pid()))",
            {},
        )
        moment = _instant(rows[0][0])
        assert moment is not None, rows
        return moment

    def has_changes_since(self, entity: str, moment: int) -> bool:
        sql = f"select exists (select 1 from {entity} where updated_at >= %(moment)s)"
        return bool(self._query(entity, sql, {"moment": instant(moment)})[0][0])

    def read(self, entity: str, window: Window) -> Iterator[list[Change]]:
        key = REFERENCE_KEYS[entity]
        fields = [spec for spec in REFERENCE_FIELDS[entity]]
        columns = ", ".join(
            f"{spec.name}::text" if spec.kind in ("text", "country") else spec.name
            for spec in fields
        )
        names = [spec.name.encode() for spec in fields] + [b"updated_at"]
        timestamps = [spec.kind == "timestamp" for spec in fields] + [True]
        order = f"coalesce({key}::text, '') collate \"C\""
        base = f"select {columns}, updated_at from {entity} where updated_at < %(until)s"
        if window.since is not None:
            base += " and updated_at >= %(since)s"
        tail = f" order by updated_at, {order} limit %(limit)s"
        resume = f" and (updated_at, {order}) > (%(after_ts)s, %(after_key)s)"
        after = window.after
        index = [spec.name for spec in fields].index(key)
        while True:
            before = after
            params: dict[str, Any] = {"until": instant(window.until), "limit": self.chunk}
            if window.since is not None:
                params["since"] = instant(window.since)
            if after is not None:
                params |= {"after_ts": instant(after[0]), "after_key": after[1]}
            rows = self._query(entity, base + (resume if after else "") + tail, params)
            full = len(rows) == self.chunk
            if full:  # the chunk takes the whole group of its last (updated_at, key)
                group = f" and updated_at = %(group_ts)s and {order} = %(group_key)s"
                last = {"group_ts": rows[-1][-1], "group_key": rows[-1][index] or ""}
                rows = [row for row in rows if (row[-1], row[index] or "") != tuple(last.values())]
                rows += self._query(entity, base + group, params | last)
            changes, seen = [], set()
            for row in rows:
                values = [
                    _contract_timestamp(value) if stamped and isinstance(value, str) else value
                    for value, stamped in zip(row, timestamps, strict=True)
                ]
                raw = (
                    b"{"
                    + b",".join(
                        b'"%s":%s' % (name, _json_value(value))
                        for name, value in zip(names, values, strict=True)
                    )
                    + b"}"
                )
                updated, key_value = _instant(row[-1]), row[index]
                problem = None
                if updated is None:
                    problem = f"updated_at: {row[-1]} is not a time the contract can hold"
                elif not key_value:
                    problem = f"{key}: null or empty in the table"
                elif (updated, key_value) in seen:
                    problem = f"{key}: {key_value!r} twice with the same updated_at"
                    key_value = None
                else:
                    seen.add((updated, key_value))
                changes.append(Change(key_value or None, updated, raw, problem))
                if updated is not None:  # the resume point, as the query orders: key or ''
                    after = (updated, row[index] or "")
            if changes:
                yield changes
            if not full:
                return
            if after is None or after == before:
                raise InputError(
                    f"postgresql://{self.name}/{entity}: a whole chunk of rows without a"
                    " readable updated_at; give the column a default (now()) and real times"
                )

    def _connection(self) -> psycopg.Connection[Any]:
        if self._con is None or self._con.closed:
            con = self._psycopg.connect(
                self.dsn, autocommit=True, connect_timeout=self.connect_timeout
            )
            # Bounds and a timestamp without time zone compare in UTC, as the docs say; and
            # timestamps arrive as Postgres's text, so that a value Python cannot hold
            # (infinity, a BC date) dead-letters its row instead of failing the chunk.
            con.execute("set time zone 'UTC'")
            text = self._psycopg.types.string.TextLoader
            for name in ("timestamptz", "timestamp", "date"):
                con.adapters.register_loader(name, text)
            self._con = con
        return self._con

    def _query(self, entity: str, sql: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        """Rows of one statement; a lost connection is retried on a new one."""
        psycopg = self._psycopg
        where = f"postgresql://{self.name}" + (f"/{entity}" if entity != "source" else "")
        last = ""
        for attempt in range(1, self.retry.attempts + 1):
            try:
                with self._connection().cursor() as cur:
                    cur.execute(sql, params)
                    return list(cur.fetchall())
            except psycopg.errors.UndefinedTable:
                raise InputError(
                    f"{where}: no table {entity} (expected {entity} with"
                    f" {', '.join(s.name for s in REFERENCE_FIELDS[entity])}, updated_at)"
                ) from None
            except psycopg.errors.UndefinedColumn as exc:
                raise InputError(
                    f"{where}: {_redacted(str(exc).splitlines()[0])} (table {entity} needs"
                    f" {', '.join(s.name for s in REFERENCE_FIELDS[entity])}, updated_at)"
                ) from None
            except psycopg.OperationalError as exc:
                message = _redacted(str(exc)) or "lost"
                if "password authentication failed" in message or "does not exist" in message:
                    raise PipelineError(f"{where}: {message}") from None
                last = message
                self.close()
            except psycopg.Error as exc:
                raise PipelineError(f"{where}: {_redacted(str(exc))}") from None
            if attempt < self.retry.attempts:
                self.retry.pause(attempt)
        raise PipelineError(f"{where}: gave up after {self.retry.attempts} attempts: {last}")
