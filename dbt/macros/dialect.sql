{#
    Dialect differences, and only those: every macro here dispatches (adapter.dispatch) to a
    `duckdb__` variant (the reference target, DuckDB SQL as the models had it) and a `snowflake__`
    variant. Models stay single and call these macros; whatever both warehouses accept is written
    in the models directly (count(case when ...), sum(case when ...), min_by/max_by, qualify,
    cast(... as double) before a division, standard UNPIVOT). There is deliberately no
    `default__` variant: a third adapter fails at compile time, naming the macro to port,
    instead of running DuckDB SQL. tests/transform/test_portability.py fails if a DuckDB-only
    construct appears outside the `duckdb__` macros. docs/transform.md, "Dialects".
#}


{#- The UTC calendar date of a timestamp with time zone, whatever the session time zone. -#}
{% macro utc_date(column) -%}
    {{ return(adapter.dispatch('utc_date')(column)) }}
{%- endmacro %}

{#- From the epoch: several times cheaper than a time-zone conversion in DuckDB. -#}
{% macro duckdb__utc_date(column) -%}
    (date '1970-01-01' + cast(floor(epoch_ms({{ column }}) / 86400000) as integer))
{%- endmacro %}

{% macro snowflake__utc_date(column) -%}
    to_date(convert_timezone('UTC', {{ column }}))
{%- endmacro %}


{#- Microseconds since the epoch of a timestamp with time zone, as an integer. -#}
{% macro epoch_microseconds(column) -%}
    {{ return(adapter.dispatch('epoch_microseconds')(column)) }}
{%- endmacro %}

{% macro duckdb__epoch_microseconds(column) -%}
    epoch_us({{ column }})
{%- endmacro %}

{% macro snowflake__epoch_microseconds(column) -%}
    date_part(epoch_microsecond, {{ column }})
{%- endmacro %}


{#-
    A timestamp with time zone before every stamp the project compares with it, as the
    high-water mark of an empty model. Snowflake has no infinite timestamps; the stamps are
    loader transaction times (`_ingested_at`) and dbt start times (`_silver_loaded_at`), all
    after the epoch. Written like silver_load_stamp()'s literal.
-#}
{% macro earliest_timestamp() -%}
    {{ return(adapter.dispatch('earliest_timestamp')()) }}
{%- endmacro %}

{% macro duckdb__earliest_timestamp() -%}
    '-infinity'::timestamptz
{%- endmacro %}

{% macro snowflake__earliest_timestamp() -%}
    cast('1970-01-01 00:00:00.000000+00:00' as timestamptz)
{%- endmacro %}


{#-
    Text that identifies an instant, for hashing: the same instant always gives the same text on
    one target. On Snowflake a cast to varchar follows the session's output format (milliseconds
    by default), so the epoch in microseconds is used instead.
-#}
{% macro timestamp_key(column) -%}
    {{ return(adapter.dispatch('timestamp_key')(column)) }}
{%- endmacro %}

{% macro duckdb__timestamp_key(column) -%}
    cast({{ column }} as varchar)
{%- endmacro %}

{% macro snowflake__timestamp_key(column) -%}
    cast(date_part(epoch_microsecond, {{ column }}) as varchar)
{%- endmacro %}


{#-
    One row per basket line of `relation`, which has the basket column `items` (DuckDB: a list
    of structs; Snowflake: an ARRAY of objects): the passthrough `columns`, then line_number
    (1-based position in the basket), product_id, quantity (bigint) and unit_price
    (decimal(20,4), exact).
-#}
{% macro basket_lines(relation, columns) -%}
    {{ return(adapter.dispatch('basket_lines')(relation, columns)) }}
{%- endmacro %}

{% macro duckdb__basket_lines(relation, columns) -%}
    select
        {%- for column in columns %}
        {{ column }},
        {%- endfor %}
        line_number,
        item.product_id,
        item.quantity,
        item.unit_price
    from (
        select
            {%- for column in columns %}
            {{ column }},
            {%- endfor %}
            unnest(items) as item,
            generate_subscripts(items, 1) as line_number
        from {{ relation }}
    ) as unnested
{%- endmacro %}

{% macro snowflake__basket_lines(relation, columns) -%}
    select
        {%- for column in columns %}
        basket.{{ column }},
        {%- endfor %}
        line.index + 1 as line_number,
        line.value:product_id::varchar as product_id,
        line.value:quantity::number(19, 0) as quantity,
        line.value:unit_price::number(20, 4) as unit_price
    from {{ relation }} as basket,
        lateral flatten(input => basket.items) as line
{%- endmacro %}


{#-
    One row per order of `relation` (order events: order_id, event_id, event_type, event_at,
    has_items, _silver_loaded_at): basket_event_id and basket_at, the latest order_created /
    order_updated event carrying items by event time (ties, not seen in practice, go to the
    update, then to the larger event_id, so the choice never depends on arrival order; both null
    when no event carries items), and _silver_loaded_at, the order's newest stamp, basket or not,
    so that an order touched by an event without items is not selected again by the next run.
    DuckDB takes the latest by a tuple in one aggregate (a third faster than a window); Snowflake
    cannot order by a tuple, so it ranks with row_number().
-#}
{% macro latest_baskets(relation) -%}
    {{ return(adapter.dispatch('latest_baskets')(relation)) }}
{%- endmacro %}

{% macro duckdb__latest_baskets(relation) -%}
    select
        order_id,
        arg_max(
            event_id, (event_at, event_type = 'order_updated', event_id)
        ) filter (
            where has_items and event_type in ('order_created', 'order_updated')
        ) as basket_event_id,
        max(event_at) filter (
            where has_items and event_type in ('order_created', 'order_updated')
        ) as basket_at,
        max(_silver_loaded_at) as _silver_loaded_at
    from {{ relation }}
    group by order_id
{%- endmacro %}

{% macro snowflake__latest_baskets(relation) -%}
    select
        stamps.order_id,
        baskets.event_id as basket_event_id,
        baskets.event_at as basket_at,
        stamps._silver_loaded_at
    from (
        select
            order_id,
            max(_silver_loaded_at) as _silver_loaded_at
        from {{ relation }}
        group by order_id
    ) as stamps
    left join (
        select
            order_id,
            event_id,
            event_at
        from {{ relation }}
        where has_items and event_type in ('order_created', 'order_updated')
        qualify row_number() over (
            partition by order_id
            order by
                event_at desc,
                case when event_type = 'order_updated' then 1 else 0 end desc,
                event_id desc
        ) = 1
    ) as baskets on stamps.order_id = baskets.order_id
{%- endmacro %}


{#-
    A reason with its standalone numbers masked as N, so that reasons group. Snowflake:
    backslashes in '...' literals are escapes, so the pattern is a $$ literal, and
    regexp_replace replaces every occurrence by default (its 4th argument is a position, there
    is no 'g' flag).
-#}
{% macro mask_numbers(column) -%}
    {{ return(adapter.dispatch('mask_numbers')(column)) }}
{%- endmacro %}

{% macro duckdb__mask_numbers(column) -%}
    regexp_replace({{ column }}, '(^|\s)-?[0-9]+(\.[0-9]+)?', '\1N', 'g')
{%- endmacro %}

{% macro snowflake__mask_numbers(column) -%}
    regexp_replace({{ column }}, $$(^|\s)-?[0-9]+(\.[0-9]+)?$$, $$\1N$$)
{%- endmacro %}


{#-
    One row per calendar day (`date_day`, a date) from first_day to last_day of the one-row
    `relation`; no row when first_day is null.
-#}
{% macro calendar_days(relation, first_day, last_day) -%}
    {{ return(adapter.dispatch('calendar_days')(relation, first_day, last_day)) }}
{%- endmacro %}

{% macro duckdb__calendar_days(relation, first_day, last_day) -%}
    select
        cast(unnest(generate_series({{ first_day }}, {{ last_day }}, interval 1 day)) as date)
            as date_day
    from {{ relation }}
    where {{ first_day }} is not null
{%- endmacro %}

{% macro snowflake__calendar_days(relation, first_day, last_day) -%}
    select cast(dateadd(day, day_offset.value::integer, bounds.{{ first_day }}) as date) as date_day
    from {{ relation }} as bounds,
        lateral flatten(input => array_generate_range(
            0, datediff(day, bounds.{{ first_day }}, bounds.{{ last_day }}) + 1
        )) as day_offset
    where bounds.{{ first_day }} is not null
{%- endmacro %}


{#- ISO day of the week of a date: 1 = Monday .. 7 = Sunday. -#}
{% macro iso_day_of_week(column) -%}
    {{ return(adapter.dispatch('iso_day_of_week')(column)) }}
{%- endmacro %}

{% macro duckdb__iso_day_of_week(column) -%}
    isodow({{ column }})
{%- endmacro %}

{% macro snowflake__iso_day_of_week(column) -%}
    dayofweekiso({{ column }})
{%- endmacro %}


{#- ISO 8601 week of the year of a date (1..53); Snowflake's WEEK follows a session parameter. -#}
{% macro iso_week(column) -%}
    {{ return(adapter.dispatch('iso_week')(column)) }}
{%- endmacro %}

{% macro duckdb__iso_week(column) -%}
    weekofyear({{ column }})
{%- endmacro %}

{% macro snowflake__iso_week(column) -%}
    weekiso({{ column }})
{%- endmacro %}


{#- A Bronze table as a view that must survive the warehouse being copied names it: DuckDB
    keeps a view's names as written, and a copied or renamed file has another database name, so
    its database is left out there; Snowflake resolves the full name (one database per
    environment). -#}
{% macro live_bronze(relation) -%}
    {{ return(adapter.dispatch('live_bronze')(relation)) }}
{%- endmacro %}

{% macro duckdb__live_bronze(relation) -%}
    {{ return(relation.include(database=false)) }}
{%- endmacro %}

{% macro snowflake__live_bronze(relation) -%}
    {{ return(relation) }}
{%- endmacro %}


{#- The distinct values of a text column, sorted, as one comma-separated text (an aggregate). -#}
{% macro sorted_text_list(column) -%}
    {{ return(adapter.dispatch('sorted_text_list')(column)) }}
{%- endmacro %}

{% macro duckdb__sorted_text_list(column) -%}
    string_agg(distinct {{ column }}, ',' order by {{ column }})
{%- endmacro %}

{% macro snowflake__sorted_text_list(column) -%}
    listagg(distinct {{ column }}, ',') within group (order by {{ column }})
{%- endmacro %}
