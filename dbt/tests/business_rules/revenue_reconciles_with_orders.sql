{{ config(tags=['whole_table']) }}

-- Daily revenue adds up to what the orders captured and refunded in the reporting currency (no
-- payment counted twice, none of an order that does not exist, none in another currency).
with

revenue as (

    select
        sum(gross_revenue) as gross_revenue,
        sum(refunds) as refunds
    from {{ ref('daily_revenue') }}

),

orders as (

    select
        sum(captured_amount) as captured_amount,
        sum(refunded_amount) as refunded_amount
    from {{ ref('fct_orders') }}

)

select
    revenue.gross_revenue,
    orders.captured_amount,
    revenue.refunds,
    orders.refunded_amount
from revenue
cross join orders
where
    coalesce(revenue.gross_revenue, 0) != coalesce(orders.captured_amount, 0)
    or coalesce(revenue.refunds, 0) != coalesce(orders.refunded_amount, 0)
