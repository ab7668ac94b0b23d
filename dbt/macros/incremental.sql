{#
    Incremental windows.

    Staging reads Bronze by ingestion time: rows stamped after the newest `_ingested_at` already
    in the model, minus `lookback_minutes` (a Bronze batch is stamped when its transaction starts,
    so a slow batch can commit after a later-stamped one). Rows re-read inside the lookback are
    skipped by key, so the window may overlap freely.

    Models downstream of staging select the keys touched by events staged since their own
    newest `_silver_loaded_at`. Staging stamps every row with the start time of the dbt
    invocation that inserted it; dbt invocations on one warehouse run one after another, so this
    stamp needs no lookback.
#}

{% macro ingestion_window(column='_ingested_at', relation_alias=none) -%}
    {{ relation_alias ~ '.' if relation_alias }}{{ column }} > (
        select coalesce(max({{ column }}), {{ earliest_timestamp() }})
        from {{ this }}
    ) - interval '{{ var("lookback_minutes") | int }} minutes'
{%- endmacro %}


{#
    The stamp of the rows this build writes: the start of this dbt invocation, or
    RETAIL_DBT_LOAD_STAMP when one build runs as several invocations (the Cosmos layout of the
    dbt DAG runs one per model; its plan task sets one stamp for the whole run), so that every
    model's rows, and the tests that read them, share the build's stamp. Read only while nodes
    execute, never while dbt parses. It must be later than every earlier build's stamp: the
    plan task takes the time it runs.
#}
{% macro silver_load_stamp() -%}
    {%- set stamp = env_var('RETAIL_DBT_LOAD_STAMP', '') if execute else '' -%}
    {%- if stamp and (stamp.strip('0123456789:. T+-') or stamp | length > 40) -%}
        {{ exceptions.raise_compiler_error(
            'RETAIL_DBT_LOAD_STAMP is not an ISO 8601 timestamp (e.g. 2026-12-06T23:05:00+00:00)'
        ) }}
    {%- endif -%}
    cast('{{ stamp or run_started_at }}' as timestamptz)
{%- endmacro %}


{% macro newly_staged(column='_silver_loaded_at', relation_alias=none) -%}
    {{ relation_alias ~ '.' if relation_alias }}{{ column }} > (
        select coalesce(max({{ column }}), {{ earliest_timestamp() }})
        from {{ this }}
    )
{%- endmacro %}


{#
    The orders touched by events staged after this model's newest `_silver_loaded_at`, from
    the given staging models (all event topics by default).
#}
{% macro touched_orders(models=none) -%}
    {%- set models = models or [
        'stg_bronze__order_events', 'stg_bronze__payment_events', 'stg_bronze__shipment_events'
    ] -%}
    {%- for model in models %}
    select staged.order_id
    from {{ ref(model) }} as staged
    where {{ newly_staged('_silver_loaded_at', 'staged') }}
    {%- if not loop.last %}
    union
    {%- endif %}
    {%- endfor %}
{%- endmacro %}


{#
    Keeps the rows of `relation_alias` whose order was touched (see touched_orders): an inner
    join on the distinct touched orders, not `order_id in (...)`. DuckDB pushes a join's keys
    into the scan of the other side, so it reads the touched orders' rows; an `in` subquery
    (a semi join) reads every row of the table first (int_orders 0.43 -> 0.33 s at 10M events).
#}
{% macro join_touched_orders(relation_alias, models=none) -%}
    inner join (
        {{ touched_orders(models) | indent(4) }}
    ) as touched on {{ relation_alias }}.order_id = touched.order_id
{%- endmacro %}


{#
    Pre-hook for per-order models whose recomputation can yield no rows for an order (an
    emptied basket, an orphan whose order arrived): delete the rows of every touched order
    first, so that delete+insert cannot leave stale rows behind.
#}
{% macro delete_touched_orders(models=none) -%}
    {%- if is_incremental() -%}
        delete from {{ this }}
        where order_id in ({{ touched_orders(models) }})
    {%- endif -%}
{%- endmacro %}


{#
    Pre-hook of quarantined_events: orphans whose order_created has arrived since leave the
    table (the model then only adds newly staged events, so it never re-reads old ones).
#}
{% macro release_resolved_orphans() -%}
    {%- if is_incremental() -%}
        delete from {{ this }}
        where
            quarantine_check = 'orphan'
            and order_id in (select orders.order_id from {{ ref('int_orders') }} as orders)
    {%- endif -%}
{%- endmacro %}
