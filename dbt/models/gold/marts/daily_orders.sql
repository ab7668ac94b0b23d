-- One row per order date (UTC) with at least one order: orders created that day and what became
-- of them.
select
    order_date,
    count(*) as orders_created,
    count(*) filter (where is_converted) as orders_converted,
    count(*) filter (where is_canceled) as orders_canceled,
    count(*) filter (where is_refunded) as orders_refunded,
    count(*) filter (where is_canceled_or_refunded) as orders_canceled_or_refunded
from {{ ref('fct_orders') }}
group by order_date
