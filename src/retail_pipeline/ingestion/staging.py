"""From raw messages and their source metadata to the rows of one Bronze batch.

Shared by every event source (files, Kafka): the messages go through the contract validator
once; valid events get their metadata beside their typed columns, and the rest become
dead letters with the reason.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import pyarrow as pa

from retail_pipeline.events.validator import validate_events

METADATA_SCHEMA = pa.schema(
    [
        ("_partition", pa.int32()),
        ("_offset", pa.int64()),
        ("_key", pa.string()),
        ("_kafka_ts", pa.timestamp("us", tz="UTC")),
        ("_source_file", pa.string()),
        ("_source_line", pa.int64()),
    ]
)
"""Where each message came from; one row per message."""


def escaped_text(raw: bytes) -> str:
    """Any bytes as text, losslessly: each backslash written ``\\\\`` and each byte that is not
    UTF-8 ``\\xNN``; :func:`escaped_bytes` gives the bytes back. Used for Kafka keys
    (``_key``) and for dead letters that are not UTF-8."""
    return raw.replace(b"\\", b"\\\\").decode("utf-8", "backslashreplace")


def escaped_bytes(text: str) -> bytes:
    """The original bytes of a text written by :func:`escaped_text`."""
    return _ESCAPE.sub(_unescape, text.encode())


_ESCAPE = re.compile(rb"\\(\\|x[0-9a-f]{2})")


def _unescape(match: re.Match[bytes]) -> bytes:
    escaped = match[1]
    return b"\\" if escaped == b"\\" else bytes([int(escaped[1:], 16)])


def payload_text(raw: bytes) -> str:
    """A dead letter's ``raw_payload``: UTF-8 exactly as it came; anything else (its reason
    then says it is not UTF-8) through :func:`escaped_text`, so no byte is lost."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return escaped_text(raw)


def stage_events(
    messages: Sequence[bytes],
    metadata: pa.Table,
    arrival_topics: Sequence[str | None] | None = None,
) -> tuple[dict[str, pa.Table], pa.Table]:
    """Validate ``messages`` and return (Bronze rows per topic, dead-letter rows).

    ``metadata`` has the columns of :data:`METADATA_SCHEMA`, one row per message;
    ``arrival_topics`` names the Kafka topic each message came from (None for files).
    """
    verdicts = validate_events(messages, arrival_topics)
    events: dict[str, pa.Table] = {}
    for topic, typed in verdicts.events.items():
        rows = typed.column("_row")
        table = typed.drop_columns(["_row"]).append_column(
            "_topic", pa.repeat(pa.scalar(topic, pa.string()), typed.num_rows)
        )
        whole = typed.num_rows == metadata.num_rows
        meta = metadata if whole else metadata.take(rows)
        for name in metadata.column_names:
            table = table.append_column(name, meta.column(name))
        events[topic] = table
    dead_index = pa.array(verdicts.dead_rows, pa.int64())
    dead = metadata.take(dead_index)
    topics = [arrival_topics[i] for i in verdicts.dead_rows] if arrival_topics else None
    dead = dead.append_column(
        "_topic", pa.array(topics or [None] * len(verdicts.dead_rows), pa.string())
    )
    dead = dead.append_column(
        "raw_payload",
        pa.array(
            [payload_text(messages[i]) for i in verdicts.dead_rows],
            pa.string(),
        ),
    )
    dead = dead.append_column("reason", pa.array(verdicts.dead_reasons, pa.string()))
    return events, dead
