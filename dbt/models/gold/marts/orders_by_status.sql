/*
    One row per order status (every status of dim_order_statuses, zero included): how many
    orders are in it now. Status is the furthest milestone reached (macros/order_statuses.sql).
*/
with

statuses as (

    select
        order_status,
        status_order
    from {{ ref('dim_order_statuses') }}

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
    statuses.status_order,
    coalesce(counts.orders, 0) as orders,
    -- A double on every target (Snowflake's integer division keeps only a few decimals).
    coalesce(
        cast(counts.orders as double) / nullif(sum(counts.orders) over (), 0), 0
    ) as share_of_orders
from statuses
left join counts on statuses.order_status = counts.order_status
