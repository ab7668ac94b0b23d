-- One row per order date: the share of that day's orders with at least one payment_captured.
select
    order_date,
    orders_created,
    orders_converted,
    orders_converted / orders_created as conversion_rate
from {{ ref('daily_orders') }}
