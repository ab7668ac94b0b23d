"""The Bronze tables' columns, derived from the event contract (never written by hand).

Every event table holds the typed columns validation produced (``contract.event_fields``), the
raw ``payload`` byte for byte, and where the message came from. Reference tables hold the typed
record, its payload and the snapshot it came from. DuckDB creates them from
:func:`create_statements`; other targets (Terraform for Snowflake) are tested against the same
column lists.
"""

from __future__ import annotations

from collections.abc import Callable

from retail_pipeline.events.contract import (
    REFERENCE_FIELDS,
    TOPICS,
    bronze_columns,
    event_fields,
)
from retail_pipeline.warehouse.base import EVENT_TABLES

Column = tuple[str, str, bool]
"""(name, SQL type, not null)."""

EVENT_METADATA: list[Column] = [
    ("payload", "varchar", True),  # the original message, byte for byte
    ("_topic", "varchar", True),  # orders | payments | shipments
    ("_partition", "integer", False),  # Kafka partition (null for files)
    ("_offset", "bigint", True),  # Kafka offset, or byte offset of the line in the file
    ("_key", "varchar", False),  # Kafka message key (order_id)
    ("_kafka_ts", "timestamptz", False),  # Kafka message timestamp
    ("_source_file", "varchar", False),  # file the line came from (null for Kafka)
    ("_source_line", "bigint", False),  # 1-based line number in that file
    ("_ingested_at", "timestamptz", True),  # commit time of the batch
    ("_load_id", "varchar", True),  # the loader run that wrote the row
]
REFERENCE_METADATA: list[Column] = [
    ("payload", "varchar", True),
    ("_source_file", "varchar", True),
    ("_record_number", "bigint", True),  # 1-based record (array element or NDJSON line)
    ("_content_hash", "varchar", True),  # sha256 of the snapshot file
    ("_ingested_at", "timestamptz", True),
    ("_load_id", "varchar", True),
]


def bronze_tables() -> dict[str, list[Column]]:
    """Every contract-derived Bronze table and its columns, in order."""
    tables = {
        EVENT_TABLES[topic]: bronze_columns(event_fields(topic)) + EVENT_METADATA
        for topic in TOPICS
    }
    for entity, fields in REFERENCE_FIELDS.items():
        tables[entity] = bronze_columns(fields) + REFERENCE_METADATA
    return tables


def create_statements(schema: str = "bronze", type_name: Callable[[str], str] = str) -> list[str]:
    """``create table if not exists`` for every contract-derived Bronze table; ``type_name``
    turns each column's DuckDB type into the target's (Snowflake's, say)."""
    statements = []
    for table, columns in bronze_tables().items():
        body = ",\n    ".join(
            f"{name} {type_name(sql_type)}{' not null' if not_null else ''}"
            for name, sql_type, not_null in columns
        )
        statements.append(f"create table if not exists {schema}.{table} (\n    {body}\n)")
    return statements
