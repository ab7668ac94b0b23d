-- One row per order date: the share of that day's orders with at least one payment_captured.
select
    order_date,
    orders_created,
    orders_converted,
    -- As a double on every target (Snowflake's integer division keeps only a few decimals).
    cast(orders_converted as double) / orders_created as conversion_rate
from {{ ref('daily_orders') }}
