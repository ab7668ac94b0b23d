/*
    One row per order status (all seven, zero included): how many orders are in it now. Status is
    the furthest milestone reached; CANCELED, then REFUNDED, override the others.
*/
with

statuses as (

    select
        status_list.status_order,
        status_list.order_status
    from (
        values
        (1, 'CREATED'),
        (2, 'PAYMENT_FAILED'),
        (3, 'PAID'),
        (4, 'SHIPPED'),
        (5, 'DELIVERED'),
        (6, 'REFUNDED'),
        (7, 'CANCELED')
    ) as status_list (status_order, order_status)

),

counts as (

    select
        order_status,
        count(*) as orders
    from {{ ref('fct_orders') }}
    group by order_status

)

select
    statuses.order_status,
    cast(statuses.status_order as integer) as status_order,
    coalesce(counts.orders, 0) as orders,
    -- A double on every target (Snowflake's integer division keeps only a few decimals).
    coalesce(
        cast(counts.orders as double) / nullif(sum(counts.orders) over (), 0), 0
    ) as share_of_orders
from statuses
left join counts on statuses.order_status = counts.order_status
