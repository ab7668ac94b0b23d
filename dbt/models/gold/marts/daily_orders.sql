-- One row per order date (UTC) with at least one order: orders created that day and what became
-- of them.
select
    order_date,
    count(*) as orders_created,
    count(case when is_converted then 1 end) as orders_converted,
    count(case when is_canceled then 1 end) as orders_canceled,
    count(case when is_refunded then 1 end) as orders_refunded,
    count(case when is_canceled_or_refunded then 1 end) as orders_canceled_or_refunded
from {{ ref('fct_orders') }}
group by order_date
