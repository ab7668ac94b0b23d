-- Loader runs: what each run read, loaded and dead-lettered (for reconciliation).
with

bronze_rows as (

    select
        *,
        finished_at as _ingested_at
    from {{ source('bronze', '_loads') }}

),

unstaged as (

    {{ unstaged_rows('bronze_rows', key='load_id', columns=[
        'load_id', 'kind', 'source', 'content_hash', 'started_at', 'finished_at', 'rows_read',
        'rows_loaded', 'rows_dead_lettered', '_ingested_at',
    ]) }}

)

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
    _ingested_at,
    {{ silver_load_stamp() }} as _silver_loaded_at
from unstaged
