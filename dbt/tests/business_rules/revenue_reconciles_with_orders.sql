-- Daily revenue adds up to what the orders captured and refunded (no payment counted twice,
-- none of an order that does not exist).
with

revenue as (

    select
        currency,
        sum(gross_revenue) as gross_revenue,
        sum(refunds) as refunds
    from {{ ref('daily_revenue') }}
    group by currency

),

orders as (

    select
        currency,
        sum(captured_amount) as captured_amount,
        sum(refunded_amount) as refunded_amount
    from {{ ref('fct_orders') }}
    where captured_amount > 0 or refunded_amount > 0
    group by currency

)

select
    coalesce(revenue.currency, orders.currency) as currency,
    revenue.gross_revenue,
    orders.captured_amount,
    revenue.refunds,
    orders.refunded_amount
from revenue
full outer join orders on revenue.currency = orders.currency
where
    revenue.gross_revenue is distinct from orders.captured_amount
    or revenue.refunds is distinct from orders.refunded_amount
