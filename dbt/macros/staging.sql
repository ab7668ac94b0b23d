{#
    One row per event_id: the first arrival, by ingestion time, then Bronze offset (the
    remaining columns only make the choice deterministic when both tie). Only the few events
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


{# The accepted currencies as a SQL list literal, from the `accepted_currencies` var. #}
{% macro accepted_currencies() -%}
    (
        {%- for currency in var('accepted_currencies') -%}
            '{{ currency }}'{{ ", " if not loop.last }}
        {%- endfor -%}
    )
{%- endmacro %}


{#
    The Bronze rows a staging model has not seen: on an incremental run, those ingested inside
    the lookback window whose key is not in the model yet. The key check runs on narrow
    columns; the wide payload is then read only for the new keys (their ingestion times bound
    the scan, so DuckDB skips older row groups).
#}
{% macro unstaged_rows(relation, key='event_id') -%}
    select * from {{ relation }} as bronze_row
    {%- if is_incremental() %}
        where
            {{ ingestion_window('_ingested_at', 'bronze_row') }}
            and (bronze_row.{{ key }}, bronze_row._ingested_at) in (
                select
                    candidate.{{ key }},
                    candidate._ingested_at
                from {{ relation }} as candidate
                where
                    {{ ingestion_window('_ingested_at', 'candidate') }}
                    and candidate.{{ key }} not in (
                        select staged.{{ key }}
                        from {{ this }} as staged
                        where staged.{{ key }} in (
                            select windowed.{{ key }}
                            from {{ relation }} as windowed
                            where {{ ingestion_window('_ingested_at', 'windowed') }}
                        )
                    )
            )
    {%- endif %}
{%- endmacro %}


{#
    The UTC calendar date of a timestamptz, whatever the session time zone (computed from the
    epoch: several times cheaper than a time-zone conversion).
#}
{% macro utc_date(column) -%}
    (date '1970-01-01' + cast(floor(epoch_ms({{ column }}) / 86400000) as integer))
{%- endmacro %}
