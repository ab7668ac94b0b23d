{{
    config(
        unique_key='order_id',
        pre_hook="{{ delete_touched_orders(['stg_bronze__order_events']) }}",
    )
}}

/*
    The basket of every order: the lines of its latest order_created / order_updated event that
    carried items, by event time (an order_updated without items leaves the basket as it was).
    One row per order and basket line.
*/

with

order_events as (

    select
        event_row.event_id,
        event_row.order_id,
        event_row.event_type,
        event_row.event_at,
        event_row.has_items,
        event_row._silver_loaded_at
    from {{ ref('stg_bronze__order_events') }} as event_row
    {% if is_incremental() %}
    {{ join_touched_orders('event_row', ['stg_bronze__order_events']) }}
    {% endif %}

),

latest_baskets as (

    {{ latest_baskets('order_events') }}

),

existing_orders as (

    select latest_baskets.*
    from latest_baskets
    inner join {{ ref('int_orders') }} as orders on latest_baskets.order_id = orders.order_id
    where latest_baskets.basket_event_id is not null

),

baskets as (

    select
        existing_orders.order_id,
        existing_orders.basket_event_id,
        existing_orders.basket_at,
        existing_orders._silver_loaded_at,
        staged.items
    from existing_orders
    inner join {{ ref('stg_bronze__order_events') }} as staged
        on existing_orders.basket_event_id = staged.event_id

),

lines as (

    {{ basket_lines('baskets', ['order_id', 'basket_event_id', 'basket_at', '_silver_loaded_at']) }}

)

select
    order_id,
    line_number,
    product_id,
    quantity,
    unit_price,
    -- Exact: quantity x unit_price (4 decimals) is never rounded here; only reported sums are.
    cast(quantity * unit_price as decimal(38, 4)) as line_amount,
    basket_event_id,
    basket_at,
    _silver_loaded_at
from lines
