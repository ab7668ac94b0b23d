"""The incremental reference sources a command or a DAG reads: from options or the settings."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from retail_pipeline.errors import InputError
from retail_pipeline.events.contract import REFERENCE_FIELDS
from retail_pipeline.ingestion.incremental import (
    BATCH_SIZE,
    ChangeSource,
    IncrementalSummary,
    load_changes,
)
from retail_pipeline.settings import settings
from retail_pipeline.warehouse.base import Warehouse


def change_sources(
    *, api: str | None = None, postgres: str | None = None, configured: bool = False
) -> list[ChangeSource]:
    """The API and Postgres sources named by ``api``/``postgres``; with ``configured``, those
    ``RETAIL_API_URL`` and ``RETAIL_POSTGRES_DSN`` name instead."""
    config = settings()
    if configured:
        api = config.api_url
        postgres = config.postgres_dsn.get_secret_value() if config.postgres_dsn else None
    sources: list[ChangeSource] = []
    if api:
        from retail_pipeline.ingestion.api import ApiSource

        token = config.api_token.get_secret_value() if config.api_token else None
        sources.append(ApiSource(api, token))
    if postgres:
        from retail_pipeline.ingestion.postgres import PostgresSource

        sources.append(PostgresSource(postgres))
    return sources


def entities(only: Sequence[str] | None = None) -> list[str]:
    """The reference entities to load: ``only`` (checked), else all of them."""
    unknown = [name for name in only or () if name not in REFERENCE_FIELDS]
    if unknown:
        raise InputError(f"--entity {unknown[0]}: expected customers or products")
    return list(only or REFERENCE_FIELDS)


def load_sources(
    warehouse: Warehouse,
    sources: Sequence[ChangeSource],
    *,
    only: Sequence[str] | None = None,
    lag_seconds: float | None = None,
    batch_size: int = BATCH_SIZE,
) -> Iterator[IncrementalSummary]:
    """Load each entity's next window from each source, one summary per (source, entity)."""
    names = entities(only)
    lag = settings().batch_lag if lag_seconds is None else lag_seconds
    for source in sources:
        try:
            for entity in names:
                yield load_changes(
                    warehouse, source, entity, lag_seconds=lag, batch_size=batch_size
                )
        finally:
            source.close()
