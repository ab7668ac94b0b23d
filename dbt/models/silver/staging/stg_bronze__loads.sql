-- Loader runs: what each run read, loaded and dead-lettered (for reconciliation).
-- A run's Bronze row grows with every batch it commits, so this small table (one row per run)
-- is rebuilt from Bronze on every build instead of being appended to.
{{ config(materialized='table') }}

select
    load_id,
    kind as load_kind,
    source as load_source,
    content_hash,
    started_at,
    finished_at,
    rows_read,
    rows_loaded,
    rows_dead_lettered,
    finished_at as _ingested_at
from {{ source('bronze', '_loads') }}
