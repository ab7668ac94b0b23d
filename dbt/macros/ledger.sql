{#
    The restatement ledger (models/gold/ledger/figure_ledger.sql): the published figures in long
    form, the orders behind a figure, the loads that staged their events, and retiring a
    figure's earlier rows once a build has written a newer one.
#}


{#-
    Every figure the six answers publish, one row each: figure, grain (what figure_key is: an
    order date, a revenue date, a product, a lead-time segment), figure_key (text) and figure_value
    (as published: money in cents, hours as computed).
-#}
{% macro published_figures() -%}
    {%- set figures = [
        ('daily_orders', 'order_date', 'order_date', [
            'orders_created', 'orders_converted', 'orders_canceled', 'orders_refunded',
            'orders_canceled_or_refunded']),
        ('daily_revenue', 'revenue_date', 'revenue_date', [
            'gross_revenue', 'refunds', 'net_revenue']),
        ('top_products', 'product', 'product_id', ['revenue', 'units_sold']),
        ('fulfillment_lead_times', 'segment', 'segment', [
            'orders', 'mean_hours', 'p50_hours', 'p90_hours']),
    ] -%}
    {%- set names = {'revenue': 'product_revenue', 'units_sold': 'product_units',
                     'orders': 'lead_time_orders', 'mean_hours': 'lead_time_mean_hours',
                     'p50_hours': 'lead_time_p50_hours', 'p90_hours': 'lead_time_p90_hours'} -%}
    {%- set selects = [] -%}
    {%- for model, grain, key, columns in figures -%}
    {%- for column in columns -%}
    {%- set value = 'round(' ~ column ~ ', 6)' if column.endswith('_hours') else column -%}
    {%- do selects.append(
        "select '" ~ names.get(column, column) ~ "' as figure, '" ~ grain ~ "' as grain, "
        ~ "cast(" ~ key ~ " as varchar) as figure_key, "
        ~ "cast(" ~ value ~ " as decimal(38, 6)) as figure_value from " ~ ref(model)
    ) -%}
    {%- endfor -%}
    {%- endfor -%}
    {{ selects | join('\n    union all\n    ') }}
{%- endmacro %}


{#-
    (grain, figure_key, order_id) for the keys in `keys`: an order is behind the figures of its
    order date, of the dates of its captures and refunds, of the products of its latest basket
    and of the lead-time segments it reached.
-#}
{% macro orders_behind_figures(keys) -%}
    select keys.grain, keys.figure_key, orders.order_id
    from {{ keys }} as keys
    inner join {{ ref('fct_orders') }} as orders
        on keys.grain = 'order_date' and keys.figure_key = cast(orders.order_date as varchar)
    union all
    select keys.grain, keys.figure_key, payments.order_id
    from {{ keys }} as keys
    inner join {{ ref('fct_payments') }} as payments
        on keys.grain = 'revenue_date'
        and keys.figure_key = cast(payments.movement_date as varchar)
    union all
    select keys.grain, keys.figure_key, items.order_id
    from {{ keys }} as keys
    inner join {{ ref('fct_order_items') }} as items
        on keys.grain = 'product' and keys.figure_key = items.product_id
    union all
    select keys.grain, keys.figure_key, orders.order_id
    from {{ keys }} as keys
    inner join {{ ref('fct_orders') }} as orders
        on keys.grain = 'segment'
        and (
            (keys.figure_key = 'created_to_shipped' and orders.hours_created_to_shipped is not null)
            or (keys.figure_key = 'shipped_to_delivered'
                and orders.hours_shipped_to_delivered is not null)
            or (keys.figure_key = 'created_to_delivered'
                and orders.hours_created_to_delivered is not null)
        )
{%- endmacro %}


{#-
    (grain, figure_key, load_id): the Bronze load of every event of `model` (a staging model)
    that this build staged for an order of `key_orders`. Staging keeps an event's first arrival
    with its `_ingested_at`; the Bronze row of that arrival names the load.
-#}
{% macro staged_loads(model, bronze_table, key_orders) -%}
    select distinct key_orders.grain, key_orders.figure_key, bronze._load_id as load_id
    from {{ key_orders }} as key_orders
    inner join {{ ref(model) }} as staged
        on key_orders.order_id = staged.order_id
    inner join {{ source('bronze', bronze_table) }} as bronze
        on staged.event_id = bronze.event_id
        and staged._ingested_at = bronze._ingested_at
    where staged._silver_loaded_at = {{ silver_load_stamp() }}
        and bronze._ingested_at >= (
            select min(_ingested_at) from {{ ref(model) }}
            where _silver_loaded_at = {{ silver_load_stamp() }}
        )
{%- endmacro %}


{#- Post-hook: a figure's rows written before this build's stop being current. -#}
{% macro retire_superseded_figures() -%}
    update {{ this }} as earlier
    set is_current = false
    from (
        select figure, figure_key
        from {{ this }}
        where recorded_at = {{ silver_load_stamp() }}
    ) as latest
    where earlier.figure = latest.figure
        and earlier.figure_key = latest.figure_key
        and earlier.is_current
        and earlier.recorded_at < {{ silver_load_stamp() }}
{%- endmacro %}
