{#
    One row per event_id of one topic's Bronze table (event ids are unique per topic only: each
    service numbers its own, so deduplication never looks across topics): the first arrival, by
    ingestion time, then Bronze offset (the remaining columns only make the choice deterministic
    when both tie). Only the few events
    delivered more than once are ranked; the rest pass straight through, which is several times
    cheaper than ranking every row.
#}
{% macro first_arrival(relation) -%}
    select {{ relation }}.*
    from {{ relation }}
    left join (
        select event_id
        from {{ relation }}
        group by event_id
        having count(*) > 1
    ) as redelivered on {{ relation }}.event_id = redelivered.event_id
    where redelivered.event_id is null
    union all
    select {{ relation }}.*
    from {{ relation }}
    inner join (
        select event_id
        from {{ relation }}
        group by event_id
        having count(*) > 1
    ) as redelivered on {{ relation }}.event_id = redelivered.event_id
    qualify row_number() over (
        partition by {{ relation }}.event_id
        order by
            {{ relation }}._ingested_at,
            {{ relation }}._offset,
            {{ relation }}._partition,
            {{ relation }}._source_file,
            {{ relation }}._source_line
    ) = 1
{%- endmacro %}


{#
    The Bronze rows a staging model has not seen, as the given columns: on an incremental run,
    those ingested inside the lookback window whose key is not in the model yet. The key check
    looks up only the keys of the window in the model (a semi-join on one narrow column), and
    the window bounds the Bronze scan by ingestion time, so DuckDB skips older row groups.
    Bronze is typed (the loaders validated every row against the contract), so no payload is
    read: only the listed columns.
#}
{% macro unstaged_rows(relation, columns, key='event_id') -%}
    select
        {%- for column in columns %}
        bronze_row.{{ column }}{{ "," if not loop.last }}
        {%- endfor %}
    from {{ relation }} as bronze_row
    {%- if is_incremental() %}
        where
            {{ ingestion_window('_ingested_at', 'bronze_row') }}
            and bronze_row.{{ key }} not in (
                select staged.{{ key }}
                from {{ this }} as staged
                where staged.{{ key }} in (
                    select windowed.{{ key }}
                    from {{ relation }} as windowed
                    where {{ ingestion_window('_ingested_at', 'windowed') }}
                )
            )
    {%- endif %}
{%- endmacro %}


{#
    The Bronze rows of reference loads (customers, products) a staging model has not seen, as
    the given columns: like unstaged_rows, but by (load, record key), the staging model's
    grain. A load (a snapshot file, an API or Postgres run) is written in several transactions
    under one load id, and resumes under it after a crash, so a dbt run may see part of a load:
    its other records are staged by a later run, never left out, and none twice.
#}
{% macro unstaged_load_rows(relation, key, columns) -%}
    select
        {%- for column in columns %}
        bronze_row.{{ column }}{{ "," if not loop.last }}
        {%- endfor %}
    from {{ relation }} as bronze_row
    {%- if is_incremental() %}
        where
            {{ ingestion_window('_ingested_at', 'bronze_row') }}
            and not exists (
                select 1
                from {{ this }} as staged
                where
                    staged._load_id = bronze_row._load_id
                    and staged.{{ key }} = bronze_row.{{ key }}
            )
    {%- endif %}
{%- endmacro %}


{# The reporting currency (`reporting_currency` var) as a SQL string literal. #}
{% macro reporting_currency() -%}
    '{{ var("reporting_currency") }}'
{%- endmacro %}


{#
    A money figure as reported: the exact decimal rounded to cents once, half away from zero
    (round() on a DuckDB DECIMAL or a Snowflake NUMBER rounds half away from zero; on a DOUBLE it
    would not be exact).
#}
{% macro cents(expression) -%}
    cast(round({{ expression }}, 2) as decimal(38, 2))
{%- endmacro %}

