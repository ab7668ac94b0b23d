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

{% if is_incremental() %}
touched_orders as (

    {{ touched_orders(['stg_bronze__order_events']) }}

),
{% endif %}

order_events as (

    select
        event_id,
        order_id,
        event_type,
        event_at,
        has_items,
        _silver_loaded_at
    from {{ ref('stg_bronze__order_events') }}
    {% if is_incremental() %}
    where order_id in (select touched_orders.order_id from touched_orders)
    {% endif %}

),

latest_baskets as (

    select
        order_id,
        -- Ties on event time (not seen in practice) go to the update, then to the larger
        -- event_id, so the choice never depends on arrival order.
        arg_max(
            event_id, (event_at, event_type = 'order_updated', event_id)
        ) filter (
            where has_items and event_type in ('order_created', 'order_updated')
        ) as basket_event_id,
        max(event_at) filter (
            where has_items and event_type in ('order_created', 'order_updated')
        ) as basket_at,
        -- Stamped with the order's newest event, basket or not, so that an order touched by an
        -- event without items is not selected again by the next run.
        max(_silver_loaded_at) as _silver_loaded_at
    from order_events
    group by order_id

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

    select
        order_id,
        basket_event_id,
        basket_at,
        _silver_loaded_at,
        unnest(items) as item,
        generate_subscripts(items, 1) as line_number
    from baskets

)

select
    order_id,
    line_number,
    item.product_id,
    item.quantity,
    item.unit_price,
    -- Exact: quantity x unit_price (4 decimals) is never rounded here; only reported sums are.
    cast(item.quantity * item.unit_price as decimal(38, 4)) as line_amount,
    basket_event_id,
    basket_at,
    _silver_loaded_at
from lines
