{{
    config(
        unique_key='order_id',
        pre_hook="{{ delete_touched_orders(['int_orders']) }}",
    )
}}

-- One row per order and basket line (the order's latest basket).
with

orders as (

    select
        order_id,
        order_date,
        customer_id,
        currency,
        is_revenue_eligible,
        _silver_loaded_at
    from {{ ref('int_orders') }}
    {% if is_incremental() %}
    where {{ newly_staged() }}
    {% endif %}

)

select
    items.order_id,
    items.line_number,
    items.product_id,
    orders.order_date,
    orders.customer_id,
    orders.currency,
    items.quantity,
    cast(items.unit_price as decimal(20, 4)) as unit_price,
    -- Exact quantity x unit_price, in the order's currency; rounded only when reported.
    cast(items.line_amount as decimal(38, 4)) as line_amount,
    orders.is_revenue_eligible,
    orders._silver_loaded_at
from {{ ref('int_order_items') }} as items
inner join orders on items.order_id = orders.order_id
