-- One row per order date (UTC) and channel with at least one order: orders created and the
-- discounts they were given. Orders created at contract version 1 have the channel 'unknown'.
select
    order_date,
    channel,
    count(*) as orders_created,
    -- Money in the reporting currency only, like every money answer (docs/metrics.md).
    cast(
        coalesce(sum(case when is_reporting_currency then discount end), 0) as decimal(38, 2)
    ) as discount_total
from {{ ref('int_orders') }}
group by order_date, channel
