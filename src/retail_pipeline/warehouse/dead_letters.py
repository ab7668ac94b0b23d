"""The dead letters of one load as the one-line errors a loader prints after its summary.

A loader's summary counts what it refused (``dead-lettered 21``); these lines say which message
and why, each naming where it came from: ``path/to/file.ndjson:12: event_timestamp: not a real
date and time: 2026-02-30T00:00:00Z``, ``orders/3/4711: currency: ...`` for Kafka,
``customers.json: record 12: ...`` for a snapshot, ``http://host/customers key c_7: ...`` for
the API and Postgres. At most
:data:`SHOWN` of them, in the order of the input, then how many more and where they all are
(``bronze.dead_letter``, by the load's id). The reasons quote outside text: the caller prints
them through :func:`retail_pipeline.errors.one_line` (control characters neutralised, length
bounded; here already, with the shorter bounds below), and the load id is bound, never part
of the SQL.
"""

from __future__ import annotations

from retail_pipeline.errors import one_line
from retail_pipeline.warehouse.base import Warehouse

SHOWN = 5
"""Dead letters listed after a load's summary; the rest are counted."""
REASON_CHARACTERS = 300
"""The longest reason shown (a reason may quote a long value; the table keeps it whole)."""
KEY_CHARACTERS = 80
"""The longest record key shown (an API or Postgres record's key is outside text)."""


def dead_letter_lines(warehouse: Warehouse, load_id: str, limit: int = SHOWN) -> list[str]:
    """Up to ``limit`` lines ``<where>: <reason>`` for the dead letters of ``load_id``, and one
    line for the rest; nothing when the load dead-lettered nothing."""
    if not load_id or limit < 1:
        return []
    rows = warehouse.query(
        "select _source_file, _source_line, _topic, _partition, _offset, _source_kind,"
        f" substr(_key, 1, {KEY_CHARACTERS + 1}),"
        f" substr(reason, 1, {REASON_CHARACTERS + 1})"
        f" from {warehouse.bronze}.dead_letter where _load_id = ?"
        " order by _source_file, _source_line, _topic, _partition, _offset"
        f" limit {int(limit)}",
        [load_id],
    )
    lines = []
    for file, line, topic, partition, offset, kind, key, reason in rows:
        if topic is not None:
            where = f"{topic}/{partition}/{offset}"
        elif kind in ("api", "postgres"):  # the source (no credentials) and the record's key
            where = (
                f"{file} key {one_line(str(key), KEY_CHARACTERS)}" if key is not None else str(file)
            )
        elif file is not None and line is not None:
            where = f"{file}:{line}"
        elif file is not None:  # a record of a JSON array snapshot: its number, from 1
            where = f"{file}: record {offset}" if offset is not None else str(file)
        else:
            where = str(kind)
        lines.append(f"dead letter: {where}: {one_line(str(reason), REASON_CHARACTERS)}")
    if len(rows) < limit:
        return lines
    # Counted apart: a window count over the load's rows would hold them all in memory, where
    # the top-N above holds `limit` rows however many the load refused.
    [(total,)] = warehouse.query(
        f"select count(*) from {warehouse.bronze}.dead_letter where _load_id = ?", [load_id]
    )
    if total > len(rows):
        lines.append(
            f"... and {total - len(rows):,} more dead letter(s): {warehouse.bronze}.dead_letter"
            f" where _load_id = '{load_id}'"
        )
    return lines
